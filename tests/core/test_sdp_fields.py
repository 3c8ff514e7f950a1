"""Typed views of SDP lines: o=, c=, m=, codec attributes, a=rtcp, candidates, DTLS, payload types.

The number/token rules asserted here were probed against rtpengine 10.5 (see the docstrings in
karl_core.sdp); the side-by-side corpus in test_sdp_rtpengine_rules.py checks the parse-level ones
against the daemon itself.
"""

from __future__ import annotations

import ipaddress

import pytest

from karl_core.sdp import (
    BAD_RTCP_ADDRESS,
    BAD_RTCP_PORT,
    RFC3551_PAYLOAD_TYPES,
    RTPENGINE_PAYLOAD_TYPES,
    Candidate,
    Connection,
    Direction,
    Fingerprint,
    Fmtp,
    Group,
    MediaLine,
    Origin,
    RtcpAttribute,
    RtcpFb,
    RtpMap,
    SdpError,
    is_rtp_protocol,
    parse,
    parse_address,
    parse_any_address,
    parse_network_address,
    rtpengine_direction,
    rtpengine_rtpmap_text,
    static_payload_type,
)

# --- o= ----------------------------------------------------------------------------------------


def test_origin_parse_and_render() -> None:
    origin = Origin.parse("alice 2890844526 2890844527 IN IP4 198.51.100.1")
    assert origin == Origin("alice", "2890844526", "2890844527", "IN", "IP4", "198.51.100.1", None)
    assert origin.version_number == 2890844527
    assert origin.ip() == ipaddress.ip_address("198.51.100.1")
    assert origin.render() == "alice 2890844526 2890844527 IN IP4 198.51.100.1"
    replaced = origin.with_address("IP6", "2001:db8::1")
    assert replaced.render() == "alice 2890844526 2890844527 IN IP6 2001:db8::1"


@pytest.mark.parametrize(
    "value",
    ["- 1 1 IN IP4 1.2.3.4 extra words", "-  1 1 IN IP4 1.2.3.4", "- 1 1 IN IP4 1.2.3.4 ", "- 1 1 XX YY zz"],
)
def test_origin_renders_odd_spacing_exactly(value: str) -> None:
    assert Origin.parse(value).render() == value


def test_origin_tokens_follow_rtpengine() -> None:
    # Two spaces make an empty token; rtpengine then reads the address from later tokens.
    origin = Origin.parse("-  1 1 IN IP4 1.2.3.4")
    assert (origin.session_id, origin.nettype, origin.address, origin.extra) == ("", "1", "IP4", "1.2.3.4")
    assert origin.ip() is None
    assert Origin.parse("- x 0012x IN IP4 host").version_number == 12
    assert Origin.parse("- x abc IN IP4 host").version_number == 0


@pytest.mark.parametrize("value", ["- 1 1 IN IP4", "- 1 1 IN IP4 ", "", "-"])
def test_origin_needs_six_tokens(value: str) -> None:
    with pytest.raises(SdpError):
        Origin.parse(value)


# --- c= ----------------------------------------------------------------------------------------


def test_connection_parse_and_render() -> None:
    connection = Connection.parse("IN IP4 224.2.1.1/127/3")
    assert connection == Connection("IN", "IP4", "224.2.1.1", "/127/3", None)
    assert connection.render() == "IN IP4 224.2.1.1/127/3"
    assert connection.ip() is None  # rtpengine 10.5 cannot parse a TTL suffix
    assert Connection.parse("IN IP4 1.2.3.4 extra").extra == "extra"
    assert Connection.parse("IN IP4 1.2.3.4 ").extra == ""
    assert Connection.parse("IN IP6 [2001:db8::1]").ip() == ipaddress.ip_address("2001:db8::1")
    moved = Connection.parse("IN IP4 1.2.3.4 extra").with_address("IP4", "5.6.7.8")
    assert moved.render() == "IN IP4 5.6.7.8 extra"
    assert Connection().render() == "IN IP4 0.0.0.0"


@pytest.mark.parametrize(
    "value", ["IN IP4 1.2.3.4 extra", "IN  IP4 1.2.3.4", "IN IP4 1.2.3.4 ", "IN IP4 a/1"]
)
def test_connection_renders_odd_spacing_exactly(value: str) -> None:
    assert Connection.parse(value).render() == value


