"""The one log throttle every rate-limited message goes through (bad NG input, admission notices, CDR
outages), driven by a clock the test sets."""

from __future__ import annotations

from karl_core.logs import LogThrottle


def test_one_per_interval_per_kind_and_the_next_one_learns_what_was_left_out() -> None:
    throttle = LogThrottle(interval=10.0)
    assert throttle.allow("db", now=0.0) == 0
    assert [throttle.allow("db", now=t) for t in (1.0, 5.0, 9.9)] == [None, None, None]
    assert throttle.allow("file", now=2.0) == 0  # another kind has its own window
    assert throttle.allow("db", now=10.0) == 3
    assert throttle.allow("db", now=25.0) == 0


def test_a_burst_per_window_for_notices() -> None:
    throttle = LogThrottle(interval=10.0, burst=3)
    assert [throttle.allow(now=t) for t in (0.0, 0.1, 0.2, 0.3, 0.4)] == [0, 0, 0, None, None]
    assert throttle.allow(now=10.0) == 2


def test_reset_lets_the_next_message_out_and_keeps_the_count() -> None:
    throttle = LogThrottle(interval=30.0)
    assert throttle.allow("db", now=0.0) == 0
    assert throttle.allow("db", now=1.0) is None
    throttle.reset("db")  # the database came back: its next failure is news
    assert throttle.allow("db", now=2.0) == 1
    throttle.reset("never-seen")
    assert throttle.allow("never-seen", now=3.0) == 0
