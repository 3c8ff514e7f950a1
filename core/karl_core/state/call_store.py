"""The one interface through which a node's "call changed" and "call ended" reach storage.

Every save carries the call's version (it grows with each change the node makes) and an ownership
token (owner node, epoch). A store refuses a save that is older than what it holds (`STALE`) and one
from a writer that no longer owns the call — another owner, or the same owner with an older epoch —
(`FENCED`): a node that was declared dead and came back must not overwrite the call's new owner.

`MemoryCallStore` keeps nothing across a restart (the embedded default). `FileCallStore` keeps one JSON
file per call in a directory, written with write-to-temporary + rename, so that a process killed at
any moment leaves either the previous or the new version of a call, never a torn one. It does not
fsync: what the kernel has accepted survives the process (a node killed by a signal, an OOM kill, a
crash); a power loss can lose the last seconds. Durability on another host is Redis' job.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
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


_NOT_KEPT: Mapping[str, Any] = MappingProxyType({})


class CallStore(Protocol):
    def save(self, call_id: str, version: int, token: OwnerToken, state: Mapping[str, Any]) -> SaveResult: ...

    def remove(self, call_id: str, token: OwnerToken) -> SaveResult: ...

    def load_all(self) -> list[StoredCall]: ...


def _foreign(held: StoredCall | None, token: OwnerToken) -> bool:
    """Whether `held` belongs to another owner, or to a newer epoch than the writer's."""
    return held is not None and (held.token.owner != token.owner or held.token.epoch > token.epoch)


def _verdict(held: StoredCall | None, version: int, token: OwnerToken) -> SaveResult | None:
    """None when the write may go ahead."""
    if held is None:
        return None
    if _foreign(held, token):
        return SaveResult.FENCED
    if held.token.epoch == token.epoch and held.version >= version:
        return SaveResult.STALE
    return None


class MemoryCallStore:
    """Calls in a dict: the fencing rules without persistence (tests, the embedded default)."""

    def __init__(self) -> None:
        self.calls: dict[str, StoredCall] = {}

    def save(self, call_id: str, version: int, token: OwnerToken, state: Mapping[str, Any]) -> SaveResult:
        refused = _verdict(self.calls.get(call_id), version, token)
        if refused is not None:
            return refused
        self.calls[call_id] = StoredCall(call_id, version, token, state)
        return SaveResult.SAVED

    def remove(self, call_id: str, token: OwnerToken) -> SaveResult:
        if _foreign(self.calls.get(call_id), token):
            return SaveResult.FENCED
        self.calls.pop(call_id, None)
        return SaveResult.SAVED

    def load_all(self) -> list[StoredCall]:
        return list(self.calls.values())


class FileCallStore:
    """One JSON document per call in `directory` (see the module docstring for what survives what)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._held: dict[str, StoredCall] = {}
        """Version and owner of each call on disk, for fencing (without the state: it is on disk)."""
        self.unreadable: list[tuple[Path, str]] = []
        """Files `load_all` could not read, with why (they are left in place for a human to look at)."""

    def _path(self, call_id: str) -> Path:
        # call-ids are arbitrary text from SIP: name files by a digest
        return self.directory / f"{hashlib.sha256(call_id.encode()).hexdigest()[:40]}.json"

    def save(self, call_id: str, version: int, token: OwnerToken, state: Mapping[str, Any]) -> SaveResult:
        refused = _verdict(self._held.get(call_id), version, token)
        if refused is not None:
            return refused
        document = {
            "call_id": call_id,
            "version": version,
            "owner": token.owner,
            "epoch": token.epoch,
            "state": state,
        }
        path = self._path(call_id)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, separators=(",", ":")))
        os.replace(temporary, path)
        self._held[call_id] = StoredCall(call_id, version, token, _NOT_KEPT)
        return SaveResult.SAVED

    def remove(self, call_id: str, token: OwnerToken) -> SaveResult:
        if _foreign(self._held.get(call_id), token):
            return SaveResult.FENCED
        self._held.pop(call_id, None)
        self._path(call_id).unlink(missing_ok=True)
        return SaveResult.SAVED

    def load_all(self) -> list[StoredCall]:
        self._held.clear()
        self.unreadable.clear()
        records: list[StoredCall] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                document = json.loads(path.read_text())
                record = StoredCall(
                    str(document["call_id"]),
                    int(document["version"]),
                    OwnerToken(str(document["owner"]), int(document["epoch"])),
                    dict(document["state"]),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.unreadable.append((path, str(exc)))
                continue
            records.append(record)
            self._held[record.call_id] = StoredCall(record.call_id, record.version, record.token, _NOT_KEPT)
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)  # a write the process did not finish: the old file stands
        return records