@pytest.mark.parametrize("value", ["IN IP4", "IN IP4 ", "", "IN"])
def test_connection_needs_three_tokens(value: str) -> None:
    with pytest.raises(SdpError):
        Connection.parse(value)


@pytest.mark.parametrize(
    ("value", "unspecified"),
    [("IN IP4 0.0.0.0", True), ("IN IP6 ::", True), ("IN IP4 1.2.3.4", False), ("IN IP4 bogus", False)],
)
def test_connection_unspecified(value: str, unspecified: bool) -> None:
    assert Connection.parse(value).is_unspecified is unspecified


# --- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addrtype", "address", "expected"),
    [
        ("IP4", "192.0.2.1", "192.0.2.1"),
        ("IP4", "192.0.2.1\x00junk", "192.0.2.1"),
        ("IP4", "01.2.3.4", None),
        ("IP4", "[1.2.3.4]", None),
        ("IP4", "example.com", None),
        ("IP4", "1.2.3.4\u00e9", None),
        ("IP6", "2001:db8::1", "2001:db8::1"),
        ("IP6", "[2001:db8::1]", "2001:db8::1"),
        ("IP6", "[::1]:5060", "::1"),
        ("IP6", "[::1", None),
        ("IP6", "fe80::1%eth0", None),
        ("IP6", "1.2.3.4", None),
        ("ip4", "1.2.3.4", None),
        ("IP5", "1.2.3.4", None),
    ],
)
def test_parse_address(addrtype: str, address: str, expected: str | None) -> None:
    got = parse_address(addrtype, address)
    assert got == (None if expected is None else ipaddress.ip_address(expected))


def test_parse_network_address_and_any_address() -> None:
    assert parse_network_address("in", "IP4", "1.2.3.4") == ipaddress.ip_address("1.2.3.4")
    assert parse_network_address("In", "IP4", "1.2.3.4") is None
    assert parse_any_address("::1") == ipaddress.ip_address("::1")
    assert parse_any_address("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_any_address("host.local") is None


# --- m= ----------------------------------------------------------------------------------------


def test_media_line_parse_and_render() -> None:
    line = MediaLine.parse("audio 2000 RTP/AVP 0 8 101")
    assert (line.media, line.port, line.port_count, line.proto) == ("audio", 2000, None, "RTP/AVP")
    assert line.formats == ("0", "8", "101")
    assert line.payload_types() == [0, 8, 101]
    assert line.is_rtp
    assert line.stream_count == 1
    assert line.render() == "audio 2000 RTP/AVP 0 8 101"
    assert line == MediaLine("audio", 2000, None, "RTP/AVP", ("0", "8", "101"))
    assert line.port_token is None
    assert MediaLine.parse("audio 00 RTP/AVP 0").port_token == "00"
    assert MediaLine.parse("audio 2000/2 RTP/AVP 0").port_token is None


@pytest.mark.parametrize(
    ("value", "port", "count", "proto", "formats"),
    [
        ("audio 2000/2 RTP/AVP 0", 2000, 2, "RTP/AVP", ("0",)),
        ("audio 0 RTP/AVP 0", 0, None, "RTP/AVP", ("0",)),
        ("audio 12abc RTP/AVP 0", 12, None, "RTP/AVP", ("0",)),
        ("audio +2000 RTP/AVP 0", 2000, None, "RTP/AVP", ("0",)),
        ("audio 2000/2x RTP/AVP 0", 2000, 2, "RTP/AVP", ("0",)),
        ("audio 2000/4294967298 RTP/AVP 0", 2000, 2, "RTP/AVP", ("0",)),
        # two spaces: empty port token, number read from the next token, which becomes the protocol
        ("audio  2000 RTP/AVP 0", 2000, None, "2000", ("RTP/AVP", "0")),
        ("message 2855 TCP/MSRP *", 2855, None, "TCP/MSRP", ("*",)),
        ("image 5000 udptl", 5000, None, "udptl", ()),
        ("audio 2000 RTP/AVP ", 2000, None, "RTP/AVP", ("",)),
        ("audio 2000 RTP/AVP 0  8 ", 2000, None, "RTP/AVP", ("0", "", "8", "")),
    ],
)
def test_media_line_tokens_follow_rtpengine(
    value: str, port: int, count: int | None, proto: str, formats: tuple[str, ...]
) -> None:
    line = MediaLine.parse(value)
    assert (line.port, line.port_count, line.proto, line.formats) == (port, count, proto, formats)
    assert line.render() == value


@pytest.mark.parametrize(
    "value",
    [
        "audio 2000",
        "",
        "audio abc RTP/AVP 0",
        "audio 65536 RTP/AVP 0",
        "audio -1 RTP/AVP 0",
        "audio 99999999999999999999 RTP/AVP 0",
        "audio 2000/0 RTP/AVP 0",
        "audio 2000/11 RTP/AVP 0",
        "audio 2000/x RTP/AVP 0",
        "audio 2000/ RTP/AVP 0",
        "audio\t2000 RTP/AVP 0",
    ],
)
def test_media_line_errors(value: str) -> None:
    with pytest.raises(SdpError):
        MediaLine.parse(value)


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        ("0 8 101", [0, 8, 101]),
        ("8x +8 00127 -0", [8, 8, 127, 0]),
        ("4294967296 -4294967295", [0, 1]),
        ("0  8", [0, 8, 8]),  # the empty token reads the next number again
        ("0 \t8", [0, 8]),
        ("0 ", [0]),
        ("", []),
    ],
)
def test_payload_types_as_rtpengine_reads_them(formats: str, expected: list[int]) -> None:
    assert MediaLine.parse(f"audio 2000 RTP/AVP {formats}").payload_types() == expected


