"""Fixtures shared by the whole suite; the helpers they use live in `karl_testkit`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from karl_testkit import RTPENGINE, NgServer, Party, make_party, start_karl, start_rtpengine


@pytest.fixture
def karl_factory(tmp_path: Path) -> Iterator[Callable[..., NgServer]]:
    """Start Karl media nodes: `karl_factory(media_ip="127.0.0.2", ports=200, KARL_X="v")`."""
    started: list[NgServer] = []

    def start(media_ip: str = "127.0.0.2", ports: int = 200, **env: str) -> NgServer:
        server = start_karl(tmp_path, media_ip, ports, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def rtpengine_factory(tmp_path: Path) -> Iterator[Callable[..., NgServer]]:
    """Start the reference rtpengine: `rtpengine_factory(media_ip="127.0.0.3", ports=200, extra=[...])`."""
    if not Path(RTPENGINE).exists():
        pytest.skip("the reference rtpengine daemon is not installed (Debian package rtpengine-daemon)")
    started: list[NgServer] = []

    def start(media_ip: str = "127.0.0.3", ports: int = 200, extra: list[str] | None = None) -> NgServer:
        server = start_rtpengine(tmp_path, media_ip, ports, extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def parties() -> Iterator[Callable[[], Party]]:
    """Make SIP media endpoints: `a = parties()` gives RTP/RTCP sockets on 127.0.0.1 (closed after)."""
    made: list[Party] = []

    def make() -> Party:
        made.append(make_party())
        return made[-1]

    yield make
    for party in made:
        party.close()
