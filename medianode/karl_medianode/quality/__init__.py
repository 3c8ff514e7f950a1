"""Call quality from RTCP reports and RTP sequence numbers: MOS, jitter, loss, round-trip time.

Nothing here runs per RTP packet. The relay hands RTCP compounds to `CallQuality` (a few per second per
call) and reports sequence breaks of RTP streams; everything else is computed when asked.
"""

from karl_medianode.quality.call_quality import CallQuality, SsrcStats, StatsBlock
from karl_medianode.quality.mos import mos_x10
from karl_medianode.quality.totals import QualityTotals

__all__ = ["CallQuality", "QualityTotals", "SsrcStats", "StatsBlock", "mos_x10"]
