"""RTCP sender and receiver reports (`rtp.rtcp`): the builders, and the parser on good and bad compounds.

Datagrams are written out byte by byte here (not only through the builders), so that a builder and the
parser agreeing on a wrong layout cannot pass.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from karl_medianode.rtp.packet import rtcp_is_valid
from karl_medianode.rtp.rtcp import (
    DelaySinceLastReceiverReport,
    ReceiverReferenceTime,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    VoipMetrics,
    build_receiver_report,
    build_report_block,
    build_sender_report,
    build_xr,
    parse_reports,
    xr_dlrr,
    xr_receiver_reference_time,
    xr_voip_metrics,
)

BLOCK_A = ReportBlock(0xAAAA0001, 25, 5, 0x0001_0031, 160, 0x1234_5678, 655)
BLOCK_B = ReportBlock(0xBBBB0002, 255, 0x7FFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF)


def raw_block(
    ssrc: int, fraction: int, cumulative_24: bytes, highest: int, jitter: int, lsr: int, dlsr: int
) -> bytes:
    """A report block with the cumulative loss given as its three raw bytes."""
    tail = struct.pack("!IIII", highest, jitter, lsr, dlsr)
    return struct.pack("!IB", ssrc, fraction) + cumulative_24 + tail


def part(
    packet_type: int, count: int, body: bytes, version: int = 2, length_words: int | None = None
) -> bytes:
    """One RTCP packet of a compound; `length_words` overrides the length field (32-bit words minus one)."""
    words = (len(body) + 4) // 4 - 1 if length_words is None else length_words
    return struct.pack("!BBH", version << 6 | count, packet_type, words) + body


def sdes(ssrc: int, cname: bytes) -> bytes:
    chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return part(202, 1, chunk)


def bye(ssrc: int) -> bytes:
    return part(203, 1, struct.pack("!I", ssrc))


def sender_info(ssrc: int = 0x5EED, msw: int = 0xE1234567, lsw: int = 0x89ABCDEF) -> bytes:
    return struct.pack("!IIIIII", ssrc, msw, lsw, 16000, 100, 16000)


# --- builders and round trips --------------------------------------------------------------------------


def test_report_block_layout_is_rfc_3550() -> None:
    data = build_report_block(BLOCK_A)
    assert data == (
        b"\xaa\xaa\x00\x01"  # SSRC of the source
        b"\x19\x00\x00\x05"  # fraction lost 25, cumulative lost 5
        b"\x00\x01\x00\x31"  # extended highest sequence number
        b"\x00\x00\x00\xa0"  # jitter 160
        b"\x12\x34\x56\x78"  # LSR
        b"\x00\x00\x02\x8f"  # DLSR 655
    )


def test_sender_report_round_trip_with_two_blocks() -> None:
    report = SenderReport(0x5EED, 0xE1234567, 0x89ABCDEF, 0xCAFE, 1000, 160_000, (BLOCK_A, BLOCK_B))
    data = build_sender_report(report)
    # header: V=2, RC=2, PT=200, length (4 + 24 + 2 * 24) / 4 - 1 = 18 words
    assert data[:4] == b"\x82\xc8\x00\x12"
    assert len(data) == 76 and rtcp_is_valid(data)
    assert parse_reports(data) == [report]


def test_sender_report_without_blocks() -> None:
    report = SenderReport(1, 2, 3, 4, 5, 6, ())
    data = build_sender_report(report)
    assert data[:4] == b"\x80\xc8\x00\x06" and len(data) == 28
    assert parse_reports(data) == [report]


def test_ntp_middle_is_what_receivers_echo_as_lsr() -> None:
    report = SenderReport(1, 0xE1234567, 0x89ABCDEF, 0, 0, 0, ())
    assert report.ntp_middle == 0x456789AB


def test_receiver_report_round_trip() -> None:
    report = ReceiverReport(0xBBBB, (BLOCK_A,))
    data = build_receiver_report(report)
    assert data[:8] == b"\x81\xc9\x00\x07\x00\x00\xbb\xbb"
    assert len(data) == 32 and rtcp_is_valid(data)
    assert parse_reports(data) == [report]


def test_empty_receiver_report_is_a_report_without_blocks() -> None:
    data = build_receiver_report(ReceiverReport(0x1234, ()))
    assert data == b"\x80\xc9\x00\x01\x00\x00\x12\x34"
    assert parse_reports(data) == [ReceiverReport(0x1234, ())]


def test_thirty_one_blocks_the_most_a_report_count_can_say() -> None:
    blocks = tuple(ReportBlock(i, i, -i, i * 7, i * 11, i * 13, i * 17) for i in range(31))
    report = ReceiverReport(0x77, blocks)
    data = build_receiver_report(report)
    assert data[0] == 0x80 | 31
    assert parse_reports(data) == [report]


@given(
    ssrc=st.integers(0, 2**32 - 1),
    fraction=st.integers(0, 255),
    cumulative=st.integers(-(2**23), 2**23 - 1),
    words=st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=4),
)
def test_any_report_block_survives_a_round_trip(
    ssrc: int, fraction: int, cumulative: int, words: list[int]
) -> None:
    block = ReportBlock(ssrc, fraction, cumulative, *words)
    assert parse_reports(build_receiver_report(ReceiverReport(9, (block,)))) == [ReceiverReport(9, (block,))]


# --- compounds -------------------------------------------------------------------------------------


def test_sr_rr_and_sdes_compound_gives_both_reports_in_order() -> None:
    sr = SenderReport(0xAAAA, 0xE0000001, 0x80000000, 8000, 50, 8000, (BLOCK_A,))
    rr = ReceiverReport(0xAAAA, (BLOCK_B,))
    data = build_sender_report(sr) + build_receiver_report(rr) + sdes(0xAAAA, b"alice@example")
    assert rtcp_is_valid(data)
    assert parse_reports(data) == [sr, rr]


def test_other_packet_types_are_skipped_wherever_they_are() -> None:
    rr = ReceiverReport(0xBBBB, (BLOCK_A,))
    app = part(204, 0, struct.pack("!I", 0xBBBB) + b"NAME" + b"data")
    # an XR with a receiver reference time (read) and a statistics summary block (type 6, skipped)
    xr = part(207, 0, struct.pack("!I", 0xBBBB) + b"\x04\x00\x00\x02" + b"\x00" * 7 + b"\x09")
    xr_other = part(207, 0, struct.pack("!I", 0xBBBB) + b"\x06\x00\x00\x09" + b"\x00" * 36)
    data = sdes(0xBBBB, b"bob") + app + build_receiver_report(rr) + xr + xr_other + bye(0xBBBB)
    assert parse_reports(data) == [rr, ReceiverReferenceTime(0xBBBB, 0, 9)]


def test_xr_blocks_that_the_statistics_read() -> None:
    data = build_xr(
        0x5555,
        [
            xr_receiver_reference_time(3_900_000_000, 1 << 31),
            xr_dlrr((0x7777, 0x1234_5678, 655), (0x8888, 0, 0)),
            (6, bytes(36)),  # statistics summary: skipped
            xr_voip_metrics(0x9999, 123),
        ],
    )
    assert rtcp_is_valid(data)
    rrt, dlrr_1, dlrr_2, metrics = parse_reports(data)
    assert rrt == ReceiverReferenceTime(0x5555, 3_900_000_000, 1 << 31)
    assert rrt.ntp_middle == (3_900_000_000 & 0xFFFF) << 16 | 0x8000
    assert dlrr_1 == DelaySinceLastReceiverReport(0x5555, 0x7777, 0x1234_5678, 655)
    assert dlrr_2 == DelaySinceLastReceiverReport(0x5555, 0x8888, 0, 0)
    assert metrics == VoipMetrics(0x5555, 0x9999, 123)
    # a block whose length runs past the packet ends the walk of that packet
    truncated = data[:-8] + b""
    truncated = truncated[:2] + ((len(truncated) // 4) - 1).to_bytes(2, "big") + truncated[4:]
    assert parse_reports(truncated) == [rrt, dlrr_1, dlrr_2]


def test_hand_written_sender_report_fields() -> None:
    body = sender_info(0x01020304, 0x11111111, 0x22222222) + raw_block(
        0x0A0B0C0D, 0x40, b"\x00\x01\x00", 70000, 320, 0x11112222, 0x00010000
    )
    (report,) = parse_reports(part(200, 1, body))
    assert isinstance(report, SenderReport)
    assert (report.ssrc, report.ntp_seconds, report.ntp_fraction) == (0x01020304, 0x11111111, 0x22222222)
    assert (report.rtp_timestamp, report.packet_count, report.octet_count) == (16000, 100, 16000)
    assert report.ntp_middle == 0x11112222
    assert report.blocks == (ReportBlock(0x0A0B0C0D, 64, 256, 70000, 320, 0x11112222, 65536),)


# --- cumulative loss is a signed 24-bit number ------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\x00\x00\x00", 0),
        (b"\x00\x00\x05", 5),
        (b"\x7f\xff\xff", 0x7FFFFF),
        (b"\xff\xff\xff", -1),
        (b"\xff\xff\xfd", -3),
        (b"\x80\x00\x00", -0x800000),
    ],
)
def test_cumulative_loss_is_24_bit_twos_complement(raw: bytes, value: int) -> None:
    data = part(201, 1, struct.pack("!I", 1) + raw_block(2, 0xFF, raw, 0, 0, 0, 0))
    (report,) = parse_reports(data)
    assert report.blocks[0].cumulative_lost == value
    assert report.blocks[0].fraction_lost == 255  # the neighbouring byte is not mixed in
    assert build_report_block(report.blocks[0])[5:8] == raw


def test_negative_loss_built_and_parsed() -> None:
    block = ReportBlock(7, 0, -2, 10, 0, 0, 0)
    assert build_report_block(block)[4:8] == b"\x00\xff\xff\xfe"
    assert parse_reports(build_receiver_report(ReceiverReport(1, (block,))))[0].blocks == (block,)


# --- truncation and lies ---------------------------------------------------------------------------


def test_report_count_the_part_cannot_hold_stops_the_walk() -> None:
    """rtpengine 10.5 rejects a part whose length is below 24 bytes per announced block: the compound
    is broken there, and only the reports before it count (`packet.rtcp_is_valid` agrees)."""
    one_block = struct.pack("!I", 0xBBBB) + build_report_block(BLOCK_A)
    data = part(201, 3, one_block)  # says 3 blocks, length has room for 1
    assert parse_reports(data) == [] and not rtcp_is_valid(data)
    follower = build_receiver_report(ReceiverReport(0xCCCC, (BLOCK_B,)))
    assert parse_reports(data + follower) == []
    assert parse_reports(follower + data) == [ReceiverReport(0xCCCC, (BLOCK_B,))]


def test_partial_block_at_the_end_of_a_part_is_not_read() -> None:
    body = struct.pack("!I", 0xBBBB) + build_report_block(BLOCK_A) + build_report_block(BLOCK_B)[:20]
    assert parse_reports(part(201, 2, body)) == [ReceiverReport(0xBBBB, (BLOCK_A,))]


def test_sender_report_count_larger_than_the_part() -> None:
    data = part(200, 31, sender_info())  # no room for any block: broken, as rtpengine sees it
    assert parse_reports(data) == [] and not rtcp_is_valid(data)


def test_walk_stops_at_a_part_running_past_the_datagram() -> None:
    good = build_receiver_report(ReceiverReport(0xAAAA, (BLOCK_A,)))
    runaway = part(201, 1, struct.pack("!I", 0xBBBB) + build_report_block(BLOCK_B), length_words=50)
    assert parse_reports(good + runaway) == [ReceiverReport(0xAAAA, (BLOCK_A,))]
    assert parse_reports(runaway + good) == []


@pytest.mark.parametrize("cut", [1, 4, 8, 27, 31, 51])
def test_truncated_datagram_keeps_only_the_complete_parts(cut: int) -> None:
    first = build_receiver_report(ReceiverReport(0xAAAA, (BLOCK_A,)))
    second = build_sender_report(SenderReport(0xBBBB, 1, 2, 3, 4, 5, (BLOCK_B,)))
    assert parse_reports(first + second[:cut]) == [ReceiverReport(0xAAAA, (BLOCK_A,))]
    assert parse_reports(first[: min(cut, len(first) - 1)]) == []


def test_too_short_sender_report_stops_the_walk() -> None:
    short_sr = part(200, 0, sender_info()[:16])  # 20 bytes: no complete sender info
    rr = build_receiver_report(ReceiverReport(0xBBBB, (BLOCK_A,)))
    assert parse_reports(short_sr + rr) == [] and not rtcp_is_valid(short_sr + rr)
    assert parse_reports(rr + short_sr) == [ReceiverReport(0xBBBB, (BLOCK_A,))]


def test_receiver_report_without_its_ssrc_stops_the_walk() -> None:
    header_only = part(201, 0, b"")
    rr = build_receiver_report(ReceiverReport(0xBBBB, ()))
    assert parse_reports(header_only + rr) == [] and not rtcp_is_valid(header_only + rr)


def test_trailing_bytes_shorter_than_a_header_are_ignored() -> None:
    rr = build_receiver_report(ReceiverReport(0xBBBB, (BLOCK_A,)))
    assert parse_reports(rr + b"\x81\xc9") == [ReceiverReport(0xBBBB, (BLOCK_A,))]


@pytest.mark.parametrize("version", [0, 1, 3])
def test_wrong_version_stops_the_walk(version: int) -> None:
    rr = build_receiver_report(ReceiverReport(0xAAAA, (BLOCK_A,)))
    bad = part(201, 1, struct.pack("!I", 0xBBBB) + build_report_block(BLOCK_B), version=version)
    assert parse_reports(bad) == []
    assert parse_reports(bad + rr) == []
    assert parse_reports(rr + bad + rr) == [ReceiverReport(0xAAAA, (BLOCK_A,))]


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x80\xc9\x00", b"\x00" * 3])
def test_nothing_to_parse(data: bytes) -> None:
    assert parse_reports(data) == []


def test_zero_length_field_parts_are_walked_word_by_word() -> None:
    # four bytes of header each (length field 0), then a real report
    filler = part(202, 0, b"") * 3
    rr = build_receiver_report(ReceiverReport(0xBBBB, (BLOCK_A,)))
    assert parse_reports(filler + rr) == [ReceiverReport(0xBBBB, (BLOCK_A,))]


# --- never raises ----------------------------------------------------------------------------------


@given(st.binary(max_size=400))
def test_parse_reports_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    reports = parse_reports(data)
    for report in reports:
        assert isinstance(report, SenderReport | ReceiverReport)
        assert len(report.blocks) <= 31
        for block in report.blocks:
            assert -(2**23) <= block.cumulative_lost < 2**23
            assert 0 <= block.fraction_lost <= 255


_PARTS = st.one_of(
    st.builds(
        lambda ssrc, blocks: build_receiver_report(ReceiverReport(ssrc, tuple(blocks))),
        st.integers(0, 2**32 - 1),
        st.lists(st.just(BLOCK_A) | st.just(BLOCK_B), max_size=3),
    ),
    st.builds(
        lambda blocks: build_sender_report(SenderReport(1, 2, 3, 4, 5, 6, tuple(blocks))),
        st.lists(st.just(BLOCK_A) | st.just(BLOCK_B), max_size=3),
    ),
    st.just(sdes(5, b"cname")),
    st.just(bye(5)),
)


@given(
    parts=st.lists(_PARTS, min_size=1, max_size=5),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_parse_reports_never_raises_on_damaged_compounds(
    parts: list[bytes], flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(b"".join(parts))
    for position, value in flips:
        data[position % len(data)] = value
    damaged = bytes(data[: cut % (len(data) + 1)])
    reports = parse_reports(damaged)
    assert len(reports) <= len(damaged) // 8  # a report part is 8 bytes at least
