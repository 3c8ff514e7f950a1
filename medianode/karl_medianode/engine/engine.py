"""The call engine: rtpengine's offer/answer/delete/query semantics over the session model (sans-IO).

It owns the calls of this node and produces the rewritten SDP. It opens no socket and reads no clock:
`handle(command, options, now)` returns the reply and the effects (open, configure, close streams;
call changed; call ended) that the media node applies; ports come from an injected `PortPool`, and
what the data plane saw (counters, learned sources) is read through an injected `MediaView`.
NG framing, retransmissions and option parsing happen before it (see `karl_core.ng`).
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import math
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from karl_core.ng import errors as E
from karl_core.ng.commands import Command
from karl_core.ng.errors import NgError
from karl_core.ng.options import Ice, NgOptions, check_required
from karl_core.sdp import SdpError
from karl_core.session import (
    CallState,
    Codec,
    Endpoint,
    MediaState,
    Monologue,
    PacketStreamState,
    StreamPolicy,
)
from karl_medianode.engine.call_change import CallChange
from karl_medianode.engine.call_stats import call_stats
from karl_medianode.engine.calls import Call
from karl_medianode.engine.effects import (
    CallChanged,
    CallEnded,
    CloseStream,
    Effect,
    OpenStream,
    Outcome,
)
from karl_medianode.engine.media_view import MediaView, StreamReading
from karl_medianode.engine.ports import PortPool, PortsExhausted
from karl_medianode.engine.rewrite.inbound import InboundMedia, InboundSdp, read_sdp
from karl_medianode.engine.rewrite.outbound import (
    OutboundMedia,
    RewriteOrderError,
    SessionRewrite,
    write_sdp,
)
from karl_medianode.engine.rewrite.srtp_boundary import (
    SRTP_TERMINATION_NOT_SUPPORTED,
    crosses_on_answer,
    crosses_on_offer,
)
from karl_medianode.engine.streams import PT_BLOCKED, PT_FORWARD, MediaPorts, SilenceCodecs, StreamSpec
from karl_medianode.quality import CallQuality, QualityTotals

JITTER_BUFFER_BOUNDS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3)

log = logging.getLogger("karl.engine")

# Karl's own error texts (rtpengine has none for these; the call is left as it was).
TOO_MANY_MEDIA = "Too many media in SDP"
REPLY_TOO_LARGE = "Reply too large for one NG datagram"

# rtpengine knows these commands; Karl does not implement them yet and says so instead of faking success.
NOT_SUPPORTED = "Command not supported by Karl yet"

ReplyCheck = Callable[[dict[str, Any]], bool]
"""Told an offer's/answer's reply before it commits; False: the reply cannot be sent (too large)."""

_T = TypeVar("_T")


class LoadLimit(Exception):
    """A new call was refused because the node is full."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class JitterBufferSettings:
    """`jitter_buffer` of the configuration, in seconds."""

    min_delay: float = 0.02
    max_delay: float = 0.2
    adaptive: bool = True


@dataclass
class EngineSettings:
    advertised_ip: str
    media_ip: str
    max_sessions: int = 10000
    max_media: int = 64
    """`m=` lines one SDP may carry."""
    loop_marker: str | None = None
    """What `loop-protect` writes (`a=rtpengine:<marker>`); None: a random one for this engine."""
    delete_delay: float = 30.0
    timeout: float = 60.0
    silent_timeout: float = 3600.0
    final_timeout: float = 0.0
    offer_timeout: float = 3600.0
    jitter_buffer: JitterBufferSettings | None = None
    """RTP of new streams goes through a jitter buffer (None: off, the default)."""


@dataclass
class EngineCounters:
    """Node-wide counters, plain integers (exported at scrape time, never per packet)."""

    managed_sessions: int = 0
    rejected_sessions: int = 0
    timeout_sessions: int = 0
    silent_timeout_sessions: int = 0
    final_timeout_sessions: int = 0
    offer_timeout_sessions: int = 0
    regular_terminated: int = 0
    forced_terminated: int = 0
    closed_packets: int = 0
    closed_bytes: int = 0
    closed_errors: int = 0
    closed_dropped: int = 0  # relay drops of streams already closed (blocked, no destination, ...)
    total_call_seconds: float = 0.0
    ended_calls: int = 0
    ports_exhausted: int = 0
    failed_changes: int = 0
    """Offers/answers that failed and were rolled back (the call, if any, is as it was)."""
    too_many_media: int = 0
    replies_too_large: int = 0
    srtp_termination_refused: int = 0
    ended_by_reason: dict[str, int] = field(default_factory=dict)


_MUX_OFFERED_TO_ANSWERER = {"offer", "require"}
_VERSION_MARK = "\x00sdp-version\x00"


