"""A socket for NG requests to media nodes (the router's link to its nodes, a node's probes of its
peers): it sends a request datagram to a node and waits (bounded) for the datagram that answers it —
the one from that node with the same cookie.

Requests go out exactly as the proxy sent them (cookie and payload untouched): a node's reply cache
keys replies by cookie, so a retransmission that reaches the owner through another router replica is
answered from that cache, not executed twice.

The hot path waits with plain callbacks (`send`), run inside `datagram_received`: no future, no task
and no timer per request. One sweep timer, armed only while requests wait, expires the late ones."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from karl_core.ng.errors import NoCookie
from karl_core.ng.framing import split_cookie

log = logging.getLogger("karl.ng")

Listener = Callable[[bytes | None], None]
"""Gets the node's reply datagram (cookie included), or None when it did not answer in time."""

Key = tuple[tuple[str, int], bytes]


class NodeTimeout(Exception):
    """The node did not answer in time."""


@dataclass
class LinkCounters:
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    unexpected: int = 0
    """Datagrams that answered nothing pending (late replies, strangers)."""
    send_errors: int = 0
    listener_errors: int = 0


@dataclass(slots=True)
class _Waiting:
    deadline: float
    listeners: list[Listener]


@dataclass
class NodeLink(asyncio.DatagramProtocol):
    counters: LinkCounters = field(default_factory=LinkCounters)
    transport: asyncio.DatagramTransport | None = None
    clock: Callable[[], float] = time.monotonic
    _pending: dict[Key, _Waiting] = field(default_factory=dict)
    _sweep: asyncio.TimerHandle | None = None
    _sweep_at: float = 0.0

    @classmethod
    async def open(cls, family: int = socket.AF_INET) -> NodeLink:
        link = cls()
        loop = asyncio.get_running_loop()
        local = "::" if family == socket.AF_INET6 else "0.0.0.0"
        await loop.create_datagram_endpoint(lambda: link, local_addr=(local, 0), family=family)
        return link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            cookie, _ = split_cookie(data)
        except NoCookie:
            self.counters.unexpected += 1
            return
        waiting = self._pending.pop((addr[:2], cookie), None)
        if waiting is None:
            self.counters.unexpected += 1
            return
        self.counters.answered += 1
        self._notify(waiting, data)

    def error_received(self, exc: Exception) -> None:
        self.counters.send_errors += 1  # an ICMP error: the waiter times out

    def send(
        self, node: tuple[str, int], cookie: bytes, datagram: bytes, timeout: float, listener: Listener
    ) -> None:
        """Send `datagram` to `node`; `listener` gets the node's reply datagram, or None after `timeout`
        seconds. A copy sent while the first waits shares its wait (the node answers a cookie once)."""
        assert self.transport is not None
        key = (node, cookie)
        waiting = self._pending.get(key)
        if waiting is None:
            deadline = self.clock() + timeout
            self._pending[key] = _Waiting(deadline, [listener])
            if self._sweep is None or deadline < self._sweep_at:
                self._arm(deadline)
        else:
            waiting.listeners.append(listener)
        self.counters.sent += 1
        try:
            self.transport.sendto(datagram, node)
        except OSError:
            self.counters.send_errors += 1

    async def request(self, node: tuple[str, int], cookie: bytes, datagram: bytes, timeout: float) -> bytes:
        """`send`, awaited; raises `NodeTimeout`."""
        answer: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()

        def deliver(data: bytes | None) -> None:
            if not answer.done():
                answer.set_result(data)

        self.send(node, cookie, datagram, timeout, deliver)
        data = await answer
        if data is None:
            raise NodeTimeout(f"{node[0]}:{node[1]} did not answer within {timeout:.2f} s")
        return data

    def _notify(self, waiting: _Waiting, data: bytes | None) -> None:
        for listener in waiting.listeners:
            try:
                listener(data)
            except Exception:  # one request's bug must not keep the others waiting
                self.counters.listener_errors += 1
                log.exception("error handling a node's answer")

    def _arm(self, at: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = at
        # a millisecond late rather than early: the loop's clock is coarser than ours
        self._sweep = asyncio.get_running_loop().call_later(max(0.0, at - self.clock()) + 0.001, self._expire)

    def _expire(self) -> None:
        self._sweep = None
        now = self.clock()
        late = [key for key, waiting in self._pending.items() if waiting.deadline <= now]
        for key in late:
            waiting = self._pending.pop(key)
            self.counters.timeouts += 1
            self._notify(waiting, None)
        if self._pending:
            self._arm(min(waiting.deadline for waiting in self._pending.values()))

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self.transport is not None:
            self.transport.close()
