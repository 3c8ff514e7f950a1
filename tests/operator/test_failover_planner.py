"""The failover controller's decisions, without I/O (`karl_operator.failover.planner`): who is dead
(lease gone for the restart grace *and* a majority of the other members cannot reach it), and where
each of its calls goes (the ring without it, the next node when that one is full, none when no node
has room)."""

from __future__ import annotations

from typing import Any

from karl_core.state.lease import NodeLease
from karl_operator.failover.planner import DeathWatch, assign, room_of, survivors_ring
from karl_testkit import make_lease


def lease(node_id: str, **changes: Any) -> NodeLease:
    """No session limit of its own unless given (room without bound)."""
    return make_lease(node_id, "b", **{"capacity": 0, **changes})


def test_dead_only_after_the_grace_and_with_a_majority_of_the_others_reporting() -> None:
    watch = DeathWatch(restart_grace=2.0)
    leases = {"a": lease("a"), "b": lease("b"), "c": None}
    both = {"c": {"a", "b"}}
    assert watch.dead(leases, both, now=10.0) == []  # the grace starts now
    assert watch.dead(leases, both, now=11.9) == []
    assert watch.dead(leases, {"c": {"a"}}, now=12.0) == []  # one of two others: no majority
    assert watch.dead(leases, both, now=12.0) == ["c"]
    # its lease came back (a quick restart): the grace starts over next time it goes
    leases["c"] = lease("c")
    assert watch.dead(leases, both, now=12.5) == []
    leases["c"] = None
    assert watch.dead(leases, both, now=13.0) == []
    assert watch.dead(leases, both, now=15.0) == ["c"]


def test_a_node_kubernetes_says_is_gone_skips_the_grace_but_never_a_live_lease_or_the_majority() -> None:
    watch = DeathWatch(restart_grace=60.0)
    leases = {"a": lease("a"), "b": lease("b"), "c": lease("c")}
    both = {"c": {"a", "b"}}
    watch.known_gone("c")  # its pod was force-deleted
    assert watch.dead(leases, both, now=10.0) == []  # its lease is still live: never
    leases["c"] = None
    assert watch.dead(leases, {"c": {"a"}}, now=10.5) == []  # no majority yet
    assert watch.dead(leases, both, now=10.5) == ["c"]  # no 60 s grace
    # back (a new pod with its name): forgotten, the grace holds for its next absence
    leases["c"] = lease("c")
    assert watch.dead(leases, both, now=11.0) == []
    leases["c"] = None
    assert watch.dead(leases, both, now=12.0) == []


def test_reports_of_members_without_a_lease_do_not_count() -> None:
    # a minority that still reaches Redis cannot declare the majority dead: a and b are both gone
    watch = DeathWatch(restart_grace=0.0)
    leases = {"a": None, "b": None, "c": lease("c")}
    reports = {"a": {"c", "b"}, "b": {"c", "a"}}
    assert watch.dead(leases, reports, now=1.0) == []


def test_two_members_one_report_is_a_majority_of_the_other_one() -> None:
    watch = DeathWatch(restart_grace=0.0)
    assert watch.dead({"a": lease("a"), "b": None}, {"b": {"a"}}, now=1.0) == ["b"]
    assert DeathWatch(0.0).dead({"b": None}, {}, now=1.0) == []  # alone: nobody to judge


def test_calls_go_to_the_ring_without_the_dead_node_and_to_the_next_when_it_is_full() -> None:
    leases = {"a": lease("a", capacity=2, load=1), "b": lease("b"), "dead": None}
    ring = survivors_ring(leases, ["dead"])
    room = room_of(lease for lease in leases.values() if lease is not None)
    assert room == {"a": 1, "b": None}
    calls = [f"call-{i}" for i in range(20)]
    plan = assign(calls, ring, room)
    assert set(plan.values()) == {"a", "b"}
    assert list(plan.values()).count("a") == 1  # a had room for one more
    first_choice = {call_id: ring.candidates(call_id)[0] for call_id in calls}
    assert any(first_choice[c] == "a" and plan[c] == "b" for c in calls)  # a was full: the next one


def test_without_room_anywhere_a_call_is_not_assigned() -> None:
    leases = {
        "a": lease("a", capacity=1, load=1),
        "b": lease("b", draining=True),
        "c": lease("c", ready=False),
    }
    ring = survivors_ring(leases, [])
    plan = assign(["x", "y"], ring, room_of(leases.values()))
    assert plan == {"x": None, "y": None}


def test_calls_go_only_to_nodes_that_read_their_state_schema() -> None:
    # a rolling upgrade: the dead node wrote schema 4; node "old" reads only up to 3
    leases = {"new": lease("new", state_schema=4), "old": lease("old", state_schema=3), "dead": None}
    ring = survivors_ring(leases, ["dead"], state_schema=4)
    assert set(ring.weights) == {"new"}
    plan = assign([f"c{i}" for i in range(10)], ring, room_of(x for x in leases.values() if x is not None))
    assert set(plan.values()) == {"new"}
    # calls of a node that wrote schema 3 may go to both
    assert set(survivors_ring(leases, ["dead"], state_schema=3).weights) == {"new", "old"}
