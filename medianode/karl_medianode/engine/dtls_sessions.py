"""The DTLS-SRTP handshakes of the engine's calls: one per party, media and component where Karl
terminates DTLS (sans-IO).

A handshake runs on the leg's RTP port and, where RTCP is not multiplexed (a separate RTCP port),
another one on its RTCP port, whose keys protect the SRTCP there (RFC 5764 4.2, as rtpengine 10.5):
both with the same role and the party's same fingerprints. A handshake starts once Karl's role on the
leg is settled (its answer, or the party's answer to its `actpass`) and ends with the SRTP keys, which
the engine then writes into the call's state (`MediaState.dtls_keys`, `dtls_rtcp_keys`): from there
they key the leg's SRTP contexts, are stored with the call and move with it to another node, which
needs no new handshake. Records that arrive before the role is settled (a party that sends its
ClientHello before its answer reaches Karl) wait, a few at most.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from karl_core.session import MediaState
from karl_medianode.dtls.certificate import DtlsCertificate
from karl_medianode.dtls.session import DtlsSession, DtlsState, SrtpKeys
from karl_medianode.engine import dtls_negotiation as dtls
from karl_medianode.engine.calls import Call
from karl_medianode.engine.deadlines import Deadlines
from karl_medianode.engine.effects import Effect, SendDatagram, SendToPeer
from karl_medianode.engine.sdes_negotiation import NO_KEY
from karl_medianode.engine.streams import MediaPorts, StreamSpec

log = logging.getLogger("karl.dtls")

AgentKey = tuple[int, int]
"""(monologue uid, media index), as `Call.ports`."""
LegKey = tuple[int, int, int]
"""(monologue uid, media index, component): 1 on the RTP port, 2 on a separate RTCP port."""
Address = tuple[str, int]
RTP, RTCP = 1, 2
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


def components(media: MediaState, sockets: MediaPorts) -> list[tuple[int, StreamSpec]]:
    """The ports of a leg that run a handshake of their own: the RTP port, and the RTCP port where
    RTCP is not multiplexed (RFC 5764 4.2); as ICE has its components."""
    if sockets.rtp is None:
        return []
    if sockets.rtcp is not None and not media.rtcp_mux:
        return [(RTP, sockets.rtp), (RTCP, sockets.rtcp)]
    return [(RTP, sockets.rtp)]


def keys_of(media: MediaState, component: int) -> list[str]:
    """The keys a component's handshake gave (empty: not done)."""
    return media.dtls_keys if component == RTP else media.dtls_rtcp_keys


def rtcp_leg_keys(media: MediaState) -> tuple[str, str]:
    """(Karl's key, the party's key) of a separate RTCP port where DTLS keys the leg, from the RTCP
    port's own handshake; `NO_KEY` until it is done (nothing passes), as `dtls_negotiation.leg_keys`."""
    if len(media.dtls_rtcp_keys) == 2:
        return media.dtls_rtcp_keys[0], media.dtls_rtcp_keys[1]
    return NO_KEY


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
    component: int = RTP
    """1: the RTP port's handshake (`dtls_keys`), 2: the RTCP port's (`dtls_rtcp_keys`)."""


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
        self.verified: Callable[[str, AgentKey, Address, int], bool | None] | None = None
        """Whether ICE verified an address for a leg's component (None: no ICE on it); set by the
        engine."""
        self.connected_later: list[Connected] = []
        """Handshakes `peer_selected` finished, for the engine to take (`take_connected`)."""
        self._legs: dict[str, dict[LegKey, _Leg]] = {}
        self._by_port: dict[int, tuple[str, LegKey]] = {}
        self._deadlines = Deadlines()
        self.totals = DtlsTotals()

    def sessions(self) -> int:
        return sum(1 for legs in self._legs.values() for leg in legs.values() if leg.session is not None)

    def state_of(self, call_id: str, key: AgentKey, component: int = RTP) -> DtlsState | None:
        leg = self._legs.get(call_id, {}).get((*key, component))
        return None if leg is None or leg.session is None else leg.session.state

    # ------------------------------------------------------------------ following the calls

    def sync(self, call: Call, now: float) -> list[Effect]:
        """Make the call's handshakes match its state (after a change of the call)."""
        legs = self._legs.get(call.call_id, {})
        for leg in legs.values():
            self._by_port.pop(leg.port, None)
        wanted: dict[LegKey, _Leg] = {}
        effects: list[Effect] = []
        for mono in call.state.monologues.values():
            for media in mono.medias:
                sockets = call.ports.get((mono.uid, media.index))
                if not dtls.terminates(media) or media.rejected or sockets is None:
                    continue
                for component, spec in components(media, sockets):
                    key = (mono.uid, media.index, component)
                    found = legs.get(key)
                    leg = found if found is not None and found.port == spec.port else _Leg(spec.port)
                    wanted[key] = leg
                    self._by_port[leg.port] = (call.call_id, key)
                    effects += self._sync_leg(call.call_id, key, leg, media, now)
        if wanted:
            self._legs[call.call_id] = wanted
        else:
            self._legs.pop(call.call_id, None)
        self._schedule(call.call_id)
        return effects

    def _sync_leg(self, call_id: str, key: LegKey, leg: _Leg, media: MediaState, now: float) -> list[Effect]:
        client = dtls.karl_is_client(media)
        if client is None:
            leg.session = None  # the role is not settled yet
            return []
        if keys_of(media, key[2]):
            # keys known: the finished handshake stays to answer a party that repeats its last
            # flight; a restored call needs none
            return []
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
        return self._outputs(call_id, key, leg, now)[0]

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
        if self.verified is not None and self.verified(call_id, (key[0], key[1]), source, key[2]) is False:
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
        self, call_id: str, key: LegKey, leg: _Leg, now: float
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
            connected.append(Connected(call_id, (key[0], key[1]), session.keys, key[2]))
            log.info(
                "DTLS handshake done",
                extra={
                    "call_id": call_id,
                    "event": "dtls_connected",
                    "suite": session.keys.suite,
                    "media": key[1],
                    "socket": "rtp" if key[2] == RTP else "rtcp",
                },
            )
            session.keys = None  # reported once
        elif session.state is DtlsState.FAILED and session.failure is not None:
            self.totals.failed += 1
            log.warning(
                "DTLS handshake failed: %s",
                session.failure,
                extra={
                    "call_id": call_id,
                    "event": "dtls_failed",
                    "media": key[1],
                    "socket": "rtp" if key[2] == RTP else "rtcp",
                },
            )
            session.failure = None  # reported once; `state` stays failed
        return effects, connected
