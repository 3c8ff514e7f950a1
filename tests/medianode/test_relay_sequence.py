"""RTP sequence tracking and RTCP hand-off in the relay, with real UDP on loopback and a uvloop loop.

Party A sends RTP (gaps, reordering, duplicates, wraps, SSRC changes) to its packet stream; the relay
forwards everything to party B. Each scenario checks that B received every datagram, byte for byte and in
order (loopback keeps the order of one socket's datagrams, and the relay forwards in arrival order), and
then what the receiving stream counted: `lost`, `late` and `sequence_restarts`.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from karl_medianode.clock import CoarseClock
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import MAX_DROPOUT, MAX_MISORDER, PacketStream, QualityLink, Relay
from karl_medianode.quality import CallQuality
from karl_medianode.rtp.rtcp import ReceiverReport, ReportBlock, build_receiver_report
from karl_testkit import free_port_block, run_async, until

HOST = "127.0.0.1"
X, Y = 0x1111_0001, 0x2222_0002
BATCH = 16  # datagrams in flight at once: far below any socket buffer


def rtp(seq: int, ssrc: int = X, pt: int = 0) -> bytes:
    # the payload names the packet, so duplicates are byte-identical and everything else is not
    payload = struct.pack("!IH", ssrc, seq) * 20
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc) + payload


def sr(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x80, 200, 6, ssrc) + struct.pack(
        "!IIIII", 0xE9000001, 0x80000000, 160, 1, 160
    )


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


@dataclass
class Phone:
    sock: socket.socket
    inbox: _Inbox

    @property
    def addr(self) -> tuple[str, int]:
        return HOST, int(self.sock.getsockname()[1])


@dataclass
class Leg:
    """A sends to `a_stream` (and its RTCP to `a_ctl_stream`); B hears it from `b_stream`."""

    a: Phone
    a_ctl: Phone
    b: Phone
    b_ctl: Phone
    a_stream: PacketStream
    a_ctl_stream: PacketStream
    b_stream: PacketStream
    b_ctl_stream: PacketStream
    transports: list[asyncio.BaseTransport] = field(default_factory=list)

    async def send_rtp(self, packets: list[bytes]) -> None:
        """Send `packets` from A, a batch at a time, and wait until B has all of them."""
        start = len(self.b.inbox.received)
        for index, packet in enumerate(packets, 1):
            self.a.sock.sendto(packet, (HOST, self.a_stream.local_port))
            if index % BATCH == 0 or index == len(packets):
                await until(functools.partial(self._arrived, start + index), f"{index} datagrams at B")
        assert self.b.inbox.received[start:] == packets

    def _arrived(self, count: int) -> bool:
        return len(self.b.inbox.received) >= count

    async def send_rtcp(self, data: bytes, to: PacketStream, receiver: Phone) -> None:
        start = len(receiver.inbox.received)
        self.a_ctl.sock.sendto(data, (HOST, to.local_port))
        await until(lambda: len(receiver.inbox.received) > start, "RTCP forwarded")
        assert receiver.inbox.received[start:] == [data]


@asynccontextmanager
async def relay_leg() -> AsyncIterator[Leg]:
    loop = asyncio.get_running_loop()
    clock = CoarseClock()
    clock.start(loop)
    base = free_port_block(8, HOST)
    allocator = PortAllocator(HOST, base, base + 7)
    relay = Relay(loop, clock, allocator.release)
    transports: list[asyncio.BaseTransport] = []

    async def phone() -> Phone:
        inbox = _Inbox()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        transport, _ = await loop.create_datagram_endpoint(lambda: inbox, sock=sock)
        transports.append(transport)
        return Phone(sock, inbox)

    async def stream(sock: socket.socket, party: Phone, **flags: Any) -> PacketStream:
        opened = relay.open_stream(sock, HOST)
        opened.advertise(party.addr)
        for name, value in flags.items():
            setattr(opened, name, value)
        opened.signalled(clock.now - 10)  # past the learning window: the first packet confirms
        return opened

    a, a_ctl, b, b_ctl = [await phone() for _ in range(4)]
    a_rtp, a_rtcp = allocator.allocate_pair()
    b_rtp, b_rtcp = allocator.allocate_pair()
    leg = Leg(
        a,
        a_ctl,
        b,
        b_ctl,
        await stream(a_rtp, a),
        await stream(a_rtcp, a_ctl, is_rtcp=True),
        await stream(b_rtp, b),
        await stream(b_rtcp, b_ctl, is_rtcp=True),
        transports,
    )
    leg.a_stream.sink, leg.b_stream.sink = leg.b_stream, leg.a_stream
    leg.a_ctl_stream.rtcp_sink, leg.b_ctl_stream.rtcp_sink = leg.b_ctl_stream, leg.a_ctl_stream
    try:
        yield leg
    finally:
        relay.close_all()
        for transport in transports:
            transport.close()
        clock.stop()
        await asyncio.sleep(0)


def on_uvloop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    def run(*args: Any, **kwargs: Any) -> None:
        run_async(test(*args, **kwargs), timeout=20)

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def counts(stream: PacketStream) -> tuple[int, int, int]:
    return stream.lost, stream.late, stream.sequence_restarts


# --- scenarios --------------------------------------------------------------------------------------

Seqs = list[int] | list[tuple[int, int]]


def packets_of(seqs: Seqs) -> list[bytes]:
    return [rtp(item) if isinstance(item, int) else rtp(item[0], item[1]) for item in seqs]


SCENARIOS: dict[str, tuple[Seqs, tuple[int, int, int]]] = {
    # name: (sequence numbers, or (sequence, SSRC) pairs; expected (lost, late, restarts))
    "in order": (list(range(100)), (0, 0, 0)),
    "first packet anywhere": (list(range(40_000, 40_050)), (0, 0, 0)),
    "one gap": ([*range(10), *range(15, 30)], (5, 0, 0)),
    "several gaps": ([*range(10), *range(12, 20), *range(30, 40), 41], (13, 0, 0)),
    # 3 arrives after 4: counted lost at 4, then late, which takes the loss back
    "reordered": ([0, 1, 2, 4, 3, 5, 6], (0, 1, 0)),
    "reordered across a gap": ([0, 1, 2, 5, 3, 6, 7], (1, 1, 0)),
    "duplicates": ([0, 1, 2, 2, 3, 3, 3, 4], (0, 3, 0)),
    # expected minus received (RFC 3550): a duplicate counts as received, so it offsets one lost packet
    "duplicate after a gap": ([0, 1, 5, 5, 6], (2, 1, 0)),
    "wrap": ([*range(65_530, 65_536), *range(10)], (0, 0, 0)),
    "gap across the wrap": ([65_533, 65_534, 1, 2, 3], (2, 0, 0)),
    "reordered across the wrap": ([65_533, 65_534, 0, 65_535, 1, 2], (0, 1, 0)),
    "late just before the wrap": ([*range(65_500, 65_536), *range(5), 65_535], (0, 1, 0)),
    "largest gap that is loss": (
        [*range(10), 10 + MAX_DROPOUT - 1, 10 + MAX_DROPOUT],
        (MAX_DROPOUT - 1, 0, 0),
    ),
    "jump that restarts": ([*range(10), 10 + MAX_DROPOUT, 11 + MAX_DROPOUT], (0, 0, 1)),
    "furthest behind that is late": ([*range(200), 200 - MAX_MISORDER, *range(200, 210)], (0, 1, 0)),
    "new SSRC": ([*((seq, X) for seq in range(10)), *((seq, Y) for seq in range(5000, 5010))], (0, 0, 1)),
    "new SSRC and back": (
        [*((seq, X) for seq in range(10)), *((seq, Y) for seq in range(5000, 5005))]
        + [(seq, X) for seq in range(10, 15)],
        (0, 0, 2),
    ),
    "new SSRC with a gap of its own": (
        [*((seq, X) for seq in range(10)), *((seq, Y) for seq in (700, 701, 704, 705))],
        (2, 0, 1),
    ),
}


@pytest.mark.parametrize(("seqs", "expected"), list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_sequence_scenarios(seqs: Seqs, expected: tuple[int, int, int]) -> None:
    async def scenario() -> None:
        async with relay_leg() as leg:
            packets = packets_of(seqs)
            await leg.send_rtp(packets)
            assert counts(leg.a_stream) == expected
            assert leg.a_stream.packets == len(packets)
            assert leg.a_stream.errors == leg.a_stream.failures == 0
            assert counts(leg.b_stream) == (0, 0, 0)  # B sent nothing

    run_async(scenario(), timeout=20)


@on_uvloop
async def test_counts_accumulate_over_bursts() -> None:
    async with relay_leg() as leg:
        await leg.send_rtp(packets_of([*range(20), *range(25, 40)]))
        assert counts(leg.a_stream) == (5, 0, 0)
        await leg.send_rtp(packets_of([22, 23, *range(40, 60), *range(70, 80)]))
        assert counts(leg.a_stream) == (13, 2, 0)


@on_uvloop
async def test_new_ssrc_continuing_the_sequence_numbers_restarts_the_count() -> None:
    """A source change that keeps the numbering (e.g. a B2BUA switching what it bridges, renumbering
    nothing) is still a new SSRC: the relay's docstring promises a restart, and the call's statistics need
    the new SSRC's payload type to evaluate the reports about it."""
    async with relay_leg() as leg:
        quality = CallQuality()
        leg.a_stream.quality = QualityLink(quality, "A", {0: 8000, 8: 8000}, {})
        packets = [rtp(seq, X) for seq in range(10)] + [rtp(seq, Y, pt=8) for seq in range(10, 20)]
        await leg.send_rtp(packets)
        assert counts(leg.a_stream) == (0, 0, 1)
        assert Y in quality.entries and quality.entries[Y].payload_type == 8


