"""What the fleet tests share: NG calls through a router or a node, RTP streams that count every
packet, and reading a router's or node's state."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleet.fleet_kit import FleetNode, FleetRouter, NetnsLab
from karl_testkit import NgClient, Party, port_of, sdp, simple_rtp, wait_for


def router_metrics(router: FleetRouter) -> str:
    return f"http://127.0.0.1:{router.env['KARL_METRICS_PORT']}"


def health_detail(node: FleetNode) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{node.url('health')}/health/detail", timeout=2) as reply:
            return dict(json.loads(reply.read()))
    except urllib.error.HTTPError as exc:  # 503 while DOWN still carries the document
        return dict(json.loads(exc.read()))


def node_calls(node: FleetNode) -> int:
    reply = node.ng.request({"command": "statistics"})
    return int(reply["statistics"]["currentstatistics"]["sessionstotal"])


def offer(client: NgClient, call_id: str, party: Party, ip: str, **extra: Any) -> dict[str, Any]:
    return dict(
        client.request(
            {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": sdp(party.port, ip), **extra}
        )
    )


def answer(client: NgClient, call_id: str, party: Party, ip: str) -> dict[str, Any]:
    return dict(
        client.request(
            {
                "command": "answer",
                "call-id": call_id,
                "from-tag": "A",
                "to-tag": "B",
                "sdp": sdp(party.port, ip),
            }
        )
    )


def answered_calls(client: NgClient, lab: NetnsLab, calls: list[str]) -> None:
    """Offer and answer each call through `client` (a router, or a node that then places it itself),
    with two new parties each in the lab's last namespace."""
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    for call_id in calls:
        a, b = lab.party(parties), lab.party(parties)
        assert offer(client, call_id, a, ip)["result"] == "ok"
        assert answer(client, call_id, b, ip)["result"] == "ok"


def assert_unknown(client: NgClient, call_ids: list[str]) -> None:
    """Each call is gone: `query` answers as rtpengine answers a call it does not know."""
    for call_id in call_ids:
        reply = client.request({"command": "query", "call-id": call_id})
        assert reply["result"] == "error" and "Unknown call-id" in reply["error-reason"], reply


def send_at_once(datagrams: list[tuple[bytes, tuple[str, int]]]) -> list[bytes]:
    """Send every datagram from one socket without waiting in between; the replies, as they came."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    try:
        for datagram, address in datagrams:
            sock.sendto(datagram, address)
        return [sock.recv(65535) for _ in datagrams]
    finally:
        sock.close()


def media_address(reply: dict[str, Any]) -> tuple[str, int]:
    ip = next(line.split()[-1] for line in reply["sdp"].splitlines() if line.startswith("c="))
    return ip, port_of(reply)


class Stream:
    """RTP both ways through a call's node, every 10 ms, counting what arrives; stops by itself."""

    def __init__(self, a: Party, to_a_side: tuple[str, int], b: Party, to_b_side: tuple[str, int]) -> None:
        self.legs = ((a, to_a_side, b), (b, to_b_side, a))
        self.sent = [0, 0]
        self.received = [0, 0]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True)] + [
            threading.Thread(target=self._receive, args=(i,), daemon=True) for i in (0, 1)
        ]

    def _send(self) -> None:
        seq = 0
        deadline = time.monotonic() + 60  # bounded even if a test forgets to stop it
        while not self._stop.is_set() and time.monotonic() < deadline:
            for index, (party, target, _) in enumerate(self.legs):
                party.rtp.sendto(simple_rtp(seq), target)
                self.sent[index] += 1
            seq += 1
            time.sleep(0.01)

    def _receive(self, index: int) -> None:
        sock = self.legs[index][2].rtp
        sock.settimeout(0.2)
        while True:
            try:
                sock.recv(2048)
            except (TimeoutError, OSError):
                if self._stop.is_set():
                    return
                continue
            self.received[index] += 1

    @contextmanager
    def running(self) -> Iterator[Stream]:
        for thread in self._threads:
            thread.start()
        try:
            wait_for(lambda: min(self.received) >= 10, timeout=5)
            yield self
        finally:
            self._stop.set()
            self._threads[0].join(2)
            # what was sent must arrive: wait for the last packets, then stop the receivers
            try:
                wait_for(lambda: self.received == self.sent, timeout=2)
            finally:
                for thread in self._threads[1:]:
                    thread.join(2)

    def flowing(self, more: int = 10) -> None:
        marks = list(self.received)
        wait_for(lambda: all(r >= m + more for r, m in zip(self.received, marks, strict=True)), timeout=5)


def cdr_records(path: Path) -> list[dict[str, Any]]:
    """The CDRs a node wrote to its file (none while the file does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def reinvite_through(
    router: FleetRouter, call_id: str, legs: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a re-INVITE through the proxy does with a failover event: `offer` with the A party's last
    SDP (the B leg's `peer_sdp`), `answer` with the B party's (the A leg's); both replies."""
    offered = router.ng.request(
        {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": legs["B"]["peer_sdp"]}
    )
    answered = router.ng.request(
        {
            "command": "answer",
            "call-id": call_id,
            "from-tag": "A",
            "to-tag": "B",
            "sdp": legs["A"]["peer_sdp"],
        }
    )
    assert offered["result"] == answered["result"] == "ok", (offered, answered)
    return dict(offered), dict(answered)
