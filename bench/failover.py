"""How long a dead node's calls stay without an owner: repeated `kill -9` of a media node in a fleet,
timed until every one of its calls is held by a survivor in Redis, and until the survivors have taken
them up (restored on their own ports).

One run: a real `redis-server`, three `karl` nodes (NG on 127.0.0.1, media on 127.0.0.11..13), one
`karl-operator failover`, all with the shipped defaults (lease TTL 3 s, restart grace 2 s). Each round
places `--calls` calls on the next node (offer + answer straight to it: its first write places them),
kills that node with SIGKILL, and polls Redis every 10 ms. The killed node is then started again
under its id (it comes back empty: its calls moved) before the next round.

    python bench/failover.py                 # 10 failovers of 50 calls, about 2 minutes
    python bench/failover.py --rounds 3      # a quick look

The figures go to bench/results/<stamp>-failover.{json,md}. The target of the fleet's part 2: every
call owned by a survivor within TTL + 3 s, p95 at most 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import multiprocessing
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import redis

from ngclient import NGClient, wait_for_ping
from procstat import free_window

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
VENV_BIN = REPO / ".venv" / "bin"
LEASE_TTL = 3.0
TARGET_P95 = 5.0
NODES = 3
PORTS_PER_NODE = 6000
"""Enough for 1,000 calls of 4 ports each on the killed node, and its share on each survivor."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> float:
    """Poll until `predicate` holds; the seconds it took. Raises after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def sdp(port: int) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8\r\na=sendrecv\r\n"
    )


@dataclass
class Node:
    node_id: str
    index: int
    ng_port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(VENV_BIN / "karl")], env=self.env, stdout=out, stderr=out)
        if not wait_for_ping("127.0.0.1", self.ng_port, 15.0):
            raise RuntimeError(f"{self.node_id} did not start; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def fleet(workdir: Path) -> Iterator[tuple[redis.Redis, list[Node]]]:
    processes: list[subprocess.Popen[bytes]] = []
    nodes: list[Node] = []
    redis_port = free_port()
    processes.append(
        subprocess.Popen(
            [
                "redis-server",
                *("--port", str(redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
            ],
            stdout=(workdir / "redis.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    )
    client = redis.Redis(port=redis_port, decode_responses=True)
    wait(lambda: _pings(client), 10, "redis-server")
    base = {k: v for k, v in os.environ.items() if not k.startswith("KARL_")}
    common = {
        **base,
        "KARL_CONFIG_PATH": "/nonexistent",
        "KARL_REDIS_ADDR": f"127.0.0.1:{redis_port}",
        "KARL_LOG_LEVEL": "warning",
    }
    try:
        first_rtp = free_window(PORTS_PER_NODE * NODES, 10000, 32768)
        for index in range(NODES):
            ng_port = free_port()
            env = {
                **common,
                "KARL_REDIS_ENABLED": "1",
                "KARL_NODE_ID": f"node-{index}",
                "KARL_NG_ADDRESS": "127.0.0.1",
                "KARL_NG_PORT": str(ng_port),
                "KARL_MEDIA_IP": f"127.0.0.{11 + index}",
                "KARL_RTP_MIN_PORT": str(first_rtp + PORTS_PER_NODE * index),
                "KARL_RTP_MAX_PORT": str(first_rtp + PORTS_PER_NODE * (index + 1) - 1),
                "KARL_API_PORT": str(free_port()),
                "KARL_HEALTH_PORT": str(free_port()),
                "KARL_METRICS_PORT": str(free_port()),
            }
            node = Node(f"node-{index}", index, ng_port, env, workdir / f"node-{index}.log")
            node.start()
            nodes.append(node)
        controller_env = {**common, "KARL_NODE_ID": "failover-bench"}
        with (workdir / "failover.log").open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [str(VENV_BIN / "karl-operator"), "failover"],
                    env=controller_env,
                    stdout=out,
                    stderr=out,
                )
            )
        wait(lambda: client.exists("karl:failover:leader") == 1, 15, "failover controller")
        wait(lambda: len(client.keys("karl:node:*")) == NODES, 15, "leases")
        yield client, nodes
    finally:
        for node in nodes:
            node.stop()
        for proc in reversed(processes):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def place_calls(node: Node, count: int, tag: str) -> list[str]:
    calls = []
    with NGClient("127.0.0.1", node.ng_port) as ng:
        for index in range(count):
            call_id = f"{tag}-{index}@bench"
            offer = ng.transact({"command": "offer", "call-id": call_id, "from-tag": "a", "sdp": sdp(20000)})
            answer = ng.transact(
                {"command": "answer", "call-id": call_id, "from-tag": "a", "to-tag": "b", "sdp": sdp(20002)}
            )
            if offer.reply.get("result") != "ok" or answer.reply.get("result") != "ok":
                raise RuntimeError(f"{call_id}: {offer.reply} / {answer.reply}")
            calls.append(call_id)
    return calls


def one_failover(client: redis.Redis, nodes: list[Node], victim: Node, calls: list[str]) -> dict[str, float]:
    survivors = {node.node_id for node in nodes if node is not victim}
    survivor_sets = [f"karl:node-calls:{node_id}" for node_id in survivors]
    killed = time.monotonic()
    victim.kill()

    def owned() -> bool:
        with client.pipeline(transaction=False) as pipe:
            for call_id in calls:
                pipe.hget(f"karl:call:{call_id}", "owner")
            return all(owner in survivors for owner in pipe.execute())

    wait(owned, 3 * LEASE_TTL + 10, "calls owned by survivors", interval=0.02)
    owned_after = time.monotonic() - killed

    def taken_up() -> bool:
        # a survivor writes a call's new state (its ports) once it restored it
        with client.pipeline(transaction=False) as pipe:
            for call_id in calls:
                pipe.hget(f"karl:callstate:{call_id}", "state")
            states = pipe.execute()
        old_address = f'"local_address":"127.0.0.{11 + victim.index}"'
        return all(state is not None and old_address not in state for state in states)

    wait(taken_up, 10, "calls taken up", interval=0.05)
    taken_after = time.monotonic() - killed
    total = sum(client.scard(key) for key in survivor_sets)
    return {
        "owned_s": owned_after,
        "taken_up_s": taken_after,
        "survivor_calls": float(total),
        "killed_at": killed,
    }


def _probe_main(target: tuple[str, int], a_port: int, b_port: int, stop: Any, out: Any) -> None:
    """The probe's own process (the benchmark's polling of Redis must not delay its packets): RTP
    every 20 ms from A to the node, arrivals at B timed (CLOCK_MONOTONIC, shared by all processes).
    Each packet carries its send time, so an arrival also gives the packet's transit through the node.
    As root, the probe runs SCHED_FIFO: the parties are on other hosts in real life, and a probe that
    waits for a CPU would blame the node for its own lateness."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", a_port))
    b.bind(("127.0.0.1", b_port))
    b.setblocking(False)
    arrivals: list[tuple[float, float]] = []

    def receive() -> None:
        while True:
            try:
                packet = b.recv(2048)
            except BlockingIOError:
                return
            sent = int.from_bytes(packet[12:20], "big") / 1e9
            arrivals.append((time.monotonic(), sent))

    seq, next_at, deadline = 0, time.monotonic(), time.monotonic() + 180
    while not stop.is_set() and time.monotonic() < deadline:
        ssrc = b"\x00\x00\x00\x01"
        payload = ssrc + time.monotonic_ns().to_bytes(8, "big") + b"\xff" * 152
        header = (
            bytes([0x80, 0])
            + (seq & 0xFFFF).to_bytes(2, "big")
            + ((seq * 160) & 0xFFFFFFFF).to_bytes(4, "big")
        )
        a.sendto(header + payload, target)
        seq += 1
        next_at += 0.02
        receive()
        while (wait_for_next := next_at - time.monotonic()) > 0:
            select.select([b], [], [], wait_for_next)
            receive()
    out.send(arrivals)