@on_uvloop
async def test_stray_old_packet_does_not_count_the_stream_as_lost() -> None:
    """One packet from far in the past (more than MAX_MISORDER behind, e.g. a replayed or long-delayed
    datagram) must not turn the following, perfectly ordered packets into loss: RFC 3550 (appendix A.1)
    restarts only when the next packet confirms the new numbering, and ignores a single stray packet."""
    async with relay_leg() as leg:
        await leg.send_rtp(packets_of([*range(200), 50, *range(200, 210)]))
        assert leg.a_stream.lost == 0


# --- the quality link -------------------------------------------------------------------------------


@on_uvloop
async def test_new_sources_reach_the_call_quality() -> None:
    async with relay_leg() as leg:
        quality = CallQuality()
        sources: dict[int, PacketStream] = {}
        link = leg.a_stream.quality = QualityLink(quality, "A", {0: 8000, 8: 8000}, sources)
        await leg.send_rtp([rtp(seq, X) for seq in range(5)] + [rtp(seq, Y, pt=8) for seq in range(900, 905)])
        assert quality.entries[X].payload_type == 0 and quality.entries[X].party == "A"
        assert quality.entries[Y].payload_type == 8
        assert sources == {X: leg.a_stream, Y: leg.a_stream}
        # the link gives the payload type a source sends now, and None for one that is not current
        assert link._payload_type(Y) == 8
        assert link._payload_type(X) is None


