"""The router's view of the fleet: the registered nodes, their leases (read from Redis twice a second),
whether each answers NG `ping` (probed every second), and the placement ring built from them."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from karl_core.logs import LogThrottle
from karl_core.ng import bencode
from karl_core.ng.node_link import NodeLink, NodeTimeout
from karl_core.state.fleet_state import FleetState, StateUnavailable
from karl_core.state.lease import NodeLease
from karl_core.state.placement import PlacementRing

log = logging.getLogger("karl.router.fleet")

REFRESH_INTERVAL = 0.5
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 0.5
REDIS_FRESH = 2.0
"""Redis counts as reachable while the last refresh is at most this old (seconds)."""
GONE_GRACE = 30.0
"""Seconds the router still sends a call's requests to a node whose lease it no longer sees (Redis
restarted empty, or the node is down): the node decides whether it may answer, and a node that does
not answer is retried, then its calls are re-resolved from Redis. New calls never go there."""


@dataclass
class NodeStatus:
    lease: NodeLease
    last_pong: float | None = None
    probes_failed: int = 0
    gone_since: float | None = None
    """When its lease disappeared from Redis (None: live)."""


@dataclass
class FleetView:
    state: FleetState
    link: NodeLink
    clock: Callable[[], float] = time.monotonic
    members: list[str] = field(default_factory=list)
    nodes: dict[str, NodeStatus] = field(default_factory=dict)
    ring: PlacementRing = field(default_factory=PlacementRing)
    refreshed_at: float | None = None
    _probe_ids: itertools.count[int] = field(default_factory=itertools.count)
    _throttle: LogThrottle = field(default_factory=lambda: LogThrottle(30.0))
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(self._refresh_loop()), loop.create_task(self._probe_loop())]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def redis_reachable(self) -> bool:
        return self.refreshed_at is not None and self.clock() - self.refreshed_at <= REDIS_FRESH

    def lease(self, node_id: str) -> NodeLease | None:
        """The node's last lease, also for a while after it disappeared (`GONE_GRACE`)."""
        status = self.nodes.get(node_id)
        return None if status is None else status.lease

    def live_lease(self, node_id: str) -> NodeLease | None:
        """The node's lease while Redis has it (None once it is gone: the node may be dead, and its
        calls may have moved: ask Redis)."""
        status = self.nodes.get(node_id)
        return None if status is None or status.gone_since is not None else status.lease

    def gone(self, node_id: str) -> bool:
        status = self.nodes.get(node_id)
        return status is None or status.gone_since is not None

    def live(self) -> list[NodeStatus]:
        return [s for s in self.nodes.values() if s.gone_since is None]

    def answering(self, status: NodeStatus) -> bool:
        return (
            status.last_pong is not None
            and self.clock() - status.last_pong <= 2 * PROBE_INTERVAL + PROBE_TIMEOUT
        )

    def ready_nodes(self) -> list[NodeLease]:
        return [s.lease for s in self.live() if s.lease.ready and self.answering(s)]

    async def refresh(self) -> None:
        members, leases = await self.state.nodes()
        now = self.clock()
        current = {lease.node_id: lease for lease in leases}
        for node_id, status in list(self.nodes.items()):
            if node_id in current:
                continue
            if status.gone_since is None:
                status.gone_since = now
            elif now - status.gone_since > GONE_GRACE:
                del self.nodes[node_id]
        for node_id, lease in current.items():
            known = self.nodes.get(node_id)
            if known is None or known.lease.boot_id != lease.boot_id:
                self.nodes[node_id] = NodeStatus(lease)
            else:
                known.lease, known.gone_since = lease, None
        self.members = members
        # place only on live nodes that take calls by their lease and answer this router
        self.ring.update(s.lease for s in self.live() if self.answering(s) or s.last_pong is None)
        self.refreshed_at = now

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except StateUnavailable as exc:
                self._warn("refresh", "cannot read the fleet's nodes from Redis: %s", exc)
            except Exception:  # a bug: logged, and the view goes on refreshing
                log.exception("refreshing the fleet view failed")
            await asyncio.sleep(REFRESH_INTERVAL)

    async def probe(self, status: NodeStatus) -> None:
        cookie = f"karl-router-probe-{next(self._probe_ids)}".encode()
        datagram = cookie + b" " + bencode.encode({"command": "ping"})
        try:
            await self.link.request(status.lease.ng_address, cookie, datagram, PROBE_TIMEOUT)
        except NodeTimeout:
            status.probes_failed += 1
            return
        status.last_pong = self.clock()

    async def _probe_loop(self) -> None:
        while True:
            if self.nodes:
                await asyncio.gather(*(self.probe(s) for s in list(self.nodes.values())))
            await asyncio.sleep(PROBE_INTERVAL)

    def _warn(self, kind: str, message: str, *args: object) -> None:
        suppressed = self._throttle.allow(kind)
        if suppressed is not None:
            log.warning(message + (f" ({suppressed} similar suppressed)" if suppressed else ""), *args)