class CallEngine:
    def __init__(self, settings: EngineSettings, ports: PortPool, media: MediaView) -> None:
        self.settings = settings
        self.ports = ports
        self.media = media
        self.calls: dict[str, Call] = {}
        self.counters = EngineCounters()
        self.quality_totals = QualityTotals()
        """What RTCP reports said, over all calls (for the metrics)."""
        self._open_change: CallChange | None = None
        """The change being applied (requests run one at a time, to the end)."""
        self._timers: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        """Each call's current deadline; heap entries that disagree are stale."""
        self._timer_order = itertools.count()
        self._effects: list[Effect] = []
        """What the request being handled has committed so far."""
        self._now = 0.0
        """The time of the request being handled (wall clock, seconds), as the caller gave it."""
        self.accepting = True
        # `loop-protect` marks our SDPs with a=rtpengine:<id>; 12 hex digits like rtpengine's, the same on
        # every node of a fleet (see `NodeSection.loop_marker`)
        self.instance_id = settings.loop_marker or secrets.token_hex(6)

    def take_effects(self) -> list[Effect]:
        """Effects committed by a call into the engine that then raised (none normally: a failing
        request commits nothing); the caller applies them like an `Outcome`'s."""
        effects, self._effects = self._effects, []
        return effects

    def _run(self, now: float, step: Callable[[], _T]) -> tuple[_T, list[Effect]]:
        self._now = now
        result = step()
        return result, self.take_effects()

    # ------------------------------------------------------------------ the one door

    def handle(
        self, command: Command, opts: NgOptions, now: float, fits: ReplyCheck | None = None
    ) -> Outcome:
        """Apply one request about calls at wall-clock time `now`: the whole reply (`result`
        included) and what the media node must do for it. NG, the REST API and the node all come
        through here; it runs to the end before the next request, so requests take effect one at a
        time in the order they are handed in. Raises `NgError` with the reply's error text (then
        nothing changed)."""
        reply, effects = self._run(now, lambda: self._dispatch(command, opts, fits))
        return Outcome(reply, effects)

    def _dispatch(self, command: Command, opts: NgOptions, fits: ReplyCheck | None) -> dict[str, Any]:
        if command is Command.OFFER:
            try:
                reply = self.offer(opts, fits)
            except LoadLimit as exc:
                if "load limit" in opts.supports:
                    return {"result": "load limit", "message": exc.message}
                raise NgError(exc.message) from None
            return {"result": "ok", **reply}
        if command is Command.ANSWER:
            return {"result": "ok", **self.answer(opts, fits)}
        if command is Command.DELETE:
            return self.delete(opts)
        if command is Command.QUERY:
            return self.query(opts)
        if command is Command.LIST:
            return self.list_calls(opts.limit)
        if command in (Command.BLOCK_MEDIA, Command.UNBLOCK_MEDIA):
            return self.block_media(opts, block=command is Command.BLOCK_MEDIA)
        if command in (Command.SILENCE_MEDIA, Command.UNSILENCE_MEDIA):
            return self.block_media(opts, block=command is Command.SILENCE_MEDIA, silence=True)
        if command in (Command.BLOCK_DTMF, Command.UNBLOCK_DTMF):
            return self.block_media(opts, block=command is Command.BLOCK_DTMF, dtmf=True)
        if not opts.call_id:
            raise NgError(E.NO_CALL_ID)
        raise NgError(f"{NOT_SUPPORTED}: {command.value}")

    # ------------------------------------------------------------------ offer / answer

    def offer(self, opts: NgOptions, fits: ReplyCheck | None = None) -> dict[str, Any]:
        """rtpengine's `offer`. Applied as one unit: when it fails (ports, SDP, a fault of ours, or a
        reply `fits` says cannot be sent) the call is left exactly as it was (see `call_change`)."""
        check_required(opts)  # the NG server did this already; direct callers get the same errors
        assert opts.sdp is not None and opts.call_id is not None and opts.from_tag is not None
        inbound = self._read(opts.sdp)
        if opts.loop_protect and self._own_marker_in(inbound):
            return {"sdp": opts.sdp}  # our own output came back (a spiral): hand it back untouched
        self._check_media_count(inbound)
        if any(crosses_on_offer(media, opts) for media in inbound.medias):
            self._refuse_srtp_termination(opts.call_id)
        call = self.calls.get(opts.call_id)
        new_call = call is None
        if call is None:
            self._check_limits()
            call = self._new_call(opts.call_id)
        return self._change(call, new_call, lambda c: self._offer(c, inbound, opts), fits)

    def answer(self, opts: NgOptions, fits: ReplyCheck | None = None) -> dict[str, Any]:
        """rtpengine's `answer`; like `offer`, a failed answer changes nothing."""
        check_required(opts)  # the NG server did this already; direct callers get the same errors
        assert opts.sdp is not None and opts.call_id is not None and opts.from_tag is not None
        assert opts.to_tag is not None
        inbound = self._read(opts.sdp)
        if opts.loop_protect and self._own_marker_in(inbound):
            return {"sdp": opts.sdp}
        call = self.calls.get(opts.call_id)
        if call is None:
            raise NgError(E.UNKNOWN_CALL_ID)
        self._check_media_count(inbound)
        offerer = call.state.by_tag(opts.from_tag)
        if offerer is not None:
            offered = {m.index: m.protocol for m in offerer.medias}
            for media in inbound.medias:
                if crosses_on_answer(media, offered.get(media.index, media.protocol), opts):
                    self._refuse_srtp_termination(opts.call_id)
        return self._change(call, False, lambda c: self._answer(c, inbound, opts), fits)

    def _change(
        self,
        call: Call,
        new_call: bool,
        apply: Callable[[Call], dict[str, Any]],
        fits: ReplyCheck | None,
    ) -> dict[str, Any]:
        change = self._open_change = CallChange(call, new_call)
        try:
            reply = apply(call)
            if fits is not None and not fits(reply):
                self.counters.replies_too_large += 1
                raise NgError(REPLY_TOO_LARGE)
        except BaseException as exc:
            self._open_change = None
            self._roll_back(change)
            if isinstance(exc, PortsExhausted):
                self.counters.ports_exhausted += 1
                raise NgError(E.OUT_OF_PORTS) from None
            raise
        self._open_change = None
        if new_call:
            self.counters.managed_sessions += 1
            log.info("call created", extra={"call_id": call.call_id, "event": "call_created"})
        self._commit(change)
        return reply

    def _roll_back(self, change: CallChange) -> None:
        self.counters.failed_changes += 1
        for port in change.restore():
            self.ports.unreserve(port)
        call = change.call
        if change.new_call and self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]

    def _begin(self, call: Call) -> CallChange:
        """A change outside offer/answer (delete, block, timers): it cannot fail half-way."""
        change = self._open_change = CallChange(call, False)
        return change

    def _commit(self, change: CallChange, *, persist: bool | None = True) -> None:
        """The change is complete: tell the data plane (and the store) what it amounts to.
        `persist` None: tell the store only if streams changed (a timer that found nothing due)."""
        self._open_change = None
        effects = change.effects()
        for effect in effects:
            if isinstance(effect, CloseStream):
                self._count_closed(effect.port)
        self._effects += effects
        call = change.call
        if self.calls.get(call.call_id) is call:
            self._schedule(call)
            if persist or (persist is None and effects):
                self._effects.append(CallChanged(call.call_id))
        elif change.ended is not None:
            self._effects.append(change.ended)

    def _check_media_count(self, inbound: InboundSdp) -> None:
        count = len(inbound.medias)
        if count > self.settings.max_media:
            self.counters.too_many_media += 1
            raise NgError(f"{TOO_MANY_MEDIA}: {count} (the limit is {self.settings.max_media})")

    def _refuse_srtp_termination(self, call_id: str) -> None:
        # (logged, rate-limited, by the NG server with every error reply)
        self.counters.srtp_termination_refused += 1
        raise NgError(SRTP_TERMINATION_NOT_SUPPORTED)

    def _offer(self, call: Call, inbound: InboundSdp, opts: NgOptions) -> dict[str, Any]:
        assert opts.sdp is not None and opts.from_tag is not None
        now = self._now
        call.state.last_signal = now
        call.last_activity = now
        state = call.state
        offerer = state.by_tag(opts.from_tag)
        if offerer is None:
            offerer = state.new_monologue(now, opts.from_tag)
        answerer = self._partner_for_offer(state, offerer, opts, now)
        self._apply_labels(offerer, opts)
        if not inbound.sdp.sessions:
            return _unread_body(opts.sdp)
        if inbound.rewrite_error or not inbound.medias:
            raise NgError(E.SDP_REWRITE_ERROR)
        medias_out = self._negotiate_offer(call, offerer, answerer, inbound, opts)
        return self._sdp_reply(offerer, inbound, medias_out, opts)

    def _answer(self, call: Call, inbound: InboundSdp, opts: NgOptions) -> dict[str, Any]:
        assert opts.sdp is not None and opts.from_tag is not None and opts.to_tag is not None
        state = call.state
        now = self._now
        state.last_signal = now
        call.last_activity = now
        offerer = state.by_tag(opts.from_tag)
        if offerer is None:
            raise NgError(E.INVALID_DIALOGUE)
        answerer = state.by_tag(opts.to_tag)
        if answerer is None:
            partner = state.partner_of(offerer)
            if partner is not None and not partner.tag:
                answerer = partner
                answerer.tag = opts.to_tag
            else:
                # a second fork answering: it becomes the offerer's partner; the old one loses its link
                answerer = state.new_monologue(now, opts.to_tag)
                answerer.answerer = True
                if partner is not None:
                    answerer.via_branch = partner.via_branch
                    answerer.medias = [_copy_media_shell(m) for m in partner.medias]
                    self._release_monologue(call, offerer)
        self._pair(offerer, answerer, state)
        self._apply_labels(answerer, opts, answering=True)
        if not inbound.sdp.sessions:
            return _unread_body(opts.sdp)
        if inbound.rewrite_error or not inbound.medias:
            raise NgError(E.SDP_REWRITE_ERROR)
        state.answered = True
        medias_out = self._negotiate_answer(call, offerer, answerer, inbound, opts)
        return self._sdp_reply(answerer, inbound, medias_out, opts)

    def _sdp_reply(
        self, sender: Monologue, inbound: InboundSdp, medias_out: list[OutboundMedia], opts: NgOptions
    ) -> dict[str, Any]:
        """The rewritten SDP of `sender` for the other party (rtpengine's edits, `o=` version kept)."""
        assert opts.sdp is not None
        try:
            sdp = write_sdp(inbound, medias_out, self._session_rewrite(sender, inbound, opts))
        except RewriteOrderError:
            raise NgError(E.SDP_REWRITE_ERROR) from None
        sdp = self._finish_sdp(sender, sdp, inbound)
        sender.last_sdp = opts.sdp
        return {"sdp": sdp}

    def _read(self, text: str) -> InboundSdp:
        try:
            return read_sdp(text)
        except SdpError as exc:
            raise NgError(exc.reason) from None

    def _own_marker_in(self, inbound: InboundSdp) -> bool:
        mine = f"rtpengine:{self.instance_id}"
        return any(line.kind == "a" and line.value == mine for line in inbound.sdp.lines())

    def _check_limits(self) -> None:
        if not self.accepting:
            self.counters.rejected_sessions += 1
            raise LoadLimit(E.SESSION_LIMIT)
        if len(self.calls) >= self.settings.max_sessions:
            self.counters.rejected_sessions += 1
            raise LoadLimit(E.SESSION_LIMIT)

    def _new_call(self, call_id: str) -> Call:
        now = self._now
        call = Call(
            CallState(call_id, created=now, last_signal=now, last_activity=now),
            quality=CallQuality(self.quality_totals),
        )
        self.calls[call_id] = call  # counted and logged once its first offer commits
        return call

    def _partner_for_offer(
        self, state: CallState, offerer: Monologue, opts: NgOptions, now: float
    ) -> Monologue:
        if opts.to_tag:
            found = state.by_tag(opts.to_tag)
            if found is not None:
                return self._pair(offerer, found, state)
            partner = state.partner_of(offerer)
            if partner is not None and not partner.tag:
                partner.tag = opts.to_tag
                return partner
            return self._pair(offerer, _new_answerer(state, now, opts.to_tag), state)
        partner = state.partner_of(offerer)
        if partner is not None and (opts.via_branch is None or partner.via_branch in (None, opts.via_branch)):
            if opts.via_branch is not None:
                partner.via_branch = opts.via_branch
            return partner
        if opts.via_branch is not None:
            for mono in state.monologues.values():
                if mono.via_branch == opts.via_branch and not mono.tag:
                    return self._pair(offerer, mono, state)
        fresh = _new_answerer(state, now)
        fresh.via_branch = opts.via_branch
        return self._pair(offerer, fresh, state)

    @staticmethod
    def _pair(a: Monologue, b: Monologue, state: CallState | None = None) -> Monologue:
        """Link a and b. A party linked before keeps receiving from `a` but loses its own link (fork)."""
        for one, other in ((a, b), (b, a)):
            previous = one.partner
            if previous is not None and previous != other.uid:
                if previous not in one.former_partners:
                    one.former_partners.insert(0, previous)
                old = state.monologues.get(previous) if state is not None else None
                if old is not None and old.partner == one.uid:
                    old.partner = None
            if other.uid in one.former_partners:
                one.former_partners.remove(other.uid)
        a.partner = b.uid
        b.partner = a.uid
        return b

    @staticmethod
    def _apply_labels(mono: Monologue, opts: NgOptions, answering: bool = False) -> None:
        # in an answer `label` names the answerer (`to-label`/`set-label` only when `label` is absent);
        # via-branch belongs to the answering side only, as rtpengine lists it
        label = (opts.label or opts.set_label) if answering else opts.label
        if label:
            mono.label = label

    # ------------------------------------------------------------------ negotiation

    def _negotiate_offer(
        self, call: Call, offerer: Monologue, answerer: Monologue, inbound: InboundSdp, opts: NgOptions
    ) -> list[OutboundMedia]:
        out: list[OutboundMedia] = []
        mux_flags = opts.rtcp_mux
        for media_in in inbound.medias:
            a_media = _ensure_media(offerer, media_in)
            b_media = _ensure_media(answerer, media_in)
            previous = _advertised_of(call, offerer, a_media)
            if a_media.media_type != media_in.media_type:
                # a different kind of media on this m= line (e.g. T.38 re-INVITE): new sockets both sides
                self._close_sockets(call.media_ports(offerer, a_media))
                self._close_sockets(call.media_ports(answerer, b_media))
                b_media.ptime = None
                previous = None
            _update_media_from_sdp(a_media, media_in, opts)
            a_media.flags.discard("ice-trickle")
            if media_in.ice_trickle:
                a_media.flags.add("ice-trickle")
            b_media.media_type = media_in.media_type
            if not answerer.tag or not b_media.codecs:
                # until it answers, the other side is expected to mirror the offered direction
                b_media.send, b_media.recv = a_media.recv, a_media.send
            wanted = opts.transport_protocol
            b_media.protocol = wanted if wanted is not None and wanted != "accept" else media_in.protocol
            if not media_in.is_udp:
                out.append(_unmanaged(media_in))
                continue
            if media_in.rejected:
                b_media.rejected = True
                out.append(_rejected(media_in, b_media.protocol))
                continue
            b_media.rejected = False
            codecs = _apply_codec_options(a_media.codecs, opts) if media_in.is_rtp else None
            a_media.offered_payload_types = [c.payload_type for c in codecs or []]
            b_media.codecs = [
                Codec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp, list(c.rtcp_fb))
                for c in (codecs or [])
            ]
            mux_to_answerer = media_in.rtcp_mux if not (mux_flags & _MUX_OFFERED_TO_ANSWERER) else True
            if "demux" in mux_flags:
                mux_to_answerer = False
            if not media_in.is_rtp:
                mux_to_answerer = False
            a_media.flags = {f for f in a_media.flags if not f.startswith("mux-")} | {
                f"mux-{f}" for f in mux_flags
            }
            require = "require" in mux_flags and media_in.is_rtp
            b_sockets = call.media_ports(answerer, b_media)
            new_endpoint = _endpoint_of(media_in, opts)
            port_changed = (
                previous is not None
                and new_endpoint is not None
                and not new_endpoint.is_unspecified
                and previous != new_endpoint
            )
            if port_changed and not opts.port_latching and b_sockets.rtp is not None:
                self._close_sockets(b_sockets)
            self._ensure_sockets(call, b_sockets, single=require or b_media.rtcp_mux, rtcp=media_in.is_rtp)
            a_sockets = call.media_ports(offerer, a_media)
            # with `demux`/`accept` the offerer's mux is known to be accepted: one port is enough
            a_single = media_in.rtcp_mux and bool(mux_flags & {"demux", "accept"})
            self._ensure_sockets(call, a_sockets, single=a_single, rtcp=media_in.is_rtp)
            self._configure_party(a_sockets, a_media, media_in, opts)
            self._wire(call, offerer, a_media, answerer, b_media)
            assert b_sockets.rtp is not None
            port = b_sockets.rtp.port
            if not media_in.is_rtp:
                rtcp_port: int | None = None
            elif require or b_media.rtcp_mux:
                rtcp_port = port
            else:
                rtcp_port = b_sockets.rtcp.port if b_sockets.rtcp is not None else port + 1
            out.append(
                OutboundMedia(
                    port=port,
                    rtcp_port=rtcp_port,
                    rtcp_mux=media_in.is_rtp and (mux_to_answerer or require or b_media.rtcp_mux),
                    protocol=b_media.protocol,
                    codecs=codecs,
                    direction=_direction(media_in),
                    ptime=a_media.ptime,
                    connection=self._connection_for(media_in, opts),
                    mid=media_in.mid,
                )
            )
        return out

    def _negotiate_answer(
        self, call: Call, offerer: Monologue, answerer: Monologue, inbound: InboundSdp, opts: NgOptions
    ) -> list[OutboundMedia]:
        out: list[OutboundMedia] = []
        for media_in in inbound.medias:
            b_media = _ensure_media(answerer, media_in)
            a_media = _ensure_media(offerer, media_in)
            previous = _advertised_of(call, answerer, b_media)
            _update_media_from_sdp(b_media, media_in, opts)
            new_endpoint = _endpoint_of(media_in, opts)
            if (
                previous is not None
                and new_endpoint is not None
                and not new_endpoint.is_unspecified
                and previous != new_endpoint
                and not opts.port_latching
            ):
                # the answerer moved (e.g. 200 OK after 183 from elsewhere): new ports towards the offerer
                self._close_sockets(call.media_ports(offerer, a_media))
            protocol = a_media.protocol
            if opts.transport_protocol == "accept":
                protocol = media_in.protocol
            if not media_in.is_udp:
                out.append(_unmanaged(media_in))
                continue
            if media_in.rejected:
                # the answerer refused this stream: rtpengine gives up its sockets on both sides
                b_media.rejected = True
                a_media.rejected = True
                self._close_sockets(call.media_ports(offerer, a_media))
                self._close_sockets(call.media_ports(answerer, b_media))
                out.append(_rejected(media_in, protocol))
                continue
            mux_flags = {f[4:] for f in a_media.flags if f.startswith("mux-")}
            offered_mux = a_media.rtcp_mux_offered
            b_media.rtcp_mux = media_in.is_rtp and media_in.rtcp_mux
            if "demux" in mux_flags or "accept" in mux_flags:
                a_media.rtcp_mux = offered_mux
            elif "reject" in mux_flags:
                a_media.rtcp_mux = False
            else:
                a_media.rtcp_mux = offered_mux and media_in.rtcp_mux
            a_media.rtcp_mux = a_media.rtcp_mux and media_in.is_rtp
            codecs: list[Codec] | None = None
            if media_in.is_rtp:
                offered = set(a_media.offered_payload_types)
                codecs = [c for c in b_media.codecs if c.payload_type in offered]
                if opts.single_codec:
                    codecs = _single_codec(codecs)
            a_sockets = call.media_ports(offerer, a_media)
            fresh = a_sockets.rtp is None
            self._ensure_sockets(call, a_sockets, single=False, rtcp=media_in.is_rtp)
            if fresh:
                _readvertise(a_sockets, a_media)
            b_sockets = call.media_ports(answerer, b_media)
            self._ensure_sockets(call, b_sockets, single=False, rtcp=media_in.is_rtp)
            self._configure_party(b_sockets, b_media, media_in, opts)
            self._wire(call, offerer, a_media, answerer, b_media)
            assert a_sockets.rtp is not None
            port = a_sockets.rtp.port
            if not media_in.is_rtp:
                rtcp_port: int | None = None
            elif a_media.rtcp_mux:
                rtcp_port = port
            else:
                rtcp_port = a_sockets.rtcp.port if a_sockets.rtcp is not None else port + 1
            out.append(
                OutboundMedia(
                    port=port,
                    rtcp_port=rtcp_port,
                    rtcp_mux=a_media.rtcp_mux,
                    protocol=protocol,
                    codecs=codecs,
                    direction=_direction(media_in),
                    ptime=b_media.ptime if b_media.ptime is not None else a_media.ptime,
                    connection=self._connection_for(media_in, opts),
                    mid=media_in.mid,
                    trickle_remnant="ice-trickle" in a_media.flags and opts.ice is Ice.REMOVE,
                )
            )
        return out

    def _connection_for(self, media_in: InboundMedia, opts: NgOptions) -> str:
        return opts.media_address or self.settings.advertised_ip

    def _session_rewrite(self, sender: Monologue, inbound: InboundSdp, opts: NgOptions) -> SessionRewrite:
        replace = opts.replace
        ctx = SessionRewrite(
            address=opts.media_address or self.settings.advertised_ip,
            replace_origin="origin" in replace,
            replace_session_connection="session-connection" in replace,
            replace_zero_address="zero-address" in replace,
            strip_extmap=opts.strip_extmap,
            original_sendrecv=opts.original_sendrecv,
            full_rtcp_attribute=opts.full_rtcp_attribute,
            no_rtcp_attribute=opts.no_rtcp_attribute,
            loop_marker=self.instance_id if opts.loop_protect else None,
        )
        origin = _origin_parts(inbound)
        if "username" in replace and origin is not None:
            if sender.sdp_username is None:
                sender.sdp_username = origin[0]
            ctx.username = sender.sdp_username
        if "session-name" in replace:
            name = _session_name(inbound)
            if sender.sdp_session_name is None:
                sender.sdp_session_name = name
            ctx.session_name = sender.sdp_session_name
        if "SDP-version" in replace and origin is not None:
            ctx.origin_version = _VERSION_MARK
        return ctx

    @staticmethod
    def _finish_sdp(sender: Monologue, text: str, inbound: InboundSdp) -> str:
        """`replace SDP-version`: one `o=` version per party, bumped only when the SDP we send changed."""
        if _VERSION_MARK not in text:
            return text
        origin = _origin_parts(inbound)
        if sender.sdp_version is None:
            sender.sdp_version = _int_or(origin[2] if origin else "0", 0)
        elif sender.last_sdp_out is not None and sender.last_sdp_out != text:
            sender.sdp_version += 1
        sender.last_sdp_out = text
        return text.replace(_VERSION_MARK, str(sender.sdp_version), 1)

    # ------------------------------------------------------------------ sockets and relay wiring

    def _ensure_sockets(self, call: Call, sockets: MediaPorts, *, single: bool, rtcp: bool) -> None:
        if sockets.rtp is not None:
            return
        ports = [self.ports.reserve_single()] if single or not rtcp else list(self.ports.reserve_pair())
        if self._open_change is not None:
            self._open_change.reserved += ports
        ip = self.settings.media_ip
        sockets.rtp = StreamSpec(ports[0], ip, call.call_id, None)
        if len(ports) == 2:
            sockets.rtcp = StreamSpec(ports[1], ip, call.call_id, None, component=2)

    @staticmethod
    def _close_sockets(sockets: MediaPorts) -> None:
        """Stop using these sockets (closed when the change commits; kept if it fails)."""
        sockets.rtp = None
        sockets.rtcp = None

    def _count_closed(self, port: int) -> None:
        seen = self.media.read(port)
        if seen is None:
            return
        self.counters.closed_packets += seen.packets
        self.counters.closed_bytes += seen.bytes
        self.counters.closed_errors += seen.errors
        self.counters.closed_dropped += seen.dropped

    def _configure_party(
        self, sockets: MediaPorts, media: MediaState, media_in: InboundMedia, opts: NgOptions
    ) -> None:
        """Set the peer addresses and latching behaviour of the sockets that talk to this party."""
        endpoint = _endpoint_of(media_in, opts)
        rtcp_endpoint: Endpoint | None = None
        if endpoint is not None:
            if media_in.rtcp is not None:
                rtcp_endpoint = Endpoint(
                    media_in.rtcp.address if not opts.sip_source_address else endpoint.address,
                    media_in.rtcp.port,
                )
            else:
                rtcp_endpoint = Endpoint(endpoint.address, endpoint.port + 1)
        now = self._now
        for stream in sockets.streams():
            learning = stream.policy.learning if opts.endpoint_learning is None else opts.endpoint_learning
            stream.policy = StreamPolicy(learning, opts.asymmetric, opts.strict_source, opts.media_handover)
            stream.signalled = now
            stream.signals += 1
        if sockets.rtp is not None:
            sockets.rtp.sdp_peer = endpoint
        if sockets.rtcp is not None:
            sockets.rtcp.sdp_peer = rtcp_endpoint
        if opts.asymmetric:
            media.flags.add("asymmetric")
        if opts.unidirectional:
            media.flags.add("unidirectional")

    def _wire(self, call: Call, a: Monologue, a_media: MediaState, b: Monologue, b_media: MediaState) -> None:
        a_s = call.media_ports(a, a_media)
        b_s = call.media_ports(b, b_media)
        if a_s.rtp is None or b_s.rtp is None:
            return
        a_s.rtp.sink = b_s.rtp.port
        b_s.rtp.sink = a_s.rtp.port
        a_rtcp_out = a_s.rtp.port if (a_media.rtcp_mux or a_s.rtcp is None) else a_s.rtcp.port
        b_rtcp_out = b_s.rtp.port if (b_media.rtcp_mux or b_s.rtcp is None) else b_s.rtcp.port
        a_s.rtp.rtcp_mux = a_media.rtcp_mux
        b_s.rtp.rtcp_mux = b_media.rtcp_mux
        a_s.rtp.rtcp_sink = b_rtcp_out
        b_s.rtp.rtcp_sink = a_rtcp_out
        if a_s.rtcp is not None:
            a_s.rtcp.sink = b_rtcp_out
            a_s.rtcp.rtcp_sink = b_rtcp_out
        if b_s.rtcp is not None:
            b_s.rtcp.sink = a_rtcp_out
            b_s.rtcp.rtcp_sink = a_rtcp_out
        self._apply_media_state(call, a)
        self._apply_media_state(call, b)

    def _release_monologue(self, call: Call, mono: Monologue) -> None:
        for (uid, _index), sockets in list(call.ports.items()):
            if uid == mono.uid:
                self._close_sockets(sockets)
                del call.ports[(uid, _index)]

    # ------------------------------------------------------------------ delete / query / list

    def delete(self, opts: NgOptions) -> dict[str, Any]:
        if opts.call_id is None:
            raise NgError(E.NO_CALL_ID)
        call = self.calls.get(opts.call_id)
        selected: Monologue | None = None
        if call is not None and (opts.from_tag or opts.to_tag or opts.via_branch):
            selected = self._select_for_delete(call, opts)
            if selected is None:
                call = None
        if call is None:
            if opts.fatal:
                raise NgError(E.CALL_NOT_FOUND_WARNING)
            return {"result": "ok", "warning": E.CALL_NOT_FOUND_WARNING}
        delay = self.settings.delete_delay if opts.delete_delay is None else float(opts.delete_delay)
        reply: dict[str, Any] = {"result": "ok"}
        if opts.from_tag:
            reply.update(call_stats(call, self._reading, selected))
        now = self._now
        change = self._begin(call)
        if selected is not None and _links_left_without(call.state, selected):
            # one branch goes; the call lives on while other parties are still linked
            if delay <= 0:
                self._detach(call, selected)
            else:
                selected.deleted_at = now + delay
                for stream in call.monologue_streams(selected):
                    stream.blocked = True
            self._commit(change)
            return reply
        if call.ended_at is None:
            call.ended_at = now
        if delay <= 0:
            self._destroy(call, "deleted")
        else:
            call.state.deleted_at = now + delay
            for stream in call.all_streams():
                stream.blocked = True
        self._commit(change)
        return reply

    def _detach(self, call: Call, mono: Monologue) -> None:
        """A deleted branch: still listed with its links (as rtpengine shows it), but no sockets."""
        mono.deleted_at = None
        mono.removed = True
        self._release_monologue(call, mono)
        if not _links_left_without(call.state, None):
            self._destroy(call, "deleted", regular=True)

    def _select_for_delete(self, call: Call, opts: NgOptions) -> Monologue | None:
        state = call.state
        if opts.to_tag:
            found = state.by_tag(opts.to_tag)
            if found is not None:
                return found
        if opts.via_branch:
            for mono in state.monologues.values():
                if mono.via_branch == opts.via_branch:
                    return mono
        if opts.from_tag:
            return state.by_tag(opts.from_tag)
        return None

    def query(self, opts: NgOptions) -> dict[str, Any]:
        if opts.call_id is None:
            raise NgError(E.NO_CALL_ID)
        call = self.calls.get(opts.call_id)
        if call is None:
            raise NgError(E.UNKNOWN_CALL_ID)
        selected: Monologue | None = None
        tag = opts.to_tag or opts.from_tag
        if tag:
            selected = call.state.by_tag(tag)
            if selected is None:
                stats = call_stats(call, self._reading)
                stats["tags"] = {}
                return {"result": "ok", **stats}
        return {"result": "ok", **call_stats(call, self._reading, selected)}

    def call_summary(self, call: Call) -> dict[str, Any]:
        """`query`'s layout of a whole call (the REST API and CDRs show it)."""
        return call_stats(call, self._reading)

    def list_calls(self, limit: int) -> dict[str, Any]:
        if limit < 0:
            raise NgError(E.INVALID_LIMIT)
        return {"result": "ok", "calls": list(self.calls)[:limit]}

    # ------------------------------------------------------------------ block / silence

    def block_media(
        self, opts: NgOptions, *, block: bool, silence: bool = False, dtmf: bool = False
    ) -> dict[str, Any]:
        """block/unblock media, silence/unsilence media, block/unblock DTMF (one switch per kind)."""
        kind = "dtmf_blocked" if dtmf else "silenced" if silence else "blocked"
        if opts.call_id is None:
            raise NgError(E.NO_CALL_ID)
        call = self.calls.get(opts.call_id)
        if call is None:
            raise NgError(E.UNKNOWN_CALL_ID_UPPER)
        target = self._select_participant(call, opts)
        change = self._begin(call)
        if target is None:
            setattr(call.state, kind, block)
            if not block and opts.all:
                # a call-wide unblock clears per-party switches only with `all`
                for mono in call.state.monologues.values():
                    setattr(mono, kind, False)
        else:
            if opts.set_label:
                target.label = opts.set_label
            setattr(target, kind, block)
        for mono in call.state.monologues.values():
            self._apply_media_state(call, mono)
        self._commit(change)
        return {"result": "ok"}

    def _select_participant(self, call: Call, opts: NgOptions) -> Monologue | None:
        state = call.state
        if opts.all:
            return None
        if opts.label:
            found = state.by_label(opts.label)
            if found is None:
                raise NgError(E.NO_LABEL_MATCH)
            return found
        if opts.address:
            try:
                wanted = ipaddress.ip_address(opts.address)
            except ValueError:
                raise NgError(E.ADDRESS_PARSE_FAILED) from None
            for mono in state.monologues.values():
                for media in mono.medias:
                    advertised = _advertised_of(call, mono, media)
                    if advertised is not None and ipaddress.ip_address(advertised.address) == wanted:
                        return mono
            raise NgError(E.ADDRESS_NO_MATCH)
        if opts.from_tag:
            found = state.by_tag(opts.from_tag)
            if found is None:
                raise NgError(E.FROM_TAG_NOT_FOUND)
            return found
        return None

    def _apply_media_state(self, call: Call, mono: Monologue) -> None:
        """Push block/silence state of the call and of this party into its streams (media *from* it)."""
        state = call.state
        blocked = state.blocked or mono.blocked or state.deleted_at is not None
        silenced = state.silenced or mono.silenced
        dtmf_blocked = state.dtmf_blocked or mono.dtmf_blocked
        jitter_buffer = self.settings.jitter_buffer is not None
        for media in mono.medias:
            sockets = call.ports.get((mono.uid, media.index))
            if sockets is None:
                continue
            clock_rates = tuple((c.payload_type, c.clock_rate) for c in media.codecs)
            for stream in sockets.streams():
                stream.blocked = blocked
                stream.party = mono.tag or None
                stream.clock_rates = clock_rates
            if sockets.rtp is not None:
                sockets.rtp.silence = _silence_codecs(media) if silenced else None
                sockets.rtp.payload_types = (
                    _payload_type_flags(media.codecs, dtmf_blocked) if media.is_rtp else None
                )
                # re-offered as other media (T.38): relayed as it is
                sockets.rtp.jitter_buffer = jitter_buffer and media.is_rtp

    # ------------------------------------------------------------------ what the data plane saw

    def _reading(self, stream: StreamSpec) -> StreamReading:
        seen = self.media.read(stream.port)
        if seen is not None:
            return seen
        # not opened yet, or a data plane without packets: where packets would go is the SDP's address
        peer = stream.sdp_peer
        return StreamReading(endpoint=None if peer is None or peer.is_unspecified else peer.as_address())

    def reading(self, stream: StreamSpec) -> StreamReading:
        """What the data plane says about `stream` (for the read side: REST API, metrics)."""
        return self._reading(stream)

    # ------------------------------------------------------------------ persistence

    def restore(self, state: CallState, now: float, *, same_host: bool = True) -> tuple[Call, list[Effect]]:
        """Rebuild a call from its stored state: its streams on the same ports where they can be had
        (a restart on the same host; otherwise on new ones, and the parties must be told), addressed
        and configured as they were, counters carried on. The restored call gets a fresh media/silent
        timeout window (offer and final timeouts keep counting from `created`); sequence tracking starts
        over, so the gap of the restart is not counted as loss. On another host the streams go back to
        learning while they keep sending to the last learned addresses."""
        if state.call_id in self.calls:
            raise ValueError(f"call {state.call_id!r} exists already")
        self._now = now
        state = state.clone()
        state.last_activity = now
        call = Call(state, quality=CallQuality.from_dict(state.quality, self.quality_totals))
        state.quality = {}  # kept live in `call.quality` from here on
        self.calls[state.call_id] = call
        change = self._open_change = CallChange(call, True)
        saved_streams: dict[int, PacketStreamState] = {}
        try:
            for mono in state.monologues.values():
                for media in mono.medias:
                    if media.streams:
                        self._restore_sockets(call, mono, media, same_host, saved_streams)
                    media.streams = []
            for mono in state.monologues.values():
                partner = state.partner_of(mono)
                if partner is None or (mono.uid > partner.uid and partner.partner == mono.uid):
                    continue
                for a_media, b_media in zip(mono.medias, partner.medias, strict=False):
                    self._wire(call, mono, a_media, partner, b_media)
            for mono in state.monologues.values():
                self._apply_media_state(call, mono)
        except BaseException:
            self._open_change = None
            for port in change.restore():
                self.ports.unreserve(port)
            del self.calls[state.call_id]
            raise
        self._commit(change, persist=False)
        effects = [
            OpenStream(effect.spec, _restored_for(saved_streams[effect.spec.port], same_host))
            if isinstance(effect, OpenStream)
            else effect
            for effect in self.take_effects()
        ]
        log.info("call restored", extra={"call_id": state.call_id, "event": "call_restored"})
        return call, effects

    def _restore_sockets(
        self,
        call: Call,
        mono: Monologue,
        media: MediaState,
        same_host: bool,
        saved_streams: dict[int, PacketStreamState],
    ) -> None:
        sockets = call.media_ports(mono, media)
        assert self._open_change is not None
        for saved in media.streams:
            port: int | None = None
            if same_host:
                try:
                    port = self.ports.reserve_port(saved.local_port)
                except PortsExhausted:
                    port = None
            if port is None:
                log.warning(
                    "restored call gets a new port for %s:%d (the SIP side must be told)",
                    saved.local_address,
                    saved.local_port,
                    extra={"call_id": call.call_id, "event": "restore_port_moved"},
                )
                port = self.ports.reserve_single()
            self._open_change.reserved.append(port)
            saved_streams[port] = saved
            spec = StreamSpec(
                port,
                self.settings.media_ip,
                call.call_id,
                mono.tag or None,
                component=saved.component,
                sdp_peer=saved.advertised,
                policy=StreamPolicy(
                    saved.policy.learning,
                    saved.policy.asymmetric,
                    saved.policy.strict_source,
                    saved.policy.media_handover,
                ),
                signalled=saved.signalled,
            )
            if saved.component == 1:
                sockets.rtp = spec
            else:
                sockets.rtcp = spec

    # ------------------------------------------------------------------ lifetime

    # Timers: one deadline per call in a heap, computed from its state; a call whose deadline passes is
    # checked and given its next one. Media keeps moving a call's media-timeout deadline without the hot
    # path touching the heap: when the old deadline comes, the check finds recent packets and reschedules.

    def next_deadline(self) -> float | None:
        """When `handle_timer` next has something to do (wall-clock seconds), or None."""
        heap = self._timers
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # stale: the call was rescheduled or is gone
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> list[Effect]:
        """Run the timers that are due: delete-delay expiry and rtpengine's media/offer/final timeouts."""
        self._now = now
        heap = self._timers
        while heap and heap[0][0] <= now:
            due, _, call_id = heapq.heappop(heap)
            if self._due.get(call_id) != due:
                continue
            del self._due[call_id]
            call = self.calls.get(call_id)
            if call is not None:
                change = self._begin(call)
                self._check_timers(call, now)
                self._commit(change, persist=None)  # (gives a call still there its next deadline)
        return self.take_effects()

    def _schedule(self, call: Call) -> None:
        due = self._next_due(call)
        if self._due.get(call.call_id) == due:
            return
        self._due[call.call_id] = due
        heapq.heappush(self._timers, (due, next(self._timer_order), call.call_id))

    def _next_due(self, call: Call) -> float:
        state = call.state
        if state.deleted_at is not None:
            return state.deleted_at
        candidates = [mono.deleted_at for mono in state.monologues.values() if mono.deleted_at is not None]
        candidates.append(self._timeout_due(call))
        return min(candidates)

    def _timeout_due(self, call: Call) -> float:
        """When the call's final, offer, silent or media timeout would end it, as things stand."""
        state = call.state
        due = state.created + self.settings.final_timeout if self.settings.final_timeout > 0 else math.inf
        if not state.answered:
            return min(due, state.created + self.settings.offer_timeout)
        last_media = self.media.last_packet(s.port for s in call.all_streams())
        idle_limit = self.settings.silent_timeout if self._on_hold(call) else self.settings.timeout
        return min(due, max(call.last_activity, last_media) + idle_limit)

    def _check_timers(self, call: Call, now: float) -> None:
        state = call.state
        if state.deleted_at is not None:
            if now >= state.deleted_at:
                self._destroy(call, "deleted", regular=True)
            return
        for mono in list(state.monologues.values()):
            if mono.deleted_at is not None and now >= mono.deleted_at:
                self._detach(call, mono)
        if call.call_id not in self.calls or now < self._timeout_due(call):
            return
        if self.settings.final_timeout > 0 and now >= state.created + self.settings.final_timeout:
            self.counters.final_timeout_sessions += 1
            self._destroy(call, "final timeout")
        elif not state.answered:
            self.counters.offer_timeout_sessions += 1
            self._destroy(call, "offer timeout")
        elif self._on_hold(call):
            self.counters.silent_timeout_sessions += 1
            self._destroy(call, "silent timeout")
        else:
            self.counters.timeout_sessions += 1
            self._destroy(call, "timeout")

    @staticmethod
    def _on_hold(call: Call) -> bool:
        medias = [m for mono in call.state.monologues.values() for m in mono.medias if not m.rejected]
        return bool(medias) and not any(m.send and m.recv for m in medias)

    def _destroy(self, call: Call, reason: str, regular: bool = False) -> None:
        """End the call (inside an open change, whose commit closes its streams and reports the end)."""
        change = self._open_change
        assert change is not None and change.call is call
        if self.calls.get(call.call_id) is not call:
            return
        state = self.snapshot(call.call_id)
        del self.calls[call.call_id]
        self._due.pop(call.call_id, None)
        summary = call_stats(call, self._reading)
        lost = sum(self._reading(stream).lost for stream in call.all_streams())
        call.ports.clear()
        now = self._now
        ended = call.ended_at if call.ended_at is not None else now
        self.counters.ended_calls += 1
        self.counters.total_call_seconds += max(0.0, ended - call.state.created)
        self.counters.ended_by_reason[reason] = self.counters.ended_by_reason.get(reason, 0) + 1
        if regular or reason == "deleted":
            self.counters.regular_terminated += 1
        quality = call.quality.summary()
        mos = [source["mos"] for source in quality["sources"] if source["mos"] is not None]
        log.info(
            "call ended",
            extra={
                "call_id": call.call_id,
                "event": "call_ended",
                "reason": reason,
                "duration": round(max(0.0, ended - call.state.created), 3),
                "lost": lost,
                "mos": min(mos) if mos else None,
            },
        )
        change.ended = CallEnded(call.call_id, reason, call.state.created, ended, summary, state, quality)

    def snapshot(self, call_id: str) -> CallState | None:
        """A copy of the call's state with its sockets' current addresses, policy and counters, ready
        to serialize. The live call is not touched."""
        call = self.calls.get(call_id)
        if call is None:
            return None
        state = call.state.clone()
        state.quality = call.quality.to_dict()
        for mono in state.monologues.values():
            for media in mono.medias:
                sockets = call.ports.get((mono.uid, media.index))
                media.streams = (
                    []
                    if sockets is None
                    else [_stream_state(stream, self._reading(stream)) for stream in sockets.streams()]
                )
        return state

    # The read side for HTTP, metrics and statistics: they look at calls, they never change them.

    def all_calls(self) -> Collection[Call]:
        """Every call this node holds, deleted ones in their delete delay included (a live view)."""
        return self.calls.values()

    def find_call(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    def active_calls(self) -> int:
        """Calls not waiting for their delete delay to run out."""
        return sum(1 for call in self.calls.values() if call.state.deleted_at is None)

    def close_all(self, now: float) -> list[Effect]:
        self._now = now
        for call in list(self.calls.values()):
            self.counters.forced_terminated += 1
            change = self._begin(call)
            self._destroy(call, "shutdown")
            self._commit(change)
        return self.take_effects()


# ---------------------------------------------------------------------- helpers


def _unread_body(text: str) -> dict[str, Any]:
    """An empty or one-character body: rtpengine reads no SDP in it and echoes it back as it is."""
    return {"sdp": text} if text else {}


def _new_answerer(state: CallState, now: float, tag: str = "") -> Monologue:
    # "ICE controlling" stays with whoever answered first, also when it later re-offers
    mono = state.new_monologue(now, tag)
    mono.answerer = True
    return mono


def _links_left_without(state: CallState, gone: Monologue | None) -> bool:
    """Whether two parties other than `gone` (and not yet removed) are still linked."""
    alive = {m.uid for m in state.monologues.values() if not m.removed and m is not gone}
    for mono in state.monologues.values():
        if mono.uid in alive and ({mono.partner, *mono.former_partners} & alive):
            return True
    return False


def _copy_media_shell(media: MediaState) -> MediaState:
    return MediaState(
        media.index,
        media.media_type,
        media.protocol,
        list(media.formats),
        [
            Codec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp, list(c.rtcp_fb))
            for c in media.codecs
        ],
    )


