"""The I/O side of the call engine: it hands requests, timers and the time to the sans-IO engine and
makes its effects true on the relay (open, configure, close packet streams), the store and the
call-ended listeners. It is also the engine's `MediaView`: what the packet streams counted and learned.

Everything here is synchronous: a request's effects are applied before its reply leaves, so the next
request (and the next packet) finds the data plane as the engine described it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from karl_core.logs import RateLimitedLogger
from karl_core.ng.commands import Command
from karl_core.ng.options import NgOptions
from karl_core.sdp.sdes import SdesError, parse_crypto
from karl_core.session import CallState, PacketStreamState
from karl_medianode.clock import CoarseClock
from karl_medianode.dataplane.jitter_stage import JitterStage
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import PacketStream, QualityLink, Relay, normalize_address
from karl_medianode.dataplane.srtp_context import (
    NO_KEY_YET,
    SRTCP_CHECKPOINT_STEP,
    SrtpContext,
    SrtpError,
    SrtpTransform,
)
from karl_medianode.engine import (
    JITTER_BUFFER_BOUNDS,
    Call,
    CallChanged,
    CallEnded,
    CallEngine,
    CloseStream,
    ConfigureStream,
    Effect,
    EngineCounters,
    EngineSettings,
    OpenStream,
    ReplyCheck,
    SendDatagram,
    SendToPeer,
    SetPeer,
    StreamReading,
    StreamSpec,
)
from karl_medianode.engine.media_view import STREAM_COUNTERS
from karl_medianode.engine.streams import SHARED_LIMIT, SilenceCodecs
from karl_medianode.operations.distribution import Distribution
from karl_medianode.quality import QualityTotals
from karl_medianode.rtp.jitter_buffer import JitterBuffer
from karl_medianode.rtp.silence import silencer

log = logging.getLogger("karl.engine")


@dataclass(slots=True)
class _CallLinks:
    """What a call's streams share: the latch callback, which RTP socket each SSRC arrives on, and
    one RTCP statistics link per party and codec table (RTP and RTCP sockets of a party share it,
    and with it the party's RTCP read budget)."""

    on_latch: Callable[[], None]
    sources: dict[int, PacketStream] = field(default_factory=dict)
    quality: dict[tuple[str | None, tuple[tuple[int, int], ...]], QualityLink] = field(default_factory=dict)


class EngineDriver:
    """Runs a `CallEngine` against this node's relay; the node, the NG server and the REST API talk
    to calls through it."""

    def __init__(
        self,
        settings: EngineSettings,
        ports: PortAllocator,
        relay: Relay,
        clock: CoarseClock,
        on_call_ended: Callable[[CallEnded], None] | None = None,
    ) -> None:
        self.ports = ports
        self.relay = relay
        self.clock = clock
        self.engine = CallEngine(settings, ports, self)
        self.jitter_delays = Distribution(JITTER_BUFFER_BOUNDS)
        """How long packets waited in jitter buffers, seconds (for the metrics)."""
        self.on_call_changed: Callable[[Call], None] | None = None
        """Told after every change of a call's state that a store must keep (signalling, block
        switches, a branch deleted, an address learned); `on_call_ended` tells when it is gone."""
        self._on_call_ended = on_call_ended
        self._streams: dict[int, PacketStream] = {}
        self._applied: dict[int, tuple[int, SilenceCodecs | None]] = {}
        self._srtp_keys: dict[int, tuple[str | None, str | None]] = {}
        self._srtp_marks: dict[int, tuple[str, tuple[tuple[int, int, int], ...]]] = {}
        """Per stream with SRTP, its call and where its SRTP stood at the last checkpoint."""
        """Per open stream, the signalling count and silence codecs it was last configured with."""
        self._restored: dict[int, PacketStreamState] = {}
        """Opened streams whose stored counters and addresses come in once they are configured."""
        self._per_call: dict[str, _CallLinks] = {}
        self._rate_maps: dict[tuple[tuple[int, int], ...], dict[int, int]] = {}
        self._quality_log = RateLimitedLogger(log, 30.0)
        self._control_log = RateLimitedLogger(log, 30.0)
        self._unsent_log = RateLimitedLogger(log, 30.0)
        self.unsent_own_datagrams = 0
        """ICE checks and answers and DTLS records of Karl's own that the kernel refused (no route to
        the candidate, an address of another family); not errors of the stream, as in 10.5."""
        self._ice_timer: asyncio.TimerHandle | None = None
        self._ice_due: float | None = None
        self._dead: set[int] = set()
        """Ports of streams whose transport ended on its own: kept from the pool until the engine
        closes the stream, so that they cannot go to another call while this one still names them."""
        relay.on_close = self._socket_done

    # ------------------------------------------------------------------ the engine's door

    def handle(self, command: Command, opts: NgOptions, fits: ReplyCheck | None = None) -> dict[str, Any]:
        """Apply one request and return its reply (`result` included); raises `NgError` like the engine."""
        try:
            outcome = self.engine.handle(command, opts, self.clock.now, fits)
        except BaseException:
            self.apply(self.engine.take_effects())
            raise
        self.apply(outcome.effects)
        return outcome.reply

    def next_deadline(self) -> float | None:
        return self.engine.next_deadline()

    # ICE: checks arrive on the media sockets and are paced at 20 ms, so they get a timer of their own
    # on the event loop (armed for the engine's next ICE deadline) instead of the 1 s timer sweep.

    def _control_received(self, stream: PacketStream, data: bytes, source: tuple[str, int]) -> None:
        """STUN or DTLS on a leg where Karl does ICE or DTLS (RFC 7983: by the first octet)."""
        engine, now, port = self.engine, time.time(), stream.local_port
        try:
            if data[0] < 4:
                effects = engine.handle_stun(port, data, normalize_address(source), now)
            else:
                effects = engine.handle_dtls(port, data, normalize_address(source), now)
        except Exception as exc:  # a bug of ours: the datagram is lost, the call goes on
            self._control_log.warning("ICE/DTLS failed on a datagram (dropped): %r", exc)
            return
        self.apply(effects)

    def _next_transport_deadline(self) -> float | None:
        engine = self.engine
        dues = [d for d in (engine.next_ice_deadline(), engine.next_dtls_deadline()) if d is not None]
        return min(dues) if dues else None

    def _arm_ice_timer(self) -> None:
        due = self._next_transport_deadline()
        if due is None:
            if self._ice_timer is not None:
                self._ice_timer.cancel()
                self._ice_timer, self._ice_due = None, None
            return
        if self._ice_timer is not None and self._ice_due is not None and self._ice_due <= due:
            return
        if self._ice_timer is not None:
            self._ice_timer.cancel()
        self._ice_due = due
        self._ice_timer = self.relay.loop.call_later(max(0.0, due - time.time()), self._ice_timer_fired)

    def _ice_timer_fired(self) -> None:
        self._ice_timer, self._ice_due = None, None
        now = time.time()
        effects = []
        try:
            effects += self.engine.handle_ice_timer(now)
            effects += self.engine.handle_dtls_timer(now)
        except Exception:
            log.exception("ICE/DTLS timers failed")
        self.apply(effects)

    def handle_timer(self, now: float | None = None) -> None:
        self.apply(self.engine.handle_timer(self.clock.now if now is None else now))

    def restore(self, state: CallState, now: float, *, same_host: bool = True) -> Call:
        call, effects = self.engine.restore(state, now, same_host=same_host)
        self.apply(effects)
        return call

    def close_all(self) -> None:
        self.apply(self.engine.close_all(self.clock.now))

    # ------------------------------------------------------------------ effects

    def apply(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            try:
                self._apply(effect)
            except Exception:
                # a bug of ours: the call may be missing a stream, but no other effect is lost
                log.exception("applying %s failed", type(effect).__name__)
        if self._ice_timer is not None or self._next_transport_deadline() is not None:
            self._arm_ice_timer()

    def _apply(self, effect: Effect) -> None:
        if isinstance(effect, ConfigureStream):
            self._configure(effect.spec)
        elif isinstance(effect, OpenStream):
            self._open(effect.spec, effect.restored)
        elif isinstance(effect, CloseStream):
            stream = self._streams.pop(effect.port, None)
            self._applied.pop(effect.port, None)
            self._srtp_keys.pop(effect.port, None)
            self._srtp_marks.pop(effect.port, None)
            self._restored.pop(effect.port, None)
            if stream is not None:
                self.relay.close_stream(stream)
            if effect.port in self._dead:
                self._dead.discard(effect.port)
                self.ports.unreserve(effect.port)
        elif isinstance(effect, SendDatagram):
            self._send(effect.port, effect.data, effect.destination)
        elif isinstance(effect, SendToPeer):
            stream = self._streams.get(effect.port)
            self._send(effect.port, effect.data, stream.endpoint if stream is not None else None)
        elif isinstance(effect, SetPeer):
            stream = self._streams.get(effect.port)
            if stream is not None:
                stream.ice_selected(effect.address)
        elif isinstance(effect, CallChanged):
            call = self.engine.find_call(effect.call_id)
            if call is not None and self.on_call_changed is not None:
                self.on_call_changed(call)
        elif isinstance(effect, CallEnded):
            self._per_call.pop(effect.call_id, None)
            if self._on_call_ended is not None:
                self._on_call_ended(effect)

    def _send(self, port: int, data: bytes, destination: tuple[str, int] | None) -> None:
        """A datagram of the engine's own (ICE, DTLS) from the open stream `port`."""
        stream = self._streams.get(port)
        if stream is None or stream.sock is None or stream.closed or destination is None:
            return
        try:
            stream.sock.sendto(data, destination)
        except OSError as exc:
            # (10.5 ignores failed sends of its own STUN and DTLS; a check to an unroutable candidate
            # is normal ICE, not a fault of the party's media)
            self.unsent_own_datagrams += 1
            self._unsent_log.info("could not send from port %d to %s: %s", port, destination, exc)

    def _open(self, spec: StreamSpec, restored: PacketStreamState | None) -> None:
        sock = self.ports.take(spec.port)
        try:
            stream = self.relay.open_stream(sock, spec.local_ip)
        except BaseException:
            self.ports.release(sock)
            raise
        stream.is_rtcp = spec.is_rtcp
        stream.last_signal = spec.signalled
        self._streams[spec.port] = stream
        if restored is not None:
            self._restored[spec.port] = restored

    def _configure(self, spec: StreamSpec) -> None:
        stream = self._streams[spec.port]
        before = self._applied.get(spec.port)
        signals, silence = before if before is not None else (spec.signals, None)
        policy = spec.policy
        stream.learning = policy.learning
        stream.asymmetric = policy.asymmetric
        stream.strict_source = policy.strict_source
        stream.media_handover = policy.media_handover
        if not spec.ice:
            stream.ice_held = False  # (no ICE, or ICE removed by a re-offer: latching and the SDP again)
        if spec.signals != signals:
            stream.signalled(spec.signalled)  # new signalling: learning starts over
        peer = spec.sdp_peer
        stream.sdp_peer = peer
        stream.advertise(None if peer is None or peer.is_unspecified else (peer.address, peer.port))
        stream.sink = self._streams.get(spec.sink) if spec.sink is not None else None
        stream.rtcp_sink = self._streams.get(spec.rtcp_sink) if spec.rtcp_sink is not None else None
        stream.rtcp_mux = spec.rtcp_mux
        stream.blocked = spec.blocked
        stream.payload_types = spec.payload_types
        stream.control = self._control_received if spec.ice or spec.dtls else None
        self._srtp(stream, spec)
        if before is None or spec.silence != silence:
            stream.silence = (
                None
                if spec.silence is None
                else silencer({pt: (name, rate) for pt, name, rate in spec.silence})
            )
        call = self.engine.find_call(spec.call_id)
        if call is not None:
            clock_rates = self._rate_map(spec.clock_rates)
            links = self._per_call.get(spec.call_id)
            if links is None:
                links = self._per_call[spec.call_id] = _CallLinks(
                    functools.partial(self._latched, spec.call_id)
                )
            stream.on_latch = links.on_latch
            key = (spec.party, spec.clock_rates)
            quality = links.quality.get(key)
            if quality is None:
                quality = QualityLink(
                    call.quality, spec.party, clock_rates, links.sources, self._quality_failed
                )
                links.quality[key] = quality
            stream.quality = quality
            self._jitter_buffer(stream, spec.jitter_buffer, clock_rates)
        restored = self._restored.pop(spec.port, None)
        if restored is not None:
            _carry_on(stream, restored)
        self._applied[spec.port] = (spec.signals, spec.silence)

    def _srtp(self, stream: PacketStream, spec: StreamSpec) -> None:
        """SDES keys of the stream's party: contexts made when they change, kept while they do not
        (their rollover counters and replay windows live in them)."""
        # each direction on its own: a context holds the rollover counter and replay window of its key,
        # and protecting again under the same key from a fresh counter would reuse its keystream
        before_in, before_out = self._srtp_keys.get(spec.port, (None, None))
        if spec.srtp_in != before_in:
            stream.srtp_in = self._srtp_context(spec.srtp_in, sending=False, call_id=spec.call_id)
        if spec.srtp_out != before_out:
            stream.srtp_out = self._srtp_context(spec.srtp_out, sending=True, call_id=spec.call_id)
        self._srtp_keys[spec.port] = (spec.srtp_in, spec.srtp_out)
        if spec.srtp_in or spec.srtp_out:
            self._srtp_marks.setdefault(spec.port, (spec.call_id, ()))
        else:
            self._srtp_marks.pop(spec.port, None)

    def srtp_checkpoints(self) -> list[Call]:
        """Calls whose SRTP moved on since they were last written: a rollover counter went up, or a
        sending context protected another `SRTCP_CHECKPOINT_STEP` SRTCP packets. The timer sweep writes
        them, so that a call restored elsewhere resumes where the peers' SRTP stands."""
        changed: dict[str, Call] = {}
        if self.on_call_changed is None:
            return []  # no store: nothing to keep
        for port, (call_id, before) in self._srtp_marks.items():
            stream = self._streams.get(port)
            if stream is None:
                continue
            mark = _srtp_mark(stream)
            if mark == before:
                continue
            self._srtp_marks[port] = (call_id, mark)
            call = self.engine.find_call(call_id)
            if call is not None:
                changed[call_id] = call
        return list(changed.values())

    def write_srtp_checkpoints(self) -> int:
        """`srtp_checkpoints` written through `on_call_changed`; returns how many calls."""
        calls = self.srtp_checkpoints()
        if self.on_call_changed is not None:
            for call in calls:
                self.on_call_changed(call)
        return len(calls)

    def _srtp_context(self, value: str | None, *, sending: bool, call_id: str) -> SrtpTransform | None:
        if value is None:
            return None
        if not value:
            return NO_KEY_YET  # a secure leg without agreed keys: nothing passes, in the clear or not
        try:
            attribute = parse_crypto(value)
            return SrtpContext.for_sending(attribute) if sending else SrtpContext.for_receiving(attribute)
        except (SdesError, SrtpError) as exc:
            # negotiation picks only what the SRTP library can do: a bug, not bad input. Fail closed
            log.error("cannot set up SRTP for call %s: %s", call_id, exc, extra={"call_id": call_id})
            return NO_KEY_YET

    def _rate_map(self, clock_rates: tuple[tuple[int, int], ...]) -> dict[int, int]:
        """Payload type → clock rate, one dict for all streams with the same table (read-only)."""
        found = self._rate_maps.get(clock_rates)
        if found is None:
            found = dict(clock_rates)
            if len(self._rate_maps) < SHARED_LIMIT:
                self._rate_maps[clock_rates] = found
        return found

    def _jitter_buffer(self, stream: PacketStream, wanted: bool, clock_rates: dict[int, int]) -> None:
        settings = self.engine.settings.jitter_buffer
        if not wanted or settings is None:
            if stream.jitter is not None:
                stream.jitter.close()
                stream.jitter = None
            return
        if isinstance(stream.jitter, JitterStage):
            stream.jitter.clock_rates = clock_rates
            return
        buffer = JitterBuffer(settings.min_delay, settings.max_delay, settings.adaptive)
        stream.jitter = JitterStage(self.relay.loop, stream, buffer, clock_rates, self.jitter_delays.observe)

    def _socket_done(self, sock: socket.socket) -> None:
        """The relay let go of a socket: its port goes back to the pool, unless the engine still has
        the stream (its transport ended on its own): then the port waits for the engine's close."""
        port = self.ports.port_of(sock)
        if port is not None and port in self._streams:
            self.ports.close_keeping_port(sock)
            self._dead.add(port)
            log.warning("media port %d stopped working; its call keeps it until it ends", port)
        else:
            self.ports.release(sock)

    def _latched(self, call_id: str) -> None:
        """A stream settled on a party's address: the stored call must learn it."""
        self.apply([CallChanged(call_id)])

    def _quality_failed(self, exc: BaseException) -> None:
        self._quality_log.warning("call quality statistics failed on a packet (relayed anyway): %r", exc)

    # ------------------------------------------------------------------ MediaView (for the engine)

    def read(self, port: int) -> StreamReading | None:
        return self._streams.get(port)

    def last_packet(self, ports: Iterable[int]) -> float:
        streams = self._streams
        return max((streams[p].last_packet for p in ports if p in streams), default=0.0)

    # ------------------------------------------------------------------ the read side

    @property
    def settings(self) -> EngineSettings:
        return self.engine.settings

    @property
    def counters(self) -> EngineCounters:
        return self.engine.counters

    @property
    def quality_totals(self) -> QualityTotals:
        return self.engine.quality_totals

    @property
    def calls(self) -> dict[str, Call]:
        return self.engine.calls

    @property
    def instance_id(self) -> str:
        return self.engine.instance_id

    @property
    def accepting(self) -> bool:
        return self.engine.accepting

    @accepting.setter
    def accepting(self, value: bool) -> None:
        self.engine.accepting = value

    def all_calls(self) -> Collection[Call]:
        return self.engine.all_calls()

    def find_call(self, call_id: str) -> Call | None:
        return self.engine.find_call(call_id)

    def active_calls(self) -> int:
        return self.engine.active_calls()

    def snapshot(self, call_id: str) -> CallState | None:
        return self.engine.snapshot(call_id)

    def state_document(self, call_id: str) -> dict[str, Any] | None:
        return self.engine.state_document(call_id)

    def stream(self, port: int) -> PacketStream | None:
        """The live packet stream on `port` (None: not open)."""
        return self._streams.get(port)

    def streams_of(self, call: Call) -> list[PacketStream]:
        """The live packet streams of a call."""
        streams = self._streams
        return [streams[s.port] for s in call.all_streams() if s.port in streams]

    def transport_states(self, call: Call, uid: int, index: int) -> tuple[str | None, str | None]:
        agent = self.engine.ice.agent(call.call_id, (uid, index))
        handshake = self.engine.dtls.state_of(call.call_id, (uid, index))
        return (
            None if agent is None else agent.state.value,
            None if handshake is None else handshake.value,
        )

    def media_streams(
        self, call: Call, uid: int, index: int
    ) -> tuple[PacketStream | None, PacketStream | None]:
        """The live RTP and RTCP streams towards party `uid` for its media `index`."""
        ports = call.ports.get((uid, index))
        if ports is None:
            return None, None
        rtp = self._streams.get(ports.rtp.port) if ports.rtp is not None else None
        rtcp = self._streams.get(ports.rtcp.port) if ports.rtcp is not None else None
        return rtp, rtcp


def _srtp_mark(stream: PacketStream) -> tuple[tuple[int, int, int], ...]:
    """What a checkpoint of the stream's SRTP must catch: rollover counters, and SRTCP sent, from the
    first packet on, in steps (a resumed context skips more than a step beyond what was written)."""
    step = SRTCP_CHECKPOINT_STEP
    return tuple(
        (direction * (1 << 32) + p.ssrc, p.rollover, (p.srtcp_sent + step - 1) // step)
        for direction, found in ((0, stream.srtp_received), (1, stream.srtp_sent))
        for p in found
        if p.rollover or p.srtcp_sent
    )


def _carry_on(stream: PacketStream, saved: PacketStreamState) -> None:
    """A restored stream takes over what its predecessor learned and counted (sequence tracking starts
    over: the gap of the restore is no loss)."""
    stream.last_signal = saved.signalled
    if saved.endpoint is not None:
        stream.endpoint = saved.endpoint.as_address()
    stream.learned = saved.learned.as_address() if saved.learned is not None else None
    stream.confirmed = saved.confirmed
    stream.packets, stream.bytes, stream.errors = saved.packets, saved.bytes, saved.errors
    stream.lost, stream.last_packet = saved.lost, saved.last_packet
    for name, value in saved.counters.items():
        if name in STREAM_COUNTERS:
            setattr(stream, name, value)
    if saved.last_rtp is not None:  # what `query` shows until the next packet: a header carrying both
        payload_type, ssrc = saved.last_rtp
        stream.last_rtp = bytes((0x80, payload_type & 0x7F, 0, 0, 0, 0, 0, 0)) + ssrc.to_bytes(4, "big")
    stream.last_rtcp_ssrc = saved.last_rtcp_ssrc
    # SRTP under the same keys: the peers' rollover counters and SRTCP indexes go on
    for context, progress in ((stream.srtp_in, saved.srtp_in), (stream.srtp_out, saved.srtp_out)):
        if isinstance(context, SrtpContext):  # (also with none stored: SRTCP sent before a first write)
            context.resume(progress)
