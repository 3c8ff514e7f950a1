"""The `query` (and tagged `delete`) reply: a call's structure and counters in rtpengine 10.5's layout."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from karl_core.ng.options import TRANSPORT_PROTOCOLS, DtmfSecurity, NgOptions
from karl_core.session import Codec, Endpoint, MediaState, Monologue
from karl_medianode.engine.calls import Call
from karl_medianode.engine.ice_negotiation import LITE_PEER, LITE_SELF, TRICKLE, ice_leg, karl_controls
from karl_medianode.engine.leg_security import srtp_suite
from karl_medianode.engine.media_rules import rtcp_endpoint_of
from karl_medianode.engine.media_view import StreamReading
from karl_medianode.engine.osrtp import refused_suite, shows_sdes, written
from karl_medianode.engine.parties import known_party
from karl_medianode.engine.rewrite.outbound import OutboundMedia
from karl_medianode.engine.streams import MediaPorts, StreamSpec

ReadStream = Callable[[StreamSpec], StreamReading]
"""What the data plane says about a stream (its counters and learned source)."""

"""The transport protocols 10.5 knows, by their lower-case spelling, as its `query` names them. A media
of any other protocol (TCP/MSRP, TCP/BFCP, UDP/BFCP, ...) is listed without a `protocol`."""


def _endpoint_dict(endpoint: tuple[str, int] | Endpoint | None) -> dict[str, Any]:
    if endpoint is None:
        return {}
    if isinstance(endpoint, Endpoint):
        address, port = endpoint.address, endpoint.port
    else:
        address, port = endpoint[0], endpoint[1]
    return {"family": "IPv6" if ":" in address else "IPv4", "address": address, "port": port}


def _stream_dict(
    stream: StreamSpec,
    seen: StreamReading,
    *,
    rtcp: bool,
    muxed: bool,
    fallback_time: int,
    muxed_rtcp_ssrc: int | None = None,
) -> dict[str, Any]:
    flags = ["RTP", "RTCP"] if muxed and not rtcp else ["RTCP" if rtcp else "RTP"]
    if muxed and rtcp:
        flags.append("fallback RTCP")  # an RTCP socket kept while RTCP rides on the RTP port
    sdp_endpoint = stream.sdp_peer
    if seen.endpoint is not None or sdp_endpoint is not None or stream.rtcp_on_rtp_port:
        flags.append("filled")
    if seen.confirmed:
        flags.append("confirmed")
    if stream.policy.strict_source:
        flags.append("strict source address")
    if stream.policy.media_handover:
        flags.append("media handover")
    endpoint: tuple[str, int] | Endpoint | None = sdp_endpoint
    if seen.confirmed and seen.endpoint is not None:
        endpoint = seen.endpoint
    entry: dict[str, Any] = {
        "local port": stream.port,
        "local address": stream.local_ip,
        "family": "IPv6" if ":" in stream.local_ip else "IPv4",
        "endpoint": _endpoint_dict(endpoint),
        "advertised endpoint": _endpoint_dict(
            None if stream.rtcp_on_rtp_port else stream.ice_zero_address or sdp_endpoint
        ),
        "last packet": int(seen.last_packet) if seen.last_packet else fallback_time,
        "flags": flags,
    }
    # the SSRC last received on the socket (Kamailio's per-party MOS variables look it up)
    ssrc = seen.last_rtcp_ssrc if stream.is_rtcp else seen.last_ssrc
    if ssrc is None and stream.is_rtcp and muxed:
        ssrc = muxed_rtcp_ssrc  # RTCP arrived on the RTP socket; rtpengine shows it on the RTCP entry
    if ssrc is not None:
        entry["SSRC"] = ssrc
    entry["stats"] = {"packets": seen.packets, "bytes": seen.bytes, "errors": seen.errors}
    return entry


def _rtcp_entry_without_socket(
    rtp: StreamSpec,
    seen: StreamReading,
    now: int,
    advertised: Endpoint | None = None,
    *,
    muxed: bool = True,
    kept: Endpoint | None = None,
) -> dict[str, Any]:
    """A single port: rtpengine still lists an RTCP stream, with local port 0, at the party's `a=rtcp`
    port (its address unless that is unspecified), else the RTP port + 1; a "fallback RTCP" one when
    RTCP is multiplexed, a plain one when the party did not take up the rtcp-mux it was required to.
    A muxing party's `a=rtcp` naming its RTP port leaves the endpoint as it was (`kept`) and none
    advertised."""
    sdp_endpoint = rtp.sdp_peer
    rtcp_endpoint = rtcp_endpoint_of(sdp_endpoint, advertised) if sdp_endpoint is not None else None
    advertised_endpoint = rtcp_endpoint
    if sdp_endpoint is not None and advertised is not None and muxed and advertised.port == sdp_endpoint.port:
        rtcp_endpoint, advertised_endpoint = kept, None  # (its `a=rtcp` named its RTP port, RFC 5761)
    flags = ["RTCP", "fallback RTCP"] if muxed else ["RTCP"]
    if rtcp_endpoint or (muxed and advertised is not None):
        flags.append("filled")
    entry: dict[str, Any] = {
        "local port": 0,
        "local address": rtp.local_ip,
        "family": "IPv6" if ":" in rtp.local_ip else "IPv4",
        "endpoint": _endpoint_dict(rtcp_endpoint),
        "advertised endpoint": _endpoint_dict(advertised_endpoint),
        "last packet": now,
        "flags": flags,
    }
    if seen.last_rtcp_ssrc is not None:  # RTCP multiplexed on the RTP socket
        entry["SSRC"] = seen.last_rtcp_ssrc
    entry["stats"] = {"packets": 0, "bytes": 0, "errors": 0}
    return entry


def _socketless_streams(media: MediaState, now: int) -> list[dict[str, Any]]:
    """A rejected media (port 0) or a party deleted from the call has stream entries but no sockets,
    as in rtpengine: a muxing party's as muxed ones, its RTCP at its `a=rtcp`."""
    result = []
    muxed = media.rtcp_mux and not media.rejected
    rtcp = media.advertised_rtcp if not media.rejected else None
    for component, kind in ((0, "RTP"), (1, "RTCP")):
        endpoint: dict[str, Any] = {}
        flags = [kind]
        if muxed:
            flags = ["RTCP", "RTP"] if component == 0 else ["RTCP", "fallback RTCP"]
        if media.sdp_address is not None:
            place = Endpoint(media.sdp_address, media.sdp_port + component if media.sdp_port else component)
            if component == 1 and media.sdp_port:
                place = rtcp_endpoint_of(Endpoint(media.sdp_address, media.sdp_port), rtcp)
            endpoint = _endpoint_dict(place)
            flags.append("filled")
        result.append(
            {
                "endpoint": endpoint,
                "advertised endpoint": dict(endpoint),
                "last packet": now,
                "flags": flags,
                "stats": {"packets": 0, "bytes": 0, "errors": 0},
            }
        )
    return result


