"""RTP header parsing, RTP/RTCP demultiplexing and RTCP validation as rtpengine 10.5 applies them."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from karl_medianode.rtp.packet import RtpError, is_rtcp, is_rtp, rtcp_is_valid, rtp_header


def rtp(pt: int = 0, seq: int = 1, ts: int = 160, ssrc: int = 0x11223344, payload: bytes = b"\x00" * 160,
        marker: bool = False, csrc: list[int] | None = None, ext: bytes | None = None,
        padding: int = 0) -> bytes:
    csrc = csrc or []
    b0 = 0x80 | len(csrc) | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrc)
    if ext is not None:
        out += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    out += payload
    if padding:
        out += b"\x00" * (padding - 1) + bytes([padding])
    return out


def test_plain_header_fields() -> None:
    header = rtp_header(rtp(pt=8, seq=0xBEEF, ts=0xDEADBEEF, ssrc=0xCAFEBABE, marker=True))
    assert (header.version, header.payload_type, header.sequence) == (2, 8, 0xBEEF)
    assert (header.timestamp, header.ssrc, header.marker) == (0xDEADBEEF, 0xCAFEBABE, True)
    assert (header.csrc_count, header.extension, header.padding) == (0, False, False)
    assert header.header_length == 12
    assert header.payload_span(172) == (12, 172)


def test_csrc_extension_and_padding_are_skipped() -> None:
    data = rtp(csrc=[1, 2], ext=b"\x01\x02\x03\x04" * 2, padding=4, payload=b"\xaa" * 20)
    header = rtp_header(data)
    assert header.csrc_count == 2 and header.extension and header.padding
    assert header.header_length == 12 + 8 + 4 + 8
    start, end = header.payload_span(len(data))
    assert data[start:end] == b"\xaa" * 20
    assert header.padding_length == 4


def test_impossible_padding_count_leaves_the_payload_whole() -> None:
    data = bytearray(rtp(payload=b"\x01\x02\x03"))
    data[0] |= 0x20
    data[-1] = 200  # more padding than payload: rtpengine ignores the padding
    header = rtp_header(bytes(data))
    assert header.padding and header.padding_length == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (b"\x80\x00" + b"\x00" * 9, "short"),
        (b"\x40" + b"\x00" * 20, "version 1"),
        (b"\x00" * 30, "version 0"),
        (b"\x83" + b"\x00" * 15, "CSRC"),  # three CSRCs announced, one present
        (b"\x90" + b"\x00" * 13, "extension"),  # extension bit, header incomplete
        (b"\x90" + b"\x00" * 11 + b"\xbe\xde\x00\x05" + b"\x00" * 4, "extension"),  # runs past the end
    ],
)
def test_malformed_rtp_raises_rtp_error(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError):
        rtp_header(data)
    if reason != "CSRC" and reason != "extension":
        assert not is_rtp(data)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        header = rtp_header(data)
    except RtpError:
        return
    start, end = header.payload_span(len(data))
    assert 12 <= start <= len(data) and start <= end <= len(data)


@given(st.binary(max_size=80))
def test_rtcp_validation_never_raises(data: bytes) -> None:
    assert rtcp_is_valid(data) in (True, False)


def test_rtcp_mux_demultiplexing_uses_rtpengines_range() -> None:
    sr = bytes([0x80, 200, 0, 6]) + b"\x00" * 24
    assert is_rtcp(sr)
    assert is_rtcp(bytes([0x80, 194]) + b"\x00" * 6)
    assert is_rtcp(bytes([0x80, 223]) + b"\x00" * 6)
    # 192/193 collide with RTP payload types 64/65 plus marker: rtpengine 10.5 treats them as RTP.
    assert not is_rtcp(bytes([0x80, 193]) + b"\x00" * 10)
    assert not is_rtcp(bytes([0x80, 224]) + b"\x00" * 10)
    assert not is_rtcp(rtp(pt=0, marker=True))  # second octet 128
    assert not is_rtcp(bytes([0x80, 200, 0, 1]))  # shorter than header + SSRC


def _rtcp(pt: int, body: bytes, count: int = 0, version: int = 2) -> bytes:
    assert len(body) % 4 == 0
    return bytes([version << 6 | count, pt]) + (len(body) // 4).to_bytes(2, "big") + body


def test_rtcp_validation_follows_rtpengines_parser() -> None:
    sender_report = _rtcp(200, b"\x00" * 24)
    receiver_report = _rtcp(201, b"\x00" * 4 + b"\x00" * 24, count=1)
    sdes = _rtcp(202, b"\x00" * 8, count=1)
    assert rtcp_is_valid(sender_report + receiver_report + sdes)
    assert rtcp_is_valid(b"")
    assert not rtcp_is_valid(_rtcp(200, b"\x00" * 24, version=0))
    assert not rtcp_is_valid(sender_report + _rtcp(201, b"\x00" * 4, version=1))
    assert not rtcp_is_valid(_rtcp(200, b"\x00" * 20))  # SR without complete sender info
    assert not rtcp_is_valid(_rtcp(201, b"\x00" * 4, count=3))  # three report blocks announced, none sent
    assert rtcp_is_valid(_rtcp(210, b""))  # unknown type: accepted
    # Length field running past the datagram ends the walk; what is left is not checked.
    assert rtcp_is_valid(b"garbagegarbage")
    assert rtcp_is_valid(sender_report + bytes([0x00, 200, 0xFF, 0xFF]))