@pytest.mark.parametrize("formats", ["128", "-1", "abc", "*", "18446744073709551616", "0 x"])
def test_invalid_payload_types(formats: str) -> None:
    with pytest.raises(SdpError):
        MediaLine.parse(f"audio 2000 RTP/AVP {formats}").payload_types()


def test_media_line_edits() -> None:
    line = MediaLine.parse("audio 2000/1 RTP/AVP 0 8")
    assert line.with_port(30000).render() == "audio 30000 RTP/AVP 0 8"
    assert line.with_port(30000, 2).render() == "audio 30000/2 RTP/AVP 0 8"
    assert line.with_proto("RTP/SAVP").render() == "audio 2000/1 RTP/SAVP 0 8"
    assert line.with_formats([8, "101"]).render() == "audio 2000/1 RTP/AVP 8 101"
    assert line.with_formats([]).render() == "audio 2000/1 RTP/AVP"
    # a port 0 line keeps its port text as received when other parts change
    assert MediaLine.parse("audio 00 RTP/AVP 0").with_formats([8]).render() == "audio 00 RTP/AVP 8"
    built = MediaLine.build("video", 5000, "RTP/AVPF", [96, 97], port_count=2)
    assert built.render() == "video 5000/2 RTP/AVPF 96 97"
    assert MediaLine("audio", 1, None, "RTP/AVP").render() == "audio 1 RTP/AVP"
    assert MediaLine.parse("audio 2000 RTP/AVP 0 ").format_list() == ["0"]
    assert MediaLine.parse("image 2000 udptl").format_list() == []


@pytest.mark.parametrize(
    ("proto", "rtp"),
    [
        ("RTP/AVP", True),
        ("rtp/avp", True),
        ("RTP/SAVP", True),
        ("RTP/AVPF", True),
        ("RTP/SAVPF", True),
        ("UDP/TLS/RTP/SAVP", True),
        ("UDP/TLS/RTP/SAVPF", True),
        ("udptl", False),
        ("TCP/MSRP", False),
        ("RTP/AVPX", False),
        ("TCP/RTP/AVP", False),
        ("RTP/\u017fAVP", False),  # "long s" upper-cases to S in Python, not in C
    ],
)
def test_rtp_protocols(proto: str, rtp: bool) -> None:
    assert is_rtp_protocol(proto) is rtp


