"""ICE on a real Karl node against an independent ICE implementation (aioice's `Connection`, with its
own sockets, in a network namespace of its own), over real UDP: Karl answers its connectivity checks,
sends its own, nominates or follows the peer's nomination, and media flows both ways through the
selected pair to a plain RTP party on the other leg."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.fleet_kit import NetnsLab
from karl_testkit import NgServer, Party, make_party, sdp

PEER = Path(__file__).resolve().parent.parent / "peers" / "ice_peer.py"
PACKETS = 20


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetnsLab]:
    with NetnsLab(1, tmp_path, tag=None) as built:
        yield built


class IcePeer:
    """aioice in namespace 0 of the lab, driven over its stdin/stdout (see peers/ice_peer.py)."""

    def __init__(self, lab: NetnsLab, *, controlling: bool, ssrc: int) -> None:
        argv = [sys.executable, str(PEER), "--packets", str(PACKETS), "--ssrc", hex(ssrc)]
        if controlling:
            argv.append("--controlling")
        self.proc = subprocess.Popen(
            [*lab.exec_prefix(0), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.credentials = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the ICE peer exited ({self.proc.wait(5)})"
        return dict(json.loads(line))

    def sdp(self, *, mux: bool = True) -> str:
        first = self.credentials["candidates"][0].split()
        ip, port = first[4], int(first[5])
        lines = [f"a=candidate:{c}" for c in self.credentials["candidates"]]
        return (
            "v=0\r\n"
            f"o=- 1 1 IN IP4 {ip}\r\n"
            "s=-\r\n"
            f"c=IN IP4 {ip}\r\n"
            "t=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n"
            f"a=ice-ufrag:{self.credentials['ufrag']}\r\n"
            f"a=ice-pwd:{self.credentials['pwd']}\r\n"
            + "".join(line + "\r\n" for line in lines)
            + ("a=rtcp-mux\r\n" if mux else "")
            + "a=sendrecv\r\n"
        )

    def connect_to(self, karl_sdp: str) -> None:
        assert self.proc.stdin is not None
        ufrag = re.search(r"^a=ice-ufrag:(\S+)", karl_sdp, re.M)
        pwd = re.search(r"^a=ice-pwd:(\S+)", karl_sdp, re.M)
        assert ufrag and pwd, karl_sdp
        candidates = re.findall(r"^a=candidate:(.*?)\r?$", karl_sdp, re.M)
        self.proc.stdin.write(json.dumps({"ufrag": ufrag[1], "pwd": pwd[1], "candidates": candidates}) + "\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        try:
            return self._read()
        finally:
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes([seq & 0xFF]) * 160


def request(node: NgServer, **message: Any) -> dict[str, Any]:
    reply = node.ng.request(message)
    assert reply["result"] == "ok", reply
    return reply


def media_port(text: str) -> int:
    match = re.search(r"^m=audio (\d+) ", text, re.M)
    assert match, text
    return int(match.group(1))


def exchange_with_plain_party(node: NgServer, peer: IcePeer, plain: Party, karl_port: int) -> list[bytes]:
    """The plain party sends PACKETS packets to Karl while the peer runs; returns what it received."""
    received: list[bytes] = []
    plain.rtp.settimeout(0.05)
    for seq in range(PACKETS * 10):
        if seq < PACKETS * 5:
            plain.rtp.sendto(rtp(seq, 0xB0B), (node.media_ip, karl_port))
        try:
            while True:
                received.append(plain.rtp.recv(2048))
        except TimeoutError:
            pass
        if len(received) >= PACKETS and peer.proc.poll() is not None:
            break
    return received


@pytest.mark.parametrize("peer_offers", [True, False], ids=["ice-caller", "ice-callee"])
def test_karl_does_ice_with_an_independent_agent_and_media_flows_both_ways(
    karl_factory, lab: NetnsLab, peer_offers: bool
) -> None:
    """ice-caller: the peer offers ICE (controlling), Karl follows its nomination towards it and speaks
    plain RTP to the callee (`ICE=remove`). ice-callee: a plain caller, `ICE=force` towards the peer,
    which answers with ICE: Karl is controlling and nominates."""
    node = karl_factory(media_ip=lab.bridge_ip, KARL_DELETE_DELAY="0")
    plain = make_party()
    peer = IcePeer(lab, controlling=peer_offers, ssrc=0xA11CE)
    try:
        ids = {"call-id": f"ice-{peer_offers}", "from-tag": "caller"}
        if peer_offers:
            offer = request(node, command="offer", ICE="remove", sdp=peer.sdp(), **ids)
            assert "a=ice-ufrag" not in offer["sdp"] and "a=candidate" not in offer["sdp"]
            answer = request(node, command="answer", sdp=sdp(plain.port), **ids, **{"to-tag": "callee"})
            karl_to_peer, karl_to_plain = answer["sdp"], offer["sdp"]
        else:
            offer = request(node, command="offer", ICE="force", sdp=sdp(plain.port), **ids)
            answer = request(node, command="answer", sdp=peer.sdp(), **ids, **{"to-tag": "callee"})
            assert "a=ice-ufrag" not in answer["sdp"]
            karl_to_peer, karl_to_plain = offer["sdp"], answer["sdp"]
        assert "a=candidate:" in karl_to_peer and lab.bridge_ip in karl_to_peer, karl_to_peer
        peer.connect_to(karl_to_peer)
        from_peer = exchange_with_plain_party(node, peer, plain, media_port(karl_to_plain))
        result = peer.result()
    finally:
        peer.close()
        plain.close()
    assert result["error"] is None and result["connected"], result
    assert [p for p in from_peer if p[8:12] == (0xA11CE).to_bytes(4, "big")][:PACKETS] == [
        rtp(seq, 0xA11CE) for seq in range(PACKETS)
    ]
    to_peer = [bytes.fromhex(h) for h in result["received"]]
    assert len(to_peer) >= PACKETS and all(p[8:12] == (0xB0B).to_bytes(4, "big") for p in to_peer)
    # the STUN of the checks is not media: the plain party got none of it
    assert all(p[0] & 0xC0 == 0x80 for p in from_peer)
    query = request(node, command="query", **{"call-id": f"ice-{peer_offers}"})
    peer_tag = "caller" if peer_offers else "callee"
    [media] = query["tags"][peer_tag]["medias"]
    assert "ICE" in media["flags"] and "ICE" in media["streams"][0]["flags"]
