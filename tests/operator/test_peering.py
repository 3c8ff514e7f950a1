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
    assert works(peers, 20, NOW) and not works(peers, 10, NOW)


def test_a_peer_past_its_lifetime_no_longer_counts() -> None:
    assert works({"b": peer(20, 61)}, 10, NOW)
    assert not works({"b": peer(20, 59)}, 10, NOW)
    assert works({"b": peer(20, 31, lifetime=30)}, 10, NOW)


def test_alone_or_with_unreadable_records_a_replica_works() -> None:
    assert works({}, 1, NOW)
    assert works({"x": "junk", "y": {"priority": 99, "lastseen": "not a time"}}, 1, NOW)
