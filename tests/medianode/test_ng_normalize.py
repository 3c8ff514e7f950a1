"""Tests of the side-by-side harness itself: the normaliser (`ng_normalize`) and the runner/comparison
(`ng_sequences`). The side-by-side self-check (`test_rtpengine_vs_rtpengine`) covers them end to end
against real daemons; these pin the individual rules, including the ones that must NOT normalise."""

from __future__ import annotations

import socket
import time
from typing import Any

from karl_core.ng import bencode
from karl_testkit import NgClient, free_port
from ng_normalize import Normaliser, PortNamer, TokenNamer, ip_pattern, shape, split_lines
from ng_sequences import (
    CALL,
    NOT_RUN,
    Raw,
    Request,
    Sequence,
    StepResult,
    Transcript,
    compare_transcripts,
    run_sequence,
    substitute,
)

PROXY = "127.0.0.3"
NOW = 1_800_000_000


def normaliser(**kw: Any) -> Normaliser:
    kw.setdefault("call_ids", {"abc-1@x": "@CALL@", "abc-2@x": "@CALL2@"})
    return Normaliser(PROXY, 30000, 30199, now=lambda: NOW, **kw)


# ---- ports -----------------------------------------------------------------------------------------


def test_ports_are_numbered_by_first_appearance_and_reuse_keeps_the_name() -> None:
    ports = PortNamer(30000, 30199)
    assert ports.rtp(30040) == "PORT_1"
    assert ports.rtp(30010) == "PORT_2"
    assert ports.rtp(30040) == "PORT_1"


def test_rtcp_adjacent_to_a_known_rtp_port_is_plus_one_and_a_distant_one_is_new() -> None:
    ports = PortNamer(30000, 30199)
    assert ports.rtp(30040) == "PORT_1"
    assert ports.rtcp(30041) == "PORT_1+1"
    assert ports.rtcp(30077) == "PORT_2"
    # a port next to a derived name is a base of its own, never "PORT_1+1+1"
    assert ports.rtcp(30042) == "PORT_3"
    # an RTP port is never derived, even right after a known one
    assert ports.rtp(30078) == "PORT_4"
    # with rtcp-mux the RTCP port is the RTP port itself
    assert ports.rtcp(30040) == "PORT_1"


def test_ports_outside_the_proxy_range_are_left_alone() -> None:
    ports = PortNamer(30000, 30199)
    assert ports.rtp(6000) == 6000
    assert ports.rtcp(30200) == 30200
    assert ports.rtp(0) == 0
    assert ports.names == {}


# ---- strings and SDP -------------------------------------------------------------------------------


def test_proxy_ip_is_only_replaced_as_a_whole_address() -> None:
    pattern = ip_pattern("127.0.0.3")
    assert pattern.sub("X", "c=IN IP4 127.0.0.3") == "c=IN IP4 X"
    assert pattern.sub("X", "127.0.0.3:5000") == "X:5000"
    for other in ("127.0.0.30", "127.0.0.31", "1127.0.0.3", "127.0.0.3.1"):
        assert pattern.sub("X", other) == other


def test_sdp_lines_keep_their_endings_visible() -> None:
    assert split_lines("a\r\nb\nc") == [("a", "\r\n"), ("b", "\n"), ("c", "")]
    out = normaliser().sdp("v=0\r\ns=-\nt=0 0")
    assert out == ["v=0<CRLF>", "s=-<LF>", "t=0 0<no EOL>"]


def test_sdp_proxy_parts_are_normalised_and_peer_parts_are_not() -> None:
    n = normaliser()
    sdp = (
        "v=0\r\n"
        "o=alice 123 456 IN IP4 127.0.1.10\r\n"
        "s=-\r\n"
        f"c=IN IP4 {PROXY}\r\n"
        "t=0 0\r\n"
        "m=audio 30040 RTP/AVP 0\r\n"
        "a=sendrecv\r\n"
        f"a=rtcp:30041 IN IP4 {PROXY}\r\n"
        "m=video 30050/2 RTP/AVP 96\r\n"
        "c=IN IP4 127.0.1.10\r\n"
        "a=rtcp:6001\r\n"
    )
    assert n.sdp(sdp) == [
        "v=0<CRLF>",
        "o=alice 123 456 IN IP4 127.0.1.10<CRLF>",
        "s=-<CRLF>",
        "c=IN IP4 PROXY_IP<CRLF>",
        "t=0 0<CRLF>",
        "m=audio PORT_1 RTP/AVP 0<CRLF>",
        "a=sendrecv<CRLF>",
        "a=rtcp:PORT_1+1 IN IP4 PROXY_IP<CRLF>",
        "m=video PORT_2/2 RTP/AVP 96<CRLF>",
        "c=IN IP4 127.0.1.10<CRLF>",
        "a=rtcp:6001<CRLF>",
    ]


