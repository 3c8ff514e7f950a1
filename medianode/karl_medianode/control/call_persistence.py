"""The node's side of the `CallStore`: every change of a call is written before its reply leaves, every
ended call is removed, and on start the calls this node owned are taken back.

Writes are synchronous (the engine's `on_call_changed` runs inside the request, before the reply is
sent): when a proxy has the reply, the change is with the store. For the file store that means the
kernel has it, which survives the process being killed; see `karl_core.state.call_store`.

A store that fails (disk full, directory gone or unwritable) never fails the request: the write is
counted in `StoreCounters`, logged at most every 30 s, and the call goes on unsaved. The metrics export
the counters as `karl_call_store_*` (docs/metrics.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from karl_core.logs import LogThrottle
from karl_core.session import CallState, SessionSchemaError
from karl_core.state import CallStore, OwnerToken, SaveResult
from karl_medianode.control.engine_driver import EngineDriver
from karl_medianode.engine import CallEnded
from karl_medianode.engine.calls import Call

log = logging.getLogger("karl.state")


@dataclass
class StoreCounters:
    """What happened to the calls' state in the store, as plain integers (the metrics read them at
    scrape time: `karl_call_store_*`)."""

    saved: int = 0
    stale: int = 0
    """Writes the store skipped because it held that version of the call already."""
    fenced: int = 0
    """Writes the store refused because another owner (or a newer epoch) holds the call."""
    save_failed: int = 0
    """Writes that raised (disk full, directory gone or unwritable): the call goes on unsaved."""
    removed: int = 0
    remove_fenced: int = 0
    remove_failed: int = 0
    restored: int = 0
    restore_failed: int = 0
    """This node's calls found in the store at start-up that could not be restored, and files the store
    could not read at all."""


class CallPersistence:
    def __init__(self, store: CallStore, token: OwnerToken, engine: EngineDriver) -> None:
        self.store = store
        self.token = token
        self.engine = engine
        self.counters = StoreCounters()
        self._versions: dict[str, int] = {}
        self._throttle = LogThrottle(30.0)

    def attach(self, listeners: list[Callable[[CallEnded], None]]) -> None:
        """Hook into the engine (changes) and the node's call-ended listeners (removals)."""
        self.engine.on_call_changed = self.changed
        listeners.append(self.ended)

    def changed(self, call: Call) -> None:
        """Write the call's state. Never raises: a store that fails (or a state that cannot be written)
        is counted and logged, rate-limited, and the request that changed the call is answered as usual;
        the call then lives on without a saved state until a later write succeeds."""
        version = self._versions.get(call.call_id, 0) + 1
        try:
            document = self.engine.state_document(call.call_id)
            if document is None:
                return
            result = self.store.save(call.call_id, version, self.token, document)
        except Exception as exc:
            self.counters.save_failed += 1
            self._warn("write", exc, "could not keep the state of call %s: %s", call.call_id, exc)
            return
        if result is SaveResult.FENCED:
            self.counters.fenced += 1
            self._warn(
                "fenced",
                None,
                "call %s belongs to another owner now: its state was not written",
                call.call_id,
            )
            return
        # STALE: the store has this version already; go on from the next one
        self._versions[call.call_id] = version
        if result is SaveResult.STALE:
            self.counters.stale += 1
        else:
            self.counters.saved += 1

    def ended(self, ended: CallEnded) -> None:
        """Remove the ended call's state. Never raises (counted and logged like a failed write)."""
        self._versions.pop(ended.call_id, None)
        try:
            result = self.store.remove(ended.call_id, self.token)
        except Exception as exc:
            self.counters.remove_failed += 1
            self._warn("remove", exc, "could not remove the state of call %s: %s", ended.call_id, exc)
            return
        if result is SaveResult.FENCED:
            self.counters.remove_fenced += 1
            self._warn(
                "fenced", None, "call %s belongs to another owner now: its state was left", ended.call_id
            )
            return
        self.counters.removed += 1

    def restore_all(self, now: float) -> int:
        """Take back this node's calls from the store; returns how many were restored. A call that cannot
        be restored is counted, logged and left in the store; it never keeps the node from starting."""
        restored = 0
        records = self.store.load_all()
        # what the store could not read at all (`FileCallStore.unreadable`; the node logs it)
        self.counters.restore_failed += len(getattr(self.store, "unreadable", None) or ())
        for record in records:
            if record.token.owner != self.token.owner:
                continue  # another node's call: its owner (or the fleet's failover) takes it
            try:
                state = CallState.from_dict(record.state)
                self.engine.restore(state, now)
            except Exception as exc:
                self.counters.restore_failed += 1
                expected = isinstance(exc, SessionSchemaError | ValueError | OSError)
                log.error(
                    "could not restore call %s: %s",
                    record.call_id,
                    exc,
                    exc_info=None if expected else exc,
                    extra={"call_id": record.call_id, "event": "restore_failed"},
                )
                continue
            self._versions[record.call_id] = record.version
            self.counters.restored += 1
            restored += 1
        return restored

    def _warn(self, kind: str, exc: BaseException | None, message: str, *args: object) -> None:
        """A warning at most every 30 s per kind; the stack trace only for what the store does not
        raise when it merely cannot write (OSError, ValueError): those are bugs."""
        suppressed = self._throttle.allow(kind)
        if suppressed is not None:
            trace = exc if exc is not None and not isinstance(exc, OSError | ValueError) else None
            log.warning(
                message + (f" ({suppressed} similar suppressed)" if suppressed else ""),
                *args,
                exc_info=trace,
                extra={"event": f"call_store_{kind}"},
            )
