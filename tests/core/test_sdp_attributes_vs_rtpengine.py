"""Side by side with rtpengine 10.5: which attribute lines it recognises, and what it prints.

rtpengine leaves an attribute it cannot read in place (before its generated block) and removes
one it recognises. The typed parsers of karl_core.sdp raise SdpError exactly for the first kind,
which is what the rewriter relies on; these tests check that against the real daemon.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from karl_core.sdp import (
    BAD_RTCP_ADDRESS,
    Candidate,
    Fingerprint,
    Fmtp,
    RtcpAttribute,
    RtcpFb,
    RtpMap,
    SdpError,
    rtpengine_rtpmap_text,
)
from karl_testkit import RTPENGINE, NgClient, NgServer, free_port, free_port_block, wait_for_pong

pytestmark = pytest.mark.sidebyside

HEAD = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 2000 RTP/AVP 96\r\n"
ICE = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
SHA1 = "4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB"

RTPMAPS = [
    "96 opus/48000/2", "96 speex/16000/1", "96 PCMU/8000 extra", "96 L16/+8000", "96 te/8000/",
    "96 x/8000/abc", "96 x/8000/0", "96 x/8000/-1", "96 y/8000/02", "96 z/08000", "96 w/4294967297",
    "96abc bar/4321", "4294967392 foo/1234", "x PCMU/8000", "96 PCMU", "96", "96  y/8000", "96 z/80x",
    "96 PCMU/", "0 PCMU/8000",
]
FMTPS = ["96 0-16", "96abc x=1", "96  y=2", "96\tz=3", "96", "96 ", "abc q", "-1 x", "95 x=1"]
RTCP_FBS = ["96 nack pli", "96", "* ccm fir", "x nack", "96 goog-remb"]
RTCPS = [
    "2001", "2001x", "2001 ", "abc", "0", "70000", "2001 IN IP4 1.2.3.4", "2001 IN IP4 bogus", "2001 IN IP4",
]
CANDIDATES = [
    "1 1 UDP 2130706431 1.2.3.4 2000 typ host",
    "2 1 FOO 2130706431 1.2.3.4 2000 typ host",
    "3 1 tcp x 1.2.3.4 2000 typ host",
    "4 1 udp x 1.2.3.4 2000 typ host",
    "5 1 UDP 2130706431 bogus.local 2000 typ host",
    "6 1 UDP 5 1.2.3.4 2000 typ weird",
    "7 1 UDP 5 1.2.3.4 2000 typ SRFLX",
    "8 1 UDP 5 1.2.3.4 2000 typ srflx raddr 5.6.7.8 rport 9 generation 0",
    "9 1 UDP 5 1.2.3.4 2000 typ srflx raddr bogus rport x",
    "10 x UDP 2130706431 1.2.3.4 2000 typ host",
    "11 1 UDP 2130706431 1.2.3.4 2000",
    "12 1 UDP 5 1.2.3.4 x typ host",
    "13 1 UDP 5 1.2.3.4 2000 TYP host",
    "14 1 UDP 5 1.2.3.4 2000 typ srflx",
    "15 1 UDP 5 1.2.3.4 2000 typ relay raddr 5.6.7.8",
    "16 1 UDP 5 1.2.3.4 2000 typ srflx raddr 5.6.7.8 rport x",
    "17  1 UDP 5 1.2.3.4 2000 typ host",
    "bad",
]
FINGERPRINTS = [
    f"sha-1 {SHA1}", f"SHA-1 {SHA1}", f"sha-1 {SHA1} extra", f"sha-1 {SHA1}xyz", f"sha-1 {SHA1[:-3]}",
    f"sha-1 {SHA1}:CD", "sha-224 4A", "md5 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B", "sha-1 zz",
]


def _recognised(parser: Callable[[str], object], value: str) -> bool:
    try:
        parser(value)
    except SdpError:
        return False
    return True


@pytest.fixture(scope="module")
def offer(rtpengine_module: NgServer) -> Callable[[str], list[str]]:
    counter = iter(range(1_000_000))

    def send(sdp: str) -> list[str]:
        call_id = f"sdp-attrs-{next(counter)}"
        ng = rtpengine_module.ng
        reply = ng.request({"command": "offer", "call-id": call_id, "from-tag": "t", "sdp": sdp})
        ng.request({"command": "delete", "call-id": call_id})
        assert reply.get("result") == "ok", reply
        return str(reply["sdp"]).split("\r\n")

    return send


@pytest.fixture(scope="module")
def rtpengine_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NgServer]:
    # One daemon for the whole module (the shared rtpengine_factory fixture is per test).
    if not Path(RTPENGINE).exists():
        pytest.skip("the reference rtpengine daemon is not installed")
    media_ip = "127.0.0.3"
    ng_port = free_port()
    port_min = free_port_block(100, media_ip)
    log_path = tmp_path_factory.mktemp("rtpengine") / "rtpengine.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [RTPENGINE, "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
             f"--interface={media_ip}", f"--listen-ng=127.0.0.1:{ng_port}", f"--port-min={port_min}",
             f"--port-max={port_min + 99}", "--delete-delay=0"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    server = NgServer("rtpengine", proc, NgClient(("127.0.0.1", ng_port)), media_ip, port_min, port_min + 99,
                      log_path)
    try:
        wait_for_pong(server.ng, proc, "rtpengine")
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("value", RTPMAPS)
def test_rtpmap(offer: Callable[[str], list[str]], value: str) -> None:
    lines = offer(HEAD + f"a=rtpmap:{value}\r\n")
    rtpmaps = [line for line in lines if line.startswith("a=rtpmap:")]
    recognised = _recognised(RtpMap.parse, value)
    assert (len(rtpmaps) == 1) is recognised, lines
    rtpmap = RtpMap.parse(value) if recognised else None
    if rtpmap is not None and rtpmap.payload_type == 96:
        text = rtpmap.encoding_text()
    else:
        text = rtpengine_rtpmap_text(96)
    assert rtpmaps[-1] == f"a=rtpmap:96 {text}"


def _check_kept(offer: Callable[[str], list[str]], body: str, line: str, kept: bool) -> None:
    lines = offer(HEAD + body)
    first_generated = next(i for i, text in enumerate(lines) if text.startswith("a=rtpmap:96 "))
    assert (line in lines[:first_generated]) is kept, lines


@pytest.mark.parametrize("value", FMTPS)
def test_fmtp(offer: Callable[[str], list[str]], value: str) -> None:
    _check_kept(offer, f"a=rtpmap:96 x/8000\r\na=fmtp:{value}\r\n", f"a=fmtp:{value}",
                not _recognised(Fmtp.parse, value))


@pytest.mark.parametrize("value", RTCP_FBS)
def test_rtcp_fb(offer: Callable[[str], list[str]], value: str) -> None:
    try:
        kept = RtcpFb.parse(value).payload_type is None  # wildcards stay in place
    except SdpError:
        kept = True
    _check_kept(offer, f"a=rtpmap:96 x/8000\r\na=rtcp-fb:{value}\r\n", f"a=rtcp-fb:{value}", kept)


@pytest.mark.parametrize("value", RTCPS)
def test_rtcp(offer: Callable[[str], list[str]], value: str) -> None:
    try:
        RtcpAttribute.parse(value)
        kept = False
    except SdpError as exc:
        kept = exc.reason == BAD_RTCP_ADDRESS
    _check_kept(offer, f"a=rtcp:{value}\r\n", f"a=rtcp:{value}", kept)


@pytest.mark.parametrize("value", CANDIDATES)
def test_candidate(offer: Callable[[str], list[str]], value: str) -> None:
    _check_kept(offer, ICE + f"a=candidate:{value}\r\n", f"a=candidate:{value}",
                not _recognised(Candidate.parse, value))


@pytest.mark.parametrize("value", FINGERPRINTS)
def test_fingerprint(offer: Callable[[str], list[str]], value: str) -> None:
    _check_kept(offer, f"a=fingerprint:{value}\r\n", f"a=fingerprint:{value}",
                not _recognised(Fingerprint.parse, value))


def test_rtpmap_names_of_payload_types_without_rtpmap(offer: Callable[[str], list[str]]) -> None:
    pts = [*range(36), 72, 95, 96, 127]
    lines = offer(HEAD.replace("RTP/AVP 96", "RTP/AVP " + " ".join(map(str, pts))))
    printed = [line for line in lines if line.startswith("a=rtpmap:")]
    assert printed == [f"a=rtpmap:{pt} {rtpengine_rtpmap_text(pt)}" for pt in pts]
