"""The server side of the NG protocol as a sans-IO state machine: datagrams in, datagrams out.

One `NgEndpoint` per listening socket, shared by the media node and the NG router. It keeps rtpengine
10.5's order for each datagram (see `framing`): no cookie → dropped; empty payload → its error,
stored under the cookie; then the reply cache: a cached reply is sent again, a copy of a request still
being processed waits for that request's reply, anything else is a new `Request` for the caller.
`reply(request, reply, now)` encodes the caller's answer in the request's encoding, caches it and
returns one datagram for the requester and one for every copy that waited.

The endpoint never reads a clock and never touches a socket: `now` (monotonic seconds) comes with
every call, and what it returns is what the I/O layer must send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..session.model import Address
from .errors import INVALID_DATA_NO_PAYLOAD, NoCookie
from .framing import Encoding, encode_reply, error_reply, reply_encoding, split_cookie
from .reply_cache import CacheStatus, ReplyCache

REPLY_DATAGRAM_LIMIT = 65507
"""The largest UDP payload over IPv4: a longer reply cannot be sent at all."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """A datagram to send."""

    data: bytes
    addr: Address


@dataclass(slots=True)
class Request:
    """A request the caller must answer with `NgEndpoint.reply` (or `abandon`)."""

    cookie: bytes
    payload: bytes
    addr: Address
    encoding: Encoding
    """The reply's encoding: chosen by the payload's first byte; `decode_payload` may refine it."""


@dataclass
class EndpointCounters:
    datagrams: int = 0
    no_cookie: int = 0
    empty: int = 0
    """Requests without a payload (answered with rtpengine's error)."""
    cache_hits: int = 0
    cache_waits: int = 0


@dataclass
class NgEndpoint:
    cache: ReplyCache = field(default_factory=ReplyCache)
    counters: EndpointCounters = field(default_factory=EndpointCounters)
    _waiters: dict[bytes, list[Address]] = field(default_factory=dict)

    def datagram_received(self, data: bytes, addr: Address, now: float) -> Request | list[Datagram] | None:
        """A new `Request` to process, datagrams to send at once (a cached or an error reply; empty
        while a copy waits), or None for a datagram dropped without a reply (no cookie)."""
        self.counters.datagrams += 1
        try:
            cookie, payload = split_cookie(data)
        except NoCookie:
            self.counters.no_cookie += 1
            return None
        if not payload:
            # rtpengine answers this before its cache lookup, and stores the error under the cookie
            self.counters.empty += 1
            reply = encode_reply(cookie, error_reply(INVALID_DATA_NO_PAYLOAD), reply_encoding(payload))
            self.cache.finish(cookie, reply, now)
            return [Datagram(reply, addr)]
        state = self.cache.begin(cookie, now)
        if state.status is CacheStatus.HIT:
            self.counters.cache_hits += 1
            return [] if state.reply is None else [Datagram(state.reply, addr)]
        if state.status is CacheStatus.PENDING:
            self.counters.cache_waits += 1
            self._waiters.setdefault(cookie, []).append(addr)
            return []
        return Request(cookie, payload, addr, reply_encoding(payload))

    def encode(self, request: Request, reply: Mapping[str, Any]) -> bytes:
        return encode_reply(request.cookie, reply, request.encoding)

    def fits(self, request: Request, reply: Mapping[str, Any]) -> bool:
        """Whether `reply` to `request` fits in one UDP datagram."""
        # a cheap bound first: JSON escapes a character into at most six
        text = sum(len(value) for value in reply.values() if isinstance(value, str))
        if 6 * text + 4096 < REPLY_DATAGRAM_LIMIT:
            return True
        return len(self.encode(request, reply)) <= REPLY_DATAGRAM_LIMIT

    def reply(self, request: Request, reply: Mapping[str, Any], now: float) -> list[Datagram]:
        """Cache the reply and return it for the requester and every copy that waited."""
        data = self.encode(request, reply)
        self.cache.finish(request.cookie, data, now)
        return [Datagram(data, request.addr)] + [
            Datagram(data, waiter) for waiter in self._waiters.pop(request.cookie, [])
        ]

    def reply_datagram(self, request: Request, data: bytes, now: float) -> list[Datagram]:
        """`reply` for a reply that is encoded already, cookie included (a router passing a node's
        answer on)."""
        self.cache.finish(request.cookie, data, now)
        return [Datagram(data, request.addr)] + [
            Datagram(data, waiter) for waiter in self._waiters.pop(request.cookie, [])
        ]

    def abandon(self, request: Request) -> None:
        """No reply will come (e.g. the router lost its node): copies that waited get none either, and
        the next retransmission is processed anew."""
        self.cache.abandon(request.cookie)
        self._waiters.pop(request.cookie, None)
