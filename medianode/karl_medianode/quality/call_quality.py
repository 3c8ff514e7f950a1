"""Per-call RTCP statistics in rtpengine 10.5's model, sans-IO.

Every SSRC of the call has an entry. A sender report (SR) stores its NTP middle bits and when it arrived;
a report block that echoes them (LSR) with a delay (DLSR) gives the round-trip time between Karl and the
reporting party (`rtt_leg`). The reporter's entry then gets a statistics block: jitter (ms, with the
clock rate of the payload type the source sends), packet loss (percent of the fraction lost), the
end-to-end round-trip time (this leg plus the last leg measured the other way) and the MOS from those
(`mos.mos_x10`). These blocks are what rtpengine lists under "SSRC" in `query` and `delete` replies, which
Kamailio's rtpengine module reads for its MOS variables; Karl follows 10.5's rules, quirks included:

* a block without LSR or DLSR, about a source that sent no RTP, or whose payload type the reporter's
  media does not know, gives no statistics block (the RTT still counts if it was measured);
* a block arriving less than a second after the reporter's previous one is dropped;
* a block without the RTT of both legs has MOS 0 and stays out of the averages; an entry is listed only
  once it has a block with a MOS.

Independently of those rules `latest` keeps the last block each reporter sent, for the REST API, CDRs
and metrics, so that loss and jitter are known even without sender reports.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from karl_medianode.quality.mos import mos_x10
from karl_medianode.quality.totals import QualityTotals
from karl_medianode.rtp.rtcp import (
    DelaySinceLastReceiverReport,
    ReceiverReferenceTime,
    ReportBlock,
    SenderReport,
    VoipMetrics,
    parse_reports,
)

MAX_SENDER_REPORTS = 10
"""SRs remembered per SSRC for matching LSR values (rtpengine keeps 10)."""
MAX_ENTRIES = 32
"""SSRCs tracked per call; the least recently used entry makes room (rtpengine keeps 20 per party)."""
MAX_BLOCKS = 1024
"""Statistics blocks kept per SSRC for the progression; beyond, every second one is thinned out."""
MAX_RTT_US = 10_000_000
MIN_BLOCK_INTERVAL = 1.0


@dataclass(slots=True)
class StatsBlock:
    mos: int
    """MOS times ten, 0 when not computable."""
    rtt: int
    """End-to-end round-trip time, microseconds (0: unknown)."""
    rtt_leg: int
    """Round-trip time between Karl and the reporter, microseconds (0: unknown)."""
    jitter: int
    """Milliseconds."""
    packet_loss: int
    """Percent (the fraction lost of the report)."""
    reported: float
    """Wall-clock time the report arrived."""

    def to_ng(self, *, with_time: bool = True) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "MOS": self.mos,
            "round-trip time": self.rtt,
            "round-trip time leg": self.rtt_leg,
            "jitter": self.jitter,
            "packet loss": self.packet_loss,
        }
        if with_time:
            entry["reported at"] = int(self.reported)
        return entry

    def to_list(self) -> list[Any]:
        return [self.mos, self.rtt, self.rtt_leg, self.jitter, self.packet_loss, self.reported]

    @classmethod
    def from_list(cls, data: Any) -> StatsBlock:
        mos, rtt, rtt_leg, jitter, loss, reported = data
        return cls(int(mos), int(rtt), int(rtt_leg), int(jitter), int(loss), float(reported))


@dataclass(slots=True)
class LatestReport:
    """The last report block a party sent about a source, whatever rtpengine's rules make of it."""

    source: int
    fraction_lost: float
    cumulative_lost: int
    jitter_seconds: float | None
    """None when the source's clock rate is unknown."""
    rtt_leg_seconds: float | None
    reported: float


