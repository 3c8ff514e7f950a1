"""Call-quality statistics (`quality/`): the MOS formula, `CallQuality`'s rtpengine 10.5 rules, the totals.

Every time is passed explicitly (`now`), chosen as exact binary fractions so that round-trip times come
out to the microsecond. The MOS values are worked out by hand from the formula in `mos.py`:
d = RTT/1000 + 2 * jitter + 10 (ms); R = 93.2 - d/40 if d < 160 else 93.2 - (d - 120)/10; R -= 2.5 * loss;
MOS = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R), reported as int(10 * MOS).
"""

from __future__ import annotations

import json

import pytest

from karl_medianode.quality import CallQuality, QualityTotals, mos_x10
from karl_medianode.quality.call_quality import (
    MAX_BLOCKS,
    MAX_ENTRIES,
    MAX_SENDER_REPORTS,
    LatestReport,
)
from karl_medianode.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_receiver_report,
    build_sender_report,
    build_xr,
    xr_dlrr,
    xr_receiver_reference_time,
    xr_voip_metrics,
)

A, B = 0xAAAA0001, 0xBBBB0002
T0 = 1_800_000_000.0
RATES = {0: 8000, 8: 8000, 96: 48000}
DLSR_62_5_MS = 0x1000  # 4096/65536 s
MA, MB = 0x12340000, 0x56780000  # NTP middle bits of the first SRs of A and B
MA2, MB2 = 0x12360000, 0x567A0000


def sr(ssrc: int, middle: int, blocks: tuple[ReportBlock, ...] = ()) -> bytes:
    """An SR whose NTP timestamp has `middle` as its middle 32 bits (what an LSR echoes)."""
    msw = 0xE9000000 | middle >> 16
    lsw = (middle & 0xFFFF) << 16 | 0x1234
    report = SenderReport(ssrc, msw, lsw, 160, 10, 1600, blocks)
    assert report.ntp_middle == middle
    return build_sender_report(report)


def block(
    about: int, *, lsr: int = 0, dlsr: int = 0, fraction: int = 0, cumulative: int = 0, jitter: int = 0
) -> ReportBlock:
    return ReportBlock(about, fraction, cumulative, 1000, jitter, lsr, dlsr)


def rr(reporter: int, *blocks: ReportBlock) -> bytes:
    return build_receiver_report(ReceiverReport(reporter, blocks))


def latest(quality: CallQuality, ssrc: int) -> LatestReport:
    report = quality.entries[ssrc].latest
    assert report is not None
    return report


def call(totals: QualityTotals | None = None) -> CallQuality:
    """A two-party call: A sends PCMU (PT 0), B sends PCMA (PT 8), both seen by the relay at T0."""
    quality = CallQuality(totals)
    quality.rtp_source(A, 0, "A", T0)
    quality.rtp_source(B, 8, "B", T0)
    return quality


def first_round(quality: CallQuality) -> None:
    """SRs of both at T0; B reports about A 125 ms later, A about B 250 ms later (DLSR 62.5 ms each).

    B's block: leg 125 - 62.5 = 62.5 ms, stored as A's last RTT; no RTT of the other leg yet: MOS 0.
    A's block: leg 250 - 62.5 = 187.5 ms, plus A's last RTT 62.5 ms = 250 ms end to end; jitter 80/8000
    = 10 ms, no loss: d = 250 + 20 + 10 = 280, R = 93.2 - 16 = 77.2, MOS 3.91 -> 39.
    """
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    quality.rtcp(sr(B, MB), T0, RATES, "B")
    about_a = block(A, lsr=MA, dlsr=DLSR_62_5_MS, fraction=13, cumulative=5, jitter=160)
    quality.rtcp(rr(B, about_a), T0 + 0.125, RATES, "B")
    about_b = block(B, lsr=MB, dlsr=DLSR_62_5_MS, jitter=80)
    quality.rtcp(rr(A, about_b), T0 + 0.25, RATES, "A")


def second_round(quality: CallQuality) -> None:
    """Two seconds later B reports again: leg 62.5 ms + B's last RTT 187.5 ms = 250 ms; jitter 240/8000
    = 30 ms; fraction 13/256 -> 5 %: d = 250 + 60 + 10 = 320, R = 93.2 - 20 - 12.5 = 60.7, MOS 3.14 -> 31."""
    quality.rtcp(sr(A, MA2), T0 + 2, RATES, "A")
    about_a = block(A, lsr=MA2, dlsr=DLSR_62_5_MS, fraction=13, cumulative=7, jitter=240)
    quality.rtcp(rr(B, about_a), T0 + 2.125, RATES, "B")


