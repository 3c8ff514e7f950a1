"""Requests for one call race each other over real UDP (and the REST API, and a timer): each is applied
whole, in arrival order, and nothing is left behind — no call, no port.

Kamailio sends an INVITE's offer and its CANCEL's delete from two workers at once; a proxy retransmits;
forks answer together. The same script runs against rtpengine 10.5 for comparison: its worker threads
race, and calls (with their ports) can stay behind until they time out. That run is reported, not
asserted on; Karl's is.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from karl_core.ng import bencode
from karl_testkit import NgClient, NgServer, Party, free_port, sdp, wait_for

PORTS = 100  # 25 calls of one audio medium fill the range: a leak of a few calls shows at once
PAIRS = 200


@dataclass
class Outcome:
    """What the script saw: replies by step, and unexpected replies (each one a finding)."""

    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    surprises: list[str] = field(default_factory=list)

    def add(self, step: str, reply: dict[str, Any]) -> None:
        self.replies.setdefault(step, []).append(reply)


Request = dict[str, Any] | tuple[bytes, dict[str, Any]]


def burst(ng: NgClient, payloads: list[Request]) -> list[dict[str, Any]]:
    """Send every request back to back (a tuple reuses a cookie: a retransmission), then read one reply
    per datagram; replies are returned in the order of the requests."""
    datagrams: list[bytes] = []
    cookies: list[bytes] = []
    for item in payloads:
        cookie, payload = item if isinstance(item, tuple) else (ng.next_cookie(), item)
        cookies.append(cookie)
        datagrams.append(cookie + b" " + bencode.encode(payload))
    for datagram in datagrams:
        ng.sock.sendto(datagram, ng.address)
    ng.sock.settimeout(5)
    by_cookie: dict[bytes, list[dict[str, Any]]] = {}
    for _ in datagrams:
        cookie, _, body = ng.sock.recv(65535).partition(b" ")
        reply = bencode.decode(body)
        assert isinstance(reply, dict)
        by_cookie.setdefault(cookie, []).append(reply)
    return [by_cookie[cookie].pop(0) for cookie in cookies]


def offer(call_id: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"command": "offer", "call-id": call_id, "from-tag": "caller", "sdp": sdp(port), **extra}


def answer(call_id: str, port: int, to_tag: str = "callee", **extra: Any) -> dict[str, Any]:
    return {
        "command": "answer",
        "call-id": call_id,
        "from-tag": "caller",
        "to-tag": to_tag,
        "sdp": sdp(port),
        **extra,
    }


def delete(call_id: str) -> dict[str, Any]:
    return {"command": "delete", "call-id": call_id, "delete-delay": 0}


def rest_delete(api_port: int, call_id: str) -> int:
    url = f"http://127.0.0.1:{api_port}/api/v1/sessions/{call_id}"
    request = urllib.request.Request(url, method="DELETE")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def race_script(server: NgServer, a: Party, b: Party, api_port: int | None) -> Outcome:
    """The races, in sequence; each step's requests go out back to back."""
    ng, out = server.ng, Outcome()
    # 1. offer + delete of a new call, 200 times (an INVITE and its CANCEL)
    for n in range(PAIRS):
        offered, deleted = burst(ng, [offer(f"od-{n}", a.port), delete(f"od-{n}")])
        out.add("offer+delete", offered)
        out.add("offer+delete: delete", deleted)
    # 2. a retransmitted offer with the delete between the copies
    for n in range(20):
        cookie = ng.next_cookie()
        first, deleted, second = burst(
            ng, [(cookie, offer(f"rt-{n}", a.port)), delete(f"rt-{n}"), (cookie, offer(f"rt-{n}", a.port))]
        )
        out.add("retransmission", first)
        out.add("retransmission: delete", deleted)
        if first != second:
            out.surprises.append(f"rt-{n}: the retransmission got another reply: {first} / {second}")
    # 3. answer + delete of a ringing call
    for n in range(40):
        out.add("setup", ng.request(offer(f"ad-{n}", a.port)))
        answered, deleted = burst(ng, [answer(f"ad-{n}", b.port), delete(f"ad-{n}")])
        out.add("answer+delete", answered)
        out.add("answer+delete: delete", deleted)
    # 4. two forks offered and answered at once, then the CANCEL
    for n in range(20):
        forks = burst(
            ng,
            [
                offer(f"fk-{n}", a.port, **{"via-branch": "z9hG4bK-1"}),
                offer(f"fk-{n}", a.port, **{"via-branch": "z9hG4bK-2"}),
                answer(f"fk-{n}", b.port, "fork-1", **{"via-branch": "z9hG4bK-1"}),
                answer(f"fk-{n}", b.port, "fork-2", **{"via-branch": "z9hG4bK-2"}),
                delete(f"fk-{n}"),
            ],
        )
        for reply in forks:
            out.add("forks", reply)
    # 5. an answer over NG while the REST API deletes the call
    if api_port is not None:
        for n in range(20):
            call_id = f"rest-{n}"
            out.add("setup", ng.request(offer(call_id, a.port)))
            status: list[int] = []
            deleter = threading.Thread(
                target=lambda c=call_id, s=status: s.append(rest_delete(api_port, c))
            )
            deleter.start()
            out.add("answer vs REST delete", burst(ng, [answer(call_id, b.port)])[0])
            deleter.join(10)
            if status != [200]:
                out.surprises.append(f"{call_id}: REST DELETE answered {status}")
    return out


