"""Prometheus metrics of a media node, built at scrape time from the node's plain counters.

Nothing here runs per packet: the relay and the NG server only bump integers; `KarlCollector.collect()`
reads them when Prometheus scrapes. Wire it with `attach(node)` right after `node.start()` (keeps the
counters of closed streams and the session-duration histogram), and serve `render_metrics(node)`.
The families are documented in docs/metrics.md.
"""

from karl_medianode.operations.metrics.collector import KarlCollector
from karl_medianode.operations.metrics.render import render_metrics
from karl_medianode.operations.metrics.state import NodeMetrics, attach

__all__ = ["KarlCollector", "NodeMetrics", "attach", "render_metrics"]