# --- mos_x10 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtt_us", "jitter_ms", "loss", "expected"),
    [
        # d = 80 + 20 + 10 = 110 < 160: R = 93.2 - 2.75 = 90.45; MOS = 1 + 3.16575 + 0.18412 = 4.35
        (80_643, 10, 0, 43),
        # the RTT counts in whole milliseconds: 80.999 ms is 80 ms
        (80_999, 10, 0, 43),
        # d = 1280 + 10 = 1290: R = 93.2 - 117 < 0, which rtpengine reports as 1.0
        (1_280_000, 0, 0, 10),
        (1_280_000, 30, 3, 10),
        # d = 250 + 20 + 10 = 280: R = 93.2 - 16 = 77.2; MOS = 1 + 2.702 + 0.21192 = 3.91
        (250_000, 10, 0, 39),
        # d = 30: R = 93.2 - 0.75 - 25 = 67.45; MOS = 1 + 2.36075 + 0.11450 = 3.48
        (20_000, 0, 10, 34),
        # d = 300 + 40 + 10 = 350: R = 93.2 - 23 = 70.2; MOS = 1 + 2.457 + 0.14937 = 3.61
        (300_000, 20, 0, 36),
        # d = 125 + 40 + 10 = 175: R = 93.2 - 5.5 - 22.5 = 65.2; MOS = 1 + 2.282 + 0.08259 = 3.36
        (125_000, 20, 9, 33),
        # the best there is: d = 0 + 0 + 10: R = 92.95; MOS = 1 + 3.25325 + 0.15114 = 4.40
        (1, 0, 0, 44),
        (999, 0, 0, 44),
        # d = 1052: R = 93.2 - 93.2 = 0: MOS exactly 1.0
        (1_042_000, 0, 0, 10),
        # d = 1042: R = 1.0: MOS = 1 + 0.035 - 0.04089 = 0.994 < 1: "invalid", reported as 0
        (1_032_000, 0, 0, 0),
        # d = 1010: R = 4.2: MOS = 1 + 0.147 - 0.15716 = 0.990, also 0
        (1_000_000, 0, 0, 0),
    ],
)
def test_mos_x10_worked_by_hand(rtt_us: int, jitter_ms: int, loss: int, expected: int) -> None:
    assert mos_x10(rtt_us, jitter_ms, loss) == expected


@pytest.mark.parametrize(("jitter_ms", "loss"), [(0, 0), (10, 0), (500, 50)])
def test_mos_needs_a_round_trip_time(jitter_ms: int, loss: int) -> None:
    assert mos_x10(0, jitter_ms, loss) == 0
    assert mos_x10(-5, jitter_ms, loss) == 0


def test_mos_falls_with_loss_and_jitter() -> None:
    # (within R > 5: just above 0, rtpengine's MOS dips below 1.0 and is reported as 0)
    by_loss = [mos_x10(40_000, 5, loss) for loss in range(0, 34, 2)]
    by_jitter = [mos_x10(40_000, jitter, 0) for jitter in range(0, 400, 20)]
    for series in (by_loss, by_jitter):
        assert series == sorted(series, reverse=True)
        assert series[0] > series[-1]


# --- round-trip times from LSR and DLSR ---------------------------------------------------------------


def test_round_trip_of_a_leg_from_lsr_and_dlsr() -> None:
    quality = call()
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    about_a = block(A, lsr=MA, dlsr=DLSR_62_5_MS, fraction=64, cumulative=3, jitter=160)
    quality.rtcp(rr(B, about_a), T0 + 0.125, RATES, "B")
    reporter = quality.entries[B]
    (stats,) = reporter.blocks
    assert stats.rtt_leg == 62_500  # 125 ms between SR and RR, minus the 62.5 ms the reporter held it
    assert (stats.jitter, stats.packet_loss) == (20, 25)  # 160 / 8000 s; 64/256
    assert (stats.rtt, stats.mos) == (0, 0)  # the other leg is not known yet
    assert stats.reported == T0 + 0.125
    assert quality.entries[A].last_rtt == 62_500  # kept on the SR sender, for A's own reports
    assert reporter.latest is not None
    assert reporter.latest.source == A
    assert reporter.latest.fraction_lost == 0.25
    assert reporter.latest.cumulative_lost == 3
    assert reporter.latest.jitter_seconds == 0.02
    assert reporter.latest.rtt_leg_seconds == 0.0625


