"""A fleet member's view of its peers: every second it sends each other registered member an NG `ping`
and tells Redis which of them it cannot reach (`FailoverState.report`). The failover controller
declares a node dead only when a majority of the other members say so (and its lease is gone).

The same probes answer `majority_reachable`: whether this node reaches more than half of the other
registered members. A node cut off from Redis holds over (keeps answering for its calls) only while
that holds; cut off from both, it stops, because the majority may be moving its calls."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from karl_core.ng.node_link import NodeLink, NodeTimeout
from karl_core.state.failover_state import FailoverState
from karl_core.state.fleet_state import FleetState, StateUnavailable

log = logging.getLogger("karl.fleet")

PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 0.5
MISSES = 2
"""Probes in a row a peer must miss before this node reports it unreachable."""
PING = b" d7:command4:pinge"
FORGET_AFTER = 60.0
"""Seconds a peer that is no longer a member is still probed (members are probed as long as they
are members)."""


@dataclass
class Peer:
    address: tuple[str, int]
    misses: int = 0
    last_answer: float | None = None
    seen: float = 0.0
    """When it was last a member with a lease (its address comes from the lease)."""


@dataclass
class PeerWatch:
    node_id: str
    state: FleetState
    clock: Callable[[], float] = time.monotonic
    peers: dict[str, Peer] = field(default_factory=dict)
    members: set[str] = field(default_factory=set)
    """The registered members other than this node, as Redis last said."""
    probes: int = 0
    failed_probes: int = 0
    _link: NodeLink | None = None
    _task: asyncio.Task[None] | None = None
    _sequence: int = 0

    async def start(self) -> None:
        self._link = await NodeLink.open()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._link is not None:
            self._link.close()

    def reachable(self, peer_id: str) -> bool:
        peer = self.peers.get(peer_id)
        return peer is not None and peer.misses < MISSES and peer.last_answer is not None

    def majority_reachable(self) -> bool:
        """More than half of the other registered members answer (trivially true alone)."""
        if not self.members:
            return True
        answering = sum(1 for member in self.members if self.reachable(member))
        return 2 * answering > len(self.members)

    async def _loop(self) -> None:
        failover = FailoverState(self.state)
        while True:
            started = self.clock()
            try:
                await self.round(failover)
            except StateUnavailable:
                pass  # Redis is out of reach: probe with the peers known, report next time
            except Exception:
                log.exception("probing the fleet's members failed")
            await asyncio.sleep(max(0.05, PROBE_INTERVAL - (self.clock() - started)))

    async def round(self, failover: FailoverState) -> None:
        """One round: refresh the members (if Redis answers), probe every peer, report."""
        now = self.clock()
        try:
            members, leases = await self.state.nodes()
        except StateUnavailable:
            members, leases = None, []
        if members is not None:
            self.members = {m for m in members if m != self.node_id}
        for lease in leases:
            if lease.node_id == self.node_id:
                continue
            peer = self.peers.get(lease.node_id)
            if peer is None or peer.address != lease.ng_address:
                peer = self.peers[lease.node_id] = Peer(lease.ng_address)
            peer.seen = now
        # a member is probed at its last known address for as long as it is a member (a dead one
        # too, until failover retires it); a peer that left is forgotten after a while
        for peer_id in [
            p for p, peer in self.peers.items() if p not in self.members and now - peer.seen > FORGET_AFTER
        ]:
            del self.peers[peer_id]
        targets = [p for p in self.peers if p in self.members or members is None]
        results = await asyncio.gather(*(self._probe(self.peers[p]) for p in targets))
        verdicts = {}
        for peer_id, answered in zip(targets, results, strict=True):
            peer = self.peers[peer_id]
            if answered:
                peer.misses = 0
                peer.last_answer = self.clock()
            else:
                peer.misses += 1
            verdicts[peer_id] = peer.misses < MISSES
        if members is not None:
            await failover.report(self.node_id, verdicts)

    async def _probe(self, peer: Peer) -> bool:
        assert self._link is not None
        self._sequence += 1
        cookie = f"peer{os.getpid()}_{self._sequence}".encode()
        self.probes += 1
        try:
            reply = await self._link.request(peer.address, cookie, cookie + PING, PROBE_TIMEOUT)
        except NodeTimeout:
            self.failed_probes += 1
            return False
        return b"pong" in reply
