"""The lossless SDP model: structure, line endings, byte-exact round trip, editing helpers."""

from __future__ import annotations

import pytest

from karl_core.sdp import (
    Attribute,
    Connection,
    Direction,
    MediaLine,
    MediaSection,
    Origin,
    SdpError,
    SdpLine,
    Session,
    SessionDescription,
    attribute_name,
    parse,
    parse_bytes,
    split_lines,
)

OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 198.51.100.1\r\n"
    "s=-\r\n"
    "c=IN IP4 198.51.100.1\r\n"
    "t=0 0\r\n"
    "a=tool:x\r\n"
    "m=audio 2000 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
    "m=video 2002 RTP/AVP 96\r\n"
    "c=IN IP4 198.51.100.2\r\n"
    "a=rtpmap:96 H264/90000\r\n"
    "a=x-unknown:  odd   spacing \r\n"
)


def test_structure_of_a_two_media_offer() -> None:
    sdp = parse(OFFER)
    assert len(sdp.sessions) == 1
    assert [line.kind for line in sdp.session.lines] == ["v", "o", "s", "c", "t", "a"]
    assert len(sdp.media) == 2
    audio, video = sdp.media
    assert audio.lines[0] == SdpLine("m", "audio 2000 RTP/AVP 0 8 101", "\r\n")
    assert audio.media_type == "audio"
    assert video.media_line.port == 2002
    assert sdp.tail == ""
    assert sdp.serialize() == OFFER


def test_every_line_keeps_its_own_ending() -> None:
    text = "v=0\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\nc=IN IP4 1.2.3.4\r\nt=0 0\nm=audio 2000 RTP/AVP 0"
    sdp = parse(text)
    assert [line.eol for line in sdp.lines()] == ["\n", "\r\n", "\n", "\r\n", "\n", ""]
    assert sdp.serialize() == text


def test_carriage_returns_other_than_the_last_stay_in_the_value() -> None:
    sdp = parse("v=0\r\na=x\r\r\nb=AS\rx\n")
    assert [line.value for line in sdp.lines()] == ["0", "x\r", "AS\rx"]
    assert [line.eol for line in sdp.lines()] == ["\r\n", "\r\n", "\n"]


def test_unknown_and_garbage_lines_are_kept_in_order() -> None:
    text = "v=0\r\nx=strange\r\nno equals sign\r\n =blank kind\r\nm=audio 1 RTP/AVP 0\r\nq=1\r\n"
    sdp = parse(text)
    kinds = [(line.kind, line.value) for line in sdp.lines()]
    assert kinds == [
        ("v", "0"),
        ("x", "strange"),
        ("", "no equals sign"),
        (" ", "blank kind"),
        ("m", "audio 1 RTP/AVP 0"),
        ("q", "1"),
    ]
    assert not sdp.session.lines[2].well_formed
    assert sdp.serialize() == text


@pytest.mark.parametrize(
    ("text", "values", "tail"),
    [
        ("", [], ""),
        ("v", [], "v"),
        ("v=0", ["0"], ""),
        ("v=0\r\nm=audio 1 RTP/AVP 0\r\n\r\nafter the blank line\r\n", ["0", "audio 1 RTP/AVP 0"],
         "\r\nafter the blank line\r\n"),
        ("v=0\n\nm=audio 1 RTP/AVP 0\n", ["0"], "\nm=audio 1 RTP/AVP 0\n"),
        ("v=0\r\n\rx\r\n", ["0"], "\rx\r\n"),
        ("v=0\r\nx", ["0"], "x"),
        ("v=0\r\n\n", ["0"], "\n"),
        ("v=0\r\na=", ["0", ""], ""),
    ],
)
def test_what_rtpengine_does_not_read_becomes_the_tail(text: str, values: list[str], tail: str) -> None:
    sdp = parse(text)
    assert [line.value for line in sdp.lines()] == values
    assert sdp.tail == tail
    assert sdp.tail_is_cut == (len(tail) > 1)
    assert sdp.serialize() == text


def test_split_lines_returns_lines_and_tail() -> None:
    lines, tail = split_lines("v=0\r\nb=x\nc")
    assert lines == [SdpLine("v", "0", "\r\n"), SdpLine("b", "x", "\n")]
    assert tail == "c"


def test_several_sessions_are_kept_apart() -> None:
    text = "v=0\r\nm=audio 1 RTP/AVP 0\r\nv=0\r\ns=second\r\nm=audio 2 RTP/AVP 8\r\nm=video 3 RTP/AVP 96\r\n"
    sdp = parse(text)
    assert len(sdp.sessions) == 2
    assert [len(s.media) for s in sdp.sessions] == [1, 2]
    assert [m.media_line.port for m in sdp.all_media()] == [1, 2, 3]
    second = sdp.sessions[1]
    assert sdp.session_of(sdp.all_media()[2]) is second
    assert second.session_name() == "second"
    pairs = [(s is second, m.media_line.port) for s, m in sdp.iter_media()]
    assert pairs == [(False, 1), (True, 2), (True, 3)]
    assert sdp.serialize() == text