def test_lsr_is_matched_against_the_right_stored_sr() -> None:
    quality = call()
    for index, middle in enumerate((0x1000_0000, 0x1000_4000, 0x1000_8000)):
        quality.rtcp(sr(A, middle), T0 + index * 0.25, RATES, "A")
    # echoes the first SR (received at T0), 1 s later, held 0.5 s: 500 ms
    quality.rtcp(rr(B, block(A, lsr=0x1000_0000, dlsr=0x8000)), T0 + 1, RATES, "B")
    # echoes the second (T0 + 0.25), 1.75 s after it was received (1 s after the last block), held 0.5 s
    quality.rtcp(rr(B, block(A, lsr=0x1000_4000, dlsr=0x8000)), T0 + 2, RATES, "B")
    assert [stats.rtt_leg for stats in quality.entries[B].blocks] == [500_000, 1_250_000]


def test_only_the_last_ten_sender_reports_are_remembered() -> None:
    assert MAX_SENDER_REPORTS == 10
    quality = call()
    for index in range(11):
        quality.rtcp(sr(A, 0x2000_0000 + index), T0 + index * 0.0625, RATES, "A")
    quality.rtcp(rr(B, block(A, lsr=0x2000_0000, dlsr=1)), T0 + 1, RATES, "B")  # forgotten
    quality.rtcp(rr(B, block(A, lsr=0x2000_0001, dlsr=0x1000)), T0 + 2, RATES, "B")  # still there
    first, second = quality.entries[B].blocks
    # an LSR matching no SR still gives a block (the payload type is known), without a leg RTT
    assert first.rtt_leg == 0
    assert second.rtt_leg == 2_000_000 - 62_500 - 62_500


@pytest.mark.parametrize(
    ("delay", "dlsr", "expected"),
    [
        (0.25, 0x4000, 0),  # exactly the time the reporter held it: 0 is no RTT
        (0.25, 0x8000, 0),  # held longer than it took: negative, no RTT
        (10.25, 0x4000, 10_000_000),  # 10 s is the most rtpengine accepts
        (10.5, 0x4000, 0),  # above: discarded
        (0.25, 0x0001, 250_000 - 15),  # 1/65536 s is 15.26 us, truncated
    ],
)
def test_round_trip_bounds(delay: float, dlsr: int, expected: int) -> None:
    quality = call()
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=dlsr)), T0 + delay, RATES, "B")
    (stats,) = quality.entries[B].blocks
    assert stats.rtt_leg == expected
    assert quality.entries[A].last_rtt == expected


def test_end_to_end_rtt_is_this_leg_plus_the_other() -> None:
    quality = call()
    first_round(quality)
    (a_stats,) = quality.entries[A].blocks
    assert (a_stats.rtt_leg, a_stats.rtt) == (187_500, 250_000)
    assert (a_stats.jitter, a_stats.packet_loss, a_stats.mos) == (10, 0, 39)
    assert quality.entries[B].last_rtt == 187_500
    second_round(quality)
    b_first, b_second = quality.entries[B].blocks
    assert (b_first.rtt, b_first.mos) == (0, 0)
    assert (b_second.rtt_leg, b_second.rtt) == (62_500, 250_000)
    assert (b_second.jitter, b_second.packet_loss, b_second.mos) == (30, 5, 31)


# --- the NG view ------------------------------------------------------------------------------------


def ng_stats(*, mos: int, rtt: int, leg: int, jitter: int, loss: int) -> dict[str, int]:
    return {
        "MOS": mos,
        "round-trip time": rtt,
        "round-trip time leg": leg,
        "jitter": jitter,
        "packet loss": loss,
    }


