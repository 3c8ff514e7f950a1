"""Minimal RTP/RTCP header handling (RFC 3550, RFC 5761), sans-IO.

What counts as RTP, as muxed RTCP and as a broken RTCP compound follows rtpengine 10.5, so that Karl
forwards, drops and counts the same datagrams. These helpers are for tests and slow paths; the relay's
hot path inlines the two cheapest checks (`is_rtp`, `is_rtcp`) instead of calling them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_HEADER_SIZE = 12
RTP_VERSION = 2

# RFC 5761 section 4 reserves the second octets 192..223 for RTCP on a muxed port; rtpengine 10.5 (and
# hence Karl) treats only 194..223 as RTCP, because 192/193 (the old FIR/NACK types) collide with RTP
# payload types 64/65 carrying a marker bit. A muxed RTCP packet needs at least header + sender SSRC.
RTCP_MUX_MIN_TYPE = 194
RTCP_MUX_MAX_TYPE = 223
RTCP_MIN_SIZE = 8

# RTCP packet types and the shortest packet rtpengine 10.5 accepts for each (header included).
RTCP_SR = 200
RTCP_RR = 201
RTCP_MIN_SIZES = {
    200: 28,  # SR: header, sender SSRC, 20 bytes of sender info
    201: 8,  # RR: header, sender SSRC
    202: 4,  # SDES
    203: 4,  # BYE
    204: 12,  # APP: header, SSRC, name
    205: 12,  # RTPFB: header, sender SSRC, media SSRC
    206: 12,  # PSFB
    207: 8,  # XR: header, SSRC
}
REPORT_BLOCK_SIZE = 24

_FIXED = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram is not a well-formed RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpHeader:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_length: int
    """Bytes before the payload: fixed header, CSRC list and header extension."""
    padding_length: int
    """Padding bytes at the end (0 without the P bit, or when the count is impossible — then rtpengine
    treats the whole rest as payload, and so does Karl)."""

    def payload_span(self, total_length: int) -> tuple[int, int]:
        """Start and end offsets of the payload in a datagram of `total_length` bytes."""
        return self.header_length, total_length - self.padding_length


def is_rtp(data: bytes) -> bool:
    """True if `data` has an RTP version 2 fixed header (the test rtpengine applies before parsing)."""
    return len(data) >= RTP_HEADER_SIZE and data[0] & 0xC0 == 0x80


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing as rtpengine 10.5 does it: second octet in 194..223, at least 8 bytes."""
    return len(data) >= RTCP_MIN_SIZE and RTCP_MUX_MIN_TYPE <= data[1] <= RTCP_MUX_MAX_TYPE


def rtp_header(data: bytes) -> RtpHeader:
    """Parse the RTP header of `data`; raise `RtpError` if it is too short or not version 2."""
    if len(data) < RTP_HEADER_SIZE:
        raise RtpError(f"short packet: {len(data)} bytes, an RTP header needs {RTP_HEADER_SIZE}")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    version = b0 >> 6
    if version != RTP_VERSION:
        raise RtpError(f"RTP version {version}, expected {RTP_VERSION}")
    csrc_count = b0 & 0x0F
    header_length = RTP_HEADER_SIZE + 4 * csrc_count
    if header_length > len(data):
        raise RtpError(f"short packet: CSRC list of {csrc_count} entries does not fit")
    extension = bool(b0 & 0x10)
    if extension:
        if header_length + 4 > len(data):
            raise RtpError("short packet: no room for the header extension")
        words = int.from_bytes(data[header_length + 2 : header_length + 4], "big")
        header_length += 4 + 4 * words
        if header_length > len(data):
            raise RtpError("short packet: header extension longer than the datagram")
    padding = bool(b0 & 0x20)
    padding_length = 0
    payload_length = len(data) - header_length
    if padding and payload_length > 0 and data[-1] <= payload_length:
        padding_length = data[-1]
    return RtpHeader(
        version=version,
        padding=padding,
        extension=extension,
        csrc_count=csrc_count,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        header_length=header_length,
        padding_length=padding_length,
    )


def rtcp_is_valid(data: bytes) -> bool:
    """Whether rtpengine 10.5 would forward `data` as RTCP rather than drop it as an error.

    It walks the compound packet: a part whose length field runs past the datagram ends the walk
    (the rest is forwarded unchecked, as rtpengine does); a part with version != 2, one shorter than
    its type's minimum, or an SR/RR whose length cannot hold its report count makes the whole datagram
    invalid. Unknown packet types are accepted.
    """
    offset = 0
    total = len(data)
    while total - offset >= 4:
        length = (int.from_bytes(data[offset + 2 : offset + 4], "big") + 1) * 4
        if length > total - offset:
            break
        if data[offset] >> 6 != RTP_VERSION:
            return False
        packet_type = data[offset + 1]
        if length < RTCP_MIN_SIZES.get(packet_type, 0):
            return False
        # rtpengine compares the whole packet length (header included) against the report blocks.
        if packet_type in (RTCP_SR, RTCP_RR) and length < (data[offset] & 0x1F) * REPORT_BLOCK_SIZE:
            return False
        offset += length
    return True
