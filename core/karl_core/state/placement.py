"""Where a new call goes: a consistent-hash ring (`uhashring`) over the nodes that take calls, each
weighted by its free capacity. Pure: the ring is rebuilt from leases, never from sockets.

Weights are free capacity in quarters (1 to 4): a node at 90 % load gets a quarter of the share of an
idle one, and the ring is rebuilt only when a node's quarter changes, not at every load change (a ring
of 10 nodes takes milliseconds to build). The same call-id on the same set of nodes maps to the same
node in every router replica, so two replicas placing one call at once usually agree even before
Redis decides (it always decides: placement is create-if-absent)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from uhashring import HashRing

from karl_core.state.lease import NodeLease

WEIGHT_STEPS = 4


def weight_of(lease: NodeLease) -> int:
    return max(1, min(WEIGHT_STEPS, round(lease.free_share() * WEIGHT_STEPS)))


@dataclass
class PlacementRing:
    weights: dict[str, int] = field(default_factory=dict)
    _ring: HashRing | None = None

    def update(self, leases: Iterable[NodeLease]) -> bool:
        """Take the nodes that take calls now; returns whether the ring changed."""
        weights = {lease.node_id: weight_of(lease) for lease in leases if lease.takes_calls}
        if weights == self.weights:
            return False
        self.weights = weights
        self._ring = HashRing(nodes={node: {"weight": w} for node, w in weights.items()}) if weights else None
        return True

    def candidates(self, call_id: str, excluded: Collection[str] = ()) -> list[str]:
        """Nodes for `call_id`, best first: the ring's pick, then the next distinct nodes around it."""
        if self._ring is None:
            return []
        nodes = [entry["nodename"] for entry in self._ring.range(call_id, None, True)]
        return [node for node in nodes if node not in excluded]

    def first(self, call_id: str) -> str | None:
        """The ring's pick for `call_id` (`candidates(call_id)[0]`, without listing the others)."""
        if self._ring is None:
            return None
        node: str = self._ring.get_node(call_id)
        return node
