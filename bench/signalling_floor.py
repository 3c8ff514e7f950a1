"""How fast could a pure-Python NG proxy handle the bench's G.711 call at best? Floors to set Karl against.

`profile_cycle.py` measures what Karl spends on an offer + answer + delete cycle in-process (CPU µs, no
network). This script measures, the same way, the least any Python program must spend on the same three
requests, part by part:

* **ng** — per request: split the cookie, bencode-decode the request (Karl's decoder), read the keys a
  handler needs, bencode-encode the reply Karl sends (the two SDPs, the delete's call statistics as Karl
  builds them) and put the cookie in front. No options, no reply cache, no counters.
* **sdp** — per SDP: the cheapest plausible rewrite as text: split into lines, replace the o=, c= and m=
  lines, add `a=rtcp`, join. No validation, no model of what the SDP offers, no rtpengine rules.
* **state** — per call: the bookkeeping any media proxy does: a call record with two parties, four ports
  from a free list, four stream objects with their peers and sinks, all of it dropped again on delete.
* **sum** — the three together for one cycle: what is left when everything Karl adds is taken away.

With `--network` it also measures a bare uvloop UDP responder over loopback (a server process that
bencode-decodes each request and sends a canned reply): the CPU the server spends per request including
the event loop and the two system calls, which `profile_cycle.py` leaves out.

    python bench/signalling_floor.py [--repeat 5] [--network]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calls
from karl_core.ng import bencode

LOCAL_IP = "127.0.0.1"


def _requests(index: int) -> list[bytes]:
    """The bench's three datagrams for call `index` (as `profile_cycle.py` sends them)."""
    return [b"%d_%d " % (index, n) + bencode.encode(m) for n, m in enumerate(calls.cycle("floor", index))]


def _delete_reply(call_id: str, tags: tuple[str, str], ports: list[int]) -> dict[str, Any]:
    """A delete reply with call statistics, shaped as Karl (and rtpengine 10.5) send it."""

    def stream(port: int, peer_port: int, rtcp: bool) -> dict[str, Any]:
        endpoint = {"family": "IPv4", "address": "127.0.0.201", "port": peer_port}
        return {
            "local port": port,
            "local address": LOCAL_IP,
            "family": "IPv4",
            "endpoint": endpoint,
            "advertised endpoint": dict(endpoint),
            "last packet": 1796584077,
            "flags": ["RTCP" if rtcp else "RTP", "filled"],
            "stats": {"packets": 0, "bytes": 0, "errors": 0},
        }

    def party(tag: str, other: str, port: int) -> dict[str, Any]:
        return {
            "tag": tag,
            "created": 1796584077,
            "subscriptions": [{"tag": other, "type": "offer/answer"}],
            "subscribers": [{"tag": other, "type": "offer/answer"}],
            "medias": [
                {
                    "index": 1,
                    "type": "audio",
                    "protocol": "RTP/AVP",
                    "streams": [stream(port, 6000, False), stream(port + 1, 6001, True)],
                    "flags": ["initialized", "send", "recv"],
                }
            ],
        }

    totals = {"packets": 0, "bytes": 0, "errors": 0}
    return {
        "result": "ok",
        "created": 1796584077,
        "created_us": 147400,
        "last signal": 1796584077,
        "SSRC": {},
        "tags": {tags[0]: party(tags[0], tags[1], ports[2]), tags[1]: party(tags[1], tags[0], ports[0])},
        "totals": {"RTP": dict(totals), "RTCP": dict(totals)},
    }


# ------------------------------------------------------------------------------------------ the SDP


def rewrite_sdp(sdp: str, address: str, port: int, session_version: int) -> str:
    """The least an rtpengine-style proxy does to an SDP it passes on: its own address in o= and c=,
    its port in m=, an `a=rtcp` line for the RTCP port. Nothing is checked."""
    out: list[str] = []
    for line in sdp.split("\r\n"):
        if not line:
            continue
        kind = line[:2]
        if kind == "o=":
            fields = line.split(" ")
            fields[2], fields[5] = str(session_version), address
            line = " ".join(fields)
        elif kind == "c=":
            line = f"c=IN IP4 {address}"
        elif kind == "m=":
            fields = line.split(" ")
            fields[1] = str(port)
            out.append(" ".join(fields))
            out.append(f"a=rtcp:{port + 1}")
            continue
        out.append(line)
    out.append("")
    return "\r\n".join(out)


def sdp_peer(sdp: str) -> tuple[str, int]:
    """The party's address and port: its c= and m= lines (what the proxy must read)."""
    address, port = "", 0
    for line in sdp.split("\r\n"):
        if line.startswith("c="):
            address = line.rsplit(" ", 1)[1]
        elif line.startswith("m="):
            port = int(line.split(" ", 2)[1])
    return address, port


# ----------------------------------------------------------------------------------- the call state


class _Stream:
    __slots__ = ("local_port", "peer", "sink")

    def __init__(self, local_port: int) -> None:
        self.local_port = local_port
        self.peer: tuple[str, int] | None = None
        self.sink: _Stream | None = None


class _Party:
    __slots__ = ("rtcp", "rtp", "tag")

    def __init__(self, tag: str, rtp: _Stream, rtcp: _Stream) -> None:
        self.tag, self.rtp, self.rtcp = tag, rtp, rtcp


