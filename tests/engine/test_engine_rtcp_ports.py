"""Every RTCP port Karl writes in an SDP (`a=rtcp:<port>`) is one it holds a socket on: when a party's
leg needed one port (rtcp-mux) and needs a pair after a re-offer, Karl takes a new pair, as 10.5 does,
instead of advertising port + 1, which another call may hold."""

from __future__ import annotations

import re
from typing import Any

from engine.engine_kit import T0, Engine
from karl_core.ng.commands import Command
from karl_core.session import CallState, Endpoint

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


def test_a_pair_first_made_as_one_port_is_made_anew_at_every_exchange_and_none_leaks() -> None:
    """10.5's endpoint map keeps the count of ports it was made with (one): asked for a pair, it makes a
    new one each time. Karl does the same, and gives back the ports of the pair before."""
    engine = Engine()
    exchange(engine, 1, {"rtcp-mux": ["demux"]})
    pairs = []
    for version in (2, 3, 4):
        _, answer = exchange(engine, version, {"rtcp-mux": ["reject"]})
        port, rtcp = ports_written(answer)
        assert rtcp == port + 1 and {port, rtcp} <= held(engine)
        pairs.append(port)
        assert not any(earlier in held(engine) for earlier in pairs[:-1]), "the pair before is closed"
    assert len(set(pairs)) == 3, "a new pair at each exchange, as 10.5 gives"
    assert len(held(engine)) == 4, "two pairs in all: one towards each party"


def test_the_count_a_pair_was_made_with_survives_the_call_store() -> None:
    engine = Engine()
    exchange(engine, 1, {"rtcp-mux": ["demux"]})
    _, before = exchange(engine, 2, {"rtcp-mux": ["reject"]})
    state = engine.core.snapshot("c")
    assert state is not None
    other = Engine()  # (the node restarted on the same host: the call keeps its ports)
    _call, effects = other.core.restore(CallState.from_dict(state.to_dict()), T0 + 20)
    other.media.apply(effects)
    restored_port = ports_written(before)[0]
    assert restored_port in held(other)
    _, after = exchange(other, 3, {"rtcp-mux": ["reject"]})
    port, rtcp = ports_written(after)
    assert rtcp is not None and {port, rtcp} <= held(other)
    assert port != restored_port and len(held(other)) == 4, "made anew after a restore too"


def test_a_muxing_partys_rtcp_on_its_rtp_port_keeps_the_rtcp_endpoint_of_before() -> None:
    """RFC 5761's `a=rtcp:<RTP port>`: 10.5 leaves the RTCP stream's endpoint where the party's earlier
    SDP put it (port + 1 here) and shows none advertised; kept in the call's state."""
    engine = Engine()
    exchange(engine, 1, {"rtcp-mux": ["demux"]})
    sdp = CALLER.format(v=2, mux="a=rtcp-mux\r\na=rtcp:40000\r\n")
    assert engine.do(Command.OFFER, T0 + 2, sdp=sdp, **IDS, **{"to-tag": "B"})["result"] == "ok"
    engine.do(Command.ANSWER, T0 + 2, sdp=CALLEE.format(v=2), **{**IDS, "to-tag": "B"})
    state = engine.core.snapshot("c")
    assert state is not None
    caller = CallState.from_dict(state.to_dict()).by_tag("A")
    assert caller is not None
    assert caller.medias[0].rtcp_endpoint_kept == Endpoint("127.0.0.1", 40001)
    rtcp = engine.do(Command.QUERY, T0 + 3, **{"call-id": "c"})["tags"]["A"]["medias"][0]["streams"][1]
    assert rtcp["endpoint"]["port"] == 40001 and rtcp["advertised endpoint"] == {}
