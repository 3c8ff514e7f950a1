"""How one `m=` line of an offer or answer updates a party's media, codecs and sockets' peers:
rtpengine 10.5's rules as plain functions (sans-IO)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from karl_core.ng.options import NgOptions
from karl_core.session import (
    Codec,
    Endpoint,
    MediaState,
    Monologue,
)
from karl_medianode.engine.calls import Call
from karl_medianode.engine.rewrite.inbound import InboundMedia, InboundSdp
from karl_medianode.engine.rewrite.outbound import OutboundMedia
from karl_medianode.engine.streams import PT_BLOCKED, PT_FORWARD, MediaPorts, SilenceCodecs, shared

if TYPE_CHECKING:  # (wiring uses these rules)
    from karl_medianode.engine.wiring import StreamWiring


def copy_media_shell(media: MediaState) -> MediaState:
    return MediaState(
        media.index,
        media.media_type,
        media.protocol,
        list(media.formats),
        [
            Codec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp, list(c.rtcp_fb))
            for c in media.codecs
        ],
        # every fork was offered the same keys, ICE credentials and DTLS role
        sdes_ours=list(media.sdes_ours),
        ice_ufrag=media.ice_ufrag,
        ice_pwd=media.ice_pwd,
        dtls_setup=media.dtls_setup,
        dtls_hash=media.dtls_hash,
    )


def ensure_media(mono: Monologue, media_in: InboundMedia) -> MediaState:
    while len(mono.medias) < media_in.index:
        mono.medias.append(MediaState(len(mono.medias) + 1, media_in.media_type, media_in.protocol))
    return mono.medias[media_in.index - 1]


def update_media_from_sdp(media: MediaState, media_in: InboundMedia, opts: NgOptions) -> None:
    media.protocol = media_in.protocol
    media.formats = list(media_in.formats)
    media.codecs = list(media_in.codecs)
    direction = direction_of(media_in)
    media.send = direction in ("sendrecv", "sendonly")
    media.recv = direction in ("sendrecv", "recvonly")
    if media_in.ptime is not None or media.media_type != media_in.media_type:
        media.ptime = media_in.ptime  # otherwise the earlier ptime of the media is remembered
    media.rejected = media_in.rejected
    on_rtp_port = media_in.rtcp_mux and media_in.rtcp is not None and media_in.rtcp.port == media_in.port
    media.rtcp_endpoint_kept = rtcp_endpoint_before(media) if on_rtp_port else None
    media.rtcp_mux_offered = media_in.rtcp_mux
    media.sdp_address = media_in.connection
    media.sdp_port = media_in.port
    media.advertised_rtcp = media_in.rtcp
    media.media_type = media_in.media_type


def rtcp_endpoint_of(rtp: Endpoint, advertised: Endpoint | None) -> Endpoint:
    """Where a party's SDP puts its RTCP: its `a=rtcp` (on the media's address where that gives an
    unspecified one, as browsers' `a=rtcp:9 IN IP4 0.0.0.0`), else the RTP port + 1."""
    if advertised is None:
        return Endpoint(rtp.address, rtp.port + 1)
    return Endpoint(rtp.address if advertised.is_unspecified else advertised.address, advertised.port)


def rtcp_endpoint_before(media: MediaState) -> Endpoint | None:
    """Where the party's SDP so far put its RTCP (`rtcp_endpoint_of`); what was kept, where its
    `a=rtcp` named the RTP port of a muxing party."""
    if media.sdp_address is None or not media.sdp_port:
        return None
    advertised = media.advertised_rtcp
    if advertised is not None and media.rtcp_mux_offered and advertised.port == media.sdp_port:
        return media.rtcp_endpoint_kept
    return rtcp_endpoint_of(Endpoint(media.sdp_address, media.sdp_port), advertised)


def is_held(media_in: InboundMedia) -> bool:
    return media_in.connection in ("0.0.0.0", "::")


def direction_of(media_in: InboundMedia) -> str:
    if is_held(media_in):
        # old-style hold: rtpengine keeps 0.0.0.0 and announces sendonly
        return "sendonly" if media_in.direction in ("sendrecv", "sendonly") else "inactive"
    return media_in.direction


def endpoint_of(media_in: InboundMedia, opts: NgOptions) -> Endpoint | None:
    if media_in.connection is None or media_in.rejected:
        return None
    address = media_in.connection
    if opts.sip_source_address and opts.received_from is not None:
        address = opts.received_from[1]
    return Endpoint(address, media_in.port)


def unmanaged(media_in: InboundMedia) -> OutboundMedia:
    return OutboundMedia(
        media_in.port, None, False, media_in.protocol, None, media_in.direction, None, "", managed=False
    )


