"""The sans-IO jitter buffer: explicit arrival times in, packets out at first arrival + RTP time elapsed +
delay, in sequence order, and nothing ever lost (late, duplicated or overflowing packets go out at once)."""

from __future__ import annotations

import itertools
import math
import struct
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karl_medianode.rtp.jitter_buffer import DELAY_STEP_DOWN, JitterBuffer

T0 = 1000.0  # an arbitrary clock origin (the stage uses the loop's monotonic clock)
FRAME = 0.02  # 20 ms of G.711 at 8 kHz
TICKS = 160


def rtp(seq: int, ts: int, ssrc: int = 0x1234, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + bytes([seq & 0xFF]) * 8


def frame(n: int, *, seq0: int = 0, ts0: int = 0, ssrc: int = 0x1234, ticks: int = TICKS) -> bytes:
    """The n-th packet of a stream: sequence seq0 + n, timestamp ts0 + n * ticks."""
    return rtp(seq0 + n, ts0 + n * ticks, ssrc)


def seq_of(packet: bytes) -> int:
    return packet[2] << 8 | packet[3]


def popped(buffer: JitterBuffer, now: float) -> list[bytes]:
    return [packet for packet, _waited in buffer.pop_due(now)]


EPS = 1e-6  # "at" a playout time computed in another order of float additions


def play(buffer: JitterBuffer, arrivals: list[tuple[float, bytes]]) -> list[tuple[float, bytes, bool]]:
    """Drive the buffer like a perfect timer would: (time, packet, sent at once) for everything that left."""
    out: list[tuple[float, bytes, bool]] = []

    def release_until(limit: float) -> None:
        while (due := buffer.next_due()) is not None and due <= limit:
            out.extend((due, packet, False) for packet, _ in buffer.pop_due(due))

    for now, packet in arrivals:
        release_until(now)
        out.extend((now, sent, True) for sent in buffer.push(packet, now))
    release_until(math.inf)
    return out


def test_in_order_stream_leaves_at_anchor_plus_rtp_time_plus_delay() -> None:
    jb = JitterBuffer(0.06, 0.2, adaptive=False)
    # arrivals wobble around the 20 ms grid; playout follows the grid, not the wobble. The anchor is
    # the first arrival, moved back by at most 1 ms per packet that comes earlier than it predicts
    # (here packet 2, 3 ms early: 1 ms back)
    wobble = [0.0, 0.004, -0.003, 0.011, 0.0, 0.007]
    for n, w in enumerate(wobble):
        assert jb.push(frame(n), T0 + n * FRAME + w) == []
    assert len(jb) == 6
    anchors = [T0, T0, T0 - 0.001, T0 - 0.001, T0 - 0.001, T0 - 0.001]
    for n in range(6):
        playout = anchors[n] + n * FRAME + 0.06
        assert jb.next_due() == pytest.approx(playout)
        assert popped(jb, playout - 1e-6) == [], f"packet {n} left before its playout time"
        out = jb.pop_due(playout + EPS)
        assert [p for p, _ in out] == [frame(n)]
        arrival = T0 + n * FRAME + wobble[n]
        assert out[0][1] == pytest.approx(playout + EPS - arrival, abs=1e-5), "waited = release - arrival"
    assert jb.next_due() is None and len(jb) == 0
    assert jb.stats.buffered == 6 and jb.stats.immediate == 0 and jb.stats.resyncs == 0


def test_pop_due_releases_everything_due_at_once_in_sequence_order() -> None:
    jb = JitterBuffer(0.05, 0.2, adaptive=False)
    for n in range(5):
        jb.push(frame(n), T0 + n * FRAME)
    assert popped(jb, T0 + 10.0) == [frame(n) for n in range(5)]


def test_reordered_arrivals_leave_in_sequence_order_on_the_timestamp_grid() -> None:
    jb = JitterBuffer(0.06, 0.2, adaptive=False)
    order = [0, 2, 1, 4, 3, 5]
    for k, n in enumerate(order):
        assert jb.push(frame(n), T0 + k * FRAME) == []
    released: list[tuple[float, bytes]] = []
    for step in range(40):
        now = T0 + step * 0.005
        released += [(now, p) for p in popped(jb, now)]
    assert [p for _, p in released] == [frame(n) for n in range(6)]
    for n, (when, _) in enumerate(released):
        assert when == pytest.approx(T0 + n * FRAME + 0.06, abs=0.0051)
    assert jb.stats.immediate == 0


def test_a_lost_packet_does_not_stall_the_ones_after_it() -> None:
    jb = JitterBuffer(0.06, 0.2, adaptive=False)
    for n in (0, 1, 3, 4):  # 2 is lost
        jb.push(frame(n), T0 + n * FRAME)
    assert popped(jb, T0 + FRAME + 0.06 + EPS) == [frame(0), frame(1)]
    assert popped(jb, T0 + 3 * FRAME + 0.06 - EPS) == []
    assert popped(jb, T0 + 3 * FRAME + 0.06 + EPS) == [frame(3)], (
        "3 leaves at its own time, not waiting for 2"
    )
    # 2 shows up after 3 left: it goes out at once (it can no longer be in order) and is counted
    assert jb.push(frame(2), T0 + 3 * FRAME + 0.07) == [frame(2)]
    assert jb.stats.immediate == 1
    assert popped(jb, T0 + 4 * FRAME + 0.06 + EPS) == [frame(4)]
    assert jb.stats.buffered == 4


def test_late_and_duplicate_packets_go_out_at_once_and_are_counted() -> None:
    jb = JitterBuffer(0.04, 0.2, adaptive=False)
    jb.push(frame(0), T0)
    jb.push(frame(1), T0 + FRAME)
    assert jb.push(frame(1), T0 + FRAME + 0.001) == [frame(1)], "duplicate of a waiting packet"
    assert popped(jb, T0 + 0.04) == [frame(0)]
    assert jb.push(frame(0), T0 + 0.045) == [frame(0)], "duplicate of a released packet"
    assert popped(jb, T0 + FRAME + 0.04 + EPS) == [frame(1)]
    assert jb.stats.immediate == 2
    assert jb.stats.buffered == 2
    assert len(jb) == 0, "a duplicate is never buffered a second time"


def test_sequence_number_wrap_keeps_order_across_65535_to_0() -> None:
    jb = JitterBuffer(0.06, 0.2, adaptive=False)
    seq0 = 65533
    order = [0, 1, 3, 2, 4, 5]  # 65533, 65534, 0, 65535, 1, 2: reordered across the wrap
    for k, n in enumerate(order):
        assert jb.push(frame(n, seq0=seq0), T0 + k * FRAME) == []
    out = popped(jb, T0 + 1.0)
    assert [seq_of(p) for p in out] == [65533, 65534, 65535, 0, 1, 2]
    assert jb.stats.immediate == 0
    # the old 65535 after the wrap is recognised as late, not as a packet 65535 ahead
    assert jb.push(frame(2, seq0=seq0), T0 + 1.01) == [frame(2, seq0=seq0)]
    assert jb.stats.immediate == 1


def test_timestamp_wrap_keeps_the_schedule() -> None:
    jb = JitterBuffer(0.05, 0.2, adaptive=False)
    ts0 = (1 << 32) - 2 * TICKS  # the third packet's timestamp wraps to 0
    for n in range(5):
        jb.push(frame(n, ts0=ts0), T0 + n * FRAME)
    for n in range(5):
        assert jb.next_due() == pytest.approx(T0 + n * FRAME + 0.05)
        assert popped(jb, T0 + n * FRAME + 0.05 + EPS) == [frame(n, ts0=ts0)]
    assert jb.stats.resyncs == 0 and jb.stats.immediate == 0


def test_new_ssrc_flushes_the_old_stream_in_order_and_starts_a_new_schedule() -> None:
    jb = JitterBuffer(0.06, 0.2, adaptive=False)
    for k, n in enumerate([0, 2, 1]):
        jb.push(frame(n, ssrc=1), T0 + k * FRAME)
    now = T0 + 3 * FRAME
    new = rtp(9000, 123456, ssrc=2)
    assert jb.push(new, now) == [frame(0, ssrc=1), frame(1, ssrc=1), frame(2, ssrc=1)]
    assert jb.stats.resyncs == 1
    assert len(jb) == 1 and jb.next_due() == pytest.approx(now + 0.06), "anchored on the new SSRC"
    # the new SSRC has its own sequence space: a low number is not "late"
    low = rtp(9001, 123456 + TICKS, ssrc=2)
    assert jb.push(low, now + FRAME) == []
    assert popped(jb, now + FRAME + 0.06 + EPS) == [new, low]
    # an old-SSRC packet coming back is another change, not a duplicate
    back = frame(3, ssrc=1)
    assert jb.push(back, now + 0.2) == []
    assert jb.stats.resyncs == 1, "nothing was waiting, so nothing was flushed"


def test_packet_behind_its_playout_time_reanchors_the_schedule() -> None:
    jb = JitterBuffer(0.04, 0.2, adaptive=False)
    for n in range(3):
        jb.push(frame(n), T0 + n * FRAME)
    assert popped(jb, T0 + 2 * FRAME + 0.04 + EPS) == [frame(0), frame(1), frame(2)]
    # packet 3 was due at T0 + 0.06 + 0.04; it arrives 0.15 s late
    late_arrival = T0 + 3 * FRAME + 0.15
    assert jb.push(frame(3), late_arrival) == []
    assert jb.stats.resyncs == 1
    assert jb.next_due() == pytest.approx(late_arrival + 0.04), "waits the delay from now"
    assert popped(jb, late_arrival + 0.04) == [frame(3)]
    # the following packets are scheduled from the new anchor
    jb.push(frame(4), late_arrival + 0.005)
    assert jb.next_due() == pytest.approx(late_arrival + FRAME + 0.04)
    assert jb.stats.immediate == 0


def test_packet_that_would_wait_beyond_max_delay_re_anchors_the_schedule() -> None:
    jb = JitterBuffer(0.05, 0.1, adaptive=False)
    jb.push(frame(0), T0)
    # 10 frames ahead of its time: it would wait 0.2 + 0.05 s; the schedule starts again at it
    ahead = frame(10)
    assert jb.push(ahead, T0 + 0.001) == []
    assert jb.stats.immediate == 0 and jb.stats.resyncs == 1
    assert popped(jb, T0 + 0.051) == [frame(0), ahead]
    # just inside the limit it still waits
    jb2 = JitterBuffer(0.05, 0.1, adaptive=False)
    jb2.push(frame(0), T0)
    assert jb2.push(rtp(1, 392), T0) == [], "waits 49 ms + 50 ms, under max_delay"
    assert len(jb2) == 2


def test_capacity_bounds_what_waits() -> None:
    jb = JitterBuffer(0.1, 0.3, adaptive=False, capacity=3)
    for n in range(3):
        assert jb.push(frame(n), T0) == []
    assert jb.push(frame(3), T0) == [frame(3)], "a fourth packet does not fit"
    assert len(jb) == 3 and jb.stats.immediate == 1
    assert popped(jb, T0 + 1.0) == [frame(0), frame(1), frame(2)]
    assert jb.push(frame(4), T0 + 1.0) == [], "room again once packets left"


def rfc3550_jitter(arrivals: list[float], rate: int = 8000, ticks: int = TICKS) -> float:
    jitter, last = 0.0, None
    for n, arrival in enumerate(arrivals):
        transit = arrival - n * ticks / rate
        if last is not None:
            jitter += (abs(transit - last) - jitter) / 16
        last = transit
    return jitter


WOBBLY = [T0 + n * FRAME + (0.03 if n % 2 else 0.0) for n in range(20)]
"""Every other packet 30 ms late: RFC 3550 jitter heads for 30 ms; never behind a 50 ms schedule."""


def test_adaptive_delay_follows_three_times_the_rfc3550_jitter_within_bounds() -> None:
    jb = JitterBuffer(0.05, 0.2)
    for n, arrival in enumerate(WOBBLY):
        jb.push(frame(n), arrival)
    expected = rfc3550_jitter(WOBBLY)
    assert jb.jitter == pytest.approx(expected)
    assert 3 * expected > 0.05
    assert jb.delay == pytest.approx(3 * expected), "grown above min_delay"
    assert jb.stats.resyncs == 0 and jb.stats.immediate == 0
    # bounded by max_delay however large the jitter gets
    capped = JitterBuffer(0.05, 0.06)
    play(capped, [(arrival, frame(n)) for n, arrival in enumerate(WOBBLY)])
    assert capped.delay == pytest.approx(0.06)


def test_adaptive_delay_grows_at_once_and_shrinks_by_at_most_a_millisecond_per_packet() -> None:
    jb = JitterBuffer(0.05, 0.2)
    delays: list[float] = []
    for n, arrival in enumerate(WOBBLY):
        jb.push(frame(n), arrival)
        popped(jb, arrival)
        delays.append(jb.delay)
        if 3 * jb.jitter > 0.05:
            assert jb.delay == pytest.approx(3 * jb.jitter), "the delay follows rising jitter at once"
    assert max(b - a for a, b in itertools.pairwise(delays)) > DELAY_STEP_DOWN
    # back on a perfectly paced grid: the delay creeps down, never by more than 1 ms a packet
    calm = [jb.delay]
    for n in range(20, 200):
        jb.push(frame(n), T0 + n * FRAME)
        popped(jb, T0 + n * FRAME)
        calm.append(jb.delay)
    steps = [before - after for before, after in itertools.pairwise(calm)]
    assert all(step <= DELAY_STEP_DOWN + 1e-12 for step in steps), steps
    assert max(steps) == pytest.approx(DELAY_STEP_DOWN), "it does shrink, in 1 ms steps"
    assert calm[-1] == pytest.approx(0.05), "back down to min_delay"
    assert jb.stats.immediate == 0 and jb.stats.resyncs == 0


def test_playout_stays_in_order_and_paced_while_the_delay_grows_and_shrinks() -> None:
    arrivals = [(t, frame(n)) for n, t in enumerate(WOBBLY)]
    arrivals += [(T0 + n * FRAME, frame(n)) for n in range(20, 150)]
    out = play(JitterBuffer(0.05, 0.2), arrivals)
    assert [sent_at_once for _, _, sent_at_once in out] == [False] * 150
    assert [packet for _, packet, _ in out] == [frame(n) for n in range(150)]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(out)]
    assert min(gaps) >= FRAME - DELAY_STEP_DOWN - 1e-9, "a shrinking delay never bunches packets up"


