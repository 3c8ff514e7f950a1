"""The failover controller (`karl-operator failover`): watches the fleet in Redis and moves a dead node's
calls to the survivors.

Several may run; one leads at a time, through a key in Redis with a TTL (`LEAD`), and every move it
makes names its term, so a controller that lost the lead (paused, cut off) can change nothing. Each tick
(a quarter second) the leader reads the members, their leases and the peers' reports, decides with
`planner.DeathWatch` which nodes are dead, and moves each dead node's calls in batches: `ADOPT` gives a
call to its survivor at a new fleet epoch and puts it on the survivor's adoption list; the survivor
restores it on its own ports. A call no survivor has room for ends (`ABANDON`): in the same step its
record goes onto the fleet's endings list, from which a live node writes its CDR and sends its
`call_ended` event. Room is what the survivors' leases say, less the calls moved to them that their
leases do not show yet, so two nodes failing at once cannot overfill one. After the moves the controller
waits for Redis's replicas (`WAIT`), so that a Sentinel failover of Redis itself cannot hand the same
epochs out again. A dead node with no calls left is removed from the members, so that it no longer
counts in the majority."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from karl_core.session.ended_event import NO_ROOM
from karl_core.state.failover_state import FailoverState, Leadership, MoveResult
from karl_core.state.fleet_state import FleetState, StateUnavailable
from karl_core.state.lease import NodeLease
from karl_operator.failover.planner import DeathWatch, assign, room_of, survivors_ring

log = logging.getLogger("karl.failover")

TICK = 0.25
LEADER_TTL = 2.0
"""Seconds the lead lasts without renewal (renewed every tick)."""
SUSPICION_FRESH = 3.0
"""Seconds a peer's report that it cannot reach a node counts."""
BATCH = 200
"""Calls moved per round trip."""
REPLICA_WAIT = 1.0
COMMIT_HOLD = 5.0
"""Seconds the calls moved to a node count against its room, at most, until its lease shows them."""


REASONS = ("failed", "handover")


@dataclass
class FailoverCounters:
    failovers: Counter[str] = field(default_factory=Counter)
    """Nodes whose calls were moved, by why: failed (dead), handover (stopping, asked for it)."""
    calls_moved: Counter[str] = field(default_factory=Counter)
    calls_ended: int = 0
    """Calls of a dead node no survivor had room for."""
    moves_refused: int = 0
    """Moves refused because the call had moved already, or this controller was deposed."""
    last_failover_seconds: float = 0.0
    """How long the last failover took, from the first tick that found the node dead."""


@dataclass
class Commitment:
    """Calls moved to a node that its lease may not show yet (its load is renewed every second)."""

    load: int
    """The node's load in the lease the moves were planned with."""
    calls: int
    until: float
    """When it is forgotten (monotonic): by then the node's lease shows the calls it took up."""


