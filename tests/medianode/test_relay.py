"""The media relay with real UDP sockets on loopback, on uvloop.

Two parties, A and B, each have real sockets (their "phones"); the relay gets one packet stream per
party and media type, wired by hand the way the call engine wires them after offer/answer. Absence of a
packet is never waited for: a dropped packet is followed by a marker packet, and the test asserts that
the marker is the next datagram to arrive (loopback keeps the order of one socket's datagrams).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import pytest
import uvloop

from karl_medianode.clock import CoarseClock
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import EndpointLearning, PacketStream, Relay
from karl_medianode.rtp.silence import silence_for
from karl_testkit import free_port_block

HOST = "127.0.0.1"
TIMEOUT = 5.0

P = ParamSpec("P")
T = TypeVar("T")


def on_uvloop(test: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async test on a fresh uvloop event loop, bounded by a timeout."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            assert isinstance(runner.get_loop(), uvloop.Loop)
            return runner.run(asyncio.wait_for(test(*args, **kwargs), 20))

    return run


def rtp(seq: int, pt: int = 0, payload: bytes | None = None, ssrc: int = 0x5EED) -> bytes:
    body = payload if payload is not None else bytes((seq + i) & 0xFF for i in range(160))
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc) + body


def rtcp_sr(ssrc: int = 0x5EED) -> bytes:
    return struct.pack("!BBHI", 0x80, 200, 6, ssrc) + b"\x01" * 20


async def until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Poll `condition` while the loop runs; fail with `what` after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.002)


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, (addr[0], addr[1])))


@dataclass
class Phone:
    """One socket of a party (its RTP or RTCP port). Sends through the socket itself, because the
    transport would silently skip empty datagrams."""

    sock: socket.socket
    transport: asyncio.DatagramTransport
    inbox: _Inbox

    @property
    def addr(self) -> tuple[str, int]:
        return HOST, self.port

    @functools.cached_property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, data: bytes, to: PacketStream) -> None:
        self.sock.sendto(data, (to.local_ip, to.local_port))

    async def recv(self) -> tuple[bytes, tuple[str, int]]:
        try:
            return await asyncio.wait_for(self.inbox.queue.get(), TIMEOUT)
        except TimeoutError:
            pytest.fail(f"nothing arrived at {self.addr}")

    async def expect(self, data: bytes, source: PacketStream) -> None:
        got, addr = await self.recv()
        assert got == data
        assert addr == (source.local_ip, source.local_port)

    def idle(self) -> bool:
        return self.inbox.queue.empty()


@dataclass
class Env:
    loop: asyncio.AbstractEventLoop
    clock: CoarseClock
    allocator: PortAllocator
    relay: Relay
    phones: list[Phone] = field(default_factory=list)

    async def phone(self) -> Phone:
        inbox = _Inbox()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        phone = Phone(sock, *(await self.loop.create_datagram_endpoint(lambda: inbox, sock=sock)))
        phone.port  # noqa: B018  (remember the port while the socket is open)
        self.phones.append(phone)
        return phone

    async def stream(self, sock: socket.socket, party: Phone, **flags: Any) -> PacketStream:
        stream = self.relay.open_stream(sock, HOST)
        stream.advertise(party.addr)
        for name, value in flags.items():
            setattr(stream, name, value)
        stream.signalled(self.clock.now)
        return stream


@asynccontextmanager
async def environment(ports: int = 40) -> AsyncIterator[Env]:
    loop = asyncio.get_running_loop()
    clock = CoarseClock()
    clock.start(loop)
    base = free_port_block(ports, HOST)
    allocator = PortAllocator(HOST, base, base + ports - 1)
    relay = Relay(loop, clock, allocator.release)
    env = Env(loop, clock, allocator, relay)
    try:
        yield env
    finally:
        relay.close_all()
        for phone in env.phones:
            phone.transport.close()
        clock.stop()
        await asyncio.sleep(0)  # let the transports finish closing


@dataclass
class Call:
    """Streams of a two-party audio call. `a_rtp` is the relay port A sends RTP to (and B's media
    reaches A from); `a_rtcp` is None when A muxes RTCP onto `a_rtp`."""

    a: Phone
    a_ctl: Phone | None
    b: Phone
    b_ctl: Phone | None
    a_rtp: PacketStream
    a_rtcp: PacketStream | None
    b_rtp: PacketStream
    b_rtcp: PacketStream | None


async def make_call(env: Env, *, a_mux: bool = False, b_mux: bool = False, **flags: Any) -> Call:
    async def side(mux: bool) -> tuple[Phone, Phone | None, PacketStream, PacketStream | None]:
        phone = await env.phone()
        if mux:
            rtp_stream = await env.stream(env.allocator.allocate_single(), phone, rtcp_mux=True, **flags)
            return phone, None, rtp_stream, None
        ctl = await env.phone()
        rtp_sock, rtcp_sock = env.allocator.allocate_pair()
        rtp_stream = await env.stream(rtp_sock, phone, **flags)
        rtcp_stream = await env.stream(rtcp_sock, ctl, is_rtcp=True, **flags)
        return phone, ctl, rtp_stream, rtcp_stream

    a, a_ctl, a_rtp, a_rtcp = await side(a_mux)
    b, b_ctl, b_rtp, b_rtcp = await side(b_mux)
    a_rtp.sink, b_rtp.sink = b_rtp, a_rtp
    # RTCP from A (on its RTCP port, or muxed on its RTP port) goes to B's RTCP port, or B's RTP port.
    (a_rtcp or a_rtp).rtcp_sink = b_rtcp or b_rtp
    (b_rtcp or b_rtp).rtcp_sink = a_rtcp or a_rtp
    return Call(a, a_ctl, b, b_ctl, a_rtp, a_rtcp, b_rtp, b_rtcp)


def past_learning_window(env: Env, *streams: PacketStream) -> None:
    """As if the last signalling was long ago (instead of waiting out rtpengine's 3 s)."""
    for stream in streams:
        stream.signalled(env.clock.now - 10)


# --- forwarding ---------------------------------------------------------------------------------


@on_uvloop
async def test_rtp_is_relayed_both_ways_byte_for_byte() -> None:
    async with environment() as env:
        call = await make_call(env)
        sent_a = [rtp(i, payload=os.urandom(160)) for i in range(20)]
        sent_b = [rtp(1000 + i, pt=8, payload=os.urandom(80)) for i in range(20)]
        for a_packet, b_packet in zip(sent_a, sent_b, strict=True):
            call.a.send(a_packet, call.a_rtp)
            call.b.send(b_packet, call.b_rtp)
        for packet in sent_a:
            await call.b.expect(packet, source=call.b_rtp)  # B hears A from the port B sends to
        for packet in sent_b:
            await call.a.expect(packet, source=call.a_rtp)
        assert (call.a_rtp.packets, call.a_rtp.bytes) == (20, sum(map(len, sent_a)))
        assert (call.b_rtp.packets, call.b_rtp.bytes) == (20, sum(map(len, sent_b)))
        for stream in (call.a_rtp, call.b_rtp):
            assert stream.errors == stream.malformed == stream.rtcp_packets == 0
            assert stream.last_packet > 0
        assert call.a_rtp.last_ssrc == 0x5EED and call.a_rtp.last_payload_type == 0
        assert call.b_rtp.last_payload_type == 8


@on_uvloop
async def test_rtcp_on_separate_ports_both_ways() -> None:
    async with environment() as env:
        call = await make_call(env)
        assert call.a_ctl and call.b_ctl and call.a_rtcp and call.b_rtcp
        report_a, report_b = rtcp_sr(0xA), rtcp_sr(0xB)
        call.a_ctl.send(report_a, call.a_rtcp)
        call.b_ctl.send(report_b, call.b_rtcp)
        await call.b_ctl.expect(report_a, source=call.b_rtcp)
        await call.a_ctl.expect(report_b, source=call.a_rtcp)
        assert (call.a_rtcp.packets, call.a_rtcp.bytes) == (1, len(report_a))
        assert call.a_rtp.packets == 0 and call.b.idle() and call.a.idle()


@on_uvloop
async def test_rtcp_mux_on_both_sides() -> None:
    async with environment() as env:
        call = await make_call(env, a_mux=True, b_mux=True)
        media, report = rtp(1), rtcp_sr(0xA)
        call.a.send(media, call.a_rtp)
        call.a.send(report, call.a_rtp)
        call.b.send(report, call.b_rtp)
        await call.b.expect(media, source=call.b_rtp)
        await call.b.expect(report, source=call.b_rtp)
        await call.a.expect(report, source=call.a_rtp)
        assert (call.a_rtp.packets, call.a_rtp.bytes) == (2, len(media) + len(report))
        assert (call.a_rtp.rtcp_packets, call.a_rtp.rtcp_bytes) == (1, len(report))
        assert (call.b_rtp.rtcp_packets, call.b_rtp.packets) == (1, 1)


@on_uvloop
async def test_rtcp_mux_on_one_side_only() -> None:
    async with environment() as env:
        call = await make_call(env, a_mux=True)
        assert call.b_ctl and call.b_rtcp
        media, report_a, report_b = rtp(1), rtcp_sr(0xA), rtcp_sr(0xB)
        call.a.send(report_a, call.a_rtp)  # muxed from A ...
        call.a.send(media, call.a_rtp)
        await call.b_ctl.expect(report_a, source=call.b_rtcp)  # ... to B's RTCP port
        await call.b.expect(media, source=call.b_rtp)
        call.b_ctl.send(report_b, call.b_rtcp)  # B's RTCP port ...
        await call.a.expect(report_b, source=call.a_rtp)  # ... to A's muxed port
        assert call.a_rtp.rtcp_packets == 1 and call.b_rtcp.packets == 1


# --- endpoint learning ------------------------------------------------------------------------------


@on_uvloop
async def test_source_address_is_learned_and_replies_follow_it() -> None:
    async with environment() as env:
        call = await make_call(env)
        behind_nat = await env.phone()  # A's media really comes from another port than its SDP says
        behind_nat.send(rtp(1), call.a_rtp)
        await call.b.expect(rtp(1), source=call.b_rtp)
        assert call.a_rtp.endpoint == behind_nat.addr
        assert not call.a_rtp.confirmed  # delayed learning: within 3 s of signalling, not final
        call.b.send(rtp(2), call.b_rtp)
        await behind_nat.expect(rtp(2), source=call.a_rtp)
        assert call.a.idle()


@on_uvloop
async def test_delayed_learning_keeps_relearning_until_the_window_closes() -> None:
    async with environment() as env:
        call = await make_call(env)
        first, second, third = await env.phone(), await env.phone(), await env.phone()
        first.send(rtp(1), call.a_rtp)
        await call.b.recv()
        second.send(rtp(2), call.a_rtp)
        await call.b.recv()
        assert call.a_rtp.endpoint == second.addr and not call.a_rtp.confirmed
        past_learning_window(env, call.a_rtp)
        third.send(rtp(3), call.a_rtp)  # first packet after the window: confirms its source
        await call.b.recv()
        assert call.a_rtp.confirmed and call.a_rtp.endpoint == third.addr
        first.send(rtp(4), call.a_rtp)  # confirmed: other sources are forwarded but teach nothing
        await call.b.expect(rtp(4), source=call.b_rtp)
        assert call.a_rtp.endpoint == third.addr
        call.b.send(rtp(5), call.b_rtp)
        await third.expect(rtp(5), source=call.a_rtp)


@on_uvloop
async def test_immediate_learning_confirms_the_first_source() -> None:
    async with environment() as env:
        call = await make_call(env, learning=EndpointLearning.IMMEDIATE)
        first, second = await env.phone(), await env.phone()
        first.send(rtp(1), call.a_rtp)
        second.send(rtp(2), call.a_rtp)
        await call.b.recv()
        await call.b.recv()
        assert call.a_rtp.confirmed and call.a_rtp.endpoint == first.addr


@on_uvloop
async def test_heuristic_learning_prefers_the_advertised_address() -> None:
    async with environment() as env:
        call = await make_call(env, learning=EndpointLearning.HEURISTIC)
        other = await env.phone()
        other.send(rtp(1), call.a_rtp)
        await call.b.recv()
        assert call.a_rtp.endpoint == other.addr  # best seen so far: same IP, other port
        call.a.send(rtp(2), call.a_rtp)
        await call.b.recv()
        other.send(rtp(3), call.a_rtp)
        await call.b.recv()
        assert call.a_rtp.endpoint == call.a.addr  # the SDP address outranks the other port


@on_uvloop
async def test_stray_rtcp_on_the_rtp_port_teaches_nothing() -> None:
    async with environment() as env:
        call = await make_call(env)
        stray = await env.phone()
        stray.send(rtcp_sr(), call.a_rtp)
        await call.b.expect(rtcp_sr(), source=call.b_rtp)  # still forwarded, as RTP
        assert call.a_rtp.endpoint == call.a.addr


@on_uvloop
async def test_asymmetric_never_learns() -> None:
    async with environment() as env:
        call = await make_call(env, asymmetric=True)
        elsewhere = await env.phone()
        elsewhere.send(rtp(1), call.a_rtp)
        await call.b.expect(rtp(1), source=call.b_rtp)
        past_learning_window(env, call.a_rtp)
        elsewhere.send(rtp(2), call.a_rtp)
        await call.b.expect(rtp(2), source=call.b_rtp)
        assert call.a_rtp.confirmed and call.a_rtp.endpoint == call.a.addr
        call.b.send(rtp(3), call.b_rtp)
        await call.a.expect(rtp(3), source=call.a_rtp)
        assert elsewhere.idle()


@on_uvloop
async def test_strict_source_drops_other_sources_after_confirmation() -> None:
    async with environment() as env:
        call = await make_call(env, strict_source=True)
        intruder = await env.phone()
        past_learning_window(env, call.a_rtp)
        call.a.send(rtp(1), call.a_rtp)
        await call.b.expect(rtp(1), source=call.b_rtp)
        assert call.a_rtp.confirmed
        for seq in range(2, 5):
            intruder.send(rtp(seq), call.a_rtp)
        await until(lambda: call.a_rtp.packets == 4, "intruder packets counted")
        call.a.send(rtp(5), call.a_rtp)
        await call.b.expect(rtp(5), source=call.b_rtp)  # the intruder's three never arrived
        assert call.a_rtp.dropped_source == 3 and call.a_rtp.errors == 3
        assert call.a_rtp.packets == 5  # dropped packets are still counted as received
        assert call.a_rtp.endpoint == call.a.addr


@on_uvloop
async def test_media_handover_follows_a_new_source() -> None:
    async with environment() as env:
        call = await make_call(env, media_handover=True)
        past_learning_window(env, call.a_rtp, call.b_rtp)
        call.a.send(rtp(1), call.a_rtp)
        await call.b.recv()
        assert call.a_rtp.confirmed and call.a_rtp.endpoint == call.a.addr
        moved = await env.phone()  # e.g. the phone changed networks
        moved.send(rtp(2), call.a_rtp)
        await call.b.expect(rtp(2), source=call.b_rtp)
        assert call.a_rtp.endpoint == moved.addr
        call.b.send(rtp(3), call.b_rtp)
        await moved.expect(rtp(3), source=call.a_rtp)
        assert call.a.idle() and call.a_rtp.errors == 0


@on_uvloop
async def test_new_signalling_unconfirms_and_a_new_sdp_address_replaces_the_endpoint() -> None:
    async with environment() as env:
        call = await make_call(env, learning=EndpointLearning.IMMEDIATE)
        call.a.send(rtp(1), call.a_rtp)
        await call.b.recv()
        assert call.a_rtp.confirmed
        new_phone = await env.phone()
        call.a_rtp.advertise(new_phone.addr)  # re-INVITE with a new address
        call.a_rtp.signalled(env.clock.now)
        assert not call.a_rtp.confirmed and call.a_rtp.endpoint == new_phone.addr
        call.b.send(rtp(2), call.b_rtp)
        await new_phone.expect(rtp(2), source=call.a_rtp)


# --- control: block, silence, no destination ---------------------------------------------------------


@on_uvloop
async def test_blocked_media_is_dropped_and_counted_but_rtcp_passes() -> None:
    async with environment() as env:
        call = await make_call(env, a_mux=True)
        assert call.b_ctl and call.b_rtcp
        call.a_rtp.blocked = True
        for seq in range(3):
            call.a.send(rtp(seq), call.a_rtp)
        call.a.send(rtcp_sr(), call.a_rtp)
        await call.b_ctl.expect(rtcp_sr(), source=call.b_rtcp)
        await until(lambda: call.a_rtp.dropped_blocked == 3, "three blocked packets")
        call.a_rtp.blocked = False
        call.a.send(rtp(9), call.a_rtp)
        await call.b.expect(rtp(9), source=call.b_rtp)  # the first RTP to arrive is after unblocking
        assert call.a_rtp.packets == 5 and call.a_rtp.errors == 0


@on_uvloop
async def test_silence_replaces_the_payload_and_keeps_the_header() -> None:
    async with environment() as env:
        call = await make_call(env)
        call.a_rtp.silence = silence_for("PCMU", 8000)
        packet = rtp(7, payload=os.urandom(160))
        call.a.send(packet, call.a_rtp)
        got, _ = await call.b.recv()
        assert got[:12] == packet[:12] and got[12:] == b"\xff" * 160
        call.a_rtp.silence = None
        call.a.send(packet, call.a_rtp)
        await call.b.expect(packet, source=call.b_rtp)


@on_uvloop
async def test_no_destination_yet_drops_and_counts() -> None:
    async with environment() as env:
        call = await make_call(env)
        call.b_rtp.advertise(None)  # e.g. the answer has not arrived
        for seq in range(3):
            call.a.send(rtp(seq), call.a_rtp)
        await until(lambda: call.a_rtp.dropped_no_destination == 3, "drops counted")
        call.b_rtp.advertise(call.b.addr)
        call.a.send(rtp(3), call.a_rtp)
        await call.b.expect(rtp(3), source=call.b_rtp)
        assert call.a_rtp.errors == 0


# --- garbage and errors --------------------------------------------------------------------------------


@on_uvloop
async def test_garbage_on_the_rtp_port_is_forwarded_like_rtpengine_does() -> None:
    async with environment() as env:
        call = await make_call(env)
        garbage = [b"", b"hello", bytes(11), bytes(172), b"\x40" + os.urandom(100), b"\x3f" + os.urandom(171)]
        for datagram in garbage:
            call.a.send(datagram, call.a_rtp)
        call.a.send(rtp(1), call.a_rtp)
        for datagram in [*garbage, rtp(1)]:
            await call.b.expect(datagram, source=call.b_rtp)
        assert call.a_rtp.packets == len(garbage) + 1
        assert call.a_rtp.bytes == sum(map(len, garbage)) + len(rtp(1))
        assert call.a_rtp.malformed == len(garbage) and call.a_rtp.errors == 0
        assert call.a_rtp.last_payload_type == 0


@on_uvloop
async def test_random_datagrams_never_break_forwarding() -> None:
    async with environment() as env:
        call = await make_call(env, a_mux=True)
        call.a_rtp.silence = silence_for("PCMA", 8000)
        call.a_rtp.payload_types = bytes(128)
        for _ in range(300):
            call.a.send(os.urandom(int.from_bytes(os.urandom(1), "big") % 64), call.a_rtp)
        await until(lambda: call.a_rtp.packets == 300, "all garbage received")
        assert call.a_rtp.failures == 0
        call.a_rtp.silence = None
        call.a.send(rtp(1), call.a_rtp)
        await until(lambda: call.a_rtp.packets == 301, "good packet received")
        while True:  # drain what the garbage produced; the good packet must still come through
            got, _ = await call.b.recv()
            if got == rtp(1):
                break


@on_uvloop
async def test_unknown_payload_type_counts_an_error_and_is_forwarded() -> None:
    async with environment() as env:
        call = await make_call(env)
        table = bytearray(128)
        table[0] = table[101] = 1
        call.a_rtp.payload_types = bytes(table)
        for packet in (rtp(1, pt=0), rtp(2, pt=101), rtp(3, pt=99)):
            call.a.send(packet, call.a_rtp)
            await call.b.expect(packet, source=call.b_rtp)
        assert call.a_rtp.errors == 1 and call.a_rtp.packets == 3


@on_uvloop
async def test_broken_rtcp_is_dropped_and_counted() -> None:
    async with environment() as env:
        call = await make_call(env)
        assert call.a_ctl and call.b_ctl and call.a_rtcp and call.b_rtcp
        version_0 = b"\x00" + rtcp_sr()[1:]
        call.a_ctl.send(version_0, call.a_rtcp)
        call.a_ctl.send(b"garbagegarbage", call.a_rtcp)  # length field runs past the end: forwarded
        await call.b_ctl.expect(b"garbagegarbage", source=call.b_rtcp)
        assert call.a_rtcp.errors == 1 and call.a_rtcp.dropped_malformed == 1
        assert call.a_rtcp.packets == 2


@on_uvloop
async def test_sending_to_a_closed_port_is_harmless() -> None:
    async with environment() as env:
        call = await make_call(env)
        gone = await env.phone()
        dead = gone.addr
        gone.transport.close()
        env.phones.remove(gone)
        await asyncio.sleep(0)
        call.b_rtp.advertise(dead)  # B's SDP points at a port nobody listens on: ICMP unreachable
        for seq in range(20):
            call.a.send(rtp(seq), call.a_rtp)
        await until(lambda: call.a_rtp.packets == 20, "packets to the dead port handled")
        call.b.send(rtp(100), call.b_rtp)  # the socket that sent into the void still receives
        await call.a.expect(rtp(100), source=call.a_rtp)
        call.b_rtp.advertise(call.b.addr)
        call.a.send(rtp(21), call.a_rtp)
        await call.b.expect(rtp(21), source=call.b_rtp)
        assert not call.a_rtp.closed and not call.b_rtp.closed


@on_uvloop
async def test_a_failing_send_counts_on_the_sink_and_forwarding_goes_on() -> None:
    async with environment() as env:
        call = await make_call(env, asymmetric=True)
        call.b_rtp.advertise((HOST, 0))  # the kernel refuses to send to port 0 (EINVAL)
        call.a.send(rtp(1), call.a_rtp)
        await until(lambda: call.b_rtp.errors == 1, "send error counted on the sink")
        call.b_rtp.advertise(call.b.addr)
        call.a.send(rtp(2), call.a_rtp)
        await call.b.expect(rtp(2), source=call.b_rtp)
        assert call.a_rtp.failures == 0


# --- lifecycle --------------------------------------------------------------------------------------


@on_uvloop
async def test_closing_a_stream_frees_its_port_and_stops_forwarding_to_it() -> None:
    async with environment() as env:
        call = await make_call(env)
        in_use = env.allocator.in_use
        port = call.b_rtp.local_port
        env.relay.close_stream(call.b_rtp)
        env.relay.close_stream(call.b_rtp)  # twice: harmless
        assert call.b_rtp.closed
        # a watched socket's descriptor is closed by the event loop on its next iteration, and only then
        # is the port free: it is never handed out while still bound
        await until(lambda: env.allocator.in_use == in_use - 1, "the port is released")
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((HOST, port))
        probe.close()
        call.a.send(rtp(1), call.a_rtp)
        await until(lambda: call.a_rtp.dropped_no_destination == 1, "drop towards the closed stream")
        assert env.relay.open_streams == 3


# --- learning rules without sockets, and the clock ------------------------------------------------------


def test_delayed_learning_window_is_counted_in_whole_seconds() -> None:
    stream = PacketStream(HOST, 30000)
    stream.advertise(("127.0.0.1", 4000))
    stream.signalled(1000.9)
    packet = rtp(1)
    assert stream.check_source(packet, ("127.0.0.1", 5000), now=1003.99)
    assert not stream.confirmed and stream.endpoint == ("127.0.0.1", 5000)
    assert stream.check_source(packet, ("127.0.0.1", 6000), now=1004.0)
    assert stream.confirmed and stream.endpoint == ("127.0.0.1", 6000)


def test_without_signalling_a_stream_learns_but_never_confirms() -> None:
    stream = PacketStream(HOST, 30000)
    stream.advertise(("127.0.0.1", 4000))
    for port in (5000, 6000):
        assert stream.check_source(rtp(1), ("127.0.0.1", port), now=1e9)
    assert not stream.confirmed and stream.endpoint == ("127.0.0.1", 6000)


def test_a_stream_without_sdp_address_forwards_and_learns_nothing() -> None:
    stream = PacketStream(HOST, 30000)
    stream.signalled(0.5)
    stream.strict_source = True
    assert stream.check_source(rtp(1), ("127.0.0.1", 5000), now=100.0)
    assert stream.endpoint is None and not stream.confirmed


def test_ipv6_sources_compare_by_address_and_port() -> None:
    stream = PacketStream("::1", 30000)
    stream.advertise(("0:0::1", 4000))  # normalized to "::1"
    stream.strict_source = True
    stream.learning = EndpointLearning.IMMEDIATE
    stream.signalled(1.0)
    assert stream.check_source(rtp(1), ("::1", 4000, 0, 0), now=2.0)  # as uvloop reports IPv6 sources
    assert stream.confirmed and stream.endpoint == ("::1", 4000)
    assert stream.check_source(rtp(2), ("::1", 4000, 0, 0), now=2.0)
    assert not stream.check_source(rtp(3), ("::1", 4001, 0, 0), now=2.0)
    assert stream.dropped_source == 1


def test_endpoint_learning_names() -> None:
    assert EndpointLearning.parse("heuristic") is EndpointLearning.HEURISTIC
    assert EndpointLearning.parse("Delayed") is EndpointLearning.DELAYED
    with pytest.raises(KeyError):
        EndpointLearning.parse("sometimes")


@on_uvloop
async def test_coarse_clock_follows_time_while_started() -> None:
    loop = asyncio.get_running_loop()
    clock = CoarseClock()
    clock.start(loop, interval=0.01)
    assert clock.running
    clock.now = clock.mono = 0.0
    await until(lambda: clock.now > 0 and clock.mono > 0, "clock refreshed by the loop")
    clock.stop()
    assert not clock.running  # no refresh is scheduled any more
    clock.tick()
    assert clock.now > 0
