"""The engine's timers, driven with times the test chooses: one deadline per call in a heap, checked
only when due; media moves a call's deadline without touching the heap (the check reschedules it)."""

from __future__ import annotations

from engine.engine_kit import T0, Engine, sdp
from karl_core.ng.commands import Command
from karl_medianode.engine import CallEnded, CloseStream
from karl_medianode.engine.calls import Call


class Counting(Engine):
    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)  # type: ignore[arg-type]
        self.checks = 0
        check = self.core._check_timers

        def counted(call: Call, now: float) -> None:
            self.checks += 1
            check(call, now)

        self.core._check_timers = counted  # type: ignore[method-assign]


def test_offer_media_and_delete_timers_fire_at_their_deadlines() -> None:
    engine = Counting(timeout=60.0, offer_timeout=30.0, delete_delay=10.0)
    core = engine.core
    engine.call("ringing", T0, answered=False)
    engine.call("talking", T0)
    assert core.next_deadline() == T0 + 30.0
    assert engine.tick(T0 + 29.9) == []
    assert engine.checks == 0 and set(core.calls) == {"ringing", "talking"}
    effects = engine.tick(T0 + 30.0)
    assert set(core.calls) == {"talking"} and core.counters.offer_timeout_sessions == 1
    ended = [e for e in effects if isinstance(e, CallEnded)]
    assert [(e.call_id, e.reason) for e in ended] == [("ringing", "offer timeout")]
    assert any(isinstance(e, CloseStream) for e in effects), "the ended call's ports are closed"
    assert core.next_deadline() == T0 + 60.0
    # media arrived at T0+50: the deadline that comes finds it and moves to T0+110
    for port in list(engine.media.open):
        engine.media.arrive(port, T0 + 50.0)
    engine.tick(T0 + 60.0)
    assert "talking" in core.calls and core.next_deadline() == T0 + 110.0
    # a delete with a delay: the call goes when the delay is over, not at its media timeout
    engine.do(Command.DELETE, T0 + 70.0, **{"call-id": "talking"})
    assert core.next_deadline() == T0 + 80.0
    engine.tick(T0 + 80.0)
    assert core.calls == {} and core.next_deadline() is None and engine.media.open == {}
    assert core.counters.timeout_sessions == 0 and core.counters.regular_terminated == 1


def test_a_tick_with_nothing_due_checks_no_call() -> None:
    engine = Counting(port_max=21999, timeout=60.0, offer_timeout=3600.0)
    core = engine.core
    for n in range(200):
        engine.call(f"c{n}", T0, answered=n % 2 == 0)
    for second in range(1, 60):
        assert engine.tick(T0 + second) == []
    assert engine.checks == 0, "a tick must not look at calls that are not due"
    engine.tick(T0 + 60.0)
    assert engine.checks == 100 and len(core.calls) == 100  # the answered ones timed out
    assert core.next_deadline() == T0 + 3600.0


def test_final_timeout_and_hold_use_their_own_limits() -> None:
    engine = Engine(timeout=60.0, silent_timeout=600.0, final_timeout=300.0)
    core = engine.core
    engine.call("held", T0)
    held = sdp(40000, direction="sendonly")
    engine.do(Command.OFFER, T0, **{"call-id": "held", "from-tag": "A", "sdp": held})
    back = sdp(40002, direction="recvonly")
    engine.do(Command.ANSWER, T0, **{"call-id": "held", "from-tag": "A", "to-tag": "B", "sdp": back})
    engine.tick(T0 + 120.0)  # past the media timeout, but on hold: the silent timeout counts
    assert "held" in core.calls
    engine.tick(T0 + 300.0)
    assert core.calls == {} and core.counters.final_timeout_sessions == 1


def test_a_failing_timer_of_one_call_does_not_stop_the_others() -> None:
    engine = Engine(timeout=60.0, offer_timeout=30.0)
    core = engine.core
    engine.call("broken", T0, answered=False)
    engine.call("fine", T0, answered=False)
    check = core._check_timers

    def failing(call: Call, now: float) -> None:
        if call.call_id == "broken":
            raise RuntimeError("a bug")
        check(call, now)

    core._check_timers = failing  # type: ignore[method-assign]
    effects = engine.tick(T0 + 30.0)
    assert [e.call_id for e in effects if isinstance(e, CallEnded)] == ["fine"]
    assert set(core.calls) == {"broken"} and core.next_deadline() == T0 + 31.0
    core._check_timers = check  # type: ignore[method-assign]
    engine.do(Command.QUERY, T0 + 30.5, **{"call-id": "broken"})  # the engine still serves requests
    engine.tick(T0 + 31.0)
    assert core.calls == {}
