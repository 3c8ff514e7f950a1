"""SDES-SRTP keys the engine takes or offers in two cases 10.5 handles in its own way (both also compared
with the daemon: `plain_offer_answered_with_keys*` and `osrtp_caller_refused_reoffer_keeps_keys` in
tests/ng_sequences_osrtp.py): keys in a plain answer to a plain offer, and the re-offer of suites an
OSRTP callee refused."""

from __future__ import annotations

import re

from engine.engine_kit import T0, Engine, sdp
from karl_core.ng.commands import Command
from karl_medianode.engine import OpenStream
from karl_medianode.engine.effects import ConfigureStream
from karl_medianode.engine.streams import StreamSpec

CALLEE_LINE = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
CALLER_LINE = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
IDS = {"call-id": "s", "from-tag": "A"}


def crypto_lines(text: str) -> list[str]:
    return re.findall(r"a=crypto:[^\r]*", text)


def media_port(text: str) -> int:
    return int(re.search(r"m=audio (\d+)", text)[1])  # type: ignore[index]


def last_spec(engine: Engine, port: int) -> StreamSpec:
    specs = [
        e.spec
        for e in engine.media.effects
        if isinstance(e, OpenStream | ConfigureStream) and e.spec.port == port
    ]
    assert specs, f"no stream on port {port}"
    return specs[-1]


def test_keys_in_a_plain_answer_to_a_plain_offer_are_taken_and_offered_back_next_time() -> None:
    engine = Engine()
    offer = engine.do(Command.OFFER, T0, sdp=sdp(40000), **IDS)
    towards_callee = media_port(offer["sdp"])
    assert crypto_lines(offer["sdp"]) == []
    answer = engine.do(Command.ANSWER, T0, sdp=sdp(40002) + CALLEE_LINE + "\r\n", **IDS, **{"to-tag": "B"})
    assert answer["result"] == "ok"
    assert crypto_lines(answer["sdp"]) == [], "the plain caller is answered plain"
    spec = last_spec(engine, towards_callee)
    assert (spec.srtp_in, spec.srtp_out) == (None, None), "no key of Karl's: relayed as it was"
    callee = engine.do(Command.QUERY, T0, **{"call-id": "s"})["tags"]["B"]["medias"][0]
    assert "SDES" in callee["flags"] and callee["protocol"] == "RTP/AVP"

    reoffer = engine.do(Command.OFFER, T0 + 1, sdp=sdp(40000), **IDS, **{"to-tag": "B"})
    offered = crypto_lines(reoffer["sdp"])
    assert offered and "m=audio" in reoffer["sdp"] and " RTP/AVP " in reoffer["sdp"], "an OSRTP offer"
    assert "a=fingerprint" not in reoffer["sdp"]
    picked = next(line for line in offered if " AES_CM_128_HMAC_SHA1_80 " in line)
    tag = picked.split()[0].removeprefix("a=crypto:")
    callee_pick = f"a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:{CALLEE_LINE.split('inline:')[1]}"
    engine.do(Command.ANSWER, T0 + 1, sdp=sdp(40002) + callee_pick + "\r\n", **IDS, **{"to-tag": "B"})
    spec = last_spec(engine, towards_callee)
    assert spec.srtp_out == picked.removeprefix("a=crypto:")
    assert spec.srtp_in == callee_pick.removeprefix("a=crypto:")


def test_suites_an_osrtp_callee_refused_are_offered_again_under_the_same_keys() -> None:
    engine = Engine()
    osrtp_caller = sdp(40000) + CALLER_LINE + "\r\n"
    first = crypto_lines(engine.do(Command.OFFER, T0, sdp=osrtp_caller, **IDS)["sdp"])
    assert first[0] == CALLER_LINE and len(first) > 1, "the caller's line and Karl's other suites"
    engine.do(Command.ANSWER, T0, sdp=sdp(40002), **IDS, **{"to-tag": "B"})  # refused: plain
    again = crypto_lines(engine.do(Command.OFFER, T0 + 1, sdp=osrtp_caller, **IDS, **{"to-tag": "B"})["sdp"])
    assert again == first
