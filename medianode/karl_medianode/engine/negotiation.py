"""Offer and answer, one `m=` line at a time: rtpengine 10.5's negotiation of media, codecs, rtcp-mux
and ports, producing the media sections of the SDP sent on (sans-IO)."""

from __future__ import annotations

from dataclasses import dataclass

from karl_core.ng.options import NgOptions
from karl_core.session import Codec, MediaState, Monologue
from karl_medianode.engine import dtls_negotiation as dtls
from karl_medianode.engine import ice_negotiation as ice
from karl_medianode.engine import osrtp
from karl_medianode.engine import sdes_negotiation as sdes
from karl_medianode.engine.calls import Call
from karl_medianode.engine.media_rules import (
    CODEC_OFFERER,
    SUPPLEMENTARY_CODECS,
    advertised_of,
    apply_codec_options,
    codec_store_before_offer,
    direction_of,
    endpoint_of,
    ensure_media,
    note_touched_rates,
    readvertise,
    rejected,
    reuse_codecs,
    single_codec,
    touched_rates,
    unmanaged,
    update_media_from_sdp,
    without_orphans,
)
from karl_medianode.engine.rewrite.inbound import InboundMedia, InboundSdp
from karl_medianode.engine.rewrite.outbound import OutboundMedia
from karl_medianode.engine.rewrite.srtp_boundary import is_secure
from karl_medianode.engine.streams import MediaPorts, StreamSpec
from karl_medianode.engine.wiring import StreamWiring

MUX_OFFERED_TO_ANSWERER = {"offer", "require"}


@dataclass(frozen=True)
class ForkAnswer:
    """An answer from another fork than the one that answered last: a `new` one (the offerer gets new
    sockets for it) or an earlier one answering again (it gets back the ones kept for it); `left`:
    the party (uid) of the fork that answered last; `switched`: the media (indexes) whose sockets
    changed."""

    new: bool
    left: int | None
    switched: frozenset[int] = frozenset()


