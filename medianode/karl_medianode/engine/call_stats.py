"""The `query` (and tagged `delete`) reply: a call's structure and counters in rtpengine 10.5's layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from karl_core.session import Endpoint, MediaState, Monologue
from karl_medianode.engine.calls import Call
from karl_medianode.engine.media_view import StreamReading
from karl_medianode.engine.streams import MediaPorts, StreamSpec

ReadStream = Callable[[StreamSpec], StreamReading]
"""What the data plane says about a stream (its counters and learned source)."""


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
    if seen.endpoint is not None or sdp_endpoint is not None:
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
        "advertised endpoint": _endpoint_dict(sdp_endpoint),
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


def _muxed_rtcp_entry(rtp: StreamSpec, seen: StreamReading, now: int) -> dict[str, Any]:
    """rtcp-mux on a single port: rtpengine still lists an RTCP stream, with local port 0."""
    sdp_endpoint = rtp.sdp_peer
    rtcp_endpoint = Endpoint(sdp_endpoint.address, sdp_endpoint.port + 1) if sdp_endpoint else None
    flags = ["RTCP", "fallback RTCP"] + (["filled"] if rtcp_endpoint else [])
    entry: dict[str, Any] = {
        "local port": 0,
        "local address": rtp.local_ip,
        "family": "IPv6" if ":" in rtp.local_ip else "IPv4",
        "endpoint": _endpoint_dict(rtcp_endpoint),
        "advertised endpoint": _endpoint_dict(rtcp_endpoint),
        "last packet": now,
        "flags": flags,
    }
    if seen.last_rtcp_ssrc is not None:  # RTCP multiplexed on the RTP socket
        entry["SSRC"] = seen.last_rtcp_ssrc
    entry["stats"] = {"packets": 0, "bytes": 0, "errors": 0}
    return entry


def _socketless_streams(media: MediaState, now: int) -> list[dict[str, Any]]:
    """A rejected media (port 0) has stream entries but no sockets, as in rtpengine."""
    result = []
    for component, kind in ((0, "RTP"), (1, "RTCP")):
        endpoint: dict[str, Any] = {}
        flags = [kind]
        if media.sdp_address is not None:
            port = media.sdp_port + component if media.sdp_port else component
            endpoint = _endpoint_dict(Endpoint(media.sdp_address, port))
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


def _media_flags(mono: Monologue, media: MediaState, answerer: bool) -> list[str]:
    # rtpengine's send/recv are the proxy's view: it sends to a party that receives
    flags: list[str] = []
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
    if answerer:
        flags.append("ICE controlling")
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
    elif sockets.rtp is not None and rtp_seen is not None and media.rtcp_mux:
        streams.append(_muxed_rtcp_entry(sockets.rtp, rtp_seen, now))
    if not streams and (media.rejected or mono.removed):
        streams = _socketless_streams(media, now)
    result: dict[str, Any] = {"index": media.index, "type": media.media_type, "protocol": media.protocol}
    if streams:
        result["streams"] = streams
    result["flags"] = _media_flags(mono, media, answerer)
    return result


def monologue_key(mono: Monologue, untagged_index: int) -> str:
    return mono.tag if mono.tag else f"<untagged {untagged_index}>"


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
    untagged = 0
    for mono in state.monologues.values():
        if not mono.tag:
            untagged += 1
        key = monologue_key(mono, untagged)
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
        entry["medias"] = [
            _media_dict(call, mono, media, mono.answerer, now, read) for media in mono.medias
        ]
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