def test_lines_before_v_form_a_session_without_v() -> None:
    sdp = parse("a=candidate:1 1 UDP 1 1.2.3.4 5 typ host\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n")
    assert [line.kind for line in sdp.session.lines] == ["a"]
    assert sdp.media[0].mid() == "0"
    sdp = parse("m=audio 9 RTP/AVP 0\r\n")
    assert sdp.session.lines == []
    assert len(sdp.media) == 1


def test_empty_sdp_has_no_session() -> None:
    sdp = parse("")
    assert sdp.sessions == []
    assert sdp.all_media() == []
    with pytest.raises(SdpError):
        _ = sdp.session
    with pytest.raises(SdpError):
        _ = sdp.media


def test_bytes_round_trip_including_invalid_utf8() -> None:
    data = b"v=0\r\ns=caf\xc3\xa9 \xff\xfe\r\nm=audio 1 RTP/AVP 0\r\n"
    sdp = parse_bytes(data)
    assert sdp.session.session_name() == "café \udcff\udcfe"
    assert sdp.to_bytes() == data


def test_to_bytes_rejects_text_that_cannot_be_encoded() -> None:
    sdp = parse("v=0\r\ns=\ud800\r\n")
    assert sdp.serialize() == "v=0\r\ns=\ud800\r\n"
    with pytest.raises(SdpError):
        sdp.to_bytes()


# --- lines and attributes --------------------------------------------------------------------


def test_sdp_line_text_and_from_text() -> None:
    line = SdpLine.from_text("a=rtpmap:0 PCMU/8000\r\n")
    assert line == SdpLine("a", "rtpmap:0 PCMU/8000", "\r\n")
    assert line.text == "a=rtpmap:0 PCMU/8000"
    assert line.serialize() == "a=rtpmap:0 PCMU/8000\r\n"
    assert SdpLine.from_text("b=AS:64\n").eol == "\n"
    assert SdpLine.from_text("k=x").eol == ""
    assert SdpLine.from_text("garbage") == SdpLine("", "garbage", "")
    assert SdpLine("", "garbage", "\n").serialize() == "garbage\n"
    with pytest.raises(SdpError):
        SdpLine.from_text("a=x\nb=y\n")
    assert line.with_value("rtpmap:8 PCMA/8000") == SdpLine("a", "rtpmap:8 PCMA/8000", "\r\n")


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ("rtpmap:0 PCMU/8000", "rtpmap", "0 PCMU/8000"),
        ("sendrecv", "sendrecv", None),
        ("x:", "x", ""),
        (":", "", ""),
        ("", "", None),
        ("fingerprint:sha-256 AB:CD", "fingerprint", "sha-256 AB:CD"),
        ("msid-semantic: WMS stream", "msid-semantic", " WMS stream"),
    ],
)
def test_attribute_view(text: str, name: str, value: str | None) -> None:
    attribute = Attribute.parse(text)
    assert (attribute.name, attribute.value) == (name, value)
    assert attribute.render() == text
    assert SdpLine("a", text).attribute == attribute


def test_attribute_helpers() -> None:
    assert SdpLine.attr("rtpmap", "0 PCMU/8000") == SdpLine("a", "rtpmap:0 PCMU/8000", "\r\n")
    assert SdpLine.attr("sendrecv", eol="\n") == SdpLine("a", "sendrecv", "\n")
    assert SdpLine("b", "AS:64").attribute is None
    assert attribute_name(SdpLine("a", "rtcp:9 IN IP4 0.0.0.0")) == "rtcp"
    assert attribute_name(SdpLine("c", "IN IP4 0.0.0.0")) is None


# --- finding and editing -------------------------------------------------------------------------


def test_find_and_get_attributes() -> None:
    sdp = parse(OFFER)
    audio = sdp.media[0]
    assert audio.find("a") == 1
    assert audio.find("a", 2) == 2
    assert audio.find("c") is None
    assert audio.find_all("a") == [1, 2, 3, 4]
    assert audio.first("m") == audio.lines[0]
    assert audio.find_attribute("fmtp") == 2
    assert audio.find_attribute("fmtp", 3) is None
    assert audio.attribute_indexes("rtpmap") == [1]
    assert audio.get_attribute("ptime") == Attribute("ptime", "20")
    assert audio.get_attribute("nothing") is None
    assert audio.get_attributes("sendrecv") == [Attribute("sendrecv", None)]
    assert audio.attribute_values("sendrecv") == []
    assert audio.attribute_values("ptime") == ["20"]
    assert audio.has_attribute("fmtp")
    assert not audio.has_attribute("fmt")
    assert audio.attribute_names() == {"rtpmap", "fmtp", "ptime", "sendrecv"}
    assert [a.name for a in audio.attributes()] == ["rtpmap", "fmtp", "ptime", "sendrecv"]
    assert sdp.session.get_attribute("tool") == Attribute("tool", "x")