def test_ssrc_section_after_two_rounds() -> None:
    quality = call()
    assert quality.to_ng() == {}
    first_round(quality)
    assert list(quality.to_ng()) == [str(A)]  # B has a block, but without a MOS
    second_round(quality)
    reported_1, reported_2 = int(T0), int(T0 + 2)
    b_no_mos = ng_stats(mos=0, rtt=0, leg=62_500, jitter=20, loss=5)
    b_mos = ng_stats(mos=31, rtt=250_000, leg=62_500, jitter=30, loss=5)
    a_mos = ng_stats(mos=39, rtt=250_000, leg=187_500, jitter=10, loss=0)
    assert quality.to_ng() == {
        str(A): {
            "cumulative loss": 0,
            "average MOS": {**a_mos, "samples": 1},
            "lowest MOS": {**a_mos, "reported at": reported_1},
            "highest MOS": {**a_mos, "reported at": reported_1},
            "MOS progression": {"interval": 0, "entries": [{**a_mos, "reported at": reported_1}]},
        },
        str(B): {
            "cumulative loss": 7,
            # the MOS-0 block is out of the average and of the lowest, not out of the progression
            "average MOS": {**b_mos, "samples": 1},
            "lowest MOS": {**b_mos, "reported at": reported_2},
            "highest MOS": {**b_mos, "reported at": reported_2},
            "MOS progression": {
                "interval": 0,
                "entries": [{**b_no_mos, "reported at": reported_1}, {**b_mos, "reported at": reported_2}],
            },
        },
    }


def test_average_lowest_and_highest_skip_blocks_without_mos() -> None:
    quality = call()
    first_round(quality)  # B: one block, MOS 0
    second_round(quality)  # B: MOS 31, RTT 250 ms, jitter 30, loss 5
    # B again 2 s later: RTT 62.5 + 187.5 ms; jitter 80 -> 10 ms; no loss: MOS 39 (as A's first block)
    quality.rtcp(sr(A, 0x1238_0000), T0 + 4, RATES, "A")
    quality.rtcp(rr(B, block(A, lsr=0x1238_0000, dlsr=DLSR_62_5_MS, jitter=80)), T0 + 4.125, RATES, "B")
    entry = quality.entries[B]
    assert (len(entry.blocks), entry.no_mos_count, entry.mos_samples) == (3, 1, 2)
    assert entry.average() == {
        "MOS": (31 + 39) // 2,
        "round-trip time": 250_000,
        "round-trip time leg": 62_500,
        "jitter": (30 + 10) // 2,
        "packet loss": 5 // 2,  # integer division, as rtpengine
        "samples": 2,
    }
    ng = quality.to_ng()[str(B)]
    assert ng["lowest MOS"]["MOS"] == 31 and ng["lowest MOS"]["reported at"] == int(T0 + 2)
    assert ng["highest MOS"]["MOS"] == 39 and ng["highest MOS"]["reported at"] == int(T0 + 4)
    assert [e["MOS"] for e in ng["MOS progression"]["entries"]] == [0, 31, 39]


def test_entries_without_a_mos_block_are_not_listed() -> None:
    quality = call()
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=DLSR_62_5_MS)), T0 + 0.125, RATES, "B")
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=DLSR_62_5_MS)), T0 + 1.125, RATES, "B")
    assert len(quality.entries[B].blocks) == 2
    assert not quality.entries[B].listed()
    assert quality.to_ng() == {}


def test_cumulative_loss_is_shown_as_unsigned_24_bits() -> None:
    quality = call()
    first_round(quality)
    quality.rtcp(sr(B, MB2), T0 + 2, RATES, "B")
    quality.rtcp(rr(A, block(B, lsr=MB2, dlsr=DLSR_62_5_MS, cumulative=-1)), T0 + 2.125, RATES, "A")
    assert quality.to_ng()[str(A)]["cumulative loss"] == 0xFFFFFF
    assert latest(quality, A).cumulative_lost == -1


# --- rules that keep a block out ----------------------------------------------------------------------


def test_a_block_less_than_a_second_after_the_previous_is_dropped() -> None:
    quality = call()
    first_round(quality)  # A's block at T0 + 0.25
    quality.rtcp(sr(B, MB2), T0 + 0.5, RATES, "B")
    late = block(B, lsr=MB2, dlsr=DLSR_62_5_MS, fraction=128, cumulative=40, jitter=800)
    quality.rtcp(rr(A, late), T0 + 1.125, RATES, "A")  # 0.875 s after the kept one
    entry = quality.entries[A]
    assert len(entry.blocks) == 1
    # what rtpengine updates before the check, and Karl's own `latest`, still change
    assert entry.packets_lost == 40
    assert entry.latest is not None and entry.latest.fraction_lost == 0.5
    assert quality.to_ng()[str(A)]["cumulative loss"] == 40
    assert quality.to_ng()[str(A)]["average MOS"]["samples"] == 1
    # exactly one second after the last kept block is enough (the dropped one does not count)
    quality.rtcp(rr(A, block(B, lsr=MB2, dlsr=DLSR_62_5_MS)), T0 + 1.25, RATES, "A")
    assert [stats.reported for stats in entry.blocks] == [T0 + 0.25, T0 + 1.25]