def rejected(media_in: InboundMedia, protocol: str) -> OutboundMedia:
    return OutboundMedia(0, None, False, protocol, None, media_in.direction, None, "")


def codec_matches(codec: Codec, spec: str) -> bool:
    name, _, rest = spec.partition("/")
    if codec.name.lower() != name.lower():
        return False
    if rest:
        clock = rest.split("/")[0]
        if clock and clock.isdigit() and int(clock) != codec.clock_rate:
            return False
    return True


def apply_codec_options(
    codecs: list[Codec], opts: NgOptions, *, answer: bool = False
) -> tuple[list[Codec], set[int]]:
    """rtpengine's codec strip/mask/except/offer without transcoding: the codecs left, and the clock
    rates of the codecs it took away (10.5's "touched" rates: `without_orphans` is the last step of
    both offer and answer). An answer takes strip and except only (10.5 ignores a mask there).
    Options that would leave nothing change nothing (`strip: [all]` alone, say)."""
    mask = () if answer else opts.codec.mask
    offer = () if answer else opts.codec.offer
    removing = list(opts.codec.strip) + list(mask)
    keep = list(opts.codec.except_) + list(offer)
    if not removing and not keep:
        return list(codecs), set()
    strip_all = any(s.lower() in ("all", "full") for s in removing)
    result: list[Codec] = []
    for codec in codecs:
        if not codec.name:
            result.append(codec)
            continue
        stripped = strip_all or any(codec_matches(codec, s) for s in removing)
        kept = any(codec_matches(codec, s) for s in keep)
        if not stripped or kept:
            result.append(codec)
    if strip_all and offer:
        # after `strip all`, `offer` puts the offered codecs in the order it gives (`except` keeps the
        # order of the SDP: probed)
        ordered: list[Codec] = []
        for spec in keep:
            for codec in result:
                if codec_matches(codec, spec) and codec not in ordered:
                    ordered.append(codec)
        result = ordered
    if not result:
        return list(codecs), set()
    touched = {codec.clock_rate for codec in codecs if not any(codec is r for r in result)}
    return result, touched


def without_orphans(codecs: list[Codec], touched: set[int]) -> list[Codec]:
    """10.5 drops DTMF and comfort noise of a clock rate whose last real codec the codec options took
    away (a "touched" rate): `0 111 101` masked PCMU is `111`. A rate nothing took a codec from keeps
    them (`111 101` with opus alone stays as it is). The result may be empty: 10.5 then writes an `m=`
    line without formats (see `OutboundMedia.codecs`)."""
    if not touched:
        return codecs
    real_rates = {c.clock_rate for c in codecs if c.name.lower() not in SUPPLEMENTARY_CODECS}
    return [
        c
        for c in codecs
        if c.name.lower() not in SUPPLEMENTARY_CODECS
        or c.clock_rate not in touched
        or c.clock_rate in real_rates
    ]


TOUCHED_RATE = "codec-touched:"
"""Media flag prefix on the offerer's media: a clock rate its last offer's codec options took a codec
from (the answer drops orphaned DTMF and comfort noise of those rates too)."""


def note_touched_rates(media: MediaState, touched: set[int]) -> None:
    media.flags = {f for f in media.flags if not f.startswith(TOUCHED_RATE)} | {
        f"{TOUCHED_RATE}{rate}" for rate in touched
    }


def touched_rates(media: MediaState) -> set[int]:
    return {int(f[len(TOUCHED_RATE) :]) for f in media.flags if f.startswith(TOUCHED_RATE)}


SUPPLEMENTARY_CODECS = {"telephone-event", "cn"}


def single_codec(codecs: list[Codec]) -> list[Codec]:
    """`single-codec`: the first real codec plus the supplementary ones (DTMF, comfort noise)."""
    result: list[Codec] = []
    have_main = False
    for codec in codecs:
        if codec.name.lower() in SUPPLEMENTARY_CODECS:
            result.append(codec)
        elif not have_main:
            result.append(codec)
            have_main = True
    return result


CODEC_OFFERER = "codec-offerer"
"""Media flag of the party that made the last offer on this media: rtpengine's codec stores of both
parties then hold what its offer and the answer to it left."""


def codec_store_before_offer(sender: MediaState, receiver: MediaState) -> list[Codec]:
    """rtpengine's codec store of the party an offer goes to, as the last offer and answer left it:
    the answerer's codecs that were offered (and kept by the answer), in the answerer's order (an
    offer not answered yet: what was offered)."""
    if CODEC_OFFERER in receiver.flags:
        kept = set(receiver.offered_payload_types)
        return [c for c in sender.codecs if c.payload_type in kept]
    kept = set(sender.offered_payload_types)
    return [c for c in receiver.codecs if c.payload_type in kept]