def negotiate_offer(
    wiring: StreamWiring,
    call: Call,
    offerer: Monologue,
    answerer: Monologue,
    inbound: InboundSdp,
    opts: NgOptions,
) -> list[OutboundMedia]:
    out: list[OutboundMedia] = []
    mux_flags = opts.rtcp_mux
    for received in inbound.medias:
        media_in = osrtp.secure_view(received)  # an OSRTP offer is negotiated as the secure profile
        a_media = ensure_media(offerer, media_in)
        b_media = ensure_media(answerer, media_in)
        previous = advertised_of(call, offerer, a_media)
        if a_media.media_type != media_in.media_type:
            # a different kind of media on this m= line (e.g. T.38 re-INVITE): the sockets stay, as in
            # 10.5 (new ones only where a party moves to another port, as for any re-offer)
            b_media.ptime = None
        store = codec_store_before_offer(a_media, b_media) if opts.reuse_codecs else None
        update_media_from_sdp(a_media, media_in, opts)
        if media_in is not received:
            a_media.flags.add(osrtp.OSRTP)
        else:
            a_media.flags.discard(osrtp.OSRTP)
        share_ptime(media_in, b_media)
        update_mids(a_media, b_media, media_in, opts.generate_mid)
        a_media.flags.add(CODEC_OFFERER)
        b_media.flags.discard(CODEC_OFFERER)
        a_media.flags.discard(ice.TRICKLE)
        if media_in.ice_trickle:
            a_media.flags.add(ice.TRICKLE)
        b_media.media_type = media_in.media_type
        if not answerer.tag or not b_media.codecs:
            # until it answers, the other side is expected to mirror the offered direction
            b_media.send, b_media.recv = a_media.recv, a_media.send
        wanted = opts.transport_protocol
        if wanted is not None and wanted != "accept" and (media_in.is_rtp or media_in.rejected):
            b_media.protocol = wanted
            b_media.flags.discard(osrtp.OSRTP)
        elif not (
            sdes.terminates(a_media)
            or sdes.terminates(b_media)
            or dtls.terminates(a_media)
            or dtls.terminates(b_media)
        ):
            b_media.protocol = media_in.protocol
            if media_in is not received:
                b_media.flags.add(osrtp.OSRTP)  # offered on as OSRTP, in the plain profile
            else:
                b_media.flags.discard(osrtp.OSRTP)
        if ("offer" in opts.osrtp or sdes.unsolicited_keys(b_media)) and media_in.is_rtp:
            # (a party that answered a plain offer with keys is offered SDES next, as OSRTP: 10.5)
            osrtp.make_opportunistic(b_media)
        # (a re-offer without a protocol on a call where Karl terminates SDES: each leg keeps the
        # protocol it negotiated, as 10.5 does; the secure party is re-offered Karl's own key)
        if not media_in.is_udp:
            out.append(with_mid(unmanaged(media_in), b_media))
            continue
        if media_in.rejected:
            b_media.rejected = True
            out.append(with_mid(rejected(media_in, b_media.protocol), b_media))
            continue
        b_media.rejected = False
        offered = a_media.codecs if store is None else reuse_codecs(store, a_media.codecs)
        codecs: list[Codec] | None = None
        touched: set[int] = set()
        if media_in.is_rtp:
            codecs, touched = apply_codec_options(offered, opts)
            codecs = without_orphans(codecs, touched)
        note_touched_rates(a_media, touched)
        a_media.offered_payload_types = [c.payload_type for c in codecs or []]
        b_media.codecs = [
            Codec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp, list(c.rtcp_fb))
            for c in (codecs or [])
        ]
        mux_to_answerer = media_in.rtcp_mux if not (mux_flags & MUX_OFFERED_TO_ANSWERER) else True
        if "demux" in mux_flags:
            mux_to_answerer = False
        if not media_in.is_rtp:
            mux_to_answerer = False
        # (towards an answerer that muxes already 10.5 requires rtcp-mux, whatever the options said:
        # `demux` then leaves the offerer's rtcp-mux to the answer, as without options)
        decided = mux_flags - {"demux"} if b_media.rtcp_mux and media_in.is_rtp else mux_flags
        a_media.flags = {f for f in a_media.flags if not f.startswith("mux-")} | {f"mux-{f}" for f in decided}
        require = "require" in mux_flags and media_in.is_rtp
        b_sockets = call.media_ports(answerer, b_media)
        kept_rtp = b_sockets.rtp
        new_endpoint = endpoint_of(media_in, opts)
        port_changed = (
            previous is not None
            and new_endpoint is not None
            and not new_endpoint.is_unspecified
            and previous != new_endpoint
        )
        # (new ports towards the answerer for an offerer that moved, as 10.5, unless that is an ICE leg:
        # ICE keeps its ports)
        ice_leg = ice.offers_ice(b_media, opts, media_in.ice_credentials is not None)
        if port_changed and not opts.port_latching and b_sockets.rtp is not None and not ice_leg:
            wiring.new_ports_for(b_sockets, b_media)
        b_single = require or b_media.rtcp_mux
        if media_in.is_rtp and not b_single:
            wiring.drop_single_port(b_sockets, b_media)  # (rtcp-mux required or taken before, not now)
        wiring.ensure_sockets(call, b_sockets, single=b_single)
        wiring.note_ports_made(b_sockets, b_media)
        restart_ice_on_new_sockets(b_media, kept_rtp, b_sockets)
        a_sockets = call.media_ports(offerer, a_media)
        # with `demux`/`accept` the offerer's mux is known to be accepted: one port is enough
        a_single = media_in.rtcp_mux and bool(mux_flags & {"demux", "accept"})
        wiring.ensure_sockets(call, a_sockets, single=a_single)
        wiring.configure_party(a_sockets, a_media, media_in, opts)
        crypto = sdes.on_offer(
            a_media,
            b_media,
            media_in,
            wiring.settings.key_source,
            sdes.SdesChoices.of(opts),
            dtls_offerer=dtls.speaks_dtls(media_in),
        )
        ice.on_offer(a_media, b_media, media_in, opts)
        dtls.on_offer(a_media, b_media, media_in, opts, b_media.protocol)
        wiring.wire(call, offerer, a_media, answerer, b_media)
        port, rtcp_port = advertised_ports(b_sockets, media_in.is_rtp, require or b_media.rtcp_mux)
        muxed = media_in.is_rtp and (mux_to_answerer or require or b_media.rtcp_mux)
        connection = wiring.connection_for(opts)
        out.append(
            OutboundMedia(
                port=port,
                rtcp_port=rtcp_port,
                rtcp_mux=muxed,
                protocol=osrtp.written(b_media.protocol, b_media),
                codecs=codecs,
                direction=direction_of(media_in),
                ptime=b_media.ptime,
                connection=connection,
                mid=b_media.mid,
                trickle_remnant=ice.trickle_remnant(b_media),
                crypto=crypto,
                dtls=dtls_out(a_media, b_media, wiring, offering=True),
                ice=ice.sdp_lines(
                    b_media,
                    connection,
                    port,
                    rtcp_port,
                    require or b_media.rtcp_mux,
                    wiring.settings.media_ip,
                ),
                ice_lite=ice.LITE_SELF in b_media.flags,
            )
        )
    return out


