"""Which SDPs rtpengine 10.5 refuses, and with which error text.

rtpengine handles an offer/answer SDP in stages; two of them can refuse it before any call state
is touched, and their error texts are what the NG reply must carry:
1. parsing: "Failed to parse SDP";
2. stream extraction: "Incomplete SDP specification".
A third failure, "Error rewriting SDP", happens only after the call was created (see
`rtpengine_rewrite_error`).

Every rule below was probed against a locally started rtpengine 10.5.3.5 with bencoded `offer`
requests; tests/core/test_sdp_rtpengine_rules.py holds the probe corpus and replays it against the
real daemon when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .connection import Connection
from .errors import SdpError
from .media_line import MediaLine
from .model import SessionDescription
from .origin import Origin

FAILED_TO_PARSE = "Failed to parse SDP"
INCOMPLETE_SDP = "Incomplete SDP specification"
ERROR_REWRITING = "Error rewriting SDP"

# Line types accepted anywhere without looking at the value. Probed: i=, t=, b=, k= (and the
# others) are fine inside a media section; every other letter ("x=", "A=", "1=", " =") fails.
_UNCHECKED_KINDS = frozenset("abkiueptrz")


@dataclass(slots=True)
class _SessionState:
    has_origin: bool = False
    has_connection: bool = False


@dataclass(slots=True)
class _MediaState:
    media_line: MediaLine
    session: _SessionState
    has_connection: bool = False
    number: int = 0


def _parse_failure(number: int, what: str) -> SdpError:
    return SdpError(FAILED_TO_PARSE, f"line {number}: {what}")


def _parse_stage(sdp: SessionDescription, fragment: bool) -> list[_MediaState]:
    """Replay rtpengine's line-by-line parse; returns the media sections as it sees them."""
    session: _SessionState | None = None
    media: _MediaState | None = None
    found: list[_MediaState] = []
    for number, line in enumerate(sdp.lines(), start=1):
        kind = line.kind
        # Every line must have "=" as its second character: garbage, a line with leading
        # whitespace (" m=...") and a line of only spaces all fail.
        if not kind:
            raise _parse_failure(number, "no '=' after the line type")
        if kind == "v":
            # Exactly "v=0": "v=1", "v=00", "v=0 " and "v=" fail. Every v= line opens a new
            # session; several sessions in one body are accepted and each is rewritten.
            if line.value != "0":
                raise _parse_failure(number, "v= is not 0")
            session = _SessionState()
            media = None
            continue
        if session is None:
            # The first line must be v=. With the `fragment` flag (trickle-ICE SDP fragments)
            # any first line is accepted, and rtpengine consumes it without looking at it.
            if not fragment:
                raise _parse_failure(number, "SDP does not start with v=")
            session = _SessionState()
            continue
        if kind == "o":
            # At most one o= per session and none inside a media section; it needs six tokens
            # ("o=- 1 1 IN IP4" fails), but any address is fine ("IN IP4 host.example",
            # "XX YY zz" pass). o= and s= may be missing altogether.
            if media is not None:
                raise _parse_failure(number, "o= inside a media section")
            if session.has_origin:
                raise _parse_failure(number, "second o= line")
            try:
                Origin.parse(line.value)
            except SdpError as exc:
                raise _parse_failure(number, exc.detail) from None
            session.has_origin = True
        elif kind == "m":
            # See MediaLine.parse: port read with strtol (0..65535), optional /n with n in 1..10,
            # at least three tokens. Non-RTP media (TCP/MSRP *, udptl t38, ...) are fine.
            try:
                media = _MediaState(MediaLine.parse(line.value), session, number=number)
            except SdpError as exc:
                raise _parse_failure(number, exc.detail) from None
            found.append(media)
        elif kind == "c":
            # At most one c= per session part and per media section. Exactly three single-space
            # separated tokens are read (text after a further space is ignored): "IN" or "in",
            # "IP4" or "IP6", and an address inet_pton accepts (see addresses.py). 0.0.0.0, "::",
            # IPv6 in brackets are fine; host names, /ttl suffixes, scope ids are not.
            owner: _SessionState | _MediaState = session if media is None else media
            if owner.has_connection:
                raise _parse_failure(number, "second c= line in the same section")
            try:
                connection = Connection.parse(line.value)
            except SdpError as exc:
                raise _parse_failure(number, exc.detail) from None
            if connection.ip() is None:
                raise _parse_failure(number, f"unusable c= address {line.value!r}")
            owner.has_connection = True
        elif kind == "s":
            # s= may appear (even twice) in the session part, never in a media section.
            if media is not None:
                raise _parse_failure(number, "s= inside a media section")
        elif kind not in _UNCHECKED_KINDS:
            raise _parse_failure(number, f"unknown line type {kind!r}")
        # a= lines are never a parse error: attributes rtpengine cannot read are ignored or kept.
    return found


def _stream_stage(found: list[_MediaState], fragment: bool) -> None:
    for media in found:
        # Every media section needs a c= of its own or one in its session's part; this holds for
        # port 0 and non-RTP media too, and neither the trust-address flag nor received-from
        # changes it. Trickle-ICE fragments are exempt.
        if not fragment and not (media.has_connection or media.session.has_connection):
            raise SdpError(INCOMPLETE_SDP, f"line {media.number}: no c= line for this media")
        # For RTP protocols (protocols.py) every format must be a payload type rtpengine can read
        # (MediaLine.payload_types); an empty format list is fine.
        if media.media_line.is_rtp:
            try:
                media.media_line.payload_types()
            except SdpError as exc:
                raise SdpError(INCOMPLETE_SDP, f"line {media.number}: {exc.detail}") from None


def validate_for_rtpengine(sdp: SessionDescription, *, fragment: bool = False) -> None:
    """Raise SdpError whose `reason` is the error rtpengine 10.5 would reply for this SDP in an
    offer or answer (`Failed to parse SDP` or `Incomplete SDP specification`); return if it
    would pass both stages. `fragment`: the request had the `fragment` flag (trickle ICE).

    What rtpengine does not read at all passes: an empty body, a one-character body, and
    everything after an empty line (see parser.split_lines)."""
    _stream_stage(_parse_stage(sdp, fragment), fragment)


def rtpengine_error(sdp: SessionDescription, *, fragment: bool = False) -> str | None:
    """The error text of validate_for_rtpengine, or None if the SDP passes."""
    try:
        validate_for_rtpengine(sdp, fragment=fragment)
    except SdpError as exc:
        return exc.reason
    return None


def rtpengine_rewrite_error(sdp: SessionDescription) -> str | None:
    """ "Error rewriting SDP" if rtpengine 10.5 would fail the rewrite for structural reasons, else
    None. This happens after the call has been created (the failed offer leaves it behind).

    Probed: a session without any media section fails when no media follow it in the body:
    "v=0" alone, a body cut short by an empty line right after v=, or a second session without
    media. A media-less session before one with media is fine.

    Not covered here, because it depends on what the rewrite changes: rtpengine edits the text
    front to back and fails when an edit lies before the previous one, e.g. a session-level
    attribute it removes placed before o=, or a media-level a=rtpmap before that section's c=
    (see the lead's rewriter)."""
    total = sum(len(session.media) for session in sdp.sessions)
    consumed = 0
    for session in sdp.sessions:
        if consumed >= total:
            return ERROR_REWRITING
        consumed += len(session.media)
    return None