def test_non_adaptive_buffer_keeps_min_delay_but_still_measures_jitter() -> None:
    jb = JitterBuffer(0.03, 0.3, adaptive=False)
    for n in range(20):
        jb.push(frame(n), T0 + n * FRAME + (0.02 if n % 2 else 0.0))
        popped(jb, T0 + n * FRAME)
    assert jb.delay == 0.03
    assert jb.jitter > 0.01


def test_clock_rate_of_the_payload_sets_the_pace() -> None:
    opus = 960  # 20 ms at 48 kHz
    jb = JitterBuffer(0.04, 0.2, adaptive=False, clock_rate=48000)
    for n in range(3):
        jb.push(frame(n, ticks=opus), T0)  # a burst: spread out by the timestamps
    assert [popped(jb, T0 + 0.04 + n * FRAME + EPS) for n in range(3)] == [
        [frame(n, ticks=opus)] for n in range(3)
    ]
    # the push argument wins for a new SSRC (the stage passes the payload type's rate)
    jb = JitterBuffer(0.04, 0.2, adaptive=False)
    jb.push(frame(0, ticks=opus), T0, 48000)
    jb.push(frame(1, ticks=opus), T0, 48000)
    assert jb.clock_rate == 48000
    assert popped(jb, T0 + 0.04) == [frame(0, ticks=opus)]
    assert jb.next_due() == pytest.approx(T0 + 0.06), "960 ticks are 20 ms at 48 kHz, not 120 ms at 8 kHz"
    # without the argument, the default rate stays
    jb = JitterBuffer(0.04, 0.2, adaptive=False)
    jb.push(frame(0, ticks=opus), T0)
    jb.push(frame(1, ticks=opus), T0)
    assert jb.next_due() == pytest.approx(T0 + 0.04)
    popped(jb, T0 + 0.04)
    assert jb.next_due() == pytest.approx(T0 + 0.12 + 0.04)


