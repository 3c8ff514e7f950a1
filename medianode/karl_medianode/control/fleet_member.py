"""A media node as a member of a fleet: its lease in Redis, the calls it holds, and their state.

The node answers NG for a call only while it holds it: it owns the call at the epoch Redis gave it and
its lease is valid by its own monotonic clock (`karl_core.state.lease`). Otherwise it answers the
router with `NOT_OWNER` (`karl_core.ng.fleet`), and the router asks Redis who holds the call.

One exception keeps calls talking through a Redis outage: when this node's last renewal failed
because Redis did not answer (not because the lease was found gone), the node goes on answering for
the calls it holds after its lease ran out ("holding over"), and takes no new ones. That is safe
because nothing can move a call without Redis: the failover controller (docs/clustering.md, part 2)
bumps epochs in Redis, and declares a node dead only when its lease expired *and* a majority of the
members cannot reach it. `majority_reachable` is the node's own side of that rule (`PeerWatch`): cut
off from Redis *and* from most of its peers, it stops answering, because they may be moving its calls.

A call the failover controller moved to this node (`adopt:<id>` in Redis) is taken up at once: its
state is read, it is restored on this node's own ports and relays towards the addresses it had
learned, and its new state is written. A request for such a call that arrives before that takes it up
first.

Every change of a call is queued for Redis (`StateWriter`: in order, batched) and the reply waits for
the write — at most `WRITE_WAIT`, so that a hung Redis never holds a proxy past its retransmission
timer. A write that did not make it marks the call dirty; it is written again, whole, as soon as Redis
answers (the next lease renewal). So the durability bound is: what a proxy was told is in Redis unless
Redis was unreachable at that moment, and then it is there within a lease interval of Redis coming back.

When Redis comes back empty (restarted without data) the node notices at its next lease renewal (its
previous lease is gone) and writes every call again: a write re-creates ownership when nobody holds
the call and is refused (`FENCED`) when another node does — that call is no longer this node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from karl_core import __version__
from karl_core.logs import LogThrottle
from karl_core.ng.commands import Command
from karl_core.ng.fleet import CALL_CREATING, STATE_UNAVAILABLE, not_owner_reply
from karl_core.ng.options import NgOptions
from karl_core.session import SCHEMA_VERSION, CallState
from karl_core.session.ended_event import CDR_REASONS, NO_ROOM, TAKE_UP_FAILED, ended_event
from karl_core.state import OwnerToken, SaveResult
from karl_core.state.call_store import StoredCall
from karl_core.state.failover_state import FailoverState
from karl_core.state.fleet_state import CALL_TTL, FleetState, StateUnavailable, StateWriter
from karl_core.state.lease import LeaseClock, NodeLease, default_margin
from karl_core.state.redis_connection import RedisSettings, connect
from karl_core.state.redis_keys import KeySchema
from karl_core.state.resp import lean_client
from karl_core.webhook import WebhookSender
from karl_medianode.control.call_persistence import StoreCounters
from karl_medianode.control.failover_event import moved_event
from karl_medianode.control.peer_watch import PeerWatch
from karl_medianode.engine import CallEnded
from karl_medianode.engine.calls import Call
from karl_medianode.quality.call_quality import CallQuality

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode

log = logging.getLogger("karl.fleet")

WRITE_WAIT = 0.25
"""Seconds a reply waits for its call's state to reach Redis before it is sent anyway."""
ADOPTION_POLL = 0.25
"""Seconds between two looks at the list of calls failover moved to this node."""
ADOPT_BATCH = 16
"""Calls taken off the adoption list (and their states read and parsed) at a time."""
ADOPT_SLICE = 0.002
"""Seconds of restoring calls between two turns of the event loop: the relay never waits long for
adoption, not even for a thousand calls."""

Reply = dict[str, Any] | Awaitable[dict[str, Any]]


