"""The engine in-process: its call state serializes with live ports, addresses and counters."""

from __future__ import annotations

import asyncio
import json
import socket

from karl_core.ng.commands import Command
from karl_core.ng.options import parse_options
from karl_core.session import CallState, Endpoint
from karl_medianode.clock import CoarseClock
from karl_medianode.control.engine_driver import EngineDriver
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import Relay
from karl_medianode.engine import EngineSettings
from karl_testkit import free_port_block, run_karl_once


def _sdp(port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\n"
    )


def test_snapshot_carries_ports_endpoints_and_counters() -> None:
    async def scenario() -> tuple[dict[str, object], int, int]:
        loop = asyncio.get_running_loop()
        clock = CoarseClock()
        clock.start(loop)
        base = free_port_block(40, "127.0.0.2")
        ports = PortAllocator("127.0.0.2", base, base + 39)
        relay = Relay(loop, clock, ports.release)
        engine = EngineDriver(EngineSettings("127.0.0.2", "127.0.0.2"), ports, relay, clock)
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        a_port = a.getsockname()[1]
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b.bind(("127.0.0.1", 0))
        b.settimeout(2)
        offer = parse_options(
            {
                "command": "offer",
                "call-id": "snap",
                "from-tag": "A",
                "sdp": _sdp(a.getsockname()[1]),
                "flags": ["strict-source"],
                "endpoint-learning": ["immediate"],
            },
            Command.OFFER,
        )
        engine.handle(Command.OFFER, offer)
        answer = parse_options(
            {
                "command": "answer",
                "call-id": "snap",
                "from-tag": "A",
                "to-tag": "B",
                "sdp": _sdp(b.getsockname()[1]),
            },
            Command.ANSWER,
        )
        reply = engine.handle(Command.ANSWER, answer)
        to_proxy = int(reply["sdp"].split("m=audio ")[1].split()[0])
        a.sendto(b"\x80\x00" + b"\0" * 170, ("127.0.0.2", to_proxy))
        await loop.run_in_executor(None, b.recv, 2048)
        state = engine.snapshot("snap")
        assert state is not None
        live = engine.calls["snap"].state
        assert all(not m.streams for mono in live.monologues.values() for m in mono.medias), "not mutated"
        data = json.loads(json.dumps(state.to_dict()))
        engine.close_all()
        clock.stop()
        a.close()
        b.close()
        return data, to_proxy, a_port

    data, to_proxy, a_port = asyncio.run(asyncio.wait_for(scenario(), 10))
    state = CallState.from_dict(data)
    caller = state.by_tag("A")
    assert caller is not None
    rtp = caller.medias[0].streams[0]
    assert rtp.local_port == to_proxy and rtp.packets == 1 and rtp.bytes == 172
    assert rtp.advertised is not None and rtp.advertised.address == "127.0.0.1"
    assert [s.component for s in caller.medias[0].streams] == [1, 2]
    # what the offer asked for and what the first packet taught: enough to rebuild the stream elsewhere
    assert rtp.policy.strict_source and rtp.policy.learning == "immediate"
    assert rtp.learned == rtp.endpoint == Endpoint("127.0.0.1", a_port) and rtp.confirmed
    assert state.last_activity >= state.created


def test_unusable_media_address_stops_startup() -> None:
    proc = run_karl_once("192.0.2.77")  # TEST-NET: not an address of this host
    assert proc.returncode == 1
    assert "192.0.2.77" in proc.stderr and "KARL_MEDIA_IP" in proc.stderr
