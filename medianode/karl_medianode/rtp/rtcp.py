"""RTCP sender and receiver reports (RFC 3550 section 6.4), sans-IO.

Only what call-quality statistics need is decoded: the sender info of SRs and the report blocks of SRs
and RRs. Other packet types of a compound (SDES, BYE, APP, feedback, XR) are skipped. The walk stops where
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


Report = SenderReport | ReceiverReport


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


def parse_reports(data: bytes) -> list[Report]:
    """The SRs and RRs of an RTCP compound packet, in order; never raises on any input."""
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
        if packet_type == RTCP_SR and length >= 4 + _SENDER_INFO.size:
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
