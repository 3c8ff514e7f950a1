"""ICE in the engine, sans-IO: the agents `IceSessions` keeps for each call, driven through the engine's
own doors (`handle`, `handle_stun`, `handle_ice_timer`, `restore`) with times the test chooses and STUN
datagrams built with aioice, no socket anywhere.

The scene throughout: the caller (tag A) offers ICE, the callee (tag B) answers plain RTP (unless a test
says otherwise). Karl terminates ICE towards the caller, as rtpengine does: its answer carries Karl's own
credentials and host candidates, Karl answers the caller's checks on its sockets, sends its own checks
as the controlled agent (Karl answered the offer) and tells the data plane where media goes when the
caller nominates a pair.
"""

from __future__ import annotations

from typing import Any

import pytest
from aioice import stun

from engine.engine_kit import MEDIA_IP, T0, Engine, sdp
from karl_core.ng.commands import Command
from karl_core.session import CallState
from karl_medianode.engine.effects import CloseStream, Effect, SendDatagram, SetPeer
from karl_medianode.ice.agent import IceAgent, is_stun
from karl_medianode.ice.credentials import IceCredentials, host_candidate

Address = tuple[str, int]

CALLER = IceCredentials("callerUf", "callerPasswordcallerPasswd")
RESTARTED = IceCredentials("restartU", "restartPasswordrestartPass")
CALLEE = IceCredentials("calleeUf", "calleePasswordcalleePasswd")
FORK = IceCredentials("secondFk", "secondForkPasswordsecondFk")
CALLER_RTP: Address = ("127.0.0.1", 40000)
CALLER_RTCP: Address = ("127.0.0.1", 40001)
CALLEE_RTP: Address = ("127.0.0.3", 40002)
FORK_RTP: Address = ("127.0.0.4", 40020)


# ---------------------------------------------------------------------- SDP and signalling


def ice_sdp(port: int, credentials: IceCredentials, address: str = "127.0.0.1", lite: bool = False) -> str:
    """A party's SDP with ICE: credentials and one host candidate per component (no rtcp-mux)."""
    text = (
        sdp(port, address)
        + f"a=ice-ufrag:{credentials.ufrag}\r\na=ice-pwd:{credentials.pwd}\r\n"
        + f"a=candidate:1 1 UDP 2130706431 {address} {port} typ host\r\n"
        + f"a=candidate:1 2 UDP 2130706430 {address} {port + 1} typ host\r\n"
    )
    return text.replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n") if lite else text


def offer(engine: Engine, now: float, body: str, call_id: str = "c") -> str:
    reply = engine.do(Command.OFFER, now, **{"call-id": call_id, "from-tag": "A", "sdp": body})
    assert reply["result"] == "ok"
    text: str = reply["sdp"]
    return text


def answer(engine: Engine, now: float, body: str | None = None, call_id: str = "c", to_tag: str = "B") -> str:
    body = sdp(CALLEE_RTP[1], CALLEE_RTP[0]) if body is None else body
    fields: dict[str, Any] = {"call-id": call_id, "from-tag": "A", "to-tag": to_tag, "sdp": body}
    reply = engine.do(Command.ANSWER, now, **fields)
    assert reply["result"] == "ok"
    text: str = reply["sdp"]
    return text


def credentials_in(text: str) -> IceCredentials:
    """Karl's credentials in an SDP it sent."""
    values = dict(
        line[2:].split(":", 1)
        for line in text.splitlines()
        if line.startswith(("a=ice-ufrag:", "a=ice-pwd:"))
    )
    return IceCredentials(values["ice-ufrag"], values["ice-pwd"])


def port_in(text: str) -> int:
    """The port of the (first) `m=` line of an SDP Karl sent."""
    return int(text.split("m=audio ", 1)[1].split()[0])


def ice_call(engine: Engine, now: float = T0, call_id: str = "c") -> tuple[IceCredentials, int]:
    """The caller offers ICE, the callee answers plain: Karl's credentials towards the caller and
    Karl's port for the caller's RTP, as Karl's answer to the caller says them."""
    offer(engine, now, ice_sdp(CALLER_RTP[1], CALLER), call_id)
    reply = answer(engine, now, call_id=call_id)
    return credentials_in(reply), port_in(reply)