def _ensure_media(mono: Monologue, media_in: InboundMedia) -> MediaState:
    while len(mono.medias) < media_in.index:
        mono.medias.append(MediaState(len(mono.medias) + 1, media_in.media_type, media_in.protocol))
    return mono.medias[media_in.index - 1]


def _update_media_from_sdp(media: MediaState, media_in: InboundMedia, opts: NgOptions) -> None:
    media.protocol = media_in.protocol
    media.formats = list(media_in.formats)
    media.codecs = list(media_in.codecs)
    direction = _direction(media_in)
    media.send = direction in ("sendrecv", "sendonly")
    media.recv = direction in ("sendrecv", "recvonly")
    if media_in.ptime is not None or media.media_type != media_in.media_type:
        media.ptime = media_in.ptime  # otherwise the party's earlier ptime is remembered
    media.rejected = media_in.rejected
    media.rtcp_mux_offered = media_in.rtcp_mux
    media.mid = media_in.mid
    media.sdp_address = media_in.connection
    media.sdp_port = media_in.port
    media.advertised_rtcp = media_in.rtcp
    media.media_type = media_in.media_type


def _held(media_in: InboundMedia) -> bool:
    return media_in.connection in ("0.0.0.0", "::")


def _direction(media_in: InboundMedia) -> str:
    if _held(media_in):
        # old-style hold: rtpengine keeps 0.0.0.0 and announces sendonly
        return "sendonly" if media_in.direction in ("sendrecv", "sendonly") else "inactive"
    return media_in.direction


