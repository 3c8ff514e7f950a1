"""Shared by the test_http_* files (imported as `tests.medianode.test_http_support`): a media node with its
HTTP servers started in-process, on a uvloop event loop in a background thread, a small aiohttp client,
and NG/RTP helpers. Its own tests cover how the servers refuse to start."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import uvloop

from karl_core.admission import build_admission
from karl_core.config import KarlConfig
from karl_core.config.loader import build_config
from karl_core.ng import bencode
from karl_core.runtime import StartupError
from karl_medianode.cli import node_settings
from karl_medianode.node import MediaNode
from karl_medianode.operations.http import HttpServers, start_http
from karl_testkit import free_port, free_port_block, sdp

T = TypeVar("T")

LOOPBACK_SERVERS = {
    "api": {"address": "127.0.0.1"},
    "health": {"address": "127.0.0.1"},
    "metrics": {"address": "127.0.0.1"},
}


def make_config(
    media_ip: str = "127.0.0.2", ports: int = 40, settings: Mapping[str, Any] | None = None, **env: str
) -> KarlConfig:
    """A configuration for an in-process node on loopback; HTTP ports 0 = picked by the OS."""
    base = free_port_block(ports, media_ip)
    environ = {
        "KARL_NG_ADDRESS": "127.0.0.1",
        "KARL_NG_PORT": str(free_port()),
        "KARL_MEDIA_IP": media_ip,
        "KARL_RTP_MIN_PORT": str(base),
        "KARL_RTP_MAX_PORT": str(base + ports - 1),
        "KARL_API_PORT": "0",
        "KARL_HEALTH_PORT": "0",
        "KARL_METRICS_PORT": "0",
        "KARL_SHUTDOWN_GRACE": "0",
        "KARL_DELETE_DELAY": "0",
        "KARL_CDR_ENABLED": "false",
        **env,
    }
    merged: dict[str, Any] = {key: dict(value) for key, value in LOOPBACK_SERVERS.items()}
    for key, value in (settings or {}).items():
        merged[key] = {**merged.get(key, {}), **value}
    return build_config(merged, environ)


class NodeThread:
    """A MediaNode wired as the node's start-up does it: admission before `start()`, HTTP after."""

    def __init__(self, config: KarlConfig) -> None:
        self.config = config
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="karl-node", daemon=True)
        self._node: MediaNode | None = None

    @property
    def node(self) -> MediaNode:
        assert self._node is not None
        return self._node

    @property
    def servers(self) -> HttpServers:
        assert isinstance(self.node.http, HttpServers)
        return self.node.http

    def url(self, name: str, path: str = "") -> str:
        return self.servers.url(name) + path

    def start(self) -> NodeThread:
        self._thread.start()
        self.run_coro(self._start())
        return self

    async def _start(self) -> None:
        node = self._node = MediaNode(node_settings(self.config))
        node.admission = build_admission(self.config)
        await node.start()
        node.http = await start_http(node)
        node.startup_complete = True

    def run_coro(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn: Callable[[], T]) -> T:
        """Call `fn` on the node's event loop (the node is not thread-safe) and return its result."""

        async def call() -> T:
            return fn()

        return self.run_coro(call())

    def stop(self) -> None:
        if self._node is not None:
            node = self._node

            async def stop() -> None:
                if node.http is not None:
                    await node.http.stop()
                node.request_stop()
                await node.shutdown()

            try:
                self.run_coro(stop())
            finally:
                self._node = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def running_node(config: KarlConfig | None = None, **kwargs: Any) -> Iterator[NodeThread]:
    runner = NodeThread(config or make_config(**kwargs))
    try:
        yield runner.start()
    finally:
        runner.stop()


# ------------------------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        data = self.json()
        assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}, data
        return dict(data["error"])


def http(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    json_body: Any = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
    source: str | None = None,
) -> Reply:
    """One real HTTP request with aiohttp's client (from the test thread), optionally from `source`."""

    async def go() -> Reply:
        connector = aiohttp.TCPConnector(
            ssl=ssl_context if ssl_context is not None else False,
            local_addr=(source, 0) if source else None,
        )
        async with (
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as s,
            s.request(method, url, headers=headers, data=body, json=json_body) as r,
        ):
            return Reply(r.status, dict(r.headers), await r.read())

    return asyncio.run(go())


def get(url: str, key: str | None = None, **kwargs: Any) -> Reply:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return http("GET", url, headers=headers, **kwargs)


# ------------------------------------------------------------------------------------------- NG / RTP


class NgSource:
    """An NG client bound to a chosen loopback source address."""

    def __init__(self, server: tuple[str, int], source_ip: str = "127.0.0.1") -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source_ip, 0))
        # Unique per client: the node's reply cache answers a reused cookie with the old reply.
        self._prefix = secrets.token_hex(6)
        self._seq = 0

    def request(self, payload: dict[str, Any], timeout: float = 3.0, retransmit: float | None = None) -> Any:
        """The decoded reply, or None when none came within `timeout`. With `retransmit`, the same
        datagram (same cookie) is sent again every `retransmit` seconds, as SIP proxies do."""
        self._seq += 1
        cookie = f"{self._prefix}_{self._seq}".encode()
        datagram = cookie + b" " + bencode.encode(payload)
        deadline = time.monotonic() + timeout
        while True:
            self.sock.sendto(datagram, self.server)
            resend_at = time.monotonic() + (retransmit or timeout)
            while True:
                left = min(deadline, resend_at) - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65535)
                except TimeoutError:
                    break
                got, _, body = data.partition(b" ")
                if got == cookie:
                    return bencode.decode(body)
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        self.sock.close()