def reuse_codecs(store: list[Codec], codecs: list[Codec]) -> list[Codec]:
    """`reuse-codecs`: the codecs a party already has keep their order and parameters, codecs no longer
    listed go, new ones are added at the end (rtpengine's codec_store_populate_reuse)."""
    listed = {c.payload_type for c in codecs}
    known = {c.payload_type for c in store}
    return [c for c in store if c.payload_type in listed] + [c for c in codecs if c.payload_type not in known]


def payload_type_flags(codecs: list[Codec], dtmf_blocked: bool) -> bytes | None:
    """The relay's per-payload-type table: forward what the SDP announced, drop DTMF when blocked."""
    if not codecs:
        return None
    table = bytearray(128)
    for codec in codecs:
        if 0 <= codec.payload_type < 128:
            dtmf = codec.name.lower() == "telephone-event"
            table[codec.payload_type] = PT_BLOCKED if dtmf and dtmf_blocked else PT_FORWARD
    return shared(bytes(table))


def silence_codecs(media: MediaState) -> SilenceCodecs:
    return tuple((c.payload_type, c.name, c.clock_rate) for c in media.codecs if c.name)


def readvertise(sockets: MediaPorts, media: MediaState) -> None:
    """New sockets towards a party that already sent its SDP: point them at what it advertised."""
    if media.sdp_address is None or media.rejected:
        return
    endpoint = Endpoint(media.sdp_address, media.sdp_port)
    if sockets.rtp is not None:
        sockets.rtp.sdp_peer = endpoint
    if sockets.rtcp is not None:
        rtcp = media.advertised_rtcp or Endpoint(endpoint.address, endpoint.port + 1)
        if rtcp.is_unspecified and not endpoint.is_unspecified:
            rtcp = Endpoint(endpoint.address, rtcp.port)  # `a=rtcp:9 IN IP4 0.0.0.0` (browsers)
        on_rtp_port = media.rtcp_mux_offered and rtcp.port == endpoint.port
        sockets.rtcp.rtcp_on_rtp_port = on_rtp_port  # (see StreamSpec.rtcp_on_rtp_port)
        sockets.rtcp.sdp_peer = media.rtcp_endpoint_kept if on_rtp_port else rtcp


def advertised_of(call: Call, mono: Monologue, media: MediaState) -> Endpoint | None:
    """Where the party's SDP said its media is (none while on hold: 0.0.0.0), in canonical form."""
    sockets = call.ports.get((mono.uid, media.index))
    peer = sockets.rtp.sdp_peer if sockets is not None and sockets.rtp is not None else None
    if peer is None and media.sdp_address is not None and media.sdp_port:
        # (new sockets towards the party, not pointed anywhere yet: its SDP's address is still known)
        peer = Endpoint(media.sdp_address, media.sdp_port)
    if peer is None or peer.is_unspecified:
        return None
    try:
        return Endpoint(str(ipaddress.ip_address(peer.address)), peer.port)
    except ValueError:
        return peer


def unmanaged_sockets(
    wiring: StreamWiring,
    call: Call,
    sender: Monologue,
    receiver: Monologue,
    inbound: InboundSdp,
    opts: NgOptions,
    *,
    answer: bool,
) -> None:
    """Media Karl passes on untouched (not over UDP: MSRP, BFCP or RTP over TCP...): 10.5 still gives
    both parties a pair of ports for it, as for RTP, and lists them in `query` and `delete` (nothing
    useful can arrive there). Ports towards the party the SDP goes to come first, as for RTP; an answer
    refusing the media gives them up on both sides."""
    for media_in in inbound.medias:
        if media_in.is_udp or media_in.index > min(len(sender.medias), len(receiver.medias)):
            continue
        sent, received = sender.medias[media_in.index - 1], receiver.medias[media_in.index - 1]
        if media_in.rejected:
            if answer:
                sent.rejected = received.rejected = True
                wiring.close_sockets(call.media_ports(sender, sent))
                wiring.close_sockets(call.media_ports(receiver, received))
            continue
        own = call.media_ports(sender, sent)
        other = call.media_ports(receiver, received)
        previous = advertised_of(call, sender, sent)
        now = endpoint_of(media_in, opts)
        moved = previous is not None and now is not None and not now.is_unspecified and previous != now
        if moved and not opts.port_latching:
            wiring.close_sockets(other)  # the party moved: new ports towards the other one
        fresh = other.rtp is None
        wiring.ensure_sockets(call, other, single=False)
        if fresh and answer:
            readvertise(other, received)
        wiring.ensure_sockets(call, own, single=False)
        wiring.configure_party(own, sent, media_in, opts)
        if answer:
            wiring.wire(call, receiver, received, sender, sent)
        else:
            wiring.wire(call, sender, sent, receiver, received)
