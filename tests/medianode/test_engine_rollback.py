"""The engine in-process: a fault in the middle of a re-offer (here: the kernel refusing a socket while
its ports are bound) leaves the call exactly as it was — state, ports and forwarding — and is reported
as an error."""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest

from karl_core.ng.commands import Command
from karl_core.ng.options import parse_options
from karl_medianode.clock import CoarseClock
from karl_medianode.control.engine_driver import EngineDriver
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import Relay
from karl_medianode.engine import EngineSettings
from karl_testkit import free_port_block, run_async, sdp, until

MEDIA_IP = "127.0.0.2"


class FaultyPorts(PortAllocator):
    """Ports whose next binding fails the way a socket refused by the kernel would."""

    fail_after: int | None = None

    def _bind(self, port: int) -> socket.socket | None:
        if self.fail_after is not None:
            if self.fail_after == 0:
                self.fail_after = None
                raise OSError(errno.EPERM, "refused by the kernel (simulated)")
            self.fail_after -= 1
        return super()._bind(port)


def request(command: Command, **body: Any) -> Any:
    return parse_options({"command": command.value, **body}, command)


def test_a_fault_halfway_through_a_reoffer_changes_nothing() -> None:
    async def scenario() -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        clock = CoarseClock()
        clock.start(loop)
        base = free_port_block(40, MEDIA_IP)
        ports = FaultyPorts(MEDIA_IP, base, base + 39)
        relay = Relay(loop, clock, ports.release)
        engine = EngineDriver(EngineSettings(MEDIA_IP, MEDIA_IP), ports, relay, clock)
        a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for party in (a, b):
            party.bind(("127.0.0.1", 0))
            party.setblocking(False)
        a_port, b_port = a.getsockname()[1], b.getsockname()[1]
        try:
            offer = engine.handle(
                Command.OFFER, request(Command.OFFER, **{"call-id": "c", "from-tag": "A", "sdp": sdp(a_port)})
            )
            answer = engine.handle(
                Command.ANSWER,
                request(
                    Command.ANSWER, **{"call-id": "c", "from-tag": "A", "to-tag": "B", "sdp": sdp(b_port)}
                ),
            )
            to_b_side = int(offer["sdp"].split("m=audio ")[1].split()[0])
            to_a_side = int(answer["sdp"].split("m=audio ")[1].split()[0])
            query = request(Command.QUERY, **{"call-id": "c"})
            before, in_use = engine.handle(Command.QUERY, query), ports.in_use

            # a re-INVITE moving the caller and adding video; the third socket it opens is refused
            moved = sdp(a_port + 10) + f"m=video {a_port + 12} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
            ports.fail_after = 2
            with pytest.raises(OSError, match="simulated"):
                engine.handle(
                    Command.OFFER, request(Command.OFFER, **{"call-id": "c", "from-tag": "A", "sdp": moved})
                )
            assert engine.handle(Command.QUERY, query) == before
            assert engine.counters.failed_changes == 1
            await until(lambda: ports.in_use == in_use, "the ports the failed re-offer bound are free again")

            # media still flows both ways on the old ports, to the old addresses
            a.sendto(b"\x80\x00\x00\x01" + b"\x00" * 168, (MEDIA_IP, to_a_side))
            b.sendto(b"\x80\x00\x00\x01" + b"\x00" * 168, (MEDIA_IP, to_b_side))
            assert len(await asyncio.wait_for(loop.sock_recv(b, 2048), 2)) == 172
            assert len(await asyncio.wait_for(loop.sock_recv(a, 2048), 2)) == 172

            # and the same re-offer goes through once the kernel lets it
            again = engine.handle(
                Command.OFFER, request(Command.OFFER, **{"call-id": "c", "from-tag": "A", "sdp": moved})
            )
            assert "m=video" in again["sdp"]
        finally:
            engine.close_all()
            clock.stop()
            a.close()
            b.close()

    run_async(scenario(), timeout=20)