@on_uvloop
async def test_rtcp_goes_to_the_call_quality_and_on_to_the_peer() -> None:
    async with relay_leg() as leg:
        quality = CallQuality()
        leg.a_ctl_stream.quality = QualityLink(quality, "A", {0: 8000}, {})
        report = sr(X) + build_receiver_report(ReceiverReport(X, (ReportBlock(Y, 10, 1, 5, 80, 0, 0),)))
        await leg.send_rtcp(report, leg.a_ctl_stream, leg.b_ctl)
        assert quality.reports == 2
        assert len(quality.entries[X].sender_reports) == 1 and quality.entries[X].party == "A"
        latest = quality.entries[X].latest
        assert latest is not None and latest.source == Y and latest.cumulative_lost == 1


@on_uvloop
async def test_muxed_rtcp_goes_to_the_call_quality_not_into_the_sequence() -> None:
    async with relay_leg() as leg:
        leg.a_stream.rtcp_mux = True
        leg.a_stream.rtcp_sink = leg.b_stream
        quality = CallQuality()
        leg.a_stream.quality = QualityLink(quality, "A", {0: 8000}, {})
        await leg.send_rtp(packets_of(list(range(5))))
        start = len(leg.b.inbox.received)
        leg.a.sock.sendto(sr(X), (HOST, leg.a_stream.local_port))
        await until(lambda: len(leg.b.inbox.received) > start, "muxed RTCP forwarded")
        await leg.send_rtp(packets_of([5, 6]))
        assert quality.reports == 1
        assert counts(leg.a_stream) == (0, 0, 0)
        assert leg.a_stream.rtcp_packets == 1