def negotiate_answer(
    wiring: StreamWiring,
    call: Call,
    offerer: Monologue,
    answerer: Monologue,
    inbound: InboundSdp,
    opts: NgOptions,
    fork: ForkAnswer | None = None,
) -> list[OutboundMedia]:
    """`fork`: the answerer is another fork than the one that answered last (None: the same one)."""
    new_fork = fork is not None and fork.new
    resumed_fork = fork is not None and not fork.new
    left_fork = fork.left if fork is not None else None
    out: list[OutboundMedia] = []
    for received in inbound.medias:
        b_media = ensure_media(answerer, received)
        a_media = ensure_media(offerer, received)
        # an answer to an OSRTP offer takes it up with keys or a fingerprint, or refuses it (plain)
        media_in = osrtp.secure_view(received) if osrtp.OSRTP in b_media.flags else received
        previous = advertised_of(call, answerer, b_media)
        kept_rtp = call.media_ports(offerer, a_media).rtp
        # rtpengine's codec store of the answerer: what it was offered (or kept by an earlier answer)
        offered = set(a_media.offered_payload_types)
        store = [c for c in b_media.codecs if c.payload_type in offered]
        update_media_from_sdp(b_media, media_in, opts)
        share_ptime(media_in, a_media)
        new_endpoint = endpoint_of(media_in, opts)
        if (
            previous is not None
            and new_endpoint is not None
            and not new_endpoint.is_unspecified
            and previous != new_endpoint
            and not opts.port_latching
            and not ice.answers_with_ice(a_media, opts)
        ):
            # the answerer moved (e.g. 200 OK after 183 from elsewhere): new ports towards the offerer,
            # unless that is an ICE leg (ICE keeps its ports, as in 10.5)
            wiring.new_ports_for(call.media_ports(offerer, a_media), a_media)
        protocol = a_media.protocol
        if opts.transport_protocol == "accept":
            protocol = media_in.protocol
        if not media_in.is_udp:
            out.append(with_mid(unmanaged(media_in), a_media))
            continue
        if media_in.rejected:
            # the answerer refused this stream: 10.5 keeps its sockets on both sides, idle and out of
            # `query`, and gives them to a re-offer of the stream (probed with `ss`)
            b_media.rejected = True
            a_media.rejected = True
            call.media_ports(offerer, a_media).park()
            call.media_ports(answerer, b_media).park()
            out.append(with_mid(rejected(media_in, protocol), a_media))
            continue
        mux_flags = {f[4:] for f in a_media.flags if f.startswith("mux-")}
        offered_mux = a_media.rtcp_mux_offered
        b_media.rtcp_mux = media_in.is_rtp and media_in.rtcp_mux
        # (10.5 keeps the offerer's rtcp-mux as it is where the offer decided it, its "override", and
        # an earlier fork answering again finds it as the fork that answered last left it)
        overridden = not offered_mux or bool(mux_flags & {"demux", "accept", "reject"})
        if not (resumed_fork and overridden):
            if "demux" in mux_flags or "accept" in mux_flags:
                a_media.rtcp_mux = offered_mux
            elif "reject" in mux_flags:
                a_media.rtcp_mux = False
            else:
                a_media.rtcp_mux = offered_mux and media_in.rtcp_mux
        a_media.rtcp_mux = a_media.rtcp_mux and media_in.is_rtp
        if new_fork:
            # 10.5 gives the offerer's new sockets the fork's rtcp-mux, whatever the offer and its
            # options said
            a_media.rtcp_mux = media_in.is_rtp and media_in.rtcp_mux
        if new_fork or (fork is not None and received.index in fork.switched):
            # other sockets towards the offerer: 10.5 restarts its ICE agent (new credentials)
            a_media.ice_ufrag = a_media.ice_pwd = a_media.ice_kept_ufrag = a_media.ice_kept_pwd = None
        codecs: list[Codec] | None = None
        if media_in.is_rtp:
            codecs = answered_codecs(b_media, a_media, store, media_in, opts)
            if opts.single_codec:
                codecs = single_codec(codecs)
        a_sockets = call.media_ports(offerer, a_media)
        if media_in.is_rtp and not a_media.rtcp_mux:
            wiring.drop_single_port(a_sockets, a_media)  # (its rtcp-mux is not taken now)
        fresh = a_sockets.rtp is None
        if fresh and new_fork and media_in.is_rtp and a_media.rtcp_mux:
            # 10.5 makes one port for a muxing offerer's new fork; its RTCP stream keeps the socket
            # it had (the left fork's, bound and idle)
            wiring.ensure_sockets(call, a_sockets, single=True)
            a_media.ports_made_for = 1
            kept = a_sockets.branches.get(left_fork, ()) if left_fork is not None else ()
            a_sockets.rtcp = next((spec for spec in kept if spec.is_rtcp), None)
        else:
            wiring.ensure_sockets(call, a_sockets, single=False)
        # (the offerer's sockets made with the offer, before its peer was known, count from here)
        wiring.note_ports_made(a_sockets, a_media)
        restart_ice_on_new_sockets(a_media, kept_rtp, a_sockets)
        if fresh:
            readvertise(a_sockets, a_media)
        b_sockets = call.media_ports(answerer, b_media)
        # (a new fork's own sockets: one port if it muxes, as 10.5 makes them for an answer)
        wiring.ensure_sockets(call, b_sockets, single=new_fork and media_in.is_rtp and media_in.rtcp_mux)
        wiring.configure_party(b_sockets, b_media, media_in, opts)
        offered_lines = a_media.sdes_pending + b_media.sdes_ours
        if offered_lines or media_in.has_crypto:
            # (a refusal stands until the party is offered keys again: 10.5's `query` goes on showing it)
            osrtp.forget_refusal(b_media)
        if osrtp.OSRTP in b_media.flags and is_secure(received.protocol):
            b_media.flags.discard(osrtp.OSRTP)  # taken up under the secure profile itself: no longer OSRTP
        elif osrtp.OSRTP in b_media.flags and media_in is received and media_in.is_rtp:
            osrtp.refused(b_media, offered_lines)
            sdes.refuse(b_media)  # (Karl's lines it was offered: none agreed, its leg is plain)
            if osrtp.OSRTP in a_media.flags and "accept" not in opts.osrtp:
                # an OSRTP offerer whose answerer refused: plain both ways, unless `OSRTP=accept`
                sdes.clear(a_media)
                dtls.stop(a_media)
                osrtp.refused(a_media)
                if opts.transport_protocol != "accept":
                    protocol = a_media.protocol
        elif b_media.sdes_ours and dtls.speaks_dtls(media_in) and not media_in.has_crypto:
            osrtp.refused(b_media, offered_lines)  # DTLS answered to SDES and DTLS offered
        crypto = sdes.on_answer(
            a_media,
            b_media,
            media_in,
            wiring.settings.key_source,
            sdes.SdesChoices.of(opts),
            accept=opts.transport_protocol == "accept",
        )
        if sdes.unsolicited_keys(b_media):
            b_media.flags.add(dtls.DECLINED)  # (its next offer carries keys only, no fingerprint: 10.5)
        b_media.flags.discard(ice.TRICKLE)
        if media_in.ice_trickle:
            b_media.flags.add(ice.TRICKLE)
        ice.on_answer(a_media, b_media, media_in, opts)
        dtls.on_answer(a_media, b_media, media_in, opts)
        wiring.wire(call, offerer, a_media, answerer, b_media)
        port, rtcp_port = advertised_ports(a_sockets, media_in.is_rtp, a_media.rtcp_mux)
        connection = wiring.connection_for(opts)
        out.append(
            OutboundMedia(
                port=port,
                rtcp_port=rtcp_port,
                rtcp_mux=a_media.rtcp_mux,
                protocol=osrtp.written(protocol, a_media),
                codecs=codecs,
                direction=direction_of(media_in),
                ptime=a_media.ptime,
                connection=connection,
                mid=a_media.mid,
                trickle_remnant=ice.trickle_remnant(a_media),
                crypto=crypto,
                dtls=dtls_out(b_media, a_media, wiring, offering=False),
                ice=ice.sdp_lines(
                    a_media, connection, port, rtcp_port, a_media.rtcp_mux, wiring.settings.media_ip
                ),
                ice_lite=ice.LITE_SELF in a_media.flags,
            )
        )
    return out


