"""Fixtures of the socket-free engine tests: `engine_server()` gives a fresh `InProcessServer` around a
fresh pure call engine (`karl_medianode.engine`), with no media (`NoMedia`) and a port range no socket
is ever bound on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.engine_server import Dispatch, InProcessServer, ReplyFits
from karl_core.ng.commands import Command
from karl_core.ng.options import NgOptions
from karl_core.ng.server import NgCounters

MEDIA_IP = "127.0.0.2"
PORT_MIN, PORT_MAX = 30000, 30399  # 400 ports, as the reference rtpengine had for the goldens
DELETE_DELAY = 30.0  # as the reference rtpengine had


def pure_engine_dispatch(media_ip: str, port_min: int, port_max: int, counters: NgCounters) -> Dispatch:
    """A fresh pure engine behind the in-process server's dispatch, answering what the media node
    answers (`statistics` from the engine's counters and the server's per-proxy `counters`)."""
    from karl_medianode.engine import CallEngine, EngineSettings, NoMedia, PortRange
    from karl_medianode.operations.node_stats import statistics

    engine = CallEngine(
        EngineSettings(advertised_ip=media_ip, media_ip=media_ip, delete_delay=DELETE_DELAY),
        PortRange(port_min, port_max),
        NoMedia(),
    )
    started: list[float] = []

    def dispatch(command: Command, options: NgOptions, now: float, fits: ReplyFits) -> dict[str, Any]:
        started[:] = started or [now]
        if command is Command.STATISTICS:
            return {"result": "ok", "statistics": statistics(engine, counters.by_proxy, now - started[0])}
        outcome = engine.handle(command, options, now, fits)
        reply: dict[str, Any] = outcome.reply
        return reply

    return dispatch


@pytest.fixture
def engine_server() -> Callable[[], InProcessServer]:
    """Make an in-process NG server around a new engine: `server = engine_server()`."""

    def make() -> InProcessServer:
        counters = NgCounters()
        dispatch = pure_engine_dispatch(MEDIA_IP, PORT_MIN, PORT_MAX, counters)
        return InProcessServer(
            dispatch, media_ip=MEDIA_IP, port_min=PORT_MIN, port_max=PORT_MAX, counters=counters
        )

    return make