def _endpoint_of(media_in: InboundMedia, opts: NgOptions) -> Endpoint | None:
    if media_in.connection is None or media_in.rejected:
        return None
    address = media_in.connection
    if opts.sip_source_address and opts.received_from is not None:
        address = opts.received_from[1]
    return Endpoint(address, media_in.port)


def _advertised_of(call: Call, mono: Monologue, media: MediaState) -> Endpoint | None:
    """Where the party's SDP said its media is (none while on hold: 0.0.0.0), in canonical form."""
    sockets = call.ports.get((mono.uid, media.index))
    peer = sockets.rtp.sdp_peer if sockets is not None and sockets.rtp is not None else None
    if peer is None or peer.is_unspecified:
        return None
    try:
        return Endpoint(str(ipaddress.ip_address(peer.address)), peer.port)
    except ValueError:
        return peer


def _stream_state(stream: StreamSpec, seen: StreamReading) -> PacketStreamState:
    return PacketStreamState(
        component=stream.component,
        local_address=stream.local_ip,
        local_port=stream.port,
        advertised=stream.sdp_peer,
        endpoint=Endpoint(*seen.endpoint) if seen.endpoint is not None else None,
        confirmed=seen.confirmed,
        packets=seen.packets,
        bytes=seen.bytes,
        errors=seen.errors,
        last_packet=seen.last_packet,
        lost=seen.lost,
        learned=Endpoint(*seen.learned) if seen.learned is not None else None,
        policy=stream.policy,
        signalled=stream.signalled,
        counters=dict(seen.counters),
        last_rtp=seen.last_rtp,
        last_rtcp_ssrc=seen.last_rtcp_ssrc,
    )