def agent_of(engine: Engine, tag: str = "A", call_id: str = "c") -> IceAgent | None:
    """Karl's agent towards the party `tag` (first media)."""
    call = engine.core.find_call(call_id)
    assert call is not None
    party = call.state.by_tag(tag)
    assert party is not None
    return engine.core.ice.agent(call_id, (party.uid, 1))


def caller_agent(engine: Engine, call_id: str = "c") -> IceAgent:
    agent = agent_of(engine, "A", call_id)
    assert agent is not None
    return agent


# ---------------------------------------------------------------------- STUN


def binding_request(
    karl: IceCredentials,
    theirs: str,
    *,
    use_candidate: bool = False,
    key: str | None = None,
    controlling: bool = True,
) -> tuple[bytes, bytes]:
    """A party's check of Karl's socket: USERNAME `<Karl's ufrag>:<theirs>`, MESSAGE-INTEGRITY keyed by
    `key` (Karl's password unless given); from the offerer (controlling) unless said otherwise. The
    datagram and its transaction id."""
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{karl.ufrag}:{theirs}"
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = 0x1234
    if use_candidate:
        request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity((karl.pwd if key is None else key).encode())
    return bytes(request), request.transaction_id


def success_for(check: SendDatagram, key: str) -> bytes:
    """The party's success response to one of Karl's checks (keyed by the party's password)."""
    request = stun.parse_message(check.data)
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
    response.attributes["XOR-MAPPED-ADDRESS"] = (MEDIA_IP, check.port)
    response.add_message_integrity(key.encode())
    return bytes(response)


def sent(effects: list[Effect]) -> list[SendDatagram]:
    return [e for e in effects if isinstance(e, SendDatagram)]


def karls_check_answered(engine: Engine, port: int, source: Address, pwd: str, now: float) -> list[Effect]:
    """Run Karl's ICE timers until it checks `source` from `port` (its triggered check after a
    request), answer that check as the party (keyed by `pwd`); the effects of the answer."""
    core = engine.core
    for _ in range(100):
        due = core.next_ice_deadline()
        assert due is not None, "Karl checks nothing"
        now = max(now, due)
        for check in sent(core.handle_ice_timer(now)):
            if check.port == port and check.destination == source:
                return core.handle_stun(port, success_for(check, pwd), source, now)
    raise AssertionError(f"Karl never checked {source} from {port}")


def success_to(effects: list[Effect], port: int, source: Address, transaction: bytes, key: str) -> None:
    """`effects` hold exactly one datagram: an authenticated Binding success response from `port` to
    `source` for `transaction`, saying it came from `source`."""
    datagrams = sent(effects)
    assert len(datagrams) == 1, effects
    (datagram,) = datagrams
    assert (datagram.port, datagram.destination) == (port, source)
    response = stun.parse_message(datagram.data)
    assert (response.message_method, response.message_class) == (stun.Method.BINDING, stun.Class.RESPONSE)
    assert response.transaction_id == transaction
    assert response.attributes["XOR-MAPPED-ADDRESS"] == source
    assert response.check_message_integrity(key.encode()), "the response is keyed by Karl's password"


def first_checks(engine: Engine, count: int, until: float) -> list[SendDatagram]:
    """Run the ICE timer at its deadlines until Karl has sent `count` checks (one per 20 ms slot)."""
    checks: list[SendDatagram] = []
    while len(checks) < count:
        deadline = engine.core.next_ice_deadline()
        assert deadline is not None and deadline <= until, "Karl's checks are due"
        checks += sent(engine.core.handle_ice_timer(deadline))
    return checks


# ---------------------------------------------------------------------- 1. answering the caller's checks


