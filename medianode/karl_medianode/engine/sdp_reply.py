"""What the SDP sent on keeps of the received one: `o=` and `s=` per party, the `o=` version
(`replace SDP-version`), a body that is no SDP echoed back (sans-IO)."""

from __future__ import annotations

from typing import Any

from karl_core.ng.options import NgOptions
from karl_core.session import Monologue
from karl_medianode.engine.rewrite.inbound import InboundSdp
from karl_medianode.engine.rewrite.outbound import SessionRewrite

VERSION_MARK = "\x00sdp-version\x00"


def unread_body(text: str) -> dict[str, Any]:
    """An empty or one-character body: rtpengine reads no SDP in it and echoes it back as it is."""
    return {"sdp": text} if text else {}


def origin_parts(inbound: InboundSdp) -> list[str] | None:
    for line in inbound.sdp.session.lines:
        if line.kind == "o":
            parts = line.value.split(" ")
            return parts if len(parts) >= 6 else None
    return None


def session_name(inbound: InboundSdp) -> str:
    for line in inbound.sdp.session.lines:
        if line.kind == "s":
            return str(line.value)
    return "-"


def int_or(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def session_rewrite(
    sender: Monologue, inbound: InboundSdp, opts: NgOptions, address: str, loop_marker: str
) -> SessionRewrite:
    replace = opts.replace
    ctx = SessionRewrite(
        address=address,
        replace_origin="origin" in replace,
        replace_session_connection="session-connection" in replace,
        # (10.5 writes Karl's address where a party held with 0.0.0.0 when a `media-address` is given,
        # as `zero-address` would; also where the SDP sent on carries ICE: see `write_sdp`)
        replace_zero_address="zero-address" in replace or opts.media_address is not None,
        strip_extmap=opts.strip_extmap,
        original_sendrecv=opts.original_sendrecv,
        full_rtcp_attribute=opts.full_rtcp_attribute,
        no_rtcp_attribute=opts.no_rtcp_attribute,
        loop_marker=loop_marker if opts.loop_protect else None,
    )
    origin = origin_parts(inbound)
    if "username" in replace and origin is not None:
        if sender.sdp_username is None:
            sender.sdp_username = origin[0]
        ctx.username = sender.sdp_username
    if "session-name" in replace:
        name = session_name(inbound)
        if sender.sdp_session_name is None:
            sender.sdp_session_name = name
        ctx.session_name = sender.sdp_session_name
    if "SDP-version" in replace and origin is not None:
        ctx.origin_version = VERSION_MARK
    return ctx


def finish_sdp(sender: Monologue, text: str, inbound: InboundSdp) -> str:
    """`replace SDP-version`: one `o=` version per party, bumped only when the SDP we send changed."""
    if VERSION_MARK not in text:
        return text
    origin = origin_parts(inbound)
    if sender.sdp_version is None:
        sender.sdp_version = int_or(origin[2] if origin else "0", 0)
    elif sender.last_sdp_out is not None and sender.last_sdp_out != text:
        sender.sdp_version += 1
    sender.last_sdp_out = text
    return text.replace(VERSION_MARK, str(sender.sdp_version), 1)