# --- a=rtpmap / a=fmtp / a=rtcp-fb -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected", "printed"),
    [
        ("0 PCMU/8000", RtpMap(0, "PCMU", 8000), "PCMU/8000"),
        ("96 opus/48000/2", RtpMap(96, "opus", 48000, 2), "opus/48000/2"),
        ("97 speex/16000/1", RtpMap(97, "speex", 16000, 1), "speex/16000"),
        ("98 PCMU/8000 extra", RtpMap(98, "PCMU", 8000), "PCMU/8000"),
        ("99 L16/+8000", RtpMap(99, "L16", 8000), "L16/8000"),
        ("100 telephone-event/8000/", RtpMap(100, "telephone-event", 8000), "telephone-event/8000"),
        ("102 x/8000/abc", RtpMap(102, "x", 8000), "x/8000"),
        ("103 x/8000/0", RtpMap(103, "x", 8000), "x/8000"),
        ("96 x/8000/-1", RtpMap(96, "x", 8000, -1), "x/8000"),
        ("97 y/8000/02", RtpMap(97, "y", 8000, 2), "y/8000/2"),
        ("98 z/08000", RtpMap(98, "z", 8000), "z/8000"),
        ("99 w/4294967297", RtpMap(99, "w", 1), "w/1"),
        ("4294967296 foo/1234", RtpMap(0, "foo", 1234), "foo/1234"),
        ("8abc bar/4321", RtpMap(8, "bar", 4321), "bar/4321"),
        ("0 pcmu/8000", RtpMap(0, "pcmu", 8000), "pcmu/8000"),
    ],
)
def test_rtpmap(value: str, expected: RtpMap, printed: str) -> None:
    rtpmap = RtpMap.parse(value)
    assert rtpmap == expected
    assert rtpmap.encoding_text() == printed


@pytest.mark.parametrize("value", ["x PCMU/8000", "0 PCMU", "0", "", "104  y/8000", "105 z/80x", "0 PCMU/"])
def test_rtpmap_errors(value: str) -> None:
    with pytest.raises(SdpError):
        RtpMap.parse(value)


def test_rtpmap_render() -> None:
    assert RtpMap(96, "opus", 48000, 2).render() == "96 opus/48000/2"
    assert RtpMap(0, "PCMU", 8000).render() == "0 PCMU/8000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("101 0-16", Fmtp(101, "0-16")),
        ("0abc x=1", Fmtp(0, "x=1")),
        ("8  y=2", Fmtp(8, " y=2")),
        ("9\tz=3", Fmtp(9, "")),
        ("102", Fmtp(102, "")),
        ("103 ", Fmtp(103, "")),
    ],
)
def test_fmtp(value: str, expected: Fmtp) -> None:
    assert Fmtp.parse(value) == expected


@pytest.mark.parametrize("value", ["abc q", "", "-1 x"])
def test_fmtp_errors(value: str) -> None:
    with pytest.raises(SdpError):
        Fmtp.parse(value)


def test_rtcp_fb() -> None:
    assert RtcpFb.parse("96 nack pli") == RtcpFb(96, "nack pli")
    assert RtcpFb.parse("* ccm fir") == RtcpFb(None, "ccm fir")
    assert RtcpFb.parse("97") == RtcpFb(97, "")
    assert RtcpFb(None, "trr-int 1000").render() == "* trr-int 1000"
    assert Fmtp(101, "0-16").render() == "101 0-16"
    for bad in ("x nack", ""):
        with pytest.raises(SdpError):
            RtcpFb.parse(bad)


def test_media_section_codec_maps_follow_rtpengine() -> None:
    sdp = parse(
        "v=0\r\nm=audio 1 RTP/AVP 96 0\r\n"
        "a=rtpmap:96 a/8000\r\na=rtpmap:96 b/8000\r\na=rtpmap:0 PCMU\r\n"
        "a=fmtp:96 x=1\r\na=fmtp:96 x=2\r\na=fmtp:abc q\r\n"
        "a=rtcp-fb:96 nack\r\na=rtcp-fb:* ccm fir\r\na=rtcp-fb:x nack\r\n"
        "a=ptime:20x\r\na=ptime:30\r\na=mid\r\n"
    )
    media = sdp.media[0]
    assert media.rtpmaps() == {96: RtpMap(96, "b", 8000)}  # last wins, broken ones skipped
    assert media.fmtps() == {96: Fmtp(96, "x=2")}
    assert media.rtcp_fbs() == [RtcpFb(96, "nack"), RtcpFb(None, "ccm fir")]
    assert media.ptime() == 20
    assert media.mid() is None
    assert parse("v=0\r\nm=audio 1 RTP/AVP 0\r\na=ptime:abc\r\n").media[0].ptime() is None


# --- a=rtcp ------------------------------------------------------------------------------------------


