"""The least a Python NG proxy must do for the bench's calls, as a real server: Karl's floor over the network.

`signalling_floor.py` measures the floor in-process, part by part. This is the same floor as a proxy
that `bench/run.py` starts and measures like rtpengine and Karl (`--only rtpengine python-floor karl
--figures memory ng --call-store`), pinned to the same core, driven by the same client:

* NG over UDP on uvloop: split the cookie, bencode-decode (Karl's decoder), answer a retransmission
  from a bounded reply cache, encode the reply (Karl's encoder) and send it;
* `offer` / `answer`: the SDP rewritten as text (`signalling_floor.rewrite_sdp`: own address in o=
  and c=, own port in m=, an `a=rtcp` line), a pair of real UDP sockets per party from a free list of
  ports, bound and watched by the event loop, relaying what arrives to the other party (symmetric);
* the call's state written before the reply leaves, as Karl's file call store does it: a small JSON
  document appended to a journal (`open(O_APPEND)`, `write`, `close`) per offer and per answer, a
  removal line per delete;
* `delete`: sockets closed, ports freed, the reply with the call's statistics (every stream's local
  and peer address, flags and counters, as rtpengine 10.5 and Karl send them), a JSON call record
  queued and written every 20 ms (without Karl's `fsync`).

What it leaves out is everything that makes a proxy rtpengine's equal: no validation of the SDP, no
model of what it offers, no codec negotiation, none of rtpengine's flags or its rules for re-offers,
forks, holds, ICE, SRTP or DTLS, no options parsed, no counters or metrics, no timers. It answers
the bench's G.711 cycle and nothing else correctly. It is a measuring stick, not a proxy.

    python bench/floor_proxy.py --ng 127.0.0.1:2223 --media-ip 127.0.0.200 --ports 30000-30999 \
        [--state-dir DIR] [--cdr FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from json import encoder as _json_encoder
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from karl_core.ng import bencode
from karl_core.runtime import tune_garbage_collection
from signalling_floor import rewrite_sdp, sdp_peer

json_text: Callable[[str], str] = _json_encoder.encode_basestring_ascii  # (C: a str as a JSON string)
REPLY_CACHE_SIZE = 4096  # retransmissions are answered from here (rtpengine keeps replies 30 s)
CDR_LINGER_S = 0.02  # as Karl's CDR writer: the records of calls ending within 20 ms share a write
_JOURNAL_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class Stream:
    """One local UDP socket, the one the SDP sent to the other party names: what arrives here goes to
    `peer` (this party's address) out of `sink`, the socket this party sends to."""

    __slots__ = ("bytes", "packets", "peer", "port", "sink", "sock")

    def __init__(self, sock: socket.socket, port: int) -> None:
        self.sock, self.port = sock, port
        self.peer: tuple[str, int] | None = None  # this party's address and port, from its SDP
        self.sink: Stream | None = None
        self.packets = self.bytes = 0


class Party:
    __slots__ = ("created", "rtcp", "rtp", "sdp_peer", "tag")

    def __init__(self, tag: str, rtp: Stream, rtcp: Stream) -> None:
        self.tag, self.rtp, self.rtcp = tag, rtp, rtcp
        self.sdp_peer: tuple[str, int] = ("", 0)
        self.created = int(time.time())


class Call:
    __slots__ = ("call_id", "created", "parties", "version")

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.parties: dict[str, Party] = {}
        self.created = time.time()
        self.version = 0


class FloorProxy(asyncio.DatagramProtocol):
    def __init__(self, media_ip: str, ports: range, state_dir: Path | None, cdr_path: Path | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.media_ip = media_ip
        self.free_ports = list(range(ports.start + ports.start % 2, ports.stop - 1, 2))
        self.calls: dict[str, Call] = {}
        self.replies: dict[bytes, bytes] = {}
        # Kept open: one write per change, in the kernel before the reply leaves (as Karl's store: no fsync)
        self.journal = os.open(state_dir / "calls.jsonl", _JOURNAL_FLAGS, 0o600) if state_dir else None
        self.cdr = os.open(cdr_path, _JOURNAL_FLAGS, 0o600) if cdr_path else None
        self.cdr_queue: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------------ NG

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        cookie, _, payload = data.partition(b" ")
        cached = self.replies.get(cookie)
        if cached is not None:
            self.transport.sendto(cached, addr)
            return
        reply: dict[str, Any] | bytes
        try:
            request = bencode.decode_ng_dict(payload)
            reply = self.handle(request)
        except Exception as exc:  # a measuring stick answers every request
            reply = {"result": "error", "error-reason": f"{type(exc).__name__}: {exc}"}
        out = cookie + b" " + (reply if isinstance(reply, bytes) else bencode.encode(reply, sort_keys=False))
        if len(self.replies) >= REPLY_CACHE_SIZE:
            del self.replies[next(iter(self.replies))]
        self.replies[cookie] = out
        self.transport.sendto(out, addr)

    def handle(self, request: dict[str, Any]) -> dict[str, Any] | bytes:
        """The reply to one request: a dictionary to bencode, or a reply bencoded already."""
        command = request["command"]
        if command == "offer":
            return self._offer_or_answer(request, request["from-tag"], None)
        if command == "answer":
            return self._offer_or_answer(request, request["to-tag"], request["from-tag"])
        if command == "delete":
            return self._delete(request)
        if command == "ping":
            return {"result": "pong"}
        return {"result": "error", "error-reason": "Unrecognized command"}

    def _offer_or_answer(self, request: dict[str, Any], tag: str, offerer: str | None) -> dict[str, Any]:
        call_id = request["call-id"]
        call = self.calls.get(call_id)
        if call is None:
            if offerer is not None:
                return {"result": "error", "error-reason": "Unknown call-id"}
            call = self.calls[call_id] = Call(call_id)
        sdp = request["sdp"]
        party = call.parties.get(tag)
        if party is None:
            party = call.parties[tag] = self._party(tag)
        party.sdp_peer = address, port = sdp_peer(sdp)
        party.rtp.peer, party.rtcp.peer = (address, port), (address, port + 1)
        if offerer is not None:  # the answer links the two parties' streams both ways
            other = call.parties[offerer]
            party.rtp.sink, other.rtp.sink = other.rtp, party.rtp
            party.rtcp.sink, other.rtcp.sink = other.rtcp, party.rtcp
        call.version += 1
        self._store(call)
        # The SDP sent on carries the port the other party is to send to: this party's socket pair
        return {"result": "ok", "sdp": rewrite_sdp(sdp, self.media_ip, party.rtp.port, call.version)}

    def _delete(self, request: dict[str, Any]) -> dict[str, Any] | bytes:
        call = self.calls.pop(request["call-id"], None)
        if call is None:
            return {"result": "error", "error-reason": "Unknown call-id"}
        reply = self._statistics(call)  # (read before the streams go)
        for party in call.parties.values():
            for stream in (party.rtp, party.rtcp):
                self.loop.remove_reader(stream.sock.fileno())
                stream.sock.close()
            self.free_ports.append(party.rtp.port)
        if self.journal is not None:
            os.write(self.journal, b'{"call-id":%s,"removed":true}\n' % json_text(call.call_id).encode())
        self._record(call)
        return reply

    # ------------------------------------------------------------------------------- the streams

    def _party(self, tag: str) -> Party:
        port = self.free_ports.pop()
        return Party(tag, self._stream(port), self._stream(port + 1))

    def _stream(self, port: int) -> Stream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((self.media_ip, port))
        stream = Stream(sock, port)
        self.loop.add_reader(sock.fileno(), self._relay, stream)
        return stream

    @staticmethod
    def _relay(stream: Stream) -> None:
        while True:
            try:
                data = stream.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error from an earlier send: the next datagram may be fine
            stream.packets += 1
            stream.bytes += len(data)
            # What arrives here came from the other party and goes to this stream's party, out of the
            # socket that party sends to (symmetric RTP)
            sink = stream.sink
            if sink is not None and stream.peer is not None:
                with contextlib.suppress(OSError):
                    sink.sock.sendto(data, stream.peer)

    # -------------------------------------------------------------------------- state and records

    def _store(self, call: Call) -> None:
        if self.journal is None:
            return
        parties = ",".join(
            f'{{"tag":{json_text(party.tag)},"media":[{{"type":"audio","protocol":"RTP/AVP",'
            f'"ports":[{party.rtp.port},{party.rtcp.port}],'
            f'"peer":[{json_text(party.sdp_peer[0])},{party.sdp_peer[1]}],'
            f'"sink":{party.rtp.sink.port if party.rtp.sink else "null"}}}]}}'
            for party in call.parties.values()
        )
        line = (
            f'{{"call-id":{json_text(call.call_id)},"version":{call.version},'
            f'"created":{call.created!r},"parties":[{parties}]}}\n'
        )
        os.write(self.journal, line.encode())

    def _statistics(self, call: Call) -> bytes:
        """The delete reply, bencoded from a template (its keys in the order 10.5 and Karl send them)."""
        created = int(call.created)
        local = _bstr(self.media_ip)
        totals = [0, 0, 0, 0]  # RTP packets, bytes, RTCP packets, bytes
        tags: list[bytes] = []
        for party in call.parties.values():
            streams = []
            for kind, s in ((b"3:RTP", party.rtp), (b"4:RTCP", party.rtcp)):
                peer = s.peer or ("", 0)
                endpoint = b"d6:family4:IPv47:address%s4:porti%dee" % (_bstr(peer[0]), peer[1])
                streams.append(
                    b"d10:local porti%de13:local address%s6:family4:IPv48:endpoint%s19:advertised endpoint%s"
                    b"11:last packeti%de5:flagsl%s6:fillede5:statsd7:packetsi%de5:bytesi%de6:errorsi0eee"
                    % (s.port, local, endpoint, endpoint, created, kind, s.packets, s.bytes)
                )
            totals[0] += party.rtp.packets
            totals[1] += party.rtp.bytes
            totals[2] += party.rtcp.packets
            totals[3] += party.rtcp.bytes
            others = b"".join(
                b"d3:tag%s4:type12:offer/answere" % _bstr(tag) for tag in call.parties if tag != party.tag
            )
            tag = _bstr(party.tag)
            tags.append(
                tag + b"d3:tag%s7:createdi%de13:subscriptionsl%se11:subscribersl%se6:mediasld5:indexi1e"
                b"4:type5:audio8:protocol7:RTP/AVP7:streamsl%se5:flagsl11:initialized4:send4:recveeee"
                % (tag, party.created, others, others, b"".join(streams))
            )
        return (
            b"d6:result2:ok7:createdi%de10:created_usi%de11:last signali%de4:SSRCde4:tagsd%se"
            b"6:totalsd3:RTPd7:packetsi%de5:bytesi%de6:errorsi0ee4:RTCPd7:packetsi%de5:bytesi%de6:errorsi0eeee"
            % (
                created,
                int(call.created * 1e6) % 1_000_000,
                int(time.time()),
                b"".join(tags),
                totals[0],
                totals[1],
                totals[2],
                totals[3],
            )
        )

    def _record(self, call: Call) -> None:
        if self.cdr is None:
            return
        parties = ",".join(
            f'{{"tag":{json_text(p.tag)},"packets":{p.rtp.packets},"bytes":{p.rtp.bytes},'
            f'"peer":[{json_text(p.sdp_peer[0])},{p.sdp_peer[1]}]}}'
            for p in call.parties.values()
        )
        if not self.cdr_queue:
            self.loop.call_later(CDR_LINGER_S, self._write_records)
        self.cdr_queue.append(
            f'{{"call_id":{json_text(call.call_id)},"start":{call.created!r},"end":{time.time()!r},'
            f'"parties":[{parties}]}}'
        )

    def _write_records(self) -> None:
        assert self.cdr is not None
        lines, self.cdr_queue = self.cdr_queue, []
        os.write(self.cdr, ("\n".join(lines) + "\n").encode())


def _bstr(text: str) -> bytes:
    data = text.encode()
    return b"%d:%s" % (len(data), data)


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.ng.rpartition(":")
    low, _, high = args.ports.partition("-")
    loop = asyncio.get_running_loop()
    proxy: type[FloorProxy] = FloorProxy
    if args.plain_path:
        from plain_path import PlainPathProxy  # (it builds on this module)

        proxy = PlainPathProxy
    await loop.create_datagram_endpoint(
        lambda: proxy(args.media_ip, range(int(low), int(high) + 1), args.state_dir, args.cdr),
        local_addr=(host, int(port)),
    )
    tune_garbage_collection()  # as Karl's node does after start-up
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ng", required=True, help="HOST:PORT to listen for NG requests on")
    parser.add_argument("--media-ip", required=True)
    parser.add_argument("--ports", required=True, help="LOW-HIGH, the media ports")
    parser.add_argument("--state-dir", type=Path, help="keep the calls' state in DIR/calls.jsonl")
    parser.add_argument("--cdr", type=Path, help="append a JSON record per ended call to this file")
    parser.add_argument(
        "--plain-path", action="store_true", help="with plain_path.py's share of 10.5's work (see there)"
    )
    args = parser.parse_args(argv)
    if args.state_dir:
        args.state_dir.mkdir(parents=True, exist_ok=True)
    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
