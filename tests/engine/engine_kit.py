"""A pure call engine for tests: ports from a `PortRange` no socket is bound on, and a data plane made
of numbers (`FakeMedia`: what packets did is whatever the test says). No sockets, no event loop, no
clock: the test passes the time to every call."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from karl_core.ng.commands import Command
from karl_core.ng.options import NgOptions, parse_options
from karl_medianode.engine import (
    CallEngine,
    CloseStream,
    Effect,
    EngineSettings,
    OpenStream,
    PortRange,
    Reading,
)

MEDIA_IP = "127.0.0.2"
T0 = 1_800_000_000.0


class FakeMedia:
    """The engine's `MediaView` over streams the effects opened; `arrive` says a packet came. Like
    the relay, it gives a closed stream's port back to the pool."""

    def __init__(self, ports: PortRange) -> None:
        self.ports = ports
        self.open: dict[int, Reading] = {}
        self.effects: list[Effect] = []

    def apply(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            self.effects.append(effect)
            if isinstance(effect, OpenStream):
                assert effect.spec.port not in self.open, f"port {effect.spec.port} opened twice"
                self.open[effect.spec.port] = Reading()
            elif isinstance(effect, CloseStream):
                assert effect.port in self.open, f"port {effect.port} closed but never opened"
                del self.open[effect.port]
                self.ports.unreserve(effect.port)

    def arrive(self, port: int, at: float, size: int = 172) -> None:
        seen = self.open[port]
        self.open[port] = replace(seen, packets=seen.packets + 1, bytes=seen.bytes + size, last_packet=at)

    def read(self, port: int) -> Reading | None:
        return self.open.get(port)

    def last_packet(self, ports: Iterable[int]) -> float:
        return max((self.open[p].last_packet for p in ports if p in self.open), default=0.0)


def request(command: Command, **body: Any) -> NgOptions:
    return parse_options({"command": command.value, **body}, command)


def sdp(port: int, address: str = "127.0.0.1", direction: str = "sendrecv") -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a={direction}\r\n"
    )


class Engine:
    """An engine, its fake data plane and its ports; `do` applies a request's effects to the media."""

    def __init__(self, port_min: int = 20000, port_max: int = 20999, **settings: Any) -> None:
        self.ports = PortRange(port_min, port_max)
        self.media = FakeMedia(self.ports)
        self.core = CallEngine(EngineSettings(MEDIA_IP, MEDIA_IP, **settings), self.ports, self.media)

    def do(self, command: Command, now: float, **body: Any) -> dict[str, Any]:
        outcome = self.core.handle(command, request(command, **body), now)
        self.media.apply(outcome.effects)
        return outcome.reply

    def tick(self, now: float) -> list[Effect]:
        effects = self.core.handle_timer(now)
        self.media.apply(effects)
        return effects

    def call(self, call_id: str, now: float, answered: bool = True) -> None:
        self.do(Command.OFFER, now, **{"call-id": call_id, "from-tag": "A", "sdp": sdp(40000)})
        if answered:
            body = {"call-id": call_id, "from-tag": "A", "to-tag": "B", "sdp": sdp(40002)}
            self.do(Command.ANSWER, now, **body)
