"""Kamailio 5.6 and sipp in front of a fleet: 30 concurrent calls through Kamailio, whose rtpengine
module talks NG to the router only; the router places each call on one of three media nodes.

    caller (sipp, bridge .2) ──SIP──► Kamailio (bridge .1) ──SIP──► callee (sipp -rtp_echo, bridge .3)
                                          │ NG (udp 127.0.0.1)
                                     karl-router (127.0.0.1) ──NG──► karl node-k (netns k, 10.213.n.10+k)
    caller RTP ◄─────────────────────► the call's node ◄────────────────────► callee RTP (echo)

Kamailio runs the configuration of the end-to-end test (tests/e2e/kamailio/kamailio.cfg) with the
router as its only `rtpengine_sock`. The parties are the e2e scenarios minus their fixed media-proxy
address (tests/fleet/sipp/): each call plays g711a.pcap and dtmf_2833_1.pcap, the callee echoes it.
The SIP parties and Kamailio use addresses of the lab's bridge (a root-namespace socket bound to
127.x cannot reach a namespace), the router stays on 127.0.0.1 (Kamailio reaches it on loopback).
Nodes run with a delete delay of 0, so the BYE's `delete` ends the call at once and writes its CDR.

The test proves that

* all 30 calls complete, all 30 up at once (sipp's statistics),
* every node got calls and none more than 60 % of them (each node's CDR file lists the calls it
  handled; together they name every call exactly once; the router's placements agree),
* all commands of a call reached one node: both parties were given the same node's address (offer and
  answer), that node wrote the call's CDR (delete) naming the very ports the parties were given, and
  each node processed exactly as many offers, answers and deletes as it has CDRs (and nothing else);
  the router forwarded exactly three requests per call to that node,
* the RTP counters are exact: per call, the node counted exactly the packets and bytes of the captures
  from the caller, and exactly what the caller got back from the callee's echo,
* and the fleet state in Redis is empty afterwards (no call keys, no node's call set).

The call-ids are fixed (sipp -cid_str): placement is a hash of the call-id, and with sipp's default
call-ids (which contain its pid) about one run in 500 would put more than 60 % of 30 calls on one node.

Run: .venv/bin/pytest -q tests/fleet/test_fleet_kamailio.py -p no:cacheprovider
"""

from __future__ import annotations

import json
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_kamailio_sipp import (
    AUDIO_PCAP,
    DTMF_PCAP,
    KAMAILIO_TEMPLATE,
    Capture,
    Kamailio,
    MediaSink,
    SippResult,
    Tools,
    launch_kamailio,
    read_pcap_udp,
    required_tools,
    sipp_files,
    sipp_result,
    tail,
    udp_bound,
)

from fleet.fleet_kit import LAB_PREFIX, FleetNode, FleetRouter, NetnsLab, RedisServer, metric, scrape
from karl_testkit import free_port, free_port_block, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fleet, pytest.mark.timeout(60)]

HERE = Path(__file__).resolve().parent
UAC_SCENARIO = HERE / "sipp" / "uac.xml"
UAS_SCENARIO = HERE / "sipp" / "uas.xml"

NODES = 3
CALLS = 30
MAX_SHARE = 0.6
# The caller's SDP advertises [media_port+4]: sipp plays its captures from that port without owning it
# (it binds media_port and media_port+2), so the test listens there for the echo.
UAC_RTP_OFFSET = 4
CALL_ID_FORMAT = "fleet-%u@kamailio.test"  # sipp's -cid_str: %u is the call number, 1..CALLS
SIPP_TIMEOUT = 40  # seconds, for each sipp (the calls last about 8.5 s)
CALL_COMMANDS = ("offer", "answer", "delete")


# ------------------------------------------------------------------------------------------- helpers


def node_metrics(node: FleetNode) -> str:
    return f"http://{node.ns_ip}:{node.port('KARL_METRICS_PORT')}"


def router_metrics(router: FleetRouter) -> str:
    return f"http://127.0.0.1:{router.env['KARL_METRICS_PORT']}"


def router_sees(router: FleetRouter, state: str) -> float:
    return metric(router_metrics(router), "karl_router_nodes", state=state)


def commands_processed(node: FleetNode) -> dict[str, dict[str, int]]:
    """karl_ng_commands_total of a node: {command: {result: n}}, pings left out (the routers' probes)."""
    out: dict[str, dict[str, int]] = {}
    for name, labels, value in scrape(node_metrics(node)):
        if name == "karl_ng_commands_total" and labels["command"] != "ping" and value:
            out.setdefault(labels["command"], {})[labels["result"]] = int(value)
    return out


