"""What the operator tests share about the KarlCluster CRD: where it is, manifests of KarlClusters, and
creating them on the test control plane (loaded by conftest.py under this name; `karl_crd` is its
fixture there)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "karlcluster.yaml"
PEERING_CRD_FILE = ROOT / "crds" / "kopf-peering.yaml"
GROUP, VERSION, PLURAL, KIND = "karl.io", "v1alpha1", "karlclusters", "KarlCluster"


def load_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return crd


def cluster(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec if spec is not None else {},
    }


def message_of(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.body)


def documented_yaml(starting: str) -> str:
    """The YAML block of docs/kubernetes.md that starts with `starting`."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    blocks = [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]
    [found] = [block for block in blocks if block.startswith(starting)]
    return found


def installed_crd(kube: Any) -> Iterator[Any]:
    """The CRD created on the server, Established (deleted afterwards)."""
    crd = load_crd()
    yield established(kube, crd)
    client.ApiextensionsV1Api(kube).delete_custom_resource_definition(crd["metadata"]["name"])


def kopf_peering_crds(kube: Any) -> list[Any]:
    """kopf's peering CRDs (crds/kopf-peering.yaml) on the server, Established. Kept: `helm install`
    makes them too (Helm never deletes the CRDs it installs)."""
    return [established(kube, crd) for crd in yaml.safe_load_all(PEERING_CRD_FILE.read_text())]


def established(kube: Any, crd: dict[str, Any]) -> Any:
    """Create the CRD (unless it exists) and wait until the server serves it."""
    extensions: Any = client.ApiextensionsV1Api(kube)
    name = crd["metadata"]["name"]
    try:
        extensions.create_custom_resource_definition(crd)
    except ApiException as error:
        if error.status != 409:
            raise
    deadline = time.monotonic() + 30
    while True:
        found = extensions.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in (found.status.conditions or [])}
        if conditions.get("Established") == "True":
            return found
        assert conditions.get("NonStructuralSchema") != "True", found.status.conditions
        assert time.monotonic() < deadline, f"CRD {name} not Established: {found.status.conditions}"
        time.sleep(0.2)


def create(objects: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return created


def refused(objects: Any, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        create(objects, namespace, body)
    assert caught.value.status == 422, caught.value.body
    return message_of(caught.value)