def test_lsr_or_dlsr_zero_gives_no_block_but_latest_is_filled() -> None:
    quality = call()
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    quality.rtcp(rr(B, block(A, fraction=26, cumulative=9, jitter=400)), T0 + 0.5, RATES, "B")
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=0, fraction=26, cumulative=9)), T0 + 2, RATES, "B")
    quality.rtcp(rr(B, block(A, lsr=0, dlsr=DLSR_62_5_MS, fraction=26, cumulative=9)), T0 + 4, RATES, "B")
    entry = quality.entries[B]
    assert entry.blocks == [] and entry.packets_lost == 0
    assert entry.latest is not None
    assert (entry.latest.source, entry.latest.cumulative_lost, entry.latest.reported) == (A, 9, T0 + 4)
    assert entry.latest.fraction_lost == 26 / 256
    assert entry.latest.rtt_leg_seconds is None
    assert quality.to_ng() == {}


def test_unknown_payload_type_gives_no_block() -> None:
    quality = CallQuality()
    quality.rtp_source(A, 18, "A", T0)  # G.729, not among the reporter's payload types
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=DLSR_62_5_MS, jitter=160)), T0 + 0.125, RATES, "B")
    entry = quality.entries[B]
    assert entry.blocks == []
    assert entry.latest is not None
    assert entry.latest.jitter_seconds is None  # no clock rate to convert with
    assert entry.latest.rtt_leg_seconds == 0.0625  # the RTT still counts
    assert quality.entries[A].last_rtt == 62_500


def test_source_without_rtp_gives_no_block_but_its_rtt_is_measured() -> None:
    quality = CallQuality()
    quality.rtcp(sr(A, MA), T0, RATES, "A")  # A has sent an SR, never RTP
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=DLSR_62_5_MS)), T0 + 0.125, RATES, "B")
    assert quality.entries[A].payload_type is None
    assert quality.entries[B].blocks == []
    assert quality.entries[A].last_rtt == 62_500
    # and a block about an SSRC nobody has seen at all
    quality.rtcp(rr(B, block(0xDEAD, lsr=MA, dlsr=DLSR_62_5_MS, fraction=10)), T0 + 2, RATES, "B")
    assert 0xDEAD not in quality.entries
    assert quality.entries[B].blocks == []
    assert latest(quality, B).source == 0xDEAD
    assert latest(quality, B).rtt_leg_seconds is None


def test_payload_type_of_gives_the_current_payload_type() -> None:
    quality = CallQuality()
    quality.rtp_source(A, 18, "A", T0)  # first seen with an unknown payload type ...
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    current = {A: 96}  # ... and now sends PT 96 (48 kHz)
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=DLSR_62_5_MS, jitter=960)), T0 + 0.125, RATES, "B", current.get)
    (stats,) = quality.entries[B].blocks
    assert stats.jitter == 20  # 960 / 48000 s
    assert quality.entries[A].payload_type == 96
    # None ("not sending now") keeps the last known payload type
    quality.rtcp(
        rr(B, block(A, lsr=MA, dlsr=DLSR_62_5_MS, jitter=480)), T0 + 1.125, RATES, "B", lambda _: None
    )
    assert quality.entries[B].blocks[-1].jitter == 10


@pytest.mark.parametrize(
    ("rates", "jitter", "expected_ms", "expected_seconds"),
    [
        ({0: 8000}, 160, 20, 0.02),
        ({0: 16000}, 160, 10, 0.01),
        ({0: 8000}, 7, 0, 7 / 8000),  # truncated to whole milliseconds
        # rtpengine multiplies by 1000 in 32 bits: 5e9 wraps to 705032704, / 8000 = 88129 ms
        ({0: 8000}, 5_000_000, 88_129, 625.0),
        ({0: 0}, 123, 123, None),  # no clock rate: the raw value
    ],
)
def test_jitter_conversion(
    rates: dict[int, int], jitter: int, expected_ms: int, expected_seconds: float | None
) -> None:
    quality = call()
    quality.rtcp(sr(A, MA), T0, rates, "A")
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=DLSR_62_5_MS, jitter=jitter)), T0 + 0.125, rates, "B")
    (stats,) = quality.entries[B].blocks
    assert stats.jitter == expected_ms
    assert latest(quality, B).jitter_seconds == expected_seconds