@pytest.mark.parametrize(("low", "high"), [(0.1, 0.05), (-0.01, 0.1), (-0.2, -0.1)])
def test_constructor_rejects_impossible_delays(low: float, high: float) -> None:
    with pytest.raises(ValueError, match="min_delay"):
        JitterBuffer(low, high)


def test_constructor_accepts_equal_and_zero_delays() -> None:
    assert JitterBuffer(0.05, 0.05).delay == 0.05
    zero = JitterBuffer(0.0, 0.0, adaptive=False)
    assert zero.push(frame(0), T0) == []
    assert popped(zero, T0) == [frame(0)], "zero delay: due the moment it arrives"


def test_flush_hands_back_everything_in_order_and_later_copies_are_late() -> None:
    jb = JitterBuffer(0.1, 0.3, adaptive=False)
    for n in (2, 0, 1):
        jb.push(frame(n), T0)
    assert jb.flush() == [frame(0), frame(1), frame(2)]
    assert jb.next_due() is None and len(jb) == 0
    assert jb.push(frame(1), T0 + 0.01) == [frame(1)]
    assert jb.push(frame(3), T0 + 0.01) == []


# ---------------------------------------------------------------- found while testing (fixed)


def test_reanchoring_does_not_inflate_the_jitter_estimate() -> None:
    jb = JitterBuffer(0.02, 0.2)
    for n in range(500):  # 10 s of a perfectly paced stream
        jb.push(frame(n), T0 + n * FRAME)
        popped(jb, T0 + n * FRAME)
    late = T0 + 500 * FRAME + 0.15  # one packet 150 ms late: behind schedule, re-anchors
    jb.push(frame(500), late)
    assert jb.stats.resyncs == 1
    for k in range(1, 6):  # then perfect pacing again
        jb.push(frame(500 + k), late + k * FRAME)
        popped(jb, late + k * FRAME)
    # one 150 ms excursion is at most ~2 * 150/16 ms of jitter
    assert jb.jitter < 0.03, jb.jitter
    assert jb.delay < 0.1, jb.delay


