"""What the router does with one NG request: find the node that holds the call (owner cache, then
Redis), place a new call on the ring, forward the datagram untouched, and act on the answers a proxy
must never see (`not owner`: ask Redis again; a node that is full or out of ports: try the next).

Every request is bounded by `BUDGET` (below Kamailio's 1 s retransmission timer): when the fleet cannot
answer within it, the router answers an error of its own, or nothing for a node that went silent (the
proxy retransmits and the node's reply cache answers the copy)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from karl_core.ng import errors as E
from karl_core.ng.commands import Command
from karl_core.ng.endpoint import Request
from karl_core.ng.fleet import CALL_CREATING, NO_NODE, NODE_WIDE, NOT_OWNER, STATE_UNAVAILABLE
from karl_core.ng.framing import decode_payload, error_reply, load_limit_reply, split_cookie
from karl_core.ng.node_link import NodeLink, NodeTimeout
from karl_core.ng.options import NgOptions
from karl_core.ng.requests import decode_command, decode_options
from karl_core.ng.routing import peek_route
from karl_core.ng.server import NgCounters, PendingReply
from karl_core.ng.statistics import control_statistics
from karl_core.state import OwnerToken
from karl_core.state.fleet_state import FleetState, StateUnavailable
from karl_ngrouter.fleet_view import FleetView
from karl_ngrouter.merge import merge_list, merge_statistics
from karl_ngrouter.owner_cache import OwnerCache

log = logging.getLogger("karl.router")

BUDGET = 0.8
"""Seconds the router may spend on one request, all attempts included."""
NODE_TIMEOUT = 0.5
"""Seconds one node may take to answer one request."""
MAX_ATTEMPTS = 4

REFUSALS = frozenset({E.SESSION_LIMIT, E.OUT_OF_PORTS, E.LOAD_LIMIT, E.CPU_LIMIT, E.BANDWIDTH_LIMIT})
"""Why a node refuses a new call it has no room for: the router tries another node."""

_OK_PREFIXES = (b"d6:result2:ok", b'{"result":"ok"', b'{ "result": "ok"')

RETRY_REASONS = ("not_owner", "refused", "timeout")
REFUSAL_REASONS = ("all_nodes_full", "budget", "no_node", "owner_unreachable", "redis_unavailable")
"""The label values of `RouterCounters.retried` and `.refused` (exported even before they happen)."""

Reply = bytes | dict[str, Any] | None
"""A node's reply datagram to pass on as it is, a reply of the router's own, or no reply at all."""


@dataclass
class RouterCounters:
    forwarded: Counter[str] = field(default_factory=Counter)
    """Requests sent to a node, by node id."""
    placements: Counter[str] = field(default_factory=Counter)
    """New calls placed, by node id."""
    retried: Counter[str] = field(default_factory=Counter)
    """Requests sent again, by why: `not_owner`, `refused` (node full or out of ports), `timeout`."""
    refused: Counter[str] = field(default_factory=Counter)
    """Requests the router answered itself with an error, by why."""
    node_timeouts: int = 0


def _resolve_from(pending: PendingReply, task: asyncio.Task[Reply]) -> None:
    if task.cancelled():
        pending.resolve(None)
    elif (exc := task.exception()) is not None:
        pending.resolve(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
    else:
        pending.resolve(task.result())


def _supports_load_limit(request: Request) -> bool:
    """The offer's `supports: [load limit]`, read only when a refusal needs it (the fast path never
    decodes a request)."""
    try:
        decoded = decode_command(request.payload)
        return decode_options(decoded.message, decoded.command).supports_load_limit
    except Exception:
        return False


def _verdict(data: bytes) -> dict[str, Any] | None:
    """The decoded reply when it is not a plain success (a success passes undecoded)."""
    try:
        _, body = split_cookie(data)
    except E.NoCookie:
        return {}
    if body.startswith(_OK_PREFIXES):
        return None
    try:
        message, _ = decode_payload(body)
    except E.NgError:
        return {}
    return message


class Router:
    def __init__(
        self, state: FleetState, view: FleetView, link: NodeLink, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.state = state
        self.view = view
        self.link = link
        self.clock = clock
        self.owners = OwnerCache()
        self.counters = RouterCounters()
        self.proxies: NgCounters | None = None
        """The NG socket's counters, per proxy (set by the app): `statistics` answers with them."""

    # -- node-wide commands ------------------------------------------------------------------------
    def ping(self) -> dict[str, Any]:
        """`pong` only while Redis and at least one ready node are reachable (rtpengine's own error
        text does not exist for this: the proxy marks the set down on anything but pong)."""
        if not self.view.redis_reachable():
            return error_reply(STATE_UNAVAILABLE)
        if not self.view.ready_nodes():
            return error_reply(NO_NODE)
        return {"result": "pong"}

    async def fan_out(self, request: Request, command: Command, options: NgOptions) -> dict[str, Any]:
        nodes = self.view.ready_nodes()
        datagram = request.cookie + b" " + request.payload
        answers = await asyncio.gather(
            *(self.link.request(n.ng_address, request.cookie, datagram, NODE_TIMEOUT) for n in nodes),
            return_exceptions=True,
        )
        replies = []
        for answer in answers:
            if isinstance(answer, bytes):
                _, body = split_cookie(answer)
                try:
                    replies.append(decode_payload(body)[0])
                except E.NgError:
                    continue
        if command is Command.LIST:
            return merge_list(replies, options.limit if options.limit is not None else 32)
        merged = merge_statistics(replies)
        if self.proxies is not None:
            # the nodes count the routers as their proxies: the proxies' own figures are the router's
            merged["statistics"]["controlstatistics"] = control_statistics(self.proxies.by_proxy)
        return merged

    # -- one call's commands -----------------------------------------------------------------------
    def refuse_new_call(self, request: Request, load_limit: bool | None, why: str) -> dict[str, Any]:
        """A new call no node can take, refused as rtpengine refuses one when it is full."""
        self.counters.refused[why] += 1
        if load_limit is None:
            load_limit = _supports_load_limit(request)
        if load_limit:
            return load_limit_reply(E.SESSION_LIMIT)
        return error_reply(E.SESSION_LIMIT)

    def shortcut(self, request: Request) -> tuple[str, PendingReply] | None:
        """`NgProtocol`'s shortcut, the common case: a request forwarded without being decoded
        (`peek_route` reads its command and call-id) to the node this router knows holds the call, or,
        for a new call, to the ring's pick. It runs on callbacks alone: no task, no coroutine. None for
        anything else (a node-wide command, a call to look up in Redis, Redis unreachable): it is
        decoded and goes through `forward`."""
        peeked = peek_route(request.payload)
        if peeked is None:
            return None
        command, call_id = peeked
        if command in NODE_WIDE:
            return None
        pending = self._forward_fast(request, command, call_id)
        return None if pending is None else (command.value, pending)

    def forward(
        self, request: Request, command: Command, call_id: str, load_limit: bool
    ) -> PendingReply | Coroutine[Any, Any, Reply]:
        """One call's request, decoded (`shortcut` could not read it): the fast path when it applies,
        else `route`."""
        pending = self._forward_fast(request, command, call_id)
        if pending is not None:
            return pending
        return self.route(request, command, call_id, load_limit)

    def _forward_fast(self, request: Request, command: Command, call_id: str) -> PendingReply | None:
        token = self.owners.peek(call_id)
        placing = False
        if token is None:
            if command not in CALL_CREATING or not self.view.redis_reachable():
                return None
            # A new call (or one this router has not seen): straight to the ring's pick, which places
            # it in Redis with its first state write, or answers `not owner` naming the holder.
            node = self.view.ring.first(call_id)
            if node is None:
                return None
            token, placing = OwnerToken(node, 0), True
        lease = self.view.live_lease(token.owner)
        if lease is None:
            return None  # its lease is gone: Redis may name another holder by now (`route`)
        if placing:
            self.owners.misses += 1
        else:
            self.owners.hits += 1
        self.counters.forwarded[token.owner] += 1
        pending = PendingReply()
        listener = partial(self._answered, pending, request, command, call_id, token, placing)
        self.link.send(
            lease.ng_address, request.cookie, request.cookie + b" " + request.payload, NODE_TIMEOUT, listener
        )
        return pending

    def _answered(
        self,
        pending: PendingReply,
        request: Request,
        command: Command,
        call_id: str,
        token: OwnerToken,
        placing: bool,
        data: bytes | None,
    ) -> None:
        """The fast path's answer: passed on when it is the node's own (success, or rtpengine's error);
        anything the proxy must not see goes on through `route`."""
        retry: OwnerToken | None = token
        excluded: frozenset[str] = frozenset()
        if data is None:
            self.counters.node_timeouts += 1
            self.counters.retried["timeout"] += 1  # the same node again: its reply cache has it
            if self.view.gone(token.owner):
                self.owners.forget(call_id)  # unless it died: then ask Redis who holds the call now
                retry = None
        else:
            verdict = _verdict(data)
            if verdict is None:
                if command is Command.DELETE:
                    self.owners.forget(call_id)  # the next request asks Redis (the call may be gone)
                elif placing:
                    self.owners.put(call_id, token)
                    if command in CALL_CREATING:
                        self.counters.placements[token.owner] += 1
                pending.resolve(data)
                return
            outcome = self._next_step(verdict, command, call_id, token, placing)
            if outcome is None:
                if placing and verdict.get("result") == "ok":
                    self.owners.put(call_id, token)
                pending.resolve(data)  # the node's answer, rtpengine's error
                return
            retry, excluded = outcome
        # after a node that did not answer, what is left of the budget (the proxy retransmits at 1 s)
        budget = BUDGET - NODE_TIMEOUT if data is None else BUDGET
        task = asyncio.get_running_loop().create_task(
            self.route(
                request,
                command,
                call_id,
                None,
                retry,
                excluded,
                placing=placing and data is None,
                budget=budget,
            )
        )
        task.add_done_callback(partial(_resolve_from, pending))

    def _next_step(
        self, verdict: dict[str, Any], command: Command, call_id: str, token: OwnerToken, placing: bool
    ) -> tuple[OwnerToken | None, frozenset[str]] | None:
        """What to do after a node's error: None to pass it on to the proxy; else (who to ask next —
        None for Redis or the ring —, nodes not to place the call on)."""
        reason = verdict.get("error-reason")
        if reason == NOT_OWNER:
            self.counters.retried["not_owner"] += 1
            self.owners.forget(call_id)
            holder = verdict.get("karl-owner")
            epoch = verdict.get("karl-epoch")
            if isinstance(holder, bytes):
                holder = holder.decode("utf-8", "replace")
            if isinstance(holder, str) and holder and holder != token.owner and isinstance(epoch, int):
                return OwnerToken(holder, epoch), frozenset()
            # no holder named (that node may not act now): not there again for a new call
            return None, frozenset({token.owner}) if command in CALL_CREATING else frozenset()
        refused = verdict.get("result") == "load limit" or reason in REFUSALS
        if refused and placing and command in CALL_CREATING:
            self.counters.retried["refused"] += 1
            return None, frozenset({token.owner})
        return None

    async def route(
        self,
        request: Request,
        command: Command,
        call_id: str,
        load_limit: bool | None,
        token: OwnerToken | None = None,
        excluded: frozenset[str] = frozenset(),
        placing: bool = False,
        budget: float = BUDGET,
    ) -> Reply:
        """The slow path, within `BUDGET`: ask Redis who holds a known call; place a new one on the
        ring (skipping `excluded`: nodes that refused it); follow `not owner`; retry a silent node.
        `load_limit`: the offer's `supports: [load limit]`, or None to read it when it matters."""
        deadline = self.clock() + budget
        datagram = request.cookie + b" " + request.payload
        creating = command in CALL_CREATING
        refused = set(excluded)
        if token is None:
            token = self.owners.get(call_id)
            placing = False
            if token is not None and self.view.gone(token.owner) and self.view.redis_reachable():
                # its node's lease is gone: failover may have moved the call, Redis says where (when
                # Redis does not know the call, e.g. just restarted empty, the cached owner stays)
                try:
                    current = await self.state.owner_of(call_id)
                except StateUnavailable:
                    current = None
                if current is not None:
                    self.owners.put(call_id, current)
                    token = current
        for _ in range(MAX_ATTEMPTS):
            if token is None:
                if not self.view.redis_reachable():
                    # Redis has not answered the fleet view lately: refuse at once rather than wait
                    if creating:
                        return self.refuse_new_call(request, load_limit, "redis_unavailable")
                    self.counters.refused["redis_unavailable"] += 1
                    return error_reply(STATE_UNAVAILABLE)
                if creating:
                    # the ring's pick places the call with its first state write (or names its holder)
                    node = next(iter(self.view.ring.candidates(call_id, refused)), None)
                    if node is None:
                        return self.refuse_new_call(
                            request, load_limit, "all_nodes_full" if refused else "no_node"
                        )
                    token, placing = OwnerToken(node, 0), True
                else:
                    try:
                        token = await self.state.owner_of(call_id)
                    except StateUnavailable:
                        self.counters.refused["redis_unavailable"] += 1
                        return error_reply(STATE_UNAVAILABLE)
                    if token is None:
                        return await self._unknown_call(request, datagram, call_id, deadline)
            lease = self.view.lease(token.owner)
            if lease is None:
                # its owner has no lease (dead, or not seen yet by this router): part 2 moves such calls
                self.owners.forget(call_id)
                if placing:
                    refused.add(token.owner)
                    token = None
                    continue
                self.counters.refused["owner_unreachable"] += 1
                return error_reply(NO_NODE)
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            self.counters.forwarded[token.owner] += 1
            try:
                answer = await self.link.request(
                    lease.ng_address, request.cookie, datagram, min(NODE_TIMEOUT, remaining)
                )
            except NodeTimeout:
                self.counters.node_timeouts += 1
                self.counters.retried["timeout"] += 1
                if self.view.gone(token.owner):
                    # its lease is gone too: it may be dead, and failover may have moved the call
                    self.owners.forget(call_id)
                    token, placing = None, False
                continue  # else the same node again: its reply cache answers if the first copy arrived
            verdict = _verdict(answer)
            if verdict is None:
                if command is Command.DELETE:
                    self.owners.forget(call_id)  # the next request asks Redis (the call may be gone)
                else:
                    self.owners.put(call_id, token)
                    if placing and creating:
                        self.counters.placements[token.owner] += 1
                return answer
            step = self._next_step(verdict, command, call_id, token, placing)
            if step is None:
                if verdict.get("result") == "ok":
                    self.owners.put(call_id, token)
                return answer
            token, more = step
            refused |= more
            placing = False
        self.counters.refused["budget"] += 1
        return None

    async def _unknown_call(self, request: Request, datagram: bytes, call_id: str, deadline: float) -> Reply:
        """No node holds the call: a node answers it as rtpengine answers an unknown call."""
        candidates = self.view.ring.candidates(call_id) or [
            lease.node_id for lease in self.view.ready_nodes()
        ]
        for node_id in candidates[:2]:
            lease = self.view.lease(node_id)
            remaining = deadline - self.clock()
            if lease is None or remaining <= 0:
                continue
            try:
                return await self.link.request(
                    lease.ng_address, request.cookie, datagram, min(NODE_TIMEOUT, remaining)
                )
            except NodeTimeout:
                self.counters.node_timeouts += 1
        self.counters.refused["no_node"] += 1
        return error_reply(NO_NODE)