def test_random_strings_become_numbered_tokens_stable_within_a_run() -> None:
    n = normaliser()
    first = n.sdp(
        "a=ice-ufrag:abcd1234\r\n"
        "a=ice-pwd:0123456789abcdefghijklmnop\r\n"
        f"a=candidate:Ab12Cd34Ef56Gh78 1 UDP 2130706431 {PROXY} 30040 typ host\r\n"
        f"a=candidate:Ab12Cd34Ef56Gh78 2 UDP 2130706430 {PROXY} 30041 typ host\r\n"
        f"a=candidate:Zz 1 UDP 16777215 {PROXY} 30060 typ relay raddr {PROXY} rport 30040\r\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEYKEYKEY|2^31|1:4\r\n"
        "a=fingerprint:sha-256 AA:BB:CC\r\n"
        "a=rtpengine:0123456789ab\r\n"
    )
    assert first == [
        "a=ice-ufrag:<UFRAG_1:8><CRLF>",
        "a=ice-pwd:<PWD_1:26><CRLF>",
        "a=candidate:<FOUNDATION_1:16> 1 UDP 2130706431 PROXY_IP PORT_1 typ host<CRLF>",
        "a=candidate:<FOUNDATION_1:16> 2 UDP 2130706430 PROXY_IP PORT_1+1 typ host<CRLF>",
        "a=candidate:<FOUNDATION_2:2> 1 UDP 16777215 PROXY_IP PORT_2 typ relay"
        " raddr PROXY_IP rport PORT_1<CRLF>",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<KEY_1:9>|2^31|1:4<CRLF>",
        "a=fingerprint:sha-256 <FINGERPRINT_1:8><CRLF>",
        "a=rtpengine:<RTPENGINE_1:12><CRLF>",
    ]
    # the same credentials later in the run keep their names; new ones get new numbers
    assert n.sdp("a=ice-ufrag:abcd1234\r\na=ice-ufrag:zzzz9999\r\n") == [
        "a=ice-ufrag:<UFRAG_1:8><CRLF>",
        "a=ice-ufrag:<UFRAG_2:8><CRLF>",
    ]


def test_token_names_carry_the_length() -> None:
    tokens = TokenNamer()
    assert tokens("KEY", "x" * 40) == "<KEY_1:40>"
    assert tokens("KEY", "y" * 38) == "<KEY_2:38>"
    assert tokens("UFRAG", "x" * 40) == "<UFRAG_1:40>"


# ---- replies ---------------------------------------------------------------------------------------


def query_reply(tag_order: list[str], created: int = NOW) -> dict[str, Any]:
    monologues = {
        "caller": {"tag": "caller", "created": created, "medias": [stream_media(30014)]},
        "callee": {"tag": "callee", "created": created, "medias": [stream_media(30000)]},
    }
    return {
        "created": created,
        "created_us": 123456,
        "last signal": created,
        "tags": {t: monologues[t] for t in tag_order},
        "result": "ok",
    }


def stream_media(port: int) -> dict[str, Any]:
    return {
        "index": 1,
        "flags": ["send", "recv", "initialized"],
        "streams": [
            {"local port": port, "local address": PROXY, "endpoint": {"port": 6000}, "last packet": NOW},
            {"local port": port + 1, "local address": PROXY, "endpoint": {"port": 6001}, "last packet": NOW},
        ],
    }


def test_query_reply_normalisation() -> None:
    out = normaliser().reply({"command": "query"}, query_reply(["caller", "callee"]))
    assert out["created"] == out["last signal"] == "<time>"
    assert out["created_us"] == "<us>"
    callee_streams = out["tags"]["callee"]["medias"][0]["streams"]
    assert [s["local port"] for s in callee_streams] == ["PORT_1", "PORT_1+1"]
    assert callee_streams[0]["local address"] == "PROXY_IP"
    assert callee_streams[0]["endpoint"] == {"port": 6000}
    assert callee_streams[0]["last packet"] == "<time>"
    assert out["tags"]["caller"]["medias"][0]["flags"] == ["initialized", "recv", "send"]


def test_dictionary_key_order_does_not_change_the_result() -> None:
    a = normaliser().reply({"command": "query"}, query_reply(["caller", "callee"]))
    b = normaliser().reply({"command": "query"}, query_reply(["callee", "caller"]))
    assert a == b


def test_implausible_timestamps_are_kept_so_that_they_show() -> None:
    out = normaliser().reply({"command": "query"}, query_reply(["caller"], created=0))
    assert out["created"] == 0
    out = normaliser().reply({"command": "query"}, {**query_reply(["caller"]), "created": "1800000000"})
    assert out["created"] == "1800000000"


def test_list_keeps_only_this_runs_calls() -> None:
    reply = {"calls": ["someone-else", "abc-2@x", "abc-1@x"], "result": "ok"}
    assert normaliser().reply({"command": "list"}, reply) == {"calls": ["@CALL2@", "@CALL@"], "result": "ok"}


def test_errors_and_warnings_are_compared_verbatim() -> None:
    reply = {"result": "error", "error-reason": "Unknown call-id"}
    assert normaliser().reply({"command": "query"}, reply) == reply


