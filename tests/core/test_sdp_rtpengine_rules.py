"""Which SDPs rtpengine 10.5 refuses, and with which text: the probe corpus.

Every case below was sent to rtpengine 10.5.3.5 as a bencoded `offer` and its answer recorded.
The plain tests check that `karl_core.sdp` predicts the same outcome; the side-by-side test replays
the corpus against the real daemon (when installed), so a daemon upgrade or a wrong entry shows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from karl_core.sdp import (
    ERROR_REWRITING,
    FAILED_TO_PARSE,
    INCOMPLETE_SDP,
    SdpError,
    parse,
    parse_bytes,
    rtpengine_error,
    rtpengine_rewrite_error,
    validate_for_rtpengine,
)

OK = "ok"
PARSE = FAILED_TO_PARSE
INCOMPLETE = INCOMPLETE_SDP
REWRITE = ERROR_REWRITING  # structural, predicted by rtpengine_rewrite_error
ORDER = "rewrite-order"  # rtpengine says "Error rewriting SDP"; depends on the rewrite, not modelled here

SAMPLES = Path(__file__).parent / "sdp_samples"

B = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
M = "m=audio 2000 RTP/AVP 0\r\n"
NOC = B.replace("c=IN IP4 1.2.3.4\r\n", "")  # session part without c=


def c_line(value: str) -> str:
    """The base SDP with another session c= value."""
    return B.replace("c=IN IP4 1.2.3.4", f"c={value}") + M


def o_line(value: str) -> str:
    return B.replace("o=- 1 1 IN IP4 1.2.3.4", f"o={value}") + M


def m_line(value: str) -> str:
    return B + f"m={value}\r\n"


class Case(NamedTuple):
    name: str
    sdp: str
    expected: str
    fragment: bool = False


CASES = [
    # --- the body as a whole -------------------------------------------------------------------
    Case("good", B + M, OK),
    Case("empty body is not read at all", "", OK),
    Case("one-character body is not read", "v", OK),
    Case("one-character garbage body is not read", "x", OK),
    Case("bare LF endings", (B + M).replace("\r\n", "\n"), OK),
    Case("CR-only endings make one long v= line", (B + M).replace("\r\n", "\r"), PARSE),
    Case("CR CR LF endings leave a CR in v=", (B + M).replace("\r\n", "\r\r\n"), PARSE),
    Case("no newline after the last line", B + M[:-2], OK),
    Case("NUL byte inside an attribute", B + "a=x\x00y\r\n" + M, OK),
    Case("UTF-8 session name", B.replace("s=-", "s=Grüße") + M, OK),
    # --- line syntax: "<letter>=" --------------------------------------------------------------
    Case("garbage line", B + "garbage\r\n" + M, PARSE),
    Case("line without =", B + "ab\r\n" + M, PARSE),
    Case("= as first character", B + M + "=foo\r\n", PARSE),
    Case("leading space before v=", " " + B + M, PARSE),
    Case("leading space before m=", B + " m=audio 2000 RTP/AVP 0\r\n", PARSE),
    Case("space as line type", B + " =x\r\n" + M, PARSE),
    Case("line of one space", B + M + " \r\n", PARSE),
    Case("unknown line type x=", B + "x=foo\r\n" + M, PARSE),
    Case("unknown line type in media", B + M + "y=foo\r\n", PARSE),
    Case("upper-case A=", B + M + "A=foo\r\n", PARSE),
    Case("digit as line type", B + M + "1=foo\r\n", PARSE),
    Case("r z e p u lines", B + "r=7d 1h 0 25h\r\nz=0 0\r\ne=a@b\r\np=+1 555\r\nu=http://x\r\n" + M, OK),
    Case("i= and t= inside media", B + M + "i=foo\r\nt=0 0\r\n", OK),
    Case("b= and k= inside media", B + M + "b=AS:64\r\nk=prompt\r\n", OK),
    Case("empty b=", B + M + "b=\r\n", OK),
    # --- empty lines and the last character ------------------------------------------------------
    Case("empty CRLF line ends the SDP (rest dropped)", B + M + "\r\ngarbage\r\n", OK),
    Case("empty LF line ends the SDP", B + M + "\ngarbage\n", OK),
    Case("line starting with CR ends the SDP", B + M + "\rgarbage\r\n", OK),
    Case("empty line between media: second one unseen", B + M + "\r\nm=audio 3000 RTP/AVP 8\r\n", OK),
    Case("empty line before the media: session without media", B + "\r\n" + M, REWRITE),
    Case("empty line right after v=", "v=0\r\n\r\n" + B[5:] + M, REWRITE),
    Case("trailing empty CRLF line", B + M + "\r\n", OK),
    Case("trailing LF after CRLF (last character)", B + M + "\n", OK),
    Case("trailing CR (last character)", B + M + "\r", OK),
    Case("trailing single garbage character", B + M + "x", OK),
    Case("trailing space character", B + M + " ", OK),
    Case("trailing two garbage characters", B + M + "xy", PARSE),
    Case("trailing a= without newline", B + M + "a=", OK),
    Case("v=0 and one more character", "v=0\nx", REWRITE),
    # --- v= --------------------------------------------------------------------------------------
    Case("missing v=", B[5:] + M, PARSE),
    Case("v= not first", "o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n" + M, PARSE),
    Case("a= before v=", "a=foo\r\n" + B + M, PARSE),
    Case("v=1", B.replace("v=0", "v=1") + M, PARSE),
    Case("v=0 with trailing space", B.replace("v=0", "v=0 ") + M, PARSE),
    Case("v=00", B.replace("v=0", "v=00") + M, PARSE),
    Case("v= empty", "v=", PARSE),
    Case("v= NUL", B.replace("v=0", "v=\x00") + M, PARSE),
    Case("v=0 CR CR LF", B.replace("v=0\r\n", "v=0\r\r\n") + M, PARSE),
    Case("v=0 only", "v=0", REWRITE),
    Case("v=0 CRLF only", "v=0\r\n", REWRITE),
    Case("session without media", B, REWRITE),
    # --- several sessions ------------------------------------------------------------------------
    Case("two sessions", B + M + "v=0\r\no=- 2 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
         "m=audio 3000 RTP/AVP 8\r\n", OK),
    Case("v=0 twice at the start", "v=0\r\n" + B + M, OK),
    Case("first session without media", B + B + M, OK),
    Case("second session without media", B + M + "v=0\r\no=- 2 2 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
         REWRITE),
    Case("second session's media without c=", B + M + "v=0\r\no=- 2 2 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n"
         "m=audio 3000 RTP/AVP 8\r\n", INCOMPLETE),
    # --- o= and s= -------------------------------------------------------------------------------
    Case("o= missing", B.replace("o=- 1 1 IN IP4 1.2.3.4\r\n", "") + M, OK),
    Case("s= missing", B.replace("s=-\r\n", "") + M, OK),
    Case("t= missing", B.replace("t=0 0\r\n", "") + M, OK),
    Case("o= with five tokens", o_line("- 1 1 IN IP4"), PARSE),
    Case("o= with an empty sixth token", o_line("- 1 1 IN IP4 "), PARSE),
    Case("o= empty", o_line(""), PARSE),
    Case("o= host name address is fine", o_line("- 1 1 IN IP4 host.example"), OK),
    Case("o= nonsense network tokens are fine", o_line("- 1 1 XX YY zz"), OK),
    Case("o= extra tokens", o_line("- 1 1 IN IP4 1.2.3.4 extra"), OK),
    Case("o= double space", o_line("-  1 1 IN IP4 1.2.3.4"), OK),
    Case("o= twice", B + "o=- 1 1 IN IP4 1.2.3.4\r\n" + M, PARSE),
    Case("o= inside media", B + M + "o=- 1 1 IN IP4 1.2.3.4\r\n", PARSE),
    Case("s= inside media", B + M + "s=foo\r\n", PARSE),
    Case("s= empty", B.replace("s=-", "s=") + M, OK),
    Case("s= twice", B + "s=again\r\n" + M, OK),
    Case("t= twice", B + "t=0 0\r\n" + M, OK),
    Case("m= right after v=", "v=0\r\nm=audio 2000 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n", OK),
    Case("s= before o=", "v=0\r\ns=-\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n" + M, OK),
    # --- c= --------------------------------------------------------------------------------------
    Case("IPv6", c_line("IN IP6 2001:db8::1"), OK),
    Case("IPv6 upper case", c_line("IN IP6 2001:DB8::A"), OK),
    Case("IPv6 full form", c_line("IN IP6 2001:0db8:0000:0000:0000:0000:0000:0001"), OK),
    Case("IPv6 unspecified", c_line("IN IP6 ::"), OK),
    Case("IPv6 with embedded IPv4", c_line("IN IP6 64:ff9b::1.2.3.4"), OK),
    Case("IPv6 v4-mapped", c_line("IN IP6 ::ffff:1.2.3.4"), OK),
    Case("IPv6 in brackets", c_line("IN IP6 [2001:db8::1]"), OK),
    Case("IPv6 bracket then port", c_line("IN IP6 [::1]:5060"), OK),
    Case("IPv6 bracket then junk", c_line("IN IP6 [::1]x"), OK),
    Case("IPv6 double closing bracket", c_line("IN IP6 [::1]]"), OK),
    Case("IPv6 double opening bracket", c_line("IN IP6 [[::1]]"), PARSE),
    Case("IPv6 opening bracket only", c_line("IN IP6 [::1"), PARSE),
    Case("IPv6 closing bracket only", c_line("IN IP6 ::1]"), PARSE),
    Case("IPv6 empty brackets", c_line("IN IP6 []"), PARSE),
    Case("IPv6 junk before bracket", c_line("IN IP6 x[::1]"), PARSE),
    Case("IPv6 NUL inside brackets", c_line("IN IP6 [::1\x00]"), PARSE),
    Case("IPv6 NUL after brackets", c_line("IN IP6 [::1]\x00"), OK),
    Case("IPv6 NUL then junk", c_line("IN IP6 ::1\x00junk"), OK),
    Case("IPv6 scope id", c_line("IN IP6 fe80::1%eth0"), PARSE),
    Case("IPv6 triple colon", c_line("IN IP6 2001:db8:::1"), PARSE),
    Case("IPv6 five hex digits", c_line("IN IP6 2001:0db80::1"), PARSE),
    Case("IPv6 address with IP4 type", c_line("IN IP4 2001:db8::1"), PARSE),
    Case("IPv4 address with IP6 type", c_line("IN IP6 1.2.3.4"), PARSE),
    Case("IPv4 in brackets with IP6 type", c_line("IN IP6 [1.2.3.4]"), PARSE),
    Case("IPv4 in brackets", c_line("IN IP4 [1.2.3.4]"), PARSE),
    Case("IPv4 NUL then junk", c_line("IN IP4 1.2.3.4\x00junk"), OK),
    Case("IPv4 NUL first", c_line("IN IP4 \x001.2.3.4"), PARSE),
    Case("0.0.0.0", c_line("IN IP4 0.0.0.0"), OK),
    Case("255.255.255.255", c_line("IN IP4 255.255.255.255"), OK),
    Case("host name", c_line("IN IP4 example.com"), PARSE),
    Case("multicast with TTL", c_line("IN IP4 224.2.1.1/127"), PARSE),
    Case("IPv4 leading zero", c_line("IN IP4 01.2.3.4"), PARSE),
    Case("IPv4 three parts", c_line("IN IP4 1.2.3"), PARSE),
    Case("IPv4 five parts", c_line("IN IP4 1.2.3.4.5"), PARSE),
    Case("IPv4 trailing tab", c_line("IN IP4 1.2.3.4\t"), PARSE),
    Case("IPv4 trailing no-break space", c_line("IN IP4 1.2.3.4\u00a0"), PARSE),
    Case("IPv4 CR CR LF", B.replace("c=IN IP4 1.2.3.4\r\n", "c=IN IP4 1.2.3.4\r\r\n") + M, PARSE),
    Case("network type XX", c_line("XX IP4 1.2.3.4"), PARSE),
    Case("network type in", c_line("in IP4 1.2.3.4"), OK),
    Case("network type In", c_line("In IP4 1.2.3.4"), PARSE),
    Case("network type with NUL", c_line("IN\x00 IP4 1.2.3.4"), PARSE),
    Case("address type ip4", c_line("IN ip4 1.2.3.4"), PARSE),
    Case("address type ip6", c_line("IN ip6 ::1"), PARSE),
    Case("address type with NUL", c_line("IN IP4\x00 1.2.3.4"), PARSE),
    Case("c= with two tokens", c_line("IN IP4"), PARSE),
    Case("c= empty", c_line(""), PARSE),
    Case("c= extra token after the address", c_line("IN IP4 1.2.3.4 extra"), OK),
    Case("c= trailing space", c_line("IN IP4 1.2.3.4 "), OK),
    Case("c= double space", c_line("IN  IP4 1.2.3.4"), PARSE),
    Case("second session c=", B + "c=IN IP4 1.2.3.5\r\n" + M, PARSE),
    Case("second media c=", B + M + "c=IN IP4 1.2.3.5\r\nc=IN IP4 1.2.3.6\r\n", PARSE),
    Case("bad media c= despite good session c=", B + M + "c=IN IP4 bogus\r\n", PARSE),
    Case("media c= 0.0.0.0", B + M + "c=IN IP4 0.0.0.0\r\n", OK),
    # --- c= missing (stream extraction) ---------------------------------------------------------
    Case("no c= anywhere", NOC + M, INCOMPLETE),
    Case("no c= anywhere, port 0", NOC + "m=audio 0 RTP/AVP 0\r\n", INCOMPLETE),
    Case("no c= anywhere, MSRP", NOC + "m=message 2855 TCP/MSRP *\r\n", INCOMPLETE),
    Case("only v= and m=", "v=0\r\nm=audio 2000 RTP/AVP 0\r\n", INCOMPLETE),
    Case("second media without c=", NOC + "m=audio 2000 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n"
         "m=audio 2002 RTP/AVP 0\r\n", INCOMPLETE),
    Case("c= in every media only", NOC + "m=audio 2000 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n"
         "m=audio 2002 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n", OK),
    # --- m= port ---------------------------------------------------------------------------------
    Case("port 0", m_line("audio 0 RTP/AVP 0"), OK),
    Case("port 00", m_line("audio 00 RTP/AVP 0"), OK),
    Case("port 65535", m_line("audio 65535 RTP/AVP 0"), OK),
    Case("port 65536", m_line("audio 65536 RTP/AVP 0"), PARSE),
    Case("port -1", m_line("audio -1 RTP/AVP 0"), PARSE),
    Case("port +2000", m_line("audio +2000 RTP/AVP 0"), OK),
    Case("port 12abc", m_line("audio 12abc RTP/AVP 0"), OK),
    Case("port 2000x", m_line("audio 2000x RTP/AVP 0"), OK),
    Case("port abc", m_line("audio abc RTP/AVP 0"), PARSE),
    Case("port overflowing long", m_line("audio 99999999999999999999 RTP/AVP 0"), PARSE),
    Case("port above 32 bits", m_line("audio 4294967297 RTP/AVP 0"), PARSE),
    Case("double space before port", m_line("audio  2000 RTP/AVP 0"), OK),
    Case("double space before port, formats not numbers", m_line("audio  2000 RTP/AVP abc"), OK),
    Case("tab as separator", m_line("audio\t2000 RTP/AVP 0"), PARSE),
    Case("leading space", m_line(" audio 2000 RTP/AVP 0"), PARSE),
    Case("empty media type", m_line(" 2000 RTP/AVP 0"), OK),
    Case("unknown media type", m_line("foo 2000 RTP/AVP 0"), OK),
    Case("port/2", m_line("audio 2000/2 RTP/AVP 0"), OK),
    Case("port/1", m_line("audio 2000/1 RTP/AVP 0"), OK),
    Case("port/10", m_line("audio 2000/10 RTP/AVP 0"), OK),
    Case("port/0", m_line("audio 2000/0 RTP/AVP 0"), PARSE),
    Case("port/11", m_line("audio 2000/11 RTP/AVP 0"), PARSE),
    Case("port/-1", m_line("audio 2000/-1 RTP/AVP 0"), PARSE),
    Case("port/x", m_line("audio 2000/x RTP/AVP 0"), PARSE),
    Case("port/2x", m_line("audio 2000/2x RTP/AVP 0"), OK),
    Case("port/ followed by space", m_line("audio 2000/ RTP/AVP 0"), PARSE),
    Case("port count truncated to int", m_line("audio 2000/4294967298 RTP/AVP 0"), OK),
    Case("port 0/2", m_line("audio 0/2 RTP/AVP 0"), OK),
    # --- m= tokens and formats -------------------------------------------------------------------
    Case("m= with two tokens", m_line("audio 2000"), PARSE),
    Case("empty m=", m_line(""), PARSE),
    Case("no formats", m_line("audio 2000 RTP/AVP"), OK),
    Case("no formats, trailing space", m_line("audio 2000 RTP/AVP "), OK),
    Case("formats trailing space", m_line("audio 2000 RTP/AVP 0 "), OK),
    Case("formats double space", m_line("audio 2000 RTP/AVP 0  8"), OK),
    Case("formats with tab", m_line("audio 2000 RTP/AVP 0\t8"), OK),
    Case("formats space then tab", m_line("audio 2000 RTP/AVP 0 \t8"), OK),
    Case("format with NUL", m_line("audio 2000 RTP/AVP 0\x00x"), OK),
    Case("payload type 127", m_line("audio 2000 RTP/AVP 127"), OK),
    Case("payload type 128", m_line("audio 2000 RTP/AVP 128"), INCOMPLETE),
    Case("payload type 00127", m_line("audio 2000 RTP/AVP 00127"), OK),
    Case("payload type 8x", m_line("audio 2000 RTP/AVP 8x"), OK),
    Case("payload type 0x10", m_line("audio 2000 RTP/AVP 0x10"), OK),
    Case("payload type +8", m_line("audio 2000 RTP/AVP +8"), OK),
    Case("payload type -0", m_line("audio 2000 RTP/AVP -0"), OK),
    Case("payload type -1", m_line("audio 2000 RTP/AVP -1"), INCOMPLETE),
    Case("payload type 2**32 wraps to 0", m_line("audio 2000 RTP/AVP 4294967296"), OK),
    Case("payload type -(2**32-1) wraps to 1", m_line("audio 2000 RTP/AVP -4294967295"), OK),
    Case("payload type overflowing 64 bits", m_line("audio 2000 RTP/AVP 18446744073709551616"), INCOMPLETE),
    Case("payload type huge", m_line("audio 2000 RTP/AVP 99999999999999999999999"), INCOMPLETE),
    Case("payload type abc", m_line("audio 2000 RTP/AVP abc"), INCOMPLETE),
    Case("payload type *", m_line("audio 2000 RTP/AVP *"), INCOMPLETE),
    Case("rtp/avp lower case is RTP", m_line("audio 2000 rtp/avp abc"), INCOMPLETE),
    Case("RTP/SAVP", m_line("audio 2000 RTP/SAVP x"), INCOMPLETE),
    Case("RTP/AVPF", m_line("audio 2000 RTP/AVPF x"), INCOMPLETE),
    Case("RTP/SAVPF", m_line("audio 2000 RTP/SAVPF x"), INCOMPLETE),
    Case("UDP/TLS/RTP/SAVP", m_line("audio 2000 UDP/TLS/RTP/SAVP x"), INCOMPLETE),
    Case("UDP/TLS/RTP/SAVPF", m_line("audio 2000 UDP/TLS/RTP/SAVPF x"), INCOMPLETE),
    Case("udp/tls/rtp/savpf lower case", m_line("audio 2000 udp/tls/rtp/savpf x"), INCOMPLETE),
    Case("UDPTL is not RTP", m_line("image 2000 UDPTL x"), OK),
    Case("UDP/DTLS/SCTP is not RTP", m_line("application 2000 UDP/DTLS/SCTP x"), OK),
    Case("DCCP/RTP/AVP is not RTP", m_line("audio 2000 DCCP/RTP/AVP x"), OK),
    Case("TCP/RTP/AVP is not RTP", m_line("audio 2000 TCP/RTP/AVP x"), OK),
    Case("UDP/RTP/AVP is not RTP", m_line("audio 2000 UDP/RTP/AVP x"), OK),
    Case("RTP/AVP/TCP is not RTP", m_line("audio 2000 RTP/AVP/TCP x"), OK),
    Case("TCP/TLS/RTP/SAVP is not RTP", m_line("audio 2000 TCP/TLS/RTP/SAVP x"), OK),
    Case("RTP/AVPX is not RTP", m_line("audio 2000 RTP/AVPX x"), OK),
    Case("plain udp is not RTP", m_line("audio 2000 udp x"), OK),
    Case("unknown protocol", m_line("audio 2000 FOO/BAR abc"), OK),
    Case("MSRP", m_line("message 2855 TCP/MSRP *"), OK),
    Case("MSRP without formats", m_line("message 2855 TCP/MSRP"), OK),
    Case("T.38 udptl", m_line("image 5000 udptl t38"), OK),
    Case("T.38 UDPTL", m_line("image 5000 UDPTL t38"), OK),
    Case("T.38 without formats", m_line("image 5000 udptl"), OK),
    Case("video", B + "m=video 2002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", OK),
    Case("data channel", m_line("application 5000 UDP/DTLS/SCTP webrtc-datachannel"), OK),
    # --- attributes are never a parse error ------------------------------------------------------
    Case("a= empty", B + M + "a=\r\n", OK),
    Case("a=:", B + M + "a=:\r\n", OK),
    Case("broken rtpmaps", B + M + "a=rtpmap:x PCMU/8000\r\na=rtpmap:0 PCMU\r\na=rtpmap:0\r\na=rtpmap\r\n"
         "a=rtpmap:0 PCMU/80x0\r\n", OK),
    Case("broken fmtp", B + M + "a=fmtp:abc foo\r\na=fmtp\r\n", OK),
    Case("broken rtcp", B + M + "a=rtcp:abc\r\na=rtcp:0\r\na=rtcp:2001 IN IP4 bogus\r\na=rtcp\r\n", OK),
    Case("broken candidates", B + M + "a=candidate:bad\r\na=candidate:1 x UDP 1 1.2.3.4 5 typ host\r\n", OK),
    Case("broken crypto", B + "m=audio 2000 RTP/SAVP 0\r\na=crypto:1 FOO inline:abc\r\n", OK),
    Case("broken fingerprints", B + M + "a=fingerprint:sha-1 zz\r\na=fingerprint:md7 AA:BB\r\n", OK),
    Case("broken ssrc", B + M + "a=ssrc:0 cname:x\r\na=ssrc:1234\r\n", OK),
    Case("broken rtcp-fb", B + M + "a=rtcp-fb:x nack\r\na=rtcp-fb\r\n", OK),
    Case("odd setup, ptime, group", B + "a=group:BUNDLE 0\r\n" + M + "a=setup:foo\r\na=ptime:abc\r\n", OK),
    Case("broken T.38 attributes", B + "m=image 5000 udptl t38\r\na=T38FaxVersion:abc\r\n"
         "a=T38FaxUdpECDepth:x\r\n", OK),
    # --- rewrite order (rtpengine edits front to back) -------------------------------------------
    Case("session c= before o= while replaced", "v=0\r\nc=IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n"
         "t=0 0\r\n" + M, ORDER),
    Case("session c= before o= but not replaced", "v=0\r\nc=IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\n"
         "s=-\r\nt=0 0\r\nm=audio 2000 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n", OK),
    Case("removed session attribute before o=", "v=0\r\na=sendrecv\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n"
         "c=IN IP4 1.2.3.4\r\nt=0 0\r\n" + M, ORDER),
    Case("kept session attribute before o=", "v=0\r\na=tool:x\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n"
         "c=IN IP4 1.2.3.4\r\nt=0 0\r\n" + M, OK),
    Case("removed session attribute before c=", "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\na=sendrecv\r\n"
         "c=IN IP4 1.2.3.4\r\nt=0 0\r\n" + M, ORDER),
    Case("a=rtpmap before media c=", NOC + "m=audio 2000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
         "c=IN IP4 1.2.3.4\r\n", ORDER),
    Case("kept attribute before media c=", NOC + "m=audio 2000 RTP/AVP 0\r\na=foo\r\nc=IN IP4 1.2.3.4\r\n",
         OK),
    # --- trickle-ICE fragments (flag "fragment") -------------------------------------------------
    Case("fragment: candidate line", "a=candidate:1 1 UDP 2130706431 1.2.3.4 2000 typ host\r\n", OK, True),
    Case("fragment: garbage", "garbage\r\n", PARSE, True),
    Case("fragment: first line is not looked at",
         "x=1\r\na=candidate:1 1 UDP 2130706431 1.2.3.4 2000 typ host\r\n", OK, True),
    Case("fragment: media without c=", "a=ice-ufrag:abcd\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n", OK, True),
    Case("fragment: bad port", "a=ice-ufrag:abcd\r\nm=audio x RTP/AVP 0\r\n", PARSE, True),
    Case("fragment: bad first m= line is not looked at", "m=audio x RTP/AVP 0\r\n", OK, True),
    Case("fragment: bad payload type", "a=ice-ufrag:abcd\r\nm=audio 9 RTP/AVP x\r\n", INCOMPLETE, True),
    Case("fragment: with v=", "v=0\r\nm=audio 9 RTP/AVP 0\r\n", OK, True),
]

IDS = [case.name for case in CASES]


def test_case_names_are_unique() -> None:
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_validation_matches_probed_rtpengine(case: Case) -> None:
    sdp = parse(case.sdp)
    assert sdp.serialize() == case.sdp
    got = rtpengine_error(sdp, fragment=case.fragment)
    if case.expected in (PARSE, INCOMPLETE):
        assert got == case.expected
        with pytest.raises(SdpError) as info:
            validate_for_rtpengine(sdp, fragment=case.fragment)
        assert info.value.reason == case.expected
        assert info.value.detail
    else:
        assert got is None
        validate_for_rtpengine(sdp, fragment=case.fragment)
        rewrite = None if case.fragment else rtpengine_rewrite_error(sdp)
        assert rewrite == (ERROR_REWRITING if case.expected == REWRITE else None)


def test_parse_error_comes_first() -> None:
    # A body with both a parse error and a missing c= reports the parse error, like rtpengine.
    sdp = parse(NOC + M + "x=1\r\n")
    assert rtpengine_error(sdp) == PARSE


def test_sdp_error_is_a_value_error_with_reason_and_detail() -> None:
    with pytest.raises(ValueError, match="Failed to parse SDP: line 1") as info:
        validate_for_rtpengine(parse("garbage\r\n"))
    assert isinstance(info.value, SdpError)
    assert info.value.reason == FAILED_TO_PARSE


def _offer_outcome(ng: Any, call_id: str, sdp: str | bytes, fragment: bool) -> str:
    payload: dict[str, Any] = {"command": "offer", "call-id": call_id, "from-tag": "probe-tag",
                               "sdp": sdp if isinstance(sdp, bytes) else sdp.encode("utf-8")}
    if fragment:
        payload["flags"] = ["fragment"]
    reply = ng.request(payload)
    ng.request({"command": "delete", "call-id": call_id})
    if reply.get("result") == "ok":
        return OK
    reason = str(reply.get("error-reason"))
    return OK if reason == "Ran out of ports" else reason


@pytest.mark.sidebyside
def test_corpus_against_real_rtpengine(rtpengine_factory: Callable[..., Any]) -> None:
    rtpengine = rtpengine_factory(media_ip="127.0.0.3", ports=200, extra=["--delete-delay=0"])
    mismatches = []
    for index, case in enumerate(CASES):
        want = ERROR_REWRITING if case.expected in (REWRITE, ORDER) else case.expected
        got = _offer_outcome(rtpengine.ng, f"sdp-rules-{index}", case.sdp, case.fragment)
        if got != want:
            mismatches.append((case.name, want, got))
    for index, path in enumerate(sorted(SAMPLES.glob("*.sdp"))):
        data = path.read_bytes()
        assert rtpengine_error(parse_bytes(data)) is None, path.name
        got = _offer_outcome(rtpengine.ng, f"sdp-sample-{index}", data, False)
        if got != OK:
            mismatches.append((path.name, OK, got))
    assert not mismatches, mismatches


MUTATION_BASES = [
    B + "m=audio 2000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    "a=sendrecv\r\n",
    "v=0\no=alice 5 6 IN IP6 ::1\ns=x\nt=0 0\nm=audio 4000 RTP/SAVP 0\nc=IN IP6 2001:db8::2\n"
    "m=video 4002/2 RTP/AVPF 96\nc=IN IP4 10.0.0.1\na=rtpmap:96 VP8/90000\n",
    B.replace("1.2.3.4\r\nt=", "0.0.0.0\r\nt=") + "m=image 5000 udptl t38\r\na=T38FaxVersion:0\r\n"
    "m=message 2855 TCP/MSRP *\r\n",
]
MUTATION_ALPHABET = "v=omcaskbtz0189/ :\r\n\tIP46N.-[]x"


def mutations(count: int, seed: int = 20261126) -> list[str]:
    """Deterministic small random edits of valid SDPs (insert, delete or replace characters)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        chars = list(rng.choice(MUTATION_BASES))
        for _ in range(rng.randint(1, 4)):
            index = rng.randrange(len(chars) + 1)
            roll = rng.random()
            if roll < 0.4 and chars:
                del chars[min(index, len(chars) - 1)]
            elif roll < 0.8:
                chars.insert(index, rng.choice(MUTATION_ALPHABET))
            elif chars:
                chars[min(index, len(chars) - 1)] = rng.choice(MUTATION_ALPHABET)
        out.append("".join(chars))
    return out


@pytest.mark.sidebyside
def test_random_mutations_against_real_rtpengine(rtpengine_factory: Callable[..., Any]) -> None:
    rtpengine = rtpengine_factory(media_ip="127.0.0.3", ports=200, extra=["--delete-delay=0"])
    mismatches = []
    outcomes = set()
    for index, text in enumerate(mutations(400)):
        sdp = parse(text)
        assert sdp.serialize() == text
        predicted = rtpengine_error(sdp) or rtpengine_rewrite_error(sdp) or OK
        got = _offer_outcome(rtpengine.ng, f"sdp-mutation-{index}", text, False)
        outcomes.add(got)
        if got != predicted:
            mismatches.append((text, predicted, got))
    assert not mismatches, mismatches
    assert {OK, PARSE, INCOMPLETE} <= outcomes  # the corpus reaches all stages
