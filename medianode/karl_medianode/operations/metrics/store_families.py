"""Families of the call store: the file store of a single node (`node.persistence`, on when
`state.dir` / KARL_STATE_DIR is set) or the fleet's Redis (`node.fleet`, KARL_REDIS_ENABLED): calls'
state written, refused, removed and taken back at start-up. They exist with zero values when the node
keeps no state, like the other optional parts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from karl_medianode.operations.metrics.families import labelled_counter

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode

# Label values, in the order they are exported (docs/metrics.md lists the same).
SAVE_RESULTS = ("saved", "stale", "fenced", "failed")
REMOVAL_RESULTS = ("removed", "fenced", "failed")
RESTORE_RESULTS = ("restored", "failed")


def store_families(node: MediaNode) -> Iterator[Metric]:
    # the file store of a single node, or the fleet's Redis (the same counters)
    persistence = getattr(node, "persistence", None) or getattr(node, "fleet", None)
    c = getattr(persistence, "counters", None)

    def count(name: str) -> int:
        value = getattr(c, name, 0) if c is not None else 0
        return int(value) if isinstance(value, int) else 0

    saves = {"saved": "saved", "stale": "stale", "fenced": "fenced", "failed": "save_failed"}
    yield labelled_counter(
        "karl_call_store_saves_total",
        "Writes of a changed call's state to the call store (KARL_STATE_DIR), by result: saved; stale "
        "(the store held that version already); fenced (another owner holds the call, nothing written); "
        "failed (the store raised an error, e.g. disk full or directory unwritable; the call goes on "
        "unsaved).",
        ("result",),
        [((result,), count(saves[result])) for result in SAVE_RESULTS],
    )
    removals = {"removed": "removed", "fenced": "remove_fenced", "failed": "remove_failed"}
    yield labelled_counter(
        "karl_call_store_removals_total",
        "Removals of an ended call's state from the call store, by result: removed; fenced (another "
        "owner holds the call, its state was left); failed (the store raised an error).",
        ("result",),
        [((result,), count(removals[result])) for result in REMOVAL_RESULTS],
    )
    restores = {"restored": "restored", "failed": "restore_failed"}
    yield labelled_counter(
        "karl_call_store_restores_total",
        "Calls of this node found in the call store at start-up, by result: restored (relaying again), "
        "failed (not restorable: left in the store; unreadable: kept aside in a file; the log says why).",
        ("result",),
        [((result,), count(restores[result])) for result in RESTORE_RESULTS],
    )
