"""The Prometheus exposition of a node, for the HTTP server's `/metrics`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

from karl_medianode.operations.metrics.collector import KarlCollector

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode


def render_metrics(node: MediaNode) -> tuple[bytes, str]:
    """The exposition body (Prometheus text format 0.0.4, which every Prometheus version reads) and its
    content type. Call it on the node's event loop."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KarlCollector(node))
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
