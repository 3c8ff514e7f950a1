"""The jitter buffer in a real Karl node (`python -m karl_medianode`) over real UDP on loopback: with
`KARL_JITTER_BUFFER_ENABLED=true` a jittery, reordered RTP stream comes out complete, in order, evenly
paced and delayed; RTCP is not delayed; `block media` stops buffered RTP too; a node without the option
forwards at once; and /metrics counts what waited.

Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the test process's own scheduling
does not blur what the node did; send times are taken right after `sendto` on the same clock. Those tests
run on the wall clock of a machine that may be busy (CI has 2 cores and runs the node, the test and more):
their timing checks are lower bounds (a packet cannot leave before its playout time, however loaded the
machine) and upper bounds with room for scheduling delays. The exact pacing is checked on a fake clock:
the stage (`JitterStage`) driven by a fake event loop, at the end of this file.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import socket
import statistics
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from karl_medianode.dataplane.jitter_stage import JitterStage
from karl_medianode.dataplane.relay import PacketStream
from karl_medianode.rtp.jitter_buffer import ANCHOR_STEP_BACK, JitterBuffer
from karl_testkit import NgServer, Party, free_port, sdp, wait_for

pytestmark = pytest.mark.timeout(60)

FRAME = 0.02  # 20 ms of PCMU
SO_TIMESTAMPNS = 35  # Linux; Python's socket module does not export it


def jitter_env(min_ms: int, max_ms: int, adaptive: bool, **extra: str) -> dict[str, str]:
    return {
        "KARL_JITTER_BUFFER_ENABLED": "true",
        "KARL_JITTER_BUFFER_MIN_DELAY": str(min_ms),
        "KARL_JITTER_BUFFER_MAX_DELAY": str(max_ms),
        "KARL_JITTER_BUFFER_ADAPTIVE": "true" if adaptive else "false",
        **extra,
    }


def rtp(seq: int, ssrc: int = 0x4A17) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, ssrc) + bytes([seq & 0xFF]) * 160


def seq_of(packet: bytes) -> int:
    return packet[2] << 8 | packet[3]


def sender_report(ssrc: int = 0x4A17, marker: int = 0) -> bytes:
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, marker, 0, 0, 0, 0)


def media_port(sdp_text: str) -> int:
    match = re.search(r"^m=audio (\d+) ", sdp_text, re.M)
    assert match, sdp_text
    return int(match.group(1))


def setup_call(node: NgServer, a: Party, b: Party, call_id: str) -> tuple[str, int]:
    """Offer from A, answer from B; returns the address A sends its RTP to."""
    offer = node.ng.request({"command": "offer", "call-id": call_id, "from-tag": "tagA", "sdp": sdp(a.port)})
    assert offer["result"] == "ok", offer
    answer = node.ng.request(
        {"command": "answer", "call-id": call_id, "from-tag": "tagA", "to-tag": "tagB", "sdp": sdp(b.port)}
    )
    assert answer["result"] == "ok", answer
    return node.media_ip, media_port(answer["sdp"])


def stamp_arrivals(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def receive(sock: socket.socket, count: int, timeout: float) -> list[tuple[float, bytes]]:
    """Up to `count` datagrams within `timeout`, each with its kernel receive time (time.time() clock)."""
    got: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except TimeoutError:
            break
        stamps = [v for level, kind, v in ancillary if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS]
        assert stamps, "no kernel receive timestamp (SO_TIMESTAMPNS)"
        sec, nsec = struct.unpack("@ll", stamps[0][:16])
        got.append((sec + nsec / 1e9, data))
    return got


def send(sock: socket.socket, data: bytes, address: tuple[str, int]) -> float:
    sock.sendto(data, address)
    return time.time()


def pause_until(when: float) -> None:
    """Wait for a point of a send schedule."""
    left = when - time.time()
    if left > 0:
        time.sleep(left)


def scrape(port: int) -> dict[str, float]:
    """The node's /metrics samples by name (and `|label=value` suffixes); waits for the server to listen
    (it starts after the NG socket the launcher waited for)."""

    def fetch() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except urllib.error.URLError:
            return None

    text: str = wait_for(fetch, timeout=10, interval=0.05)
    return {
        sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_jittery_reordered_stream_leaves_complete_in_order_and_evenly_paced(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    min_delay = 0.1
    node = karl_factory(**jitter_env(100, 300, adaptive=False))
    a, b = parties(), parties()
    to_node = setup_call(node, a, b, "jb-smooth")
    stamp_arrivals(b.rtp)
    rng = random.Random(3550)
    lateness = [rng.uniform(0.0, 0.04) for _ in range(50)]
    for n in (6, 17, 28, 39):  # these leave after their successor: 25-35 ms late, the successor 0-10 ms
        lateness[n + 1] = rng.uniform(0.0, 0.01)
        lateness[n] = lateness[n + 1] + 0.025
    start = time.time() + 0.05
    nominal = [start + n * FRAME for n in range(50)]
    order = sorted(range(50), key=lambda n: nominal[n] + lateness[n])
    assert order != sorted(order), "the input really is reordered"
    sent: dict[int, float] = {}
    for n in order:
        pause_until(nominal[n] + lateness[n])
        sent[n] = send(a.rtp, rtp(n), to_node)
    got = receive(b.rtp, 50, timeout=3.0)

    assert [packet for _, packet in got] == [rtp(n) for n in range(50)], "all 50, in sequence order"
    arrived = [when for when, _ in got]
    in_gaps = [y - x for x, y in itertools.pairwise(sorted(sent.values()))]
    out_gaps = [y - x for x, y in itertools.pairwise(arrived)]

    def on_the_grid(gaps: list[float]) -> float:
        """The share of gaps within 5 ms of the 20 ms frame: a median-like measure of evenness, which a
        few scheduling hiccups of a busy machine (each spoils two gaps) do not swing the way they swing a
        standard deviation. The exact pacing is checked on a fake clock below."""
        return sum(abs(gap - FRAME) <= 0.005 for gap in gaps) / len(gaps)

    assert on_the_grid(in_gaps) < 0.5, f"the input really is jittery: {in_gaps}"
    assert on_the_grid(out_gaps) >= 0.8, f"the output is evenly paced: {out_gaps}"
    # paced by the RTP timestamps (not, say, by a wrong clock rate); room for a hiccup at either end
    assert arrived[-1] - arrived[0] == pytest.approx(49 * FRAME, abs=0.1)
    # the schedule starts at the first arrival, so every packet leaves min_delay after its place on the
    # media timeline (a few ms of slack: the node's loop clock is coarse). A lower bound: a busy
    # machine can only make packets later.
    behind = {n: arrived[n] - nominal[n] for n in range(50)}
    early = {n: round(late, 4) for n, late in behind.items() if late < min_delay - 0.01}
    assert not early, f"left before min_delay: {early}"
    anchor = order[0]  # the first to reach the node starts the schedule and waits min_delay itself
    assert arrived[anchor] - sent[anchor] >= min_delay - 0.01
    # ... and not much later than the most delayed packet needed (0.04 s): 0.15 s of room for the
    # scheduling delays of a busy machine, still below the 0.3 s the buffer may hold a packet at most
    assert max(behind.values()) < min_delay + 0.04 + 0.15


def test_rtcp_overtakes_buffered_rtp(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    min_delay = 0.5
    node = karl_factory(**jitter_env(500, 800, adaptive=True))
    a, b = parties(), parties()
    host, port = setup_call(node, a, b, "jb-rtcp")
    stamp_arrivals(b.rtp)
    stamp_arrivals(b.rtcp)
    start = time.time()
    rtp_sent: list[float] = []
    rtcp_delays: list[float] = []
    for n in range(4):
        pause_until(start + n * FRAME)
        rtp_sent.append(send(a.rtp, rtp(n), (host, port)))
        report = sender_report(marker=n)
        rtcp_sent = send(a.rtcp, report, (host, port + 1))
        got = receive(b.rtcp, 1, timeout=2.0)
        assert [packet for _, packet in got] == [report]
        rtcp_delays.append(got[0][0] - rtcp_sent)
    rtp_got = receive(b.rtp, 4, timeout=2.0)
    assert [packet for _, packet in rtp_got] == [rtp(n) for n in range(4)]
    rtp_delays = [when - sent for (when, _), sent in zip(rtp_got, rtp_sent, strict=True)]
    assert min(rtp_delays) >= min_delay - 0.01, f"RTP waits in the buffer: {rtp_delays}"
    # an RTCP packet crosses the node in well under a millisecond; half the RTP delay is room enough
    # for a busy machine, and still tells it apart from RTCP held in the buffer
    assert max(rtcp_delays) < min_delay / 2, f"RTCP must not wait behind it: {rtcp_delays}"


def test_block_media_drops_rtp_already_buffered(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    delay = 1.0  # long: `block media` must land while the packets wait, even on a busy machine
    node = karl_factory(**jitter_env(1000, 1300, adaptive=False))
    a, b = parties(), parties()
    to_node = setup_call(node, a, b, "jb-block")
    stamp_arrivals(b.rtp)

    def received_by_node() -> int:
        reply = node.ng.request({"command": "query", "call-id": "jb-block"})
        return int(reply["totals"]["RTP"]["packets"])

    first = send(a.rtp, rtp(0), to_node)
    for n in range(1, 5):
        send(a.rtp, rtp(n), to_node)
    wait_for(lambda: received_by_node() == 5, timeout=delay / 2, interval=0.005)  # they are in the buffer
    reply = node.ng.request({"command": "block media", "call-id": "jb-block", "from-tag": "tagA"})
    assert reply["result"] == "ok", reply
    assert time.time() - first < delay - 0.2, "block media must land while the packets still wait"
    assert receive(b.rtp, 1, timeout=first + delay + 4 * FRAME + 0.3 - time.time()) == [], (
        "blocked media left the buffer"
    )
    # unblocked, the buffer works again (so the silence above came from the block)
    reply = node.ng.request({"command": "unblock media", "call-id": "jb-block", "from-tag": "tagA"})
    assert reply["result"] == "ok", reply
    resent = send(a.rtp, rtp(5), to_node)
    got = receive(b.rtp, 1, timeout=2.0)
    assert [packet for _, packet in got] == [rtp(5)]
    assert got[0][0] - resent >= delay - 0.01


def test_the_option_changes_behaviour_a_node_without_it_forwards_at_once(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    min_delay = 0.1
    plain_metrics = free_port()
    plain = karl_factory(KARL_METRICS_PORT=str(plain_metrics))
    buffered = karl_factory(media_ip="127.0.0.3", **jitter_env(100, 300, adaptive=False))
    results: dict[str, tuple[float, list[tuple[float, bytes]]]] = {}
    for name, node in (("plain", plain), ("buffered", buffered)):
        a, b = parties(), parties()
        to_node = setup_call(node, a, b, f"jb-compare-{name}")
        stamp_arrivals(b.rtp)
        # a burst: ten 20 ms frames at once, as after a network hiccup
        first = send(a.rtp, rtp(0), to_node)
        for n in range(1, 10):
            send(a.rtp, rtp(n), to_node)
        got = receive(b.rtp, 10, timeout=2.0)
        assert [packet for _, packet in got] == [rtp(n) for n in range(10)], name
        results[name] = (first, got)

    # Forwarded at once takes well under a millisecond; the bounds leave a busy machine room for
    # scheduling delays and still tell "at once" from "after min_delay" and "spread over 9 frames".
    # (each packet of the burst came early and moved the anchor back: see the fake clock test)
    spread = 9 * (FRAME - ANCHOR_STEP_BACK)
    first, got = results["plain"]
    assert got[-1][0] - first < min_delay - 0.01, "without the option the burst is forwarded as it came"
    assert got[-1][0] - got[0][0] < spread / 2
    first, got = results["buffered"]
    assert got[0][0] - first >= min_delay - 0.01, "with it, the first packet waits min_delay"
    assert got[-1][0] - got[0][0] == pytest.approx(spread, abs=0.05), "and the burst is spread out"
    assert scrape(plain_metrics)["karl_jitter_buffer_latency_count"] == 0


def test_metrics_count_every_packet_that_waited(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    metrics_port = free_port()
    node = karl_factory(**jitter_env(40, 200, adaptive=True, KARL_METRICS_PORT=str(metrics_port)))
    assert scrape(metrics_port)["karl_jitter_buffer_latency_count"] == 0
    a, b = parties(), parties()
    to_node = setup_call(node, a, b, "jb-metrics")
    stamp_arrivals(b.rtp)
    start = time.time()
    for n in range(20):
        pause_until(start + n * FRAME)
        send(a.rtp, rtp(n), to_node)
    got = receive(b.rtp, 20, timeout=2.0)
    assert [packet for _, packet in got] == [rtp(n) for n in range(20)]

    def counted() -> dict[str, float] | None:
        samples = scrape(metrics_port)
        return samples if samples["karl_jitter_buffer_latency_count"] == 20 else None

    samples = wait_for(counted, timeout=3)
    assert 20 * 0.035 <= samples["karl_jitter_buffer_latency_sum"] <= 20 * 0.2, samples
    assert samples["karl_jitter_buffer_latency_bucket|le=0.02"] == 0, "each one waited at least min_delay"
    assert samples["karl_jitter_buffer_latency_bucket|le=+Inf"] == 20


def test_one_timer_callback_per_released_packet_under_uvloop() -> None:
    """uvloop fires timers on whole milliseconds and caches its clock per iteration: the stage must not
    re-arm itself until the clock catches up (that burnt CPU for nothing)."""
    import uvloop

    fires = [0]
    original = JitterStage._fire

    def counted(self: JitterStage) -> None:
        fires[0] += 1
        original(self)

    async def main() -> int:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            out.bind(("127.0.0.1", 0))
            rx.bind(("127.0.0.1", 0))
            source, sink = PacketStream("127.0.0.1", 1), PacketStream("127.0.0.1", 2, out)
            sink.endpoint = rx.getsockname()
            source.sink = sink
            stage = JitterStage(asyncio.get_running_loop(), source, JitterBuffer(0.02, 0.2, False), {0: 8000})
            for n in range(50):
                stage.accept(struct.pack("!BBHII", 0x80, 0, n, n * 160, 0x1234) + bytes(160))
                await asyncio.sleep(0.02)
            deadline = time.monotonic() + 2
            while stage.buffer.stats.buffered < 50 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return stage.buffer.stats.buffered
        finally:
            out.close()
            rx.close()

    JitterStage._fire = counted  # type: ignore[method-assign]
    try:
        released = uvloop.run(main())
    finally:
        JitterStage._fire = original  # type: ignore[method-assign]
    assert released == 50
    assert fires[0] <= 2 * released, f"{fires[0]} timer callbacks for {released} packets"


# ----------------------------------------------------------------------------- on a fake clock
# The stage uses two things of its event loop: `time()` and `call_at()`. A fake loop whose clock only the
# test moves shows the pacing exactly, without the scheduling noise of a busy machine.


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self, now: float) -> None:
        self.now = now
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        self.timers.append(FakeTimer(when, callback))
        return self.timers[-1]

    def run_until(self, until: float) -> None:
        """Fire every timer due by `until` on time, in order; the clock then stands at `until`."""
        while due := [timer for timer in self.timers if not timer.cancelled and timer.when <= until]:
            timer = min(due, key=lambda timer: timer.when)
            self.timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback()
        self.now = max(self.now, until)


class FakeSocket:
    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.sent: list[tuple[float, bytes]] = []

    def sendto(self, data: bytes, _address: object) -> int:
        self.sent.append((self.loop.now, data))
        return len(data)


def fake_stage(
    min_delay: float, max_delay: float, adaptive: bool, now: float = 1000.0
) -> tuple[FakeLoop, FakeSocket, JitterStage]:
    loop = FakeLoop(now)
    wire = FakeSocket(loop)
    source, sink = PacketStream("127.0.0.1", 1), PacketStream("127.0.0.1", 2, cast(socket.socket, wire))
    sink.endpoint = ("127.0.0.1", 9)
    source.sink = sink
    buffer = JitterBuffer(min_delay, max_delay, adaptive)
    stage = JitterStage(cast(asyncio.AbstractEventLoop, loop), source, buffer, {0: 8000})
    return loop, wire, stage


def test_fake_clock_jittery_reordered_stream_leaves_in_order_on_the_rtp_timeline() -> None:
    """The input of the first test above, on a fake clock: the output is exactly paced."""
    min_delay = 0.1
    loop, wire, stage = fake_stage(min_delay, 0.3, adaptive=False)
    rng = random.Random(3550)
    lateness = [rng.uniform(0.0, 0.04) for _ in range(50)]
    for n in (6, 17, 28, 39):
        lateness[n + 1] = rng.uniform(0.0, 0.01)
        lateness[n] = lateness[n + 1] + 0.025
    start = loop.now + 0.05
    nominal = [start + n * FRAME for n in range(50)]
    arrivals = sorted((nominal[n] + lateness[n], n) for n in range(50))
    assert [n for _, n in arrivals] != list(range(50)), "the input really is reordered"
    for when, n in arrivals:
        loop.run_until(when)
        stage.accept(rtp(n))
    loop.run_until(start + 10)

    assert [packet for _, packet in wire.sent] == [rtp(n) for n in range(50)], "all 50, in sequence order"
    left = [when for when, _ in wire.sent]
    in_gaps = [y - x for (x, _), (y, _) in itertools.pairwise(arrivals)]
    out_gaps = [y - x for x, y in itertools.pairwise(left)]
    # evenly paced: 20 ms apart, less at most the 1 ms per packet the anchor moves back towards the
    # earliest arrivals (see rtp.jitter_buffer)
    assert all(FRAME - ANCHOR_STEP_BACK - 1e-9 <= gap <= FRAME + 1e-9 for gap in out_gaps), out_gaps
    assert statistics.pstdev(out_gaps) < statistics.pstdev(in_gaps) / 10, (in_gaps, out_gaps)
    # each packet leaves min_delay after its place on the media timeline, plus at most the lateness of
    # the packet that anchored the schedule
    anchor = arrivals[0][1]
    behind = [when - nominal[n] for n, when in enumerate(left)]
    assert min(behind) >= min_delay - 1e-9, behind
    assert max(behind) <= min_delay + lateness[anchor] + 1e-9, behind
    assert left[anchor] - arrivals[0][0] == pytest.approx(min_delay), "the first to arrive waits min_delay"
    assert loop.timers == [] or all(timer.cancelled for timer in loop.timers), "no timer left behind"


def test_fake_clock_a_burst_is_spread_over_its_rtp_time_and_rtcp_is_not_held() -> None:
    loop, wire, stage = fake_stage(0.1, 0.3, adaptive=False)
    first = loop.now
    for n in range(10):  # ten 20 ms frames at once, as after a network hiccup
        stage.accept(rtp(n))
    report = sender_report()
    stage.accept(report)  # RTCP on the RTP port (rtcp-mux)
    assert wire.sent == [(first, report)], "RTCP leaves at once, ahead of the buffered RTP"
    loop.run_until(first + 1)
    left = [when for when, _ in wire.sent[1:]]
    assert [packet for _, packet in wire.sent[1:]] == [rtp(n) for n in range(10)]
    # spread over the burst's RTP time; each packet of it came earlier than the anchor predicted and moved
    # the anchor back ANCHOR_STEP_BACK (see rtp.jitter_buffer)
    assert left == pytest.approx([first + 0.1 + n * (FRAME - ANCHOR_STEP_BACK) for n in range(10)], abs=1e-9)


def test_fake_clock_block_media_drops_what_is_already_buffered() -> None:
    loop, wire, stage = fake_stage(0.5, 0.8, adaptive=False)
    first = loop.now
    for n in range(5):
        stage.accept(rtp(n))
    loop.run_until(first + 0.2)
    stage.stream.blocked = True  # what `block media` sets
    loop.run_until(first + 2)
    assert wire.sent == [], "blocked media left the buffer"
    assert stage.stream.dropped_blocked == 5
    stage.stream.blocked = False
    stage.accept(rtp(5))
    loop.run_until(first + 4)
    assert [packet for _, packet in wire.sent] == [rtp(5)]
