"""The engine's timers with a clock the test sets: one deadline per call in a heap, checked only when
due; media moves a call's deadline without touching the heap (the check reschedules it)."""

from __future__ import annotations

from typing import Any

from karl_core.ng.commands import Command
from karl_core.ng.options import parse_options
from karl_medianode.clock import CoarseClock
from karl_medianode.control.calls import Call
from karl_medianode.control.engine import CallEngine, EngineSettings
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import Relay
from karl_testkit import free_port_block, run_async, sdp

MEDIA_IP = "127.0.0.2"
T0 = 1_800_000_000.0


class CountingEngine(CallEngine):
    checks = 0

    def _check_timers(self, call: Call, now: float) -> None:
        self.checks += 1
        super()._check_timers(call, now)


def request(command: Command, **body: Any) -> Any:
    return parse_options({"command": command.value, **body}, command)


async def engine_at(clock: CoarseClock, ports: int = 400, **settings: Any) -> CountingEngine:
    import asyncio

    base = free_port_block(ports, MEDIA_IP)
    allocator = PortAllocator(MEDIA_IP, base, base + ports - 1)
    relay = Relay(asyncio.get_running_loop(), clock, allocator.release)
    return CountingEngine(EngineSettings(MEDIA_IP, MEDIA_IP, **settings), allocator, relay, clock)


def call(engine: CallEngine, call_id: str, answered: bool = True) -> None:
    engine.offer(request(Command.OFFER, **{"call-id": call_id, "from-tag": "A", "sdp": sdp(20000)}))
    if answered:
        engine.answer(
            request(Command.ANSWER, **{"call-id": call_id, "from-tag": "A", "to-tag": "B", "sdp": sdp(20002)})
        )


def test_offer_media_and_delete_timers_fire_at_their_deadlines() -> None:
    async def scenario() -> None:
        clock = CoarseClock()
        clock.now = T0
        engine = await engine_at(clock, timeout=60.0, offer_timeout=30.0, delete_delay=10.0)
        try:
            call(engine, "ringing", answered=False)
            call(engine, "talking")
            assert engine.next_deadline() == T0 + 30.0
            engine.handle_timer(T0 + 29.9)
            assert engine.checks == 0 and set(engine.calls) == {"ringing", "talking"}
            engine.handle_timer(T0 + 30.0)
            assert set(engine.calls) == {"talking"} and engine.counters.offer_timeout_sessions == 1
            assert engine.next_deadline() == T0 + 60.0
            # media arrived at T0+50: the deadline that comes finds it and moves to T0+110
            for stream in engine.calls["talking"].all_streams():
                stream.last_packet = T0 + 50.0
            engine.handle_timer(T0 + 60.0)
            assert "talking" in engine.calls and engine.next_deadline() == T0 + 110.0
            # a delete with a delay: the call goes when the delay is over, not at its media timeout
            clock.now = T0 + 70.0
            engine.delete(request(Command.DELETE, **{"call-id": "talking"}))
            assert engine.next_deadline() == T0 + 80.0
            engine.handle_timer(T0 + 80.0)
            assert engine.calls == {} and engine.next_deadline() is None
            assert engine.counters.timeout_sessions == 0 and engine.counters.regular_terminated == 1
        finally:
            engine.close_all()

    run_async(scenario(), timeout=20)


def test_a_tick_with_nothing_due_checks_no_call() -> None:
    async def scenario() -> None:
        clock = CoarseClock()
        clock.now = T0
        engine = await engine_at(clock, ports=1000, timeout=60.0, offer_timeout=3600.0)
        try:
            for n in range(200):
                call(engine, f"c{n}", answered=n % 2 == 0)
            for second in range(1, 60):
                engine.handle_timer(T0 + second)
            assert engine.checks == 0, "a tick must not look at calls that are not due"
            engine.handle_timer(T0 + 60.0)
            assert engine.checks == 100 and len(engine.calls) == 100  # the answered ones timed out
            assert engine.next_deadline() == T0 + 3600.0
        finally:
            engine.close_all()

    run_async(scenario(), timeout=30)


def test_final_timeout_and_hold_use_their_own_limits() -> None:
    async def scenario() -> None:
        clock = CoarseClock()
        clock.now = T0
        engine = await engine_at(clock, timeout=60.0, silent_timeout=600.0, final_timeout=300.0)
        try:
            call(engine, "held")
            held = sdp(20000).replace("a=sendrecv", "a=sendonly")
            engine.offer(request(Command.OFFER, **{"call-id": "held", "from-tag": "A", "sdp": held}))
            back = sdp(20002).replace("a=sendrecv", "a=recvonly")
            engine.answer(
                request(Command.ANSWER, **{"call-id": "held", "from-tag": "A", "to-tag": "B", "sdp": back})
            )
            engine.handle_timer(T0 + 120.0)  # past the media timeout, but on hold: the silent timeout counts
            assert "held" in engine.calls
            engine.handle_timer(T0 + 300.0)
            assert engine.calls == {} and engine.counters.final_timeout_sessions == 1
        finally:
            engine.close_all()

    run_async(scenario(), timeout=20)