class _Floor:
    """The minimal proxy: NG in and out, SDP rewritten as text, one record per call."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, _Party]] = {}
        self.free_ports = list(range(30000, 40000, 2))
        self.replies: list[bytes] = []

    def _party(self, tag: str, peer: tuple[str, int]) -> _Party:
        port = self.free_ports.pop()
        party = _Party(tag, _Stream(port), _Stream(port + 1))
        party.rtp.peer, party.rtcp.peer = peer, (peer[0], peer[1] + 1)
        return party

    def datagram(
        self, data: bytes, decoded: dict[str, Any] | None = None, *, sdp: bool = True, state: bool = True
    ) -> None:
        """One request; `decoded`: its dictionary, decoded beforehand (then no NG work at all)."""
        cookie, _, payload = data.partition(b" ")
        request = bencode.decode_ng_dict(payload) if decoded is None else decoded
        command = request["command"]
        reply: dict[str, Any]
        if command == "offer" or command == "answer":
            text = request["sdp"]
            peer = sdp_peer(text) if sdp else ("127.0.0.201", 6000)
            port = 20000
            if state:
                call = self.calls.setdefault(request["call-id"], {})
                tag = request["from-tag"] if command == "offer" else request["to-tag"]
                party = call[tag] = self._party(tag, peer)
                port = party.rtp.local_port
                if command == "answer":
                    offerer = call[request["from-tag"]]
                    offerer.rtp.sink, party.rtp.sink = party.rtp, offerer.rtp
                    offerer.rtcp.sink, party.rtcp.sink = party.rtcp, offerer.rtcp
            reply = {"result": "ok", "sdp": rewrite_sdp(text, LOCAL_IP, port, 1) if sdp else text}
        else:
            call_id = request["call-id"]
            ports = [20000, 20001, 20002, 20003]
            tags = (request["from-tag"], "tt")
            if state:
                parties = self.calls.pop(call_id)
                tags = (request["from-tag"], next(tag for tag in parties if tag != request["from-tag"]))
                ports = []
                for party in parties.values():
                    ports += [party.rtp.local_port, party.rtcp.local_port]
                    self.free_ports.append(party.rtp.local_port)
            reply = _delete_reply(call_id, tags, ports) if decoded is None else {}
        if decoded is None:
            self.replies.append(cookie + b" " + bencode.encode(reply, sort_keys=False))
            if len(self.replies) > 64:
                self.replies.clear()


Cycle = list[tuple[bytes, dict[str, Any] | None]]


def _cpu_per_cycle(floor: _Floor, prepared: list[Cycle], parts: dict[str, bool]) -> float:
    for requests in prepared[:200]:  # warm up
        for datagram, decoded in requests:
            floor.datagram(datagram, decoded, **parts)
    started = time.process_time()
    for requests in prepared[200:]:
        for datagram, decoded in requests:
            floor.datagram(datagram, decoded, **parts)
    return (time.process_time() - started) / (len(prepared) - 200) * 1e6


def in_process(cycles: int) -> dict[str, float]:
    """CPU µs per offer+answer+delete cycle: each part alone, then all together."""
    figures: dict[str, float] = {}
    for name, ng, parts in (
        ("ng", True, {"sdp": False, "state": False}),
        ("sdp", False, {"state": False}),
        ("state", False, {"sdp": False}),
        ("sum", True, {}),
    ):
        prepared = [
            [(datagram, None if ng else _decoded(datagram)) for datagram in _requests(index)]
            for index in range(cycles)
        ]
        figures[name] = _cpu_per_cycle(_Floor(), prepared, parts)
    return figures


def _decoded(datagram: bytes) -> dict[str, Any]:
    return bencode.decode_ng_dict(datagram.partition(b" ")[2])


# ------------------------------------------------------------------------------------- the network


class _Responder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.reply = b"d6:result2:oke"
        self.started = time.process_time()
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        cookie, _, payload = data.partition(b" ")
        if payload == b"reset":
            self.started, self.requests = time.process_time(), 0
            self.transport.sendto(cookie + b" ok", addr)
            return
        if payload == b"report":
            spent = (time.process_time() - self.started) / max(1, self.requests) * 1e6
            self.transport.sendto(cookie + b" %.2f" % spent, addr)
            return
        bencode.decode_ng_dict(payload)
        self.requests += 1
        self.transport.sendto(cookie + b" " + self.reply, addr)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(_Responder, local_addr=(LOCAL_IP, port))
    await asyncio.Event().wait()


def network(requests: int, in_flight: int) -> float:
    """Server CPU µs per request of a bare uvloop responder (child process), `in_flight` requests kept
    outstanding by a blocking client in this process."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((LOCAL_IP, 0))
    port = probe.getsockname()[1]
    probe.close()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5.0)
    target = (LOCAL_IP, port)
    try:
        for _ in range(100):  # until the server listens
            client.sendto(b"r reset", target)
            try:
                client.recv(100)
                break
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                time.sleep(0.05)
        payloads = [d for index in range(requests // 3 + 1) for d in _requests(index)][:requests]
        client.sendto(b"r reset", target)
        client.recv(100)
        sent = received = 0
        while received < len(payloads):
            while sent < len(payloads) and sent - received < in_flight:
                client.sendto(payloads[sent], target)
                sent += 1
            client.recv(65536)
            received += 1
        client.sendto(b"r report", target)
        return float(client.recv(100).split(b" ")[1])
    finally:
        server.kill()
        server.wait()
        client.close()


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ({min(values):.1f}..{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--network", action="store_true", help="also a bare uvloop responder over loopback")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        uvloop.run(_serve(args.serve))
        return 0
    runs = [in_process(args.cycles) for _ in range(args.repeat)]
    print(f"CPU µs per offer+answer+delete cycle, in-process, median (min..max) of {args.repeat} runs:")
    for name in runs[0]:
        print(f"  {name:6s} {_summary([run[name] for run in runs])}")
    if args.network:
        print("bare uvloop UDP responder over loopback, server CPU µs per request:")
        for in_flight in (1, 16):
            values = [network(9000, in_flight) for _ in range(args.repeat)]
            print(f"  {in_flight:2d} in flight {_summary(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
