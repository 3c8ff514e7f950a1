"""Every documented metric moves with real activity: an in-process media node, real NG requests and real
RTP/RTCP over UDP on loopback, scraped before and after with `render_metrics`."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from aioice import stun
from prometheus_client.parser import text_string_to_metric_families
from tests.medianode.test_metrics_attachments import DRIVEN, NEEDS_A_DATABASE, ONLY_ON_FAILURE

from karl_core.config import KarlConfig
from karl_core.ng import bencode
from karl_medianode.cli import node_settings
from karl_medianode.dtls.certificate import DtlsCertificate
from karl_medianode.dtls.session import DtlsSession, DtlsState
from karl_medianode.engine import JitterBufferSettings
from karl_medianode.node import MediaNode
from karl_medianode.operations.metrics import attach, render_metrics
from karl_medianode.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_receiver_report,
    build_sender_report,
)
from karl_testkit import NgClient, Party, free_port, free_port_block, wait_for

T = TypeVar("T")
MEDIA_IP = "127.0.0.2"
PEER_IP = "127.0.0.1"
PORTS = 64

# Families that cannot move in this test, and why (docs/metrics.md says the same).
NOT_BUILT_YET = {"karl_fec_recoveries_total"}
CONSTANT = {
    "karl_build_info",
    "karl_process_start_time_seconds",
    "karl_process_max_fds",
    "karl_sessions_max",
    "karl_port_pool_ports_capacity",
}
# Resident memory moves in whole pages and a warm process often reuses freed ones: checked against the
# kernel's own figure instead.
PAGE_GRANULAR = {"karl_process_resident_memory_bytes"}
# Driven through node.admission / node.cdr: covered by test_metrics_attachments.py.
ATTACHMENTS = DRIVEN | NEEDS_A_DATABASE | ONLY_ON_FAILURE
# Need a state directory (KARL_STATE_DIR), which this node has not: covered by test_store_metrics.py.
CALL_STORE = {
    "karl_call_store_saves_total",
    "karl_call_store_removals_total",
    "karl_call_store_restores_total",
}
# Need a fleet (Redis): covered by tests/fleet/test_router.py, which watches them move.
FLEET = {
    "karl_fleet_lease_valid",
    "karl_fleet_holding_over",
    "karl_fleet_calls_held",
    "karl_fleet_writes_queued",
    "karl_fleet_lease_renewals_total",
    "karl_fleet_lease_lost_total",
    "karl_fleet_reasserted_calls_total",
    "karl_fleet_fenced_calls_total",
    "karl_fleet_cdrs_withheld_total",
    "karl_fleet_refused_requests_total",
    "karl_fleet_redis_errors_total",
    "karl_fleet_redis_latency_seconds",
}
# Need a fleet that fails over: tests/fleet/test_failover.py watches them move (adoptions_failed only
# moves when a survivor has no ports left for a moved call).
FAILOVER = {
    "karl_fleet_calls_adopted_total",
    "karl_fleet_adoptions_failed_total",
    "karl_fleet_peers",
    "karl_fleet_peers_reachable",
    "karl_fleet_majority_reachable",
    "karl_fleet_webhook_deliveries_total",
    "karl_fleet_webhook_dropped_total",
    "karl_fleet_webhook_queued",
}


# ---------------------------------------------------------------------------- scrapes


SampleKey = tuple[str, frozenset[tuple[str, str]]]
_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)


@dataclass
class Scrape:
    text: str
    types: dict[str, str] = field(default_factory=dict)
    samples: dict[SampleKey, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls(text, dict(_TYPE_LINE.findall(text)))
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                scrape.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return scrape

    def family_of(self, sample_name: str) -> str:
        if sample_name in self.types:
            return sample_name
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample_name.removesuffix(suffix)
            if base != sample_name and self.types.get(base) == "histogram":
                return base
        raise KeyError(sample_name)

    def family(self, name: str) -> dict[SampleKey, float]:
        return {key: value for key, value in self.samples.items() if self.family_of(key[0]) == name}

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]


def moved(before: Scrape, after: Scrape, family: str) -> bool:
    old, new = before.family(family), after.family(family)
    return any(key not in old or old[key] != value for key, value in new.items())


# ---------------------------------------------------------------------------- an in-process node


class LiveNode:
    """A MediaNode on a uvloop event loop in a thread; the test talks to it over real UDP."""

    def __init__(self, settings: Any) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="karl-node", daemon=True)
        self.thread.start()

        async def start() -> MediaNode:
            node = MediaNode(settings)
            await node.start()
            attach(node)
            node.startup_complete = True  # as run_node does once everything is up
            return node

        self.node = self.run(start())
        self.ng = NgClient((settings.ng_address, settings.ng_port))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the node's event loop (the engine's state is only touched there)."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def scrape(self) -> Scrape:
        body, content_type = self.call(lambda: render_metrics(self.node))
        assert content_type.startswith("text/plain; version=0.0.4")
        return Scrape.parse(body.decode())

    def request(self, **payload: Any) -> dict[str, Any]:
        reply: dict[str, Any] = self.ng.request(payload)
        return reply

    def stop(self) -> None:
        self.ng.close()
        self.node.settings.shutdown_grace = 0
        self.run(self.node.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def make_settings(**timers: int) -> Any:
    port_min = free_port_block(PORTS, MEDIA_IP)
    cfg = KarlConfig.model_validate(
        {
            "ng_protocol": {"address": "127.0.0.1", "udp_port": free_port()},
            "sessions": {"min_port": port_min, "max_port": port_min + PORTS - 1},
            "media": {"ip": MEDIA_IP},
            "timers": timers,
        }
    )
    settings = node_settings(cfg)
    settings.sweep_interval = 0.1
    settings.shutdown_grace = 0
    return settings


@pytest.fixture
def live_node() -> Iterator[LiveNode]:
    node = LiveNode(make_settings())
    try:
        yield node
    finally:
        node.stop()


# ---------------------------------------------------------------------------- parties and packets


def fingerprint_of(text: str) -> str:
    found = re.search(r"a=fingerprint:sha-256 (\S+)", text)
    assert found, text
    return found[1]


def handshake(client: DtlsSession, sock: socket.socket, karl: tuple[str, int], timeout: float = 5.0) -> None:
    """Run a DTLS handshake as the client from `sock` to Karl until the client is done (bounded)."""
    client.start(time.monotonic())
    sock.settimeout(0.02)
    deadline = time.monotonic() + timeout
    while client.state is DtlsState.CONNECTING and time.monotonic() < deadline:
        for datagram in client.take_datagrams():
            sock.sendto(datagram, karl)
        try:
            client.handle_datagram(sock.recv(4096), time.monotonic())
        except TimeoutError:
            due = client.next_deadline()
            if due is not None and due <= time.monotonic():
                client.handle_timer(time.monotonic())
    for datagram in client.take_datagrams():
        sock.sendto(datagram, karl)


def sdp(port: int, medias: int = 1) -> str:
    lines = ["v=0", f"o=- 1 1 IN IP4 {PEER_IP}", "s=metrics", f"c=IN IP4 {PEER_IP}", "t=0 0"]
    for i in range(medias):
        lines += [f"m=audio {port + 2 * i} RTP/AVP 0 8", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


def media_port(sdp_text: str) -> int:
    match = re.search(r"^m=audio (\d+) ", sdp_text, re.M)
    assert match, sdp_text
    return int(match.group(1))


def rtp(seq: int, pt: int = 0, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + b"\x11" * 160


def rtcp_sr(ssrc: int = 0x1234, version: int = 2) -> bytes:
    return struct.pack("!BBHIIIIII", version << 6, 200, 6, ssrc, 0, 0, 0, 0, 0)


def sender_report(ssrc: int, fraction: int) -> SenderReport:
    return SenderReport(ssrc, 3_900_000_000, fraction, 0, 20, 3200, ())


def receiver_report(reporter: int, about: SenderReport, fraction_lost: int, jitter: int) -> bytes:
    # DLSR of one unit (15 µs): the round trip is the time the test itself took, always > 0
    block = ReportBlock(about.ssrc, fraction_lost, 1, 19, jitter, about.ntp_middle, 1)
    return build_receiver_report(ReceiverReport(reporter, (block,)))


def setup_call(node: LiveNode, a: Party, b: Party, call_id: str, **extra: Any) -> tuple[int, int]:
    """Offer from A (caller), answer from B (callee); returns (port A sends to, port B sends to)."""
    offer = node.request(
        command="offer", **{"call-id": call_id, "from-tag": "tagA", "sdp": sdp(a.port)}, **extra
    )
    assert offer["result"] == "ok", offer
    answer = node.request(
        command="answer",
        **{"call-id": call_id, "from-tag": "tagA", "to-tag": "tagB", "sdp": sdp(b.port)},
        **extra,
    )
    assert answer["result"] == "ok", answer
    return media_port(answer["sdp"]), media_port(offer["sdp"])


def receive(sock: socket.socket, count: int) -> int:
    got = 0
    for _ in range(count):
        try:
            sock.recv(2048)
        except TimeoutError:
            break
        got += 1
    return got


def relayed(node: LiveNode, counter: str) -> int:
    """The sum of one relay counter over the streams of the calls now known (read on the loop)."""
    engine = node.node.engine
    assert engine is not None
    return int(
        node.call(
            lambda: sum(getattr(s, counter) for c in engine.calls.values() for s in engine.streams_of(c))
        )
    )


# ---------------------------------------------------------------------------- the test


def test_every_metric_moves_with_real_activity(live_node: LiveNode, parties: Callable[[], Party]) -> None:
    node = live_node
    engine = node.node.engine
    ng_proto = node.node.ng
    assert engine is not None and ng_proto is not None
    first = node.scrape()
    families = set(first.types)
    assert len(families) >= 50, sorted(families)

    # A call that times out: no media after the answer, with a short media timeout for a moment.
    a, b = parties(), parties()
    node.call(lambda: setattr(engine.settings, "timeout", 0.3))
    setup_call(node, a, b, "mt-timeout")
    wait_for(lambda: engine.counters.ended_by_reason.get("timeout", 0) >= 1, timeout=5)
    node.call(lambda: setattr(engine.settings, "timeout", 60.0))

    # The main call: RTP and RTCP both ways, with strict source and immediate latching.
    opts = {"flags": ["strict-source"], "endpoint-learning": ["immediate"]}
    to_a_side, to_b_side = setup_call(node, a, b, "mt-main", **opts)
    # the caller's sequence misses 5 and 6; 5 comes late: one packet lost, one late
    for seq in [*range(5), *range(7, 20), 5, 20]:
        a.rtp.sendto(rtp(seq), (MEDIA_IP, to_a_side))
    for seq in range(20):
        b.rtp.sendto(rtp(seq, ssrc=0x9999), (MEDIA_IP, to_b_side))
    assert receive(b.rtp, 20) == 20 and receive(a.rtp, 20) == 20
    # sender reports both ways, then each party reports on the other's media echoing its SR
    sr_a, sr_b = sender_report(0x1234, 1 << 30), sender_report(0x9999, 1 << 31)
    a.rtcp.sendto(build_sender_report(sr_a), (MEDIA_IP, to_a_side + 1))
    b.rtcp.sendto(build_sender_report(sr_b), (MEDIA_IP, to_b_side + 1))
    assert receive(b.rtcp, 1) == 1 and receive(a.rtcp, 1) == 1
    a.rtcp.sendto(receiver_report(0x1234, sr_b, 0, 40), (MEDIA_IP, to_a_side + 1))
    assert receive(b.rtcp, 1) == 1
    b.rtcp.sendto(receiver_report(0x9999, sr_a, 13, 80), (MEDIA_IP, to_b_side + 1))
    assert receive(a.rtcp, 1) == 1

    # A call set up while the jitter buffer is on: reordered packets wait and leave in sequence order.
    jitter_buffer = JitterBufferSettings(0.02, 0.2, adaptive=True)
    node.call(lambda: setattr(engine.settings, "jitter_buffer", jitter_buffer))
    c_a, c_b = parties(), parties()
    to_c_side, _ = setup_call(node, c_a, c_b, "mt-jitter")
    node.call(lambda: setattr(engine.settings, "jitter_buffer", None))
    for seq in (0, 2, 1, 3):
        c_a.rtp.sendto(rtp(seq, ssrc=0x7777), (MEDIA_IP, to_c_side))
    assert [struct.unpack("!H", c_b.rtp.recv(2048)[2:4])[0] for _ in range(4)] == [0, 1, 2, 3]
    # bad media: an unknown payload type, a datagram that is no RTP, an RTCP compound rtpengine rejects,
    # and a stranger sending to a latched strict-source port
    a.rtp.sendto(rtp(21, pt=96), (MEDIA_IP, to_a_side))
    a.rtp.sendto(b"not rtp", (MEDIA_IP, to_a_side))
    assert receive(b.rtp, 2) == 2, "both are forwarded, as rtpengine does"
    a.rtcp.sendto(rtcp_sr(version=1), (MEDIA_IP, to_a_side + 1))
    stranger = parties()
    stranger.rtp.sendto(rtp(101), (MEDIA_IP, to_a_side))
    wait_for(lambda: relayed(node, "dropped_source") + relayed(node, "dropped_malformed") >= 2)
    # block media from the caller: dropped
    assert node.request(command="block media", **{"call-id": "mt-main", "from-tag": "tagA"})["result"] == "ok"
    a.rtp.sendto(rtp(22), (MEDIA_IP, to_a_side))
    wait_for(lambda: relayed(node, "dropped_blocked") >= 1)

    # A call that is never answered: media from the caller has no destination yet (the callee's address
    # comes with the answer). The caller's port is not in any SDP yet; `query` lists it.
    c = parties()
    offer = node.request(command="offer", **{"call-id": "mt-ringing", "from-tag": "tagC", "sdp": sdp(c.port)})
    assert offer["result"] == "ok"
    ringing = node.request(command="query", **{"call-id": "mt-ringing"})
    caller_port = ringing["tags"]["tagC"]["medias"][0]["streams"][0]["local port"]
    c.rtp.sendto(rtp(1), (MEDIA_IP, caller_port))
    wait_for(lambda: relayed(node, "dropped_no_destination") >= 1)

    # An ICE caller: its checks to Karl's two sockets nominate both (connected), one check carries a
    # wrong password (dropped), one claims Karl's role (a conflict); Karl's checks to its candidate on
    # an address a loopback socket cannot send to fail at once (unsent).
    ice_caller, ice_callee = parties(), parties()
    ice_offer = sdp(ice_caller.port) + (
        "a=ice-ufrag:mtUf\r\na=ice-pwd:mtPasswordMtPasswordMtPw\r\n"
        f"a=candidate:1 1 UDP 2130706431 {PEER_IP} {ice_caller.port} typ host\r\n"
        f"a=candidate:1 2 UDP 2130706430 {PEER_IP} {ice_caller.port + 1} typ host\r\n"
        f"a=candidate:2 1 UDP 1694498815 203.0.113.9 {ice_caller.port} typ srflx raddr {PEER_IP} "
        f"rport {ice_caller.port}\r\n"
    )
    ice_ids = {"call-id": "mt-ice", "from-tag": "tagI"}
    assert node.request(command="offer", sdp=ice_offer, **ice_ids)["result"] == "ok"
    ice_answer = node.request(command="answer", sdp=sdp(ice_callee.port), **ice_ids, **{"to-tag": "tagJ"})
    karl_ufrag = re.search(r"a=ice-ufrag:(\S+)", ice_answer["sdp"])[1]  # type: ignore[index]
    karl_pwd = re.search(r"a=ice-pwd:(\S+)", ice_answer["sdp"])[1]  # type: ignore[index]
    ice_port, ice_rtcp_port = (
        int(re.search(rf"a=candidate:\S+ {component} UDP \d+ \S+ (\d+)", ice_answer["sdp"])[1])  # type: ignore[index]
        for component in (1, 2)
    )

    def check(sock: socket.socket, port: int, pwd: str, **attributes: Any) -> None:
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{karl_ufrag}:mtUf"
        request.attributes.update(attributes)
        request.add_message_integrity(pwd.encode())
        sock.sendto(bytes(request), (MEDIA_IP, port))

    def answer_karls_check(sock: socket.socket) -> bool:
        """Answer one check of Karl's that reached `sock` (as the ICE caller does); False: none yet."""
        sock.settimeout(0.05)
        try:
            data, source = sock.recvfrom(2048)
        except TimeoutError:
            return False
        request = stun.parse_message(data)
        if request.message_class != stun.Class.REQUEST:
            return False
        response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = source
        response.add_message_integrity(b"mtPasswordMtPasswordMtPw")
        sock.sendto(bytes(response), source)
        return True

    for sock, port in ((ice_caller.rtp, ice_port), (ice_caller.rtcp, ice_rtcp_port)):
        check(sock, port, karl_pwd, **{"ICE-CONTROLLING": 1, "USE-CANDIDATE": None})
    # Karl selects a nominated pair once its own check of it succeeded: the caller answers them
    wait_for(
        lambda: (answer_karls_check(ice_caller.rtp), answer_karls_check(ice_caller.rtcp))
        and node.scrape().value("karl_ice_outcomes_total", result="connected") == 1
    )
    check(ice_caller.rtp, ice_port, "not-karls-password")
    check(ice_caller.rtp, ice_port, karl_pwd, **{"ICE-CONTROLLED": 1})
    wait_for(lambda: node.scrape().value("karl_ice_role_conflicts_total") >= 1)
    wait_for(lambda: node.scrape().value("karl_own_datagrams_unsent_total") >= 1)

    # DTLS callees: one handshake that finishes, one whose certificate matches no fingerprint of its
    # SDP (failed), and a record from a stranger (dropped).
    certificate = DtlsCertificate.generate()
    for call_id, fingerprint in (("mt-dtls", certificate.fingerprint()), ("mt-dtls-bad", "00:" * 31 + "00")):
        dtls_caller, dtls_callee = parties(), parties()
        dtls_ids = {"call-id": call_id, "from-tag": "tagD"}
        offered = node.request(
            command="offer",
            sdp=sdp(dtls_caller.port),
            **dtls_ids,
            **{"transport-protocol": "UDP/TLS/RTP/SAVP", "SDES": ["off"]},
        )
        callee_answer = sdp(dtls_callee.port).replace("RTP/AVP", "UDP/TLS/RTP/SAVP") + (
            f"a=setup:active\r\na=fingerprint:sha-256 {fingerprint}\r\n"
        )
        answered = node.request(command="answer", sdp=callee_answer, **dtls_ids, **{"to-tag": "tagE"})
        assert answered["result"] == "ok", answered
        karl_port = int(re.search(r"m=audio (\d+)", offered["sdp"])[1])  # type: ignore[index]
        karls = [("sha-256", fingerprint_of(offered["sdp"]))]
        client = DtlsSession(certificate, active=True, fingerprints=karls)
        handshake(client, dtls_callee.rtp, (MEDIA_IP, karl_port))
    wait_for(lambda: node.scrape().value("karl_dtls_handshakes_total", result="failed") == 1)
    assert node.scrape().value("karl_dtls_handshakes_total", result="connected") == 1
    stranger_dtls = parties()
    stranger_dtls.rtp.sendto(b"\x16\xfe\xfd" + bytes(40), (MEDIA_IP, karl_port))
    wait_for(lambda: node.scrape().value("karl_dtls_records_dropped_total") >= 1)

    # A call deleted with the default delete delay (stays for 30 s) and one deleted at once.
    setup_call(node, a, b, "mt-delayed")
    assert node.request(command="delete", **{"call-id": "mt-delayed"})["result"] == "ok"
    setup_call(node, a, b, "mt-gone")
    assert node.request(command="delete", **{"call-id": "mt-gone", "delete-delay": 0})["result"] == "ok"

    # NG requests of every kind, good and bad.
    assert node.request(command="ping")["result"] == "pong"
    assert node.request(command="query", **{"call-id": "mt-main"})["result"] == "ok"
    assert node.request(command="list")["result"] == "ok"
    assert node.request(command="statistics")["result"] == "ok"
    assert node.request(command="no such command")["result"] == "error"
    assert node.request(command="query", **{"call-id": "nobody"})["result"] == "error"
    assert node.ng.raw(b"cookie-1 this is not bencode")  # "invalid": answered with an error
    assert node.ng.raw(b"no-space-so-no-cookie", timeout=0.3) is None
    datagram = b"retransmitted " + bencode.encode({"command": "ping"})
    assert node.ng.raw(datagram) == node.ng.raw(datagram)  # the second from the reply cache

    # A bug in a handler (simulated): answered with an internal error, counted.
    original = ng_proto.handler

    def buggy(command: Any, options: Any, addr: tuple[str, int], fits: Any) -> Any:
        if options.call_id == "mt-bug":
            raise RuntimeError("simulated bug")
        return original(command, options, addr, fits)

    node.call(lambda: setattr(ng_proto, "handler", buggy))
    assert node.request(command="query", **{"call-id": "mt-bug"})["result"] == "error"
    node.call(lambda: setattr(ng_proto, "handler", original))

    # An offer needing more ports than are left: "Ran out of ports", and no call is left behind.
    exhausting = node.request(
        command="offer",
        **{"call-id": "mt-exhaust", "from-tag": "tagX", "sdp": sdp(c.port, medias=PORTS // 2)},
    )
    assert exhausting == {"result": "error", "error-reason": "Ran out of ports"}
    assert "mt-exhaust" not in node.request(command="list")["calls"]
    # An offer that needs SRTP termination: refused before anything is built.
    secure = sdp(c.port).replace("RTP/AVP", "RTP/SAVP")
    refused_srtp = node.request(
        command="offer",
        **{"call-id": "mt-srtp", "from-tag": "tagS", "sdp": secure, "transport-protocol": "RTP/AVP"},
    )
    assert refused_srtp == {"result": "error", "error-reason": "SRTP termination not supported by Karl yet"}

    # Drained: new calls are refused (left drained for the scrape).
    node.call(node.node.drain)
    refused = node.request(
        command="offer", **{"call-id": "mt-refused", "from-tag": "tagR", "sdp": sdp(c.port)}
    )
    assert refused["result"] == "error"

    # The event loop stalls for a moment: the lag shows.
    node.call(lambda: time.sleep(0.3))
    wait_for(lambda: node.node.loop_lag > 0.05, timeout=2)
    # A burst larger than the NG socket's receive buffer while the node is busy: the kernel drops the
    # rest and counts it (empty requests, from a socket of their own: their replies stay out of the way).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
        flood.bind(("127.0.0.1", 0))
        node.loop.call_soon_threadsafe(time.sleep, 0.5)
        for _ in range(3000):
            flood.sendto(b"flood ", node.ng.address)
    assert node.scrape().value("karl_ng_receive_dropped_total") > 0

    second = node.scrape()
    assert set(second.types) == families, "the set of families never changes"
    exceptions = NOT_BUILT_YET | CONSTANT | PAGE_GRANULAR | ATTACHMENTS | CALL_STORE | FLEET | FAILOVER
    assert exceptions <= families
    still = sorted(f for f in families - exceptions if not moved(first, second, f))
    assert not still, f"families that did not move: {still}"
    constant_moved = sorted(f for f in CONSTANT | NOT_BUILT_YET if moved(first, second, f))
    assert not constant_moved, constant_moved

    # What moved, moved by the right amounts.
    vm_rss = next(
        line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:")
    )
    rss = int(vm_rss.split()[1]) * 1024
    assert 0.5 * rss < second.value("karl_process_resident_memory_bytes") < 2 * rss
    assert second.value("karl_sessions_ended_total", reason="timeout") == 1
    assert second.value("karl_port_pool_exhausted_total") == 1
    assert second.value("karl_call_changes_rolled_back_total") == 1  # the offer out of ports
    assert second.value("karl_offers_refused_total", reason="srtp_termination") == 1
    assert second.value("karl_sessions_in_delete_delay") == 1
    assert second.value("karl_sessions_unanswered") == 1
    assert second.value("karl_node_ready") == 0 and second.value("karl_node_draining") == 1
    # from the callers: 20 + unknown payload type + not RTP + the stranger's + one while blocked + one
    # in the unanswered call + 4 through the jitter buffer; from the callee: 20
    assert second.value("karl_media_packets_total", kind="rtp", direction="from_caller") == 29
    assert second.value("karl_media_packets_total", kind="rtp", direction="from_callee") == 20
    assert second.value("karl_media_packets_total", kind="rtcp", direction="from_caller") == 3
    assert second.value("karl_media_packets_total", kind="rtcp", direction="from_callee") == 2
    # gaps: 5 and 6 of the main call, 1 of the jitter-buffer call; 5 and 1 came late after all
    assert second.value("karl_media_rtp_lost_total", direction="from_caller") == 3
    assert second.value("karl_media_rtp_late_total", direction="from_caller") == 2
    assert second.value("karl_jitter_buffer_latency_count") == 4
    assert 4 * 0.015 < second.value("karl_jitter_buffer_latency_sum") < 4 * 0.2
    assert second.value("karl_media_rtp_lost_total", direction="from_callee") == 0
    # two SRs and two RRs (the version-1 compound is dropped before it is read)
    assert second.value("karl_rtcp_reports_total", type="sender") == 2
    assert second.value("karl_rtcp_reports_total", type="receiver") == 2
    assert second.value("karl_rtcp_rtt_seconds_count") == 2
    assert 0 < second.value("karl_rtcp_rtt_seconds_sum") < 2.0
    # jitter 40 and 80 units at 8 kHz; 0 and 13/256 lost
    assert second.value("karl_rtcp_jitter_seconds_sum") == pytest.approx(0.015)
    assert second.value("karl_rtcp_packet_loss_ratio_sum") == pytest.approx(13 / 256)
    assert second.value("karl_rtcp_packet_loss_ratio_bucket", le="0.0") == 1
    # only the second report knew both legs' round trip: one MOS (loss 5 % -> 4.1 on loopback delays)
    assert second.value("karl_rtcp_mos_count") == 1
    assert 3.9 <= second.value("karl_rtcp_mos_sum") <= 4.1
    assert second.value("karl_media_malformed_total", direction="from_caller") == 1
    for reason in ("blocked", "no_destination", "strict_source", "malformed_rtcp"):
        assert second.value("karl_relay_dropped_total", reason=reason) >= 1, reason
    assert second.value("karl_ng_internal_errors_total") == 1
    # an unknown command and a payload that is not bencode: neither names a command
    assert second.value("karl_ng_commands_total", command="invalid", result="error") == 2
    assert second.value("karl_ng_command_duration_count", command="ping") == 2
    assert second.value("karl_ng_cookieless_dropped_total") == 1
    assert second.value("karl_ng_reply_cache_hits_total") >= 1
    ended = sum(second.family("karl_sessions_ended_total").values())
    assert ended >= 2  # timed out, deleted at once (and the burst offers)
    assert second.value("karl_session_duration_seconds_count") == ended

    # Nothing that identifies a call or an address is ever a label value.
    for forbidden in ("mt-main", "mt-ringing", "tagA", "tagB", PEER_IP, MEDIA_IP, str(to_a_side)):
        assert f'"{forbidden}"' not in second.text, forbidden

    # Undrained, everything ended: gauges fall back, counters keep what the ended streams carried.
    node.call(node.node.undrain)
    assert second.value("karl_ice_agents") == 1
    assert second.value("karl_ice_outcomes_total", result="connected") == 1
    assert second.value("karl_ice_checks_answered_total") >= 3
    assert second.value("karl_ice_stun_dropped_total") >= 1
    for call_id in ("mt-main", "mt-ringing", "mt-delayed", "mt-jitter", "mt-ice", "mt-dtls", "mt-dtls-bad"):
        assert node.request(command="delete", **{"call-id": call_id, "delete-delay": 0})["result"] == "ok"
    third = node.scrape()
    assert third.value("karl_node_ready") == 1 and third.value("karl_node_draining") == 0
    assert third.value("karl_sessions_active") == 0 and third.value("karl_port_pool_ports_in_use") == 0
    assert third.value("karl_media_streams_open", kind="rtp") == 0
    for name, kind in (("karl_media_packets_total", "rtp"), ("karl_media_bytes_total", "rtcp")):
        for direction in ("from_caller", "from_callee"):
            assert third.value(name, kind=kind, direction=direction) == second.value(
                name, kind=kind, direction=direction
            ), (name, kind, direction)
    assert third.value("karl_media_packets_total", kind="rtp", direction="unattributed") == 0
    for before, after in ((first, second), (second, third)):
        for key, value in after.samples.items():
            if after.types[after.family_of(key[0])] in ("counter", "histogram"):
                assert value >= before.samples.get(key, 0.0), f"counter went down: {key}"


def test_media_counters_survive_streams_closed_in_the_middle_of_a_call(
    live_node: LiveNode, parties: Callable[[], Party]
) -> None:
    """A re-INVITE from a caller that moved and its answer from a callee that moved close both sides'
    sockets while the call goes on (new ports towards a party whose peer moved, as 10.5 gives): what
    they counted stays in the totals, attributed to its sender when a scrape saw the sockets."""
    node = live_node
    a, b = parties(), parties()

    def exchange(call_id: str, count: int) -> None:
        to_a_side, to_b_side = setup_call(node, a, b, call_id)
        for seq in range(count):
            a.rtp.sendto(rtp(seq), (MEDIA_IP, to_a_side))
            b.rtp.sendto(rtp(seq), (MEDIA_IP, to_b_side))
        assert receive(b.rtp, count) == count and receive(a.rtp, count) == count

    def both_move(call_id: str) -> None:
        ids = {"call-id": call_id, "from-tag": "tagA"}
        reply = node.request(command="offer", **ids, sdp=sdp(a.port + 10))
        assert reply["result"] == "ok", reply
        reply = node.request(command="answer", **ids, **{"to-tag": "tagB"}, sdp=sdp(b.port + 10))
        assert reply["result"] == "ok", reply

    def packets(scrape: Scrape, direction: str) -> float:
        return scrape.value("karl_media_packets_total", kind="rtp", direction=direction)

    exchange("seen", 5)
    seen = node.scrape()
    assert packets(seen, "from_caller") == packets(seen, "from_callee") == 5
    opened = seen.value("karl_media_streams_opened_total", kind="rtp")
    both_move("seen")
    after = node.scrape()
    assert after.value("karl_media_streams_opened_total", kind="rtp") >= opened + 2, "new sockets both sides"
    assert packets(after, "from_caller") == packets(after, "from_callee") == 5
    assert packets(after, "unattributed") == 0

    exchange("unseen", 7)  # no scrape sees these sockets before they close
    both_move("unseen")
    last = node.scrape()
    assert packets(last, "from_caller") + packets(last, "from_callee") + packets(last, "unattributed") == 24
    assert packets(last, "unattributed") == 14
