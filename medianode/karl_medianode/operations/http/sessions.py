"""How the REST API shows calls: list entries, full details, filters and paging (pure functions)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from karl_core.sdp.addresses import IpAddress
from karl_core.session import MediaState, Monologue
from karl_core.state import OwnerToken
from karl_medianode.dataplane.relay import PacketStream
from karl_medianode.engine.calls import Call
from karl_medianode.engine.leg_security import keying, srtp_suite

STATES = ("offered", "answered", "deleting")


class LiveStreams(Protocol):
    """Where a call's live packet streams are (the engine driver)."""

    def streams_of(self, call: Call) -> list[PacketStream]: ...

    def media_streams(
        self, call: Call, uid: int, index: int
    ) -> tuple[PacketStream | None, PacketStream | None]: ...

    def transport_states(self, call: Call, uid: int, index: int) -> tuple[str | None, str | None]:
        """(ICE state, DTLS handshake state) of Karl's agents on this leg, None where there is none."""
        ...


def call_state(call: Call) -> str:
    """offered: no answer yet; answered: media set up both ways; deleting: deleted, delete delay running."""
    state = call.state
    if state.deleted_at is not None:
        return "deleting"
    return "answered" if state.answered else "offered"


def _address(addr: tuple[str, int] | None) -> dict[str, Any] | None:
    if addr is None:
        return None
    return {"address": addr[0], "port": addr[1]}


def _direction(media: MediaState) -> str:
    # media.send/recv: what the party said in its SDP (it sends / it receives)
    if media.send and media.recv:
        return "sendrecv"
    if media.send:
        return "sendonly"
    return "recvonly" if media.recv else "inactive"


def _when(value: float) -> float | None:
    return value if value else None


def _stream_view(stream: PacketStream) -> dict[str, Any]:
    return {
        "kind": "rtcp" if stream.is_rtcp else "rtp",
        "local_address": stream.local_ip,
        "local_port": stream.local_port,
        "advertised": _address(stream.advertised),
        "endpoint": _address(stream.endpoint),
        "learned": _address(stream.learned),
        "confirmed": stream.confirmed,
        "packets": stream.packets,
        "bytes": stream.bytes,
        "errors": stream.errors,
        "rtcp_packets": stream.rtcp_packets,
        "malformed": stream.malformed,
        "dropped": {
            "blocked": stream.dropped_blocked,
            "no_destination": stream.dropped_no_destination,
            "source": stream.dropped_source,
            "malformed": stream.dropped_malformed,
            "srtp": stream.srtp_failures,
        },
        "lost": stream.lost,
        "late": stream.late,
        "last_packet": _when(stream.last_packet),
    }


def _worst(values: Iterable[float | None], pick: Any) -> float | None:
    present = [value for value in values if value is not None]
    return pick(present) if present else None


def quality_view(call: Call, streams: list[PacketStream]) -> dict[str, Any]:
    """The call's quality: per reporting party what its RTCP said, and the worst of each figure."""
    summary = call.quality.summary()
    sources = summary["sources"]
    return {
        "available": bool(sources),
        "mos": _worst((s["mos"] for s in sources), min),
        "mos_min": _worst((s["mos_min"] for s in sources), min),
        "packet_loss_ratio": _worst((s["packet_loss_ratio"] for s in sources), max),
        "jitter_seconds": _worst((s["jitter_seconds"] for s in sources), max),
        "rtt_seconds": _worst((s["rtt_seconds"] for s in sources), max),
        "rtcp_reports": summary["reports"],
        "lost": sum(stream.lost for stream in streams),
        "sources": sources,
    }


def _media_view(live: LiveStreams, call: Call, mono: Monologue, media: MediaState) -> dict[str, Any]:
    streams = [s for s in live.media_streams(call, mono.uid, media.index) if s is not None]
    return {
        "index": media.index,
        "type": media.media_type,
        "protocol": media.protocol,
        "direction": _direction(media),
        "rejected": media.rejected,
        "rtcp_mux": media.rtcp_mux,
        "sdp_address": media.sdp_address,
        "sdp_port": media.sdp_port,
        "codecs": [
            {
                "payload_type": codec.payload_type,
                "name": codec.name,
                "clock_rate": codec.clock_rate,
                "channels": codec.channels,
                "fmtp": codec.fmtp,
            }
            for codec in media.codecs
        ],
        "streams": [_stream_view(s) for s in streams],
        "security": _security_view(live, call, mono, media),
    }


def _security_view(live: LiveStreams, call: Call, mono: Monologue, media: MediaState) -> dict[str, Any]:
    ice, handshake = live.transport_states(call, mono.uid, media.index)
    keyed_by = keying(media)
    if keyed_by == "dtls" and handshake is None and len(media.dtls_keys) == 2:
        handshake = "connected"  # keys restored with the call: no handshake needed here
    return {
        "srtp": srtp_suite(media),
        "keying": keyed_by,
        "dtls_role": media.dtls_setup,
        "dtls": handshake if keyed_by == "dtls" else None,
        "ice": ice,
    }