def test_karl_answers_an_ice_offer_with_its_own_credentials_and_answers_checks_on_its_port() -> None:
    engine = Engine()
    offer(engine, T0, ice_sdp(CALLER_RTP[1], CALLER))
    reply = answer(engine, T0)
    karl, port = credentials_in(reply), port_in(reply)
    assert karl.ufrag != CALLER.ufrag and karl.pwd != CALLER.pwd
    assert (len(karl.ufrag), len(karl.pwd)) == (8, 26)
    assert f"a=candidate:{host_candidate(MEDIA_IP, port, 1)}" in reply.splitlines()
    assert "a=candidate:1 1 UDP" not in reply, "the caller's own candidates are not passed back"
    call = engine.core.find_call("c")
    assert call is not None
    caller = call.state.by_tag("A")
    assert caller is not None
    sockets = call.ports[(caller.uid, 1)]
    assert sockets.rtp is not None and sockets.rtp.port == port, "the answer names the caller's socket"
    agent = caller_agent(engine)
    assert agent.local == karl and agent.remote == CALLER
    assert not agent.controlling, "Karl answered the offer: it is the controlled agent"
    assert engine.core.ice.agent_count() == 1, "the plain callee gets no agent"

    # a check without USE-CANDIDATE: answered, nothing selected yet
    data, transaction = binding_request(karl, CALLER.ufrag)
    effects = engine.core.handle_stun(port, data, CALLER_RTP, T0 + 0.01)
    success_to(effects, port, CALLER_RTP, transaction, karl.pwd)
    assert not any(isinstance(e, SetPeer) for e in effects)

    # the caller nominates this pair: answered; media for the caller goes where the check came from
    # once Karl's own check of that address succeeded (a request alone proves nothing of its source)
    data, transaction = binding_request(karl, CALLER.ufrag, use_candidate=True)
    effects = engine.core.handle_stun(port, data, CALLER_RTP, T0 + 0.02)
    success_to(effects, port, CALLER_RTP, transaction, karl.pwd)
    assert not any(isinstance(e, SetPeer) for e in effects) and agent.selected == {}
    effects = karls_check_answered(engine, port, CALLER_RTP, CALLER.pwd, T0 + 0.02)
    assert [e for e in effects if isinstance(e, SetPeer)] == [SetPeer(port, CALLER_RTP)]
    assert agent.selected == {1: CALLER_RTP}
    assert engine.core.ice.totals.requests == 2 and engine.core.ice.totals.dropped == 0


def test_checks_with_a_wrong_password_or_ufrag_are_dropped_and_counted() -> None:
    engine = Engine()
    karl, port = ice_call(engine)
    totals = engine.core.ice.totals
    bad_key, _ = binding_request(karl, CALLER.ufrag, use_candidate=True, key="wrongPasswordwrongPassword")
    assert engine.core.handle_stun(port, bad_key, CALLER_RTP, T0 + 0.01) == []
    assert totals.dropped == 1
    other_party, _ = binding_request(karl, "someoneE", use_candidate=True)  # Karl's pwd, not the caller
    assert engine.core.handle_stun(port, other_party, CALLER_RTP, T0 + 0.01) == []
    assert totals.dropped == 2
    assert engine.core.handle_stun(port, b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"x" * 5, CALLER_RTP, T0) == []
    assert totals.dropped == 3, "a malformed datagram is dropped too"
    assert totals.requests == 0 and caller_agent(engine).selected == {}, "nothing was selected"


# ---------------------------------------------------------------------- 2. Karl's own checks


def test_after_the_answer_karl_checks_the_callers_candidates_as_the_controlled_agent() -> None:
    engine = Engine()
    karl, port = ice_call(engine)
    core = engine.core
    assert core.next_ice_deadline() == T0, "checks start as soon as the answer is committed"

    checks = first_checks(engine, 2, T0 + 0.05)
    assert {(c.port, c.destination) for c in checks} == {(port, CALLER_RTP), (port + 1, CALLER_RTCP)}, (
        "each of Karl's sockets checks the caller's candidate of its component"
    )
    for check in checks:
        assert is_stun(check.data)
        request = stun.parse_message(check.data)
        assert (request.message_method, request.message_class) == (stun.Method.BINDING, stun.Class.REQUEST)
        assert request.attributes["USERNAME"] == f"{CALLER.ufrag}:{karl.ufrag}"
        assert "ICE-CONTROLLED" in request.attributes and "ICE-CONTROLLING" not in request.attributes
        assert "USE-CANDIDATE" not in request.attributes, "the controlled agent never nominates"
        assert request.check_message_integrity(CALLER.pwd.encode()), "keyed by the caller's password"

    # the caller answers the RTP check: accepted, and that check is not sent again
    rtp_check = next(c for c in checks if c.destination == CALLER_RTP)
    assert core.handle_stun(port, success_for(rtp_check, CALLER.pwd), CALLER_RTP, T0 + 0.03) == []
    assert core.ice.totals.dropped == 0
    retransmitted = sent(core.handle_ice_timer(T0 + 1.0))
    assert CALLER_RTP not in {d.destination for d in retransmitted}
    assert CALLER_RTCP in {d.destination for d in retransmitted}, "the unanswered check is sent again"