NOT_ICE_CONTROLLING = "not-ice-controlling"
"""Media flag of a fork that answered after another with `ICE: remove`: 10.5 shows no
`ICE controlling` on it (a first answerer keeps the flag its offer gave it)."""


def _media_flags(mono: Monologue, media: MediaState, answerer: bool) -> list[str]:
    # rtpengine's send/recv are the proxy's view: it sends to a party that receives
    flags: list[str] = []
    if ice_leg(media):
        flags.append("ICE")
    if media.dtls_setup is not None:
        flags.append("DTLS-SRTP")
        if media.dtls_setup in ("active", "actpass"):
            flags.append("DTLS role active")
        if media.dtls_setup in ("passive", "actpass"):
            flags.append("DTLS role passive")
    # (10.5 shows it for a party that answered with keys, even unusable ones, and for one that refused
    # an OSRTP offer)
    if media.sdes_theirs or shows_sdes(media):
        flags.append("SDES")
    if mono.tag:
        flags.append("initialized")
    if "asymmetric" in media.flags:
        flags.append("asymmetric")
    if "unidirectional" in media.flags:
        flags.append("unidirectional")
    if media.recv:
        flags.append("send")
    if media.send:
        flags.append("recv")
    if media.rtcp_mux:
        flags.append("rtcp-mux")
    if (
        karl_controls(answerer, media)
        and LITE_SELF not in media.flags
        and NOT_ICE_CONTROLLING not in media.flags
    ):
        # (an ICE-lite agent never controls)
        flags.append("ICE controlling")
    if TRANSCODING in media.flags:
        flags.append("transcoding")
    if TRICKLE in media.flags:
        flags.append("trickle ICE")  # (as the party's SDP said, ICE leg or not)
    if LITE_PEER in media.flags:
        flags.append("ICE-lite peer")
    return flags