def cdrs(node: FleetNode) -> list[dict[str, Any]]:
    path = Path(node.env["KARL_CDR_PATH"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextmanager
def bridge_addresses(lab: NetnsLab, *hosts: int) -> Iterator[list[str]]:
    """Extra addresses 10.213.<n>.<host>/32 on the lab's bridge (for the SIP parties and their media),
    removed afterwards."""
    assert lab.subnet is not None
    added: list[str] = []

    def ip_addr(verb: str, ip: str, check: bool) -> None:
        subprocess.run(["ip", "addr", verb, f"{ip}/32", "dev", lab.bridge], check=check, capture_output=True)

    try:
        for host in hosts:
            ip = f"{LAB_PREFIX}.{lab.subnet}.{host}"
            ip_addr("add", ip, check=True)
            added.append(ip)
        yield added
    finally:
        for ip in added:
            ip_addr("del", ip, check=False)


@dataclass
class CallRun:
    caller: SippResult
    callee: SippResult
    uac_rtp: tuple[str, int]  # where the caller plays from and receives the echo
    uas_rtp: tuple[str, int]
    echoed: dict[tuple[str, int], list[bytes]]  # what reached the caller, by node address and port
    seconds: float


def sipp_args(files: dict[str, Path]) -> list[str]:
    return [
        "-nostdin",
        "-trace_logs", "-log_file", str(files["log"]),
        "-trace_err", "-error_file", str(files["err"]),
        "-trace_stat", "-stf", str(files["csv"]), "-fd", "1",
        "-recv_timeout", "20000",
        "-timeout", f"{SIPP_TIMEOUT}s",
    ]  # fmt: skip


def run_calls(tools: Tools, kamailio: Kamailio, uac_ip: str, uas_ip: str, workdir: Path) -> CallRun:
    """CALLS calls from a sipp caller at `uac_ip` through Kamailio to a sipp callee at `uas_ip`, all at
    once (limit = CALLS, 100 calls/s)."""
    uas_port, uac_port = free_port(uas_ip), free_port(uac_ip)
    uas_media = free_port_block(4, uas_ip)  # sipp binds media_port and media_port+2
    uac_media = free_port_block(UAC_RTP_OFFSET + 2, uac_ip)
    uas_files, uac_files = sipp_files(workdir, "uas"), sipp_files(workdir, "uac")
    started = time.monotonic()
    with uas_files["out"].open("wb") as out:
        uas = subprocess.Popen(
            [tools.sipp, "-sf", str(UAS_SCENARIO), "-i", uas_ip, "-p", str(uas_port),
             "-mi", uas_ip, "-mp", str(uas_media), "-rtp_echo", "-m", str(CALLS), *sipp_args(uas_files)],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
        )  # fmt: skip
    sink = MediaSink(uac_ip, uac_media + UAC_RTP_OFFSET)
    try:

        def uas_ready() -> bool:
            if uas.poll() is not None:
                raise AssertionError(f"sipp UAS exited with {uas.returncode}:\n{tail(uas_files['out'])}")
            return udp_bound(uas_ip, uas_port) and udp_bound(uas_ip, uas_media)

        wait_for(uas_ready, timeout=10)
        with uac_files["out"].open("wb") as out:
            uac = subprocess.run(
                [tools.sipp, f"{uas_ip}:{uas_port}", "-rsa", f"{kamailio.ip}:{kamailio.port}",
                 "-sf", str(UAC_SCENARIO), "-i", uac_ip, "-p", str(uac_port),
                 "-mi", uac_ip, "-mp", str(uac_media), "-cid_str", CALL_ID_FORMAT,
                 "-m", str(CALLS), "-l", str(CALLS), "-r", "100", *sipp_args(uac_files)],
                stdout=out, stderr=subprocess.STDOUT, cwd=workdir, timeout=SIPP_TIMEOUT + 5, check=False,
            )  # fmt: skip
        uas_code = uas.wait(timeout=10)
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait(5)
        sink.close()
    return CallRun(
        caller=sipp_result("uac", uac.returncode, uac_files, "answer-sdp"),
        callee=sipp_result("uas", uas_code, uas_files, "offer-sdp"),
        uac_rtp=(uac_ip, uac_media + UAC_RTP_OFFSET),
        uas_rtp=(uas_ip, uas_media),
        echoed=dict(sink.received),
        seconds=time.monotonic() - started,
    )


def direction(record: dict[str, Any], from_tag: str) -> dict[str, Any]:
    """The CDR's direction of what the node received from the party with `from_tag`."""
    found = [d for d in record["directions"] if d["from"] == from_tag]
    assert len(found) == 1, (from_tag, record["directions"])
    return dict(found[0])


def counted(entry: dict[str, Any]) -> tuple[int, int, int]:
    """(packets, bytes, errors) of a CDR direction or of its totals."""
    return entry["packets"], entry["bytes"], entry["errors"]


def tag_entry(record: dict[str, Any], tag: str) -> dict[str, Any]:
    found = [t for t in record["tags"] if t["tag"] == tag]
    assert len(found) == 1, (tag, record["tags"])
    return dict(found[0])


# -------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def tools() -> Tools:
    return required_tools()


@pytest.fixture
def captures() -> tuple[Capture, Capture]:
    """The captures the caller plays, checked against the pauses of its scenario (a new playback
    cancels the one still running, so each pause must outlast the capture it follows)."""
    audio, dtmf = read_pcap_udp(AUDIO_PCAP), read_pcap_udp(DTMF_PCAP)
    pauses = [int(p.get("milliseconds", "0")) for p in ET.parse(UAC_SCENARIO).getroot().iter("pause")]
    assert len(pauses) == 2, pauses
    assert pauses[0] >= audio.duration * 1000 + 300, (pauses, audio.duration)
    assert pauses[1] >= dtmf.duration * 1000 + 300, (pauses, dtmf.duration)
    return audio, dtmf


# ------------------------------------------------------------------------------------------------ test


def test_30_concurrent_kamailio_calls_spread_over_three_nodes(
    tools: Tools,
    captures: tuple[Capture, Capture],
    redis_server: RedisServer,
    netns_lab: Callable[..., NetnsLab],
    fleet_nodes: Callable[..., FleetNode],
    fleet_router: Callable[..., FleetRouter],
    tmp_path: Path,
) -> None:
    lab = netns_lab(NODES)
    nodes = [fleet_nodes(lab, k, redis_server, f"node-{k}", KARL_DELETE_DELAY="0") for k in range(NODES)]
    by_ip = {node.ns_ip: node for node in nodes}
    redis = redis_server.client()
    wait_for(lambda: len(redis.keys("karl:node:*")) == NODES, timeout=10)
    router = fleet_router(redis_server, cluster_id=lab.cluster_id)
    # every node ready in the router's view (a lease says ready one renewal after start-up)
    wait_for(lambda: router_sees(router, "placeable") == NODES, timeout=10)

    workdir = tmp_path / "sip"
    workdir.mkdir()
    with bridge_addresses(lab, 2, 3) as (uac_ip, uas_ip):
        # Kamailio listens on the bridge address and reaches the router (its only NG socket) on loopback
        kamailio = launch_kamailio(
            tools.kamailio, tools.modules, router, workdir, KAMAILIO_TEMPLATE, lab.bridge_ip
        )
        try:
            run = run_calls(tools, kamailio, uac_ip, uas_ip, workdir)
        finally:
            kamailio.stop()

    def logs() -> str:
        parts = [run.caller.explain(), run.callee.explain(), f"--- kamailio ---\n{tail(kamailio.log_path)}"]
        parts += [f"--- {n.name} ---\n{tail(n.log_path, 40)}" for n in (*nodes, router)]
        return "\n".join(parts)

    # Every call succeeded on both sides, all of them up at once.
    assert run.caller.returncode == 0 and run.callee.returncode == 0, logs()
    for side in (run.caller, run.callee):
        assert side.final("SuccessfulCall(C)") == CALLS, logs()
        assert side.final("FailedCall(C)") == 0, logs()
    assert max(int(row["CurrentCall"]) for row in run.caller.stats) == CALLS, logs()
    call_ids = {CALL_ID_FORMAT.replace("%u", str(i)) for i in range(1, CALLS + 1)}
    assert set(run.caller.sdp_seen) == set(run.callee.sdp_seen) == call_ids, logs()

    # Offer and answer of a call reached one node: both parties were given its address.
    node_of: dict[str, FleetNode] = {}
    for call_id in sorted(call_ids):
        caller_ip, caller_port = run.caller.sdp_seen[call_id]
        callee_ip, callee_port = run.callee.sdp_seen[call_id]
        assert caller_ip == callee_ip and caller_ip in by_ip, (call_id, caller_ip, callee_ip, list(by_ip))
        node = node_of[call_id] = by_ip[caller_ip]
        for port in (caller_port, callee_port):
            assert node.port_min <= port <= node.port_max, (call_id, port)

    # Each node's CDRs (one per deleted call) name exactly the calls it was given in SDP.
    wait_for(lambda: sum(len(cdrs(node)) for node in nodes) >= CALLS, timeout=10)
    records: dict[str, dict[str, Any]] = {}
    for node in nodes:
        for record in cdrs(node):
            assert record["node_id"] == node.node_id, record
            assert record["call_id"] not in records, f"{record['call_id']} has two CDRs"
            records[record["call_id"]] = record
    assert set(records) == call_ids
    per_node = Counter(node_of[call_id].node_id for call_id in call_ids)
    for call_id, record in records.items():
        assert record["node_id"] == node_of[call_id].node_id, (call_id, record["node_id"])
        assert record["reason"] == "deleted", record

    # Every node got calls, none more than 60 % of them; the router placed exactly these.
    assert set(per_node) == {node.node_id for node in nodes}, per_node
    assert max(per_node.values()) <= MAX_SHARE * CALLS, per_node
    router_url = router_metrics(router)
    # a request a node did not answer in time goes to that node again (its reply cache answers the copy)
    resent = metric(router_url, "karl_router_retries_total", reason="timeout")
    assert metric(router_url, "karl_router_retries_total") == resent, "retries other than timeouts"
    for node in nodes:
        calls = per_node[node.node_id]
        assert metric(router_url, "karl_router_placements_total", node=node.node_id) == calls, node.node_id
        # one offer, one answer and one delete per call, forwarded to the call's node only, and the node
        # processed those and nothing else (pings aside)
        forwarded = metric(router_url, "karl_router_forwarded_total", node=node.node_id)
        assert 3 * calls <= forwarded <= 3 * calls + resent, (node.node_id, forwarded, resent)
        processed = commands_processed(node)
        assert processed == {command: {"ok": calls} for command in CALL_COMMANDS}, (node.node_id, processed)
        assert metric(node_metrics(node), "karl_ng_errors_total") == 0, node.node_id
        assert metric(node_metrics(node), "karl_ng_internal_errors_total") == 0, node.node_id
    for command in CALL_COMMANDS:
        assert metric(router_url, "karl_router_requests_total", command=command) == CALLS, command

    # The exact RTP counters of each call, from the CDR its node wrote at the delete.
    audio, dtmf = captures
    sent = audio.payloads + dtmf.payloads
    packets, size = len(sent), sum(map(len, sent))
    for call_id in sorted(call_ids):
        record, node = records[call_id], node_of[call_id]
        caller_port, callee_port = run.caller.sdp_seen[call_id][1], run.callee.sdp_seen[call_id][1]
        caller_tag, callee_tag = record["from_tag"], record["to_tag"]
        assert caller_tag and callee_tag, record
        # the ports the parties were given are the node's ports of this very call
        caller, callee = tag_entry(record, caller_tag), tag_entry(record, callee_tag)
        assert f"{node.ns_ip}:{caller_port}" in caller["addresses"]["local"], (call_id, caller)
        assert f"{node.ns_ip}:{callee_port}" in callee["addresses"]["local"], (call_id, callee)
        assert caller["addresses"]["sdp"][0] == "{}:{}".format(*run.uac_rtp), (call_id, caller)
        assert callee["addresses"]["sdp"][0] == "{}:{}".format(*run.uas_rtp), (call_id, callee)
        # caller → node: exactly the captures sipp played
        from_caller = direction(record, caller_tag)
        assert counted(from_caller) == (packets, size, 0), (call_id, from_caller)
        assert from_caller["rtcp"]["packets"] == 0, from_caller
        # callee (echo) → node → caller: exactly what reached the caller from that node port (sipp's
        # -rtp_echo may miss a packet when the machine is busy; the node must forward what it got)
        echoed = run.echoed.get((node.ns_ip, caller_port), [])
        back, back_size = len(echoed), sum(map(len, echoed))
        from_callee = direction(record, callee_tag)
        assert counted(from_callee) == (back, back_size, 0), (call_id, from_callee, back)
        assert back >= packets // 2, f"{call_id}: the echo path barely works: {back} of {packets}"
        assert not Counter(echoed) - Counter(sent), (call_id, "the caller got packets nobody sent")
        assert counted(record["totals"]) == (packets + back, size + back_size, 0), (call_id, record["totals"])
    # nothing reached the caller from anywhere else
    assert set(run.echoed) == {(node_of[c].ns_ip, run.caller.sdp_seen[c][1]) for c in call_ids}

    # The fleet state is empty: no call keys, no node holds a call.
    def state_left() -> list[str]:
        held = [f"karl:node-calls:{n.node_id}" for n in nodes]
        keys = [str(key) for key in redis.keys("karl:call*")]  # karl:call:* and karl:callstate:*
        return keys + [key for key in held if redis.smembers(key)]

    with suppress(AssertionError):
        wait_for(lambda: not state_left(), timeout=5)
    assert not state_left(), state_left()
    complaints = [line for line in kamailio.log().splitlines() if " ERROR: " in line or "CRITICAL" in line]
    assert not complaints, "\n".join(complaints)
    print(f"calls per node: {dict(sorted(per_node.items()))}; sipp ran {run.seconds:.1f} s")