@dataclass
class FleetCounters:
    """The node's side of the fleet, as plain integers (metrics read them at scrape time)."""

    lease_renewals: int = 0
    lease_failures: int = 0
    lease_lost: int = 0
    """Renewals that found the lease gone: Redis lost its data, or this node was cut off past its TTL."""
    not_owner: int = 0
    """Requests refused because another node holds the call, or this node's lease was not valid."""
    state_unavailable: int = 0
    """Requests refused because Redis could not say who holds the call."""
    reasserted: int = 0
    """Calls written again, whole, because their keys were gone from Redis."""
    fenced_calls: int = 0
    """Calls this node stopped acting for because another node holds them now."""
    cdrs_withheld: int = 0
    """Ended calls this node wrote no CDR for: another node held them (that node writes it)."""
    adopted: int = 0
    """Calls of a failed node this node took up (failover)."""
    adoption_failed: int = 0
    """Calls moved to this node that it could not take up (no state, no ports): they ended."""


def ended_record(state: CallState, reason: str, now: float) -> CallEnded:
    """The record (for its CDR) of a call that ended without its engine: failover could not keep it."""
    return CallEnded(
        state.call_id, reason, state.created, now, state, CallQuality.from_dict(state.quality).summary()
    )


def advertised(address: str, fallback: str) -> str:
    """An address others can reach: a wildcard bind address is replaced by `fallback`."""
    return fallback if address in ("", "0.0.0.0", "::") else address


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class FleetMember:
    def __init__(self, node: MediaNode, settings: RedisSettings) -> None:
        engine = node.engine
        assert engine is not None
        self.node = node
        self.engine = engine
        self.settings = settings
        self.node_id = node.config.node.id
        self.boot_id = uuid.uuid4().hex
        self.client = connect(settings)
        self.state = FleetState(self.client, KeySchema(settings.prefix), lean=lean_client(settings))
        self.writer = StateWriter(self.state)
        self.failover = FailoverState(self.state)
        self.peers = PeerWatch(self.node_id, self.state)
        url = node.config.database.failover_webhook_url
        self.webhook = WebhookSender(url) if url else None
        """Where the events of calls taken up after a failover go (KARL_FAILOVER_WEBHOOK_URL)."""
        self.lease = LeaseClock(settings.lease_ttl, default_margin(settings.lease_ttl))
        self.owned: dict[str, OwnerToken] = {}
        """The calls this node holds, with the epoch of its ownership."""
        self.counters = StoreCounters()
        self.fleet_counters = FleetCounters()
        self._versions: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._collecting: list[asyncio.Future[Any]] | None = None
        self._resolving: dict[str, asyncio.Future[None]] = {}
        self._lost: dict[str, OwnerToken] = {}
        """Calls found to be another node's by a write of the request being answered."""
        self._abandoning: set[str] = set()
        self._renewed_once = False
        self.redis_down_since: float | None = None
        """When the first renewal that failed since the last success was sent (None: Redis answers)."""
        self._resaving: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._throttle = LogThrottle(30.0)
        self.clock: Callable[[], float] = time.monotonic
        self.cdr_sink: Callable[[CallEnded], None] | None = None
        """Where the CDRs of ended calls go (the CDR writer's `submit`). Only the call's holder writes
        one: the removal of its keys is the claim (compare owner and epoch), so a node that lost the
        call writes none."""

    # -- start and stop ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Hook into the engine, try a first lease renewal and take back this node's calls (bounded:
        a Redis that is down delays nothing, the node starts unready and keeps trying)."""
        self.engine.on_call_changed = self.changed
        self.node.call_ended_listeners.append(self.ended)
        self.writer.start()
        await self._renew()
        try:
            await self.restore()
        except StateUnavailable as exc:
            log.error(
                "could not read this node's calls from Redis: %s", exc, extra={"event": "restore_failed"}
            )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._lease_loop()))
        self._tasks.append(loop.create_task(self._touch_loop()))
        self._tasks.append(loop.create_task(self._adoption_loop()))
        await self.peers.start()
        if self.webhook is not None:
            self.webhook.start()
        log.info(
            "joined the fleet",
            extra={
                "event": "fleet_joined",
                "redis": self.settings.describe(),
                "lease_valid": self.lease.valid(self.clock()),
                "calls": len(self.owned),
            },
        )

    async def stop(self) -> None:
        """Let queued writes go out, leave the members, close Redis (each step bounded)."""
        for task in self._tasks:
            task.cancel()
        self.peers.stop()
        if self.webhook is not None:
            await self.webhook.stop(1.0)
        await self.writer.stop(1.0)
        try:
            await self.state.leave(self.node_id, self.boot_id)
        except StateUnavailable as exc:
            log.warning("could not leave the fleet cleanly: %s", exc, extra={"event": "fleet_leave_failed"})
        await self.client.aclose()
        if self.state.lean is not None:
            self.state.lean.close()

    def lease_valid(self) -> bool:
        return self.lease.valid(self.clock())

    def majority_reachable(self) -> bool:
        """Whether this node reaches more than half of the other registered members (`PeerWatch`)."""
        return self.peers.majority_reachable()

    def may_act(self, now: float) -> bool:
        """Whether the node may answer for the calls it holds (see the module docstring)."""
        if self.lease.valid(now):
            return True
        return self.redis_down_since is not None and self._renewed_once and self.majority_reachable()

    def holding_over(self) -> bool:
        now = self.clock()
        return not self.lease.valid(now) and self.may_act(now)

    def lease_document(self) -> NodeLease:
        s = self.node.settings
        ng = host_port(advertised(s.ng_address, s.media_ip), s.ng_port)
        api_section = self.node.config.api
        api = host_port(advertised(api_section.address, s.media_ip), api_section.port)
        return NodeLease(
            node_id=self.node_id,
            boot_id=self.boot_id,
            ng=ng,
            api=api,
            media_ip=s.advertised_ip,
            port_min=s.port_min,
            port_max=s.port_max,
            capacity=s.engine.max_sessions,
            load=self.engine.active_calls(),
            ready=self.node.startup_complete and not self.node.draining,
            draining=self.node.draining,
            software=f"karl {__version__}",
            state_schema=SCHEMA_VERSION,
        )

    # -- NG ------------------------------------------------------------------------------------------
    def dispatch(self, command: Command, opts: NgOptions, fits: Any) -> Reply:
        """Handle one call's request (the node handles node-wide ones itself). Synchronous for a call
        this node holds, so its requests apply in arrival order; an awaitable when Redis must be asked
        first or the change must be written."""
        if not self.may_act(self.clock()):
            self.fleet_counters.not_owner += 1
            return not_owner_reply(None, None)
        call_id = opts.call_id
        if call_id is None:
            return self.engine.handle(command, opts, fits)  # the engine's own error
        if call_id in self._resolving:
            return self._resolve_then_handle(command, opts, fits, call_id)  # after the earlier one
        if call_id not in self.owned:
            if command not in CALL_CREATING:
                return self._resolve_then_handle(command, opts, fits, call_id)
            if self.redis_down_since is not None:
                # Redis did not answer the last renewal: the call could not be placed (answer at once)
                self.fleet_counters.state_unavailable += 1
                return {"result": "error", "error-reason": STATE_UNAVAILABLE}
            # A new call: handled at once, held provisionally (epoch 0). Its first write places it in
            # the same round trip that saves it; a call another node holds comes back FENCED, and is
            # undone before the reply (`_after_writes`).
            self.owned[call_id] = OwnerToken(self.node_id, 0)
            return self._handle_held(command, opts, fits, call_id)
        return self._handle_held(command, opts, fits, call_id)

    def _handle_held(self, command: Command, opts: NgOptions, fits: Any, call_id: str) -> Reply:
        collected: list[asyncio.Future[Any]] = []
        self._collecting = collected
        try:
            reply = self.engine.handle(command, opts, fits)
        finally:
            self._collecting = None
        if call_id in self.owned and self.engine.find_call(call_id) is None:
            self._forget_placement(call_id)  # a refused offer: the call never came to be
        if not collected:
            return reply
        return self._after_writes(reply, collected, call_id)

    async def _after_writes(
        self, reply: dict[str, Any], writes: list[asyncio.Future[Any]], call_id: str
    ) -> dict[str, Any]:
        await asyncio.wait(writes, timeout=WRITE_WAIT)
        holder = self._lost.pop(call_id, None)
        if holder is None:
            return reply
        # The call turned out to be another node's (a proxy or a stale router sent its offer here,
        # or failover moved it meanwhile): undo what this request did and send the router on.
        if self.engine.find_call(call_id) is not None and call_id not in self.owned:
            self._abandon(call_id)
        self.fleet_counters.not_owner += 1
        if not holder.owner:
            return not_owner_reply(None, None)  # it ended elsewhere: the router asks Redis
        return not_owner_reply(holder.owner, holder.epoch)

    def _undo_lost(self, call_id: str) -> None:
        lost = self._lost.pop(call_id, None) is not None
        if lost and self.engine.find_call(call_id) is not None and call_id not in self.owned:
            self._abandon(call_id)

    def _abandon(self, call_id: str) -> None:
        """End a call this node created for another node's call: no CDR, nothing in Redis."""
        self._abandoning.add(call_id)
        try:
            self.engine.handle(
                Command.DELETE, NgOptions(command=Command.DELETE, call_id=call_id, delete_delay=0)
            )
        finally:
            self._abandoning.discard(call_id)

    async def _resolve_then_handle(
        self, command: Command, opts: NgOptions, fits: Any, call_id: str
    ) -> dict[str, Any]:
        earlier = self._resolving.get(call_id)
        if earlier is not None:
            await earlier  # an earlier request for this call asks Redis: go after it, in order
            result = self.dispatch(command, opts, fits)
            return await result if not isinstance(result, dict) else result
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._resolving[call_id] = done
        try:
            try:
                token = await self.state.owner_of(call_id)
            except StateUnavailable:
                self.fleet_counters.state_unavailable += 1
                return {"result": "error", "error-reason": STATE_UNAVAILABLE}
            if token is not None and token.owner != self.node_id:
                self.fleet_counters.not_owner += 1
                return not_owner_reply(token.owner, token.epoch)
            if token is not None and self.engine.find_call(call_id) is None:
                # moved here by failover, not taken up yet: take it up before the request
                try:
                    await self.adopt([call_id])
                except StateUnavailable:
                    self.fleet_counters.state_unavailable += 1
                    return {"result": "error", "error-reason": STATE_UNAVAILABLE}
            elif token is not None:
                self.owned[call_id] = token
        finally:
            del self._resolving[call_id]
            done.set_result(None)
        result = self._handle_held(command, opts, fits, call_id)
        return await result if not isinstance(result, dict) else result

    def _forget_placement(self, call_id: str) -> None:
        token = self.owned.pop(call_id)
        self._versions.pop(call_id, None)
        if token.epoch == 0:
            return  # never written: nothing of this node's in Redis
        task = asyncio.get_running_loop().create_task(self._release(call_id, token))
        task.add_done_callback(lambda _: None)

    async def _release(self, call_id: str, token: OwnerToken) -> None:
        with contextlib.suppress(StateUnavailable):  # else its keys expire by themselves (CALL_TTL)
            await self.state.release(call_id, token)

    # -- state ---------------------------------------------------------------------------------------
    def changed(self, call: Call) -> None:
        """The engine changed a call: queue its state (the reply of the request waits for it)."""
        self._write(call.call_id)

    def _write(self, call_id: str) -> None:
        token = self.owned.get(call_id)
        if token is None:
            return
        try:
            document = self.engine.state_document(call_id)
            if document is None:
                return
            text = json.dumps(document, separators=(",", ":"))
        except Exception as exc:  # a state that cannot be written is a bug: counted, logged, call goes on
            self.counters.save_failed += 1
            self._warn("write", exc, "could not serialise the state of call %s: %s", call_id, exc)
            return
        version = self._versions.get(call_id, 0) + 1
        self._versions[call_id] = version
        write = self.writer.save(call_id, version, token, self.node_id, text)
        write.add_done_callback(partial(self._saved, call_id, token))
        if self._collecting is not None:
            self._collecting.append(write)

    def _saved(self, call_id: str, token: OwnerToken, write: asyncio.Future[Any]) -> None:
        if write.cancelled():
            return
        exc = write.exception()
        if exc is not None:
            self.counters.save_failed += 1
            if self.owned.get(call_id) == token:
                self._dirty.add(call_id)
            self._warn("write", None, "the state of call %s did not reach Redis: %s", call_id, exc)
            return
        result, holder = write.result()
        if result is SaveResult.FENCED:
            self.counters.fenced += 1
            self._fenced(call_id, token, holder)
            return
        if holder is not None and holder != token and self.owned.get(call_id) == token:
            self.owned[call_id] = holder  # the first write of a new call: now its epoch is known
        self._dirty.discard(call_id)
        if result is SaveResult.STALE:
            self.counters.stale += 1
        else:
            self.counters.saved += 1

    def _fenced(self, call_id: str, token: OwnerToken, holder: OwnerToken | None) -> None:
        """Another node holds the call now: stop answering for it (its media may go on: harmless)."""
        if self.owned.get(call_id) != token:
            return
        del self.owned[call_id]
        self._dirty.discard(call_id)
        if token.epoch == 0:
            # a new call that was never this node's: the request that created it undoes it, or, when
            # that request stopped waiting already, this does a little later
            if holder is not None:
                self._lost[call_id] = holder
                asyncio.get_running_loop().call_later(2 * WRITE_WAIT, self._undo_lost, call_id)
            return
        self.fleet_counters.fenced_calls += 1
        # a request waiting for this write must not answer `ok`: the router goes to the holder
        self._lost[call_id] = holder if holder is not None else OwnerToken("", 0)
        asyncio.get_running_loop().call_later(2 * WRITE_WAIT, self._lost.pop, call_id, None)
        self._warn(
            "fenced",
            None,
            "call %s is held by %s now: this node releases it (no CDR: the holder writes it)",
            call_id,
            f"{holder.owner} (epoch {holder.epoch})" if holder else "nobody (it ended on another node)",
        )
        if self.engine.find_call(call_id) is not None:
            self.fleet_counters.cdrs_withheld += 1  # its holder writes the record of its end
            self._abandon(call_id)  # stops relaying, frees the ports; no CDR, nothing in Redis

    def ended(self, ended: CallEnded) -> None:
        call_id = ended.call_id
        token = self.owned.pop(call_id, None)
        self._versions.pop(call_id, None)
        self._dirty.discard(call_id)
        if token is None:
            if call_id not in self._abandoning:
                self.fleet_counters.cdrs_withheld += 1  # not held (fenced): its holder writes the CDR
            return
        write = self.writer.remove(call_id, token, self.node_id)
        write.add_done_callback(partial(self._removed, ended))
        if self._collecting is not None:
            self._collecting.append(write)

    def _removed(self, ended: CallEnded, write: asyncio.Future[Any]) -> None:
        if write.cancelled():
            return
        exc = write.exception()
        if exc is not None:
            # the keys expire by themselves (CALL_TTL). The CDR is written: this node held the call as
            # far as anyone could tell, and a lost record is worse than a late one
            self.counters.remove_failed += 1
            self._warn("remove", None, "an ended call's state was not removed from Redis: %s", exc)
        elif write.result()[0] is SaveResult.FENCED:
            self.counters.remove_fenced += 1
            self.fleet_counters.cdrs_withheld += 1
            return
        else:
            self.counters.removed += 1
        if self.cdr_sink is not None:
            try:
                self.cdr_sink(ended)
            except Exception:
                log.exception("the CDR of call %s could not be handed over", ended.call_id)

    async def restore(self) -> int:
        """Take back the calls Redis says this node holds (after a restart on the same host), each at a
        new epoch, so that anything its earlier run might still write is fenced. A call failover moved
        meanwhile is not taken back."""
        # calls failover moved here that the earlier run had not taken up yet are another node's
        # state (its ports): they are taken up as moved calls, on this node's own ports
        moved_in = await self.failover.take_adoptions(self.node_id, 1_000_000)
        if moved_in:
            await self.adopt(moved_in)
        call_ids = [c for c in await self.state.calls_of(self.node_id) if c not in moved_in]
        unreadable_before = len(self.state.unreadable_states)
        records = await self.state.load(call_ids)
        self.counters.restore_failed += len(self.state.unreadable_states) - unreadable_before
        mine = [r.call_id for r in records if r.token.owner == self.node_id and r.call_id not in self.owned]
        tokens = await self.state.reclaim(self.node_id, mine)
        restored = 0
        now = time.time()
        for record in records:
            token = tokens.get(record.call_id)
            if token is None or record.call_id in self.owned:
                continue
            record = replace(record, token=token)
            try:
                self.engine.restore(CallState.from_dict(record.state), now)
            except Exception as exc:
                self.counters.restore_failed += 1
                log.error(
                    "could not restore call %s: %s",
                    record.call_id,
                    exc,
                    extra={"call_id": record.call_id, "event": "restore_failed"},
                )
                continue
            self.owned[record.call_id] = record.token
            self._versions[record.call_id] = record.version
            restored += 1
        self.counters.restored += restored
        return restored

    # -- failover: calls moved to this node -------------------------------------------------------
    async def adopt(self, call_ids: list[str]) -> int:
        """Take up calls the failover controller moved to this node: restore each on this node's own
        ports (relaying at once towards the addresses it had learned) and write its new state. A call
        that cannot be taken up (unreadable state, no ports) ends, with its CDR and event, so that it
        is never half-adopted."""
        call_ids = [c for c in call_ids if c not in self.owned]
        if not call_ids:
            return 0
        records = {record.call_id: record for record in await self.state.load(call_ids)}
        origins = await self.failover.moved_from(call_ids)
        now = time.time()
        adopted = 0
        slice_started = self.clock()
        for call_id in call_ids:
            if self.clock() - slice_started >= ADOPT_SLICE:
                await asyncio.sleep(0)  # the relay's packets go first
                slice_started = self.clock()
            record = records.get(call_id)
            if call_id in self.owned or (record is not None and record.token.owner != self.node_id):
                continue  # taken up already, or moved on again
            if record is None:
                continue  # it ended before this node took it up (a request reached it first)
            try:
                before = CallState.from_dict(record.state)
                moved = before.clone()
                # the nodes it passed through, for its CDR: where it was, then this node
                origin = origins.get(call_id, "")
                moved.nodes = [*(before.nodes or ([origin] if origin else [])), self.node_id]
                self.engine.restore(moved, now, same_host=False)
            except Exception as exc:
                self._end_unadoptable(call_id, record, origins.get(call_id, ""), exc)
                continue
            self.owned[call_id] = record.token
            self._versions[call_id] = record.version
            self._write(call_id)  # its new ports and addresses
            adopted += 1
            document = self.engine.state_document(call_id) if self.webhook is not None else None
            if self.webhook is not None and document is not None:
                after = CallState.from_dict(document)  # with its streams on this node's ports
                advertised = self.node.settings.advertised_ip
                event = moved_event(before, after, origin, self.node_id, record.token.epoch, now, advertised)
                self.webhook.submit(event)
        self.fleet_counters.adopted += adopted
        if adopted:
            log.info(
                "took up %d call(s) of a failed node",
                adopted,
                extra={"event": "calls_adopted", "calls": adopted},
            )
        return adopted

    async def hand_over(self, timeout: float) -> int:
        """Drain hand-over: a stopping node asks the failover controller to move the calls it still
        holds, and waits (at most `timeout` seconds) until they are held by other nodes, relaying all
        the while. Those calls are then this node's no more: stopping writes no CDR for them (their
        new holders will). Returns how many were handed over."""
        calls = set(self.owned)
        if not calls:
            return 0
        deadline = self.clock() + timeout
        try:
            if await self.failover.leader() is None:
                log.warning(
                    "no failover controller leads: the %d call(s) still up end here",
                    len(calls),
                    extra={"event": "handover_impossible", "calls": len(calls)},
                )
                return 0
            await self.failover.request_handover(self.node_id, self.boot_id, ttl=timeout + 5)
            remaining = calls
            while remaining and self.clock() < deadline:
                await asyncio.sleep(0.1)
                remaining = calls & set(await self.state.calls_of(self.node_id))
        except StateUnavailable as exc:
            log.error("could not hand calls over: %s", exc, extra={"event": "handover_failed"})
            return 0
        with contextlib.suppress(StateUnavailable):
            await self.failover.cancel_handover(self.node_id)  # done: new calls here stay here
        handed = calls - remaining
        for call_id in handed:
            self.owned.pop(call_id, None)
            self._dirty.discard(call_id)
        log.info(
            "handed %d call(s) over to other nodes; %d not",
            len(handed),
            len(remaining),
            extra={"event": "calls_handed_over", "calls": len(handed), "kept": len(remaining)},
        )
        return len(handed)

    def write_endings(self, endings: list[dict[str, Any]]) -> int:
        """The CDRs and `call_ended` events of calls failover could not keep (a dead node's calls no
        node had room for): the controller put their records on the fleet's list, and this node took
        them off it. Returns how many CDRs were written."""
        written = 0
        now = time.time()
        for ending in endings:
            call_id = str(ending.get("call_id", ""))
            node = str(ending.get("node", ""))
            reason = str(ending.get("reason", NO_ROOM))
            state_text = ending.get("state") or None
            if self.webhook is not None and call_id:
                self.webhook.submit(ended_event(call_id, state_text, node, reason, now))
            try:
                state = CallState.from_dict(json.loads(state_text or ""))
                state.nodes = state.nodes or [node]
            except Exception as exc:
                log.error(
                    "call %s ended in a failover with an unreadable state: no CDR (%s)",
                    call_id,
                    exc,
                    extra={"event": "ending_unreadable", "call_id": call_id},
                )
                continue
            if self._record(ended_record(state, CDR_REASONS.get(reason, reason), now)):
                written += 1
        return written

    def _record(self, ended: CallEnded) -> bool:
        if self.cdr_sink is None:
            return False
        try:
            self.cdr_sink(ended)
        except Exception:
            log.exception("the CDR of call %s could not be handed over", ended.call_id)
            return False
        return True

    def _end_unadoptable(self, call_id: str, record: StoredCall, origin: str, exc: Exception) -> None:
        """A call moved here that cannot be restored (unreadable state, no free ports): it ends. Its
        keys go (compare owner and epoch: the claim on its record), then its CDR is written and its
        `call_ended` event sent, so that it is never half-adopted and never silently gone."""
        self.fleet_counters.adoption_failed += 1
        log.error(
            "could not take up call %s moved here by failover: %s; it ends",
            call_id,
            exc,
            extra={"call_id": call_id, "event": "adoption_failed"},
        )
        now = time.time()
        try:
            state = CallState.from_dict(record.state)
            state.nodes = [*(state.nodes or ([origin] if origin else [])), self.node_id]
            ended: CallEnded | None = ended_record(state, CDR_REASONS[TAKE_UP_FAILED], now)
        except Exception:
            ended = None  # unreadable: the event still says the call ended
        event = ended_event(call_id, json.dumps(record.state), origin or self.node_id, TAKE_UP_FAILED, now)
        removal = self.writer.remove(call_id, record.token, self.node_id)

        def removed(done: asyncio.Future[Any]) -> None:
            if done.cancelled():
                return
            if done.exception() is None and done.result()[0] is SaveResult.FENCED:
                return  # it is another node's now: that node answers for it
            if self.webhook is not None:
                self.webhook.submit(event)
            if ended is not None:
                self._record(ended)

        removal.add_done_callback(removed)

    async def cancel_hand_over(self) -> None:
        with contextlib.suppress(StateUnavailable):
            await self.failover.cancel_handover(self.node_id)

    async def _adoption_loop(self) -> None:
        # what was taken off the lists in Redis stays here until it is done: a Redis error between
        # the two loses nothing (the calls are this node's in Redis already)
        pending: list[str] = []
        while True:
            try:
                if not pending:
                    pending = await self.failover.take_adoptions(self.node_id, ADOPT_BATCH)
                if pending:
                    await self.adopt(pending)
                    pending = []
                    continue  # there may be more
            except StateUnavailable:
                pass
            except Exception:
                log.exception("taking up calls moved to this node failed")
                pending = []  # a bug: not retried forever (a request for one of them still takes it up)
            try:
                endings = await self.failover.take_endings() if self.may_act(self.clock()) else []
                if endings:
                    self.write_endings(endings)
            except StateUnavailable:
                pass
            except Exception:
                log.exception("writing the records of calls that ended in a failover failed")
            await asyncio.sleep(ADOPTION_POLL)

    # -- the lease and the calls' keys ---------------------------------------------------------------
    async def _renew(self) -> None:
        sent = self.clock()
        try:
            previous = await self.state.renew_lease(self.lease_document(), self.settings.lease_ttl)
        except StateUnavailable as exc:
            self.fleet_counters.lease_failures += 1
            if self.redis_down_since is None:
                self.redis_down_since = sent
            self._warn("lease", None, "could not renew this node's lease in Redis: %s", exc)
            return
        self.redis_down_since = None
        # The lease had run out by this node's own clock: failover may have moved its calls meanwhile,
        # even if a renewal that timed out here reached Redis late and left a lease behind
        lapsed = self._renewed_once and not self.lease.valid(sent)
        self.lease.confirmed(sent)
        self.fleet_counters.lease_renewals += 1
        if (previous is None or lapsed) and self._renewed_once:
            # Redis lost the lease (restarted empty) or this node was cut off past its lease: write
            # every call again; those another node took meanwhile come back FENCED, and are let go
            self.fleet_counters.lease_lost += 1
            log.warning(
                "this node's lease %s: writing its %d calls again",
                "ran out" if lapsed else "was gone from Redis",
                len(self.owned),
                extra={"event": "lease_lost", "calls": len(self.owned)},
            )
            self._dirty.update(self.owned)
            self.fleet_counters.reasserted += len(self.owned)
        self._renewed_once = True
        if self._dirty and (self._resaving is None or self._resaving.done()):
            self._resaving = asyncio.get_running_loop().create_task(self._write_dirty())

    async def _write_dirty(self) -> None:
        for call_id in list(self._dirty):
            if call_id in self.owned:
                self._write(call_id)
            else:
                self._dirty.discard(call_id)
            await asyncio.sleep(0)  # a thousand calls do not stall the relay

    async def _lease_loop(self) -> None:
        interval = self.settings.lease_ttl / 3
        while True:
            started = self.clock()
            try:
                await self._renew()
            except Exception:  # a bug: logged, and the lease is renewed again next time
                log.exception("renewing the lease failed")
            await asyncio.sleep(max(0.05, interval - (self.clock() - started)))

    async def _touch_loop(self) -> None:
        """Keep the keys of live calls from expiring; notice calls Redis lost or gave to another node."""
        while True:
            await asyncio.sleep(CALL_TTL / 5)
            calls = list(self.owned.items())
            try:
                results = await self.state.touch(calls)
            except StateUnavailable:
                continue
            except Exception:
                log.exception("refreshing the calls' keys in Redis failed")
                continue
            for (call_id, token), result in zip(calls, results, strict=True):
                if result == 0:
                    self._dirty.add(call_id)
                    self.fleet_counters.reasserted += 1
                elif result < 0:
                    self._fenced(call_id, token, None)

    def _warn(self, kind: str, exc: BaseException | None, message: str, *args: object) -> None:
        suppressed = self._throttle.allow(kind)
        if suppressed is not None:
            log.warning(
                message + (f" ({suppressed} similar suppressed)" if suppressed else ""),
                *args,
                exc_info=exc,
                extra={"event": f"fleet_{kind}"},
            )