def _media_dict(
    call: Call, mono: Monologue, media: MediaState, answerer: bool, now: int, read: ReadStream
) -> dict[str, Any]:
    sockets: MediaPorts = call.ports.get((mono.uid, media.index), MediaPorts())
    streams: list[dict[str, Any]] = []
    rtp_seen = read(sockets.rtp) if sockets.rtp is not None else None
    if sockets.rtp is not None and rtp_seen is not None:
        streams.append(
            _stream_dict(sockets.rtp, rtp_seen, rtcp=False, muxed=media.rtcp_mux, fallback_time=now)
        )
    if sockets.rtcp is not None:
        muxed_ssrc = rtp_seen.last_rtcp_ssrc if rtp_seen is not None else None
        streams.append(
            _stream_dict(
                sockets.rtcp,
                read(sockets.rtcp),
                rtcp=True,
                muxed=media.rtcp_mux,
                fallback_time=now,
                muxed_rtcp_ssrc=muxed_ssrc,
            )
        )
    elif sockets.rtp is not None and rtp_seen is not None and (media.rtcp_mux or media.is_rtp):
        # (one socket without rtcp-mux: `rtcp-mux: require` to a party that answered without it)
        streams.append(
            _rtcp_entry_without_socket(
                sockets.rtp,
                rtp_seen,
                now,
                media.advertised_rtcp,
                muxed=media.rtcp_mux,
                kept=media.rtcp_endpoint_kept,
            )
        )
    if not streams and (media.rejected or mono.removed):
        streams = _socketless_streams(media, now)
    suite = srtp_suite(media) or refused_suite(media)
    if suite is not None:
        for stream in streams:
            stream["crypto suite"] = suite
    if ice_leg(media):
        for stream in streams:
            stream["flags"] = ["ICE", *stream.get("flags", [])]
    result: dict[str, Any] = {"index": media.index, "type": media.media_type}
    protocol = TRANSPORT_PROTOCOLS.get(written(media.protocol, media).lower())
    if protocol is not None:
        result["protocol"] = protocol
    if streams:
        result["streams"] = streams
    result["flags"] = _media_flags(mono, media, answerer)
    return result


def monologue_key(mono: Monologue) -> str:
    """The party's key in a statistics reply: its tag, else 10.5's `<untagged N>` with N the party's
    number in the call, counted from 0 in the order the parties were made (as 10.5 counts them)."""
    return mono.tag if mono.tag else f"<untagged {mono.uid - 1}>"


def call_stats(call: Call, read: ReadStream, selected: Monologue | None = None) -> dict[str, Any]:
    state = call.state
    now = int(state.last_signal)
    wanted: list[Monologue]
    if selected is None:
        wanted = list(state.monologues.values())
    else:
        # the selected party and the parties it hears
        heard = [selected.partner, *selected.former_partners]
        wanted = [selected] + [state.monologues[uid] for uid in heard if uid in state.monologues]
    tags: dict[str, Any] = {}
    for mono in state.monologues.values():
        key = monologue_key(mono)
        if mono not in wanted:
            continue
        entry: dict[str, Any] = {"tag": mono.tag}
        if mono.label is not None:
            entry["label"] = mono.label
        if mono.via_branch is not None:
            entry["via-branch"] = mono.via_branch
        entry["created"] = int(mono.created)
        partner = state.partner_of(mono)
        linked = ([partner] if partner is not None else []) + [
            state.monologues[uid] for uid in mono.former_partners if uid in state.monologues
        ]
        # subscriptions: whom this party hears; subscribers: who hears it (an abandoned fork still
        # reaches the offerer but no longer hears it)
        listeners = ([partner] if partner is not None else []) + [
            other for other in state.monologues.values() if mono.uid in other.former_partners
        ]
        entry["subscriptions"] = [{"tag": other.tag, "type": "offer/answer"} for other in linked]
        entry["subscribers"] = [{"tag": other.tag, "type": "offer/answer"} for other in listeners]
        entry["medias"] = [_media_dict(call, mono, media, mono.answerer, now, read) for media in mono.medias]
        tags[key] = entry
    totals = {"RTP": {"packets": 0, "bytes": 0, "errors": 0}, "RTCP": {"packets": 0, "bytes": 0, "errors": 0}}
    for stream in call.all_streams():
        kind = "RTCP" if stream.is_rtcp else "RTP"
        seen = read(stream)
        totals[kind]["packets"] += seen.packets
        totals[kind]["bytes"] += seen.bytes
        totals[kind]["errors"] += seen.errors
    created_us = round((state.created - int(state.created)) * 1_000_000)
    return {
        "created": int(state.created),
        "created_us": created_us,
        "last signal": int(state.last_signal),
        "SSRC": call.quality.to_ng(),
        "tags": tags,
        "totals": totals,
    }