@pytest.mark.parametrize(("fraction", "percent"), [(0, 0), (1, 0), (3, 1), (128, 50), (255, 99)])
def test_packet_loss_percent_is_truncated(fraction: int, percent: int) -> None:
    quality = call()
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    quality.rtcp(rr(B, block(A, lsr=MA, dlsr=DLSR_62_5_MS, fraction=fraction)), T0 + 0.125, RATES, "B")
    assert quality.entries[B].blocks[0].packet_loss == percent


def test_blocks_of_a_sender_report_count_for_its_sender() -> None:
    quality = call()
    quality.rtcp(sr(A, MA), T0, RATES, "A")
    quality.rtcp(sr(B, MB, (block(A, lsr=MA, dlsr=DLSR_62_5_MS, jitter=160),)), T0 + 0.125, RATES, "B")
    assert quality.entries[B].blocks[0].rtt_leg == 62_500
    assert quality.entries[B].sender_reports[-1] == (MB, T0 + 0.125)
    assert quality.reports == 2


def test_garbage_changes_nothing() -> None:
    quality = call()
    quality.rtcp(b"\x00\x01\x02", T0, RATES, "A")
    quality.rtcp(b"\x40\xc9\x00\x01\x00\x00\x00\x01", T0, RATES, "A")  # version 1
    assert quality.reports == 0
    assert set(quality.entries) == {A, B}


# --- progression -------------------------------------------------------------------------------------


def feed_mos_blocks(quality: CallQuality, times: list[float]) -> None:
    """After A's report about B, B reports at each of `times` with an RTT: its LSR matches no SR, so the
    end-to-end RTT is B's last RTT alone, 187.5 ms. With jitter 10 ms and no loss: d = 187 + 20 + 10 =
    217, R = 93.2 - 9.7 = 83.5, MOS 4.15 -> 41."""
    for now in times:
        quality.rtcp(rr(B, block(A, lsr=0xFFFF, dlsr=DLSR_62_5_MS, jitter=80)), now, RATES, "B")


def test_progression_aims_at_about_ten_entries() -> None:
    quality = call()
    first_round(quality)  # B's MOS-0 block at T0 + 0.125
    feed_mos_blocks(quality, [T0 + 1.125 + second for second in range(25)])  # up to T0 + 25.125
    progression = quality.to_ng()[str(B)]["MOS progression"]
    assert progression["interval"] == 2  # (25 - 0) // 10
    times = [entry["reported at"] for entry in progression["entries"]]
    assert times == [int(T0) + second for second in range(0, 26, 2)]
    assert progression["entries"][0]["MOS"] == 0 and progression["entries"][1]["MOS"] > 0


def test_progression_uses_whole_seconds() -> None:
    quality = call()
    quality.rtcp(sr(B, MB), T0, RATES, "B")
    quality.rtcp(rr(A, block(B, lsr=MB, dlsr=DLSR_62_5_MS)), T0 + 0.25, RATES, "A")  # B's last RTT
    # 9.125 s from the first block to the last, but 10 whole seconds (T0 to T0 + 10): interval 1
    feed_mos_blocks(quality, [T0 + 0.875 + second for second in range(9)] + [T0 + 10])
    progression = quality.to_ng()[str(B)]["MOS progression"]
    assert progression["interval"] == 1
    times = [entry["reported at"] for entry in progression["entries"]]
    assert times == [int(T0) + second for second in (*range(9), 10)]


def test_average_survives_a_long_call() -> None:
    """rtpengine averages over every block of the call (its list of blocks is unbounded). Karl thins
    its list beyond MAX_BLOCKS, but the average and the sample count must still cover all blocks."""
    quality = call()
    first_round(quality)  # B: one MOS-0 block
    count = MAX_BLOCKS + 100
    feed_mos_blocks(quality, [T0 + 1.125 + second for second in range(count)])
    per_block = quality.entries[B].blocks[-1].mos
    assert per_block == 41
    average = quality.to_ng()[str(B)]["average MOS"]
    assert average["samples"] == count
    assert average["MOS"] == per_block
    assert average["round-trip time"] == 187_500


# --- entries ---------------------------------------------------------------------------------------