# ---------------------------------------------------------------------- 3. concurrency


@pytest.mark.parametrize("delay", [0, 5], ids=["at-once", "after-the-delete-delay"])
def test_a_deleted_call_stops_its_ice(delay: int) -> None:
    engine = Engine()
    core = engine.core
    karl, port = ice_call(engine, T0, "gone")
    offer(engine, T0 + 0.5, ice_sdp(41000, CALLER), "stays")
    answer(engine, T0 + 0.5, sdp(41002), "stays")
    assert sent(core.handle_ice_timer(T0)), "checks of the call to delete are in flight"
    pending = core.next_ice_deadline()
    assert pending is not None and pending < T0 + 0.5

    engine.do(Command.DELETE, T0 + 0.03, **{"call-id": "gone", "delete-delay": delay})
    if delay:
        engine.tick(T0 + 0.03 + delay)  # the delete delay runs out
    end = T0 + 0.03 + delay
    assert "gone" not in core.calls
    assert core.ice.agent("gone", (1, 1)) is None and core.ice.agent_count() == 1

    dropped = core.ice.totals.dropped
    data, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    assert core.handle_stun(port, data, CALLER_RTP, end + 0.01) == [], "the old port answers nothing"
    assert core.ice.totals.dropped == dropped + 1
    assert core.next_ice_deadline() == T0 + 0.5, "only the other call's checks are due"
    effects = core.handle_ice_timer(end + 0.5)
    stays = {address[1] for address in caller_agent(engine, "stays").local_addresses.values()}
    assert effects and {d.port for d in sent(effects)} <= stays, "the timer serves the other call only"


def test_a_reoffer_with_the_same_ufrag_keeps_karls_credentials_and_the_selected_pair() -> None:
    engine = Engine()
    core = engine.core
    karl, port = ice_call(engine)
    (check,) = sent(core.handle_ice_timer(T0))  # Karl's first check is in flight
    data, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    assert SetPeer(port, CALLER_RTP) not in core.handle_stun(port, data, CALLER_RTP, T0 + 0.01)
    # the nominated pair's check succeeds: selected
    assert SetPeer(port, CALLER_RTP) in core.handle_stun(port, success_for(check, CALLER.pwd), CALLER_RTP, T0)
    agent = caller_agent(engine)
    (check,) = [c for c in sent(core.handle_ice_timer(T0 + 6)) if c.destination == CALLER_RTP]  # consent

    offer(engine, T0 + 6.02, ice_sdp(CALLER_RTP[1], CALLER))  # a re-INVITE, ICE unchanged
    reply = answer(engine, T0 + 6.03)
    assert credentials_in(reply) == karl and port_in(reply) == port
    assert caller_agent(engine) is agent and agent.selected == {1: CALLER_RTP}
    assert SetPeer(port, CALLER_RTP) not in engine.media.effects, "no new selection was needed"

    # the answer to the check sent before the re-offer still counts; the same credentials still work
    assert core.handle_stun(check.port, success_for(check, CALLER.pwd), check.destination, T0 + 6.04) == []
    assert core.ice.totals.dropped == 0
    data, transaction = binding_request(karl, CALLER.ufrag)
    success_to(core.handle_stun(port, data, CALLER_RTP, T0 + 1), port, CALLER_RTP, transaction, karl.pwd)
    assert agent.selected == {1: CALLER_RTP}