def test_rtcp_attribute() -> None:
    assert RtcpAttribute.parse("2001") == RtcpAttribute(2001)
    assert RtcpAttribute.parse("2001x") == RtcpAttribute(2001)
    assert RtcpAttribute.parse("2001 ") == RtcpAttribute(2001)
    full = RtcpAttribute.parse("9 IN IP4 0.0.0.0")
    assert full == RtcpAttribute(9, "IN", "IP4", "0.0.0.0")
    assert full.render() == "9 IN IP4 0.0.0.0"
    assert RtcpAttribute(2001).render() == "2001"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", BAD_RTCP_PORT),
        ("0", BAD_RTCP_PORT),
        ("70000", BAD_RTCP_PORT),
        ("", BAD_RTCP_PORT),
        ("2001 IN IP4 bogus", BAD_RTCP_ADDRESS),
        ("2001 IN IP4", BAD_RTCP_ADDRESS),
    ],
)
def test_rtcp_attribute_errors(value: str, reason: str) -> None:
    with pytest.raises(SdpError) as info:
        RtcpAttribute.parse(value)
    assert info.value.reason == reason


def test_media_rtcp_is_the_first_usable_one() -> None:
    sdp = parse("v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtcp:abc\r\na=rtcp:2001\r\na=rtcp:3001\r\n")
    assert sdp.media[0].rtcp() == RtcpAttribute(2001)
    assert parse("v=0\r\nm=audio 1 RTP/AVP 0\r\n").media[0].rtcp() is None


# --- a=candidate ---------------------------------------------------------------------------------------


def test_candidate_host_and_srflx() -> None:
    host = Candidate.parse("1 1 UDP 2130706431 192.168.1.23 7078 typ host generation 0")
    assert host == Candidate(
        "1", 1, "UDP", 2130706431, "192.168.1.23", 7078, "host", None, None, "generation 0"
    )
    assert host.usable
    srflx = Candidate.parse("2 1 udp 1694498815 203.0.113.77 41532 typ srflx raddr 192.168.1.23 rport 7078")
    assert (srflx.type, srflx.related_address, srflx.related_port) == ("srflx", "192.168.1.23", 7078)
    assert srflx.render() == "2 1 udp 1694498815 203.0.113.77 41532 typ srflx raddr 192.168.1.23 rport 7078"
    assert host.render() == "1 1 UDP 2130706431 192.168.1.23 7078 typ host generation 0"


@pytest.mark.parametrize(
    "value",
    [
        "2 1 FOO 2130706431 1.2.3.4 2000 typ host",  # unknown transport
        "3 1 tcp x 1.2.3.4 2000 typ host",  # lower-case tcp is unknown too; checks stop there
        "4 1 Udp x 1.2.3.4 2000 typ host",
        "3 1 UDP 2130706431 bogus.local 2000 typ host",  # unparseable address
        "6 1 UDP 5 bogus x typ host",
        "4 1 UDP 2130706431 1.2.3.4 2000 typ weird",  # unknown type
        "1 1 UDP 5 1.2.3.4 2000 typ SRFLX",
        "13 1 UDP 5 1.2.3.4 2000 typ srflx raddr bogus rport 9",  # unparseable related address
        "12 1 UDP 5 1.2.3.4 2000 typ srflx raddr bogus rport x",
    ],
)
def test_candidates_rtpengine_recognises_but_cannot_use(value: str) -> None:
    assert not Candidate.parse(value).usable


@pytest.mark.parametrize(
    "value",
    [
        "bad",
        "9 1 UDP 2130706431 1.2.3.4 2000",
        "8 x UDP 2130706431 1.2.3.4 2000 typ host",
        "11 1 UDP abc 1.2.3.4 2000 typ host",
        "4 1 udp x 1.2.3.4 2000 typ host",
        "12 1 UDP 5 1.2.3.4 x typ host",
        "5 1 UDP 2130706431 1.2.3.4 2000 typx host",
        "7 1 UDP 5 1.2.3.4 2000 TYP host",
        "6 1 UDP 2130706431 1.2.3.4 2000 typ srflx",
        "19 1 UDP 5 1.2.3.4 2000 typ relay raddr 5.6.7.8",
        "9 1 UDP 5 1.2.3.4 2000 typ srflx raddr 1.2.3.4 rport",
        "14 1 UDP 5 1.2.3.4 2000 typ srflx raddr 5.6.7.8 rport x",
        "17 1 UDP 5 1.2.3.4 2000 typ srflx raddr 5.6.7.8 xport 9",
    ],
)
def test_candidates_rtpengine_keeps_as_unknown_lines(value: str) -> None:
    with pytest.raises(SdpError):
        Candidate.parse(value)


