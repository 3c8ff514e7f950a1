"""An NG server without sockets, for playing `ng_sequences` against a call engine in-process.

`InProcessServer` satisfies `ng_sequences.ServerLike`: `run_sequence` hands it datagrams through
`server.ng.raw(...)` and gets the reply datagram back at once (or None where a real server stays
silent). A datagram goes the way the media node's NG socket takes it
(`karl_core.ng.server.NgProtocol`): `karl_core.ng.endpoint.NgEndpoint` (cookie, empty
payload, reply cache, retransmissions), then `karl_core.ng.requests` (decoding, command, options, the
checks 10.5 makes first; an `NgError` becomes its error reply), `ping` answered here, every other
command handed to `dispatch`, and the reply encoded and cached by the endpoint.

Time is injected: it starts at `start` (the wall clock by default, so that timestamps in replies
are plausible to `ng_normalize`) and moves on by `step` seconds with every datagram. An exception
other than `NgError` from `dispatch` is not turned into Karl's internal-error reply but propagates,
so that a test shows its traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from karl_core.ng import bencode
from karl_core.ng.commands import Command
from karl_core.ng.endpoint import Datagram, NgEndpoint, Request
from karl_core.ng.errors import NgError
from karl_core.ng.options import NgOptions
from karl_core.ng.requests import decode_command, decode_options, ng_error_reply, reply_fits
from karl_core.ng.server import NgCounters

ReplyFits = Callable[[dict[str, Any]], bool]
"""Whether a reply (`result` may be missing) fits in one datagram, cookie included."""

Dispatch = Callable[[Command, NgOptions, float, ReplyFits], dict[str, Any]]
"""Applies one decoded request at time `now` (seconds) and returns the whole reply (`result`
included); may raise `NgError`."""

PEER = ("127.0.0.1", 22222)
"""Where every datagram seems to come from (one SIP proxy)."""


class InProcessServer:
    """One NG server in-process; it is its own NG client (`ng` is the server itself)."""

    def __init__(
        self,
        dispatch: Dispatch,
        *,
        name: str = "karl (in-process)",
        media_ip: str = "127.0.0.2",
        port_min: int = 30000,
        port_max: int = 30399,
        start: float | None = None,
        step: float = 0.01,
        counters: NgCounters | None = None,
    ) -> None:
        self.dispatch = dispatch
        self._name = name
        self._media_ip = media_ip
        self._port_min = port_min
        self._port_max = port_max
        self.now = time.time() if start is None else start
        self.step = step
        self.endpoint = NgEndpoint()
        self.counters = NgCounters() if counters is None else counters
        """Per command, result and proxy, as the media node's NG socket counts (`statistics` shows them)."""
        self.requests = 0
        """Requests decoded and answered (not counting cached replies and dropped datagrams)."""

    # ---- ServerLike --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def ng(self) -> InProcessServer:
        return self

    @property
    def media_ip(self) -> str:
        return self._media_ip

    @property
    def port_min(self) -> int:
        return self._port_min

    @property
    def port_max(self) -> int:
        return self._port_max

    # ---- NgClientLike ------------------------------------------------------------------------------

    def raw(self, datagram: bytes, timeout: float = 3.0) -> bytes | None:
        """The reply to one datagram, or None when a server sends none (the timeout is not waited)."""
        self.now += self.step
        outcome = self.endpoint.datagram_received(datagram, PEER, self.now)
        if outcome is None:
            return None
        if isinstance(outcome, Request):
            outcome = self.endpoint.reply(outcome, self.answer(outcome), self.now)
        return first_for(outcome, PEER)

    def request(self, payload: dict[str, Any], cookie: bytes = b"in-process") -> Any:
        """Convenience for tests: a dictionary in, the decoded reply out (cookie reused at your risk:
        the reply cache answers a cookie it has seen with the cached reply)."""
        reply = self.raw(cookie + b" " + bencode.encode(payload))
        if reply is None:
            raise AssertionError(f"no reply to {payload.get('command')!r}")
        return bencode.decode(reply.partition(b" ")[2])

    # ---- the request -------------------------------------------------------------------------------

    def answer(self, request: Request) -> dict[str, Any]:
        """The reply to a new request, as `NgProtocol._process` and the media node would give it."""
        self.requests += 1
        command = "invalid"  # until the payload names one, as the NG socket counts it
        try:
            decoded = decode_command(request.payload)
            request.encoding = decoded.encoding
            command = decoded.command.value
            options = decode_options(decoded.message, decoded.command)

            def fits(reply: dict[str, Any]) -> bool:
                return reply_fits(self.endpoint, request, reply)

            if decoded.command is Command.PING:
                reply = {"result": "pong"}
            else:
                reply = self.dispatch(decoded.command, options, self.now, fits)
        except NgError as exc:
            reply = ng_error_reply(exc)
        self.counters.record(command, str(reply.get("result", "")), PEER[0], 0.0)
        return reply


def first_for(datagrams: list[Datagram], addr: tuple[str, int]) -> bytes | None:
    """The first datagram for `addr` (the requester; the endpoint adds copies for waiting duplicates)."""
    return next((d.data for d in datagrams if d.addr == addr), None)