def test_least_recently_used_entry_makes_room() -> None:
    quality = CallQuality()
    ssrcs = list(range(1000, 1000 + MAX_ENTRIES))
    for index, ssrc in enumerate(ssrcs):
        quality.rtp_source(ssrc, 0, None, T0 + index)
    # a report about the oldest one uses it
    quality.rtcp(rr(ssrcs[2], block(ssrcs[0], fraction=1)), T0 + 100, RATES, "B")
    assert len(quality.entries) == MAX_ENTRIES
    quality.rtp_source(77, 0, "A", T0 + 101)
    assert len(quality.entries) == MAX_ENTRIES
    assert ssrcs[1] not in quality.entries  # the least recently used
    assert {ssrcs[0], ssrcs[2], 77} <= set(quality.entries)
    quality.rtcp(sr(78, MA), T0 + 102, RATES, "A")  # an SR sender needs an entry too
    assert ssrcs[3] not in quality.entries and 78 in quality.entries
    assert len(quality.entries) == MAX_ENTRIES


def test_parties_are_remembered() -> None:
    quality = CallQuality()
    quality.rtp_source(A, 0, "alice", T0)
    quality.rtp_source(A, 8, None, T0 + 1)  # a new payload type, party not known at that moment
    quality.rtcp(sr(0xC, MA), T0, RATES, "carol")
    quality.rtcp(rr(0xD, block(A)), T0, RATES, "dave")
    assert quality.entries[A].party == "alice" and quality.entries[A].payload_type == 8
    assert quality.entries[0xC].party == "carol"
    assert quality.entries[0xD].party == "dave"


def test_summary_for_the_rest_api_and_cdrs() -> None:
    quality = call()
    first_round(quality)
    second_round(quality)
    quality.rtcp(rr(0xEEEE, block(B, fraction=64, cumulative=2)), T0 + 3, RATES, "B")
    summary = quality.summary()
    assert summary["reports"] == 7
    by_ssrc = {source["ssrc"]: source for source in summary["sources"]}
    assert set(by_ssrc) == {A, B, 0xEEEE}
    assert by_ssrc[B] == {
        "ssrc": B,
        "party": "B",
        "about_ssrc": A,
        "mos": 3.1,
        "mos_min": 3.1,
        "mos_max": 3.1,
        "mos_samples": 1,
        "packet_loss_ratio": 13 / 256,
        "cumulative_lost": 7,
        "jitter_seconds": 0.03,
        "rtt_leg_seconds": 0.0625,
        "rtt_seconds": 0.25,
    }
    unlisted = by_ssrc[0xEEEE]
    assert (unlisted["mos"], unlisted["mos_min"], unlisted["mos_max"], unlisted["mos_samples"]) == (
        None,
        None,
        None,
        0,
    )
    assert (unlisted["packet_loss_ratio"], unlisted["cumulative_lost"]) == (0.25, 2)
    assert unlisted["jitter_seconds"] == 0.0  # B sends PT 8 (8 kHz), jitter 0
    assert unlisted["rtt_seconds"] is None


# --- node-wide totals --------------------------------------------------------------------------------


def test_totals_observe_every_evaluated_block() -> None:
    totals = QualityTotals()
    assert totals.reports == {"sender": 0, "receiver": 0, "xr": 0}
    quality = call(totals)
    first_round(quality)  # 2 SRs, 2 RRs: legs 62.5 and 187.5 ms, one MOS (3.9)
    quality.rtcp(rr(B, block(A, fraction=128)), T0 + 0.5, RATES, "B")  # no LSR: loss and jitter (0)
    quality.rtcp(rr(B, block(0xDEAD, fraction=255)), T0 + 0.5, RATES, "B")  # unknown source: not counted
    assert totals.reports == {"sender": 2, "receiver": 4, "xr": 0}
    assert totals.loss.count == 3
    assert totals.loss.counts[0] == 1  # A's 0.0
    assert totals.loss.counts[6] == 1  # B's first block, 13/256 = 0.051 in (0.05, 0.1]
    assert totals.loss.counts[8] == 1  # 0.5
    assert totals.loss.counts[9] == 0  # 255/256 about an SSRC the call never saw
    assert totals.jitter.count == 3  # not for the unknown source
    assert totals.jitter.counts[0] == 1  # 0 s
    assert totals.jitter.counts[2] == 1  # 10 ms
    assert totals.jitter.counts[3] == 1  # 20 ms
    assert totals.rtt.count == 2
    assert totals.rtt.counts[3] == 1  # 62.5 ms in (0.05, 0.1]
    assert totals.rtt.counts[5] == 1  # 187.5 ms in (0.15, 0.2]
    assert totals.rtt.total == pytest.approx(0.25)
    assert totals.mos.count == 1 and totals.mos.total == pytest.approx(3.9)
    assert totals.mos.counts[6] == 1  # 3.9 in (3.8, 4.0]


