"""One deadline per key in a heap: setting a key's deadline again leaves its old heap entry behind,
stale, to be skipped when it comes up — no search, no removal from the middle of the heap."""

from __future__ import annotations

import heapq
import itertools


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        """Each key's current deadline; heap entries that disagree are stale."""
        self._order = itertools.count()

    def set(self, key: str, due: float) -> None:
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def next(self) -> float | None:
        """The earliest deadline, or None."""
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> str | None:
        """A key whose deadline is `now` or earlier (it no longer has one), or None."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, key = heapq.heappop(heap)
            if self._due.get(key) == due:
                del self._due[key]
                return key
        return None
