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
from collections.abc import Callable
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
MAX_RESTARTS = 8
"""Handshakes a party may start over on one leg after failed ones."""


def _looks_like_dtls(data: bytes) -> bool:
    """A DTLS 1.0/1.2 record header (RFC 6347 4.1): content type, version, a length that fits."""
    return (
        len(data) >= 13
        and data[0] in (20, 21, 22, 23)
        and data[1] == 0xFE
        and data[2] in (0xFF, 0xFD)
        and 13 + int.from_bytes(data[11:13], "big") <= len(data)
    )


def _is_client_hello(data: bytes) -> bool:
    return len(data) > 13 and data[0] == 22 and data[13] == 1


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
    restarts: int = 0
    """Handshakes started over after a failed one (bounded: `MAX_RESTARTS`)."""


class DtlsSessions:
    def __init__(self, certificate: DtlsCertificate) -> None:
        self.certificate = certificate
        self.verified: Callable[[str, AgentKey, Address], bool | None] | None = None
        """Whether ICE verified an address for a leg (None: no ICE on it); set by the engine."""
        self.connected_later: list[Connected] = []
        """Handshakes `peer_selected` finished, for the engine to take (`take_connected`)."""
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
        if not _looks_like_dtls(data) or not self._from_the_party(leg, source):
            self.totals.dropped += 1
            return [], []
        if self.verified is not None and self.verified(call_id, key, source) is False:
            # an ICE leg whose checks have not reached this address yet (the browser may start DTLS
            # a moment before Karl's own check succeeds): kept until ICE verifies it, answered then
            if len(leg.early) < EARLY_RECORDS:
                leg.early.append((data, source))
            else:
                self.totals.dropped += 1
            return [], []
        session = leg.session
        if (
            session is not None
            and session.state is DtlsState.FAILED
            and not session.active
            and _is_client_hello(data)
            and leg.restarts < MAX_RESTARTS
        ):
            # the party starts over (a forged record may have broken the first try): a fresh handshake
            leg.restarts += 1
            leg.session = DtlsSession(self.certificate, active=False, fingerprints=session.fingerprints)
            leg.session.start(now)
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

    @staticmethod
    def _from_the_party(leg: _Leg, source: Address) -> bool:
        """After a handshake, records only from where it ran (its last flight may come again)."""
        if leg.session is not None and leg.session.state is DtlsState.CONNECTED:
            return leg.peer is None or source == leg.peer
        return True

    def peer_selected(self, port: int, address: Address, now: float) -> list[Effect]:
        """ICE chose (so verified) the party's address on `port`: the records kept from there are
        taken now, and Karl's last flight of a handshake it leads goes there at once (sent before ICE
        was done, it may have gone nowhere). On an ICE leg no handshake is answered towards an
        address ICE has not verified (no reflection towards a spoofed source)."""
        found = self._by_port.get(port)
        if found is None:
            return []
        call_id, key = found
        leg = self._legs[call_id][key]
        session = leg.session
        if session is None:
            return []
        effects: list[Effect] = []
        if session.active and session.state is DtlsState.CONNECTING:
            leg.peer = address
            effects += [SendDatagram(port, address, data) for data in session.last_flight]
        waiting = [(data, source) for data, source in leg.early if source == address]
        if waiting:
            leg.early = [(data, source) for data, source in leg.early if source != address]
            leg.peer = address
            for data, _ in waiting:
                session.handle_datagram(data, now)
        more, connected = self._outputs(call_id, key, leg, now)
        self.connected_later += connected
        self._schedule(call_id)
        return effects + more

    def take_connected(self) -> list[Connected]:
        done, self.connected_later = self.connected_later, []
        return done

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
