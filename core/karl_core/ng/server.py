"""The NG control socket: the shared sans-IO endpoint, decoding and dispatch to the call engine (thin I/O)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from karl_core.logs import RateLimitedLogger
from karl_core.ng.endpoint import Datagram, NgEndpoint, Request
from karl_core.ng.errors import NgError
from karl_core.ng.options import NgOptions
from karl_core.ng.reply_cache import ReplyCache
from karl_core.ng.requests import decode_command, decode_options, ng_error_reply, reply_fits

from .commands import Command

log = logging.getLogger("karl.ng")

# No rtpengine text exists for a bug of our own; say so plainly (the call state is unchanged).
INTERNAL_ERROR = "Internal error in Karl (see its log)"

ReplyFits = Callable[[dict[str, Any]], bool]
"""Whether a reply (as the handler would return it) fits in one datagram, cookie included."""

HandlerReply = dict[str, Any] | bytes | None
"""A reply to encode; a reply datagram that is ready (cookie included: what a router got from a node);
or None for no reply at all (the proxy retransmits, and the copy is handled anew)."""


class PendingReply:
    """A reply that a callback will give later (a router's fast path): `resolve` answers the request
    right there, inside the callback that has the answer — no future, no task, no extra turn of the
    event loop. An exception resolves it as the handler raising it would."""

    __slots__ = ("_early", "_on_done")

    def __init__(self) -> None:
        self._on_done: Callable[[HandlerReply | Exception], None] | None = None
        self._early: list[HandlerReply | Exception] = []

    def resolve(self, reply: HandlerReply | Exception) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(reply)
        elif not self._early:
            self._early.append(reply)  # before anyone listens: kept for `attach`

    def attach(self, on_done: Callable[[HandlerReply | Exception], None]) -> None:
        if self._early:
            on_done(self._early.pop())
        else:
            self._on_done = on_done


Handler = Callable[
    [Command, NgOptions, tuple[str, int], ReplyFits], HandlerReply | PendingReply | Awaitable[HandlerReply]
]
"""Handles one request. A plain result is answered at once, inside `datagram_received`, so requests
are applied one at a time in arrival order; an awaitable result is answered when it completes (its
retransmissions wait for it)."""

Forwarder = Callable[[Command, NgOptions, Request], HandlerReply | PendingReply | Awaitable[HandlerReply]]
"""A handler that gets the whole request (see `NgProtocol.forwarder`)."""

Shortcut = Callable[[Request], "tuple[str, HandlerReply | PendingReply | Awaitable[HandlerReply]] | None"]
"""Tried first for every request: (the command's name, the result) when it could handle the request
without its payload being decoded, else None (then it is decoded and dispatched as usual)."""


_RESULT_MARKERS = ((b"6:result2:ok", "ok"), (b'"result":"ok"', "ok"), (b"6:result4:pong", "pong"))


def result_of(datagram: bytes) -> str:
    """The `result` of an encoded reply, for the counters (`ok` found without decoding)."""
    head = datagram[:200]
    for marker, result in _RESULT_MARKERS:
        if marker in head:
            return result
    if b"load limit" in head:
        return "load limit"
    return "error" if b"error" in head else "other"


class ProxyCounters(dict[str, int]):
    """One proxy's requests by command name, and `error` (its error replies); `micros`: the time
    spent on its requests per command name, in whole microseconds, as 10.5 sums them per proxy
    (`statistics` shows both in `controlstatistics`)."""

    __slots__ = ("micros",)

    def __init__(self) -> None:
        super().__init__()
        self.micros: dict[str, int] = {}


@dataclass
class NgCounters:
    """Plain counters of the control plane, read by metrics and `statistics` (the endpoint's own —
    datagrams, cookies, cache — are in `NgProtocol.endpoint.counters`)."""

    errors: int = 0
    internal_errors: int = 0
    by_command: dict[str, int] = field(default_factory=dict)
    by_result: dict[tuple[str, str], int] = field(default_factory=dict)
    duration_by_command: dict[str, float] = field(default_factory=dict)
    by_proxy: dict[str, ProxyCounters] = field(default_factory=dict)
    # Histogram of request handling time per command: bucket upper bounds in seconds; counts per range.
    latency_buckets: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
    latency_counts: dict[str, list[int]] = field(default_factory=dict)
    refused: int = 0  # datagrams the admission control dropped (not allowed, rate limited, blocked)
    send_errors: int = 0  # replies the kernel refused to send (ICMP errors are counted here too)

    def record(self, command: str, result: str, proxy: str, elapsed: float) -> None:
        """One request answered: `result` is the reply's (`ok`, `error`, `pong`, ...)."""
        c = self
        c.by_command[command] = c.by_command.get(command, 0) + 1
        c.by_result[(command, result)] = c.by_result.get((command, result), 0) + 1
        c.duration_by_command[command] = c.duration_by_command.get(command, 0.0) + elapsed
        counts = c.latency_counts.get(command)
        if counts is None:
            counts = c.latency_counts[command] = [0] * (len(c.latency_buckets) + 1)
        for i, bound in enumerate(c.latency_buckets):
            if elapsed <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1  # above the last bound (+Inf); the buckets are per range, not cumulative
        per_proxy = c.by_proxy.get(proxy)
        if per_proxy is None:
            per_proxy = c.by_proxy[proxy] = ProxyCounters()
        per_proxy[command] = per_proxy.get(command, 0) + 1
        per_proxy.micros[command] = per_proxy.micros.get(command, 0) + round(elapsed * 1_000_000)
        if result == "error":
            per_proxy["error"] = per_proxy.get("error", 0) + 1


@dataclass(slots=True)
class _InFlight:
    """A request between its datagram and its reply."""

    request: Request
    command: str  # "invalid" until the payload names one
    started: float


class NgProtocol(asyncio.DatagramProtocol):
    """The NG socket: thin I/O around `karl_core.ng.endpoint.NgEndpoint` (framing, reply cache,
    retransmissions), plus admission control, decoding, dispatch and counters."""

    def __init__(
        self,
        handler: Handler,
        clock: Callable[[], float] = time.monotonic,
        admission: Any = None,
        *,
        forwarder: Forwarder | None = None,
        shortcut: Shortcut | None = None,
    ) -> None:
        self.handler = handler
        # A router's handler needs the request itself (its cookie and payload go on untouched); when
        # set, it is called instead of `handler`.
        self.forwarder = forwarder
        # A router's cheaper path for requests it can route without decoding them (`Shortcut`).
        self.shortcut = shortcut
        # Optional: an object with `admit(source_ip: str, now: float) -> bool` (allow-list, per-source
        # rate limits, blocks). A refused datagram gets no reply and is counted.
        self.admission = admission
        self.clock = clock
        self.endpoint = NgEndpoint()
        self.counters = NgCounters()
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._pending: set[PendingReply] = set()
        self._all_answered: asyncio.Future[None] | None = None
        self._bad_input_log = RateLimitedLogger(log, interval=10.0)

    @property
    def cache(self) -> ReplyCache:
        return self.endpoint.cache

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport is no subclass

    def error_received(self, exc: Exception) -> None:
        # a reply the kernel refused, or an ICMP error from a proxy that went away
        self.counters.send_errors += 1
        self._bad_input_log.warning("NG socket error (a reply may not have been sent): %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.admission is not None and not self.admission.admit(addr[0], self.clock()):
            self.counters.refused += 1
            return
        outcome = self.endpoint.datagram_received(data, addr, self.clock())
        if isinstance(outcome, Request):
            self._process(outcome)
        elif outcome is None:
            self._bad_input_log.warning("dropped NG datagram without cookie from %s", addr[0])
        else:
            self._send_all(outcome)

    def _process(self, request: Request) -> None:
        in_flight = _InFlight(request, "invalid", time.perf_counter())
        taken = self.shortcut(request) if self.shortcut is not None else None
        if taken is not None:
            in_flight.command, result = taken
            self._answer(result, in_flight)
            return
        try:
            decoded = decode_command(request.payload)
            request.encoding = decoded.encoding
            in_flight.command = decoded.command.value
            options = decode_options(decoded.message, decoded.command)
            if options.ignored:
                log.debug("ignored NG keys/flags: %s", ", ".join(options.ignored))
            if self.forwarder is not None:
                result = self.forwarder(decoded.command, options, request)
            else:
                result = self.handler(decoded.command, options, request.addr, self._fits_check(request))
        except Exception as exc:
            result = self._error_reply(exc, in_flight)
        self._answer(result, in_flight)

    def _answer(
        self, result: HandlerReply | PendingReply | Awaitable[HandlerReply], in_flight: _InFlight
    ) -> None:
        if isinstance(result, PendingReply):
            self._pending.add(result)
            result.attach(partial(self._pending_done, result, in_flight))
            return
        if isinstance(result, asyncio.Future):
            # a future: answered from its callback, without a task
            self._tasks.add(result)
            result.add_done_callback(partial(self._future_done, in_flight))
            return
        if inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._finish_later(result, in_flight))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._finish(result, in_flight)

    def _pending_done(
        self, pending: PendingReply, in_flight: _InFlight, reply: HandlerReply | Exception
    ) -> None:
        self._pending.discard(pending)
        if isinstance(reply, Exception):
            reply = self._error_reply(reply, in_flight)
        self._finish(reply, in_flight)
        if not self._pending and self._all_answered is not None and not self._all_answered.done():
            self._all_answered.set_result(None)

    def _future_done(self, in_flight: _InFlight, done: asyncio.Future[HandlerReply]) -> None:
        self._tasks.discard(done)
        if done.cancelled():
            self._finish(None, in_flight)
            return
        exc = done.exception()
        reply = self._error_reply(exc, in_flight) if isinstance(exc, Exception) else done.result()
        self._finish(reply, in_flight)

    async def _finish_later(self, pending: Awaitable[HandlerReply], in_flight: _InFlight) -> None:
        try:
            reply = await pending
        except Exception as exc:
            reply = self._error_reply(exc, in_flight)
        self._finish(reply, in_flight)

    def _error_reply(self, exc: Exception, in_flight: _InFlight) -> dict[str, Any]:
        source, command = in_flight.request.addr[0], in_flight.command
        if isinstance(exc, NgError):
            self.counters.errors += 1
            self._bad_input_log.info("NG %s from %s failed: %s", command, source, exc.reason)
            return ng_error_reply(exc)
        self.counters.internal_errors += 1
        log.error("internal error handling NG %s from %s", command, source, exc_info=exc)
        return {"result": "error", "error-reason": INTERNAL_ERROR}

    def _fits_check(self, request: Request) -> ReplyFits:
        def fits(reply: dict[str, Any]) -> bool:
            if reply_fits(self.endpoint, request, reply):
                return True
            self._bad_input_log.warning(
                "NG reply of %d bytes does not fit in a datagram; answered with an error instead",
                len(self.endpoint.encode(request, {"result": "ok", **reply})),
            )
            return False

        return fits

    def _finish(self, reply: HandlerReply, in_flight: _InFlight) -> None:
        request = in_flight.request
        elapsed = time.perf_counter() - in_flight.started
        if reply is None:
            self.counters.record(in_flight.command, "none", request.addr[0], elapsed)
            self.endpoint.abandon(request)
            return
        # the reply leaves first; the counters after it
        if isinstance(reply, bytes):
            self._send_all(self.endpoint.reply_datagram(request, reply, self.clock()))
            self.counters.record(in_flight.command, result_of(reply), request.addr[0], elapsed)
            return
        self._send_all(self.endpoint.reply(request, reply, self.clock()))
        self.counters.record(in_flight.command, str(reply.get("result", "")), request.addr[0], elapsed)

    def _send_all(self, datagrams: list[Datagram]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        for datagram in datagrams:
            try:
                transport.sendto(datagram.data, datagram.addr)
            except OSError as exc:  # the event loop usually reports these through error_received
                self.error_received(exc)

    async def drain(self, timeout: float) -> None:
        """Let requests still being processed by an asynchronous handler finish (used on shutdown)."""
        waits: list[asyncio.Future[Any]] = list(self._tasks)
        if self._pending:
            self._all_answered = asyncio.get_running_loop().create_future()
            waits.append(self._all_answered)
        if waits:
            await asyncio.wait(waits, timeout=timeout)
