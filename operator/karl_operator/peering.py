"""Which of several `karl-operator` replicas works, read from kopf's peering object as kopf itself
decides it: every replica writes `{identity: {priority, lastseen, lifetime}}` into the object's status,
and a replica works while no live peer (seen within its lifetime) has a higher priority. Pure.

kopf pauses its own handlers that way; the operator's background work (status, resync, the failover
controllers: `reconciler.fleet_loop`) runs outside kopf's handlers and asks this."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

DEFAULT_LIFETIME = 60.0  # kopf's, for a peer that does not say


def _seen(value: Any) -> datetime.datetime | None:
    try:
        found = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=datetime.UTC)


def works(peers: Mapping[str, Any], identity: str, priority: int, now: datetime.datetime) -> bool:
    """Whether the replica `identity` of `priority` works, given the status of a peering object: no
    other live peer has a priority as high (kopf pauses every replica of a shared priority)."""
    for peer, info in peers.items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        seen = _seen(info.get("lastseen")) if info.get("lastseen") is not None else now
        lifetime = _number(info.get("lifetime"), DEFAULT_LIFETIME)
        if seen is None or (now - seen).total_seconds() > lifetime:
            continue  # gone: kopf forgets it too
        if _number(info.get("priority"), 0) >= priority:
            return False
    return True


def _number(value: Any, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default