def test_totals_count_mos_of_blocks_dropped_by_the_one_second_rule() -> None:
    """rtpengine adds the MOS to its global statistics before the one-second check; so does Karl."""
    totals = QualityTotals()
    quality = call(totals)
    first_round(quality)
    quality.rtcp(sr(B, MB2), T0 + 0.5, RATES, "B")
    quality.rtcp(rr(A, block(B, lsr=MB2, dlsr=DLSR_62_5_MS, jitter=80)), T0 + 0.75, RATES, "A")
    assert len(quality.entries[A].blocks) == 1
    assert totals.mos.count == 2


def test_an_xr_reference_time_echoed_in_a_dlrr_gives_the_round_trip_of_a_leg() -> None:
    """A sends no SR but an XR receiver reference time; B's DLRR echoes it: B's leg round trip is kept
    on A's entry, so A's next report (about B's SR) has both legs and a MOS."""
    totals = QualityTotals()
    quality = CallQuality(totals)
    quality.rtp_source(A, 0, "A", T0)
    quality.rtp_source(B, 0, "B", T0)
    quality.rtcp(build_xr(A, [xr_receiver_reference_time(0xE900_0000 | MA >> 16, 0)]), T0, RATES, "A")
    quality.rtcp(sr(B, MB), T0, RATES, "B")
    quality.rtcp(build_xr(B, [xr_dlrr((A, MA, DLSR_62_5_MS))]), T0 + 0.125, RATES, "B")
    assert quality.entries[A].last_rtt == 62_500
    quality.rtcp(rr(A, block(B, lsr=MB, dlsr=DLSR_62_5_MS)), T0 + 0.25, RATES, "A")
    entry = quality.entries[A]
    assert entry.blocks[-1].rtt_leg == 187_500 and entry.blocks[-1].rtt == 250_000
    assert entry.blocks[-1].mos == mos_x10(250_000, 0, 0) > 0
    assert totals.reports == {"sender": 1, "receiver": 1, "xr": 2}
    # a DLRR that echoes nothing Karl saw changes nothing
    quality.rtcp(build_xr(B, [xr_dlrr((A, 0x1111_2222, DLSR_62_5_MS))]), T0 + 0.3, RATES, "B")
    assert quality.entries[A].last_rtt == 62_500


def test_xr_voip_metrics_replace_the_round_trip_of_the_sending_partys_own_reports() -> None:
    quality = CallQuality()
    quality.rtp_source(B, 0, "B", T0)
    quality.rtcp(sr(B, MB), T0, RATES, "B")
    # about A, sent by B: kept under (B, A), so A's reports do not use it
    quality.rtcp(build_xr(B, [xr_voip_metrics(A, 300)]), T0, RATES, "B")
    quality.rtcp(rr(A, block(B, lsr=MB, dlsr=DLSR_62_5_MS)), T0 + 0.125, RATES, "A")
    assert quality.entries[A].blocks[-1].rtt == 0
    # about itself, sent by A: A's next report takes 300 ms as its end-to-end round trip
    quality.rtcp(build_xr(A, [xr_voip_metrics(A, 300)]), T0 + 1.2, RATES, "A")
    quality.rtcp(sr(B, MB2), T0 + 1.2, RATES, "B")
    quality.rtcp(rr(A, block(B, lsr=MB2, dlsr=DLSR_62_5_MS)), T0 + 1.325, RATES, "A")
    assert quality.entries[A].blocks[-1].rtt == 300_000
    assert quality.entries[A].blocks[-1].rtt_leg == 62_500


def test_the_statistics_survive_a_restore_and_carry_on() -> None:
    """Kept in the call state (JSON), read back elsewhere: the same SSRC section and summary, and the
    next reports continue the same averages and progression."""
    quality = call()
    first_round(quality)
    document = json.loads(json.dumps(quality.to_dict()))
    restored = CallQuality.from_dict(document)
    assert restored.to_ng() == quality.to_ng()
    assert restored.summary() == quality.summary()
    second_round(quality)
    second_round(restored)
    assert restored.to_ng() == quality.to_ng() and restored.summary() == quality.summary()
