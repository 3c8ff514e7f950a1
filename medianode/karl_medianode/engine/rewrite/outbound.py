"""Writing the SDP for the other party, the way rtpengine 10.5 edits it (sans-IO).

The received text is copied line by line: a few lines are replaced in place (`o=`, `c=`, `m=`), the
attributes the proxy manages are dropped, everything else stays where it was, and a generated block
is appended to each media section in rtpengine's fixed order. Generated lines end in CRLF; copied
lines keep their own ending (so a bare-LF input gives mixed endings, as rtpengine's does).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from karl_core.sdp import BAD_RTCP_ADDRESS, MediaLine, RtcpAttribute, SdpError
from karl_core.session import Codec
from karl_medianode.engine.rewrite.inbound import DIRECTIONS, InboundMedia, InboundSdp

CRLF = "\r\n"

# Attributes rtpengine drops from the session level (ICE, direction and BUNDLE are its business).
# SDES and DTLS-SRTP lines (crypto, fingerprint, setup) pass through untouched where Karl relays SRTP
# end to end; where it terminates SDES, a media's crypto lines are its own (`OutboundMedia.crypto`).
_SESSION_DROPPED = {
    "rtcp",  # means nothing at session level; rtpengine removes it (probed)
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "candidate",
    *DIRECTIONS,
}
# (and `a=group:BUNDLE ...`; other groups, e.g. `LS` or `FID`, stay: `_session_attribute_dropped`)
# Attributes rtpengine drops from an RTP media section and regenerates where needed.
_MEDIA_DROPPED = {
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "candidate",
    "end-of-candidates",
    "remote-candidates",
    "rtcp",
    "rtcp-mux",
    "mid",
    *DIRECTIONS,
}
_CODEC_ATTRIBUTES = {"rtpmap", "fmtp", "rtcp-fb"}
_DTLS_ATTRIBUTES = {"setup", "fingerprint", "tls-id"}


@dataclass
class OutboundMedia:
    """What the proxy writes into one media section for the receiving party."""

    port: int
    rtcp_port: int | None
    rtcp_mux: bool
    protocol: str
    codecs: list[Codec] | None
    """The formats and codec lines written (None: those received pass). An empty list is what 10.5
    writes when codec options took every codec away: no format after the protocol, and the received
    `a=rtpmap`/`a=fmtp`/`a=rtcp-fb` lines left as they were."""
    direction: str
    ptime: int | None
    connection: str
    mid: str | None = None
    managed: bool = True
    # rtpengine 10.5 quirk: a party that trickles and for which 10.5 keeps an ICE agent (it spoke ICE
    # once) still gets `a=ice-options:trickle` and `a=end-of-candidates` where its SDP carries no ICE
    trickle_remnant: bool = False
    crypto: list[str] | None = None
    """SDES terminated by Karl: the received `a=crypto` lines are dropped and these values (Karl's
    keys, or none towards a plain party) written instead. None: the received ones pass through."""
    dtls: list[str] | None = None
    """Karl terminates DTLS-SRTP on one of the media's legs: the received `a=setup`, `a=fingerprint`
    and `a=tls-id` lines are dropped and these (Karl's own, or none towards a non-DTLS party) written
    instead. None: the received ones pass through."""
    ice: list[str] = field(default_factory=list)
    """Karl's ICE attributes for the receiving party (it is an ICE agent towards it), in order."""
    ice_lite: bool = False
    """Karl is an ICE-lite agent towards the receiving party: `a=ice-lite` at session level."""


@dataclass
class SessionRewrite:
    address: str
    replace_origin: bool = False
    replace_session_connection: bool = False
    replace_zero_address: bool = False
    origin_version: str | None = None
    username: str | None = None
    session_name: str | None = None
    strip_extmap: bool = False
    original_sendrecv: bool = False
    full_rtcp_attribute: bool = False
    no_rtcp_attribute: bool = False
    loop_marker: str | None = None
    drop_dtls: bool = False
    """Karl terminates DTLS on a media: the session-level `a=setup`/`a=fingerprint`/`a=tls-id` go
    (Karl writes its own at media level)."""


def address_tokens(address: str) -> str:
    return f"IN {'IP6' if ':' in address else 'IP4'} {address}"


def _is_unspecified(address: str | None) -> bool:
    return address in ("0.0.0.0", "::")


def _codec_block(codecs: list[Codec]) -> list[str]:
    lines: list[str] = []
    for codec in codecs:
        encoding = codec.encoding if codec.name else "/0"
        lines.append(f"a=rtpmap:{codec.payload_type} {encoding}")
        if codec.fmtp is not None:
            lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp}")
        for feedback in codec.rtcp_fb:
            lines.append(f"a=rtcp-fb:{codec.payload_type} {feedback}")
    return lines


def _rtcp_address_unreadable(value: str) -> bool:
    try:
        RtcpAttribute.parse(value)
    except SdpError as exc:
        return exc.reason == BAD_RTCP_ADDRESS
    return False


