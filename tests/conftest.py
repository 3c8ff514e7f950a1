"""Fixtures shared by the whole suite; the helpers they use live in `karl_testkit`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from karl_testkit import (
    ROOT,
    RTPENGINE,
    NgClient,
    NgServer,
    free_port,
    free_port_block,
    karl_env,
    wait_for_pong,
)


@pytest.fixture
def karl_factory(tmp_path: Path) -> Iterator[Callable[..., NgServer]]:
    """Start Karl media nodes: `karl_factory(media_ip="127.0.0.2", ports=200, **{"KARL_X": "v"})`."""
    started: list[NgServer] = []

    def start(media_ip: str = "127.0.0.2", ports: int = 200, **env: str) -> NgServer:
        ng_port = free_port()
        port_min = free_port_block(ports, media_ip)
        port_max = port_min + ports - 1
        log_path = tmp_path / f"karl-{len(started)}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "karl_medianode"],
            env=karl_env(media_ip, ng_port, port_min, port_max, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        server = NgServer(
            "karl", proc, NgClient(("127.0.0.1", ng_port)), media_ip, port_min, port_max, log_path
        )
        started.append(server)
        try:
            wait_for_pong(server.ng, proc, "karl")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- karl log ---\n{server.log()}") from exc
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
        ng_port = free_port()
        port_min = free_port_block(ports, media_ip)
        port_max = port_min + ports - 1
        log_path = tmp_path / f"rtpengine-{len(started)}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [
                RTPENGINE,
                "--config-file=none",
                "--table=-1",
                "--foreground",
                "--log-stderr",
                "--log-level=6",
                f"--interface={media_ip}",
                f"--listen-ng=127.0.0.1:{ng_port}",
                f"--port-min={port_min}",
                f"--port-max={port_max}",
                *(extra or []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = NgServer(
            "rtpengine", proc, NgClient(("127.0.0.1", ng_port)), media_ip, port_min, port_max, log_path
        )
        started.append(server)
        try:
            wait_for_pong(server.ng, proc, "rtpengine")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- rtpengine log ---\n{server.log()}") from exc
        return server

    yield start
    for server in started:
        server.stop()
