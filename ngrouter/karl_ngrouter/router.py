"""What the router does with one NG request: find the node that holds the call (owner cache, then
Redis), place a new call on the ring, forward the datagram untouched, and act on the answers a proxy
must never see (`not owner`: ask Redis again; a node that is full or out of ports: try the next).

Every request is bounded by `BUDGET` (below Kamailio's 1 s retransmission timer): when the fleet cannot
answer within it, the router answers an error of its own, or nothing for a node that went silent (the
proxy retransmits and the node's reply cache answers the copy)."""

from __future__ import annotations

import asyncio
import contextlib
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
from karl_core.ng.options import NgOptions
from karl_core.ng.routing import peek_route
from karl_core.ng.server import NgCounters
from karl_core.ng.statistics import control_statistics
from karl_core.state import OwnerToken
from karl_core.state.fleet_state import FleetState, StateUnavailable
from karl_ngrouter.fleet_view import FleetView
from karl_ngrouter.merge import merge_list, merge_statistics
from karl_ngrouter.node_link import NodeLink, NodeTimeout
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


def _pass_on(outcome: asyncio.Future[Reply], task: asyncio.Future[Reply]) -> None:
    if outcome.done():
        return
    if task.cancelled():
        outcome.cancel()
    elif (exc := task.exception()) is not None:
        outcome.set_exception(exc)
    else:
        outcome.set_result(task.result())


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
    def refuse_new_call(self, load_limit: bool, why: str) -> dict[str, Any]:
        """A new call no node can take, refused as rtpengine refuses one when it is full."""
        self.counters.refused[why] += 1
        if load_limit:
            return load_limit_reply(E.SESSION_LIMIT)
        return error_reply(E.SESSION_LIMIT)

    def shortcut(self, request: Request) -> tuple[str, asyncio.Future[Reply]] | None:
        """`NgProtocol`'s shortcut: a request for a call whose owner this router knows, that creates
        nothing, is forwarded without being decoded (`peek_route` reads its command and call-id).
        None for anything else: it is decoded and goes through `forward`."""
        peeked = peek_route(request.payload)
        if peeked is None:
            return None
        command, call_id = peeked
        if command in CALL_CREATING or command in NODE_WIDE:
            return None
        token = self.owners.peek(call_id)
        if token is None:
            return None
        outcome = self._forward_known(request, command, call_id, token)
        return None if outcome is None else (command.value, outcome)

    def forward(
        self, request: Request, command: Command, call_id: str, load_limit: bool
    ) -> asyncio.Future[Reply] | Coroutine[Any, Any, Reply]:
        """One call's request. The common case — a call this router knows the owner of, a node that
        answers — runs on callbacks alone, with no task and no coroutine; anything else (a new call, an
        unknown owner, `not owner`, a node that does not answer) takes `route`."""
        token = self.owners.peek(call_id)
        if token is not None and command not in CALL_CREATING:
            outcome = self._forward_known(request, command, call_id, token)
            if outcome is not None:
                return outcome
        return self.route(request, command, call_id, load_limit)

    def _forward_known(
        self, request: Request, command: Command, call_id: str, token: OwnerToken
    ) -> asyncio.Future[Reply] | None:
        lease = self.view.lease(token.owner)
        if lease is None:
            return None
        self.owners.hits += 1
        self.counters.forwarded[token.owner] += 1
        datagram = request.cookie + b" " + request.payload
        answer = self.link.send(lease.ng_address, request.cookie, datagram, NODE_TIMEOUT)
        outcome: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(partial(self._answered, outcome, request, command, call_id))
        return outcome

    def _answered(
        self,
        outcome: asyncio.Future[Reply],
        request: Request,
        command: Command,
        call_id: str,
        answer: asyncio.Future[bytes],
    ) -> None:
        if outcome.done():
            return
        data = None if answer.cancelled() or answer.exception() is not None else answer.result()
        if data is not None:
            verdict = _verdict(data)
            if verdict is None or verdict.get("error-reason") != NOT_OWNER:
                if verdict is None and command is Command.DELETE:
                    self.owners.forget(call_id)  # the next request asks Redis
                outcome.set_result(data)  # the node's answer, success or rtpengine's error
                return
            self.counters.retried["not_owner"] += 1
            self.owners.forget(call_id)
        else:
            self.counters.node_timeouts += 1
            self.counters.retried["timeout"] += 1
        # the slow path, from the start: ask Redis, retry, within the budget (never a new call here)
        task = asyncio.get_running_loop().create_task(self.route(request, command, call_id, False))
        task.add_done_callback(partial(_pass_on, outcome))

    async def route(self, request: Request, command: Command, call_id: str, load_limit: bool) -> Reply:
        deadline = self.clock() + BUDGET
        datagram = request.cookie + b" " + request.payload
        creating = command in CALL_CREATING
        excluded: set[str] = set()
        token = self.owners.get(call_id)
        placed_now = False
        for attempt in range(MAX_ATTEMPTS):
            if token is None:
                if not self.view.redis_reachable():
                    # Redis has not answered the fleet view lately: refuse at once rather than wait
                    if creating:
                        return self.refuse_new_call(load_limit, "redis_unavailable")
                    self.counters.refused["redis_unavailable"] += 1
                    return error_reply(STATE_UNAVAILABLE)
                if creating:
                    # one round trip: the claim places the call, or names who holds it already
                    placed = await self._place(call_id, excluded)
                    if isinstance(placed, str):
                        return self.refuse_new_call(load_limit, placed)
                    token, placed_now = placed
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
                if placed_now:
                    excluded.add(token.owner)
                    moved = await self._move_or_none(call_id, token, excluded)
                    if moved is None:
                        return self.refuse_new_call(load_limit, "no_node")
                    token, placed_now = moved
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
                continue  # the same node again: its reply cache answers if the first copy arrived
            verdict = _verdict(answer)
            if verdict is None:
                if command is Command.DELETE:
                    self.owners.forget(call_id)  # the next request asks Redis (the call may be gone)
                else:
                    self.owners.put(call_id, token)
                if placed_now:
                    self.counters.placements[token.owner] += 1
                return answer
            reason = verdict.get("error-reason")
            if reason == NOT_OWNER:
                self.counters.retried["not_owner"] += 1
                self.owners.forget(call_id)
                token, placed_now = None, False
                continue
            refused = verdict.get("result") == "load limit" or reason in REFUSALS
            if refused and creating and placed_now:
                excluded.add(token.owner)
                if attempt + 1 < MAX_ATTEMPTS:
                    moved = await self._move_or_none(call_id, token, excluded)
                else:
                    await self._release(call_id, token)
                    moved = None
                if moved is None:  # every node it could go to is full: refused like one full rtpengine
                    return self.refuse_new_call(load_limit, "all_nodes_full")
                self.counters.retried["refused"] += 1
                token, placed_now = moved
                continue
            if placed_now and verdict.get("result") != "ok":
                await self._release(call_id, token)
            elif verdict.get("result") == "ok":
                self.owners.put(call_id, token)
            return answer
        self.counters.refused["budget"] += 1
        return None

    async def _place(self, call_id: str, excluded: set[str]) -> tuple[OwnerToken, bool] | str:
        """Claim the call for the ring's node: (holder, placed by this request), or why not."""
        candidates = self.view.ring.candidates(call_id, excluded)
        if not candidates:
            return "no_node"
        try:
            placement = await self.state.claim(call_id, candidates[0])
        except StateUnavailable:
            return "redis_unavailable"
        return placement.token, placement.placed

    async def _move_or_none(
        self, call_id: str, held: OwnerToken, excluded: set[str]
    ) -> tuple[OwnerToken, bool] | None:
        """Move a placement its node refused to the next node: (holder, placed by this request), or None
        when no node is left."""
        for candidate in self.view.ring.candidates(call_id, excluded):
            try:
                placement = await self.state.move(call_id, held, candidate)
                if not placement.placed and not placement.token.owner:
                    # nobody holds it any more (the node released its claim): claim it afresh
                    placement = await self.state.claim(call_id, candidate)
            except StateUnavailable:
                return None
            return placement.token, placement.placed
        await self._release(call_id, held)
        return None

    async def _release(self, call_id: str, held: OwnerToken) -> None:
        with contextlib.suppress(StateUnavailable):  # else the claim expires by itself
            await self.state.release(call_id, held)

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
