"""`EngineDriver.restore` in-process: a call written down by one engine is rebuilt by another — ports,
addresses, policy, counters and the RTCP statistics — and relays at once."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from karl_core.ng.commands import Command
from karl_core.ng.options import parse_options
from karl_core.session import CallState
from karl_medianode.clock import CoarseClock
from karl_medianode.control.engine_driver import EngineDriver
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import Relay
from karl_medianode.engine import EngineSettings
from karl_medianode.quality import CallQuality
from karl_medianode.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_receiver_report,
    build_sender_report,
)
from karl_testkit import free_port_block, run_async, sdp

MEDIA_IP = "127.0.0.2"


def reports(quality: CallQuality, now: float) -> None:
    """Both parties send an SR and report on each other's, echoing it: two MOS blocks."""
    rates = {0: 8000}
    quality.rtp_source(0xA, 0, "A", now)
    quality.rtp_source(0xB, 0, "B", now)
    for ssrc, middle in ((0xA, 0x12340000), (0xB, 0x56780000)):
        report = SenderReport(ssrc, 0xE9000000 | middle >> 16, (middle & 0xFFFF) << 16, 160, 10, 1600, ())
        quality.rtcp(build_sender_report(report), now, rates, "A" if ssrc == 0xA else "B")
    about_a = ReportBlock(0xA, 13, 5, 1000, 160, 0x12340000, 0x1000)
    quality.rtcp(build_receiver_report(ReceiverReport(0xB, (about_a,))), now + 0.125, rates, "B")
    about_b = ReportBlock(0xB, 0, 0, 1000, 80, 0x56780000, 0x1000)
    quality.rtcp(build_receiver_report(ReceiverReport(0xA, (about_b,))), now + 0.25, rates, "A")


def request(command: Command, **body: Any) -> Any:
    return parse_options({"command": command.value, **body}, command)


def make_engine(loop: asyncio.AbstractEventLoop, clock: CoarseClock, base: int) -> EngineDriver:
    ports = PortAllocator(MEDIA_IP, base, base + 39)
    return EngineDriver(EngineSettings(MEDIA_IP, MEDIA_IP), ports, Relay(loop, clock, ports.release), clock)


def started() -> tuple[asyncio.AbstractEventLoop, CoarseClock, int]:
    """The running loop, a started clock and a free media port range of 40 for the engines."""
    loop = asyncio.get_running_loop()
    clock = CoarseClock()
    clock.start(loop)
    return loop, clock, free_port_block(40, MEDIA_IP)


def test_a_call_written_down_by_one_engine_relays_again_in_another() -> None:
    async def scenario() -> None:
        loop, clock, base = started()
        first = make_engine(loop, clock, base)
        a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for party in (a, b):
            party.bind(("127.0.0.1", 0))
            party.setblocking(False)
        a_port, b_port = a.getsockname()[1], b.getsockname()[1]
        flags = {"flags": ["strict-source"], "endpoint-learning": ["immediate"]}
        offer = first.handle(
            Command.OFFER,
            request(Command.OFFER, **{"call-id": "c", "from-tag": "A", "sdp": sdp(a_port), **flags}),
        )
        answer = first.handle(
            Command.ANSWER,
            request(Command.ANSWER, **{"call-id": "c", "from-tag": "A", "to-tag": "B", "sdp": sdp(b_port)}),
        )
        to_b_side = int(offer["sdp"].split("m=audio ")[1].split()[0])
        to_a_side = int(answer["sdp"].split("m=audio ")[1].split()[0])
        a.sendto(b"\x80\x00\x00\x01" + b"\x00" * 168, (MEDIA_IP, to_a_side))
        assert len(await asyncio.wait_for(loop.sock_recv(b, 2048), 2)) == 172
        reports(first.calls["c"].quality, clock.now)  # what the parties' RTCP said so far
        query = request(Command.QUERY, **{"call-id": "c"})
        before = first.handle(Command.QUERY, query)
        state = first.snapshot("c")
        assert state is not None
        document = json.loads(json.dumps(state.to_dict()))
        first.close_all()
        await asyncio.sleep(0.05)  # let the event loop close the first engine's sockets

        second = make_engine(loop, clock, base)
        restored = second.restore(CallState.from_dict(document), clock.now)
        with pytest.raises(ValueError, match="exists already"):
            second.restore(CallState.from_dict(document), clock.now)
        after = second.handle(Command.QUERY, query)
        assert after["SSRC"] == before["SSRC"] != {}
        assert after["tags"] == before["tags"]  # ports, addresses, flags and counters
        caller_rtp, _ = second.media_streams(restored, 1, 1)
        assert caller_rtp is not None and caller_rtp.strict_source and caller_rtp.confirmed
        # media flows at once, both ways, on the same ports; the learned caller is still checked
        a.sendto(b"\x80\x00\x00\x02" + b"\x00" * 168, (MEDIA_IP, to_a_side))
        b.sendto(b"\x80\x00\x00\x02" + b"\x00" * 168, (MEDIA_IP, to_b_side))
        assert len(await asyncio.wait_for(loop.sock_recv(b, 2048), 2)) == 172
        assert len(await asyncio.wait_for(loop.sock_recv(a, 2048), 2)) == 172
        second.close_all()
        clock.stop()
        a.close()
        b.close()

    run_async(scenario(), timeout=20)


def test_on_another_host_streams_learn_again_and_a_taken_port_is_replaced() -> None:
    async def scenario() -> None:
        loop, clock, base = started()
        first = make_engine(loop, clock, base)
        first.handle(
            Command.OFFER, request(Command.OFFER, **{"call-id": "c", "from-tag": "A", "sdp": sdp(20000)})
        )
        state = first.snapshot("c")
        assert state is not None
        taken = {s.local_port for m in state.monologues.values() for media in m.medias for s in media.streams}
        # the first engine keeps its sockets: the same ports cannot be had again
        other = make_engine(loop, clock, base)
        call = other.restore(state, clock.now, same_host=False)
        ports = {s.local_port for s in other.streams_of(call)}
        assert len(ports) == len(taken) and not ports & taken
        assert not any(s.confirmed for s in other.streams_of(call))
        first.close_all()
        other.close_all()
        clock.stop()

    run_async(scenario(), timeout=20)
