"""The node's side of the `CallStore`: every change of a call is written before its reply leaves, every
ended call is removed, and on start the calls this node owned are taken back.

Writes are synchronous (the engine's `on_call_changed` runs inside the request, before the reply is
sent): when a proxy has the reply, the change is with the store. For the file store that means the
kernel has it, which survives the process being killed; see `karl_core.state.call_store`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from karl_core.session import CallState, SessionSchemaError
from karl_core.state import CallStore, OwnerToken, SaveResult
from karl_medianode.control.calls import Call
from karl_medianode.control.engine import CallEnded, CallEngine
from karl_medianode.operations.logs import LogThrottle

log = logging.getLogger("karl.state")


@dataclass
class PersistenceCounters:
    saved: int = 0
    removed: int = 0
    failed: int = 0
    """Writes the store refused with an error (disk full, directory gone): the call goes on unsaved."""
    fenced: int = 0
    restored: int = 0
    not_restored: int = 0


class CallPersistence:
    def __init__(self, store: CallStore, token: OwnerToken, engine: CallEngine) -> None:
        self.store = store
        self.token = token
        self.engine = engine
        self.counters = PersistenceCounters()
        self._versions: dict[str, int] = {}
        self._throttle = LogThrottle(30.0)

    def attach(self, listeners: list[Callable[[CallEnded], None]]) -> None:
        """Hook into the engine (changes) and the node's call-ended listeners (removals)."""
        self.engine.on_call_changed = self.changed
        listeners.append(self.ended)

    def changed(self, call: Call) -> None:
        state = self.engine.snapshot(call.call_id)
        if state is None:
            return
        version = self._versions.get(call.call_id, 0) + 1
        try:
            result = self.store.save(call.call_id, version, self.token, state.to_dict())
        except (OSError, ValueError) as exc:
            self.counters.failed += 1
            self._warn("write", "could not keep the state of call %s: %s", call.call_id, exc)
            return
        if result is SaveResult.FENCED:
            self.counters.fenced += 1
            self._warn(
                "fenced", "call %s belongs to another owner now: its state was not written", call.call_id
            )
            return
        self._versions[call.call_id] = version
        self.counters.saved += 1

    def ended(self, ended: CallEnded) -> None:
        self._versions.pop(ended.call_id, None)
        try:
            self.store.remove(ended.call_id, self.token)
        except OSError as exc:
            self.counters.failed += 1
            self._warn("remove", "could not remove the state of call %s: %s", ended.call_id, exc)
            return
        self.counters.removed += 1

    def restore_all(self, now: float) -> int:
        """Take back this node's calls from the store; returns how many were restored."""
        for record in self.store.load_all():
            if record.token.owner != self.token.owner:
                continue  # another node's call: its owner (or the fleet's failover) takes it
            try:
                state = CallState.from_dict(record.state)
                self.engine.restore(state, now)
            except (SessionSchemaError, ValueError, OSError) as exc:
                self.counters.not_restored += 1
                log.error(
                    "could not restore call %s: %s",
                    record.call_id,
                    exc,
                    extra={"call_id": record.call_id, "event": "restore_failed"},
                )
                continue
            self._versions[record.call_id] = record.version
            self.counters.restored += 1
        return self.counters.restored

    def _warn(self, kind: str, message: str, *args: object) -> None:
        suppressed = self._throttle.allow(kind)
        if suppressed is not None:
            log.warning(message + (f" ({suppressed} similar suppressed)" if suppressed else ""), *args)