def _kept_media_line(
    line_kind: str, value: str, out: OutboundMedia, ctx: SessionRewrite, codec_lines_replaced: bool
) -> bool:
    """Whether a received line of the media section is written on (`codec_lines_replaced`: its
    payload-specific codec lines are not, 10.5 writes its own or, for a refused media, none)."""
    if line_kind != "a":
        return True
    name, sep, rest = value.partition(":")
    if name in DIRECTIONS and ctx.original_sendrecv:
        return True
    if name == "rtcp" and sep and _rtcp_address_unreadable(rest):
        return True  # rtpengine treats such a line as an unknown attribute and leaves it in place
    if name == "ptime":
        # replaced when the media has a packet time (probed: `a=ptime:0` stays in place without one)
        return out.ptime is None
    if name in _MEDIA_DROPPED:
        return False
    if name == "crypto" and out.crypto is not None:
        return False
    if name in _DTLS_ATTRIBUTES and out.dtls is not None:
        return False
    if name == "extmap" and ctx.strip_extmap:
        return False
    if name in _CODEC_ATTRIBUTES and codec_lines_replaced and sep:
        # (no codec left: 10.5 leaves the received lines in place, see `OutboundMedia.codecs`)
        # payload-specific lines are regenerated; wildcard `a=rtcp-fb:*` stays in place
        return not rest.split(" ", 1)[0].isdigit()
    return True


class RewriteOrderError(Exception):
    """rtpengine edits the text front to back and fails ("Error rewriting SDP") when an edit falls
    before the previous one; Karl reports the same SDPs the same way."""


def _session_attribute_dropped(value: str, ctx: SessionRewrite) -> bool:
    name, _, rest = value.partition(":")
    if name == "group":
        return rest.startswith("BUNDLE ")  # (10.5 strips BUNDLE groups only, by this prefix)
    if name in DIRECTIONS and ctx.original_sendrecv:
        return False
    if name in _DTLS_ATTRIBUTES and ctx.drop_dtls:
        return True
    return name in _SESSION_DROPPED or (name == "extmap" and ctx.strip_extmap)


def _replaces_connection(value: str, ctx: SessionRewrite) -> bool:
    parts = value.split()
    current = parts[2] if len(parts) >= 3 else None
    return not (_is_unspecified(current) and not ctx.replace_zero_address)


def check_edit_order(inbound: InboundSdp, medias: list[OutboundMedia], ctx: SessionRewrite) -> None:
    """Raise RewriteOrderError where rtpengine 10.5 would, from its order of edits (probed): the o=
    line, s=, the session c=, removed session attributes, then per media the m= line, its c= and its
    removed attributes."""
    session = inbound.sdp.session.lines
    replace_session_c = _session_c_replaced(inbound, ctx)
    edits: list[int] = []
    kinds = [line.kind for line in session]
    if "o" in kinds:
        edits.append(kinds.index("o"))
    if ctx.session_name is not None and "s" in kinds:
        edits.append(kinds.index("s"))
    for index, line in enumerate(session):
        if line.kind == "c" and replace_session_c and _replaces_connection(line.value, ctx):
            edits.append(index)
    edits.extend(
        index
        for index, line in enumerate(session)
        if line.kind == "a" and _session_attribute_dropped(line.value, ctx)
    )
    offset = len(session)
    for section, out in zip(inbound.sdp.media, medias, strict=True):
        lines = section.lines
        if out.managed:
            edits.append(offset)
            if out.port:
                for index, line in enumerate(lines[1:], start=offset + 1):
                    if line.kind == "c" and _replaces_connection(line.value, ctx):
                        edits.append(index)
                for index, line in enumerate(lines[1:], start=offset + 1):
                    if line.kind == "a" and not _kept_media_line(
                        line.kind, line.value, out, ctx, bool(out.codecs)
                    ):
                        edits.append(index)
        offset += len(lines)
    if any(later < earlier for earlier, later in itertools.pairwise(edits)):
        raise RewriteOrderError("an edit falls before the previous one")


def _session_c_replaced(inbound: InboundSdp, ctx: SessionRewrite) -> bool:
    return ctx.replace_session_connection or any(
        not m.has_own_connection and not m.rejected for m in inbound.medias
    )


def write_sdp(inbound: InboundSdp, medias: list[OutboundMedia], ctx: SessionRewrite) -> str:
    ctx.drop_dtls = any(m.dtls is not None for m in medias)
    if any(m.ice for m in medias):
        ctx.replace_zero_address = True  # (ICE towards the receiver: 10.5 writes no 0.0.0.0 hold then)
    check_edit_order(inbound, medias, ctx)
    out: list[str] = []
    replace_session_c = _session_c_replaced(inbound, ctx)
    session_c_replaced = False
    for line in inbound.sdp.session.lines:
        kind, value, eol = line.kind, line.value, line.eol
        if kind == "o":
            value = _rewrite_origin(value, ctx)
        elif kind == "s" and ctx.session_name is not None:
            value = ctx.session_name
        elif kind == "c" and replace_session_c and _replaces_connection(value, ctx):
            value = address_tokens(ctx.address)
            session_c_replaced = True
        elif kind == "a" and _session_attribute_dropped(value, ctx):
            continue
        out.append(f"{kind}={value}{eol or CRLF}" if kind else f"{value}{eol or CRLF}")
    if any(m.ice_lite and m.ice for m in medias):
        out.append(f"a=ice-lite{CRLF}")
    if ctx.loop_marker is not None:
        out.append(f"a=rtpengine:{ctx.loop_marker}{CRLF}")
    for section, media, outbound in zip(inbound.sdp.media, inbound.medias, medias, strict=True):
        out.extend(_write_media(section.lines, media, outbound, ctx, inbound, session_c_replaced))
    if len(inbound.sdp.tail) == 1:
        out.append(inbound.sdp.tail)  # rtpengine copies a lone trailing character (probed)
    return "".join(out)


