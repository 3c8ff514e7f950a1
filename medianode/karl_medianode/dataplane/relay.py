"""The media relay: one UDP socket per packet stream, forwarding each datagram to its sink's peer.

A `PacketStream` is one local socket of a call (rtpengine's "packet stream"): the port a party sends to,
and at the same time the port that party receives from. A datagram received on stream S is counted on S
and sent out through the socket of S's sink to the sink's `endpoint` — the address of the other party.

Endpoint learning (rtpengine 10.5, `--endpoint-learning` / NG `endpoint-learning`, default `delayed`)
---------------------------------------------------------------------------------------------------
Packets to a party go to its stream's `endpoint`, initially the `advertised` address from its SDP.
`check_source` runs for a packet received from the party while the stream is unconfirmed, or with
`strict_source`/`media_handover`:

* A stream with no advertised address yet (its party has not sent SDP) forwards without learning.
* Before confirmation, a packet that looks like RTCP (second octet 194..223) arriving on an RTP socket is
  forwarded but ignored for learning (endpoints that send stray RTCP to the RTP port).
* `asymmetric` and `off` confirm at once without learning: the endpoint stays the advertised address.
* `immediate`: the first packet's source becomes the endpoint and the stream is confirmed.
* `delayed`: up to 3 s after the last signalling of the call (whole seconds: while
  int(now) <= int(last_signal) + 3, and forever if there never was a signal) every packet's source
  becomes the endpoint without confirming; the first packet after that window confirms its source.
* `heuristic`: as `delayed`, but the source used is the best one seen since the last signalling: the
  exact advertised address, else the advertised IP with another port, else the advertised port with
  another IP, else any. (10.5 forgets what it saw on every clock tick, which makes the ranking almost
  ineffective; Karl ranks as rtpengine's documentation and later versions do.)
* Once confirmed, the source address is ignored, unless `strict_source` (a packet from anywhere but the
  endpoint is dropped and counted in `errors` and `dropped_source`, after being counted as received) or
  `media_handover` (a new source becomes the endpoint at once; this stream and its sinks are unconfirmed,
  so the next packet confirms it again).
* New signalling (`signalled`) unconfirms the stream (not an asymmetric one); a changed advertised
  address (`advertise`) replaces the endpoint.

Datagram handling (as observed on rtpengine 10.5.3.5, userspace forwarding)
---------------------------------------------------------------------------
* Every datagram counts in `packets`/`bytes`/`last_packet` of the receiving stream, dropped or not.
* RTP sockets forward everything, including datagrams that are not RTP at all (shorter than 12 bytes,
  version != 2, empty): rtpengine does not count those as errors; Karl counts them in `malformed` only.
  An RTP packet whose payload type is not in `payload_types` counts in `errors` and is still forwarded.
* RTCP (on a dedicated RTCP socket, or recognised on an rtcp-mux socket) goes to `rtcp_sink`. A compound
  that rtpengine's parser rejects (e.g. version != 2) is dropped and counted in `errors` and
  `dropped_malformed`; one whose length fields run past the datagram is forwarded.
* `blocked` drops RTP (and anything else not RTCP), never RTCP; `silence` rewrites RTP payloads only.
* A sink without destination (no advertised address yet, e.g. before the answer) drops silently
  (`dropped_no_destination`; rtpengine counts nothing). Send failures count in the sink's `errors`.

Quality (slow paths only)
-------------------------
* RTP sequence numbers: the hot path compares each packet's sequence number (and the last octet of its
  SSRC) with the one expected and calls `sequence_break` only when they differ. There a gap of fewer than
  `MAX_DROPOUT` packets counts as `lost`, a packet up to `MAX_MISORDER` behind is late (it fills a gap
  counted before); a larger jump restarts the count once the next packet confirms the new numbering (a
  lone stray packet is ignored), and a new SSRC restarts it at once. `lost` is thus RFC 3550's "expected
  minus received" for the leg from the party to Karl, with duplicates counted as late arrivals.
* RTCP goes to the stream's `quality` link (the call's `CallQuality`) before it is checked and forwarded:
  like rtpengine, the reports ahead of a broken part of a compound count even though it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from karl_core.memo import short_text_cache
from karl_core.session import Address, Endpoint, EndpointLearning, SrtpProgress
from karl_medianode.clock import CoarseClock
from karl_medianode.dataplane.srtp_context import SrtpError, SrtpTransform
from karl_medianode.engine.media_view import STREAM_COUNTERS
from karl_medianode.quality import CallQuality
from karl_medianode.rtp.packet import rtcp_is_valid

Silencer = Callable[[bytes], bytes]


class MediaStage(Protocol):
    """An opt-in stage RTP goes through instead of being sent at once (the jitter buffer): it is handed
    each RTP packet the relay accepted, and sends it on later with `PacketStream.send_on`."""

    def accept(self, data: bytes) -> None: ...

    def close(self) -> None: ...


PT_UNKNOWN = 0
PT_FORWARD = 1
PT_BLOCKED = 2

LEARNING_DELAY = 3
"""Seconds after the last signalling during which `delayed`/`heuristic` learning keeps re-learning."""

MAX_DROPOUT = 3000
"""A forward jump in RTP sequence numbers up to this counts as loss; a longer one restarts (RFC 3550)."""
MAX_MISORDER = 100
"""A packet this far behind the expected sequence number is a late arrival, not a restart."""
MAX_SOURCES = 64
"""RTP SSRCs remembered per call for the RTCP statistics."""
MAX_RTCP_READ_PER_SECOND = 20
"""RTCP compounds per second and party that the statistics read; the rest is forwarded unread (a party
sends a few a second; a flood must not cost the event loop the reading)."""


def normalize_address(addr: tuple[Any, ...]) -> Address:
    """(host, port) with the host in canonical form, as received datagrams report it."""
    return (_canonical_host(addr[0]), int(addr[1]))


@short_text_cache(maxsize=4096, max_length=64)
def _canonical_host(host: str) -> str:
    """Cached: every offer and answer configures its streams with their parties' addresses, and
    `ipaddress` takes microseconds to parse one."""
    return str(ipaddress.ip_address(host))


class PacketStream:
    """One local media socket and everything the hot path needs to forward what arrives on it."""

    __slots__ = (
        "_detected",
        "advertised",
        "asymmetric",
        "blocked",
        "bytes",
        "closed",
        "confirmed",
        "control",
        "dropped_blocked",
        "dropped_malformed",
        "dropped_no_destination",
        "dropped_source",
        "endpoint",
        "errors",
        "failures",
        "gaps",
        "ice_held",
        "is_rtcp",
        "jitter",
        "last_packet",
        "last_rtcp_ssrc",
        "last_rtp",
        "last_signal",
        "late",
        "learned",
        "learning",
        "local_ip",
        "local_port",
        "lost",
        "malformed",
        "media_handover",
        "next_seq",
        "on_latch",
        "packets",
        "payload_types",
        "probation",
        "quality",
        "quality_failures",
        "rtcp_bytes",
        "rtcp_mux",
        "rtcp_packets",
        "rtcp_sink",
        "rtp_ssrc",
        "sdp_peer",
        "sequence_restarts",
        "silence",
        "sink",
        "sock",
        "srtp_failures",
        "srtp_in",
        "srtp_out",
        "ssrc_tail",
        "strict_source",
    )

    def __init__(self, local_ip: str, local_port: int, sock: socket.socket | None = None) -> None:
        self.local_ip = local_ip
        self.local_port = local_port
        self.sock = sock
        self.sdp_peer: Endpoint | None = None
        """The party's address as its SDP gave it, also an unspecified one (hold) — for `query`; the
        relay itself sends to `endpoint`."""

        self.advertised: Address | None = None
        """The party's address from its SDP. Set it with `advertise`."""
        self.endpoint: Address | None = None
        """Where packets to this party go: the learned address, until then the advertised one."""
        self.learned: Address | None = None
        self.confirmed = False
        self.learning = EndpointLearning.DELAYED
        self.on_latch: Callable[[], None] | None = None
        """Told when the stream settles on a party's address (confirmed, or moved by media handover):
        the call's state changed (slow path)."""
        self.last_signal = 0.0
        """Wall-clock time of the call's last signalling (offer/answer); set with `signalled`."""
        self._detected: list[Address | None] | None = None

        self.sink: PacketStream | None = None
        """RTP received here goes out through the sink's socket to the sink's endpoint."""
        self.rtcp_sink: PacketStream | None = None
        """RTCP received here goes there (the peer's RTCP stream, or its RTP stream if it muxes)."""
        self.rtcp_mux = False
        """This RTP socket also carries RTCP, told apart by its second octet."""
        self.is_rtcp = False
        """A dedicated RTCP socket: everything received is RTCP and goes to `rtcp_sink`."""

        self.asymmetric = False
        self.strict_source = False
        self.media_handover = False
        self.blocked = False
        self.silence: Silencer | None = None
        """Rewrites an RTP packet's payload (see `rtp.silence`); must not raise."""
        self.payload_types: bytes | None = None
        """128 entries, one per payload type: PT_UNKNOWN (not in the SDP: counted as an error, still
        forwarded), PT_FORWARD, or PT_BLOCKED (dropped); None: don't check."""
        self.closed = False

        self.packets = 0
        self.bytes = 0
        self.errors = 0
        """rtpengine's `errors`: unknown payload types, strict-source drops, bad RTCP, failed sends."""
        self.rtcp_packets = 0
        """RTCP received on this (rtcp-mux) RTP socket; also included in `packets`."""
        self.rtcp_bytes = 0
        self.malformed = 0
        """Datagrams on an RTP socket that are not RTP (too short or version != 2); still forwarded."""
        self.dropped_blocked = 0
        self.dropped_no_destination = 0
        self.dropped_source = 0
        self.dropped_malformed = 0
        self.failures = 0
        """Datagrams lost to an exception while handling them (bad destination, silencer bug, ...)."""
        self.last_packet = 0.0
        self.last_rtp: bytes | None = None
        """The last RTP datagram received (kept by reference; `last_ssrc`/`last_payload_type` read it)."""

        self.last_rtcp_ssrc: int | None = None
        """Sender SSRC of the last valid RTCP compound received (what `query` shows for an RTCP socket)."""
        self.next_seq = -1
        """The RTP sequence number expected next (-1: no RTP yet)."""
        self.rtp_ssrc = b""
        """The SSRC (4 bytes) the sequence numbers belong to."""
        self.ssrc_tail = -1
        """Its last octet, which the hot path compares."""
        self.probation = -1
        """After a jump in sequence numbers: the number that would confirm the new numbering."""
        self.lost = 0
        """RTP packets missing from the sequence numbers (late arrivals deducted)."""
        self.gaps = 0
        """RTP packets missing when their successors arrived (never deducted: a counter for metrics)."""
        self.late = 0
        """RTP packets that arrived behind the sequence (reordered or duplicated)."""
        self.sequence_restarts = 0
        """New SSRCs and jumps too large to be loss."""
        self.quality: QualityLink | None = None
        """Where this stream's RTCP and new RTP sources are reported (set by the call engine)."""
        self.quality_failures = 0
        """RTCP compounds the quality statistics failed on (forwarded all the same)."""
        self.jitter: MediaStage | None = None
        """The jitter buffer stage RTP goes through instead of being sent at once (opt-in)."""
        self.srtp_in: SrtpTransform | None = None
        """SDES terminated on this party's leg: unprotects what the party sends (SRTP and SRTCP) ..."""
        self.srtp_out: SrtpTransform | None = None
        """... and protects what is sent to it through this socket. None on plain legs."""
        self.srtp_failures = 0
        """SRTP/SRTCP packets that failed to unprotect (authentication, replay) or protect: dropped."""
        self.ice_held = False
        """ICE selected the party's address (`ice_selected`): signalling and media do not move it."""
        self.control: Callable[[PacketStream, bytes, Any], None] | None = None
        """Karl is an ICE agent or terminates DTLS towards this party: STUN and DTLS datagrams go there
        (slow path), not on."""

    def ice_selected(self, address: Address | None) -> None:
        """ICE chose where this party receives media (None: consent lost, nowhere until it recovers).
        From then on ICE alone moves it: neither the SDP address nor latching does."""
        self.ice_held = True
        self.endpoint = address
        if address is not None:
            self.learned = address
            self.confirmed = True
            if self.on_latch is not None:
                self.on_latch()

    def protect(self, data: bytes, rtcp: bool) -> bytes | None:
        """`data` protected for this stream's party; None: it could not be (counted)."""
        assert self.srtp_out is not None
        try:
            return self.srtp_out.protect_rtcp(data) if rtcp else self.srtp_out.protect(data)
        except SrtpError:
            self.srtp_failures += 1
            self.errors += 1
            return None

    def __repr__(self) -> str:
        kind = "RTCP" if self.is_rtcp else "RTP"
        return f"<PacketStream {kind} {self.local_ip}:{self.local_port} -> {self.endpoint}>"

    @property
    def last_payload_type(self) -> int | None:
        data = self.last_rtp
        return None if data is None else data[1] & 0x7F

    @property
    def last_ssrc(self) -> int | None:
        data = self.last_rtp
        return None if data is None else int.from_bytes(data[8:12], "big")

    def stored_counters(self) -> dict[str, int]:
        """The counters a stored stream keeps besides packets, bytes, errors and lost (non-zero ones)."""
        return {name: value for name in STREAM_COUNTERS if (value := getattr(self, name))}

    @property
    def srtp_received(self) -> tuple[SrtpProgress, ...]:
        return () if self.srtp_in is None else self.srtp_in.progress()

    @property
    def srtp_sent(self) -> tuple[SrtpProgress, ...]:
        return () if self.srtp_out is None else self.srtp_out.progress()

    def sequence_break(self, data: bytes, seq: int) -> None:
        """Slow path of the sequence check: `seq` is not the number expected, or the last octet of the
        SSRC changed (a cheap test that catches a new SSRC continuing the old one's numbering)."""
        if 200 <= data[1] <= 204:
            return  # an RTCP SR/RR/SDES/BYE/APP sent to the RTP port (RFC 5761: never RTP)
        ssrc = data[8:12]
        expected = self.next_seq
        if expected < 0 or ssrc != self.rtp_ssrc:
            if expected >= 0:
                self.sequence_restarts += 1
            self.rtp_ssrc = ssrc
            self.ssrc_tail = data[11]
            self.probation = -1
            self.next_seq = (seq + 1) & 0xFFFF
            if self.quality is not None:
                try:
                    self.quality.new_source(self, int.from_bytes(ssrc, "big"), data[1] & 0x7F)
                except Exception as exc:
                    self.quality_failures += 1
                    self.quality.failed(exc)
            return
        delta = (seq - expected) & 0xFFFF
        if delta < MAX_DROPOUT:
            self.lost += delta
            self.gaps += delta
            self.next_seq = (seq + 1) & 0xFFFF
        elif delta >= 0x10000 - MAX_MISORDER:
            self.late += 1
            if self.lost > 0:
                self.lost -= 1
        elif seq == self.probation:
            # two packets in a row agree on the new numbering: the sender restarted it (RFC 3550 A.1)
            self.sequence_restarts += 1
            self.probation = -1
            self.next_seq = (seq + 1) & 0xFFFF
        else:
            self.probation = (seq + 1) & 0xFFFF  # a stray packet, unless the next one follows it

    def send_on(self, data: bytes) -> None:
        """Forward an RTP packet received here, with the relay's checks made now (for stages that hold
        packets back; the hot path does the same inline)."""
        if self.blocked:
            self.dropped_blocked += 1
            return
        if self.silence is not None:
            data = self.silence(data)
        sink = self.sink
        if sink is None or sink.closed or sink.endpoint is None or sink.sock is None:
            self.dropped_no_destination += 1
            return
        if sink.srtp_out is not None:
            protected = sink.protect(data, False)
            if protected is None:
                return
            data = protected
        try:
            sink.sock.sendto(data, sink.endpoint)
        except OSError:
            sink.errors += 1

    def advertise(self, addr: tuple[Any, ...] | None) -> None:
        """The party's SDP address (None: none, e.g. port 0 or a not yet answered side). A change
        replaces the endpoint, as rtpengine does when an SDP brings a new address."""
        new = None if addr is None else normalize_address(addr)
        if new == self.advertised and self.endpoint is not None:
            return
        self.advertised = new
        if not self.ice_held:
            self.endpoint = new

    def signalled(self, now: float) -> None:
        """Signalling (offer/answer/...) touched this stream's call: restart endpoint learning."""
        self.last_signal = now
        self._detected = None
        if not self.ice_held:
            self.unconfirm()

    def unconfirm(self) -> None:
        if not self.asymmetric:
            self.confirmed = False

    def check_source(self, data: bytes, addr: tuple[Any, ...], now: float) -> bool:
        """Endpoint learning and source checks for a datagram from `addr`; False means drop it."""
        advertised = self.advertised
        if advertised is None:
            return True
        if not self.confirmed:
            if not self.is_rtcp and len(data) >= 8 and 194 <= data[1] <= 223:
                return True
            if self.asymmetric or self.learning == EndpointLearning.OFF:
                self.confirmed = True
        if self.confirmed:
            if self.strict_source or self.media_handover:
                endpoint = self.endpoint
                if endpoint is None or addr[0] != endpoint[0] or addr[1] != endpoint[1]:
                    if self.media_handover:
                        self.endpoint = (addr[0], addr[1])
                        self.unconfirm()
                        for sink in (self.sink, self.rtcp_sink):
                            if sink is not None:
                                sink.unconfirm()
                        if self.on_latch is not None:
                            self.on_latch()
                        return True
                    self.errors += 1
                    self.dropped_source += 1
                    return False
            return True
        return self._learn((addr[0], addr[1]), advertised, now)

    def _learn(self, source: Address, advertised: Address, now: float) -> bool:
        waiting = not self.last_signal or int(now) <= int(self.last_signal) + LEARNING_DELAY
        use = source
        if self.learning == EndpointLearning.IMMEDIATE:
            self.confirmed = True
        else:
            if self.learning == EndpointLearning.HEURISTIC:
                detected = self._detected
                if detected is None:
                    detected = self._detected = [None, None, None, None]
                rank = (source[1] != advertised[1]) | ((source[0] != advertised[0]) << 1)
                detected[rank] = source
                use = next(candidate for candidate in detected if candidate is not None)
            if not waiting:
                self.confirmed = True
        # While waiting, a packet from the address learned last changes nothing (re-signalling may
        # have reset the endpoint to the advertised one; only a different source moves it again).
        if not waiting or self.learned is None or use != self.learned:
            self.endpoint = use
            self.learned = use
        if self.confirmed and self.on_latch is not None:
            self.on_latch()
        return True