def ports_free(server: NgServer) -> list[int]:
    """The media ports of the range that are still bound (by the server: the test binds none there)."""
    held = []
    for port in range(server.port_min, server.port_max + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((server.media_ip, port))
            except OSError:
                held.append(port)
    return held


def test_racing_requests_apply_in_arrival_order_and_leave_nothing_behind(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party]
) -> None:
    api_port = free_port()
    node = karl_factory(ports=PORTS, KARL_API_PORT=str(api_port))
    a, b = parties(), parties()
    out = race_script(node, a, b, api_port)
    assert not out.surprises, out.surprises
    # arrival order: every offer found no call deleted before it, every delete found its call
    assert all(r["result"] == "ok" and "sdp" in r for r in out.replies["offer+delete"])
    assert all(r == {"result": "ok"} for r in out.replies["offer+delete: delete"])
    assert all(r["result"] == "ok" and "sdp" in r for r in out.replies["retransmission"])
    assert all(r == {"result": "ok"} for r in out.replies["retransmission: delete"])
    assert all(r["result"] == "ok" and "sdp" in r for r in out.replies["answer+delete"])
    assert all(r == {"result": "ok"} for r in out.replies["answer+delete: delete"])
    assert all(r["result"] == "ok" for r in out.replies["forks"]), out.replies["forks"]
    # the REST DELETE and the answer: whichever came first, the other saw its effect
    for reply in out.replies["answer vs REST delete"]:
        assert reply["result"] == "ok" or reply.get("error-reason") == "Unknown call-id", reply
    assert node.ng.request({"command": "list"})["calls"] == []
    wait_for(lambda: not ports_free(node), timeout=5)
    # and the node still takes calls: the range is whole
    for n in range(PORTS // 4):
        assert node.ng.request(offer(f"after-{n}", a.port))["result"] == "ok"


@pytest.mark.sidebyside
def test_the_same_races_against_rtpengine_for_comparison(
    rtpengine_factory: Callable[..., NgServer], parties: Callable[[], Party], record_property: Any
) -> None:
    """rtpengine's threads may answer a delete before the offer it follows; what that leaves behind is
    recorded (`record_property`), not asserted: it depends on thread scheduling."""
    engine = rtpengine_factory(ports=PORTS)
    a, b = parties(), parties()
    out = race_script(engine, a, b, None)
    left = engine.ng.request({"command": "list"})["calls"]
    report = {
        "calls_left": len(left),
        "ports_held": len(ports_free(engine)),
        "deletes_before_their_offer": sum(
            1 for r in out.replies["offer+delete: delete"] if "warning" in r or r["result"] != "ok"
        ),
        "ran_out_of_ports": sum(
            1
            for replies in out.replies.values()
            for r in replies
            if r.get("error-reason") == "Ran out of ports"
        ),
    }
    record_property("rtpengine_races", json.dumps(report))
    print("rtpengine after the race script:", report)
    assert all(replies for replies in out.replies.values()), "every request got an answer"
