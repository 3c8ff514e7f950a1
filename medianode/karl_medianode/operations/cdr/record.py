"""Building a call detail record from `engine.CallEnded` (sans-IO).

One record is one JSON object: the call, its parties (tags) with the addresses and codecs they used,
and per-direction counters. docs/cdr.md describes every field. The record is bounded (strings, parties,
medias, addresses and codecs are capped; `truncated` says when something was cut) and carries no SDP
body, so no keys (SDES, ICE passwords) can leak into it.

Counters come from the proxy's sockets: the socket Karl advertised to a party receives what that party
sends, so a party's streams count the direction "from that party". `lost` is what the RTP sequence
numbers of that direction miss on the way from the party to Karl; a party's `quality` is what its own
RTCP reports said about the media it received (end to end), with rtpengine's MOS.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

from karl_core.session import CallState, Endpoint, MediaState, Monologue
from karl_medianode.engine import CallEnded
from karl_medianode.engine.leg_security import keying, srtp_suite

SCHEMA = 2
MAX_TEXT = 255
MAX_REASON = 32
MAX_PARTIES = 16
MAX_MEDIAS = 16
MAX_CODECS = 32
MAX_ADDRESSES = 16


def new_record_id() -> str:
    return str(uuid.uuid4())


class _Bounds:
    """Caps strings and lists, remembering whether anything was cut."""

    def __init__(self) -> None:
        self.truncated = False

    def text(self, value: object, limit: int = MAX_TEXT) -> str:
        text = value if isinstance(value, str) else str(value)
        if not text.isascii():  # (ASCII, nearly every string here, is valid UTF-8 as it is)
            # NG strings keep undecodable bytes as surrogates (surrogateescape); show them as \xNN
            # so the record is valid UTF-8 for the file and the database
            try:
                text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:  # a surrogate that is no escaped byte (e.g. from NG JSON)
                text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        if len(text) > limit:
            self.truncated = True
            text = text[:limit]
        return text

    def optional(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    def cap(self, items: list[Any], limit: int) -> list[Any]:
        if len(items) > limit:
            self.truncated = True
            return items[:limit]
        return items


def iso_utc(epoch: float) -> str:
    """ISO-8601 UTC with microseconds and a `Z`."""
    try:
        stamp = datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):
        stamp = datetime.fromtimestamp(0, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _address(endpoint: Endpoint) -> str:
    host = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
    return f"{host}:{endpoint.port}"


def _add(target: list[str], value: str) -> None:
    if value not in target:
        target.append(value)


def _counter() -> dict[str, int]:
    return {"packets": 0, "bytes": 0, "errors": 0}


def _accumulate(target: dict[str, int], packets: int, bytes_: int, errors: int) -> None:
    target["packets"] += packets
    target["bytes"] += bytes_
    target["errors"] += errors


def _codec_names(bounds: _Bounds, media: MediaState) -> list[str]:
    return [bounds.text(codec.encoding, 64) for codec in media.codecs]


def _media_record(bounds: _Bounds, media: MediaState, codecs: list[str]) -> dict[str, Any]:
    return {
        "index": media.index,
        "type": bounds.text(media.media_type, 32),
        "protocol": bounds.text(media.protocol, 64),
        "codecs": bounds.cap(codecs, MAX_CODECS),
        "rejected": media.rejected,
        "srtp": srtp_suite(media),  # the suite of the SRTP Karl terminated on this leg (never its keys)
        "keying": keying(media),  # "sdes", "dtls" or None
        "ice": media.ice,  # Karl was the ICE agent towards this party
    }


def _party_quality(mono: Monologue, quality: dict[str, Any]) -> dict[str, Any] | None:
    """What the party's RTCP reports said (its reporting SSRC with the most MOS samples), or None."""
    mine = [s for s in quality.get("sources", []) if s.get("party") is not None and s["party"] == mono.tag]
    if not mono.tag or not mine:
        return None
    best = max(mine, key=lambda s: (s.get("mos_samples") or 0, s.get("mos") is not None))
    keys = (
        "mos",
        "mos_min",
        "mos_max",
        "mos_samples",
        "packet_loss_ratio",
        "cumulative_lost",
        "jitter_seconds",
        "rtt_seconds",
        "rtt_leg_seconds",
    )
    result: dict[str, Any] = {"ssrc": best.get("ssrc")}
    for key in keys:
        value = best.get(key)
        result[key] = round(value, 6) if isinstance(value, float) else value
    return result


