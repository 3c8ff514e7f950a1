"""The call engine: rtpengine's offer/answer/delete/query semantics over the session model (sans-IO).

It owns the calls of this node and produces the rewritten SDP. It opens no socket and reads no clock:
`handle(command, options, now)` returns the reply and the effects (open, configure, close streams;
call changed; call ended) that the media node applies; ports come from an injected `PortPool`, and
what the data plane saw (counters, learned sources) is read through an injected `MediaView`.
NG framing, retransmissions and option parsing happen before it (see `karl_core.ng`).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import secrets
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from karl_core.ng import errors as E
from karl_core.ng.commands import Command
from karl_core.ng.errors import NgError
from karl_core.ng.options import Ice, NgOptions, check_required
from karl_core.sdp import SdpError
from karl_core.session import (
    CallState,
    MediaState,
    Monologue,
    PacketStreamState,
)
from karl_medianode.engine.call_change import CallChange
from karl_medianode.engine.call_stats import (
    NOT_ICE_CONTROLLING,
    note_answer,
    note_dtmf_block,
    note_offer,
    tagged_call_stats,
)
from karl_medianode.engine.calls import Call
from karl_medianode.engine.deadlines import Deadlines
from karl_medianode.engine.dtls_sessions import RTCP, Connected, DtlsSessions
from karl_medianode.engine.effects import (
    CallChanged,
    CallEnded,
    CloseStream,
    Effect,
    OpenStream,
    Outcome,
    SetPeer,
)
from karl_medianode.engine.ice_fragments import MAX_CANDIDATES, Fragment, FragmentQueue, parse_fragment
from karl_medianode.engine.ice_sessions import IceSessions
from karl_medianode.engine.media_rules import (
    advertised_of,
    copy_media_shell,
    unmanaged_sockets,
)
from karl_medianode.engine.media_view import MediaView, Reading, StreamReading, dropped
from karl_medianode.engine.negotiation import ForkAnswer, negotiate_answer, negotiate_offer
from karl_medianode.engine.parties import (
    apply_labels,
    branch_answering,
    links_left_without,
    mirror_directions,
    pair,
    partner_for_offer,
    select_for_delete,
)
from karl_medianode.engine.ports import PortPool, PortsExhausted
from karl_medianode.engine.rewrite.inbound import InboundSdp, read_sdp
from karl_medianode.engine.rewrite.outbound import (
    OutboundMedia,
    RewriteOrderError,
    write_sdp,
)
from karl_medianode.engine.rewrite.srtp_boundary import (
    SRTP_TERMINATION_NOT_SUPPORTED,
    crosses_on_answer,
    crosses_on_offer,
    is_secure,
)
from karl_medianode.engine.sdes_negotiation import SdesChoices, usable_offer
from karl_medianode.engine.sdp_reply import (
    finish_sdp,
    session_rewrite,
    unread_body,
)
from karl_medianode.engine.settings import (
    NOT_SUPPORTED,
    REPLY_TOO_LARGE,
    TOO_MANY_MEDIA,
    EngineCounters,
    EngineSettings,
    LoadLimit,
    ReplyCheck,
)
from karl_medianode.engine.stored_streams import (
    restored_for,
    stream_state,
)
from karl_medianode.engine.streams import StreamSpec, policy_for
from karl_medianode.engine.wiring import StreamWiring, switch_fork
from karl_medianode.quality import CallQuality, QualityTotals

log = logging.getLogger("karl.engine")

_T = TypeVar("_T")

TIMER_RETRY = 1.0
"""Seconds until the timers of a call are checked again after the check failed."""


class CallEngine:
    def __init__(self, settings: EngineSettings, ports: PortPool, media: MediaView) -> None:
        self.settings = settings
        self.ports = ports
        self.media = media
        self.wiring = StreamWiring(settings, ports)
        self.calls: dict[str, Call] = {}
        self.counters = EngineCounters()
        self.quality_totals = QualityTotals()
        """What RTCP reports said, over all calls (for the metrics)."""
        self._open_change: CallChange | None = None
        """The change being applied (requests run one at a time, to the end)."""
        self._deadlines = Deadlines()
        """Each call's next deadline (see `handle_timer`)."""
        self.ice = IceSessions()
        """The ICE agents of the calls, with their own (finer) timers: see `handle_ice_timer`."""
        self.fragments = FragmentQueue()
        """Trickled candidates waiting for their call (`ice_fragments`)."""
        self.dtls = DtlsSessions(settings.dtls_certificate)
        self.dtls.verified = self.ice.verified
        """The DTLS-SRTP handshakes of the calls (timers: `handle_dtls_timer`)."""
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
        # The commands Karl does not implement yet: first every check 10.5 makes before it would act
        # (keys, the call, the party, option values), with its texts; a request that would get as far
        # as acting is refused, and nothing changes.
        check_required(opts)
        if opts.call_id is None:
            raise NgError(E.NO_CALL_ID)
        call = self.calls.get(opts.call_id)
        playing = command in (Command.PLAY_MEDIA, Command.STOP_MEDIA, Command.PLAY_DTMF)
        if command is Command.PUBLISH:
            assert opts.sdp is not None
            self._read(opts.sdp)  # 10.5 creates the call: no lookup, only the SDP checks of an offer
        elif call is None:
            recording = command in (Command.START_RECORDING, Command.STOP_RECORDING)
            raise NgError(E.UNKNOWN_CALL_ID if recording else E.UNKNOWN_CALL_ID_UPPER)
        elif command in (Command.SUBSCRIBE_ANSWER, Command.UNSUBSCRIBE):
            if opts.to_tag is None:
                raise NgError(E.NO_TO_TAG)
            if command is Command.SUBSCRIBE_ANSWER:
                if not opts.sdp:
                    raise NgError(E.NO_SDP)
                if call.state.by_tag(opts.to_tag) is None:
                    raise NgError(E.TO_TAG_NOT_FOUND)
                self._read(opts.sdp)
        elif command is Command.SUBSCRIBE_REQUEST:
            # the party as for `block media`, else any of `from-tags`
            chosen = opts.all or self._select_participant(call, opts) is not None
            if not chosen and not any(call.state.by_tag(tag) for tag in opts.from_tags):
                raise NgError(E.NO_MONOLOGUES_MATCHED)
        elif command in (Command.START_FORWARDING, Command.STOP_FORWARDING) or playing:
            party = self._select_participant(call, opts)  # as for `block media`
            if playing and party is None and not opts.all:
                raise NgError(E.NO_PARTICIPANT)
            if command is Command.PLAY_MEDIA and not (opts.file or opts.blob or (opts.db_id or 0) > 0):
                raise NgError(E.NO_MEDIA_FILE)
            if command is Command.PLAY_DTMF:
                # 10.5 keeps the digit in a C char (-1 when absent): a code 0-15 or one of its characters
                digit = opts.digit
                byte = 0xFF if digit is None else (ord(digit) if isinstance(digit, str) else digit) & 0xFF
                if byte > 15 and chr(byte) not in "0123456789*#ABCD":
                    raise NgError(E.CODE_OUT_OF_RANGE)
        raise NgError(f"{NOT_SUPPORTED}: {command.value}")

    # ------------------------------------------------------------------ offer / answer

    def offer(self, opts: NgOptions, fits: ReplyCheck | None = None) -> dict[str, Any]:
        """rtpengine's `offer`. Applied as one unit: when it fails (ports, SDP, a fault of ours, or a
        reply `fits` says cannot be sent) the call is left exactly as it was (see `call_change`)."""
        check_required(opts)  # the NG server did this already; direct callers get the same errors
        assert opts.sdp is not None and opts.call_id is not None and opts.from_tag is not None
        if opts.fragment:
            self._trickled(opts.call_id, opts.from_tag, parse_fragment(opts.sdp, self._now))
            return {}
        inbound = self._read(opts.sdp)
        if opts.loop_protect and self._own_marker_in(inbound):
            return {"sdp": opts.sdp}  # our own output came back (a spiral): hand it back untouched
        self._check_media_count(inbound)
        if any(crosses_on_offer(media, opts) for media in inbound.medias):
            self._refuse_srtp_termination(opts.call_id)
        self._check_sdes_offer(inbound, opts)
        call = self.calls.get(opts.call_id)
        new_call = call is None
        if call is None:
            self._check_limits()
            call = self._new_call(opts.call_id)
        reply = self._change(call, new_call, lambda c: self._offer(c, inbound, opts), fits)
        for fragment in self.fragments.take(opts.call_id, opts.from_tag, self._now):
            self._trickled(opts.call_id, opts.from_tag, fragment)
        return reply

    def _trickled(self, call_id: str, tag: str, fragment: Fragment) -> None:
        """Trickled candidates of a party (see `ice_fragments`): onto its media where Karl is its ICE
        agent, or waiting for its call."""
        call = self.calls.get(call_id)
        if call is None:
            if not self.fragments.put(call_id, tag, fragment):
                self.counters.fragments_dropped += 1
            return
        mono = call.state.by_tag(tag)
        if mono is None:
            return
        change = self._begin(call)
        for section in fragment.sections:
            media = next((m for m in mono.medias if section.mid is not None and m.mid == section.mid), None)
            if media is None and 0 < section.index <= len(mono.medias):
                media = mono.medias[section.index - 1]
            if media is None or media.ice_remote_ufrag is None:
                continue  # no such media, or no ICE with the party on it
            if section.ufrag is not None and section.ufrag != media.ice_remote_ufrag:
                continue  # candidates of another ICE generation (before a restart)
            known = set(media.ice_candidates)
            for value in section.candidates:
                if value not in known and len(media.ice_candidates) < MAX_CANDIDATES:
                    media.ice_candidates.append(value)
                    known.add(value)
        self._commit(change)

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
            # where Karl terminates SDES: the offerer's SRTP ends here, or Karl offered its own keys
            partner = call.state.partner_of(offerer)
            ending_here = {m.index for m in offerer.medias if m.sdes_pending}
            karl_offered = {
                m.index
                for m in (partner.medias if partner is not None else [])
                if m.sdes_ours and m.index not in ending_here
            }
            # where Karl terminates DTLS: the offerer keys with DTLS, or Karl offered its fingerprint
            dtls = {m.index for m in offerer.medias if m.dtls_fingerprints} | {
                m.index for m in (partner.medias if partner is not None else []) if m.dtls_setup
            }
            for media in inbound.medias:
                protocol = offered.get(media.index, media.protocol)
                sdes = media.index in ending_here or media.index in karl_offered
                if crosses_on_answer(media, protocol, opts, sdes=sdes, dtls=media.index in dtls):
                    self._refuse_srtp_termination(opts.call_id)
        return self._change(call, False, lambda c: self._answer(c, inbound, opts), fits)

    def _change(
        self,
        call: Call,
        new_call: bool,
        apply: Callable[[Call], dict[str, Any]],
        fits: ReplyCheck | None,
    ) -> dict[str, Any]:
        change = self._open(CallChange(call, new_call))
        try:
            reply = apply(call)
            if fits is not None and not fits(reply):
                self.counters.replies_too_large += 1
                raise NgError(REPLY_TOO_LARGE)
        except BaseException as exc:
            self._close()
            self._roll_back(change)
            if isinstance(exc, PortsExhausted):
                self.counters.ports_exhausted += 1
                raise NgError(E.OUT_OF_PORTS) from None
            raise
        self._close()
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
        return self._open(CallChange(call, False, can_fail=False))

    def _open(self, change: CallChange) -> CallChange:
        self._open_change = change
        self.wiring.now = self._now
        self.wiring.reserved = change.reserved
        return change

    def _close(self) -> None:
        self._open_change = None
        self.wiring.reserved = None

    def _commit(self, change: CallChange, *, persist: bool | None = True) -> None:
        """The change is complete: tell the data plane (and the store) what it amounts to.
        `persist` None: tell the store only if streams changed (a timer that found nothing due)."""
        self._close()
        call = change.call
        if self.calls.get(call.call_id) is call:
            _forget_gone_sinks(call)
        effects = change.effects()
        for effect in effects:
            if isinstance(effect, CloseStream):
                self._count_closed(effect.port)
        self._effects += effects
        if self.calls.get(call.call_id) is call:
            self._effects += self.ice.sync(call, self._now)
            self._effects += self.dtls.sync(call, self._now)
            self._schedule(call)
            if persist or (persist is None and effects):
                self._effects.append(CallChanged(call.call_id))
        else:
            self.ice.drop(call.call_id)
            self.dtls.drop(call.call_id)
            if change.ended is not None:
                self._effects.append(change.ended)

    def _check_media_count(self, inbound: InboundSdp) -> None:
        count = len(inbound.medias)
        if count > self.settings.max_media:
            self.counters.too_many_media += 1
            raise NgError(f"{TOO_MANY_MEDIA}: {count} (the limit is {self.settings.max_media})")

    def _check_sdes_offer(self, inbound: InboundSdp, opts: NgOptions) -> None:
        """An SDES offer Karl would terminate must carry a line Karl can use, or Karl would answer it
        with no key and relay in the clear: refused instead (a proxy can send it to rtpengine)."""
        wanted = opts.transport_protocol
        if wanted is None or wanted == "accept" or is_secure(wanted):
            return  # relayed as it is, or secure on both sides: nothing for Karl to terminate
        choices = SdesChoices.of(opts)
        for media in inbound.medias:
            secure = media.is_rtp and not media.rejected and is_secure(media.protocol)
            if secure and media.has_crypto and not usable_offer(media.crypto, choices):
                self._refuse_srtp_termination(opts.call_id or "")

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
        answerer = partner_for_offer(state, offerer, opts, now)
        apply_labels(offerer, opts)
        if not inbound.sdp.sessions:
            return unread_body(opts.sdp)
        if inbound.rewrite_error or not inbound.medias:
            raise NgError(E.SDP_REWRITE_ERROR)
        medias_out = negotiate_offer(self.wiring, call, offerer, answerer, inbound, opts)
        unmanaged_sockets(self.wiring, call, offerer, answerer, inbound, opts, answer=False)
        mirror_directions(offerer, answerer, len(inbound.medias))
        note_offer(call, offerer, answerer, len(inbound.medias))
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
        first_answer = False
        if answerer is None:
            answerer = branch_answering(state, offerer, opts)
            if answerer is not None:
                first_answer = not answerer.tag
                answerer.tag = opts.to_tag  # 10.5 renames the party of a known via-branch
        partner = state.partner_of(offerer)
        fork: ForkAnswer | None = None
        if answerer is None:
            if partner is not None and not partner.tag:
                answerer = partner
                answerer.tag = opts.to_tag
            else:
                # a second fork answering: it becomes the offerer's partner; the old one loses its link
                answerer = state.new_monologue(now, opts.to_tag)
                answerer.answerer = True
                if partner is not None:
                    answerer.medias = [copy_media_shell(m) for m in partner.medias]
                    if opts.ice is Ice.REMOVE:
                        # (10.5 sets no role on a fork without ICE whose offerer has no agent either)
                        speaks_ice = {m.index for m in inbound.medias if m.has_ice}
                        speaks_ice |= {m.index for m in offerer.medias if m.ice}
                        for media in answerer.medias:
                            if media.index not in speaks_ice:
                                media.flags.add(NOT_ICE_CONTROLLING)
                    switched = switch_fork(call, offerer, partner, None)
                    fork = ForkAnswer(new=True, left=partner.uid, switched=switched)
        elif partner is not None and partner is not answerer:
            # an earlier fork answers again (its kept sockets come back), or a branch offered on its own
            # (via-branch) answers first after another answered: 10.5's sockets towards the offerer
            # follow the answerer's address, so it gets new ones and the other's are kept
            switched = switch_fork(call, offerer, partner, None if first_answer and partner.tag else answerer)
            fork = ForkAnswer(new=False, left=partner.uid, switched=switched)
        pair(offerer, answerer, state)
        apply_labels(answerer, opts, answering=True)
        if not inbound.sdp.sessions:
            return unread_body(opts.sdp)
        if inbound.rewrite_error or not inbound.medias:
            raise NgError(E.SDP_REWRITE_ERROR)
        state.answered = True
        medias_out = negotiate_answer(self.wiring, call, offerer, answerer, inbound, opts, fork)
        unmanaged_sockets(self.wiring, call, answerer, offerer, inbound, opts, answer=True)
        mirror_directions(answerer, offerer, len(inbound.medias))
        note_answer(call, offerer, answerer, medias_out)
        return self._sdp_reply(answerer, inbound, medias_out, opts)

    def _sdp_reply(
        self, sender: Monologue, inbound: InboundSdp, medias_out: list[OutboundMedia], opts: NgOptions
    ) -> dict[str, Any]:
        """The rewritten SDP of `sender` for the other party (rtpengine's edits, `o=` version kept)."""
        assert opts.sdp is not None
        try:
            rewrite = session_rewrite(
                sender, inbound, opts, self.wiring.connection_for(opts), self.instance_id
            )
            sdp = write_sdp(inbound, medias_out, rewrite)
        except RewriteOrderError:
            raise NgError(E.SDP_REWRITE_ERROR) from None
        sdp = finish_sdp(sender, sdp, inbound)
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

    # ------------------------------------------------------------------ negotiation

    # ------------------------------------------------------------------ sockets and relay wiring

    def _count_closed(self, port: int) -> None:
        seen = self.media.read(port)
        if seen is None:
            return
        self.counters.closed_packets += seen.packets
        self.counters.closed_bytes += seen.bytes
        self.counters.closed_errors += seen.errors
        self.counters.closed_dropped += dropped(seen)

    # ------------------------------------------------------------------ delete / query / list

    def delete(self, opts: NgOptions) -> dict[str, Any]:
        if opts.call_id is None:
            raise NgError(E.NO_CALL_ID)
        call = self.calls.get(opts.call_id)
        selected: Monologue | None = None
        if call is not None and opts.from_tag:  # (10.5: without a from-tag the whole call goes)
            selected = select_for_delete(call.state, opts)
            if selected is None:
                call = None
        if call is None:
            if opts.fatal:
                raise NgError(E.CALL_NOT_FOUND_WARNING)
            return {"result": "ok", "warning": E.CALL_NOT_FOUND_WARNING}
        delay = self.settings.delete_delay if opts.delete_delay is None else float(opts.delete_delay)
        reply: dict[str, Any] = {"result": "ok"}
        if opts.from_tag:
            reply.update(tagged_call_stats(call, self.reading, opts.from_tag, opts.to_tag))
        now = self._now
        change = self._begin(call)
        if selected is not None and links_left_without(call.state, selected):
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
        self.wiring.release_monologue(call, mono)
        if not links_left_without(call.state, None):
            self._destroy(call, "deleted", regular=True)

    def query(self, opts: NgOptions) -> dict[str, Any]:
        if opts.call_id is None:
            raise NgError(E.NO_CALL_ID)
        call = self.calls.get(opts.call_id)
        if call is None:
            raise NgError(E.UNKNOWN_CALL_ID)
        return {"result": "ok", **tagged_call_stats(call, self.reading, opts.from_tag, opts.to_tag)}

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
        if dtmf:
            note_dtmf_block(call, target, block, opts)
        for mono in call.state.monologues.values():
            self.wiring.apply_media_state(call, mono)
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
                    advertised = advertised_of(call, mono, media)
                    if advertised is not None and ipaddress.ip_address(advertised.address) == wanted:
                        return mono
            raise NgError(E.ADDRESS_NO_MATCH)
        if opts.from_tag:
            found = state.by_tag(opts.from_tag)
            if found is None:
                raise NgError(E.FROM_TAG_NOT_FOUND)
            return found
        return None

    # ------------------------------------------------------------------ what the data plane saw

    def reading(self, stream: StreamSpec) -> StreamReading:
        """What the data plane says about `stream` (also for the read side: statistics)."""
        seen = self.media.read(stream.port)
        if seen is not None:
            return seen
        # not opened yet, or a data plane without packets: where packets would go is the SDP's address
        peer = stream.sdp_peer
        return Reading(endpoint=None if peer is None or peer.is_unspecified else peer.as_address())

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
        change = self._open(CallChange(call, True))
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
                    self.wiring.wire(call, mono, a_media, partner, b_media)
            for mono in state.monologues.values():
                self.wiring.apply_media_state(call, mono)
        except BaseException:
            self._close()
            for port in change.restore():
                self.ports.unreserve(port)
            del self.calls[state.call_id]
            raise
        self._commit(change, persist=False)
        effects = [
            OpenStream(effect.spec, restored_for(saved_streams[effect.spec.port], same_host))
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
                policy=policy_for(
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
        return self._deadlines.next()

    def handle_timer(self, now: float) -> list[Effect]:
        """Run the timers that are due: delete-delay expiry and rtpengine's media/offer/final timeouts."""
        self._now = now
        while (call_id := self._deadlines.pop_due(now)) is not None:
            call = self.calls.get(call_id)
            if call is not None:
                change = self._begin(call)
                failed = False
                try:
                    self._check_timers(call, now)
                except Exception:  # a bug of ours: the other calls' timers still run
                    failed = True
                    log.exception("timers of call %s failed", call_id, extra={"call_id": call_id})
                self._commit(change, persist=None)  # (gives a call still there its next deadline)
                if failed and self.calls.get(call_id) is call:
                    self._deadlines.set(call_id, now + TIMER_RETRY)  # not due again in this run
        return self.take_effects()

    def handle_stun(self, port: int, data: bytes, source: tuple[str, int], now: float) -> list[Effect]:
        """A STUN datagram that arrived on media port `port` (ICE connectivity checks)."""
        self._now = now
        effects = self.ice.handle_stun(port, data, source, now)
        for effect in list(effects):
            if isinstance(effect, SetPeer) and effect.address is not None:
                effects += self.dtls.peer_selected(effect.port, effect.address, now)
        for done in self.dtls.take_connected():
            self._dtls_connected(done)
        return effects + self.take_effects()

    def next_ice_deadline(self) -> float | None:
        """When `handle_ice_timer` next has something to do: ICE paces its checks every 20 ms, far
        finer than the call timers, so the I/O layer waits for it on its own."""
        return self.ice.next_deadline()

    def handle_ice_timer(self, now: float) -> list[Effect]:
        return self.ice.handle_timer(now)

    def handle_dtls(self, port: int, data: bytes, source: tuple[str, int], now: float) -> list[Effect]:
        """A DTLS record that arrived on media port `port` (a DTLS-SRTP handshake)."""
        self._now = now
        effects, connected = self.dtls.handle_dtls(port, data, source, now)
        for done in connected:
            self._dtls_connected(done)
        return effects + self.take_effects()

    def next_dtls_deadline(self) -> float | None:
        return self.dtls.next_deadline()

    def handle_dtls_timer(self, now: float) -> list[Effect]:
        self._now = now
        effects, connected = self.dtls.handle_timer(now)
        for done in connected:
            self._dtls_connected(done)
        return effects + self.take_effects()

    def _dtls_connected(self, done: Connected) -> None:
        """A handshake gave a leg its SRTP keys: into the call's state, its streams and its store."""
        call = self.calls.get(done.call_id)
        if call is None:
            return
        mono = next((m for m in call.state.monologues.values() if m.uid == done.key[0]), None)
        media = next((m for m in mono.medias if m.index == done.key[1]), None) if mono else None
        if mono is None or media is None:
            return
        change = self._begin(call)
        if done.component == RTCP:
            media.dtls_rtcp_keys = [done.keys.local, done.keys.remote]
        else:
            media.dtls_keys = [done.keys.local, done.keys.remote]
        self.wiring.apply_media_state(call, mono)
        self._commit(change)

    def _schedule(self, call: Call) -> None:
        self._deadlines.set(call.call_id, self._next_due(call))

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
        state = self._final_state(call)
        del self.calls[call.call_id]
        self._deadlines.discard(call.call_id)
        lost = sum(self.reading(stream).lost for stream in call.all_streams())
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
        change.ended = CallEnded(call.call_id, reason, call.state.created, ended, state, quality)

    def snapshot(self, call_id: str) -> CallState | None:
        """A copy of the call's state with its sockets' current addresses, policy and counters, ready
        to serialize. The live call is not touched."""
        call = self.calls.get(call_id)
        if call is None:
            return None
        return self._with_streams(call, call.state.clone())

    def state_document(self, call_id: str) -> dict[str, Any] | None:
        """`snapshot(call_id).to_dict()` without copying the call first: what the store writes after
        every change. The live state is completed for the moment of serialising and put back."""
        call = self.calls.get(call_id)
        if call is None:
            return None
        state = call.state
        try:
            return self._with_streams(call, state).to_dict()
        finally:
            state.quality = {}  # kept live in `call.quality`; streams live in the specs
            for mono in state.monologues.values():
                for media in mono.medias:
                    media.streams = []

    def _final_state(self, call: Call) -> CallState:
        """The state of a call that is being removed, completed like a snapshot (no copy: nothing
        changes it any more)."""
        return self._with_streams(call, call.state)

    def _with_streams(self, call: Call, state: CallState) -> CallState:
        state.quality = call.quality.to_dict()
        for mono in state.monologues.values():
            for media in mono.medias:
                sockets = call.ports.get((mono.uid, media.index))
                media.streams = (
                    []
                    if sockets is None
                    else [stream_state(stream, self.reading(stream)) for stream in sockets.streams()]
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


def _forget_gone_sinks(call: Call) -> None:
    """A stream whose sink was closed (a fork that lost, a deleted branch) forwards nowhere, as
    before: its sink port may go to another call next."""
    ports = {stream.port for stream in call.all_streams()}
    for stream in call.all_streams():
        if stream.sink is not None and stream.sink not in ports:
            stream.sink = None
        if stream.rtcp_sink is not None and stream.rtcp_sink not in ports:
            stream.rtcp_sink = None
