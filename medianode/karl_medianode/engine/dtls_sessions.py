"""The DTLS-SRTP handshakes of the engine's calls: one per party and media where Karl terminates DTLS
(sans-IO).

A handshake starts once Karl's role on the leg is settled (its answer, or the party's answer to its
`actpass`) and ends with the SRTP keys, which the engine then writes into the call's state
(`MediaState.dtls_keys`): from there they key the leg's SRTP contexts, are stored with the call and
move with it to another node, which needs no new handshake. Records that arrive before the role is
settled (a party that sends its ClientHello before its answer reaches Karl) wait, a few at most.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from karl_medianode.dtls.certificate import DtlsCertificate
from karl_medianode.dtls.session import DtlsSession, DtlsState, SrtpKeys
from karl_medianode.engine import dtls_negotiation as dtls
from karl_medianode.engine.calls import Call
from karl_medianode.engine.deadlines import Deadlines
from karl_medianode.engine.effects import Effect, SendDatagram, SendToPeer

log = logging.getLogger("karl.dtls")

AgentKey = tuple[int, int]
Address = tuple[str, int]
EARLY_RECORDS = 8
"""DTLS records kept per leg while Karl's role there is not settled yet."""


@dataclass
class DtlsTotals:
    connected: int = 0
    failed: int = 0
    dropped: int = 0
    """DTLS records dropped: for no handshake of Karl's, unreadable, from another address than the
    party's handshake came from, or after a failed handshake."""


@dataclass(frozen=True)
class Connected:
    """A handshake finished: these keys are the leg's from now on."""

    call_id: str
    key: AgentKey
    keys: SrtpKeys


@dataclass
class _Leg:
    port: int
    session: DtlsSession | None = None
    early: list[tuple[bytes, Address]] = field(default_factory=list)
    peer: Address | None = None
    """Where the party's records came from last (Karl answers there)."""


