"""What the engine asks of each media socket: plain data the data plane makes true.

A `StreamSpec` is one local port of a call (rtpengine's packet stream) as signalling configured it:
where its party is (from SDP), where what arrives goes (the sink's port), how strictly the party's
source is checked, what is blocked or silenced. Counters, learned addresses and sequence state are
the data plane's; the engine reads them through `MediaView` (`media_view`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypeVar

from karl_core.session import Endpoint, EndpointLearning, StreamPolicy

PT_UNKNOWN = 0
PT_FORWARD = 1
PT_BLOCKED = 2
"""Entries of `StreamSpec.payload_types`: not in the SDP (counted as an error, still forwarded),
forwarded, dropped (e.g. telephone-event under `block DTMF`)."""

SilenceCodecs = tuple[tuple[int, str, int], ...]
"""(payload type, codec name, clock rate) of the codecs whose payloads `silence media` replaces."""

_H = TypeVar("_H", bound=Hashable)
_SHARED: dict[Hashable, Hashable] = {}
_POLICIES: dict[tuple[EndpointLearning, bool, bool, bool], StreamPolicy] = {}
SHARED_LIMIT = 10_000
"""Distinct values kept for sharing (hostile SDPs cannot grow the table past it)."""


def shared(value: _H) -> _H:
    """One object for equal immutable values that many streams carry (payload-type and clock-rate
    tables): a few hundred bytes less per call."""
    found = _SHARED.get(value)
    if found is not None:
        return found  # type: ignore[return-value]  # equal to value, hence of its type
    if len(_SHARED) < SHARED_LIMIT:
        _SHARED[value] = value
    return value


def policy_for(
    learning: EndpointLearning = EndpointLearning.DELAYED,
    asymmetric: bool = False,
    strict_source: bool = False,
    media_handover: bool = False,
) -> StreamPolicy:
    """The shared `StreamPolicy` with these settings (never changed: a stream gets another one)."""
    key = (learning, asymmetric, strict_source, media_handover)
    found = _POLICIES.get(key)
    if found is None:
        found = _POLICIES[key] = StreamPolicy(learning, asymmetric, strict_source, media_handover)
    return found


@dataclass(slots=True)
class StreamSpec:
    port: int
    """The local port: the stream's identity on this node."""
    local_ip: str
    call_id: str
    party: str | None
    """The tag of the party this socket talks to (its RTCP statistics are filed under it)."""
    component: int = 1
    """1: RTP (RTCP too with rtcp-mux); 2: a dedicated RTCP socket."""
    sdp_peer: Endpoint | None = None
    """The party's address as its SDP gave it, also an unspecified one (hold)."""
    rtcp_on_rtp_port: bool = False
    """An RTCP socket whose party muxes and gave its RTP port in `a=rtcp` (RFC 5761): 10.5 lists it with
    no advertised endpoint and leaves its endpoint as it was (`sdp_peer`)."""
    ice_zero_address: Endpoint | None = None
    """An ICE party's SDP gave this unspecified address (`c=0.0.0.0`): ICE does not read it as a hold,
    so `sdp_peer` stays where it was (as in 10.5, whose `query` shows this as the advertised endpoint
    and the earlier one as the endpoint)."""
    policy: StreamPolicy = field(default_factory=policy_for)
    signalled: float = 0.0
    """Wall-clock time of the signalling that last touched the stream."""
    signals: int = 0
    """How often signalling restarted endpoint learning (the data plane restarts it when this moves)."""
    sink: int | None = None
    """The port whose party receives what arrives here."""
    rtcp_sink: int | None = None
    rtcp_mux: bool = False
    blocked: bool = False
    silence: SilenceCodecs | None = None
    payload_types: bytes | None = None
    """128 entries (PT_*), one per payload type; None: no check."""
    clock_rates: tuple[tuple[int, int], ...] = ()
    """Payload type → clock rate, for the RTCP statistics and the jitter buffer."""
    jitter_buffer: bool = False
    srtp_in: str | None = None
    """SDES terminated on this party's leg: the party's `a=crypto` value (what arrives here is SRTP
    under its key) ..."""
    srtp_out: str | None = None
    """... and Karl's (what is sent from here to the party is protected with it). "" for both: the leg
    must be secure but no key is agreed yet (its media is dropped); None: a plain leg."""
    ice: bool = False
    """Karl is an ICE agent towards the stream's party: STUN arriving here goes to the engine."""
    dtls: bool = False
    """Karl terminates DTLS-SRTP towards the stream's party: DTLS records arriving here go to the engine."""

    @property
    def is_rtcp(self) -> bool:
        return self.component == 2

    def copy(self) -> StreamSpec:
        # every field is immutable (a policy is replaced, never changed): a shallow copy is a full one
        return StreamSpec(
            self.port,
            self.local_ip,
            self.call_id,
            self.party,
            self.component,
            self.sdp_peer,
            self.rtcp_on_rtp_port,
            self.ice_zero_address,
            self.policy,
            self.signalled,
            self.signals,
            self.sink,
            self.rtcp_sink,
            self.rtcp_mux,
            self.blocked,
            self.silence,
            self.payload_types,
            self.clock_rates,
            self.jitter_buffer,
            self.srtp_in,
            self.srtp_out,
            self.ice,
            self.dtls,
        )


@dataclass
class MediaPorts:
    """The proxy's sockets of one media of one party (the ports advertised *to* that party)."""

    rtp: StreamSpec | None = None
    rtcp: StreamSpec | None = None
    parked: tuple[StreamSpec, ...] = ()
    """Sockets of a media the answer rejected: 10.5 keeps them bound (relaying nothing, not shown by
    `query`), and a re-offer of the media takes them up again, ports and all."""

    branches: dict[int, tuple[StreamSpec, ...]] = field(default_factory=dict)
    """The offerer's sockets of an earlier fork, by that fork's party (uid): when another fork answers,
    10.5 keeps them bound and idle and gives the offerer new ones; when that earlier fork answers again,
    the offerer gets them back, ports and all (probed with `ss`)."""

    def streams(self) -> list[StreamSpec]:
        return [s for s in (self.rtp, self.rtcp) if s is not None]

    def all_specs(self) -> list[StreamSpec]:
        """Every socket, in use or kept: what the data plane has open for this media."""
        kept = [spec for specs in self.branches.values() for spec in specs]
        return [*self.streams(), *self.parked, *kept]

    def park_branch(self, fork: int) -> None:
        """Keep the sockets in use for the fork `fork` (uid), idle (no sink, blocked); none in use now."""
        current = self.streams()
        if not current:
            return
        for stream in current:
            stream.sink = stream.rtcp_sink = None
            stream.blocked = True
        self.branches[fork] = tuple(current)
        self.rtp = self.rtcp = None

    def resume_branch(self, fork: int) -> bool:
        """Take up the sockets kept for the fork `fork` again (the ones in use must be parked first)."""
        kept = self.branches.pop(fork, None)
        if kept is None:
            return False
        assert self.rtp is None and self.rtcp is None
        for stream in kept:
            stream.blocked = False
            if stream.component == 2:
                self.rtcp = stream
            else:
                self.rtp = stream
        return True

    def park(self) -> None:
        """Keep the sockets, idle: no peer, no sink, blocked."""
        for stream in self.streams():
            stream.sdp_peer = None
            stream.sink = stream.rtcp_sink = None
            stream.blocked = True
        self.parked = (*self.streams(), *self.parked)
        self.rtp = self.rtcp = None
