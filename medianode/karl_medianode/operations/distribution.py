"""A histogram kept as plain integers, for statistics gathered outside the metrics package."""

from __future__ import annotations

from collections.abc import Sequence


class Distribution:
    """Counts per range and a sum. `counts[i]` counts observations in (bounds[i-1], bounds[i]]; the last
    slot, one past the bounds, counts those above the last bound."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.total += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    @property
    def count(self) -> int:
        return sum(self.counts)
