"""The NG router's metric families (`karl-router`; the "NG router" section of docs/metrics.md) agree with
what `RouterCollector` exports, and the label values that section lists are the ones the router counts;
likewise the failover controller's ("Failover controller", `FailoverCollector`).

The router is built from its real parts, minus sockets (`idle_router`). That the alert rules and the
dashboard name only exported families, and that every router family is on the dashboard, is checked with
the node's in tests/medianode/test_metrics_docs.py.
"""

from __future__ import annotations

import inspect
import re

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

import karl_ngrouter.router
from karl_ngrouter.metrics import RouterCollector
from medianode.test_metrics_docs import (
    documented,
    exported,
    failover_exported,
    idle_router,
    router_exported,
    section,
)


def documented_values(name: str, label: str) -> set[str]:
    """The values the router's table lists for one label of a family: | `name` | … | `label`: a, b | …"""
    row = next(line for line in section("router") if line.startswith(f"| `{name}` |"))
    labels = row.strip().strip("|").split("|")[2]
    match = re.search(rf"`{label}`: ([a-z_, ]+)", labels)
    assert match, f"{name}: the values of {label} are not listed in {labels!r}"
    return {value.strip() for value in match.group(1).split(",")}


def test_router_docs_list_exactly_the_exported_families_with_their_types_and_labels() -> None:
    families = router_exported()
    docs = documented("router")
    assert len(families) >= 14, sorted(families)
    assert set(docs) - set(families) == set(), "documented but not exported"
    assert set(families) - set(docs) == set(), "exported but not documented"
    for name, (kind, labels) in docs.items():
        assert kind == families[name].type, (name, kind, families[name].type)
        assert labels == families[name].labels, (name, sorted(labels), sorted(families[name].labels))


def test_router_families_are_its_own_and_have_help() -> None:
    families = router_exported()
    assert all(name.startswith("karl_router_") for name in families), sorted(families)
    assert not set(families) & set(exported()), "the router exports a media node's family"
    for family in families.values():
        assert family.help.strip(), family.name


def test_no_router_label_can_carry_a_call_id_or_address() -> None:
    # `node` is a media node's id (KARL_NODE_ID): one value per node of the fleet
    allowed = {"command", "result", "node", "reason", "state"}
    for family in router_exported().values():
        assert family.labels <= allowed, (family.name, family.labels)


def test_exposition_of_an_idle_router_parses_and_keeps_counters_named_total() -> None:
    registry = CollectorRegistry()  # as `karl-router` serves /metrics
    registry.register(RouterCollector(idle_router()))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", generate_latest(registry).decode(), re.M))
    assert set(types) == set(router_exported())
    assert all(name.endswith("_total") for name, kind in types.items() if kind == "counter")


def test_documented_reasons_are_the_ones_the_router_counts() -> None:
    source = inspect.getsource(karl_ngrouter.router)
    retried = set(re.findall(r"\bretried\[\"(\w+)\"\]", source))
    refused = set(re.findall(r"\brefused\[\"(\w+)\"\]", source))
    refused |= set(re.findall(r"\brefuse_new_call\(\s*\w+,\s*\"(\w+)\"\)", source))
    refused |= set(re.findall(r"\breturn \"(\w+)\"", source))  # `_place`'s reasons, refused by its caller
    assert retried and refused
    # every reason the code counts is declared, and the declared ones are the documented ones
    assert retried <= set(karl_ngrouter.router.RETRY_REASONS)
    assert refused <= set(karl_ngrouter.router.REFUSAL_REASONS)
    assert documented_values("karl_router_retries_total", "reason") == set(karl_ngrouter.router.RETRY_REASONS)
    assert documented_values("karl_router_refused_total", "reason") == set(
        karl_ngrouter.router.REFUSAL_REASONS
    )


def test_documented_node_states_are_the_exported_ones() -> None:
    nodes = next(m for m in RouterCollector(idle_router()).collect() if m.name == "karl_router_nodes")
    states = {sample.labels["state"] for sample in nodes.samples}
    assert documented_values("karl_router_nodes", "state") == states


def test_request_labels_are_as_the_docs_describe_them() -> None:
    """The docs say the command and result are spelled as in the node's `karl_ng_commands_total`; a
    change of that must change the docs too."""
    app = idle_router()
    assert app.protocol is not None
    app.protocol.counters.record("block DTMF", "load limit", "192.0.2.1", 0.001)
    requests = next(m for m in RouterCollector(app).collect() if m.name == "karl_router_requests")
    labels = [sample.labels for sample in requests.samples]
    assert labels == [{"command": "block_dtmf", "result": "load_limit"}]
    text = "\n".join(section("router"))
    assert "`block_dtmf`" in text and "`load_limit`" in text


def test_failover_docs_list_exactly_the_exported_families_with_their_types_and_labels() -> None:
    families = failover_exported()
    docs = documented("failover")
    assert len(families) >= 10, sorted(families)
    assert set(docs) == set(families), (sorted(set(docs) - set(families)), sorted(set(families) - set(docs)))
    for name, (kind, labels) in docs.items():
        assert kind == families[name].type, (name, kind, families[name].type)
        assert labels == families[name].labels, (name, sorted(labels), sorted(families[name].labels))
    assert all(name.startswith("karl_failover_") for name in families)
    assert not set(families) & (set(exported()) | set(router_exported()))
