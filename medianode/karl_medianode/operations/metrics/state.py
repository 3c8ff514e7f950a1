"""What the metrics keep between scrapes for one node, and how it is attached to the node.

`attach(node)` (idempotent) registers a call-ended listener (session durations, attribution of closed
streams) and hooks the relay so that the counters of closed streams are kept. Call it right after
`node.start()`; `render_metrics` calls it too, so a node that is only scraped still works, but streams
and calls that ended before the first scrape would then be missing from the totals.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from karl_medianode.operations.metrics.media_ledger import MediaLedger
from karl_medianode.operations.metrics.session_durations import SessionDurations

if TYPE_CHECKING:
    from karl_medianode.dataplane.relay import Relay
    from karl_medianode.engine import CallEnded
    from karl_medianode.node import MediaNode


class NodeMetrics:
    """Plain-integer state of the metrics of one node. Holds no reference to the node itself."""

    def __init__(self) -> None:
        self.ledger = MediaLedger()
        self.durations = SessionDurations()
        self.last_scrape_seconds = 0.0
        self._hooked: weakref.ReferenceType[Relay] | None = None

    def call_ended(self, ended: CallEnded) -> None:
        self.ledger.call_ended(ended)
        self.durations.call_ended(ended)

    def hook_relay(self, relay: Relay | None) -> None:
        """Fold each stream the relay closes into the ledger (slow path: signalling, never per packet)."""
        if relay is None or (self._hooked is not None and self._hooked() is relay):
            return
        relay.close_listeners.append(self.ledger.stream_closed)
        self._hooked = weakref.ref(relay)


_attached: weakref.WeakKeyDictionary[MediaNode, NodeMetrics] = weakref.WeakKeyDictionary()


def attach(node: MediaNode) -> NodeMetrics:
    """The metrics state of `node`, created and wired on first use."""
    metrics = _attached.get(node)
    if metrics is None:
        metrics = NodeMetrics()
        node.call_ended_listeners.append(metrics.call_ended)
        _attached[node] = metrics
    metrics.hook_relay(node.relay)
    return metrics
