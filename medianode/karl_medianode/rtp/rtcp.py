"""RTCP sender and receiver reports (RFC 3550 section 6.4), sans-IO.

Only what call-quality statistics need is decoded: the sender info of SRs, the report blocks of SRs and
RRs, and three kinds of RTCP XR blocks (RFC 3611): receiver reference time, DLRR and VoIP metrics (of
which only the round-trip delay). Other packet types of a compound (SDES, BYE, APP, feedback) and other XR
blocks are skipped. The walk stops where
`packet.rtcp_is_valid` finds the compound broken or truncated, keeping the reports before that point (as
rtpengine 10.5 does: it evaluates the parts as it walks them, then drops a broken datagram), and a report
count that promises more blocks than the part holds yields only the blocks that fit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from karl_medianode.rtp.packet import REPORT_BLOCK_SIZE, RTCP_MIN_SIZES, RTCP_RR, RTCP_SR

_SENDER_INFO = struct.Struct("!IIIIII")  # sender SSRC, NTP msw, NTP lsw, RTP timestamp, packets, octets
_BLOCK = struct.Struct("!IIIIII")  # SSRC, fraction lost + cumulative lost, highest seq, jitter, LSR, DLSR
_BLOCK_SIZE = _BLOCK.size


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """What a receiver says about one source it hears (RFC 3550 6.4.1)."""

    ssrc: int
    """The source this block is about."""
    fraction_lost: int
    """Packets lost since the previous report, as a fraction of 256."""
    cumulative_lost: int
    """Packets lost since the start (24-bit two's complement: duplicates can make it negative)."""
    highest_sequence: int
    jitter: int
    """Interarrival jitter in RTP timestamp units of the source's payload."""
    last_sr: int
    """The middle 32 bits of the NTP timestamp of the last SR received from the source (0: none)."""
    delay_since_last_sr: int
    """Time between receiving that SR and sending this report, in units of 1/65536 s."""


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_seconds: int
    ntp_fraction: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    blocks: tuple[ReportBlock, ...]

    @property
    def ntp_middle(self) -> int:
        """The middle 32 bits of the NTP timestamp: what receivers echo as LSR."""
        return ((self.ntp_seconds & 0xFFFF) << 16) | (self.ntp_fraction >> 16)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    """The reporter."""
    blocks: tuple[ReportBlock, ...]


@dataclass(frozen=True, slots=True)
class ReceiverReferenceTime:
    """XR block type 4: a receiver's own NTP time, which others echo in DLRR (RTT without sending)."""

    ssrc: int
    """The XR sender."""
    ntp_seconds: int
    ntp_fraction: int

    @property
    def ntp_middle(self) -> int:
        return ((self.ntp_seconds & 0xFFFF) << 16) | (self.ntp_fraction >> 16)


@dataclass(frozen=True, slots=True)
class DelaySinceLastReceiverReport:
    """One sub-block of XR block type 5 (DLRR): `ssrc` is the receiver whose reference time is echoed."""

    reporter: int
    ssrc: int
    last_rr: int
    delay: int
    """1/65536 s."""


@dataclass(frozen=True, slots=True)
class VoipMetrics:
    """XR block type 7, reduced to what the statistics use."""

    reporter: int
    ssrc: int
    """The source the metrics are about."""
    round_trip_delay: int
    """Milliseconds."""


XrBlock = ReceiverReferenceTime | DelaySinceLastReceiverReport | VoipMetrics
Report = SenderReport | ReceiverReport | XrBlock

RTCP_XR = 207
_XR_RRT, _XR_DLRR, _XR_VOIP_METRICS = 4, 5, 7


def _blocks(data: bytes, offset: int, end: int, count: int) -> tuple[ReportBlock, ...]:
    fitting = min(count, (end - offset) // _BLOCK_SIZE)
    blocks = []
    for index in range(fitting):
        ssrc, loss, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset + index * _BLOCK_SIZE)
        cumulative = loss & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, loss >> 24, cumulative, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _xr_blocks(data: bytes, offset: int, end: int) -> list[XrBlock]:
    """The blocks of an XR packet whose body runs from `offset` (the sender SSRC) to `end`."""
    if end - offset < 4:
        return []
    reporter = int.from_bytes(data[offset : offset + 4], "big")
    blocks: list[XrBlock] = []
    offset += 4
    while end - offset >= 4:
        block_type = data[offset]
        size = 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
        if size > end - offset:
            break
        body = offset + 4
        if block_type == _XR_RRT and size >= 12:
            seconds, fraction = struct.unpack_from("!II", data, body)
            blocks.append(ReceiverReferenceTime(reporter, seconds, fraction))
        elif block_type == _XR_DLRR:
            for sub in range(body, offset + size - 11, 12):
                ssrc, last_rr, delay = struct.unpack_from("!III", data, sub)
                blocks.append(DelaySinceLastReceiverReport(reporter, ssrc, last_rr, delay))
        elif block_type == _XR_VOIP_METRICS and size >= 36:
            ssrc = int.from_bytes(data[body : body + 4], "big")
            round_trip = int.from_bytes(data[body + 12 : body + 14], "big")
            blocks.append(VoipMetrics(reporter, ssrc, round_trip))
        offset += size
    return blocks


def parse_reports(data: bytes) -> list[Report]:
    """The SRs, RRs and XR blocks of an RTCP compound packet, in order; never raises on any input."""
    reports: list[Report] = []
    offset = 0
    total = len(data)
    while total - offset >= 4:
        length = (int.from_bytes(data[offset + 2 : offset + 4], "big") + 1) * 4
        if length > total - offset or data[offset] >> 6 != 2:
            break
        end = offset + length
        packet_type = data[offset + 1]
        count = data[offset] & 0x1F
        if length < RTCP_MIN_SIZES.get(packet_type, 0):
            break
        if packet_type in (RTCP_SR, RTCP_RR) and length < count * REPORT_BLOCK_SIZE:
            break
        if packet_type == RTCP_XR:
            reports.extend(_xr_blocks(data, offset + 4, end))
        elif packet_type == RTCP_SR and length >= 4 + _SENDER_INFO.size:
            ssrc, msw, lsw, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, offset + 4)
            blocks = _blocks(data, offset + 4 + _SENDER_INFO.size, end, count)
            reports.append(SenderReport(ssrc, msw, lsw, rtp_ts, packets, octets, blocks))
        elif packet_type == RTCP_RR and length >= 8:
            ssrc = int.from_bytes(data[offset + 4 : offset + 8], "big")
            reports.append(ReceiverReport(ssrc, _blocks(data, offset + 8, end, count)))
        offset = end
    return reports


