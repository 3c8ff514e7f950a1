"""Latency histograms with 1 µs buckets, cheap enough to fill on the receive path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Buckets 0 .. LIMIT_US-1 hold one microsecond each; the last bucket collects everything slower.
LIMIT_US = 50_000


def new_histogram() -> list[int]:
    return [0] * (LIMIT_US + 1)


def sparse(hist: Sequence[int]) -> list[tuple[int, int]]:
    """(bucket, count) pairs of the non-empty buckets: what travels between processes."""
    return [(i, c) for i, c in enumerate(hist) if c]


def merge(parts: Iterable[list[tuple[int, int]]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for part in parts:
        for bucket, count in part:
            merged[bucket] = merged.get(bucket, 0) + count
    return merged


def percentile_us(hist: dict[int, int], fraction: float) -> float | None:
    """The bucket (µs) below which ``fraction`` of the samples lie; None without samples.

    A value in the overflow bucket is reported as LIMIT_US (i.e. "at least").
    """
    total = sum(hist.values())
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return float(bucket)
    return float(max(hist))


def sample_count(hist: dict[int, int]) -> int:
    return sum(hist.values())
