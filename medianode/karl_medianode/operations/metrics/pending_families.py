"""Families promised to Karl's users for features that are not built yet. They exist so that dashboards
and alerts can be written now, and stay at zero until the feature lands (docs/metrics.md says so)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from karl_medianode.operations.metrics.families import counter

NOT_YET = "Not measured yet (stays empty until {feature} lands): "


def pending_families() -> Iterator[Metric]:
    yield counter(
        "karl_fec_recoveries_total",
        NOT_YET.format(feature="forward error correction") + "packets recovered by FEC.",
        0,
    )