def test_an_ice_restart_gives_new_credentials_and_drops_checks_with_the_old_ones() -> None:
    engine = Engine()
    core = engine.core
    karl, port = ice_call(engine)
    (check,) = sent(core.handle_ice_timer(T0))  # Karl's first check is in flight
    data, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    core.handle_stun(port, data, CALLER_RTP, T0 + 0.01)

    offer(engine, T0 + 0.02, ice_sdp(CALLER_RTP[1], RESTARTED))  # new ufrag and pwd: an ICE restart
    reply = answer(engine, T0 + 0.03)
    restarted = credentials_in(reply)
    assert restarted.ufrag != karl.ufrag and restarted.pwd != karl.pwd and port_in(reply) == port
    agent = caller_agent(engine)
    assert agent.local == restarted and agent.remote == RESTARTED
    assert agent.selected == {}, "a restart starts the checks over"

    dropped = core.ice.totals.dropped
    old, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    assert core.handle_stun(port, old, CALLER_RTP, T0 + 0.04) == []
    stale_remote, _ = binding_request(restarted, CALLER.ufrag, use_candidate=True)
    assert core.handle_stun(port, stale_remote, CALLER_RTP, T0 + 0.04) == []
    late = success_for(check, CALLER.pwd)  # the answer to a check of before the restart
    assert core.handle_stun(check.port, late, check.destination, T0 + 0.04) == []
    assert core.ice.totals.dropped == dropped + 3

    fresh, transaction = binding_request(restarted, RESTARTED.ufrag, use_candidate=True)
    effects = core.handle_stun(port, fresh, CALLER_RTP, T0 + 0.05)
    success_to(effects, port, CALLER_RTP, transaction, restarted.pwd)
    assert SetPeer(port, CALLER_RTP) in karls_check_answered(
        engine, port, CALLER_RTP, RESTARTED.pwd, T0 + 0.05
    )
    checks = first_checks(engine, 1, T0 + 0.1)
    assert all(
        stun.parse_message(c.data).attributes["USERNAME"] == f"{RESTARTED.ufrag}:{restarted.ufrag}"
        for c in checks
    ), "Karl's own checks use the new credentials of both sides"


def test_a_check_and_a_retransmitted_offer_interleaved_are_both_handled() -> None:
    """An ICE callee checks Karl's socket as soon as it has Karl's offer (before its answer reaches
    the engine), while the caller's INVITE is retransmitted and reaches the engine again."""
    engine = Engine()
    core = engine.core
    body = ice_sdp(CALLER_RTP[1], CALLER)
    first = offer(engine, T0, body)
    towards_callee, callee_port = credentials_in(first), port_in(first)
    assert towards_callee != CALLER, "Karl offers the callee credentials of its own"

    data, transaction = binding_request(towards_callee, CALLEE.ufrag, controlling=False)
    effects = core.handle_stun(callee_port, data, CALLEE_RTP, T0 + 0.01)
    success_to(effects, callee_port, CALLEE_RTP, transaction, towards_callee.pwd)
    call = core.find_call("c")
    assert call is not None
    caller = call.state.by_tag("A")
    assert caller is not None and caller.partner is not None
    key = (caller.partner, 1)
    agent = core.ice.agent("c", key)
    assert agent is not None and agent.controlling, "Karl offered: it controls towards the callee"

    again = offer(engine, T0 + 0.02, body)
    assert again == first, "the retransmitted offer gets the same reply"
    assert core.ice.agent("c", key) is agent, "the agent that answered the check is kept"

    data, transaction = binding_request(towards_callee, CALLEE.ufrag, controlling=False)
    effects = core.handle_stun(callee_port, data, CALLEE_RTP, T0 + 0.03)
    success_to(effects, callee_port, CALLEE_RTP, transaction, towards_callee.pwd)
    assert core.ice.totals.requests == 2 and core.ice.totals.dropped == 0

    reply = answer(engine, T0 + 0.04, ice_sdp(CALLEE_RTP[1], CALLEE, CALLEE_RTP[0]))
    karl = credentials_in(reply)
    assert karl not in (towards_callee, CALLER) and core.ice.agent_count() == 2
    assert caller_agent(engine).local == karl
    assert core.ice.agent("c", key) is agent and agent.remote == CALLEE
    checks = sent(core.handle_ice_timer(T0 + 0.04))
    towards = [stun.parse_message(c.data) for c in checks if c.port in (callee_port, callee_port + 1)]
    assert towards, "Karl checks the callee once it knows the callee's credentials"
    for request in towards:
        assert request.attributes["USERNAME"] == f"{CALLEE.ufrag}:{towards_callee.ufrag}"
        assert "ICE-CONTROLLING" in request.attributes


