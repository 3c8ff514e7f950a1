"""Property tests: any text parses losslessly, nothing raises but SdpError, generated SDPs round-trip."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from karl_core.sdp import (
    Candidate,
    Connection,
    Fingerprint,
    Fmtp,
    Group,
    MediaLine,
    MediaSection,
    Origin,
    RtcpAttribute,
    RtcpFb,
    RtpMap,
    SdpError,
    SdpLine,
    Session,
    SessionDescription,
    parse,
    parse_bytes,
    rtpengine_error,
    rtpengine_rewrite_error,
    validate_for_rtpengine,
)

VALUE_PARSERS: list[Callable[[str], object]] = [
    Origin.parse, Connection.parse, MediaLine.parse, RtpMap.parse, Fmtp.parse, RtcpFb.parse,
    RtcpAttribute.parse, Candidate.parse, Fingerprint.parse, Group.parse,
]

# Fragments that make random text look like SDP often enough to reach the deeper code paths.
SDP_SOUP = st.sampled_from([
    "v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "c=IN IP4 1.2.3.4", "c=IN IP6 ::1", "t=0 0", "m=audio ",
    "m=video 0 ", "2000", "/2", " RTP/AVP ", " udptl t38", "0 8 101", "a=rtpmap:", "96 opus/48000/2",
    "a=fmtp:101 0-16", "a=rtcp:", "a=candidate:1 1 UDP 1 1.2.3.4 5 typ host", "a=sendonly", " ", "  ",
    "\r\n", "\n", "\r", "=", ":", "/", "x", "\x00", "é", "\udcff", "9", "-",
])


def _exercise(sdp: SessionDescription) -> None:
    """Everything a caller might do with a parsed SDP: only SdpError may come out."""
    for fragment in (False, True):
        with contextlib.suppress(SdpError):
            validate_for_rtpengine(sdp, fragment=fragment)
        assert rtpengine_error(sdp, fragment=fragment) in (None, "Failed to parse SDP",
                                                           "Incomplete SDP specification")
    assert rtpengine_rewrite_error(sdp) in (None, "Error rewriting SDP")
    with contextlib.suppress(SdpError):
        sdp.to_bytes()
    for session in sdp.sessions:
        with contextlib.suppress(SdpError):
            session.origin()
        with contextlib.suppress(SdpError):
            session.connection()
        for media in session.media:
            media.rtpmaps()
            media.fmtps()
            media.rtcp_fbs()
            media.rtcp()
            media.candidates()
            media.mid()
            media.ptime()
            media.direction()
            sdp.direction_for(media)
            with contextlib.suppress(SdpError):
                media.media_line.payload_types()
            with contextlib.suppress(SdpError):
                sdp.connection_for(media)
    for line in sdp.lines():
        _ = line.attribute
        for parser in VALUE_PARSERS:
            with contextlib.suppress(SdpError):
                parser(line.value)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_round_trips_and_raises_only_sdp_error(text: str) -> None:
    sdp = parse(text)
    assert sdp.serialize() == text
    _exercise(sdp)


@settings(max_examples=300, deadline=None)
@given(st.lists(SDP_SOUP, max_size=40).map("".join))
def test_sdp_like_soup_round_trips_and_raises_only_sdp_error(text: str) -> None:
    sdp = parse(text)
    assert sdp.serialize() == text
    assert parse(sdp.serialize()) == sdp
    _exercise(sdp)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_round_trip(data: bytes) -> None:
    sdp = parse_bytes(data)
    assert sdp.to_bytes() == data


@settings(deadline=None)
@given(st.text(max_size=60))
def test_typed_views_render_what_they_parsed(value: str) -> None:
    with contextlib.suppress(SdpError):
        assert Origin.parse(value).render() == value
    with contextlib.suppress(SdpError):
        assert Connection.parse(value).render() == value
    with contextlib.suppress(SdpError):
        assert MediaLine.parse(value).render() == value


# --- structured SDPs: build a model, serialize, parse back ----------------------------------------

_EOL = st.sampled_from(["\r\n", "\n"])
_VALUE = st.text(st.characters(blacklist_characters="\n"), max_size=20)


@st.composite
def _line(draw: st.DrawFn, kinds: str) -> SdpLine:
    kind = draw(st.sampled_from(kinds))
    value = draw(_VALUE)
    eol = draw(_EOL)
    if eol == "\n" and value.endswith("\r"):
        value += "x"  # a value ending in CR before LF would read back as a CRLF ending
    return SdpLine(kind, value, eol)


_OTHER_LINE = _line("oscitbkaruepzxy1 é")


@st.composite
def _media(draw: st.DrawFn) -> MediaSection:
    m_line = draw(_line("m"))
    return MediaSection([m_line, *draw(st.lists(_OTHER_LINE, max_size=5))])


@st.composite
def _session(draw: st.DrawFn) -> Session:
    v_line = draw(_line("v"))
    return Session([v_line, *draw(st.lists(_OTHER_LINE, max_size=5))], draw(st.lists(_media(), max_size=3)))


@st.composite
def _document(draw: st.DrawFn) -> SessionDescription:
    sessions = draw(st.lists(_session(), min_size=1, max_size=3))
    tail = draw(st.one_of(
        st.just(""),
        st.characters(),  # one last character rtpengine does not read
        st.tuples(st.sampled_from(["\r", "\n"]), st.text(min_size=1, max_size=10)).map("".join),  # cut
    ))
    return SessionDescription(sessions, tail)


@settings(max_examples=200, deadline=None)
@given(_document())
def test_built_models_round_trip(document: SessionDescription) -> None:
    text = document.serialize()
    assert parse(text) == document
    _exercise(document)


@st.composite
def _valid_sdp(draw: st.DrawFn) -> tuple[str, list[MediaLine]]:
    """A random SDP that rtpengine 10.5 accepts, with its media lines."""
    eol = draw(_EOL)
    host = draw(st.sampled_from(["IP4 192.0.2.1", "IP6 2001:db8::7", "IP4 0.0.0.0"]))
    session_c = draw(st.booleans())
    user = draw(st.sampled_from(["-", "alice"]))
    lines = ["v=0", f"o={user} 1 {draw(st.integers(0, 99))} IN {host}", "s=-"]
    if session_c:
        lines.append(f"c=IN {host}")
    lines.append("t=0 0")
    lines += [f"a={name}" for name in draw(st.lists(st.sampled_from(["sendrecv", "tool:x", "ice-lite"]),
                                                    max_size=2))]
    media_lines: list[MediaLine] = []
    for _ in range(draw(st.integers(1, 3))):
        pts = draw(st.lists(st.integers(0, 127), min_size=1, max_size=5))
        count = draw(st.sampled_from([None, None, 2]))
        kind = draw(st.sampled_from(["audio", "video"]))
        proto = draw(st.sampled_from(["RTP/AVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF"]))
        media = MediaLine.build(kind, draw(st.integers(0, 65535)), proto, pts, count)
        media_lines.append(media)
        lines.append(f"m={media.render()}")
        if not session_c or draw(st.booleans()):
            lines.append(f"c=IN {host}")
        for pt in pts:
            lines.append(f"a=rtpmap:{pt} {draw(st.sampled_from(['PCMU/8000', 'opus/48000/2', 'VP8/90000']))}")
        extra = draw(st.lists(st.sampled_from(["sendonly", "ptime:20", "rtcp:9"]), max_size=2))
        lines += [f"a={attribute}" for attribute in extra]
    return eol.join(lines) + eol, media_lines


@settings(max_examples=150, deadline=None)
@given(_valid_sdp())
def test_generated_valid_sdps_pass_validation_and_round_trip(generated: tuple[str, list[MediaLine]]) -> None:
    text, media_lines = generated
    sdp = parse(text)
    assert sdp.serialize() == text
    validate_for_rtpengine(sdp)
    assert rtpengine_rewrite_error(sdp) is None
    assert [media.media_line for media in sdp.media] == media_lines
    for media, expected in zip(sdp.media, media_lines, strict=True):
        assert media.media_line.payload_types() == [int(f) for f in expected.formats]
        assert set(media.rtpmaps()) == set(media.media_line.payload_types())
        assert sdp.connection_for(media) is not None