class SsrcStats:
    """One SSRC of the call: as an RTP source, as an SR sender and as a reporter."""

    __slots__ = (
        "block_count",
        "blocks",
        "highest",
        "last_rtt",
        "last_used",
        "latest",
        "lowest",
        "no_mos_count",
        "packets_lost",
        "party",
        "payload_type",
        "rr_times",
        "sender_reports",
        "ssrc",
        "sums",
    )

    def __init__(self, ssrc: int, now: float) -> None:
        self.ssrc = ssrc
        self.party: str | None = None
        """Tag of the party that sends with this SSRC, once known."""
        self.payload_type: int | None = None
        """Payload type of the RTP seen with this SSRC (None: no RTP from it yet)."""
        self.sender_reports: deque[tuple[int, float]] = deque(maxlen=MAX_SENDER_REPORTS)
        self.last_rtt = 0
        """Last round-trip time (µs) measured with an SR (or an XR reference time) of this SSRC."""
        self.rr_times: deque[tuple[int, float]] = deque(maxlen=MAX_SENDER_REPORTS)
        """XR receiver reference times of this SSRC: NTP middle bits and arrival."""

        self.packets_lost = 0
        """Cumulative loss in this SSRC's last report (as rtpengine shows it: unsigned 24 bits)."""
        self.blocks: list[StatsBlock] = []
        """The blocks for the progression (thinned out beyond MAX_BLOCKS)."""
        self.block_count = 0
        """Every block accepted, also those thinned out of `blocks`."""
        self.lowest: StatsBlock | None = None
        self.highest: StatsBlock | None = None
        self.no_mos_count = 0
        self.sums = [0, 0, 0, 0, 0]  # MOS, RTT, RTT leg, jitter, packet loss of blocks with a MOS
        self.latest: LatestReport | None = None
        self.last_used = now

    @property
    def mos_samples(self) -> int:
        return max(1, self.block_count - self.no_mos_count)

    def listed(self) -> bool:
        return bool(self.blocks) and self.lowest is not None and self.highest is not None

    def add_block(self, block: StatsBlock) -> bool:
        if self.blocks and block.reported - self.blocks[-1].reported < MIN_BLOCK_INTERVAL:
            return False
        self.blocks.append(block)
        self.block_count += 1
        if len(self.blocks) > MAX_BLOCKS:
            del self.blocks[1:-1:2]
        if block.mos and (self.lowest is None or block.mos < self.lowest.mos):
            self.lowest = block
        if self.highest is None or block.mos > self.highest.mos:
            self.highest = block
        if block.mos:
            values = (block.mos, block.rtt, block.rtt_leg, block.jitter, block.packet_loss)
            for index, value in enumerate(values):
                self.sums[index] += value
        else:
            self.no_mos_count += 1
        return True

    def average(self) -> dict[str, Any]:
        samples = self.mos_samples
        mos, rtt, rtt_leg, jitter, loss = (value // samples for value in self.sums)
        return {
            "MOS": mos,
            "round-trip time": rtt,
            "round-trip time leg": rtt_leg,
            "jitter": jitter,
            "packet loss": loss,
            "samples": samples,
        }

    def progression(self) -> dict[str, Any]:
        first = int(self.blocks[0].reported)
        interval = (int(self.blocks[-1].reported) - first) // 10
        entries = []
        next_step = first
        for block in self.blocks:
            if int(block.reported) < next_step:
                continue
            next_step += interval
            entries.append(block.to_ng())
        return {"interval": interval, "entries": entries}

    def to_dict(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "ssrc": self.ssrc,
            "party": self.party,
            "payload_type": self.payload_type,
            "sender_reports": [list(item) for item in self.sender_reports],
            "last_rtt": self.last_rtt,
            "rr_times": [list(item) for item in self.rr_times],
            "packets_lost": self.packets_lost,
            "blocks": [block.to_list() for block in self.blocks],
            "block_count": self.block_count,
            "lowest": self.lowest.to_list() if self.lowest else None,
            "highest": self.highest.to_list() if self.highest else None,
            "no_mos_count": self.no_mos_count,
            "sums": list(self.sums),
            "latest": None
            if latest is None
            else [
                latest.source,
                latest.fraction_lost,
                latest.cumulative_lost,
                latest.jitter_seconds,
                latest.rtt_leg_seconds,
                latest.reported,
            ],
            "last_used": self.last_used,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SsrcStats:
        entry = cls(int(data["ssrc"]), float(data["last_used"]))
        entry.party = data.get("party")
        entry.payload_type = None if data.get("payload_type") is None else int(data["payload_type"])
        entry.sender_reports.extend((int(ntp), float(at)) for ntp, at in data.get("sender_reports", []))
        entry.last_rtt = int(data.get("last_rtt", 0))
        entry.rr_times.extend((int(ntp), float(at)) for ntp, at in data.get("rr_times", []))
        entry.packets_lost = int(data.get("packets_lost", 0))
        entry.blocks = [StatsBlock.from_list(block) for block in data.get("blocks", [])]
        entry.block_count = int(data.get("block_count", len(entry.blocks)))
        entry.lowest = None if data.get("lowest") is None else StatsBlock.from_list(data["lowest"])
        entry.highest = None if data.get("highest") is None else StatsBlock.from_list(data["highest"])
        entry.no_mos_count = int(data.get("no_mos_count", 0))
        entry.sums = [int(x) for x in data.get("sums", [0, 0, 0, 0, 0])]
        latest = data.get("latest")
        if latest is not None:
            source, fraction, cumulative, jitter, rtt_leg, reported = latest
            entry.latest = LatestReport(
                int(source),
                float(fraction),
                int(cumulative),
                None if jitter is None else float(jitter),
                None if rtt_leg is None else float(rtt_leg),
                float(reported),
            )
        return entry

    def to_ng(self) -> dict[str, Any]:
        assert self.lowest is not None and self.highest is not None
        return {
            "cumulative loss": self.packets_lost,
            "average MOS": self.average(),
            "lowest MOS": self.lowest.to_ng(),
            "highest MOS": self.highest.to_ng(),
            "MOS progression": self.progression(),
        }


ClockRates = Mapping[int, int]


class CallQuality:
    """The SSRC table of one call. `totals` (node-wide) sees every evaluated report block."""

    def __init__(self, totals: QualityTotals | None = None) -> None:
        self.entries: dict[int, SsrcStats] = {}
        self.totals = totals
        self.reports = 0
        """SR and RR packets and XR blocks parsed for this call."""
        self.xr_round_trips: dict[tuple[str | None, int], int] = {}
        """Round-trip delay (ms) of XR VoIP metrics, by sending party and the SSRC they are about."""

    def entry(self, ssrc: int, now: float) -> SsrcStats:
        found = self.entries.get(ssrc)
        if found is None:
            if len(self.entries) >= MAX_ENTRIES:
                oldest = min(self.entries.values(), key=lambda e: e.last_used)
                del self.entries[oldest.ssrc]
            found = self.entries[ssrc] = SsrcStats(ssrc, now)
        found.last_used = now
        return found

    def rtp_source(self, ssrc: int, payload_type: int, party: str | None, now: float) -> None:
        """RTP with a new SSRC (or a new payload type) passed the relay."""
        entry = self.entry(ssrc, now)
        entry.payload_type = payload_type
        if party is not None:
            entry.party = party

    def rtcp(
        self,
        data: bytes,
        now: float,
        clock_rates: ClockRates,
        party: str | None = None,
        payload_type_of: Callable[[int], int | None] | None = None,
    ) -> None:
        """An RTCP compound from `party`, arriving at wall-clock time `now`. `clock_rates` maps the payload
        types of the reporter's media to their clock rates; `payload_type_of(ssrc)` may give the payload
        type currently sent with an SSRC (fresher than the one seen when the SSRC appeared)."""
        for report in parse_reports(data):
            self.reports += 1
            if isinstance(report, (ReceiverReferenceTime, DelaySinceLastReceiverReport, VoipMetrics)):
                if self.totals is not None:
                    self.totals.reports["xr"] += 1
                self._xr(report, now, party)
                continue
            if isinstance(report, SenderReport):
                if self.totals is not None:
                    self.totals.reports["sender"] += 1
                sender = self.entry(report.ssrc, now)
                if party is not None:
                    sender.party = party
                sender.sender_reports.append((report.ntp_middle, now))
            elif self.totals is not None:
                self.totals.reports["receiver"] += 1
            reporter = report.ssrc
            for block in report.blocks:
                self.receiver_block(reporter, block, now, clock_rates, party, payload_type_of)

    def _xr(
        self,
        block: ReceiverReferenceTime | DelaySinceLastReceiverReport | VoipMetrics,
        now: float,
        party: str | None,
    ) -> None:
        if isinstance(block, ReceiverReferenceTime):
            sender = self.entry(block.ssrc, now)
            if party is not None:
                sender.party = party
            sender.rr_times.append((block.ntp_middle, now))
        elif isinstance(block, DelaySinceLastReceiverReport):
            # the round trip between Karl and the DLRR's sender, kept on the reference time's owner
            source = self.entries.get(block.ssrc)
            rtt = self._match(source.rr_times if source else None, block.last_rr, block.delay, now)
            if source is not None and rtt:
                source.last_rtt = rtt
                if self.totals is not None:
                    self.totals.rtt.observe(rtt / 1_000_000)
        else:
            # rtpengine keeps it in the sending party's own table: it replaces the end-to-end round trip
            # of that party's reports under that SSRC (normally a party's metrics about itself)
            key = (party, block.ssrc)
            if key not in self.xr_round_trips and len(self.xr_round_trips) >= MAX_ENTRIES:
                del self.xr_round_trips[next(iter(self.xr_round_trips))]
            self.xr_round_trips[key] = block.round_trip_delay

    @staticmethod
    def _match(times: deque[tuple[int, float]] | None, ntp_middle: int, delay: int, now: float) -> int:
        """Round trip (µs) from an echoed NTP middle and the delay at the far end; 0 if none fits."""
        if times is None or not ntp_middle or not delay:
            return 0
        for echoed, received in reversed(times):
            if echoed == ntp_middle:
                rtt = round((now - received) * 1_000_000) - delay * 1_000_000 // 65536
                return rtt if 0 < rtt <= MAX_RTT_US else 0
        return 0

    def _round_trip(self, source: SsrcStats | None, block: ReportBlock, now: float) -> int:
        if source is None:
            return 0
        rtt = self._match(source.sender_reports, block.last_sr, block.delay_since_last_sr, now)
        if rtt:
            source.last_rtt = rtt
        return rtt

    def receiver_block(
        self,
        reporter_ssrc: int,
        block: ReportBlock,
        now: float,
        clock_rates: ClockRates,
        party: str | None = None,
        payload_type_of: Callable[[int], int | None] | None = None,
    ) -> None:
        source = self.entries.get(block.ssrc)
        if source is not None:
            source.last_used = now
            if payload_type_of is not None:
                fresh = payload_type_of(block.ssrc)
                if fresh is not None:
                    source.payload_type = fresh
        rtt_leg = self._round_trip(source, block, now)
        reporter = self.entry(reporter_ssrc, now)
        if party is not None:
            reporter.party = party
        payload_type = source.payload_type if source is not None else None
        clock_rate = clock_rates.get(payload_type) if payload_type is not None else None
        jitter_seconds = block.jitter / clock_rate if clock_rate else None
        fraction = block.fraction_lost / 256.0
        reporter.latest = LatestReport(
            block.ssrc,
            fraction,
            block.cumulative_lost,
            jitter_seconds,
            rtt_leg / 1_000_000 if rtt_leg else None,
            now,
        )
        totals = self.totals
        if totals is not None and source is not None:  # not about SSRCs the call never saw
            totals.loss.observe(fraction)
            if jitter_seconds is not None:
                totals.jitter.observe(jitter_seconds)
            if rtt_leg:
                totals.rtt.observe(rtt_leg / 1_000_000)
        # rtpengine's rules from here: no LSR/DLSR or no RTP from the source means no payload type
        if not block.last_sr or not block.delay_since_last_sr or payload_type is None:
            return
        if payload_type not in clock_rates:
            return
        rate = clock_rates[payload_type]
        jitter_ms = ((block.jitter * 1000) & 0xFFFFFFFF) // rate if rate else block.jitter
        rtt = rtt_leg + reporter.last_rtt if reporter.last_rtt else 0
        xr_round_trip = self.xr_round_trips.get((party, reporter_ssrc), 0)
        if xr_round_trip > 0:  # an XR VoIP metrics round trip replaces it (rtpengine does so)
            rtt = xr_round_trip * 1000
        loss_percent = block.fraction_lost * 100 // 256
        stats = StatsBlock(
            mos=mos_x10(rtt, jitter_ms, loss_percent),
            rtt=rtt,
            rtt_leg=rtt_leg,
            jitter=jitter_ms,
            packet_loss=loss_percent,
            reported=now,
        )
        reporter.packets_lost = block.cumulative_lost & 0xFFFFFF
        if totals is not None and stats.mos:
            totals.mos.observe(stats.mos / 10.0)
            totals.mos_squares += (stats.mos / 10.0) ** 2
        reporter.add_block(stats)

    # ------------------------------------------------------------------ state kept across a restore

    def to_dict(self) -> dict[str, Any]:
        """What the parties reported so far, JSON-safe (restored with `from_dict`)."""
        return {
            "reports": self.reports,
            "entries": [entry.to_dict() for entry in self.entries.values()],
            "xr_round_trips": [[party, ssrc, ms] for (party, ssrc), ms in self.xr_round_trips.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], totals: QualityTotals | None = None) -> CallQuality:
        quality = cls(totals)
        quality.reports = int(data.get("reports", 0))
        for item in data.get("entries", []):
            entry = SsrcStats.from_dict(item)
            quality.entries[entry.ssrc] = entry
        for party, ssrc, ms in data.get("xr_round_trips", []):
            quality.xr_round_trips[(party, int(ssrc))] = int(ms)
        return quality

    # ------------------------------------------------------------------ views

    def to_ng(self) -> dict[str, Any]:
        """The "SSRC" dictionary of rtpengine's query/delete replies."""
        return {str(ssrc): entry.to_ng() for ssrc, entry in self.entries.items() if entry.listed()}

    def summary(self) -> dict[str, Any]:
        """What the REST API and CDRs show: per reporting SSRC, what it said about what it receives."""
        sources = []
        for entry in self.entries.values():
            latest = entry.latest
            if latest is None and not entry.listed():
                continue
            average = entry.average() if entry.listed() else None
            last_rtt = next((block.rtt for block in reversed(entry.blocks) if block.rtt), 0)
            sources.append(
                {
                    "ssrc": entry.ssrc,
                    "party": entry.party,
                    "about_ssrc": latest.source if latest else None,
                    "mos": average["MOS"] / 10.0 if average else None,
                    "mos_min": entry.lowest.mos / 10.0 if entry.lowest else None,
                    "mos_max": entry.highest.mos / 10.0 if entry.highest and entry.highest.mos else None,
                    "mos_samples": average["samples"] if average else 0,
                    "packet_loss_ratio": latest.fraction_lost if latest else None,
                    "cumulative_lost": latest.cumulative_lost if latest else None,
                    "jitter_seconds": latest.jitter_seconds if latest else None,
                    "rtt_leg_seconds": latest.rtt_leg_seconds if latest else None,
                    "rtt_seconds": last_rtt / 1_000_000 if last_rtt else None,
                }
            )
        return {"reports": self.reports, "sources": sources}