def _party(
    bounds: _Bounds, state: CallState, mono: Monologue, quality: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The party's record and its direction (what Karl received from it, towards its partner)."""
    sdp: list[str] = []
    learned: list[str] = []
    local: list[str] = []
    codecs: list[str] = []
    rtp, rtcp = _counter(), _counter()
    lost = 0
    names = [_codec_names(bounds, media) for media in mono.medias]
    for media, media_codecs in zip(mono.medias, names, strict=True):
        if media.sdp_address is not None and media.sdp_port:
            _add(sdp, _address(Endpoint(media.sdp_address, media.sdp_port)))
        for name in media_codecs:
            _add(codecs, name)
        for stream in media.streams:
            if stream.advertised is not None:
                _add(sdp, _address(stream.advertised))
            # `endpoint` is where media to the party went: its learned source once it sent any
            if stream.endpoint is not None and (stream.confirmed or stream.endpoint != stream.advertised):
                _add(learned, _address(stream.endpoint))
            _add(local, _address(Endpoint(stream.local_address, stream.local_port)))
            _accumulate(rtcp if stream.component == 2 else rtp, stream.packets, stream.bytes, stream.errors)
            lost += stream.lost
    partner = state.partner_of(mono)
    party = {
        "tag": bounds.text(mono.tag),
        "label": bounds.optional(mono.label),
        "partner": None if partner is None else bounds.text(partner.tag),
        "removed": mono.removed,
        "addresses": {
            "sdp": bounds.cap(sdp, MAX_ADDRESSES),
            "learned": bounds.cap(learned, MAX_ADDRESSES),
            "local": bounds.cap(local, MAX_ADDRESSES),
        },
        "codecs": bounds.cap(codecs, MAX_CODECS),
        "medias": [
            _media_record(bounds, media, media_codecs)
            for media, media_codecs in bounds.cap(list(zip(mono.medias, names, strict=True)), MAX_MEDIAS)
        ],
        "quality": _party_quality(mono, quality),
    }
    total = _counter()
    for part in (rtp, rtcp):
        _accumulate(total, part["packets"], part["bytes"], part["errors"])
    direction = {
        "from": party["tag"],
        "to": party["partner"],
        "rtp": rtp,
        "rtcp": rtcp,
        **total,
        "lost": lost,
    }
    return party, direction


def build_record(ended: CallEnded, node_id: str, record_id: str | None = None) -> dict[str, Any]:
    """The CDR of a finished call. `record_id` makes database inserts idempotent; a new one by
    default."""
    bounds = _Bounds()
    start = float(ended.created)
    end = float(ended.ended)
    if not math.isfinite(start):
        start = 0.0
    if not math.isfinite(end):
        end = start
    parties: list[dict[str, Any]] = []
    directions: list[dict[str, Any]] = []
    totals: dict[str, Any] = {**_counter(), "rtp": _counter(), "rtcp": _counter(), "lost": 0}
    state = ended.state
    if state is not None:
        monologues = bounds.cap(list(state.monologues.values()), MAX_PARTIES)
        for mono in monologues:
            party, direction = _party(bounds, state, mono, ended.quality)
            parties.append(party)
            directions.append(direction)
        # totals cover every party, also those past the cap
        for mono in state.monologues.values():
            for media in mono.medias:
                for stream in media.streams:
                    kind = totals["rtcp"] if stream.component == 2 else totals["rtp"]
                    _accumulate(kind, stream.packets, stream.bytes, stream.errors)
                    _accumulate(totals, stream.packets, stream.bytes, stream.errors)
                    totals["lost"] += stream.lost
    # in a fleet: the nodes that held the call, in order (this one alone when it never moved)
    nodes = [bounds.text(n) for n in bounds.cap(list(state.nodes), MAX_PARTIES)] if state is not None else []
    if not nodes:
        nodes = [bounds.text(node_id)]
    # the offerer is the first party; its SIP peer is the party it is linked to
    from_tag = parties[0]["tag"] if parties else ""
    to_tag = (parties[0]["partner"] or "") if parties else ""
    return {
        "schema": SCHEMA,
        "record_id": record_id or new_record_id(),
        "node_id": bounds.text(node_id),
        "call_id": bounds.text(ended.call_id),
        "from_tag": from_tag,
        "to_tag": to_tag,
        "reason": bounds.text(ended.reason, MAX_REASON),
        "start": iso_utc(start),
        "start_epoch": round(start, 6),
        "end": iso_utc(end),
        "end_epoch": round(end, 6),
        "duration": round(max(0.0, end - start), 6),
        "tags": parties,
        "directions": directions,
        "totals": totals,
        "loss_tracked": True,
        "rtcp_reports": int(ended.quality.get("reports", 0)),
        "nodes": nodes,
        "failovers": len(nodes) - 1,
        "truncated": bounds.truncated,
    }


def encode_record(record: dict[str, Any]) -> bytes:
    """One JSON line: UTF-8, sorted keys, compact, ending in a newline."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


def decode_record(line: bytes) -> dict[str, Any]:
    """A line written by `encode_record`; raises ValueError if it is not one record object."""
    value = json.loads(line)
    if not isinstance(value, dict) or not isinstance(value.get("record_id"), str):
        raise ValueError("not a CDR object with a record_id")
    return value
