"""Trickle ICE in the engine, sans-IO: candidates sent later in SDP fragments (NG `offer` with the flag
`fragment`), for a call that exists and for one that does not exist yet."""

from __future__ import annotations

from engine.engine_kit import T0, Engine, sdp
from engine.test_engine_ice import CALLER, CALLER_RTP, ice_sdp, sent
from karl_core.ng.commands import Command

LATE = ("198.51.100.9", 6100)
FRAGMENT = (
    "a=ice-options:trickle\r\n"
    f"a=ice-ufrag:{CALLER.ufrag}\r\na=ice-pwd:{CALLER.pwd}\r\n"
    "m=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
    f"a=candidate:2 1 UDP 1694498815 {LATE[0]} {LATE[1]} typ srflx raddr 127.0.0.1 rport 40000\r\n"
    "a=end-of-candidates\r\n"
)


def fragment(engine: Engine, now: float, body: str = FRAGMENT, call_id: str = "c") -> dict[str, object]:
    return engine.do(
        Command.OFFER, now, **{"call-id": call_id, "from-tag": "A", "sdp": body, "flags": ["fragment"]}
    )


def trickling_offer(engine: Engine, now: float, call_id: str = "c") -> None:
    """The caller offers ICE with trickle; a plain callee answers."""
    body = ice_sdp(CALLER_RTP[1], CALLER).replace("a=sendrecv\r\n", "a=sendrecv\r\na=ice-options:trickle\r\n")
    ids = {"call-id": call_id, "from-tag": "A"}
    assert engine.do(Command.OFFER, now, sdp=body, **ids)["result"] == "ok"
    assert (
        engine.do(Command.ANSWER, now, sdp=sdp(40002, "127.0.0.3"), **ids, **{"to-tag": "B"})["result"]
        == "ok"
    )


def checked_addresses(engine: Engine, start: float, seconds: float = 1.0) -> set[tuple[str, int]]:
    seen: set[tuple[str, int]] = set()
    now = start
    while now < start + seconds:
        due = engine.core.next_ice_deadline()
        if due is None:
            break
        now = max(now, due)
        seen |= {check.destination for check in sent(engine.core.handle_ice_timer(now))}
    return seen


def test_a_trickled_candidate_is_checked_and_the_request_answered_ok_without_sdp() -> None:
    engine = Engine()
    trickling_offer(engine, T0)
    assert LATE not in checked_addresses(engine, T0)
    assert fragment(engine, T0 + 1) == {"result": "ok"}
    assert LATE in checked_addresses(engine, T0 + 1)


def test_a_fragment_before_its_call_waits_three_seconds_for_it() -> None:
    engine = Engine()
    assert fragment(engine, T0, call_id="early") == {"result": "ok"}
    assert engine.core.find_call("early") is None, "a fragment creates no call"
    trickling_offer(engine, T0 + 2, call_id="early")
    assert LATE in checked_addresses(engine, T0 + 2)
    # one that waited longer than rtpengine's 3 s is gone
    fragment(engine, T0, call_id="late")
    trickling_offer(engine, T0 + 3.5, call_id="late")
    call = engine.core.find_call("late")
    assert call is not None
    caller = call.state.by_tag("A")
    assert caller is not None and all(LATE[0] not in c for c in caller.medias[0].ice_candidates)


def test_candidates_of_another_ice_generation_are_ignored() -> None:
    engine = Engine()
    trickling_offer(engine, T0)
    fragment(engine, T0 + 1, FRAGMENT.replace(CALLER.ufrag, "oldUfrag"))
    assert LATE not in checked_addresses(engine, T0 + 1)