def test_timestamp_jump_forward_does_not_switch_buffering_off_for_good() -> None:
    jb = JitterBuffer(0.02, 0.2, adaptive=False)
    for n in range(10):
        jb.push(frame(n), T0 + n * FRAME)
        popped(jb, T0 + n * FRAME)
    jump = 10 * 8000  # 10 s ahead in RTP time, sequence numbers go on
    immediate = 0
    for n in range(10, 60):
        immediate += len(jb.push(rtp(n, jump + n * TICKS), T0 + n * FRAME))
        popped(jb, T0 + n * FRAME)
    assert immediate <= 1, f"{immediate} of 50 packets bypassed the buffer after the jump"


def test_a_dtmf_event_does_not_switch_buffering_off_for_good() -> None:
    jb = JitterBuffer(0.02, 0.2, adaptive=False)
    now, seq, ts = T0, 0, 0
    for _ in range(50):  # a second of audio
        jb.push(rtp(seq, ts), now)
        popped(jb, now)
        now, seq, ts = now + FRAME, seq + 1, ts + TICKS
    event_ts = ts
    for _ in range(15):  # a 300 ms key press: updates every 20 ms, all stamped with the event's start
        jb.push(rtp(seq, event_ts, pt=101), now)
        popped(jb, now)
        now, seq = now + FRAME, seq + 1
    ts = event_ts + 15 * TICKS
    immediate = 0
    for _ in range(100):  # audio goes on
        immediate += len(jb.push(rtp(seq, ts), now))
        popped(jb, now)
        now, seq, ts = now + FRAME, seq + 1, ts + TICKS
    assert immediate <= 1, f"{immediate} of 100 audio packets bypassed the buffer after one key press"


