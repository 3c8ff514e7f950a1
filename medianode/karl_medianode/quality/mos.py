"""Mean opinion score from delay, jitter and loss: the simplified E-model rtpengine uses.

R = 93.2 - d/40 (d < 160 ms) or 93.2 - (d - 120)/10, with d = RTT + 2 * jitter + 10 ms, minus 2.5 per
percent of loss; MOS = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R). rtpengine reports MOS times ten as an
integer (10..50) and 0 when it cannot be computed, which Karl keeps for NG compatibility.
"""

from __future__ import annotations


def mos_x10(rtt_us: int, jitter_ms: int, loss_percent: int) -> int:
    """MOS times ten (10..50), or 0 without a round-trip time (the conversational MOS needs one)."""
    if rtt_us <= 0:
        return 0
    effective = rtt_us // 1000 + jitter_ms * 2 + 10
    r = 93.2 - effective / 40.0 if effective < 160 else 93.2 - (effective - 120) / 10.0
    r -= loss_percent * 2.5
    if r < 0:
        return 10
    value = int((1.0 + 0.035 * r + 0.000007 * r * (r - 60) * (100 - r)) * 10.0)
    return value if value >= 10 else 0