def _rewrite_origin(value: str, ctx: SessionRewrite) -> str:
    parts = value.split(" ")
    if len(parts) < 6:
        return value
    if ctx.username is not None:
        parts[0] = ctx.username
    if ctx.origin_version is not None:
        parts[2] = ctx.origin_version
    if ctx.replace_origin:
        parts[4] = "IP6" if ":" in ctx.address else "IP4"
        parts[5] = ctx.address
    return " ".join(parts)


def _write_media(
    lines: list,  # type: ignore[type-arg]
    media: InboundMedia,
    out: OutboundMedia,
    ctx: SessionRewrite,
    inbound: InboundSdp,
    session_c_replaced: bool,
) -> list[str]:
    m_line = lines[0]
    mid = [] if out.mid is None else [f"a=mid:{out.mid}{CRLF}"]
    if not out.managed:
        result = [f"m={m_line.value}{m_line.eol or CRLF}"]
        if session_c_replaced and not media.has_own_connection and inbound.session_connection:
            # rtpengine keeps the original address for media it does not handle (and ends it with LF)
            result.append(f"c={address_tokens(inbound.session_connection)}\n")
            result.extend(mid)
        else:
            # rtpengine writes its a=mid where its copy of the text stands: before this m= line (probed)
            result[:0] = mid
        result.extend(f"{ln.kind}={ln.value}{ln.eol or CRLF}" for ln in lines[1:])
        return result
    parsed: MediaLine | None = MediaLine.parse(m_line.value)
    assert parsed is not None
    if out.port:
        parsed = parsed.with_port(out.port, media.port_count)
    elif parsed.proto == out.protocol:
        parsed = None  # a disabled stream's m= line stays exactly as received
    if parsed is not None:
        parsed = parsed.with_proto(out.protocol)
        if out.codecs is not None:
            # no codec left: an empty format list, written "RTP/AVP " as 10.5 writes it
            parsed = parsed.with_formats([c.payload_type for c in out.codecs] or [""])
    m_value = m_line.value if parsed is None else parsed.render()
    result = [f"m={m_value}{m_line.eol or CRLF}"]
    # (10.5 writes `a=end-of-candidates` at the end of a section whose party wrote one, ICE or not)
    ended = [f"a=end-of-candidates{CRLF}"] if any(ln.value == "end-of-candidates" for ln in lines[1:]) else []
    if out.port == 0:
        # a refused media: 10.5 leaves its other lines (bandwidth, `a=rtcp-fb:*`, `a=content`...) as
        # they were, without its codec lines, and adds none of its own
        replaced = media.is_rtp and bool(media.codecs)
        kept = [
            f"{line.kind}={line.value}{line.eol or CRLF}"
            for line in lines[1:]
            if line.kind != "c" and _kept_media_line(line.kind, line.value, out, ctx, replaced)
        ]
        return result + kept + mid + ended
    for line in lines[1:]:
        if line.kind == "c":
            current = line.value.split()[2] if len(line.value.split()) >= 3 else None
            if _is_unspecified(current) and not ctx.replace_zero_address:
                result.append(f"c={line.value}{line.eol or CRLF}")
            else:
                result.append(f"c={address_tokens(out.connection)}{line.eol or CRLF}")
            continue
        if _kept_media_line(line.kind, line.value, out, ctx, bool(out.codecs)):
            result.append(f"{line.kind}={line.value}{line.eol or CRLF}")
    generated: list[str] = []
    result.extend(mid)
    if out.codecs is not None:
        generated.extend(_codec_block(out.codecs))
    if not ctx.original_sendrecv:
        generated.append(f"a={out.direction}")
    if out.rtcp_port is not None and not ctx.no_rtcp_attribute:
        if ctx.full_rtcp_attribute:
            generated.append(f"a=rtcp:{out.rtcp_port} {address_tokens(out.connection)}")
        else:
            generated.append(f"a=rtcp:{out.rtcp_port}")
    if out.rtcp_mux:
        generated.append("a=rtcp-mux")
    generated.extend(f"a=crypto:{value}" for value in out.crypto or ())
    generated.extend(out.dtls or ())
    if out.ptime is not None and "RTP/" in out.protocol:
        generated.append(f"a=ptime:{out.ptime}")
    generated.extend(out.ice)
    if out.trickle_remnant and not out.ice:
        generated.append("a=ice-options:trickle")
        generated.append("a=end-of-candidates")
    result.extend(g + CRLF for g in generated)
    if ended and "a=end-of-candidates" not in generated:
        result.extend(ended)
    return result