def test_reordering_across_the_wrap_at_stream_start_is_buffered_like_any_other() -> None:
    jb = JitterBuffer(0.05, 0.2, adaptive=False)
    assert jb.push(rtp(0, 2 * TICKS), T0) == []
    assert jb.push(rtp(65535, TICKS), T0 + 0.001) == [], "nothing was released yet: it can still wait"
    assert popped(jb, T0 + 1.0) == [rtp(65535, TICKS), rtp(0, 2 * TICKS)]


# ---------------------------------------------------------------- property


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[JitterBuffer, int, list[tuple[float, bytes]], list[float]]:
    count = draw(st.integers(1, 40))
    seq0 = draw(st.integers(0, 0xFFFF))
    ts0 = draw(st.integers(0, 0xFFFFFFFF))
    # which frames exist (losses), and with which copies (duplicates)
    present = draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=60))
    arrivals = [
        (T0 + n * FRAME + draw(st.floats(-0.05, 0.25, allow_nan=False)), frame(n, seq0=seq0, ts0=ts0))
        for n in present
    ]
    arrivals.sort(key=lambda item: item[0])
    end = arrivals[-1][0] + 0.5  # polls may stop before everything is due: the flush takes the rest
    polls = sorted(draw(st.lists(st.floats(T0 - 0.1, end, allow_nan=False), max_size=30)))
    min_delay = draw(st.sampled_from([0.0, 0.02, 0.06, 0.1]))
    max_delay = min_delay + draw(st.sampled_from([0.0, 0.04, 0.2]))
    buffer = JitterBuffer(
        min_delay,
        max_delay,
        adaptive=draw(st.booleans()),
        clock_rate=8000,
        capacity=draw(st.sampled_from([1, 4, 256])),
    )
    return buffer, seq0, arrivals, polls


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_packet_leaves_exactly_once_and_paced_ones_in_sequence_order(
    scenario: tuple[JitterBuffer, int, list[tuple[float, bytes]], list[float]],
) -> None:
    jb, seq0, arrivals, polls = scenario
    sent: list[bytes] = []
    paced: list[bytes] = []
    events = sorted([(t, 0, p) for t, p in arrivals] + [(t, 1, b"") for t in polls], key=lambda e: e[:2])
    for now, kind, packet in events:
        if kind == 0:
            sent += jb.push(packet, now)
        else:
            due = jb.pop_due(now)
            assert all(waited >= -1e-9 for _, waited in due)
            paced += [p for p, _ in due]
            next_due = jb.next_due()
            assert next_due is None or next_due > now
    rest = jb.flush()  # the stream closes, or a new SSRC starts
    assert jb.next_due() is None and len(jb) == 0
    out = Counter(sent + paced + rest)
    assert out == Counter(p for _, p in arrivals), "each packet (and each copy of it) leaves exactly once"
    order = [(seq_of(p) - seq0) & 0xFFFF for p in paced + rest]
    assert order == sorted(order) and len(set(order)) == len(order), order
    assert jb.stats.buffered == len(paced)
    assert jb.stats.immediate == len(sent)