def restart_ice_on_new_sockets(media: MediaState, kept: StreamSpec | None, sockets: MediaPorts) -> None:
    """Other sockets towards a party Karl is an ICE agent for (`kept`: its RTP socket before): 10.5
    restarts its agent there, with new credentials."""
    if media.ice and kept is not None and sockets.rtp is not kept:
        media.ice_ufrag = media.ice_pwd = media.ice_kept_ufrag = media.ice_kept_pwd = None


def dtls_out(
    sender: MediaState, receiver: MediaState, wiring: StreamWiring, *, offering: bool
) -> list[str] | None:
    """The DTLS lines of the SDP for `receiver`'s party: Karl's own where it terminates DTLS on either
    leg of the media (none towards a party without DTLS), else None (what was received passes)."""
    if not (dtls.terminates(sender) or dtls.terminates(receiver)):
        return None
    return dtls.sdp_lines(receiver, wiring.settings.dtls_certificate.fingerprints, offering=offering)


def share_ptime(media_in: InboundMedia, other: MediaState) -> None:
    """An `a=ptime` sets the packet time of the media for both parties (the sender's own media takes it
    in `update_media_from_sdp`): the SDPs sent on repeat the last one either party gave."""
    if media_in.ptime is not None:
        other.ptime = media_in.ptime


