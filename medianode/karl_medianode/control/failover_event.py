"""The event a node sends when it takes up a call after a failover (`KARL_FAILOVER_WEBHOOK_URL`):
where each party must now send its media, and the SDPs to tell it with.

Per party (leg) of the call:
- `old` / `new`: the address and port Karl gave that party before and after the move;
- `sdp`: the SDP Karl last sent that party — the other party's SDP as Karl rewrote it — with Karl's new
  address and ports, and the `o=` version one higher: for a B2BUA that re-INVITEs the party directly;
- `peer_sdp`: the other party's last original SDP: for a re-INVITE that goes through the proxy's
  `rtpengine_manage()` again (Karl rewrites it then, with the new ports).

`event_id` is the same for the same move (call-id and the new epoch): a receiver that gets an event
twice (delivery is at least once) recognises it. Pure: no sockets, no clock of its own."""

from __future__ import annotations

import re
from typing import Any

from karl_core.session import CallState
from karl_core.session.model import MediaState, Monologue
from karl_core.webhook import event_id as webhook_event_id
from karl_medianode.engine.sdp_reply import VERSION_MARK


def event_id(call_id: str, epoch: int) -> str:
    """The id of the move of `call_id` to `epoch`."""
    return webhook_event_id("moved", call_id, epoch)


def _media_endpoint(media: MediaState, address: str | None = None) -> tuple[str, int] | None:
    """Where the party sends this media's RTP: Karl's address (`address`, the one Karl advertises, or
    the socket's) and port for it."""
    rtp = next((s for s in media.streams if s.component == 1), None)
    if rtp is None:
        return None
    return address or rtp.local_address, rtp.local_port


def _first_endpoint(mono: Monologue, address: str | None = None) -> tuple[str, int] | None:
    for media in mono.medias:
        if not media.rejected and (found := _media_endpoint(media, address)) is not None:
            return found
    return None


def readdressed(sdp: str, mono: Monologue, address: str | None = None) -> str:
    """`sdp` (what Karl sent `mono`'s party) with Karl's current address and ports for that party, and
    its `o=` version one higher."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    endpoints = [_media_endpoint(media, address) for media in mono.medias]
    first = next((e for e in endpoints if e is not None), None)
    out: list[str] = []
    media_index = -1
    for line in sdp.split(eol):
        if line.startswith("o="):
            parts = line.split(" ")
            if len(parts) >= 3 and parts[2].isdigit():
                parts[2] = str(int(parts[2]) + 1)
            line = " ".join(parts)
        elif line.startswith("m="):
            media_index += 1
            endpoint = endpoints[media_index] if media_index < len(endpoints) else None
            parts = line.split(" ")
            if endpoint is not None and len(parts) >= 2 and not parts[1].startswith("0"):
                parts[1] = re.sub(r"^\d+", str(endpoint[1]), parts[1])
            line = " ".join(parts)
        elif line.startswith("c="):
            endpoint = (
                first
                if media_index < 0
                else (endpoints[media_index] if media_index < len(endpoints) else None)
            )
            if endpoint is not None:
                family = "IP6" if ":" in endpoint[0] else "IP4"
                line = f"c=IN {family} {endpoint[0]}"
        elif line.startswith("a=rtcp:") and 0 <= media_index < len(endpoints):
            endpoint = endpoints[media_index]
            if endpoint is not None:
                # RTCP on the next port; with the address too when the line gave one
                family = "IP6" if ":" in endpoint[0] else "IP4"
                with_address = " " in line.strip()
                line = f"a=rtcp:{endpoint[1] + 1}" + (f" IN {family} {endpoint[0]}" if with_address else "")
        out.append(line)
    return eol.join(out)


def _sent_to(mono: Monologue, partner: Monologue) -> str | None:
    """What Karl last sent `mono`'s party: the partner's SDP as Karl rewrote it when it kept it (the
    `SDP-version` flag), else the partner's original SDP (its addresses are replaced all the same)."""
    if partner.last_sdp_out is not None:
        return partner.last_sdp_out.replace(VERSION_MARK, str(partner.sdp_version or 0), 1)
    return partner.last_sdp


def moved_event(
    before: CallState,
    after: CallState,
    from_node: str,
    to_node: str,
    epoch: int,
    now: float,
    advertised_ip: str | None = None,
) -> dict[str, Any]:
    """The event of a call taken up by `to_node`: `before` is the state the failed node left, `after`
    the state on this node's ports, `advertised_ip` the address this node puts in SDP."""
    legs = []
    for mono in sorted(after.monologues.values(), key=lambda m: m.uid):
        if mono.removed:
            continue
        new = _first_endpoint(mono, advertised_ip)
        old_mono = before.monologues.get(mono.uid)
        old = _first_endpoint(old_mono) if old_mono is not None else None
        if new is None:
            continue
        partner = after.partner_of(mono)
        sent = None if partner is None else _sent_to(mono, partner)
        legs.append(
            {
                "tag": mono.tag,
                "label": mono.label,
                "old": None if old is None else {"address": old[0], "port": old[1]},
                "new": {"address": new[0], "port": new[1]},
                "sdp": None if sent is None else readdressed(sent, mono, advertised_ip),
                "peer_sdp": None if partner is None else partner.last_sdp,
            }
        )
    return {
        "event": "call_moved",
        "event_id": event_id(after.call_id, epoch),
        "call_id": after.call_id,
        "from_node": from_node,
        "to_node": to_node,
        "epoch": epoch,
        "time": round(now, 3),
        "legs": legs,
    }
