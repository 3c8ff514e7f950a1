"""`karl_operator.peering.works`: a replica works while no live peer has a higher priority."""

from __future__ import annotations

import datetime

from karl_operator.peering import works

NOW = datetime.datetime(2026, 12, 6, 12, 0, 0, tzinfo=datetime.UTC)


def peer(priority: int, seconds_ago: float, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lastseen": seen.isoformat(), "lifetime": lifetime}


def test_the_highest_live_priority_works_and_the_others_wait() -> None:
    peers = {"a": peer(10, 1), "b": peer(20, 1)}
    assert works(peers, "b", 20, NOW) and not works(peers, "a", 10, NOW)


def test_a_shared_priority_pauses_both_as_kopf_does() -> None:
    peers = {"a": peer(20, 1), "b": peer(20, 1)}
    assert not works(peers, "a", 20, NOW) and not works(peers, "b", 20, NOW)


def test_a_peer_past_its_lifetime_no_longer_counts() -> None:
    assert works({"b": peer(20, 61)}, "a", 10, NOW)
    assert not works({"b": peer(20, 59)}, "a", 10, NOW)
    assert works({"b": peer(20, 31, lifetime=30)}, "a", 10, NOW)


def test_alone_or_with_unreadable_records_a_replica_works() -> None:
    assert works({}, "a", 1, NOW) and works({"a": peer(1, 1)}, "a", 1, NOW)
    junk = {"x": "junk", "y": {"priority": 99, "lastseen": "not a time"}, "z": {"priority": "high"}}
    assert works(junk, "a", 1, NOW)


def test_a_peer_that_says_no_time_counts_as_live_as_in_kopf() -> None:
    assert not works({"b": {"priority": 20}}, "a", 10, NOW)
