"""A failed offer or answer changes nothing (a deliberate difference from rtpengine 10.5, which ends the
call): media keeps flowing on the old ports and `query` reads the same before and after. A failed first
offer leaves no call and no port behind. Real Karl processes, real UDP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from karl_testkit import NgServer, Party, Talk, bound_ports, established, port_of, sdp, wait_for

VOLATILE = {"packets", "bytes", "errors", "last packet", "SSRC", "in-tos", "last-seq"}


def steady(reply: Any) -> Any:
    """`query` without what moves with the media itself (counters, last packet times, SSRCs)."""
    if isinstance(reply, dict):
        return {k: steady(v) for k, v in reply.items() if k not in VOLATILE}
    if isinstance(reply, list):
        return [steady(v) for v in reply]
    return reply


def audio_video_sdp(port: int, video_port: int) -> str:
    return sdp(port) + f"m=video {video_port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n"


def test_a_reinvite_adding_video_with_the_range_full_fails_and_the_audio_never_stops(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    # 8 ports: the call's audio takes 4 (a pair towards each party), another call the other 4
    node = karl_factory(ports=8)
    a, b, c, d = parties(), parties(), parties(), parties()
    to_a_side, to_b_side = established(node, a, b, "main")
    established(node, c, d, "filler")
    query = {"command": "query", "call-id": "main"}
    with Talk(a, to_a_side, b, to_b_side).running() as talk:
        before = node.ng.request(query)
        reinvite = node.ng.request(
            {
                "command": "offer",
                "call-id": "main",
                "from-tag": "A",
                "sdp": audio_video_sdp(a.port, a.port + 2),
            }
        )
        assert reinvite == {"result": "error", "error-reason": "Ran out of ports"}
        talk.flowing()  # still relayed both ways, on the same ports
        after = node.ng.request(query)
        # the callee's answer to the failed re-offer: the call still knows only audio
        also = node.ng.request(
            {"command": "answer", "call-id": "main", "from-tag": "A", "to-tag": "B", "sdp": sdp(b.port)}
        )
        assert also["result"] == "ok" and port_of(also) == to_a_side
        talk.flowing()
    assert steady(after) == steady(before)
    assert after["totals"]["RTP"]["packets"] > before["totals"]["RTP"]["packets"]
    # media was never interrupted: no silence longer than a loaded machine's scheduling hiccup
    assert max(talk.longest_gap) < 0.5, talk.longest_gap
    assert {call for call in node.ng.request({"command": "list"})["calls"]} == {"main", "filler"}


def test_every_kind_of_failure_on_an_established_call_leaves_it_as_it_was(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    node = karl_factory(ports=40, KARL_MAX_MEDIA="4")
    a, b = parties(), parties()
    to_a_side, to_b_side = established(node, a, b, "call")
    query = {"command": "query", "call-id": "call"}
    # no media: rtpengine's rewrite fails after the call's parties were set up
    no_media = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    # an a=rtpmap before the section's c=: the rewrite fails after the ports were opened and wired
    out_of_order = (
        f"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio {a.port} RTP/AVP 0 8\r\n"
        "a=rtpmap:8 PCMA/8000\r\nc=IN IP4 127.0.0.1\r\nm=video 5000 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\n"
    )
    five = sdp(a.port) + "".join(f"m=audio {a.port + 2 * i} RTP/AVP 0\r\n" for i in range(1, 5))
    crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "\r\n"
    secure = sdp(a.port).replace("RTP/AVP", "RTP/SAVP") + crypto
    keyless = sdp(a.port).replace("RTP/AVP", "RTP/SAVP")
    failures: list[tuple[dict[str, Any], str]] = [
        ({"command": "offer", "from-tag": "A", "sdp": no_media}, "Error rewriting SDP"),
        ({"command": "offer", "from-tag": "A", "sdp": out_of_order}, "Error rewriting SDP"),
        ({"command": "answer", "from-tag": "A", "to-tag": "B", "sdp": out_of_order}, "Error rewriting SDP"),
        ({"command": "offer", "from-tag": "A", "sdp": five}, "Too many media in SDP: 5 (the limit is 4)"),
        ({"command": "answer", "from-tag": "A", "to-tag": "B", "sdp": five}, "Too many media in SDP"),
        (
            # SDES to plain with unencrypted SRTCP, which Karl's SRTP library cannot do
            {
                "command": "offer",
                "from-tag": "A",
                "sdp": secure,
                "transport-protocol": "RTP/AVP",
                "SDES": ["unencrypted_srtcp"],
            },
            "SRTP termination not supported by Karl yet",
        ),
        (
            # SRTP keyed by neither SDES nor DTLS, relayed as plain RTP
            {"command": "offer", "from-tag": "A", "sdp": keyless, "transport-protocol": "RTP/AVP"},
            "SRTP termination not supported by Karl yet",
        ),
        (
            {"command": "answer", "from-tag": "A", "to-tag": "B", "sdp": secure},
            "SRTP termination not supported by Karl yet",
        ),
        # an offer from a new party (a fork): new parties and ports, then the rewrite fails
        ({"command": "offer", "from-tag": "C", "sdp": out_of_order}, "Error rewriting SDP"),
        ({"command": "answer", "from-tag": "A", "to-tag": "D", "sdp": out_of_order}, "Error rewriting SDP"),
    ]
    with Talk(a, to_a_side, b, to_b_side).running() as talk:
        before = node.ng.request(query)
        for request, reason in failures:
            reply = node.ng.request({**request, "call-id": "call"})
            assert reply["result"] == "error", (request, reply)
            assert reply["error-reason"].startswith(reason), (request, reply)
            assert steady(node.ng.request(query)) == steady(before), request
        talk.flowing()
    assert max(talk.longest_gap) < 0.5, talk.longest_gap


def test_a_reply_too_large_for_a_datagram_is_refused_and_the_re_offer_rolled_back(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    """An offer just under the datagram limit whose rewritten SDP (Karl adds a=rtcp and direction lines
    to every medium) no longer fits in one: refused with a clear error instead of never answered."""
    node = karl_factory(ports=400, KARL_MAX_MEDIA="60")
    a, b = parties(), parties()
    established(node, a, b, "big")
    before = node.ng.request({"command": "query", "call-id": "big"})
    base = sdp(a.port)
    # 59 more media, the whole request 64,900 bytes: under the limit of 65,507, the reply over it
    chunk = (64_900 - len(base)) // 59
    medias = "".join(
        (head := f"m=audio {a.port + 2 * i} RTP/AVP 0\r\n")
        + "a=x-pad:"
        + "p" * (chunk - len(head) - 10)
        + "\r\n"
        for i in range(1, 60)
    )
    body = base + medias
    assert 64_000 < len(body) < 65_000
    reply = node.ng.request({"command": "offer", "call-id": "big", "from-tag": "A", "sdp": body})
    assert reply == {"result": "error", "error-reason": "Reply too large for one NG datagram"}
    assert node.ng.request({"command": "query", "call-id": "big"}) == before
    # and the first offer of a new call: nothing is left behind
    reply = node.ng.request({"command": "offer", "call-id": "big-new", "from-tag": "A", "sdp": body})
    assert reply["error-reason"] == "Reply too large for one NG datagram"
    assert node.ng.request({"command": "list"})["calls"] == ["big"]
    wait_for(lambda: len(bound_ports(node)) == 4, timeout=5)
    assert "does not fit in a datagram" in node.log()


def test_a_failed_first_offer_leaves_no_call_and_no_port(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    node = karl_factory(ports=10)
    a = parties()
    three = sdp(a.port) + "".join(f"m=audio {a.port + 2 * i} RTP/AVP 0\r\n" for i in (1, 2))
    reply = node.ng.request({"command": "offer", "call-id": "too-big", "from-tag": "A", "sdp": three})
    assert reply == {"result": "error", "error-reason": "Ran out of ports"}
    assert node.ng.request({"command": "list"})["calls"] == []
    wait_for(lambda: bound_ports(node) == [], timeout=5)
    stats = node.ng.request({"command": "statistics"})["statistics"]
    assert stats["currentstatistics"]["sessionsown"] == 0
