"""Test kit shared by the whole suite (importable as `karl_testkit`): free ports, an NG client, condition
waiting, and launchers for a Karl media node and for the reference rtpengine daemon, all on loopback."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from karl_core.ng import bencode
from karl_core.state.lease import NodeLease

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
RTPENGINE = shutil.which("rtpengine") or "/usr/bin/rtpengine"

# Ports below the kernel's ephemeral range; each test process starts at a random place so that
# parallel runs on one machine rarely collide, and every candidate is checked by binding it.
_rng = random.Random(os.getpid() ^ int(time.time()))
_next_port = 10000 + _rng.randrange(0, 20000)


def _port_is_free(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, host: str = "127.0.0.1", *, even: bool = True) -> int:
    """First port of `count` consecutive ports that are free for UDP and TCP on `host`."""
    global _next_port
    for _ in range(2000):
        base = _next_port
        if even and base % 2:
            base += 1
        if base + count >= 32000:
            base = 10000
        _next_port = base + count
        if all(
            _port_is_free(host, p, socket.SOCK_DGRAM) and _port_is_free(host, p, socket.SOCK_STREAM)
            for p in range(base, base + count)
        ):
            return base
    raise RuntimeError("no free port block found")


def free_port(host: str = "127.0.0.1") -> int:
    return free_port_block(1, host, even=False)


@dataclass
class NgClient:
    """A minimal NG client: one UDP socket, bencoded requests, replies decoded to Python values."""

    address: tuple[str, int]
    sock: socket.socket = field(init=False)
    _seq: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._prefix = f"{random.getrandbits(32):08x}"
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))

    def next_cookie(self) -> bytes:
        # random per client: a new client must never reuse a cookie the node still has cached
        self._seq += 1
        return f"{os.getpid()}_{self._prefix}_{self._seq}".encode()

    def raw(self, datagram: bytes, timeout: float = 3.0) -> bytes | None:
        """Send one datagram; return the reply datagram or None if nothing came within `timeout`."""
        self.sock.settimeout(timeout)
        self.sock.sendto(datagram, self.address)
        try:
            return self.sock.recv(65535)
        except TimeoutError:
            return None

    def request(self, payload: dict[str, Any], cookie: bytes | None = None, timeout: float = 3.0) -> Any:
        cookie = cookie or self.next_cookie()
        reply = self.raw(cookie + b" " + bencode.encode(payload), timeout)
        if reply is None:
            raise TimeoutError(f"no NG reply from {self.address} to {payload.get('command')!r}")
        got_cookie, _, body = reply.partition(b" ")
        assert got_cookie == cookie, (got_cookie, cookie)
        return bencode.decode(body)

    def close(self) -> None:
        self.sock.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def wait_for_pong(client: NgClient, proc: subprocess.Popen[bytes], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if client.request({"command": "ping"}, timeout=0.2).get("result") == "pong":
                return
        except TimeoutError:
            continue
        time.sleep(0.02)  # it answered, not yet with pong (a router without a ready node): no flood
    raise RuntimeError(f"{what} did not answer ping within {timeout}s")


@dataclass
class NgServer:
    """A started NG server process (Karl or rtpengine) and what a test needs to talk to it."""

    name: str
    proc: subprocess.Popen[bytes]
    ng: NgClient
    media_ip: str
    port_min: int
    port_max: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.ng.close()
        return self.proc.returncode


def karl_env(
    media_ip: str, ng_port: int, port_min: int, port_max: int, extra: dict[str, str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARL_")}
    env.update(
        {
            "KARL_CONFIG_PATH": "/nonexistent/karl-test-config.json",
            "KARL_NG_ADDRESS": "127.0.0.1",
            "KARL_NG_PORT": str(ng_port),
            "KARL_MEDIA_IP": media_ip,
            "KARL_RTP_MIN_PORT": str(port_min),
            "KARL_RTP_MAX_PORT": str(port_max),
            "KARL_LOG_FORMAT": "text",
            "KARL_LOG_LEVEL": "info",
            "KARL_SHUTDOWN_GRACE": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key in ("KARL_API_PORT", "KARL_HEALTH_PORT", "KARL_METRICS_PORT"):
        env.setdefault(key, str(free_port()))
    # CDRs of test nodes go to a scratch directory, never to /var/lib/karl
    scratch = tempfile.mkdtemp(prefix="karl-test-")
    env.setdefault("KARL_CDR_PATH", f"{scratch}/cdr.jsonl")
    env.setdefault("KARL_CDR_SPOOL_DIR", f"{scratch}/cdr-spool")
    env.update(extra)
    return env


def _started(server: NgServer) -> NgServer:
    try:
        wait_for_pong(server.ng, server.proc, server.name)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{exc}\n--- {server.name} log ---\n{server.log()}") from exc
    return server


def start_rtpengine(
    log_dir: Path,
    media_ip: str = "127.0.0.3",
    ports: int = 200,
    extra: list[str] | None = None,
    name: str = "rtpengine",
) -> NgServer:
    """Start the reference rtpengine (userspace only, no config file) on loopback; waits for `ping`."""
    ng_port = free_port()
    port_min = free_port_block(ports, media_ip)
    port_max = port_min + ports - 1
    log_path = log_dir / f"{name}-{media_ip}-{ng_port}.log"
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
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return _started(
        NgServer(name, proc, NgClient(("127.0.0.1", ng_port)), media_ip, port_min, port_max, log_path)
    )


def start_karl(log_dir: Path, media_ip: str = "127.0.0.2", ports: int = 200, **env: str) -> NgServer:
    """Start a Karl media node (`python -m karl_medianode`) on loopback; waits for `ping`."""
    return start_karl_at(log_dir, media_ip, ports, free_port(), free_port_block(ports, media_ip), env)


def restart_karl(log_dir: Path, node: NgServer, env: dict[str, str]) -> NgServer:
    """Start Karl again where `node` was: the same NG port, media address and port range."""
    ports = node.port_max - node.port_min + 1
    return start_karl_at(log_dir, node.media_ip, ports, node.ng.address[1], node.port_min, env)


def start_karl_at(
    log_dir: Path, media_ip: str, ports: int, ng_port: int, port_min: int, env: dict[str, str]
) -> NgServer:
    port_max = port_min + ports - 1
    log_path = log_dir / f"karl-{media_ip}-{ng_port}.log"
    restarts = 1
    while log_path.exists():  # started again on the same ports: keep the earlier log
        restarts += 1
        log_path = log_dir / f"karl-{media_ip}-{ng_port}-{restarts}.log"
    full_env = karl_env(media_ip, ng_port, port_min, port_max, env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "karl_medianode"],
        env=full_env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    server = _started(
        NgServer("karl", proc, NgClient(("127.0.0.1", ng_port)), media_ip, port_min, port_max, log_path)
    )
    # NG answers before the HTTP servers (API, health, metrics) are up: wait for those too
    health = int(full_env.get("KARL_HEALTH_PORT", "0") or 0)
    if health:
        try:
            wait_for(lambda: tcp_listening("127.0.0.1", health) or proc.poll() is not None, timeout=10)
        except AssertionError:
            server.stop()
            raise
    return server


def tcp_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def run_karl_once(
    media_ip: str = "127.0.0.2", ng_port: int | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m karl_medianode` expecting it to refuse to start; returns its exit and output."""
    base = free_port_block(10, media_ip) if media_ip.startswith("127.") else 20000
    return subprocess.run(
        [sys.executable, "-m", "karl_medianode"],
        env=karl_env(media_ip, ng_port or free_port(), base, base + 9, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )


@dataclass
class Party:
    """A SIP endpoint's media side: an RTP and an RTCP socket (even/odd ports) on loopback."""

    rtp: socket.socket
    rtcp: socket.socket

    @property
    def port(self) -> int:
        return int(self.rtp.getsockname()[1])

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


def _bound_udp(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.settimeout(2.0)
    return sock


def make_party(host: str = "127.0.0.1") -> Party:
    """A party on a free even/odd port pair below the ephemeral range."""
    for _ in range(200):
        base = free_port(host)
        if base % 2:
            continue
        try:
            rtp = _bound_udp(host, base)
        except OSError:
            continue
        try:
            rtcp = _bound_udp(host, base + 1)
        except OSError:
            rtp.close()
            continue
        return Party(rtp, rtcp)
    raise RuntimeError("no free even/odd port pair for a test party")


def run_async(scenario: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine on a fresh uvloop event loop, bounded in time."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(scenario, timeout))


async def until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """`wait_for` for coroutines: poll `condition` on the event loop until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            # an Exception, not pytest.fail (a BaseException would escape the event loop)
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


def sdp(port: int, ip: str = "127.0.0.1", extra: str = "") -> str:
    """A plain SIP phone's audio offer/answer (PCMU, PCMA, telephone-event) at ip:port."""
    return (
        "v=0\r\n"
        f"o=- 1545997027 1 IN IP4 {ip}\r\n"
        "s=tester\r\n"
        f"c=IN IP4 {ip}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        f"{extra}"
        "a=sendrecv\r\n"
    )


def simple_rtp(seq: int) -> bytes:
    """A PCMU packet of 20 ms with sequence number `seq`."""
    return (
        bytes([0x80, 0])
        + seq.to_bytes(2, "big")
        + (seq * 160).to_bytes(4, "big")
        + b"\x00\x00\x12\x34"
        + b"\xff" * 160
    )


def port_of(reply: dict[str, Any], kind: str = "audio") -> int:
    line = next(line for line in reply["sdp"].split("\r\n") if line.startswith(f"m={kind} "))
    return int(line.split()[1])


class Talk:
    """Two parties sending RTP to each other through Karl every 5 ms, counting what arrives, with the
    longest silence each way."""

    def __init__(
        self, a: Party, to_a_side: int, b: Party, to_b_side: int, media_ip: str = "127.0.0.2"
    ) -> None:
        self.media_ip = media_ip
        self.parties = ((a, to_a_side), (b, to_b_side))
        self.received = [0, 0]
        self.longest_gap = [0.0, 0.0]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True)] + [
            threading.Thread(target=self._receive, args=(i,), daemon=True) for i in (0, 1)
        ]

    def _send(self) -> None:
        seq = 0
        while not self._stop.is_set():
            for party, port in self.parties:
                party.rtp.sendto(simple_rtp(seq), (self.media_ip, port))
            seq += 1
            time.sleep(0.005)

    def _receive(self, index: int) -> None:
        sock = self.parties[1 - index][0].rtp  # what one sends, the other receives
        sock.settimeout(0.2)
        last = None
        while not self._stop.is_set():
            try:
                sock.recv(2048)
            except TimeoutError:
                continue
            now = time.monotonic()
            if last is not None:
                self.longest_gap[index] = max(self.longest_gap[index], now - last)
            last = now
            self.received[index] += 1

    @contextmanager
    def running(self) -> Iterator[Talk]:
        for thread in self._threads:
            thread.start()
        try:
            wait_for(lambda: min(self.received) >= 20, timeout=5)
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(2)

    def flowing(self, more: int = 20) -> None:
        """Wait until `more` packets arrived each way after this point."""
        marks = list(self.received)
        wait_for(lambda: all(r >= m + more for r, m in zip(self.received, marks, strict=True)), timeout=5)


def established(node: NgServer, a: Party, b: Party, call_id: str) -> tuple[int, int]:
    """Offer from A and answer from B; the ports Karl gave each side (A sends to the first)."""
    offer = node.ng.request({"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": sdp(a.port)})
    answer = node.ng.request(
        {"command": "answer", "call-id": call_id, "from-tag": "A", "to-tag": "B", "sdp": sdp(b.port)}
    )
    assert offer["result"] == answer["result"] == "ok", (offer, answer)
    return port_of(answer), port_of(offer)


def bound_ports(server: NgServer) -> list[int]:
    """The server's media ports that are still bound (the tests bind none in its range)."""
    held = []
    for port in range(server.port_min, server.port_max + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((server.media_ip, port))
            except OSError:
                held.append(port)
    return held


def make_lease(node_id: str = "n1", boot_id: str = "boot-1", **changes: Any) -> NodeLease:
    """A node's lease for tests of the fleet's logic: ready, idle, room for 100 calls unless changed."""
    fields: dict[str, Any] = {
        "node_id": node_id,
        "boot_id": boot_id,
        "ng": "10.0.0.1:2223",
        "api": "10.0.0.1:8080",
        "media_ip": "10.0.0.1",
        "port_min": 20000,
        "port_max": 20999,
        "capacity": 100,
        "load": 0,
        "ready": True,
        "draining": False,
        "software": "karl test",
    }
    fields.update(changes)
    return NodeLease(**fields)
