"""The placement ring (`karl_core.state.placement`), shared by the NG router (new calls) and the
failover controller (a dead node's calls): the same call-id on the same nodes maps to the same node,
weighted by free capacity, and only nodes that take calls are on it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from karl_core.state.lease import NodeLease
from karl_core.state.placement import PlacementRing, weight_of
from karl_testkit import make_lease


def lease(node_id: str, **changes: Any) -> NodeLease:
    return make_lease(node_id, "b", **changes)


def test_first_is_the_head_of_candidates_and_two_rings_agree() -> None:
    one, two = PlacementRing(), PlacementRing()
    nodes = [lease("a"), lease("b"), lease("c", load=60)]
    assert one.update(nodes) and two.update(reversed(nodes))
    assert not one.update(nodes)  # unchanged weights: not rebuilt
    for index in range(500):
        call_id = f"call-{index}@host"
        assert one.first(call_id) == one.candidates(call_id)[0] == two.first(call_id)
        assert sorted(one.candidates(call_id)) == ["a", "b", "c"]
        assert one.candidates(call_id, {"a"}) == [n for n in one.candidates(call_id) if n != "a"]


def test_free_capacity_weighs_and_nodes_that_take_no_calls_are_off() -> None:
    ring = PlacementRing()
    ring.update([lease("idle"), lease("busy", load=90), lease("full", load=100), lease("off", draining=True)])
    assert set(ring.weights) == {"idle", "busy"}
    assert weight_of(lease("idle")) == 4 and weight_of(lease("busy", load=90)) == 1
    share = Counter(ring.first(f"c{i}") for i in range(4000))
    assert share["idle"] > 2.5 * share["busy"] > 0


def test_an_empty_ring_places_nothing() -> None:
    ring = PlacementRing()
    ring.update([lease("off", ready=False)])
    assert ring.first("x") is None and ring.candidates("x") == []