@on_uvloop
async def test_invalid_rtcp_is_dropped_but_its_reports_before_the_broken_part_count() -> None:
    """As rtpengine 10.5: the parts are evaluated while the compound is walked, then the broken datagram
    is dropped."""
    async with relay_leg() as leg:
        quality = CallQuality()
        leg.a_ctl_stream.quality = QualityLink(quality, "A", {0: 8000}, {})
        bad = sr(X) + b"\x40\xc9\x00\x01\x00\x00\x00\x01"  # a version-1 part makes the compound invalid
        leg.a_ctl.sock.sendto(bad, (HOST, leg.a_ctl_stream.local_port))
        await until(lambda: leg.a_ctl_stream.dropped_malformed == 1, "malformed RTCP dropped")
        await leg.send_rtcp(sr(Y), leg.a_ctl_stream, leg.b_ctl)  # the next one still goes through
        assert quality.reports == 2 and X in quality.entries and Y in quality.entries


class _BrokenLink(QualityLink):
    def rtcp(self, data: bytes) -> None:
        raise RuntimeError("statistics bug")

    def new_source(self, stream: PacketStream, ssrc: int, payload_type: int) -> None:
        raise RuntimeError("statistics bug")


@on_uvloop
async def test_a_failing_quality_link_never_costs_a_packet() -> None:
    async with relay_leg() as leg:
        leg.a_stream.quality = _BrokenLink(CallQuality(), "A", {}, {})
        leg.a_ctl_stream.quality = _BrokenLink(CallQuality(), "A", {}, {})
        await leg.send_rtp(packets_of([0, 1, 3, 4]))
        assert counts(leg.a_stream) == (1, 0, 0)
        assert leg.a_stream.quality_failures == 1  # the first packet's new source
        await leg.send_rtcp(sr(X), leg.a_ctl_stream, leg.b_ctl)
        assert leg.a_ctl_stream.quality_failures == 1
        assert leg.a_stream.failures == leg.a_ctl_stream.failures == 0


def test_rtcp_sent_to_a_plain_rtp_port_stays_out_of_the_sequence_and_the_sources() -> None:
    """Some phones also send their RTCP to the RTP port. Such a report is forwarded like anything else
    there, but it is no RTP (RFC 5761: second octets 200..204 are never RTP): its block's SSRC (the
    partner's) must not become a source with payload type 73, which would void later reports."""
    from karl_medianode.dataplane.relay import _StreamProtocol

    partner = 0xBBBB_0002
    call = CallQuality()
    sources: dict[int, PacketStream] = {}
    stream = PacketStream(HOST, 1)
    stream.confirmed = True
    stream.quality = QualityLink(call, "A", {0: 8000}, sources)
    protocol = _StreamProtocol(stream, CoarseClock())
    address = (HOST, 9)
    for n in range(5):
        protocol.datagram_received(struct.pack("!BBHII", 0x80, 0, n, n * 160, X) + bytes(160), address)
    report = build_receiver_report(ReceiverReport(X, (ReportBlock(partner, 0, 0, 1, 80, 0, 0),)))
    protocol.datagram_received(report, address)
    protocol.datagram_received(struct.pack("!BBHII", 0x80, 0, 5, 800, X) + bytes(160), address)
    assert set(sources) == {X} and call.entries[X].payload_type == 0 and partner not in call.entries
    assert (stream.lost, stream.late, stream.sequence_restarts) == (0, 0, 0)
    assert stream.packets == 7
    assert stream.quality._payload_type(X) == 0


def test_an_rtcp_flood_is_forwarded_but_only_partly_read() -> None:
    """A party sends a few RTCP compounds a second; beyond MAX_RTCP_READ_PER_SECOND the statistics
    leave them unread (the relay still forwards them), so a flood cannot cost the event loop the
    parsing of every report block."""
    from karl_medianode.dataplane.relay import MAX_RTCP_READ_PER_SECOND

    call = CallQuality()
    link = QualityLink(call, "A", {0: 8000}, {})
    blocks = tuple(ReportBlock(0x3000 + n, 0, 0, 1, 80, 0, 0) for n in range(31))
    report = build_receiver_report(ReceiverReport(X, blocks))
    for _ in range(5 * MAX_RTCP_READ_PER_SECOND):
        link.rtcp(report)  # within one second: the loop takes far less
    assert call.reports == MAX_RTCP_READ_PER_SECOND
    assert link.skipped == 4 * MAX_RTCP_READ_PER_SECOND