# ---------------------------------------------------------------- latency is given back


def _waits(jb: JitterBuffer, arrivals: list[tuple[float, bytes]]) -> list[float]:
    """Push in arrival order, releasing whatever is due in between (a perfect timer)."""
    waits: list[float] = []
    for now, packet in arrivals:
        while (due := jb.next_due()) is not None and due <= now:
            waits += [waited for _, waited in jb.pop_due(due)]
        jb.push(packet, now)
    while (due := jb.next_due()) is not None:
        waits += [waited for _, waited in jb.pop_due(due)]
    return waits


def test_a_stall_of_the_path_adds_latency_only_for_a_while() -> None:
    jb = JitterBuffer(0.02, 0.2, adaptive=False)
    arrivals = []
    for n in range(500):
        at = T0 + n * FRAME
        if 100 <= n < 108:  # a 150 ms stall: packets 100..107 arrive in one burst, re-anchoring
            at = T0 + 100 * FRAME + 0.15
        arrivals.append((at, rtp(n, n * TICKS)))
    arrivals.sort(key=lambda arrival: arrival[0])
    waits = _waits(jb, arrivals)
    assert max(waits[110:120]) > 0.1, "right after the stall the schedule is late"
    assert max(waits[-100:]) < 0.021, "a 1 ms step back per packet gives the 150 ms back in 3 s"


def test_a_dtmf_event_does_not_add_its_length_to_later_packets() -> None:
    jb = JitterBuffer(0.02, 0.2, adaptive=False)
    arrivals, seq = [], 0
    for n in range(50):
        arrivals.append((T0 + n * FRAME, rtp(seq, n * TICKS)))
        seq += 1
    for k in range(7):  # a 120 ms RFC 4733 event: every update carries the start timestamp
        arrivals.append((T0 + (50 + k) * FRAME, rtp(seq, 50 * TICKS, pt=101)))
        seq += 1
    for n in range(57, 400):
        arrivals.append((T0 + n * FRAME, rtp(seq, n * TICKS)))
        seq += 1
    waits = _waits(jb, arrivals)
    assert max(waits[-300:]) < 0.021 and jb.stats.resyncs == 0