def tagged_call_stats(
    call: Call, read: ReadStream, from_tag: str | None, to_tag: str | None
) -> dict[str, Any]:
    """`query`, and `delete` with a from-tag: 10.5 lists the party its to-tag names (else its from-tag)
    and the parties that party hears, every party when neither is given, and none for a tag it does not
    know (a deleted party's too; also when a `delete` found its party by the via-branch)."""
    tag = to_tag or from_tag
    if not tag:
        return call_stats(call, read)
    selected = known_party(call.state, tag)
    stats = call_stats(call, read, selected)
    if selected is None:
        stats["tags"] = {}
    return stats


# ---- the `transcoding` media flag ------------------------------------------------------------------
#
# Karl never transcodes, but 10.5 shows `transcoding` on a party's media whenever its codec handlers for
# what that party sends are not all pass-through. It decides that (codec_handlers_update) for the media
# an offer goes to, for both medias after an answer, and for a party's medias when `block DTMF` or
# `unblock DTMF` switches a mode that replaces DTMF (DTMF-security silence, tone, random, zero, DTMF); the
# flag then stays as decided until the next decision. A codec 10.5 can transcode that the other party
# was not given as it is (same payload type, name, clock rate, channels) is transcoded, to the same codec
# under the other payload type or to the other party's first codec; in plain calls that is an answer
# under `single-codec`, which gives the offerer one codec of several the answerer may send. Under a
# DTMF-replacing block every codec 10.5 can transcode is transcoded.

TRANSCODING = "transcoding"
"""Media flag: 10.5's `query` shows `transcoding` for this media."""
CODECS_DIFFER = "transcoding-codecs"
"""Media flag: the party sends a codec the other party was not given (a decision needs no more)."""
CODECS_FORCEABLE = "transcoding-forceable"
"""Media flag: a DTMF-replacing block makes 10.5 transcode what the party sends."""
DTMF_REPLACED = "dtmf-replaced"
"""Media flag on every media of a party whose own `block DTMF` replaces DTMF."""
CALL_DTMF_REPLACED = "call-dtmf-replaced"
"""Media flag on every media of the call when a call-wide `block DTMF` replaces DTMF."""

TRANSCODABLE = frozenset(
    {"pcma", "pcmu", "g723", "g722", "g729", "g729a", "speex", "gsm", "opus", "telephone-event", "cn"}
)
"""The audio codecs 10.5 (Debian 12 package) encodes and decodes (`rtpengine --codecs`)."""
SUPPLEMENTAL = frozenset({"telephone-event", "cn"})
DTMF_REPLACING = frozenset(
    {DtmfSecurity.SILENCE, DtmfSecurity.TONE, DtmfSecurity.RANDOM, DtmfSecurity.ZERO, DtmfSecurity.DTMF}
)


def _codec_key(codec: Codec) -> tuple[str, int, int]:
    """What makes two codecs the same for 10.5: name (any case), clock rate, channels (1 if not given)."""
    return codec.name.lower(), codec.clock_rate, codec.channels or 1


def transcodes(receiver: Sequence[Codec], sink: Sequence[Codec], media_type: str) -> tuple[bool, bool]:
    """Whether 10.5 transcodes anything a party sends with the codecs `receiver` to a party given `sink`
    (codec_handlers_update for plain RTP): (as things are, under a DTMF-replacing block). Both in one
    pass, each codec's key made once (an offer and an answer ask four times)."""
    if media_type != "audio":
        return False, False  # 10.5 transcodes audio codecs only: everything else passes through
    sink_keys = [(codec.payload_type, _codec_key(codec)) for codec in sink]
    first = next(
        (entry for entry in sink_keys if entry[1][0] in TRANSCODABLE and entry[1][0] not in SUPPLEMENTAL),
        None,
    )
    forceable = False
    for codec in receiver:
        key = _codec_key(codec)
        name = key[0]
        if name not in TRANSCODABLE:
            continue  # passed through as it is
        pt = codec.payload_type
        target = next((entry for entry in sink_keys if entry[0] == pt and entry[1] == key), None)
        if target is None:
            target = next((entry for entry in sink_keys if entry[1] == key), first)
        if target is None:
            continue  # nothing to transcode to: passed through
        if target[0] != pt or target[1] != key:
            return True, True
        if name not in SUPPLEMENTAL:
            forceable = True  # a DTMF-replacing block transcodes even the same codec
    return False, forceable


def dtmf_replaced(call: Call, mono: Monologue) -> bool:
    """Whether DTMF from this party is blocked in a mode that replaces it (the call's block first)."""
    if call.state.dtmf_blocked:
        return _marked(call.state.monologues.values(), CALL_DTMF_REPLACED)
    return mono.dtmf_blocked and _marked([mono], DTMF_REPLACED)