class DtlsSessions:
    def __init__(self, certificate: DtlsCertificate) -> None:
        self.certificate = certificate
        self._legs: dict[str, dict[AgentKey, _Leg]] = {}
        self._by_port: dict[int, tuple[str, AgentKey]] = {}
        self._deadlines = Deadlines()
        self.totals = DtlsTotals()

    def sessions(self) -> int:
        return sum(1 for legs in self._legs.values() for leg in legs.values() if leg.session is not None)

    def state_of(self, call_id: str, key: AgentKey) -> DtlsState | None:
        leg = self._legs.get(call_id, {}).get(key)
        return None if leg is None or leg.session is None else leg.session.state

    # ------------------------------------------------------------------ following the calls

    def sync(self, call: Call, now: float) -> list[Effect]:
        """Make the call's handshakes match its state (after a change of the call)."""
        legs = self._legs.get(call.call_id, {})
        for leg in legs.values():
            self._by_port.pop(leg.port, None)
        wanted: dict[AgentKey, _Leg] = {}
        effects: list[Effect] = []
        for mono in call.state.monologues.values():
            for media in mono.medias:
                key = (mono.uid, media.index)
                sockets = call.ports.get(key)
                if not dtls.terminates(media) or media.rejected or sockets is None or sockets.rtp is None:
                    continue
                found = legs.get(key)
                leg = (
                    found if found is not None and found.port == sockets.rtp.port else _Leg(sockets.rtp.port)
                )
                wanted[key] = leg
                self._by_port[leg.port] = (call.call_id, key)
                client = dtls.karl_is_client(media)
                if client is None:
                    leg.session = None  # the role is not settled yet
                    continue
                if media.dtls_keys:
                    # keys known: the finished handshake stays to answer a party that repeats its last
                    # flight; a restored call needs none
                    continue
                session = leg.session
                if (
                    session is None
                    or session.active != client
                    or session.fingerprints
                    != [(name.lower(), digest.upper()) for name, digest in dtls.fingerprints(media)]
                ):
                    session = leg.session = DtlsSession(
                        self.certificate, active=client, fingerprints=dtls.fingerprints(media)
                    )
                    session.start(now)
                    leg.peer = None  # a new handshake: with whoever starts it (or its early records)
                    early, leg.early = leg.early, []
                    for data, source in early:
                        if leg.peer is None or source == leg.peer:
                            leg.peer = source
                            session.handle_datagram(data, now)
                effects += self._outputs(call.call_id, key, leg, now)[0]
        if wanted:
            self._legs[call.call_id] = wanted
        else:
            self._legs.pop(call.call_id, None)
        self._schedule(call.call_id)
        return effects

    def drop(self, call_id: str) -> None:
        for leg in self._legs.pop(call_id, {}).values():
            self._by_port.pop(leg.port, None)
        self._deadlines.discard(call_id)

    # ------------------------------------------------------------------ datagrams and timers

    def handle_dtls(
        self, port: int, data: bytes, source: Address, now: float
    ) -> tuple[list[Effect], list[Connected]]:
        found = self._by_port.get(port)
        if found is None:
            self.totals.dropped += 1
            return [], []
        call_id, key = found
        leg = self._legs[call_id][key]
        if leg.peer is not None and source != leg.peer:
            # one handshake per leg, with whoever started it: records from elsewhere cannot disturb it
            # (a stranger could not finish one anyway: its certificate matches no fingerprint)
            self.totals.dropped += 1
            return [], []
        if leg.session is None:
            if len(leg.early) < EARLY_RECORDS:
                leg.early.append((data, source))
            else:
                self.totals.dropped += 1
            return [], []
        leg.peer = source
        before = leg.session.records_dropped
        leg.session.handle_datagram(data, now)
        self.totals.dropped += leg.session.records_dropped - before
        result = self._outputs(call_id, key, leg, now)
        self._schedule(call_id)
        return result

    def next_deadline(self) -> float | None:
        return self._deadlines.next()

    def handle_timer(self, now: float) -> tuple[list[Effect], list[Connected]]:
        effects: list[Effect] = []
        connected: list[Connected] = []
        while (call_id := self._deadlines.pop_due(now)) is not None:
            for key, leg in self._legs.get(call_id, {}).items():
                session = leg.session
                due = session.next_deadline() if session is not None else None
                if session is not None and due is not None and due <= now:
                    session.handle_timer(now)
                    more, done = self._outputs(call_id, key, leg, now)
                    effects += more
                    connected += done
            self._schedule(call_id)
        return effects, connected

    def _schedule(self, call_id: str) -> None:
        dues = [
            due
            for leg in self._legs.get(call_id, {}).values()
            if leg.session is not None and (due := leg.session.next_deadline()) is not None
        ]
        if dues:
            self._deadlines.set(call_id, min(dues))
        else:
            self._deadlines.discard(call_id)

    def _outputs(
        self, call_id: str, key: AgentKey, leg: _Leg, now: float
    ) -> tuple[list[Effect], list[Connected]]:
        session = leg.session
        if session is None:
            return [], []
        effects: list[Effect] = [
            SendDatagram(leg.port, leg.peer, data) if leg.peer is not None else SendToPeer(leg.port, data)
            for data in session.take_datagrams()
        ]
        connected: list[Connected] = []
        if session.state is DtlsState.CONNECTED and session.keys is not None:
            self.totals.connected += 1
            connected.append(Connected(call_id, key, session.keys))
            log.info(
                "DTLS handshake done",
                extra={"call_id": call_id, "event": "dtls_connected", "suite": session.keys.suite},
            )
            session.keys = None  # reported once
        elif session.state is DtlsState.FAILED and session.failure is not None:
            self.totals.failed += 1
            log.warning(
                "DTLS handshake failed: %s",
                session.failure,
                extra={"call_id": call_id, "event": "dtls_failed", "media": key[1]},
            )
            session.failure = None  # reported once; `state` stays failed
        return effects, connected
