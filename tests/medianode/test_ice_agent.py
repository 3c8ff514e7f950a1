"""The sans-IO ICE agent against itself: two agents exchanging datagrams through a dict, no sockets."""

from __future__ import annotations

import pytest
from aioice import stun

from karl_medianode.ice.agent import (
    CONSENT_TIMEOUT,
    IceAgent,
    IceState,
    Selected,
    StateChanged,
    is_stun,
)
from karl_medianode.ice.credentials import IceCredentials, host_candidate

A_ADDR = {1: ("127.0.0.1", 20000), 2: ("127.0.0.1", 20001)}
B_ADDR = {1: ("127.0.0.2", 30000), 2: ("127.0.0.2", 30001)}


def pair_of_agents(*, a_controlling: bool = True, b_controlling: bool = False) -> tuple[IceAgent, IceAgent]:
    a = IceAgent(IceCredentials.new(), a_controlling, dict(A_ADDR))
    b = IceAgent(IceCredentials.new(), b_controlling, dict(B_ADDR))
    a.set_remote(b.local, [host_candidate(*B_ADDR[c], c) for c in (1, 2)], 0.0)
    b.set_remote(a.local, [host_candidate(*A_ADDR[c], c) for c in (1, 2)], 0.0)
    return a, b


def run(a: IceAgent, b: IceAgent, until: float, drop: set[str] | None = None) -> float:
    """Step both agents' timers and deliver every datagram (unless its sender is in `drop`)."""
    now = 0.0
    by_addr = {addr: (b, c) for c, addr in B_ADDR.items()} | {addr: (a, c) for c, addr in A_ADDR.items()}
    names = {id(a): "a", id(b): "b"}
    while now < until:
        for agent in (a, b):
            deadline = agent.next_deadline()
            if deadline is not None and deadline <= now:
                agent.handle_timer(now)
        for _ in range(10):
            moved = False
            for agent in (a, b):
                for transmit in agent.take_transmits():
                    moved = True
                    assert is_stun(transmit.data)
                    if (drop and names[id(agent)] in drop) or transmit.destination not in by_addr:
                        continue  # (lost, or sent to an address nobody listens on)
                    receiver, component = by_addr[transmit.destination]
                    assert component == transmit.component
                    source = agent.local_addresses[transmit.component]
                    receiver.handle_datagram(component, transmit.data, source, now)
            if not moved:
                break
        now = round(now + 0.005, 6)
    return now


def test_two_agents_select_each_others_sockets_for_both_components() -> None:
    a, b = pair_of_agents()
    run(a, b, 2.0)
    assert a.state is IceState.CONNECTED and b.state is IceState.CONNECTED
    assert a.selected == B_ADDR and b.selected == A_ADDR
    events = a.take_events()
    assert StateChanged(IceState.CONNECTED) in events
    assert {e.component for e in events if isinstance(e, Selected)} == {1, 2}


@pytest.mark.parametrize("both_controlling", [True, False])
def test_a_role_conflict_is_resolved_by_the_tie_breakers(both_controlling: bool) -> None:
    a, b = pair_of_agents(a_controlling=both_controlling, b_controlling=both_controlling)
    run(a, b, 3.0)
    assert a.controlling != b.controlling
    # RFC 8445 7.3.1.1: the larger tie-breaker ends up controlling
    assert a.controlling == (a.tie_breaker > b.tie_breaker)
    assert a.state is IceState.CONNECTED and b.state is IceState.CONNECTED
    assert a.counters.role_conflicts + b.counters.role_conflicts >= 1


def test_requests_with_a_wrong_password_or_ufrag_are_dropped_and_counted() -> None:
    a, _ = pair_of_agents()
    for username, pwd in (
        (f"{a.local.ufrag}:x", "wrong-password-wrong-passw"),
        (f"nobody:{a.local.ufrag}", a.local.pwd),
    ):
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = username
        request.add_message_integrity(pwd.encode())
        a.handle_datagram(1, bytes(request), B_ADDR[1], 0.0)
    a.handle_datagram(1, b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"x" * 5, B_ADDR[1], 0.0)
    assert a.counters.dropped == 3
    assert a.counters.requests == 0
    assert not [t for t in a.take_transmits() if t.destination == B_ADDR[1] and t.data[:2] == b"\x01\x01"]