def _marked(monos: Iterable[Monologue], flag: str) -> bool:
    return any(flag in media.flags for mono in monos for media in mono.medias)


def _mark(monos: Iterable[Monologue], flag: str, on: bool) -> None:
    for mono in monos:
        for media in mono.medias:
            if on:
                media.flags.add(flag)
            else:
                media.flags.discard(flag)


def _judge(
    call: Call, mono: Monologue, media: MediaState, receiver: Sequence[Codec], sink: Sequence[Codec]
) -> None:
    """10.5's decision for what `mono` sends on `media`, with its codec store and the other party's."""
    _weigh(media, receiver, sink)
    _decide(call, mono, media)


def _weigh(media: MediaState, receiver: Sequence[Codec], sink: Sequence[Codec]) -> None:
    """Note what a decision would find with these codec stores (a block or unblock decides later)."""
    differ, forceable = (
        transcodes(receiver, sink, media.media_type)
        if media.is_rtp and not media.rejected
        else (False, False)
    )
    for flag, on in ((CODECS_DIFFER, differ), (CODECS_FORCEABLE, forceable)):
        if on:
            media.flags.add(flag)
        else:
            media.flags.discard(flag)


def _decide(call: Call, mono: Monologue, media: MediaState) -> None:
    forced = dtmf_replaced(call, mono) and CODECS_FORCEABLE in media.flags
    if CODECS_DIFFER in media.flags or forced:
        media.flags.add(TRANSCODING)
    else:
        media.flags.discard(TRANSCODING)


def note_offer(call: Call, offerer: Monologue, answerer: Monologue, count: int) -> None:
    """After an offer of `count` media: 10.5 decides for the party the offer goes to, which may send what
    it was offered (all of which the offerer has); the offerer's flag stays as it was."""
    for a_media, b_media in zip(offerer.medias[:count], answerer.medias[:count], strict=False):
        offered = set(a_media.offered_payload_types)
        store = [c for c in b_media.codecs if c.payload_type in offered]
        _judge(call, answerer, b_media, store, a_media.codecs)
        _weigh(a_media, [c for c in a_media.codecs if c.payload_type in offered], store)


def note_answer(
    call: Call, offerer: Monologue, answerer: Monologue, medias_out: Sequence[OutboundMedia]
) -> None:
    """After an answer: 10.5 decides for both parties. The answerer may send any codec of its store (what
    it was offered and kept in its answer); the offerer was given `medias_out` (e.g. one codec of them
    under `single-codec`) and sends only those."""
    for a_media, b_media, out in zip(offerer.medias, answerer.medias, medias_out, strict=False):
        given = list(out.codecs or [])
        kept = set(a_media.offered_payload_types)
        store = [c for c in b_media.codecs if c.payload_type in kept]
        _judge(call, answerer, b_media, store, given)
        _judge(call, offerer, a_media, given, store)


def note_dtmf_block(call: Call, target: Monologue | None, block: bool, opts: NgOptions) -> None:
    """After `block DTMF` / `unblock DTMF` (`target` None: call-wide) switched the blocks: 10.5 decides
    again for a party whose DTMF-replacing block starts or ends (call-wide: for every party), with the
    codec stores as they are. A plain block (drop) leaves the flags as they were."""
    state = call.state
    replacing = block and opts.dtmf_security in DTMF_REPLACING
    decide: list[Monologue] = []
    if target is not None:
        was = _marked([target], DTMF_REPLACED)
        _mark([target], DTMF_REPLACED, replacing)
        if replacing or (not block and was):
            decide.append(target)
    else:
        monos = list(state.monologues.values())
        was = _marked(monos, CALL_DTMF_REPLACED)
        _mark(monos, CALL_DTMF_REPLACED, replacing)
        if replacing:
            decide = monos
        elif not block:
            for mono in monos:
                party_was = opts.all and _marked([mono], DTMF_REPLACED)
                if opts.all:
                    _mark([mono], DTMF_REPLACED, False)
                if party_was or was:
                    decide.append(mono)
    for mono in decide:
        if mono.removed or not _hears_anyone(state.monologues.values(), mono):
            continue
        for media in mono.medias:
            _decide(call, mono, media)


def _hears_anyone(monos: Iterable[Monologue], mono: Monologue) -> bool:
    """Whether anyone receives what `mono` sends (10.5 decides per party that hears it)."""
    return mono.partner is not None or any(mono.uid in other.former_partners for other in monos)