def test_media_candidates_skip_unrecognised_lines() -> None:
    sdp = parse(
        "v=0\r\nm=audio 1 RTP/AVP 0\r\na=candidate:bad\r\n"
        "a=candidate:1 1 UDP 1 1.2.3.4 5 typ host\r\na=candidate:2 1 TCP 1 1.2.3.4 5 typ host\r\n"
    )
    assert [(c.foundation, c.usable) for c in sdp.media[0].candidates()] == [("1", True), ("2", False)]


# --- DTLS, groups, directions ----------------------------------------------------------------------

SHA1 = "4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB"


@pytest.mark.parametrize(
    "value",
    [f"sha-1 {SHA1}", f"SHA-1 {SHA1}", f"sha-1 {SHA1.lower()}", f"sha-1 {SHA1} extra", f"sha-1 {SHA1}xyz"],
)
def test_fingerprint(value: str) -> None:
    fingerprint = Fingerprint.parse(value)
    assert fingerprint.digest == bytes.fromhex(SHA1.replace(":", ""))


@pytest.mark.parametrize(
    "value",
    [
        f"sha-1 {SHA1[:-3]}",
        f"sha-1 {SHA1}:CD",
        f"sha-1 {SHA1}:",
        "sha-224 4A",
        "md5 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B",
        "sha-1 zz",
        "sha-1",
        f"sha-1 {SHA1.replace('4A', '4G')}",
    ],
)
def test_fingerprint_errors(value: str) -> None:
    with pytest.raises(SdpError):
        Fingerprint.parse(value)


def test_fingerprint_render() -> None:
    assert Fingerprint("sha-256", "AA").render() == "sha-256 AA"


def test_group() -> None:
    group = Group.parse("BUNDLE 0 1")
    assert group == Group("BUNDLE", ("0", "1"))
    assert group.render() == "BUNDLE 0 1"
    assert Group.parse("LS") == Group("LS", ())
    assert Group.is_rtpengine_bundle("BUNDLE 0")
    assert not Group.is_rtpengine_bundle("BUNDLE")
    assert not Group.is_rtpengine_bundle("LS 0 1")


def test_direction() -> None:
    assert Direction.from_name("sendonly") is Direction.SENDONLY
    assert Direction.from_name("SendOnly") is None
    assert Direction.SENDONLY.reversed() is Direction.RECVONLY
    assert Direction.INACTIVE.reversed() is Direction.INACTIVE
    assert Direction.SENDRECV.sends and Direction.SENDRECV.receives
    assert not Direction.RECVONLY.sends and Direction.RECVONLY.receives
    assert rtpengine_direction({"sendonly"}, {"recvonly"}) is Direction.RECVONLY
    assert rtpengine_direction({"inactive", "sendonly"}, set()) is Direction.SENDONLY
    assert rtpengine_direction({"sendrecv", "inactive"}, set()) is Direction.INACTIVE
    assert rtpengine_direction(set(), set()) is Direction.SENDRECV


# --- static payload types ------------------------------------------------------------------------


def test_static_payload_types_as_rtpengine_names_them() -> None:
    named = sorted(RTPENGINE_PAYLOAD_TYPES)
    assert named == [0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 25, 26, 28, 31, 32, 33, 34]
    assert rtpengine_rtpmap_text(0) == "PCMU/8000"
    assert rtpengine_rtpmap_text(9) == "G722/8000"
    assert rtpengine_rtpmap_text(10) == "L16/44100"
    assert rtpengine_rtpmap_text(11) == "L16/44100/2"
    assert rtpengine_rtpmap_text(28) == "nv/90000"
    for unknown in (1, 2, 19, 24, 27, 29, 30, 35, 96, 127):
        assert rtpengine_rtpmap_text(unknown) == "/0"
    static = static_payload_type(18)
    assert static is not None
    assert (static.encoding, static.clock_rate, static.channels) == ("G729", 8000, 1)
    assert static_payload_type(96) is None


def test_rfc3551_table_differs_only_in_the_l16_channels() -> None:
    assert sorted(RFC3551_PAYLOAD_TYPES) == sorted(RTPENGINE_PAYLOAD_TYPES)
    differ = [pt for pt in RFC3551_PAYLOAD_TYPES if RFC3551_PAYLOAD_TYPES[pt] != RTPENGINE_PAYLOAD_TYPES[pt]]
    assert differ == [10, 11]
    assert RFC3551_PAYLOAD_TYPES[10].encoding_text() == "L16/44100/2"
    assert RFC3551_PAYLOAD_TYPES[11].encoding_text() == "L16/44100"
