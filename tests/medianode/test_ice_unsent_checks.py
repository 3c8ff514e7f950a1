"""Karl's own ICE checks to a candidate the node cannot reach are no errors of the party's streams.

rtpengine 10.5 ignores a failed send of its own STUN (and DTLS) datagrams; a party listing a
candidate the node has no route to (a private or relayed address, here one a loopback-bound socket
cannot send to) is normal ICE. Karl counts such sends in `karl_own_datagrams_unsent_total` and
leaves the streams' `errors` in `query` at zero, where it counted one per failed check before.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from karl_testkit import free_port, make_party, sdp, start_karl, wait_for

UNREACHABLE = "203.0.113.9"  # TEST-NET-3: a socket bound to a loopback address cannot send there


def _offer_with_candidates(ip: str, port: int) -> str:
    return sdp(
        port,
        ip,
        "a=ice-ufrag:Unrt\r\n"
        "a=ice-pwd:unroutablecandidatepw01\r\n"
        f"a=candidate:1 1 UDP 2130706431 {ip} {port} typ host\r\n"
        f"a=candidate:2 1 UDP 1694498815 {UNREACHABLE} {port} typ srflx raddr {ip} rport {port}\r\n"
        "a=rtcp-mux\r\n",
    )


def _unsent(metrics_url: str) -> float:
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0  # not serving yet
    found = re.search(r"^karl_own_datagrams_unsent_total (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


def test_checks_to_an_unreachable_candidate_are_counted_apart(tmp_path: Path) -> None:
    metrics_port = free_port()
    node = start_karl(tmp_path, "127.0.0.2", KARL_METRICS_PORT=str(metrics_port))
    caller, callee = make_party(), make_party()  # the caller's host candidate is a real socket
    try:
        offer = node.ng.request(
            {
                "command": "offer",
                "call-id": "unsent-1",
                "from-tag": "a",
                "sdp": _offer_with_candidates("127.0.0.1", caller.port),
                "ICE": "remove",  # plain towards the callee; Karl stays the caller's ICE agent
            }
        )
        assert offer["result"] == "ok", offer
        ids = {"call-id": "unsent-1", "from-tag": "a", "to-tag": "b"}
        answer = node.ng.request({"command": "answer", **ids, "sdp": sdp(callee.port)})
        assert answer["result"] == "ok", answer
        assert "a=ice-ufrag:" in answer["sdp"], "Karl must be the caller's ICE agent"

        # Karl checks both candidates; the one it cannot reach fails at once
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_for(lambda: _unsent(metrics_url) >= 1, timeout=10)
        caller.rtp.settimeout(5)
        assert caller.rtp.recv(2048)[:2] == b"\x00\x01", "the reachable candidate gets Binding requests"

        query = node.ng.request({"command": "query", "call-id": "unsent-1"})
        errors = {
            (tag, stream["local port"]): stream["stats"]["errors"]
            for tag, party in query["tags"].items()
            for media in party["medias"]
            for stream in media["streams"]
        }
        assert errors and not any(errors.values()), errors
    finally:
        caller.close()
        callee.close()
        node.stop()
