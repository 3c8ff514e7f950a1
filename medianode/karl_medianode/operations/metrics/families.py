"""Small builders for metric families, so that the collectors read as a list of what they export."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from karl_medianode.operations.distribution import Distribution

Samples = Iterable[tuple[Sequence[str], float]]


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def labelled_gauge(name: str, doc: str, labels: Sequence[str], samples: Samples) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def labelled_counter(name: str, doc: str, labels: Sequence[str], samples: Samples) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def le_label(bound: float) -> str:
    """A bucket bound as Prometheus writes it (`0.005`, `1.0`, `+Inf`)."""
    return "+Inf" if math.isinf(bound) and bound > 0 else repr(float(bound))


def cumulative_buckets(bounds: Sequence[float], per_range: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (`le` → count of observations <= le) from counts per range.

    `per_range[i]` counts observations in (bounds[i-1], bounds[i]]; the last slot, one past the bounds,
    counts those above the last bound (+Inf)."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(bounds, per_range, strict=False):
        running += count
        buckets.append((le_label(bound), running))
    running += sum(per_range[len(bounds) :])
    buckets.append(("+Inf", running))
    return buckets


def histogram(
    name: str, doc: str, bounds: Sequence[float], per_range: Sequence[int], total: float
) -> HistogramMetricFamily:
    """An unlabelled histogram from counts per range and the sum of the observations."""
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], cumulative_buckets(bounds, per_range), total)
    return family


def distribution_family(name: str, doc: str, distribution: Distribution) -> HistogramMetricFamily:
    """A histogram family from a `Distribution` kept as plain integers."""
    return histogram(name, doc, distribution.bounds, distribution.counts, distribution.total)
