"""Every RTCP port Karl writes in an SDP (`a=rtcp:<port>`) is one it holds a socket on: when a party's
leg needed one port (rtcp-mux) and needs a pair after a re-offer, Karl takes a new pair, as 10.5 does,
instead of advertising port + 1, which another call may hold."""

from __future__ import annotations

import re
from typing import Any

from engine.engine_kit import T0, Engine
from karl_core.ng.commands import Command

CALLER = (
    "v=0\r\no=a 1 {v} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\n{mux}a=sendrecv\r\n"
)
CALLEE = (
    "v=0\r\no=b 1 {v} IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
    "m=audio 40002 RTP/AVP 0\r\na=sendrecv\r\n"
)
IDS = {"call-id": "c", "from-tag": "A"}


def ports_written(text: str) -> tuple[int, int | None]:
    port = int(re.search(r"m=audio (\d+)", text)[1])  # type: ignore[index]
    rtcp = re.search(r"a=rtcp:(\d+)", text)
    return port, int(rtcp[1]) if rtcp else None


def held(engine: Engine) -> set[int]:
    return set(engine.media.open)


def exchange(engine: Engine, version: int, offer_options: dict[str, Any]) -> tuple[str, str]:
    ids: dict[str, Any] = {**IDS, **({"to-tag": "B"} if version > 1 else {})}
    sdp = CALLER.format(v=version, mux="a=rtcp-mux\r\n")
    offer = engine.do(Command.OFFER, T0 + version, sdp=sdp, **ids, **offer_options)
    answer = engine.do(Command.ANSWER, T0 + version, sdp=CALLEE.format(v=version), **{**IDS, "to-tag": "B"})
    assert offer["result"] == answer["result"] == "ok"
    return offer["sdp"], answer["sdp"]


def test_a_caller_on_one_port_whose_mux_is_refused_later_gets_a_pair_it_holds() -> None:
    engine = Engine()
    _, first = exchange(engine, 1, {"rtcp-mux": ["demux"]})  # the caller's mux taken: one port
    single, _ = ports_written(first)
    _, second = exchange(engine, 2, {"rtcp-mux": ["reject"]})
    port, rtcp = ports_written(second)
    assert rtcp is not None and rtcp != port
    assert {port, rtcp} <= held(engine), "Karl holds every port it advertises"
    assert port != single, "a new pair, as 10.5 gives"


def test_a_callee_on_one_port_by_require_that_needs_a_pair_later_gets_one_it_holds() -> None:
    engine = Engine()
    first, _ = exchange(engine, 1, {"rtcp-mux": ["require"]})  # one port towards the callee
    second, _ = exchange(engine, 2, {"rtcp-mux": ["offer"]})
    port, rtcp = ports_written(second)
    assert rtcp is not None and {port, rtcp} <= held(engine)
    assert port != ports_written(first)[0]
