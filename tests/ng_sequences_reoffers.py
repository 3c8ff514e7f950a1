"""Side-by-side sequences (see `ng_sequences`): parity with rtpengine 10.5, reoffers."""

from __future__ import annotations

from ng_sequences import Sequence


def group() -> list[Sequence]:
    return []