def _restored_for(saved: PacketStreamState, same_host: bool) -> PacketStreamState:
    """What a restored stream carries on. On another host the parties' NATs may map differently:
    learn again, sending where we did so far."""
    return PacketStreamState(
        component=saved.component,
        local_address=saved.local_address,
        local_port=saved.local_port,
        advertised=saved.advertised,
        endpoint=saved.endpoint,
        confirmed=saved.confirmed and same_host,
        packets=saved.packets,
        bytes=saved.bytes,
        errors=saved.errors,
        last_packet=saved.last_packet,
        lost=saved.lost,
        learned=saved.learned,
        policy=saved.policy,
        signalled=saved.signalled,
        counters=dict(saved.counters),
        last_rtp=saved.last_rtp,
        last_rtcp_ssrc=saved.last_rtcp_ssrc,
    )


def _readvertise(sockets: MediaPorts, media: MediaState) -> None:
    """New sockets towards a party that already sent its SDP: point them at what it advertised."""
    if media.sdp_address is None or media.rejected:
        return
    endpoint = Endpoint(media.sdp_address, media.sdp_port)
    if sockets.rtp is not None:
        sockets.rtp.sdp_peer = endpoint
    if sockets.rtcp is not None:
        sockets.rtcp.sdp_peer = media.advertised_rtcp or Endpoint(endpoint.address, endpoint.port + 1)


