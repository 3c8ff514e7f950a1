"""A node's lease: what it tells the fleet about itself, and how long it may act on it.

The lease key in Redis expires `ttl` seconds after Redis stored it. The node counts from the moment it
*sent* the renewal (never later than Redis received it) and stops acting `margin` seconds before that:
by its own monotonic clock the lease always runs out before Redis lets it expire, so a node that was
paused or cut off never answers for a call that the fleet may already have given to another node.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

LEASE_SCHEMA = 1
"""Version of the lease document; a router ignores leases of a schema it does not know."""


class LeaseFormatError(ValueError):
    """A lease document that cannot be read."""


@dataclass(frozen=True, slots=True)
class NodeLease:
    node_id: str
    boot_id: str
    """New at every start: a lease with another boot id is an earlier (or later) run of the node."""
    ng: str
    """`host:port` the router sends NG requests to."""
    api: str
    media_ip: str
    """The address media reaches the node on (the one it writes into SDP)."""
    port_min: int
    port_max: int
    capacity: int
    """Calls the node takes before it refuses new ones; 0 = no limit of its own."""
    load: int
    """Calls it has now."""
    ready: bool
    draining: bool
    software: str
    schema: int = LEASE_SCHEMA
    state_schema: int = 0
    """The newest call-state schema the node reads (`karl_core.session.SCHEMA_VERSION`; 0: a node
    too old to say): failover hands a call only to nodes that read its state."""

    @property
    def ng_address(self) -> tuple[str, int]:
        host, _, port = self.ng.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def takes_calls(self) -> bool:
        return self.ready and not self.draining and (self.capacity == 0 or self.load < self.capacity)

    def free_share(self) -> float:
        """Free capacity as a share of all (1.0 for a node without a limit): the placement weight."""
        if self.capacity <= 0:
            return 1.0
        return max(0.0, (self.capacity - self.load) / self.capacity)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeLease:
        try:
            document = json.loads(text)
            if not isinstance(document, dict):
                raise TypeError("not an object")
            lease = cls(
                node_id=str(document["node_id"]),
                boot_id=str(document["boot_id"]),
                ng=str(document["ng"]),
                api=str(document["api"]),
                media_ip=str(document["media_ip"]),
                port_min=int(document["port_min"]),
                port_max=int(document["port_max"]),
                capacity=int(document["capacity"]),
                load=int(document["load"]),
                ready=bool(document["ready"]),
                draining=bool(document["draining"]),
                software=str(document["software"]),
                schema=int(document.get("schema", LEASE_SCHEMA)),
                state_schema=int(document.get("state_schema", 0)),
            )
            lease.ng_address  # noqa: B018  # a lease without a usable NG address is unreadable
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            raise LeaseFormatError(f"unreadable lease: {type(exc).__name__}") from None
        return lease


@dataclass(slots=True)
class LeaseClock:
    """Whether the node may still act on its lease, by its own monotonic clock."""

    ttl: float
    margin: float
    sent_at: float | None = None
    """When the last renewal that Redis confirmed was sent (monotonic seconds)."""

    def confirmed(self, sent_at: float) -> None:
        """Redis confirmed the renewal sent at `sent_at`."""
        if self.sent_at is None or sent_at > self.sent_at:
            self.sent_at = sent_at

    def valid_until(self) -> float:
        if self.sent_at is None:
            return float("-inf")
        return self.sent_at + self.ttl - self.margin

    def valid(self, now: float) -> bool:
        return now < self.valid_until()


def default_margin(ttl: float) -> float:
    """A sixth of the TTL (0.5 s of the default 3 s): covers the clocks' drift and the time the failover
    controller needs to see the expiry."""
    return ttl / 6
