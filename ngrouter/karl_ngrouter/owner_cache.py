"""Which node holds which call, as this router last learned it. Only a cache: Redis decides, and a
node that no longer holds a call says so (the router then asks Redis again). Bounded: the oldest
entries go first when it is full."""

from __future__ import annotations

from dataclasses import dataclass, field

from karl_core.state import OwnerToken


@dataclass
class OwnerCache:
    limit: int = 200_000
    hits: int = 0
    misses: int = 0
    _owners: dict[str, OwnerToken] = field(default_factory=dict)

    def get(self, call_id: str) -> OwnerToken | None:
        token = self._owners.get(call_id)
        if token is None:
            self.misses += 1
        else:
            self.hits += 1
        return token

    def peek(self, call_id: str) -> OwnerToken | None:
        """`get` without counting (the caller counts the hit once it uses it)."""
        return self._owners.get(call_id)

    def put(self, call_id: str, token: OwnerToken) -> None:
        owners = self._owners
        if call_id not in owners and len(owners) >= self.limit:
            del owners[next(iter(owners))]  # dicts keep insertion order: the oldest
        owners[call_id] = token

    def forget(self, call_id: str) -> None:
        self._owners.pop(call_id, None)

    def __len__(self) -> int:
        return len(self._owners)