class QualityLink:
    """Connects one party's media sockets to its call's RTCP statistics (slow paths only).

    `sources` is shared by all links of a call: which RTP socket each SSRC arrives on, so that a report
    about an SSRC uses the payload type that SSRC sends now."""

    __slots__ = (
        "_read_count",
        "_read_window",
        "call",
        "clock_rates",
        "on_failure",
        "party",
        "skipped",
        "sources",
    )

    def __init__(
        self,
        call: CallQuality,
        party: str | None,
        clock_rates: dict[int, int],
        sources: dict[int, PacketStream],
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.call = call
        self.party = party
        self.clock_rates = clock_rates
        self.sources = sources
        self.on_failure = on_failure
        """Told about an exception of the statistics (a bug): the packet is relayed all the same."""
        self.skipped = 0
        """RTCP compounds forwarded unread because the party sent more than MAX_RTCP_READ_PER_SECOND."""
        self._read_window = 0.0
        self._read_count = 0

    def failed(self, exc: BaseException) -> None:
        if self.on_failure is not None:
            with contextlib.suppress(Exception):  # reporting must never cost a packet
                self.on_failure(exc)

    def new_source(self, stream: PacketStream, ssrc: int, payload_type: int) -> None:
        sources = self.sources
        if ssrc not in sources and len(sources) >= MAX_SOURCES:
            del sources[next(iter(sources))]  # bounded against random SSRCs: forget the oldest
        sources[ssrc] = stream
        self.call.rtp_source(ssrc, payload_type, self.party, time.time())

    def rtcp(self, data: bytes) -> None:
        now = time.time()
        if now - self._read_window >= 1.0:
            self._read_window = now
            self._read_count = 0
        self._read_count += 1
        if self._read_count > MAX_RTCP_READ_PER_SECOND:
            self.skipped += 1
            return
        self.call.rtcp(data, now, self.clock_rates, self.party, self._payload_type)

    def _payload_type(self, ssrc: int) -> int | None:
        stream = self.sources.get(ssrc)
        last = stream.last_rtp if stream is not None else None
        if last is None or stream is None or stream.last_ssrc != ssrc or 200 <= last[1] <= 204:
            return None  # (the last datagram was RTCP sent to the RTP port)
        return stream.last_payload_type


class RelayCounters:
    """Node-wide relay counters touched only off the normal path (garbage), read by the node's sweep."""

    __slots__ = ("garbage",)

    def __init__(self) -> None:
        self.garbage = 0
        """Datagrams on media ports that are neither RTP nor RTCP, and broken RTCP compounds."""


class _StreamProtocol(asyncio.DatagramProtocol):
    """The hot path: attribute reads, integer increments and one `sendto` per datagram."""

    __slots__ = ("clock", "counters", "relay", "stream")

    def __init__(
        self,
        stream: PacketStream,
        clock: CoarseClock,
        counters: RelayCounters | None = None,
        relay: Relay | None = None,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.counters = counters
        self.relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.relay is not None:
            self.relay._attached(self.stream, transport)  # type: ignore[arg-type]  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        s = self.stream
        size = len(data)
        if s.control is not None and size >= 13 and (data[0] < 4 or 19 < data[0] < 64):
            # RFC 7983: STUN (ICE checks) or DTLS (handshakes) on a leg where Karl does them
            try:
                s.control(s, data, addr)
            except Exception:
                s.failures += 1
            return
        s.packets += 1
        s.bytes += size
        s.last_packet = self.clock.now
        try:
            if s.srtp_in is not None:
                # a secure party: authenticated before anything else reads it (a forged packet must
                # not move the learned address or the statistics); what is not SRTP is dropped
                try:
                    if s.is_rtcp or (s.rtcp_mux and size >= 8 and 194 <= data[1] <= 223):
                        data = s.srtp_in.unprotect_rtcp(data)
                    else:
                        data = s.srtp_in.unprotect(data)
                except SrtpError:
                    s.srtp_failures += 1
                    s.errors += 1
                    return
                s.bytes -= size - len(data)  # counted decrypted, without the tag, as rtpengine counts
                size = len(data)
            if (not s.confirmed or s.strict_source or s.media_handover) and not s.check_source(
                data, addr, self.clock.now
            ):
                return
            if s.is_rtcp:
                self._rtcp(s, data)
                return
            if size >= 12 and data[0] & 0xC0 == 0x80:
                if s.rtcp_mux and 194 <= data[1] <= 223:
                    s.rtcp_packets += 1
                    s.rtcp_bytes += size
                    self._rtcp(s, data)
                    return
                s.last_rtp = data
                seq = data[2] << 8 | data[3]
                if seq != s.next_seq or data[11] != s.ssrc_tail:
                    s.sequence_break(data, seq)
                else:
                    s.next_seq = (seq + 1) & 0xFFFF
                if s.payload_types is not None:
                    kind = s.payload_types[data[1] & 0x7F]
                    if kind != PT_FORWARD:
                        if kind == PT_BLOCKED:  # e.g. telephone-event under `block DTMF`
                            s.dropped_blocked += 1
                            return
                        s.errors += 1
                if s.jitter is not None:
                    s.jitter.accept(data)
                    return
            else:
                if s.rtcp_mux and size >= 8 and 194 <= data[1] <= 223:
                    s.rtcp_packets += 1
                    s.rtcp_bytes += size
                    self._rtcp(s, data)
                    return
                s.malformed += 1
                if self.counters is not None:
                    self.counters.garbage += 1
            if s.blocked:
                s.dropped_blocked += 1
                return
            if s.silence is not None:
                data = s.silence(data)
            sink = s.sink
            if sink is None or sink.closed or sink.endpoint is None:
                s.dropped_no_destination += 1
                return
            if sink.srtp_out is not None:
                try:
                    data = sink.srtp_out.protect(data)
                except SrtpError:
                    sink.srtp_failures += 1
                    sink.errors += 1
                    return
            # The socket itself, not the transport: it sends empty datagrams too (as rtpengine does)
            # and fails fast when the buffer is full instead of queueing without bound.
            sink.sock.sendto(data, sink.endpoint)  # type: ignore[union-attr]
        except OSError:
            # The send failed (buffer full, unreachable, ...): rtpengine counts that on the sink.
            if s.sink is not None:
                s.sink.errors += 1
        except Exception:
            # Never let a datagram take the transport down (asyncio closes it on an exception).
            s.failures += 1

    def _rtcp(self, s: PacketStream, data: bytes) -> None:
        if s.quality is not None:
            # before the validity check: the reports ahead of a broken part count, as in rtpengine
            try:
                s.quality.rtcp(data)
            except Exception as exc:
                s.quality_failures += 1
                s.quality.failed(exc)
        if not rtcp_is_valid(data):
            s.errors += 1
            s.dropped_malformed += 1
            if self.counters is not None:
                self.counters.garbage += 1
            return
        if len(data) >= 8:
            s.last_rtcp_ssrc = int.from_bytes(data[4:8], "big")
        sink = s.rtcp_sink
        if sink is None or sink.closed or sink.endpoint is None:
            s.dropped_no_destination += 1
            return
        if sink.srtp_out is not None:
            protected = sink.protect(data, True)
            if protected is None:
                return
            data = protected
        sink.sock.sendto(data, sink.endpoint)  # type: ignore[union-attr]

    def error_received(self, exc: Exception) -> None:
        # ICMP errors and failed sends reported by the socket: count, keep the stream running.
        self.stream.errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream.closed = True
        if self.relay is not None:
            # the event loop closes the descriptor right after this: the port is free from now on
            self.relay._detached(self.stream)


class Relay:
    """Owns the event-loop side of packet streams: opening, closing, sending from them.

    `on_close(sock)` is called once a stream's socket is no longer used, so that the port allocator can
    free the port (pass `PortAllocator.release`). The relay keeps no state beyond its own streams.

    Opening a stream is synchronous: the socket is bound already, so the stream can send at once and
    what arrives waits in the kernel's buffer until the event loop has attached its transport (one or
    two loop iterations later). The call engine therefore never awaits between a request and its reply.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: CoarseClock,
        on_close: Callable[[socket.socket], None] | None = None,
    ) -> None:
        self.loop = loop
        self.clock = clock
        self.on_close = on_close
        """Told each socket the relay no longer uses (after the event loop closed its transport)."""
        # None while the transport is being attached
        self._transports: dict[PacketStream, asyncio.DatagramTransport | None] = {}
        self._not_started: dict[PacketStream, asyncio.Task[None]] = {}
        self.counters = RelayCounters()
        self.attach_failures = 0
        """Streams whose socket the event loop refused to watch (their port is released)."""
        self.close_listeners: list[Callable[[PacketStream], None]] = []
        """Told of every stream once, when it is closed (slow path: e.g. the metrics keep its counters)."""

    @property
    def open_streams(self) -> int:
        return len(self._transports)

    def open_stream(self, sock: socket.socket, local_ip: str) -> PacketStream:
        """Start relaying on a bound UDP socket (from `PortAllocator`)."""
        stream = PacketStream(local_ip, sock.getsockname()[1], sock)
        protocol = _StreamProtocol(stream, self.clock, self.counters, self)
        self._transports[stream] = None
        task = self.loop.create_task(self._attach(stream, protocol, sock))
        self._not_started[stream] = task
        task.add_done_callback(functools.partial(self._attach_done, stream))
        return stream

    async def _attach(self, stream: PacketStream, protocol: _StreamProtocol, sock: socket.socket) -> None:
        del self._not_started[stream]
        # watches the socket at once; `connection_made` (→ `_attached`) follows on the next iteration
        await self.loop.create_datagram_endpoint(lambda: protocol, sock=sock)

    def _attached(self, stream: PacketStream, transport: asyncio.DatagramTransport) -> None:
        if stream.closed or stream not in self._transports:
            transport.close()  # closed while its transport was being attached: `_detached` follows
            return
        self._transports[stream] = transport

    def _detached(self, stream: PacketStream) -> None:
        if self._transports.get(stream) is not None:
            self._forget(stream)  # the transport failed on its own
        self._release(stream)

    def _forget(self, stream: PacketStream) -> asyncio.DatagramTransport | None:
        """Drop a stream that ended without `close_stream` (its transport failed, or never came)."""
        transport = self._transports.pop(stream, None)
        for listener in self.close_listeners:
            listener(stream)
        return transport

    def _attach_done(self, stream: PacketStream, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return  # closed before the event loop got to it: `close_stream` released the port
        if task.exception() is not None and stream in self._transports and self._transports[stream] is None:
            self._forget(stream)
            stream.closed = True
            self.attach_failures += 1
            self._release(stream)

    def _release(self, stream: PacketStream) -> None:
        if self.on_close is not None and stream.sock is not None:
            self.on_close(stream.sock)

    def close_stream(self, stream: PacketStream) -> None:
        """Stop relaying on `stream` and give its port back. Closing twice is harmless."""
        stream.closed = True
        if stream.jitter is not None:
            stream.jitter.close()
        if stream not in self._transports:
            return
        transport = self._transports.pop(stream)
        for listener in self.close_listeners:
            listener(stream)
        if transport is not None:
            # The event loop closes the descriptor on its next iteration (after `connection_lost`,
            # which releases the port): until then the port stays taken, so it is never handed out
            # while still bound.
            transport.close()
            return
        task = self._not_started.pop(stream, None)
        if task is not None:  # the event loop never watched the socket: free the port now
            task.cancel()
            self._release(stream)
        # otherwise the transport is being attached: `_attached` closes it, `_detached` frees the port

    def close_all(self) -> None:
        for stream in list(self._transports):
            self.close_stream(stream)

    def send_from(self, stream: PacketStream, data: bytes, addr: tuple[Any, ...]) -> bool:
        """Send `data` from `stream`'s socket to `addr` (slow path: STUN replies, NAT piercing, ...).
        Returns False and counts an error if the send failed."""
        if stream.closed or stream.sock is None:
            return False
        try:
            stream.sock.sendto(data, addr)
        except OSError:
            stream.errors += 1
            return False
        return True
