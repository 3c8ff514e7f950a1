"""The call's sockets as specs: which ports each party is given, where each socket's party is, where
what arrives goes, and what is blocked, silenced or buffered (sans-IO; the data plane makes it so)."""

from __future__ import annotations

from karl_core.ng.options import NgOptions
from karl_core.session import Endpoint, MediaState, Monologue
from karl_medianode.engine.calls import Call
from karl_medianode.engine.dtls_negotiation import leg_keys as dtls_keys
from karl_medianode.engine.dtls_negotiation import terminates as dtls_terminates
from karl_medianode.engine.dtls_sessions import RTCP
from karl_medianode.engine.dtls_sessions import components as dtls_components
from karl_medianode.engine.dtls_sessions import rtcp_leg_keys as dtls_rtcp_keys
from karl_medianode.engine.ice_negotiation import ice_leg
from karl_medianode.engine.media_rules import endpoint_of, payload_type_flags, silence_codecs
from karl_medianode.engine.ports import PortPool
from karl_medianode.engine.rewrite.inbound import InboundMedia
from karl_medianode.engine.sdes_negotiation import leg_keys
from karl_medianode.engine.settings import EngineSettings
from karl_medianode.engine.streams import MediaPorts, StreamSpec, policy_for, shared


class StreamWiring:
    """Sets up a call's stream specs. `now` and `reserved` belong to the change being applied: the
    time of its request, and where the ports it reserves are noted (given back if it fails)."""

    def __init__(self, settings: EngineSettings, ports: PortPool) -> None:
        self.settings = settings
        self.ports = ports
        self.now = 0.0
        self.reserved: list[int] | None = None

    def connection_for(self, opts: NgOptions) -> str:
        """The address the SDP sent on names for the media."""
        return opts.media_address or self.settings.advertised_ip

    def ensure_sockets(self, call: Call, sockets: MediaPorts, *, single: bool) -> None:
        """Ports towards a party for a media that has none: a pair (RTP and RTCP; UDPTL and other
        UDP media get one too, as in 10.5), or one port with rtcp-mux."""
        if sockets.rtp is not None:
            return
        if sockets.parked:
            # a media rejected before, offered again: its kept sockets, as 10.5 does
            sockets.rtp, *rest = sockets.parked
            sockets.rtp.blocked = False
            if not single and rest and rest[0].component == 2:
                sockets.rtcp, *rest = rest
                sockets.rtcp.blocked = False
            sockets.parked = tuple(rest)
            return
        ports = [self.ports.reserve_single()] if single else list(self.ports.reserve_pair())
        if self.reserved is not None:
            self.reserved += ports
        ip = self.settings.media_ip
        sockets.rtp = StreamSpec(ports[0], ip, call.call_id, None)
        if len(ports) == 2:
            sockets.rtcp = StreamSpec(ports[1], ip, call.call_id, None, component=2)

    def drop_single_port(self, sockets: MediaPorts, media: MediaState) -> None:
        """A pair is needed now: one port (rtcp-mux) is let go, so that `ensure_sockets` makes a new
        pair, as 10.5 does (never an `a=rtcp` port Karl does not hold). A pair first made as one port
        is made anew each time (`MediaState.ports_made_for`), its streams otherwise as they were."""
        if sockets.rtp is None:
            return
        if sockets.rtcp is None:
            self.close_sockets(sockets)
        elif media.ports_made_for == 1:
            ports = self.ports.reserve_pair()
            if self.reserved is not None:
                self.reserved += ports
            sockets.rtp = sockets.rtp.copy()
            sockets.rtcp = sockets.rtcp.copy()
            sockets.rtp.port, sockets.rtcp.port = ports

    @staticmethod
    def new_ports_for(sockets: MediaPorts, media: MediaState) -> None:
        """The party moved: its sockets go, and the next ones are made for its new address (10.5's
        new endpoint map, whose count is that of the ports it is made with)."""
        StreamWiring.close_sockets(sockets)
        media.ports_made_for = 0

    @staticmethod
    def note_ports_made(sockets: MediaPorts, media: MediaState) -> None:
        """Sockets towards a party with their first ports: how many they were made with."""
        if media.ports_made_for == 0 and sockets.rtp is not None:
            media.ports_made_for = 1 if sockets.rtcp is None else 2

    @staticmethod
    def close_sockets(sockets: MediaPorts) -> None:
        """Stop using these sockets (closed when the change commits; kept if it fails)."""
        sockets.rtp = None
        sockets.rtcp = None

    def configure_party(
        self, sockets: MediaPorts, media: MediaState, media_in: InboundMedia, opts: NgOptions
    ) -> None:
        """Set the peer addresses and latching behaviour of the sockets that talk to this party."""
        endpoint = endpoint_of(media_in, opts)
        rtcp_endpoint: Endpoint | None = None
        if endpoint is not None:
            if media_in.rtcp is not None:
                # `a=rtcp:9 IN IP4 0.0.0.0` (browsers) gives only a port, as 10.5 reads it
                use_media_address = opts.sip_source_address or (
                    media_in.rtcp.is_unspecified and not endpoint.is_unspecified
                )
                rtcp_endpoint = Endpoint(
                    endpoint.address if use_media_address else media_in.rtcp.address,
                    media_in.rtcp.port,
                )
            else:
                rtcp_endpoint = Endpoint(endpoint.address, endpoint.port + 1)
        now = self.now
        for stream in sockets.streams():
            learning = stream.policy.learning if opts.endpoint_learning is None else opts.endpoint_learning
            stream.policy = policy_for(learning, opts.asymmetric, opts.strict_source, opts.media_handover)
            stream.signalled = now
            stream.signals += 1
        rtcp_on_rtp_port = (
            media_in.rtcp_mux
            and media_in.rtcp is not None
            and endpoint is not None
            and media_in.rtcp.port == endpoint.port
        )
        if sockets.rtcp is not None:
            sockets.rtcp.rtcp_on_rtp_port = rtcp_on_rtp_port
        for spec, peer in ((sockets.rtp, endpoint), (sockets.rtcp, rtcp_endpoint)):
            if spec is None or (spec.is_rtcp and rtcp_on_rtp_port):
                continue  # (see StreamSpec.rtcp_on_rtp_port)
            kept = spec.sdp_peer
            zero = peer is not None and peer.is_unspecified
            if media_in.has_ice and zero and kept is not None and not kept.is_unspecified:
                spec.ice_zero_address = peer  # (an ICE party's 0.0.0.0 is no hold: see StreamSpec)
            else:
                spec.sdp_peer, spec.ice_zero_address = peer, None
        # (as the party's latest SDP came with them or not: 10.5 copies both flags from each request)
        for flag, given in (("asymmetric", opts.asymmetric), ("unidirectional", opts.unidirectional)):
            if given:
                media.flags.add(flag)
            else:
                media.flags.discard(flag)

    def wire(self, call: Call, a: Monologue, a_media: MediaState, b: Monologue, b_media: MediaState) -> None:
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
        self.apply_media_state(call, a)
        self.apply_media_state(call, b)

    def release_monologue(self, call: Call, mono: Monologue) -> None:
        for (uid, _index), sockets in list(call.ports.items()):
            if uid == mono.uid:
                self.close_sockets(sockets)
                del call.ports[(uid, _index)]

    def apply_media_state(self, call: Call, mono: Monologue) -> None:
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
            clock_rates = shared(tuple((c.payload_type, c.clock_rate) for c in media.codecs))
            rtp_dtls = dtls_keys(media)
            keys = rtp_dtls or leg_keys(media)
            dtls = dtls_terminates(media) and not media.rejected
            # without rtcp-mux, the RTCP port runs a DTLS handshake of its own, whose keys it uses
            own_handshake = dtls and any(c == RTCP for c, _ in dtls_components(media, sockets))
            rtcp_keys = dtls_rtcp_keys(media) if own_handshake and rtp_dtls is not None else keys
            for stream in sockets.streams():
                stream.blocked = blocked
                stream.party = mono.tag or None
                stream.clock_rates = clock_rates
                stream_keys = rtcp_keys if stream.is_rtcp else keys
                stream.srtp_out, stream.srtp_in = stream_keys if stream_keys is not None else (None, None)
                stream.ice = media.ice and not media.rejected
                stream.dtls = dtls and (not stream.is_rtcp or own_handshake)
            if sockets.rtp is not None:
                sockets.rtp.silence = silence_codecs(media) if silenced else None
                sockets.rtp.payload_types = (
                    payload_type_flags(media.codecs, dtmf_blocked) if media.is_rtp else None
                )
                # re-offered as other media (T.38): relayed as it is
                sockets.rtp.jitter_buffer = jitter_buffer and media.is_rtp


def switch_fork(
    call: Call, offerer: Monologue, current: Monologue, answering: Monologue | None
) -> frozenset[int]:
    """Another fork answers the offerer: the offerer's sockets of the current fork are kept, idle, for
    it, and the answering fork gets its own kept ones back (None, or none kept: new ones are made);
    towards an ICE party the sockets stay. Returns the indexes of the media whose sockets changed."""
    changed: set[int] = set()
    medias = {media.index: media for media in offerer.medias}
    for (uid, index), sockets in call.ports.items():
        if uid != offerer.uid:
            continue
        if answering is not None and answering.uid not in sockets.branches:
            continue  # nothing kept for that fork: it goes on with the sockets in use
        if index in medias and ice_leg(medias[index]):
            # 10.5's sockets towards an ICE party do not follow the answerer's address: they stay, and
            # change only where a pair must be made (`MediaState.ports_made_for`)
            continue
        changed.add(index)
        sockets.park_branch(current.uid)
        if answering is not None:
            sockets.resume_branch(answering.uid)
        if index in medias:
            medias[index].ports_made_for = 0  # (counted again from the sockets the answer leaves it with)
    return frozenset(changed)
