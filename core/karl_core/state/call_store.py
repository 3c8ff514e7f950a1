"""The one interface through which a node's "call changed" and "call ended" reach storage.

Every save carries the call's version (it grows with each change the node makes) and an ownership
token (owner node, epoch). A store refuses a save that is older than what it holds (`STALE`) and one
from a writer that no longer owns the call — another owner, or the same owner with an older epoch —
(`FENCED`): a node that was declared dead and came back must not overwrite the call's new owner.

`MemoryCallStore` keeps nothing across a restart (the embedded default). `FileCallStore`
(`karl_core.state.file_call_store`) keeps a node's calls in a local directory across restarts of its
process. Durability on another host is Redis' job.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OwnerToken:
    """Who may write a call: a node id and the epoch of its ownership."""

    owner: str
    epoch: int = 0


class SaveResult(enum.Enum):
    SAVED = "saved"
    STALE = "stale"
    """The store holds this version or a newer one: nothing written."""
    FENCED = "fenced"
    """Another owner (or a newer epoch) holds the call: the writer must stop acting for it."""


@dataclass(frozen=True, slots=True)
class StoredCall:
    call_id: str
    version: int
    token: OwnerToken
    state: Mapping[str, Any]
    """`CallState.to_dict()`."""


class CallStore(Protocol):
    def save(self, call_id: str, version: int, token: OwnerToken, state: Mapping[str, Any]) -> SaveResult: ...

    def remove(self, call_id: str, token: OwnerToken) -> SaveResult: ...

    def load_all(self) -> list[StoredCall]: ...


class Holding(Protocol):
    """What a store knows of a call it holds, as far as fencing goes."""

    @property
    def version(self) -> int: ...

    @property
    def token(self) -> OwnerToken: ...


def is_foreign(held: Holding | None, token: OwnerToken) -> bool:
    """Whether `held` belongs to another owner, or to a newer epoch than the writer's."""
    return held is not None and (held.token.owner != token.owner or held.token.epoch > token.epoch)


def refusal(held: Holding | None, version: int, token: OwnerToken) -> SaveResult | None:
    """Why a write of `version` by `token` is refused, given what the store holds; None when it may go
    ahead."""
    if held is None:
        return None
    if is_foreign(held, token):
        return SaveResult.FENCED
    if held.token.epoch == token.epoch and held.version >= version:
        return SaveResult.STALE
    return None


class MemoryCallStore:
    """Calls in a dict: the fencing rules without persistence (tests, the embedded default)."""

    def __init__(self) -> None:
        self.calls: dict[str, StoredCall] = {}

    def save(self, call_id: str, version: int, token: OwnerToken, state: Mapping[str, Any]) -> SaveResult:
        refused = refusal(self.calls.get(call_id), version, token)
        if refused is not None:
            return refused
        self.calls[call_id] = StoredCall(call_id, version, token, state)
        return SaveResult.SAVED

    def remove(self, call_id: str, token: OwnerToken) -> SaveResult:
        if is_foreign(self.calls.get(call_id), token):
            return SaveResult.FENCED
        self.calls.pop(call_id, None)
        return SaveResult.SAVED

    def load_all(self) -> list[StoredCall]:
        return list(self.calls.values())
