"""Node-wide distributions of what RTCP reports said, for the metrics (plain integers)."""

from __future__ import annotations

from karl_medianode.operations.distribution import Distribution

RTT_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
JITTER_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
LOSS_BOUNDS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
MOS_BOUNDS = (1.0, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4)


class QualityTotals:
    """Every report block Karl evaluated, over all calls of the node."""

    __slots__ = ("jitter", "loss", "mos", "mos_squares", "reports", "rtt")

    def __init__(self) -> None:
        self.rtt = Distribution(RTT_BOUNDS)
        """Round-trip time between Karl and a reporting party, seconds (from LSR/DLSR)."""
        self.jitter = Distribution(JITTER_BOUNDS)
        """Interarrival jitter a party reported, seconds."""
        self.loss = Distribution(LOSS_BOUNDS)
        """Fraction lost a party reported (0..1)."""
        self.mos = Distribution(MOS_BOUNDS)
        """MOS of report blocks that had the round-trip time of both legs (also those then dropped by
        the one-second rule: rtpengine's `statistics` counts them too)."""
        self.mos_squares = 0.0
        """Sum of the squared MOS values, for the standard deviation in `statistics`."""
        self.reports: dict[str, int] = {"sender": 0, "receiver": 0, "xr": 0}
        """SR and RR packets and XR blocks (reference time, DLRR, VoIP metrics) parsed."""
