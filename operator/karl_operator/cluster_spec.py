"""A KarlCluster checked offline against its CRD (crds/karlcluster.yaml), as the API server would check
it: the structural schema (types, enums, bounds, patterns, required and unknown fields) with its
defaults filled in, then the CRD's CEL rules, which this module states again in Python (same messages,
read from the CRD by their `fieldPath`). Pure: dicts in, problems out.

    crd = yaml.safe_load(open("crds/karlcluster.yaml"))
    spec, problems = checked_spec(crd, manifest["spec"])
    problems += name_problems(crd, manifest["metadata"]["name"])

For CI pipelines that check manifests before applying them, and for the tests that hold these checks
to the server's verdicts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: the field (`spec.mediaNodes.replicas`) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def version_schema(crd: dict[str, Any], version: str = "v1alpha1") -> dict[str, Any]:
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"the CRD has no version {version}")


def checked_spec(crd: dict[str, Any], spec: Any) -> tuple[dict[str, Any], list[Problem]]:
    """The spec with the CRD's defaults filled in, and every problem the server would report."""
    schema = version_schema(crd)["properties"]["spec"]
    filled = with_defaults(schema, copy.deepcopy(spec) if spec is not None else {})
    problems = schema_problems(schema, filled, "spec")
    if not problems:
        problems = rule_problems(schema, filled)
    return filled, problems


CLUSTER_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
MAX_NAME = 40


def name_problems(crd: dict[str, Any], name: str) -> list[Problem]:
    """The CRD's rule on `metadata.name` (its children's names must stay valid Kubernetes names)."""
    [rule] = version_schema(crd)["x-kubernetes-validations"]
    if len(name) <= MAX_NAME and CLUSTER_NAME.fullmatch(name):
        return []
    field, _, message = " ".join(rule["message"].split()).partition(": ")
    return [Problem(field, message)]


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in, recursively (defaults of defaults too)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = with_defaults(child, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [with_defaults(schema["items"], item) for item in value]
    return value


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def schema_problems(schema: dict[str, Any], value: Any, path: str) -> list[Problem]:
    """What the structural schema refuses in `value` (unknown fields included, as a strict client)."""
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        return [Problem(path, f"must be of type {kind}")]
    problems: list[Problem] = []
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' for v in schema["enum"])
        problems.append(Problem(path, f'Unsupported value: "{value}": supported values: {allowed}'))
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(Problem(path, f"should be greater than or equal to {schema['minimum']}"))
    if "maximum" in schema and value > schema["maximum"]:
        problems.append(Problem(path, f"should be less than or equal to {schema['maximum']}"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(Problem(path, f"should be at least {schema['minLength']} chars long"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(Problem(path, f"should match '{schema['pattern']}'"))
    if "multipleOf" in schema and value % schema["multipleOf"]:
        problems.append(Problem(path, f"must be a multiple of {schema['multipleOf']}"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(Problem(path, f"must have at most {schema['maxItems']} items"))
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(Problem(f"{path}.{name}", "Required value"))
        extra = schema.get("additionalProperties")
        for name, child in value.items():
            if name in properties:
                problems += schema_problems(properties[name], child, f"{path}.{name}")
            elif isinstance(extra, dict):
                problems += schema_problems(extra, child, f"{path}.{name}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                problems.append(Problem(f"{path}.{name}", "field not declared in schema"))
    if kind == "array" and "items" in schema:
        for index, item in enumerate(value):
            problems += schema_problems(schema["items"], item, f"{path}[{index}]")
    return problems


def _most_nodes(spec: dict[str, Any]) -> int:
    autoscaling, replicas = spec["autoscaling"], int(spec["mediaNodes"]["replicas"])
    return max(replicas, int(autoscaling["maxReplicas"])) if autoscaling["enabled"] else replicas


def _ports_fit(spec: dict[str, Any]) -> bool:
    ports = spec["mediaNodes"]["ports"]
    return bool(ports["rtpStart"] + _most_nodes(spec) * ports["rtpPerPod"] <= 65536)


def _control_apart(spec: dict[str, Any]) -> bool:
    ports, nodes = spec["mediaNodes"]["ports"], _most_nodes(spec)
    control, rtp = ports["controlStart"], ports["rtpStart"]
    return bool(control + nodes * 4 <= rtp or control >= rtp + nodes * ports["rtpPerPod"])


def _control_fit(spec: dict[str, Any]) -> bool:
    return bool(spec["mediaNodes"]["ports"]["controlStart"] + _most_nodes(spec) * 4 <= 65536)


def _enough_ports(spec: dict[str, Any]) -> bool:
    media = spec["mediaNodes"]
    return bool(media["ports"]["rtpPerPod"] >= 4 * media["maxSessions"])


def _static_address(spec: dict[str, Any]) -> bool:
    address = spec["mediaNodes"]["advertisedAddress"]
    return address["source"] != "Static" or "address" in address


def _min_below_max(spec: dict[str, Any]) -> bool:
    return bool(spec["autoscaling"]["minReplicas"] <= spec["autoscaling"]["maxReplicas"])


# The CRD's CEL rules on `spec` in Python, in the CRD's order with their fieldPath (test_cluster_spec.py
# checks that both judge the same examples alike).
RULES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    (".mediaNodes.ports.rtpPerPod", _enough_ports),
    (".mediaNodes.advertisedAddress", _static_address),
    (".autoscaling.minReplicas", _min_below_max),
    (".mediaNodes.ports", _ports_fit),
    (".mediaNodes.ports", _control_apart),
    (".mediaNodes.ports.controlStart", _control_fit),
)


def rule_problems(schema: dict[str, Any], spec: dict[str, Any]) -> list[Problem]:
    """The CRD's CEL rules on a spec the structural schema took (defaults filled in)."""
    rules = schema.get("x-kubernetes-validations", [])
    if [rule["fieldPath"] for rule in rules] != [path for path, _ in RULES]:
        raise ValueError("the CRD's rules on spec are not the ones karl_operator.cluster_spec knows")
    return [
        Problem("spec" + path, " ".join(rule["message"].split()))
        for rule, (path, check) in zip(rules, RULES, strict=True)
        if not check(spec)
    ]
