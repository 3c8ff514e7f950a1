"""Real-world SDP bodies (tests/core/sdp_samples): byte-exact round trip and typed contents.

The files are stored byte-exact (see the .gitattributes there); their names say what produced them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from karl_core.sdp import (
    Direction,
    Fingerprint,
    Group,
    RtcpAttribute,
    RtcpFb,
    SessionDescription,
    attribute_name,
    parse,
    parse_bytes,
    rtpengine_error,
    rtpengine_rewrite_error,
    rtpengine_rtpmap_text,
)

SAMPLES = Path(__file__).parent / "sdp_samples"
NAMES = sorted(path.name for path in SAMPLES.glob("*.sdp"))


def load(name: str) -> SessionDescription:
    return parse_bytes((SAMPLES / name).read_bytes())


def test_there_are_enough_samples() -> None:
    assert len(NAMES) >= 12


@pytest.mark.parametrize("name", NAMES)
def test_sample_round_trips_byte_exact(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    sdp = parse_bytes(data)
    assert sdp.to_bytes() == data
    assert parse(data.decode()).serialize() == data.decode()
    assert sdp.tail == ""
    # rebuilding every line from its parts changes nothing either
    clone = sdp.copy()
    for session in clone.sessions:
        for block in (session, *session.media):
            for index, line in enumerate(block.lines):
                block.replace_line(index, line.with_value(str(line.value)))
    assert clone.to_bytes() == data


@pytest.mark.parametrize("name", NAMES)
def test_sample_line_endings_are_as_named(name: str) -> None:
    text = (SAMPLES / name).read_bytes().decode()
    crlf = text.count("\r\n")
    lf_only = text.count("\n") - crlf
    if name == "mixed_endings.sdp":
        assert crlf and lf_only and not text.endswith("\n")
    elif name.endswith("_lf.sdp"):
        assert "\r" not in text and lf_only
    else:
        assert crlf and not lf_only and text.endswith("\r\n")
    assert [line.eol for line in parse(text).lines()].count("\n") == lf_only


@pytest.mark.parametrize("name", NAMES)
def test_rtpengine_accepts_every_sample(name: str) -> None:
    sdp = load(name)
    assert rtpengine_error(sdp) is None
    assert rtpengine_rewrite_error(sdp) is None
    for media in sdp.all_media():
        assert sdp.connection_for(media) is not None


def test_chrome_webrtc_offer() -> None:
    for name in ("chrome_webrtc.sdp", "chrome_webrtc_lf.sdp"):
        sdp = load(name)
        assert Group.parse(sdp.session.attribute_values("group")[0]) == Group("BUNDLE", ("0", "1"))
        audio, video = sdp.media
        assert [m.media_line.proto for m in sdp.media] == ["UDP/TLS/RTP/SAVPF"] * 2
        assert audio.media_line.payload_types() == [111, 63, 9, 0, 8, 13, 110, 126]
        assert audio.rtpmaps()[111].encoding_text() == "opus/48000/2"
        assert audio.fmtps()[63].params == "111/111"
        assert audio.rtcp() == RtcpAttribute(9, "IN", "IP4", "0.0.0.0")
        candidates = audio.candidates()
        assert [(c.transport, c.type, c.usable) for c in candidates] == [
            ("udp", "host", True), ("udp", "host", True), ("udp", "srflx", True), ("tcp", "host", False)]
        assert candidates[2].related_address == "10.0.0.23"
        assert candidates[2].extensions == "generation 0 network-id 2 network-cost 10"
        fingerprint = Fingerprint.parse(audio.attribute_values("fingerprint")[0])
        assert len(fingerprint.digest) == 32
        assert audio.mid() == "0" and video.mid() == "1"
        assert audio.has_attribute("rtcp-mux")
        assert len(audio.attribute_values("extmap")) == 4
        assert len(audio.attribute_values("ssrc")) == 2
        assert RtcpFb(96, "nack pli") in video.rtcp_fbs()
        assert video.fmtps()[97].params == "apt=96"
        assert sdp.direction_for(video) is Direction.SENDRECV


def test_linphone_offer() -> None:
    sdp = load("linphone.sdp")
    assert sdp.session.attribute_values("ice-ufrag") == ["0f6d7da2"]
    audio, video = sdp.media
    assert audio.rtcp() == RtcpAttribute(7079)
    assert RtcpFb(None, "trr-int 1000") in audio.rtcp_fbs()
    assert 18 not in audio.rtpmaps() and audio.fmtps()[18].params == "annexb=yes"
    assert rtpengine_rtpmap_text(18) == "G729/8000"
    assert [c.component for c in video.candidates()] == [1, 2]
    ipv6 = load("linphone_ipv6_lf.sdp")
    connection = ipv6.connection_for(ipv6.media[0])
    assert connection is not None and str(connection.ip()) == "2001:db8:85a3::8a2e:370:7334"


def test_special_media_samples() -> None:
    t38 = load("asterisk_t38_reinvite.sdp").media[0]
    assert (t38.media_type, t38.media_line.proto, t38.media_line.formats) == ("image", "udptl", ("t38",))
    assert not t38.media_line.is_rtp
    assert t38.get_attribute("T38FaxUdpEC") is not None
    msrp = load("msrp_and_audio.sdp")
    assert [m.media_line.is_rtp for m in msrp.media] == [True, False]
    assert msrp.media[1].media_line.formats == ("*",)
    hold = load("hold_zero_address.sdp")
    connection = hold.session.connection()
    assert connection is not None and connection.is_unspecified
    assert hold.direction_for(hold.media[0]) is Direction.SENDONLY
    srtp = load("yealink_srtp.sdp").media[0]
    assert len(srtp.attribute_values("crypto")) == 2 and srtp.ptime() == 20
    polycom = load("polycom_vvx.sdp")
    assert polycom.media[0].direction() is None
    assert polycom.direction_for(polycom.media[0]) is Direction.SENDRECV  # from the session level
    looped = load("kamailio_rtpengine_output.sdp")
    assert looped.session.attribute_values("rtpengine") == ["3f2a9c1b7d4e"]


# --- the model is enough to reproduce a plain rtpengine rewrite byte for byte ---------------------

PLAIN_SAMPLES = [
    "sipp_uac.sdp", "sipp_uas.sdp", "asterisk_chansip.sdp", "asterisk_pjsip.sdp", "freeswitch.sdp",
    "freeswitch_lf.sdp", "polycom_vvx.sdp", "hold_zero_address.sdp",
]
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def rewrite_like_rtpengine(sdp: SessionDescription, media_ip: str, ports: list[int]) -> SessionDescription:
    """rtpengine 10.5's rewrite of a plain RTP/AVP offer without flags (ng-protocol.md section 5),
    written with the model's helpers only: a sketch of what the media node's rewriter does."""
    out = sdp.copy()
    directions = [sdp.direction_for(media) for media in sdp.all_media()]
    for session in out.sessions:
        connection = session.connection()
        if connection is not None and not connection.is_unspecified and any(
            media.connection() is None for media in session.media
        ):
            session.set_connection(connection.with_address("IP4", media_ip))
        session.remove_directions()
    for media, port, direction in zip(out.all_media(), ports, directions, strict=True):
        media_line = media.media_line
        media.set_media_line(media_line.with_port(port))
        connection = media.connection()
        if connection is not None and not connection.is_unspecified:
            media.set_connection(connection.with_address("IP4", media_ip))
        rtpmaps, fmtps, feedback, ptime = media.rtpmaps(), media.fmtps(), media.rtcp_fbs(), media.ptime()
        media.remove_attributes("rtpmap", "fmtp", "rtcp", "rtcp-mux", *DIRECTIONS)
        if ptime:
            media.remove_attributes("ptime")
        media.remove_where(lambda line: attribute_name(line) == "rtcp-fb" and not line.value.startswith("*"))
        for pt in media_line.payload_types():
            media.add_attribute("rtpmap", f"{pt} " + (rtpmaps[pt].encoding_text() if pt in rtpmaps
                                                     else rtpengine_rtpmap_text(pt)))
            if pt in fmtps and fmtps[pt].params:
                media.add_attribute("fmtp", fmtps[pt].render())
            for fb in feedback:
                if fb.payload_type == pt:
                    media.add_attribute("rtcp-fb", fb.render())
        media.add_attribute(direction.value)
        media.add_attribute("rtcp", str(port + 1))
        if ptime:
            media.add_attribute("ptime", str(ptime))
    return out


@pytest.mark.sidebyside
def test_plain_rewrite_reproduces_rtpengine_output(rtpengine_factory: Callable[..., Any]) -> None:
    rtpengine = rtpengine_factory(media_ip="127.0.0.3", ports=100, extra=["--delete-delay=0"])
    for index, name in enumerate(PLAIN_SAMPLES):
        data = (SAMPLES / name).read_bytes()
        call_id = f"sdp-sample-rewrite-{index}"
        reply = rtpengine.ng.request({"command": "offer", "call-id": call_id, "from-tag": "t", "sdp": data})
        rtpengine.ng.request({"command": "delete", "call-id": call_id})
        assert reply["result"] == "ok", (name, reply)
        expected = parse(reply["sdp"])
        ports = [media.media_line.port for media in expected.all_media()]
        ours = rewrite_like_rtpengine(parse_bytes(data), "127.0.0.3", ports)
        assert ours.serialize() == reply["sdp"], name