# ---------------------------------------------------------------------- 4. restore


def test_a_call_restored_on_another_node_answers_checks_with_its_stored_credentials() -> None:
    engine = Engine()
    karl, port = ice_call(engine)
    data, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    engine.core.handle_stun(port, data, CALLER_RTP, T0 + 0.01)
    assert SetPeer(port, CALLER_RTP) in karls_check_answered(engine, port, CALLER_RTP, CALLER.pwd, T0 + 0.01)
    state = engine.core.snapshot("c")
    assert state is not None
    stored = CallState.from_dict(state.to_dict())  # as the store keeps it

    other = Engine(port_min=21000, port_max=21999)
    call, effects = other.core.restore(stored, T0 + 20, same_host=False)
    other.media.apply(effects)
    caller = call.state.by_tag("A")
    assert caller is not None
    sockets = call.ports[(caller.uid, 1)]
    assert sockets.rtp is not None
    moved = sockets.rtp.port
    assert moved != port and 21000 <= moved <= 21999, "another host: another port"

    data, transaction = binding_request(karl, CALLER.ufrag, use_candidate=True)
    effects = other.core.handle_stun(moved, data, CALLER_RTP, T0 + 20.01)
    success_to(effects, moved, CALLER_RTP, transaction, karl.pwd)
    assert SetPeer(moved, CALLER_RTP) in karls_check_answered(
        other, moved, CALLER_RTP, CALLER.pwd, T0 + 20.01
    )
    checks = first_checks(other, 1, T0 + 20.1)
    assert all(
        stun.parse_message(c.data).attributes["USERNAME"] == f"{CALLER.ufrag}:{karl.ufrag}" for c in checks
    ), "the restored agent knows the caller's credentials too"


# ---------------------------------------------------------------------- ICE-lite callers and forks


def test_karl_controls_and_nominates_towards_an_ice_lite_caller() -> None:
    engine = Engine()
    core = engine.core
    offer(engine, T0, ice_sdp(CALLER_RTP[1], CALLER, lite=True))
    port = port_in(answer(engine, T0))
    selected: list[SetPeer] = []
    now = T0
    while now < T0 + 1.0:  # the lite caller never checks; it answers every check of Karl's
        deadline = core.next_ice_deadline()
        if deadline is None:
            break
        now = deadline
        for check in sent(core.handle_ice_timer(now)):
            request = stun.parse_message(check.data)
            assert "ICE-CONTROLLING" in request.attributes, "Karl is the controlling agent"
            effects = core.handle_stun(check.port, success_for(check, CALLER.pwd), check.destination, now)
            selected += [e for e in effects if isinstance(e, SetPeer)]
    assert SetPeer(port, CALLER_RTP) in selected and SetPeer(port + 1, CALLER_RTCP) in selected


def test_a_second_fork_answering_with_ice_gets_the_credentials_every_fork_was_offered() -> None:
    engine = Engine()
    offered = offer(engine, T0, ice_sdp(CALLER_RTP[1], CALLER))
    towards_callee = credentials_in(offered)  # what every fork of the INVITE got
    answer(engine, T0 + 1, ice_sdp(CALLEE_RTP[1], CALLEE, CALLEE_RTP[0]), to_tag="B1")
    answer(engine, T0 + 2, ice_sdp(FORK_RTP[1], FORK, FORK_RTP[0]), to_tag="B2")
    agent = agent_of(engine, "B2")
    assert agent is not None and agent.local == towards_callee and agent.remote == FORK
    fork_port = agent.local_addresses[1][1]
    data, transaction = binding_request(towards_callee, FORK.ufrag, controlling=False)
    effects = engine.core.handle_stun(fork_port, data, FORK_RTP, T0 + 2.01)
    success_to(effects, fork_port, FORK_RTP, transaction, towards_callee.pwd)


# ---------------------------------------------------------------------- across re-offers (10.5's rules)