def test_editing_keeps_untouched_lines_byte_exact() -> None:
    sdp = parse(OFFER)
    audio, video = sdp.media
    audio.set_media_line(audio.media_line.with_port(30000))
    assert audio.remove_attributes("sendrecv", "ptime") == 2
    index = audio.add_attribute("rtcp", "30001")
    assert audio.lines[index] == SdpLine("a", "rtcp:30001", "\r\n")
    audio.insert_attribute(1, "mid", "0")
    video.replace_line(1, video.lines[1].with_value("IN IP4 203.0.113.1"))
    removed = video.remove_line(2)
    assert removed.value == "rtpmap:96 H264/90000"
    video.append_line(SdpLine.attr("sendonly", eol="\n"))
    video.insert_line(1, SdpLine("b", "AS:512"))
    assert sdp.serialize() == (
        "v=0\r\n"
        "o=alice 2890844526 2890844526 IN IP4 198.51.100.1\r\n"
        "s=-\r\n"
        "c=IN IP4 198.51.100.1\r\n"
        "t=0 0\r\n"
        "a=tool:x\r\n"
        "m=audio 30000 RTP/AVP 0 8 101\r\n"
        "a=mid:0\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=rtcp:30001\r\n"
        "m=video 2002 RTP/AVP 96\r\n"
        "b=AS:512\r\n"
        "c=IN IP4 203.0.113.1\r\n"
        "a=x-unknown:  odd   spacing \r\n"
        "a=sendonly\n"
    )


def test_remove_where() -> None:
    sdp = parse(OFFER)
    audio = sdp.media[0]
    assert audio.remove_where(lambda line: line.kind == "a" and line.value.startswith("rtp")) == 1
    assert audio.remove_where(lambda line: False) == 0
    assert [line.value for line in audio.lines[1:]] == ["fmtp:101 0-16", "ptime:20", "sendrecv"]


def test_connection_for_falls_back_to_the_session() -> None:
    sdp = parse(OFFER)
    audio, video = sdp.media
    assert audio.connection() is None
    assert sdp.connection_for(audio) == Connection("IN", "IP4", "198.51.100.1")
    assert sdp.connection_for(video) == Connection("IN", "IP4", "198.51.100.2")
    no_c = parse("v=0\r\nm=audio 1 RTP/AVP 0\r\n")
    assert no_c.connection_for(no_c.media[0]) is None


def test_set_connection_and_origin_keep_line_endings() -> None:
    sdp = parse("v=0\no=- 1 2 IN IP4 1.2.3.4 x\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\n")
    connection = sdp.session.connection()
    assert connection is not None
    sdp.session.set_connection(connection.with_address("IP6", "::1"))
    origin = sdp.session.origin()
    assert origin is not None
    sdp.session.set_origin(origin.with_address("IP4", "203.0.113.9"))
    assert sdp.serialize() == "v=0\no=- 1 2 IN IP4 203.0.113.9 x\nc=IN IP6 ::1\nm=audio 1 RTP/AVP 0\n"
    with pytest.raises(SdpError):
        sdp.media[0].set_connection(Connection())
    with pytest.raises(SdpError):
        Session([]).set_origin(Origin("-", "1", "1"))


def test_session_of_unknown_media() -> None:
    with pytest.raises(SdpError):
        parse(OFFER).session_of(MediaSection([SdpLine("m", "audio 1 RTP/AVP 0")]))


def test_media_section_without_m_line() -> None:
    with pytest.raises(SdpError):
        _ = MediaSection([]).media_line
    with pytest.raises(SdpError):
        _ = MediaSection([SdpLine("a", "x")]).media_line


def test_new_media_section_and_added_session() -> None:
    sdp = SessionDescription([Session([SdpLine("v", "0"), SdpLine("s", "-")])])
    media = MediaSection.new(MediaLine.build("audio", 4000, "RTP/AVP", [0, 8]))
    media.add_attribute("sendrecv")
    sdp.media.append(media)
    assert sdp.serialize() == "v=0\r\ns=-\r\nm=audio 4000 RTP/AVP 0 8\r\na=sendrecv\r\n"


def test_copy_is_independent() -> None:
    sdp = parse(OFFER)
    clone = sdp.copy()
    clone.media[0].remove_attributes("rtpmap")
    clone.session.lines.pop()
    assert sdp.serialize() == OFFER
    assert clone.serialize() != OFFER
    assert clone == parse(clone.serialize())


def test_direction_helpers() -> None:
    sdp = parse(
        "v=0\r\na=recvonly\r\nm=audio 1 RTP/AVP 0\r\na=sendonly\r\nm=audio 2 RTP/AVP 0\r\n"
        "a=SendOnly\r\nm=audio 3 RTP/AVP 0\r\na=inactive\r\na=recvonly\r\n"
    )
    first, second, third = sdp.media
    assert first.direction() is Direction.SENDONLY
    assert second.direction() is None  # names are case-sensitive
    assert third.direction() is Direction.INACTIVE
    # rtpengine looks at media and session together: recvonly, then sendonly, then inactive.
    assert sdp.direction_for(first) is Direction.RECVONLY
    assert sdp.direction_for(third) is Direction.RECVONLY
    assert third.remove_directions() == 2
    assert sdp.direction_for(third) is Direction.RECVONLY  # still the session's
    sdp.session.remove_directions()
    assert sdp.direction_for(third) is Direction.SENDRECV
    assert sdp.direction_for(first) is Direction.SENDONLY