@dataclass
class FailoverController:
    state: FleetState
    controller_id: str
    restart_grace: float
    clock: Callable[[], float] = time.monotonic
    counters: FailoverCounters = field(default_factory=FailoverCounters)
    leadership: Leadership | None = None
    committed: dict[str, Commitment] = field(default_factory=dict)
    """Per node, calls moved to it that its lease may not show yet."""
    members: dict[str, NodeLease | None] = field(default_factory=dict)
    """The registered members and their leases, as the last tick read them."""
    seen: dict[str, NodeLease] = field(default_factory=dict)
    """Each node's last lease this controller saw (a dead node's says which call-state schema it
    wrote)."""
    last_tick: float | None = None
    """When a tick last read the fleet from Redis (monotonic)."""
    watch: DeathWatch = field(init=False)
    failover: FailoverState = field(init=False)

    def __post_init__(self) -> None:
        self.watch = DeathWatch(self.restart_grace)
        self.failover = FailoverState(self.state)

    @property
    def leads(self) -> bool:
        return self.leadership is not None and self.leadership.leads

    async def run(self) -> None:
        while True:
            started = self.clock()
            try:
                await self.tick()
            except StateUnavailable as exc:
                log.warning("Redis: %s", exc, extra={"event": "failover_redis_unavailable"})
                self.leadership = None
            except Exception:
                log.exception("failover tick failed")
            await asyncio.sleep(max(0.01, TICK - (self.clock() - started)))

    async def tick(self) -> list[str]:
        """One look at the fleet; returns the nodes failed over."""
        leadership = await self.failover.lead(self.controller_id, LEADER_TTL)
        if leadership.leads and not self.leads:
            # what it saw before it led is stale: restart every grace from now (what Kubernetes said
            # of nodes that will not come back stays true)
            self.watch = DeathWatch(self.restart_grace, gone=set(self.watch.gone))
            log.info(
                "leading failover (term %d)",
                leadership.term,
                extra={"event": "failover_leading", "term": leadership.term},
            )
        self.leadership = leadership
        if not leadership.leads:
            return []
        members, live = await self.state.nodes()
        leases: dict[str, NodeLease | None] = dict.fromkeys(members)
        leases.update({lease.node_id: lease for lease in live if lease.node_id in leases})
        self.members, self.last_tick = leases, self.clock()
        self.seen.update({lease.node_id: lease for lease in live})
        absent = [node_id for node_id, lease in leases.items() if lease is None]
        suspicions = await self.failover.suspicions(absent, SUSPICION_FRESH) if absent else {}
        dead = self.watch.dead(leases, suspicions, self.clock())
        # a node that stops asks for its calls to be moved (drain hand-over): no majority needed
        asking = await self.failover.handovers(list(leases))
        # only the boot that asked: not a node that restarted or took new calls since (undrained)
        leaving = [
            n
            for n, boot in asking.items()
            if n not in dead and (lease := leases.get(n)) and lease.boot_id == boot
        ]
        if not dead and not leaving:
            return []
        # one room for the whole tick: two nodes failing at once do not both fill the same survivor
        room = self.room(leases)
        for node_id in dead:
            await self.fail_over(node_id, leases, dead + leaving, leadership.term, room=room)
        for node_id in leaving:
            await self.fail_over(node_id, leases, dead + leaving, leadership.term, "handover", room)
        return dead + leaving

    def room(self, leases: dict[str, NodeLease | None]) -> dict[str, int | None]:
        """Calls each live node can still take: what its lease says, less the calls moved to it that
        the lease does not show yet."""
        now = self.clock()
        live = {n: lease for n, lease in leases.items() if lease is not None}
        room = room_of(live.values())
        for node_id, commitment in list(self.committed.items()):
            lease = live.get(node_id)
            shown = lease.load - commitment.load if lease is not None else 0
            if lease is None or now >= commitment.until or shown >= commitment.calls:
                del self.committed[node_id]
                continue
            left = room.get(node_id)
            if left is not None:
                room[node_id] = max(0, left - (commitment.calls - max(0, shown)))
        return room

    def _commit(self, node_id: str, lease: NodeLease | None, calls: int) -> None:
        if lease is None or calls <= 0:
            return
        commitment = self.committed.get(node_id)
        until = self.clock() + COMMIT_HOLD
        if commitment is None:
            self.committed[node_id] = Commitment(lease.load, calls, until)
        else:
            commitment.calls += calls
            commitment.until = until

    async def fail_over(
        self,
        dead: str,
        leases: dict[str, NodeLease | None],
        all_dead: list[str],
        term: int,
        reason: str = "failed",
        room: dict[str, int | None] | None = None,
    ) -> None:
        """Move `dead`'s calls to the nodes not in `all_dead` (`reason`: failed, or handover: the node
        is stopping and asked for it); `room`: what each node can still take (used up here)."""
        started = self.clock()
        calls = await self.state.calls_of(dead)
        if not calls and reason == "handover":
            return  # handed over already; the node stops on its own
        # the calls' states are in the schema their node wrote (its last lease says which)
        source = leases.get(dead) or self.seen.get(dead)
        ring = survivors_ring(leases, all_dead, source.state_schema if source is not None else 0)
        if room is None:
            room = self.room(leases)
        plan = assign(calls, ring, room)
        moved = ended = refused = 0
        targets = [(call_id, target) for call_id, target in plan.items() if target is not None]
        for start in range(0, len(targets), BATCH):
            batch = targets[start : start + BATCH]
            moves = await self.failover.adopt(self.controller_id, term, dead, batch, reason == "handover")
            taken: Counter[str] = Counter()
            for move in moves:
                if move.result is MoveResult.ADOPTED:
                    moved += 1
                    if move.token is not None:
                        taken[move.token.owner] += 1
                else:
                    refused += 1
                    if move.result is MoveResult.DEPOSED:
                        return  # another controller leads now: it takes over from here
            for target, count in taken.items():
                self._commit(target, leases.get(target), count)
        # a node handing its calls over keeps those nobody has room for (it is alive)
        homeless = [c for c, target in plan.items() if target is None] if reason == "failed" else []
        # their records go onto the endings list in the same step (a live node writes the CDRs)
        for move in await self.failover.abandon(self.controller_id, term, dead, homeless, NO_ROOM):
            if move.result is MoveResult.ENDED:
                ended += 1
                log.error(
                    "call %s of failed node %s ended: no node has room for it",
                    move.call_id,
                    dead,
                    extra={"event": "failover_call_ended", "call_id": move.call_id, "node": dead},
                )
            else:
                refused += 1
        if moved:
            await self.failover.replicate(REPLICA_WAIT)
        if reason == "failed" and not await self.state.calls_of(dead):
            await self.failover.retire(dead)
        elapsed = self.clock() - started
        self.counters.failovers[reason] += 1
        self.counters.calls_moved[reason] += moved
        self.counters.calls_ended += ended
        self.counters.moves_refused += refused
        self.counters.last_failover_seconds = elapsed
        log.warning(
            "node %s %s: %d call(s) moved, %d ended, %d left alone, in %.3f s",
            dead,
            "failed" if reason == "failed" else "hands its calls over",
            moved,
            ended,
            refused,
            elapsed,
            extra={
                "event": "failover",
                "reason": reason,
                "node": dead,
                "moved": moved,
                "ended": ended,
                "refused": refused,
                "term": term,
                "seconds": round(elapsed, 3),
            },
        )