def _party_view(live: LiveStreams, call: Call, mono: Monologue) -> dict[str, Any]:
    partner = call.state.partner_of(mono)
    return {
        "tag": mono.tag,
        "label": mono.label,
        "created": mono.created,
        "role": "answerer" if mono.answerer else "offerer",
        "partner_tag": None if partner is None else partner.tag,
        "removed": mono.removed,
        "blocked": mono.blocked,
        "silenced": mono.silenced,
        "medias": [_media_view(live, call, mono, media) for media in mono.medias],
    }


def _counters(streams: Iterable[PacketStream]) -> dict[str, Any]:
    totals = {
        "rtp": {"packets": 0, "bytes": 0, "errors": 0},
        "rtcp": {"packets": 0, "bytes": 0, "errors": 0},
    }
    dropped = 0
    for stream in streams:
        entry = totals["rtcp" if stream.is_rtcp else "rtp"]
        entry["packets"] += stream.packets
        entry["bytes"] += stream.bytes
        entry["errors"] += stream.errors
        dropped += (
            stream.dropped_blocked
            + stream.dropped_no_destination
            + stream.dropped_source
            + stream.dropped_malformed
            + stream.srtp_failures
        )
    return {**totals, "dropped": dropped}


def ownership(owner: OwnerToken | None) -> dict[str, Any] | None:
    """Who holds the call in a fleet (this node, and the epoch of its ownership); None on a single node."""
    return None if owner is None else {"owner": owner.owner, "epoch": owner.epoch}


def session_summary(
    live: LiveStreams, call: Call, now: float, owner: OwnerToken | None = None
) -> dict[str, Any]:
    state = call.state
    streams = live.streams_of(call)
    counters = _counters(streams)
    return {
        "call_id": call.call_id,
        "ownership": ownership(owner),
        "state": call_state(call),
        "created": state.created,
        "age_seconds": max(0.0, now - state.created),
        "last_signal": state.last_signal,
        "tags": [mono.tag for mono in state.monologues.values()],
        "medias": sum(len(mono.medias) for mono in state.monologues.values()),
        "streams": len(streams),
        "packets": counters["rtp"]["packets"] + counters["rtcp"]["packets"],
        "bytes": counters["rtp"]["bytes"] + counters["rtcp"]["bytes"],
    }


def session_detail(
    live: LiveStreams, call: Call, now: float, owner: OwnerToken | None = None
) -> dict[str, Any]:
    state = call.state
    streams = live.streams_of(call)
    last_media = max((s.last_packet for s in streams), default=0.0)
    return {
        "call_id": call.call_id,
        "ownership": ownership(owner),
        "state": call_state(call),
        "created": state.created,
        "age_seconds": max(0.0, now - state.created),
        "last_signal": state.last_signal,
        "last_media": _when(last_media),
        "delete_at": state.deleted_at,
        "blocked": state.blocked,
        "silenced": state.silenced,
        "dtmf_blocked": state.dtmf_blocked,
        "parties": [_party_view(live, call, mono) for mono in state.monologues.values()],
        "totals": _counters(streams),
        "quality": quality_view(call, streams),
    }


def _same_ip(text: str | None, wanted: IpAddress) -> bool:
    if not text:
        return False
    try:
        return ipaddress.ip_address(text.partition("%")[0]) == wanted
    except ValueError:
        return False


def call_addresses(live: LiveStreams, call: Call) -> Iterator[str]:
    """Every address a party of the call has: from its SDP, and learned from its media."""
    for mono in call.state.monologues.values():
        for media in mono.medias:
            if media.sdp_address:
                yield media.sdp_address
    for stream in live.streams_of(call):
        for addr in (stream.advertised, stream.endpoint, stream.learned):
            if addr is not None:
                yield addr[0]


@dataclass(frozen=True)
class SessionFilter:
    state: str | None = None
    min_age: float | None = None
    max_age: float | None = None
    address: IpAddress | None = None

    def matches(self, live: LiveStreams, call: Call, now: float) -> bool:
        if self.state is not None and call_state(call) != self.state:
            return False
        age = now - call.state.created
        if self.min_age is not None and age < self.min_age:
            return False
        if self.max_age is not None and age > self.max_age:
            return False
        wanted = self.address
        return wanted is None or any(_same_ip(addr, wanted) for addr in call_addresses(live, call))


@dataclass(frozen=True)
class Page:
    calls: list[Call]
    total: int
    next_cursor: str | None


def page_of(
    live: LiveStreams,
    calls: Iterable[Call],
    wanted: SessionFilter,
    now: float,
    limit: int,
    offset: int,
    cursor: str | None,
) -> Page:
    """Calls in call-id order: those after `cursor` (a call-id; any text works), skipping `offset`,
    at most `limit`. `total` counts every call matching the filter (whatever the cursor)."""
    matching = sorted((c for c in calls if wanted.matches(live, c, now)), key=lambda c: c.call_id)
    after = matching if cursor is None else [c for c in matching if c.call_id > cursor]
    chosen = after[offset : offset + limit]
    more = offset + limit < len(after)
    return Page(chosen, len(matching), chosen[-1].call_id if more and chosen else None)
