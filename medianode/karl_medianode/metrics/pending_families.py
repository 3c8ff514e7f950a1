"""Families promised to Karl's users for features that are not built yet. They exist so that dashboards
and alerts can be written now, and stay at zero until the feature lands (docs/metrics.md says so)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from karl_medianode.metrics.families import counter, histogram

NOT_YET = "Not measured yet (stays empty until {feature} lands): "

BUFFER_BOUNDS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3)


def _empty(name: str, doc: str, bounds: tuple[float, ...]) -> Metric:
    return histogram(name, doc, bounds, [0] * (len(bounds) + 1), 0.0)


def pending_families() -> Iterator[Metric]:
    yield counter(
        "karl_fec_recoveries_total",
        NOT_YET.format(feature="forward error correction") + "packets recovered by FEC.",
        0,
    )
    yield _empty(
        "karl_jitter_buffer_latency",
        NOT_YET.format(feature="the jitter buffer") + "delay added by the jitter buffer, in seconds.",
        BUFFER_BOUNDS,
    )
