"""The custom collector: every family is built from the node's plain counters at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from karl_medianode.operations.metrics.attachment_families import admission_families, cdr_families
from karl_medianode.operations.metrics.call_families import media_families, port_families, session_families
from karl_medianode.operations.metrics.fleet_families import fleet_families
from karl_medianode.operations.metrics.ng_families import ng_families
from karl_medianode.operations.metrics.node_families import node_families
from karl_medianode.operations.metrics.pending_families import pending_families
from karl_medianode.operations.metrics.quality_families import quality_families
from karl_medianode.operations.metrics.state import NodeMetrics, attach
from karl_medianode.operations.metrics.store_families import store_families
from karl_medianode.operations.metrics.webrtc_families import webrtc_families

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode


class KarlCollector:
    """A prometheus-client collector for one media node. `collect()` must run on the node's event loop
    (it reads the engine's dictionaries); it costs O(number of media streams)."""

    def __init__(self, node: MediaNode, metrics: NodeMetrics | None = None) -> None:
        self.node = node
        self.metrics = metrics if metrics is not None else attach(node)

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        node, metrics = self.node, self.metrics
        metrics.hook_relay(node.relay)
        families: list[Metric] = [
            *node_families(node, metrics),
            *session_families(node, metrics),
            *media_families(node, metrics),
            *port_families(node),
            *quality_families(node),
            *ng_families(node),
            *admission_families(node),
            *cdr_families(node),
            *store_families(node),
            *fleet_families(node),
            *webrtc_families(node),
            *pending_families(),
        ]
        metrics.last_scrape_seconds = time.perf_counter() - started
        yield from families