def ng_address(runner: NodeThread) -> tuple[str, int]:
    s = runner.node.settings
    return (s.ng_address, s.ng_port)


def media_port(sdp_text: str) -> int:
    match = re.search(r"^m=audio (\d+) ", sdp_text, re.M)
    assert match, sdp_text
    return int(match.group(1))


def rtp_packet(seq: int, ssrc: int = 0x1234, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160, ssrc) + b"\x11" * 160


def udp_party() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    return sock


@dataclass
class Call:
    call_id: str
    a: socket.socket
    b: socket.socket
    to_a_side: int  # the node's port A sends to
    to_b_side: int  # the node's port B sends to

    def close(self) -> None:
        self.a.close()
        self.b.close()


def offer(ng: NgSource, call_id: str, party: socket.socket, retransmit: float | None = None) -> Any:
    port = party.getsockname()[1]
    request = {"command": "offer", "call-id": call_id, "from-tag": "tagA", "sdp": sdp(port)}
    return ng.request(request, retransmit=retransmit)


def setup_call(ng: NgSource, call_id: str, retransmit: float | None = None) -> Call:
    """Offer from A, answer from B (both on 127.0.0.1), checked."""
    a, b = udp_party(), udp_party()
    made = offer(ng, call_id, a, retransmit)
    assert made is not None and made["result"] == "ok", made
    answered = ng.request(
        {
            "command": "answer",
            "call-id": call_id,
            "from-tag": "tagA",
            "to-tag": "tagB",
            "sdp": sdp(b.getsockname()[1]),
        },
        retransmit=retransmit,
    )
    assert answered is not None and answered["result"] == "ok", answered
    return Call(call_id, a, b, media_port(answered["sdp"]), media_port(made["sdp"]))


def relay_rtp(call: Call, media_ip: str, count: int = 10) -> None:
    """RTP from A reaches B and from B reaches A through the node."""
    sent = [rtp_packet(i) for i in range(count)]
    for packet in sent:
        call.a.sendto(packet, (media_ip, call.to_a_side))
    assert [call.b.recv(2048) for _ in sent] == sent
    back = [rtp_packet(i, ssrc=0x9999, pt=8) for i in range(count)]
    for packet in back:
        call.b.sendto(packet, (media_ip, call.to_b_side))
    assert [call.a.recv(2048) for _ in back] == back


# ------------------------------------------------------------------------------------------- tests


def _start_failure(config: KarlConfig) -> str:
    runner = NodeThread(config)
    try:
        with pytest.raises(StartupError) as caught:
            runner.start()
        return str(caught.value)
    finally:
        runner.stop()


def test_a_port_in_use_fails_start_up_naming_the_port_and_its_variable() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        for variable, name in (
            ("KARL_API_PORT", "REST API"),
            ("KARL_HEALTH_PORT", "health"),
            ("KARL_METRICS_PORT", "metrics"),
        ):
            message = _start_failure(make_config(**{variable: str(taken)}))
            assert f"{name} port {taken}" in message and variable in message, message
    finally:
        holder.close()


def test_unreadable_key_file_and_bad_tls_files_fail_start_up_without_showing_secrets(tmp_path: Path) -> None:
    message = _start_failure(make_config(KARL_API_KEYS_FILE=str(tmp_path / "missing")))
    assert "KARL_API_KEYS_FILE" in message and "missing" in message
    keys = tmp_path / "keys"
    keys.write_text("# operators\nread:s3cret-value-that-must-not-leak\nsuperuser:another-s3cret\n")
    message = _start_failure(make_config(KARL_API_KEYS_FILE=str(keys)))
    assert f"{keys} line 3" in message and "s3cret" not in message, message
    message = _start_failure(
        make_config(KARL_TLS_CERT=str(tmp_path / "nope.pem"), KARL_TLS_KEY=str(tmp_path / "nope.key"))
    )
    assert "nope.pem" in message and "KARL_TLS_CERT" in message
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n")
    message = _start_failure(make_config(KARL_TLS_CERT=str(bogus), KARL_TLS_KEY=str(bogus)))
    assert "KARL_TLS_CERT" in message and "not-a-key" not in message


def test_auth_enabled_without_any_key_refuses_to_start() -> None:
    message = _start_failure(make_config(settings={"api": {"auth_enabled": True}}))
    assert "api.auth_enabled" in message and "KARL_API_KEYS" in message
    with running_node(
        settings={"api": {"auth_enabled": True}}, KARL_API_KEYS="read:k-0123456789abcdefghijklmn"
    ) as runner:
        assert get(runner.url("api", "/api/v1/stats")).status == 401


def test_api_can_be_switched_off_while_health_and_metrics_stay(tmp_path: Path) -> None:
    with running_node(settings={"api": {"enabled": False}}) as runner:
        assert set(runner.servers.addresses) == {"health", "metrics"}
        assert get(runner.url("health", "/health")).json() == {"status": "UP"}
