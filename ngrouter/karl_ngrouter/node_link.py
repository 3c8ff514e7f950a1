"""The router's socket towards the media nodes: sends a request datagram to a node and waits (bounded)
for the datagram that answers it — the one from that node with the same cookie.

Requests go out exactly as the proxy sent them (cookie and payload untouched): a node's reply cache
keys replies by cookie, so a retransmission that reaches the owner through another router replica is
answered from that cache, not executed twice."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from karl_core.ng.errors import NoCookie
from karl_core.ng.framing import split_cookie


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


@dataclass
class NodeLink(asyncio.DatagramProtocol):
    counters: LinkCounters = field(default_factory=LinkCounters)
    transport: asyncio.DatagramTransport | None = None
    _pending: dict[tuple[tuple[str, int], bytes], asyncio.Future[bytes]] = field(default_factory=dict)

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
        waiter = self._pending.pop((addr[:2], cookie), None)
        if waiter is None or waiter.done():
            self.counters.unexpected += 1
            return
        self.counters.answered += 1
        waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        self.counters.send_errors += 1  # an ICMP error: the waiter times out

    def send(
        self, node: tuple[str, int], cookie: bytes, datagram: bytes, timeout: float
    ) -> asyncio.Future[bytes]:
        """Send `datagram` to `node`; the future gets the node's reply datagram (cookie included), or
        `NodeTimeout` after `timeout` seconds. No task, no coroutine: a callback can wait on it."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        key = (node, cookie)
        waiter = self._pending.get(key)
        if waiter is None or waiter.done():
            waiter = self._pending[key] = loop.create_future()
            # a timer on the future, not `wait_for` (which costs a task per request)
            expiry = loop.call_later(timeout, self._expire, key, waiter, node, timeout)
            waiter.add_done_callback(lambda _: expiry.cancel())
        self.counters.sent += 1
        try:
            self.transport.sendto(datagram, node)
        except OSError:
            self.counters.send_errors += 1
        return waiter

    async def request(self, node: tuple[str, int], cookie: bytes, datagram: bytes, timeout: float) -> bytes:
        """`send`, awaited; raises `NodeTimeout`."""
        return await asyncio.shield(self.send(node, cookie, datagram, timeout))

    def _expire(
        self,
        key: tuple[tuple[str, int], bytes],
        waiter: asyncio.Future[bytes],
        node: tuple[str, int],
        timeout: float,
    ) -> None:
        if waiter.done():
            return
        self.counters.timeouts += 1
        if self._pending.get(key) is waiter:
            del self._pending[key]
        waiter.set_exception(NodeTimeout(f"{node[0]}:{node[1]} did not answer within {timeout:.2f} s"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
