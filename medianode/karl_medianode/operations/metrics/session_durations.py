"""How long ended calls lasted, kept as plain integers by a call-ended listener."""

from __future__ import annotations

from typing import TYPE_CHECKING

from karl_medianode.operations.distribution import Distribution

if TYPE_CHECKING:
    from karl_medianode.engine import CallEnded

# From a failed set-up to a long conference call, in seconds.
DURATION_BOUNDS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)


class SessionDurations(Distribution):
    def __init__(self) -> None:
        super().__init__(DURATION_BOUNDS)

    def call_ended(self, ended: CallEnded) -> None:
        # `ended` is when the parties hung up (the delete request), not the end of the delete delay
        self.observe(max(0.0, ended.ended - ended.created))