def test_a_silent_peer_fails_the_checks_and_consent_loss_deselects() -> None:
    a, b = pair_of_agents()
    run(a, b, 1.0)
    assert a.state is IceState.CONNECTED
    a.take_events()
    run(a, b, CONSENT_TIMEOUT + 12.0, drop={"b"})  # b stops answering
    events = a.take_events()
    assert Selected(1, None) in events and a.state is IceState.FAILED
    assert a.selected == {}


def test_new_credentials_restart_the_checks() -> None:
    a, b = pair_of_agents()
    run(a, b, 1.0)
    b2 = IceAgent(IceCredentials.new(), False, dict(B_ADDR))
    b2.set_remote(a.local, [host_candidate(*A_ADDR[c], c) for c in (1, 2)], 0.0)
    a.set_remote(b2.local, [host_candidate(*B_ADDR[c], c) for c in (1, 2)], 0.0)
    assert a.selected == {}
    run(a, b2, 1.0)
    assert a.selected == B_ADDR and a.state is IceState.CONNECTED


def test_a_lite_agent_sends_no_checks_and_follows_the_full_agents_nomination() -> None:
    full = IceAgent(IceCredentials.new(), True, dict(A_ADDR))
    lite = IceAgent(IceCredentials.new(), False, dict(B_ADDR), lite=True)
    full.set_remote(lite.local, [host_candidate(*B_ADDR[c], c) for c in (1, 2)], 0.0)
    lite.set_remote(full.local, [host_candidate(*A_ADDR[c], c) for c in (1, 2)], 0.0)
    assert lite.next_deadline() is None
    run(full, lite, 2.0)
    assert lite.selected == A_ADDR and full.selected == B_ADDR
    assert lite.state is IceState.CONNECTED and not lite.controlling
    lite.handle_timer(100.0)
    assert lite.take_transmits() == [], "no checks and no consent checks of its own"


def test_a_stun_attribute_of_the_wrong_length_is_dropped_not_raised() -> None:
    a, _ = pair_of_agents()
    header = b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12)
    bad_priority = b"\x00\x24\x00\x02\x00\x01\x00\x00"  # PRIORITY with 2 bytes (aioice: struct.error)
    a.handle_datagram(1, header + bad_priority, B_ADDR[1], 0.0)
    assert a.counters.dropped == 1 and a.take_transmits() == []


def test_a_nomination_alone_selects_nothing_and_requests_keep_no_consent() -> None:
    """Controlled, Karl selects a nominated pair only once its own check of it succeeded (message
    integrity does not cover the source address: a replayed or spoofed request must not redirect
    media), and consent comes only from answers to Karl's checks (RFC 7675)."""
    a, b = pair_of_agents(a_controlling=False, b_controlling=True)
    spoofed = ("198.51.100.9", 5000)
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{a.local.ufrag}:{b.local.ufrag}"
    request.attributes["ICE-CONTROLLING"] = 1
    request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(a.local.pwd.encode())
    a.handle_datagram(1, bytes(request), spoofed, 0.0)
    assert a.selected == {} and not [e for e in a.take_events() if isinstance(e, Selected)]
    run(a, b, 1.0)
    assert a.selected == B_ADDR
    # b goes silent but someone keeps replaying a valid request: consent still runs out
    for t in range(0, int(CONSENT_TIMEOUT) + 12):
        a.handle_datagram(1, bytes(request), B_ADDR[1], 1.0 + t)
        if (due := a.next_deadline()) is not None and due <= 1.0 + t:
            a.handle_timer(1.0 + t)
        a.take_transmits()
    assert 1 not in a.selected