def build_report_block(block: ReportBlock) -> bytes:
    """The 24 bytes of a report block (for tests and generators)."""
    loss = (block.fraction_lost & 0xFF) << 24 | (block.cumulative_lost & 0xFFFFFF)
    return _BLOCK.pack(
        block.ssrc, loss, block.highest_sequence, block.jitter, block.last_sr, block.delay_since_last_sr
    )


def build_sender_report(report: SenderReport) -> bytes:
    body = _SENDER_INFO.pack(
        report.ssrc,
        report.ntp_seconds,
        report.ntp_fraction,
        report.rtp_timestamp,
        report.packet_count,
        report.octet_count,
    ) + b"".join(build_report_block(block) for block in report.blocks)
    return struct.pack("!BBH", 0x80 | len(report.blocks), RTCP_SR, (len(body) + 4) // 4 - 1) + body


def build_receiver_report(report: ReceiverReport) -> bytes:
    body = struct.pack("!I", report.ssrc) + b"".join(build_report_block(block) for block in report.blocks)
    return struct.pack("!BBH", 0x80 | len(report.blocks), RTCP_RR, (len(body) + 4) // 4 - 1) + body


def build_xr(reporter: int, blocks: list[tuple[int, bytes]]) -> bytes:
    """An XR packet from (block type, block body) pairs (for tests and generators)."""
    body = struct.pack("!I", reporter) + b"".join(
        struct.pack("!BBH", block_type, 0, len(content) // 4) + content for block_type, content in blocks
    )
    return struct.pack("!BBH", 0x80, RTCP_XR, (len(body) + 4) // 4 - 1) + body


def xr_receiver_reference_time(ntp_seconds: int, ntp_fraction: int) -> tuple[int, bytes]:
    return _XR_RRT, struct.pack("!II", ntp_seconds, ntp_fraction)


def xr_dlrr(*subs: tuple[int, int, int]) -> tuple[int, bytes]:
    """(ssrc, last RR middle NTP bits, delay in 1/65536 s) per sub-block."""
    return _XR_DLRR, b"".join(struct.pack("!III", *sub) for sub in subs)


def xr_voip_metrics(ssrc: int, round_trip_delay_ms: int) -> tuple[int, bytes]:
    """A VoIP metrics block about `ssrc` with only the round-trip delay set (the rest zero)."""
    return _XR_VOIP_METRICS, struct.pack("!I8xH18x", ssrc, round_trip_delay_ms)