def _payload_type_flags(codecs: list[Codec], dtmf_blocked: bool) -> bytes | None:
    """The relay's per-payload-type table: forward what the SDP announced, drop DTMF when blocked."""
    if not codecs:
        return None
    table = bytearray(128)
    for codec in codecs:
        if 0 <= codec.payload_type < 128:
            dtmf = codec.name.lower() == "telephone-event"
            table[codec.payload_type] = PT_BLOCKED if dtmf and dtmf_blocked else PT_FORWARD
    return bytes(table)


def _unmanaged(media_in: InboundMedia) -> OutboundMedia:
    return OutboundMedia(
        media_in.port, None, False, media_in.protocol, None, media_in.direction, None, "", managed=False
    )


def _rejected(media_in: InboundMedia, protocol: str) -> OutboundMedia:
    return OutboundMedia(0, None, False, protocol, None, media_in.direction, None, "")


def _codec_matches(codec: Codec, spec: str) -> bool:
    name, _, rest = spec.partition("/")
    if codec.name.lower() != name.lower():
        return False
    if rest:
        clock = rest.split("/")[0]
        if clock and clock.isdigit() and int(clock) != codec.clock_rate:
            return False
    return True


def _apply_codec_options(codecs: list[Codec], opts: NgOptions) -> list[Codec]:
    """rtpengine's codec strip/mask/except/offer without transcoding."""
    removing = list(opts.codec.strip) + list(opts.codec.mask)
    keep = list(opts.codec.except_) + list(opts.codec.offer)
    if not removing and not keep:
        return list(codecs)
    strip_all = any(s.lower() in ("all", "full") for s in removing)
    result: list[Codec] = []
    for codec in codecs:
        if not codec.name:
            result.append(codec)
            continue
        stripped = strip_all or any(_codec_matches(codec, s) for s in removing)
        kept = any(_codec_matches(codec, s) for s in keep)
        if not stripped or kept:
            result.append(codec)
    if strip_all and keep:
        # after `strip all`, `offer`/`except` restore the offered codecs in the order given
        ordered: list[Codec] = []
        for spec in keep:
            for codec in result:
                if _codec_matches(codec, spec) and codec not in ordered:
                    ordered.append(codec)
        result = ordered
    if not result:
        return list(codecs)
    return result


_SUPPLEMENTARY_CODECS = {"telephone-event", "cn"}


def _single_codec(codecs: list[Codec]) -> list[Codec]:
    """`single-codec`: the first real codec plus the supplementary ones (DTMF, comfort noise)."""
    result: list[Codec] = []
    have_main = False
    for codec in codecs:
        if codec.name.lower() in _SUPPLEMENTARY_CODECS:
            result.append(codec)
        elif not have_main:
            result.append(codec)
            have_main = True
    return result


def _silence_codecs(media: MediaState) -> SilenceCodecs:
    return tuple((c.payload_type, c.name, c.clock_rate) for c in media.codecs if c.name)


def _origin_parts(inbound: InboundSdp) -> list[str] | None:
    for line in inbound.sdp.session.lines:
        if line.kind == "o":
            parts = line.value.split(" ")
            return parts if len(parts) >= 6 else None
    return None


def _session_name(inbound: InboundSdp) -> str:
    for line in inbound.sdp.session.lines:
        if line.kind == "s":
            return str(line.value)
    return "-"


def _int_or(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default
