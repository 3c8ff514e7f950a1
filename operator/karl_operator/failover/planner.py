"""What the failover controller decides, without I/O: which members are dead, and where each of a dead
node's calls goes.

A member is dead when both hold:
- its lease is gone from Redis, and has been for the restart grace (a node restarting on the same
  host takes its calls back itself, on the same ports, with no signalling);
- a majority of the *other registered* members report that they cannot reach it, and each reporter
  still holds a lease. A minority that still reaches Redis can therefore never declare the majority
  dead: its reports are too few.

Each call of a dead node goes to the node the placement ring picks once the dead node is off it (the
next one when that one has no room). A call no node has room for is left unassigned: it ends, and is
never half-adopted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from karl_core.state.lease import NodeLease
from karl_core.state.placement import PlacementRing


@dataclass
class DeathWatch:
    restart_grace: float
    """Seconds a lease must have been gone before its node's calls move."""
    _absent_since: dict[str, float] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    """Nodes Kubernetes says will not come back (pod force-deleted, its node lost): no restart grace."""

    def known_gone(self, node_id: str) -> None:
        """The node will not restart where it was: its calls move as soon as its lease is gone (and the
        others agree it is unreachable), without the restart grace. Forgotten once its lease is back
        after an absence."""
        self.gone.add(node_id)

    def dead(
        self, leases: Mapping[str, NodeLease | None], suspicions: Mapping[str, Iterable[str]], now: float
    ) -> list[str]:
        """Members that are dead now. `leases`: every registered member, with its lease (None: gone);
        `suspicions`: per member, who reported it unreachable lately."""
        live = {node_id for node_id, lease in leases.items() if lease is not None}
        for node_id in list(self._absent_since):
            if node_id not in leases or node_id in live:
                del self._absent_since[node_id]  # back, or no longer a member
                self.gone.discard(node_id)  # (back after an absence: a new pod with its name)
        dead = []
        for node_id, lease in leases.items():
            if lease is not None:
                continue
            since = self._absent_since.setdefault(node_id, now)
            if now - since < self.restart_grace and node_id not in self.gone:
                continue
            others = len(leases) - 1
            reporters = set(suspicions.get(node_id, ())) & live
            if others > 0 and 2 * len(reporters) > others:
                dead.append(node_id)
        return dead

    def absent_for(self, node_id: str, now: float) -> float | None:
        since = self._absent_since.get(node_id)
        return None if since is None else now - since


def survivors_ring(
    leases: Mapping[str, NodeLease | None], dead: Iterable[str], state_schema: int = 0
) -> PlacementRing:
    """The ring over the nodes not in `dead` that read call states of `state_schema` (the schema the
    calls' node wrote them in: a rolling upgrade never hands a call to a node too old to read it)."""
    gone = set(dead)
    ring = PlacementRing()
    ring.update(
        lease
        for node_id, lease in leases.items()
        if lease is not None and node_id not in gone and lease.state_schema >= state_schema
    )
    return ring


def room_of(leases: Iterable[NodeLease]) -> dict[str, int | None]:
    """Calls each node can still take by its lease (None: no limit of its own)."""
    return {
        lease.node_id: (None if lease.capacity <= 0 else max(0, lease.capacity - lease.load))
        for lease in leases
        if lease.takes_calls
    }


def assign(calls: Iterable[str], ring: PlacementRing, room: dict[str, int | None]) -> dict[str, str | None]:
    """Where each call goes (None: no node has room). `room` is used up as calls are assigned."""
    assigned: dict[str, str | None] = {}
    for call_id in calls:
        target = None
        for node_id in ring.candidates(call_id):
            left = room.get(node_id, 0)
            if left is None:
                target = node_id
                break
            if left > 0:
                room[node_id] = left - 1
                target = node_id
                break
        assigned[call_id] = target
    return assigned