def caller_rtp_spec(engine: Engine, call_id: str = "c") -> Any:
    call = engine.core.find_call(call_id)
    assert call is not None
    caller = call.state.by_tag("A")
    assert caller is not None
    spec = call.ports[(caller.uid, 1)].rtp
    assert spec is not None
    return spec


def test_an_ice_partys_zero_address_is_no_hold_for_its_media() -> None:
    """10.5 does not read c=0.0.0.0 from an ICE party as a hold: where its media goes stays, the ICE
    agent and its selected pair stay, only `query` shows 0.0.0.0 as advertised. A plain party's
    0.0.0.0 still holds (nothing is sent to it before it sends)."""
    engine = Engine()
    core = engine.core
    karl, port = ice_call(engine)
    data, _ = binding_request(karl, CALLER.ufrag, use_candidate=True)
    core.handle_stun(port, data, CALLER_RTP, T0 + 0.01)
    assert SetPeer(port, CALLER_RTP) in karls_check_answered(engine, port, CALLER_RTP, CALLER.pwd, T0 + 0.01)
    agent = caller_agent(engine)

    held = ice_sdp(CALLER_RTP[1], CALLER).replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
    offer(engine, T0 + 1, held)
    answer(engine, T0 + 1)
    spec = caller_rtp_spec(engine)
    assert (spec.sdp_peer.address, spec.sdp_peer.port) == CALLER_RTP, "its media goes where it went"
    assert spec.ice_zero_address is not None and spec.ice_zero_address.is_unspecified
    assert caller_agent(engine) is agent and agent.selected == {1: CALLER_RTP}
    stream = engine.do(Command.QUERY, T0 + 2, **{"call-id": "c"})["tags"]["A"]["medias"][0]["streams"][0]
    assert stream["advertised endpoint"]["address"] == "0.0.0.0"
    assert stream["endpoint"]["address"] == CALLER_RTP[0]

    plain = Engine()
    offer(plain, T0, sdp(CALLER_RTP[1]))
    answer(plain, T0)
    offer(plain, T0 + 1, sdp(CALLER_RTP[1]).replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"))
    assert caller_rtp_spec(plain).sdp_peer.is_unspecified, "a plain party's 0.0.0.0 is a hold"


def test_karls_credentials_come_back_after_a_reoffer_without_ice_also_after_a_restore() -> None:
    """10.5 keeps its credentials towards a party for the whole call: a re-offer without ICE stops
    Karl's agent, the next with ICE gets the same credentials, also on a node that restored the call
    from the store in between."""
    engine = Engine()
    karl, _ = ice_call(engine)
    offer(engine, T0 + 1, sdp(CALLER_RTP[1]))
    assert "a=ice-ufrag" not in answer(engine, T0 + 1)
    assert agent_of(engine) is None, "no ICE towards the caller now"
    state = engine.core.snapshot("c")
    assert state is not None
    stored = CallState.from_dict(state.to_dict())

    other = Engine(port_min=21000, port_max=21999)
    _, effects = other.core.restore(stored, T0 + 2, same_host=False)
    other.media.apply(effects)
    offer(other, T0 + 3, ice_sdp(CALLER_RTP[1], CALLER))
    assert credentials_in(answer(other, T0 + 3)) == karl
    assert agent_of(other) is not None


def test_a_party_restarting_ice_in_its_offer_makes_karl_the_controlled_agent_towards_it() -> None:
    """The callee answered with ICE (Karl controls towards it, as towards any answerer); its re-offer
    with new credentials is an ICE restart it controls: Karl's new agent towards it is controlled, as
    10.5 then shows `ICE controlling` on the caller's media instead of the callee's."""
    engine = Engine()
    offer(engine, T0, ice_sdp(CALLER_RTP[1], CALLER))
    answer(engine, T0, ice_sdp(CALLEE_RTP[1], CALLEE, CALLEE_RTP[0]))
    towards_callee = agent_of(engine, "B")
    assert towards_callee is not None and towards_callee.controlling

    body = {
        "call-id": "c",
        "from-tag": "B",
        "to-tag": "A",
        "sdp": ice_sdp(CALLEE_RTP[1], FORK, CALLEE_RTP[0]),
    }
    assert engine.do(Command.OFFER, T0 + 1, **body)["result"] == "ok"
    back = {"call-id": "c", "from-tag": "B", "to-tag": "A", "sdp": ice_sdp(CALLER_RTP[1], CALLER)}
    assert engine.do(Command.ANSWER, T0 + 1, **back)["result"] == "ok"
    restarted = agent_of(engine, "B")
    assert restarted is not None and restarted is not towards_callee and not restarted.controlling
    query = engine.do(Command.QUERY, T0 + 2, **{"call-id": "c"})["tags"]
    assert "ICE controlling" not in query["B"]["medias"][0]["flags"]
    assert "ICE controlling" in query["A"]["medias"][0]["flags"]


def test_an_offerer_that_moves_keeps_the_ports_of_the_other_partys_ice_leg() -> None:
    """A party that moves gets new ports towards the other one (10.5), unless Karl speaks ICE to that
    one: an ICE leg keeps its ports (nothing closed, nothing opened), also when the answer moves."""
    engine = Engine()
    reply = engine.do(
        Command.OFFER, T0, **{"call-id": "c", "from-tag": "A", "sdp": sdp(40000), "ICE": "force"}
    )
    towards_callee = port_in(reply["sdp"])
    answer(engine, T0, ice_sdp(CALLEE_RTP[1], CALLEE, CALLEE_RTP[0]))
    before = len(engine.media.effects)
    again = {"call-id": "c", "from-tag": "A", "to-tag": "B", "sdp": sdp(40010), "ICE": "force"}
    assert port_in(engine.do(Command.OFFER, T0 + 1, **again)["sdp"]) == towards_callee
    moved_on = [e for e in engine.media.effects[before:] if isinstance(e, CloseStream)]
    assert not [e for e in moved_on if e.port in (towards_callee, towards_callee + 1)]

    plain = Engine()
    first = port_in(
        plain.do(Command.OFFER, T0, **{"call-id": "c", "from-tag": "A", "sdp": sdp(40000)})["sdp"]
    )
    answer(plain, T0)
    moved = {"call-id": "c", "from-tag": "A", "to-tag": "B", "sdp": sdp(40010)}
    assert port_in(plain.do(Command.OFFER, T0 + 1, **moved)["sdp"]) != first, "without ICE: new ports"


# ---------------------------------------------------------------------- 10.5's lasting agent, stored


def test_the_lasting_ice_agent_and_the_lite_role_survive_the_call_store() -> None:
    """A callee that trickled and a caller once ICE-lite, ICE removed both ways: after a restore on
    another engine the caller's re-offer still ends with the callee's trickle lines, and `query`
    still shows Karl controlling towards the caller (10.5's agent and role, kept in the call's state)."""
    engine = Engine()
    removed = {"ICE": "remove"}
    engine.do(
        Command.OFFER,
        T0,
        **{"call-id": "c", "from-tag": "A", "sdp": ice_sdp(40000, CALLER, lite=True)},
        **removed,
    )
    trickling = ice_sdp(CALLEE_RTP[1], CALLEE, CALLEE_RTP[0]).replace(
        "a=candidate:1 1", "a=ice-options:trickle\r\na=candidate:1 1"
    )
    ids = {"call-id": "c", "from-tag": "A", "to-tag": "B"}
    assert engine.do(Command.ANSWER, T0, **ids, sdp=trickling, **removed)["result"] == "ok"
    state = engine.core.snapshot("c")
    assert state is not None

    other = Engine()
    _call, effects = other.core.restore(CallState.from_dict(state.to_dict()), T0 + 20)
    other.media.apply(effects)
    plain_caller = ice_sdp(40000, CALLER).replace("o=- 1 1", "o=- 1 2")  # full ICE now, same ufrag
    reoffer = other.do(Command.OFFER, T0 + 21, **ids, sdp=plain_caller, **removed)
    assert reoffer["result"] == "ok"
    assert reoffer["sdp"].endswith("a=ice-options:trickle\r\na=end-of-candidates\r\n")
    assert "a=ice-ufrag" not in reoffer["sdp"], "no ICE towards the callee"
    query = other.do(Command.QUERY, T0 + 22, **{"call-id": "c"})
    assert "ICE controlling" in query["tags"]["A"]["medias"][0]["flags"]