def update_mids(sender: MediaState, receiver: MediaState, media_in: InboundMedia, generate: bool) -> None:
    """rtpengine's media IDs (`a=mid`) in an offer: the sender's follows its SDP (kept when the SDP has
    none); the receiver's is set once, copied from the sender's or, with `generate-mid`, the media's
    number. Answers change neither; each SDP sent on carries the receiver's."""
    if media_in.mid is not None:
        sender.mid = media_in.mid
    if receiver.mid is None:
        receiver.mid = sender.mid if sender.mid is not None or not generate else str(media_in.index)


def with_mid(out: OutboundMedia, receiver: MediaState) -> OutboundMedia:
    out.mid = receiver.mid
    return out


def answered_codecs(
    answerer: MediaState, offerer: MediaState, store: list[Codec], media_in: InboundMedia, opts: NgOptions
) -> list[Codec]:
    """The codecs an answer keeps: those of the answerer's codec store (what it was offered) it lists,
    in its own order, or with `reuse-codecs` in the store's order and with the store's parameters.
    They are the store from now on (a later answer, e.g. 200 OK after 183, keeps no others).

    As 10.5 (probed): the answer's own `codec` strip/except take codecs out of what it lists first;
    DTMF and comfort noise left without a real codec of their clock rate, at a rate the offer's or the
    answer's options took a codec from, go (see `without_orphans`). An offer sent on without any codec
    gets the answer's codecs passed back as they are, its options unapplied."""
    touched = touched_rates(offerer)
    if not store:
        offerer.offered_payload_types = [c.payload_type for c in media_in.codecs]
        return without_orphans(list(media_in.codecs), touched)
    own, stripped = apply_codec_options(list(media_in.codecs), opts, answer=True)
    touched |= stripped
    if opts.reuse_codecs:
        listed = {c.payload_type for c in own}
        kept = [c for c in store if c.payload_type in listed]
        known = {c.payload_type for c in kept}
        # the answerer's media keeps every codec its SDP listed (the relay's payload types)
        answerer.codecs = kept + [c for c in media_in.codecs if c.payload_type not in known]
    else:
        stored = {c.payload_type for c in store}
        kept = _once_each([c for c in own if c.payload_type in stored])
    if kept:
        # (the offerer's store is what the answer sent on: DTMF left without its codec goes from both)
        answered = without_orphans(kept, touched)
        offerer.offered_payload_types = [c.payload_type for c in answered]
        return answered
    # Nothing in common. 10.5 transcodes from what the answerer sends to the first real codec of the
    # offer sent on, unless the offerer has the answer's codecs itself (one a `mask` hid from the
    # answerer). Karl does not transcode: it gives that first codec when the answerer listed it (its
    # answer's own strip took it away), else the answerer's codecs as they are (where 10.5 would
    # transcode, a difference: docs/compatibility.md).
    listed_types = {c.payload_type for c in media_in.codecs}
    first = next((c for c in store if c.name.lower() not in SUPPLEMENTARY_CODECS), None)
    given = [first] if first is not None and first.payload_type in listed_types else own
    # the answerer may send any of its own codecs: the store holds them (10.5's transcoding flag)
    offerer.offered_payload_types = [c.payload_type for c in given] + [
        c.payload_type for c in own if c not in given
    ]
    return without_orphans(given, touched)


def _once_each(codecs: list[Codec]) -> list[Codec]:
    """A payload type an answer lists twice (`m=audio 7000 RTP/AVP 8 8`) goes back once (10.5)."""
    seen: set[int] = set()
    result = []
    for codec in codecs:
        if codec.payload_type not in seen:
            seen.add(codec.payload_type)
            result.append(codec)
    return result


def advertised_ports(sockets: MediaPorts, is_rtp: bool, muxed: bool) -> tuple[int, int | None]:
    """The RTP and RTCP ports the SDP sent on gives for these sockets (no RTCP port for non-RTP
    media; the RTP port when RTCP is multiplexed)."""
    assert sockets.rtp is not None
    port = sockets.rtp.port
    if not is_rtp:
        return port, None
    if muxed:
        return port, port
    return port, sockets.rtcp.port if sockets.rtcp is not None else port + 1