class RelayProbe:
    """RTP every 20 ms through a call on a survivor, its arrivals timed (in a process of its own): the
    relay of a node while it takes a failed node's calls up."""

    def __init__(self, node: Node) -> None:
        a_port, b_port = free_udp_port(), free_udp_port()
        with NGClient("127.0.0.1", node.ng_port) as ng:
            ng.transact({"command": "offer", "call-id": "probe@bench", "from-tag": "a", "sdp": sdp(a_port)})
            answer = ng.transact(
                {
                    "command": "answer",
                    "call-id": "probe@bench",
                    "from-tag": "a",
                    "to-tag": "b",
                    "sdp": sdp(b_port),
                }
            ).reply
        target = (f"127.0.0.{11 + node.index}", _port_of(str(answer["sdp"])))
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_probe_main, args=(target, a_port, b_port, self._stop, send), daemon=True
        )
        self._process.start()
        self.arrivals: list[tuple[float, float]] = []
        """(arrival, send) times of each packet."""

    def stop(self) -> None:
        self._stop.set()
        if self._receive.poll(10):
            self.arrivals = list(self._receive.recv())
        self._process.join(5)

    def max_gap(self, start: float, end: float) -> float:
        times = [arrived for arrived, _ in self.arrivals if start <= arrived <= end]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))

    def max_transit(self, start: float, end: float) -> float:
        """The longest a packet sent in [start, end] took from A through the node to B."""
        return max((arrived - sent for arrived, sent in self.arrivals if start <= sent <= end), default=0.0)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_of(sdp_text: str) -> int:
    line = next(line for line in sdp_text.splitlines() if line.startswith("m=audio "))
    return int(line.split()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument(
        "--probe",
        action="store_true",
        help="RTP every 20 ms through a call on a survivor: the largest gap in its arrivals while the "
        "survivors take the calls up, against the 2 s before the kill",
    )
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("bench/failover.py needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    workdir = Path(tempfile.mkdtemp(prefix="karl-failover-bench-"))
    rounds: list[dict[str, float]] = []
    started = time.monotonic()
    with fleet(workdir) as (client, nodes):
        for index in range(args.rounds):
            victim = nodes[index % len(nodes)]
            calls = place_calls(victim, args.calls, f"r{index}")
            probe_node = nodes[(index + 1) % len(nodes)]
            probe = RelayProbe(probe_node) if args.probe else None
            if probe is not None:
                time.sleep(2.5)  # a baseline of the probe's arrivals before the kill
            result = one_failover(client, nodes, victim, calls)
            if probe is not None:
                time.sleep(0.5)
                probe.stop()
                killed = result["killed_at"]
                result["probe_gap_ms"] = 1000 * probe.max_gap(killed, killed + result["taken_up_s"] + 0.5)
                result["probe_baseline_gap_ms"] = 1000 * probe.max_gap(killed - 2.0, killed)
                window = (killed, killed + result["taken_up_s"] + 0.5)
                result["probe_transit_ms"] = 1000 * probe.max_transit(*window)
                result["probe_baseline_transit_ms"] = 1000 * probe.max_transit(killed - 2.0, killed)
                with NGClient("127.0.0.1", probe_node.ng_port) as ng:
                    ng.transact({"command": "delete", "call-id": "probe@bench", "delete-delay": 0})
                print(
                    f"  relay of {probe_node.node_id} while taking calls up: largest gap "
                    f"{result['probe_gap_ms']:.1f} ms, longest transit {result['probe_transit_ms']:.1f} ms "
                    f"(before the kill: {result['probe_baseline_gap_ms']:.1f} / "
                    f"{result['probe_baseline_transit_ms']:.1f} ms)",
                    flush=True,
                )
            rounds.append(result)
            print(
                f"round {index + 1}: {victim.node_id} killed, {len(calls)} calls owned by survivors after "
                f"{result['owned_s']:.2f} s, taken up after {result['taken_up_s']:.2f} s",
                flush=True,
            )
            for call_id in calls:  # end them, so that the next round starts from the same load
                owner = client.hget(f"karl:call:{call_id}", "owner")
                node = next(n for n in nodes if n.node_id == owner)
                with NGClient("127.0.0.1", node.ng_port) as ng:
                    ng.transact({"command": "delete", "call-id": call_id, "delete-delay": 0})
            victim.start()
            lease_key = f"karl:node:{victim.node_id}"
            wait(partial(client.exists, lease_key), 15, "the killed node's lease, once restarted")
    owned = [r["owned_s"] for r in rounds]
    taken = [r["taken_up_s"] for r in rounds]
    summary = {
        "rounds": len(rounds),
        "calls_per_round": args.calls,
        "owned_p50_s": statistics.median(owned),
        "owned_p95_s": percentile(owned, 0.95),
        "owned_max_s": max(owned),
        "taken_up_p50_s": statistics.median(taken),
        "taken_up_p95_s": percentile(taken, 0.95),
        "taken_up_max_s": max(taken),
        "within_ttl_plus_3": all(value <= LEASE_TTL + 3 for value in owned),
        "p95_target_met": percentile(owned, 0.95) <= TARGET_P95,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    if args.probe:
        summary["probe_gap_ms_max"] = max(r["probe_gap_ms"] for r in rounds)
        summary["probe_baseline_gap_ms_max"] = max(r["probe_baseline_gap_ms"] for r in rounds)
        summary["probe_transit_ms_max"] = max(r["probe_transit_ms"] for r in rounds)
        summary["probe_baseline_transit_ms_max"] = max(r["probe_baseline_transit_ms"] for r in rounds)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {"summary": summary, "rounds": rounds}
    (RESULTS_DIR / f"{stamp}-failover.json").write_text(json.dumps(document, indent=2))
    table = "\n".join(
        [
            f"# Failover run {stamp}: {len(rounds)} kills of a node holding {args.calls} calls",
            "",
            "Three nodes, one controller, defaults (lease TTL 3 s, restart grace 2 s). Seconds from SIGKILL:",
            "",
            "| Figure | p50 | p95 | max | Target |",
            "|---|---:|---:|---:|---|",
            f"| every call owned by a survivor | {summary['owned_p50_s']:.2f} | "
            f"{summary['owned_p95_s']:.2f} | {summary['owned_max_s']:.2f} | "
            f"each ≤ {LEASE_TTL + 3:.0f} s, p95 ≤ {TARGET_P95:.0f} s: "
            f"{'met' if summary['within_ttl_plus_3'] and summary['p95_target_met'] else 'missed'} |",
            f"| every call taken up (restored, new state written) | {summary['taken_up_p50_s']:.2f} | "
            f"{summary['taken_up_p95_s']:.2f} | {summary['taken_up_max_s']:.2f} | |",
            "",
            *(
                [
                    "RTP every 20 ms through a call on a survivor, largest gap between arrivals: "
                    f"{summary['probe_gap_ms_max']:.1f} ms while the survivors took the calls up, "
                    f"{summary['probe_baseline_gap_ms_max']:.1f} ms in the 2 s before the kill; "
                    f"longest transit through the node {summary['probe_transit_ms_max']:.1f} ms "
                    f"({summary['probe_baseline_transit_ms_max']:.1f} ms before the kill).",
                    "",
                ]
                if args.probe
                else []
            ),
        ]
    )
    (RESULTS_DIR / f"{stamp}-failover.md").write_text(table)
    print(table)
    print(f"results: {RESULTS_DIR / f'{stamp}-failover.json'}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
