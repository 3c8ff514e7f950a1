"""A small, self-contained NG (bencode over UDP) client for the benchmarks.

It is deliberately independent of ``karl_core`` so that the benchmarks run against any NG server
at any time. ``transact`` sends one request and waits for its reply; ``pipeline`` keeps a window of
requests in flight and matches replies by cookie, which is what makes call set-up for thousands of
calls (and the "K in flight" control-plane figure) cheap for the client.
"""

from __future__ import annotations

import itertools
import os
import secrets
import selectors
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
BValue = int | bytes | str | list["BValue"] | dict[str, "BValue"]


class NGError(Exception):
    """The server did not answer, or answered with something that is not a reply dictionary."""


def bencode(value: BValue) -> bytes:
    out: list[bytes] = []
    _encode_into(value, out)
    return b"".join(out)


def _encode_into(value: BValue, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TypeError("bool has no bencode form")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str):
        raw = value.encode()
        out.append(b"%d:%s" % (len(raw), raw))
    elif isinstance(value, bytes):
        out.append(b"%d:%s" % (len(value), value))
    elif isinstance(value, list):
        out.append(b"l")
        for item in value:
            _encode_into(item, out)
        out.append(b"e")
    else:
        out.append(b"d")
        for key, item in value.items():
            _encode_into(key, out)
            _encode_into(item, out)
        out.append(b"e")


def bdecode(data: bytes) -> BValue:
    """Decode one bencoded value; strings come back as ``str`` (UTF-8, errors replaced)."""
    value, end = _decode_at(data, 0)
    if end != len(data):
        raise NGError(f"trailing bytes after bencode value at offset {end}")
    return value


def _decode_at(data: bytes, pos: int) -> tuple[BValue, int]:
    if pos >= len(data):
        raise NGError("truncated bencode")
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1 : end]), end + 1
    if lead == b"l":
        items: list[BValue] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode_at(data, pos)
            items.append(item)
        return items, pos + 1
    if lead == b"d":
        result: dict[str, BValue] = {}
        pos += 1
        while data[pos : pos + 1] != b"e":
            key, pos = _decode_at(data, pos)
            if not isinstance(key, str):
                raise NGError("non-string dictionary key")
            result[key], pos = _decode_at(data, pos)
        return result, pos + 1
    if lead.isdigit():
        colon = data.index(b":", pos)
        length = int(data[pos:colon])
        start = colon + 1
        if start + length > len(data):
            raise NGError("truncated bencode string")
        return data[start : start + length].decode(errors="replace"), start + length
    raise NGError(f"bad bencode byte {lead!r} at offset {pos}")


Reply = dict[str, BValue]


@dataclass(frozen=True)
class Timed:
    """A reply together with the time it took (send to receive, nanoseconds)."""

    reply: Reply
    latency_ns: int


class NGClient:
    """Blocking NG client on one UDP socket. Not thread-safe; one per process."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0, retries: int = 2) -> None:
        self.server = (host, port)
        self.timeout_s = timeout_s
        self.retries = retries
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.connect(self.server)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        # random per client: two clients made in the same millisecond must not share cookies (a
        # proxy's reply cache, keyed by cookie alone, would answer one with the other's replies)
        self._prefix = f"b{os.getpid()}_{secrets.token_hex(4)}_"
        self._seq = itertools.count(1)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> NGClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _cookie(self) -> bytes:
        return f"{self._prefix}{next(self._seq)}".encode()

    def transact(self, request: dict[str, BValue]) -> Timed:
        """Send ``request`` and return its reply; retransmits the same datagram on timeout."""
        cookie = self._cookie()
        datagram = cookie + b" " + bencode(request)
        self._sock.settimeout(self.timeout_s)
        start = time.monotonic_ns()
        for _attempt in range(self.retries + 1):
            self._sock.send(datagram)
            deadline = time.monotonic() + self.timeout_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._sock.settimeout(remaining)
                try:
                    data = self._sock.recv(65535)
                except TimeoutError:
                    break
                got_cookie, _, payload = data.partition(b" ")
                if got_cookie == cookie:
                    return Timed(_as_reply(payload), time.monotonic_ns() - start)
        raise NGError(f"no reply from {self.server} to {request.get('command')!r}")

    def ping(self) -> bool:
        try:
            return self.transact({"command": "ping"}).reply.get("result") == "pong"
        except (NGError, OSError):
            return False

    def pipeline(
        self,
        requests: Iterable[tuple[T, dict[str, BValue]]],
        window: int,
        on_reply: Callable[[T, Timed], Iterable[tuple[T, dict[str, BValue]]]] | None = None,
        deadline: float | None = None,
    ) -> int:
        """Keep up to ``window`` requests in flight; each request travels with a tag of the caller's.

        ``on_reply(tag, timed)`` is called for each reply and may return follow-up requests, which are
        sent before new ones from ``requests`` (this is how offer -> answer -> delete chains run with
        K calls in flight). No new requests are taken from ``requests`` after ``deadline``
        (``time.monotonic``), but follow-ups and what is in flight are completed. Returns the number
        of replies received.
        """
        source: Iterator[tuple[T, dict[str, BValue]]] = iter(requests)
        followups: list[tuple[T, dict[str, BValue]]] = []
        inflight: dict[bytes, _InFlight[T]] = {}
        done = 0
        exhausted = False
        self._sock.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        try:
            while True:
                while len(inflight) < window:
                    if followups:
                        tag, req = followups.pop()
                    elif exhausted or (deadline is not None and time.monotonic() >= deadline):
                        break
                    else:
                        try:
                            tag, req = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                    cookie = self._cookie()
                    datagram = cookie + b" " + bencode(req)
                    self._sock.send(datagram)
                    inflight[cookie] = _InFlight(
                        tag, datagram, time.monotonic_ns(), self.retries, time.monotonic() + self.timeout_s
                    )
                if not inflight:
                    return done
                for _key, _mask in sel.select(0.05):
                    while True:
                        try:
                            data = self._sock.recv(65535)
                        except BlockingIOError:
                            break
                        got_cookie, _, payload = data.partition(b" ")
                        entry = inflight.pop(got_cookie, None)
                        if entry is None:
                            continue  # a late reply to a retransmitted request
                        done += 1
                        timed = Timed(_as_reply(payload), time.monotonic_ns() - entry.sent_ns)
                        if on_reply is not None:
                            followups.extend(on_reply(entry.tag, timed))
                now = time.monotonic()
                for entry in list(inflight.values()):
                    if now < entry.resend_at:
                        continue
                    if entry.retries_left <= 0:
                        raise NGError(f"no reply from {self.server} after retransmissions")
                    self._sock.send(entry.datagram)
                    entry.retries_left -= 1
                    entry.resend_at = now + self.timeout_s
        finally:
            sel.close()
            self._sock.setblocking(True)


@dataclass
class _InFlight(Generic[T]):
    tag: T
    datagram: bytes
    sent_ns: int
    retries_left: int
    resend_at: float


def _as_reply(payload: bytes) -> Reply:
    value = bdecode(payload)
    if not isinstance(value, dict):
        raise NGError("reply is not a dictionary")
    return value


def wait_for_ping(host: str, port: int, timeout_s: float, alive: Callable[[], bool] | None = None) -> bool:
    """Poll ``ping`` until the server answers ``pong`` or ``timeout_s`` passes (or ``alive`` says no)."""
    deadline = time.monotonic() + timeout_s
    with NGClient(host, port, timeout_s=0.2, retries=0) as client:
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                return False
            if client.ping():
                return True
            time.sleep(0.05)
    return False