def test_statistics_compare_shape_not_values() -> None:
    def stats(sessions: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "statistics": {
                "currentstatistics": {"sessionsown": sessions, **(extra or {})},
                "totalstatistics": {"uptime": "12"},
                "controlstatistics": {
                    "proxies": [{"proxy": "127.0.0.1", "offercount": 3}],
                    "totaloffercount": 3,
                },
                "interfaces": [{"name": "default", "address": PROXY}],
            },
            "result": "ok",
        }

    n = normaliser()
    assert n.reply({"command": "statistics"}, stats(1)) == n.reply({"command": "statistics"}, stats(99))
    assert n.reply({"command": "statistics"}, stats(1)) != n.reply({"command": "statistics"}, stats("1"))
    assert n.reply({"command": "statistics"}, stats(1)) != n.reply(
        {"command": "statistics"}, stats(1, {"sessionsforeign": 0})
    )
    assert shape(stats(1)["statistics"])["sections"] == [
        "controlstatistics",
        "currentstatistics",
        "interfaces",
        "totalstatistics",
    ]


def test_raw_replies() -> None:
    n = normaliser()
    assert n.raw_reply(None, b"c1") == "<no reply>"
    pong = b"c1 " + bencode.encode({"result": "pong"})
    assert n.raw_reply(pong, b"c1") == {"cookie": "<COOKIE>", "bencode": {"result": "pong"}}
    assert n.raw_reply(pong, b"c2")["cookie"] == "<other cookie b'c1'>"
    assert n.raw_reply(b'c1 {"result":"pong"}', b"c1") == {"cookie": "<COOKIE>", "json": {"result": "pong"}}
    assert n.raw_reply(b"c1 d6:result", b"c1") == {"cookie": "<COOKIE>", "undecodable": "b'd6:result'"}
    assert n.raw_reply(b"c1", b"c1") == {"cookie": "<COOKIE>", "undecodable": "b'c1'"}
    # an NG request's good reply is shown plain, anything else with what was wrong
    assert n.request_reply({"command": "ping"}, pong, b"c1") == {"result": "pong"}
    assert n.request_reply({"command": "ping"}, None, b"c1") == "<no reply>"
    assert n.request_reply({"command": "ping"}, pong, b"c9")["cookie"] == "<other cookie b'c1'>"


# ---- runner and comparison -------------------------------------------------------------------------


def test_substitute_replaces_placeholders_everywhere() -> None:
    body = {"command": "delete", "call-id": CALL, "x": [CALL, {"k": f"pre-{CALL}"}], "n": 1}
    assert substitute(body, {CALL: "real"}) == {
        "command": "delete",
        "call-id": "real",
        "x": ["real", {"k": "pre-real"}],
        "n": 1,
    }


def transcript(server: str, *normalised: Any) -> Transcript:
    sequence = Sequence(
        "demo",
        tuple(Request({"command": "offer", "sdp": "v=0\r\n"}, f"step {i}") for i in range(len(normalised))),
    )
    t = Transcript(sequence, server)
    for i, (step, value) in enumerate(zip(sequence.steps, normalised, strict=True), start=1):
        t.results.append(
            StepResult(i, step, dict(step.body) if isinstance(step, Request) else None, None, value)
        )
    return t


def test_equal_transcripts_compare_clean() -> None:
    reply = {"result": "ok", "sdp": ["v=0<CRLF>"]}
    assert compare_transcripts(transcript("rtpengine", reply), transcript("karl", reply)) is None


def test_a_difference_is_reported_with_request_replies_and_sdp_diff() -> None:
    expected = {
        "result": "ok",
        "sdp": ["v=0<CRLF>", "m=audio PORT_1 RTP/AVP 0<CRLF>", "a=rtcp:PORT_1+1<CRLF>"],
    }
    actual = {"result": "ok", "sdp": ["v=0<CRLF>", "m=audio PORT_1 RTP/AVP 0<CRLF>", "a=rtcp:PORT_2<LF>"]}
    same = {"result": "pong"}
    report = compare_transcripts(transcript("rtpengine", same, expected), transcript("karl", same, actual))
    assert report is not None
    assert "1 of 2 steps differ" in report
    assert "=== step 2/2: offer — step 1 ===" in report
    assert '"v=0<CRLF>"' in report  # the request's SDP, shown as lines
    assert "differing paths: $.sdp[2]" in report
    assert "-a=rtcp:PORT_1+1<CRLF>" in report
    assert "+a=rtcp:PORT_2<LF>" in report
    assert "step 1/2" not in report


def test_a_server_that_stops_answering_ends_the_run_quickly() -> None:
    """A real UDP socket that nobody answers: the step is recorded as unanswered, the rest as not run."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", port))  # holds the port, never replies

        class Silent:
            name = "silent"
            ng = NgClient(("127.0.0.1", port))
            media_ip = PROXY
            port_min, port_max = 30000, 30199

        server = Silent()
        sequence = Sequence(
            "dead", (Request({"command": "ping"}), Request({"command": "ping"}), Raw(b"@COOKIE@ de"))
        )
        started = time.monotonic()
        result = run_sequence(server, sequence, timeout=0.2)
        server.ng.close()
    assert [r.normalised for r in result.results] == ["<no reply>", NOT_RUN, NOT_RUN]
    assert time.monotonic() - started < 3
