"""The fleet's control-plane cost, in one run: what the NG router adds, and what a state write adds.

Configurations, each started afresh for every repetition, repetitions interleaved (repetition 1 of
every configuration, then repetition 2, ...) so that drifts of the host's load fall on all alike:

- ``node``: one media node alone, no Redis (today's single node; the baseline);
- ``node+redis@P``: the same node in a fleet (``KARL_REDIS_ENABLED``): every change of a call is
  written to Redis before the reply (the first write of a new call also places it).
  ``node+redis - node`` is what a state write adds;
- ``router@P``: ``karl-router`` in front of that node (the client talks to the router, which sends
  a new call to the ring's node (whose first write places it in Redis), a known one to its holder).
  ``router - node+redis`` is what the router adds.

The router configuration also measures, in the same fleet and the same seconds, the client talking
straight to the node, through the router, and (unless ``--no-relay``) through a bare UDP relay (one
uvloop process that passes datagrams on by cookie and does nothing else: the floor of one more hop in
Python) in alternating 0.25 s slices, sequentially. Those differences (``router - direct``,
``relay - direct``, ``router - relay``: what the router's own work adds) are not blurred by the
host's load changing between configurations, which on a shared 2-core VM moves single figures by
±30 %.

The node is pinned to ``--node-core`` (default 0); this process, the NG client, runs on
``--generator-core`` (default 1). ``P`` says where the router, relay and Redis run: ``gen`` on the
client's core, ``node`` on the node's (``--placements``; both by default). The node, router, relay
and Redis run ``SCHED_FIFO`` at ``--rt`` (as bench/run.py does) when allowed; this process only while
it measures (see ``realtime``).

Per configuration and repetition: a short warm-up, then offer+answer+delete cycles (bench/ng_bench.py)
for 2 s sequentially and with 16 calls in flight: cycles/s, NG request latency p50/p99 over all
requests (and per command), the CPU time (/proc utime + stime) of every process over each run per
request, and the Redis round trips of node and router (from their /metrics). Derived per repetition
(paired, same repetition) and summarised as median (min..max): the router's added latency against
the 150 µs p50 target, router CPU per request / node CPU per request against the 1/3 target, and the
cost of the state write (latency and node CPU).

Results go to ``bench/results/<stamp>-fleet.json`` and ``.md``; logs to
``bench/results/logs/<stamp>-fleet/``. Every process started here is stopped at the end, also on
Ctrl-C or SIGTERM.

    python bench/fleet.py                  # 5 repetitions, about 4 minutes
    python bench/fleet.py --quick          # 1 repetition, 1 s runs, under a minute
    python bench/fleet.py --placements gen --no-relay --reps 3
    python bench/fleet.py --quick --profile-router   # also a cProfile of the router (unmeasured pass)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import io
import itertools
import json
import os
import pstats
import signal
import socket
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import ng_bench
import procstat
import proxies
import run
from ngclient import NGClient, Timed, wait_for_ping

RESULTS_DIR = run.RESULTS_DIR
PLACEMENTS = ("gen", "node")
KINDS = ("offer", "answer", "delete")
ADDED_P50_TARGET_US = 150.0
CPU_RATIO_TARGET = 1 / 3


@dataclass(frozen=True)
class Plan:
    reps: int
    ng_s: float  # each measured run (sequential, then K in flight)
    warmup_s: float
    inflight: int
    alternating_s: float  # per path (direct, relay, router), in slices of slice_s
    slice_s: float = 0.25


FULL = Plan(reps=5, ng_s=2.0, warmup_s=0.5, inflight=16, alternating_s=2.0)
QUICK = replace(FULL, reps=1, ng_s=1.0, warmup_s=0.3, alternating_s=1.0)


@dataclass(frozen=True)
class Config:
    name: str
    redis: bool
    router: bool
    placement: str | None  # the core of the router, relay and Redis: "gen" or "node"


def configurations(placements: Iterable[str]) -> list[Config]:
    out = [Config("node", False, False, None)]
    for where in placements:
        out += [
            Config(f"node+redis@{where}", True, False, where),
            Config(f"router@{where}", True, True, where),
        ]
    return out


@dataclass(frozen=True)
class Ports:
    node: proxies.ProxyPorts
    redis: int
    router_ng: int
    router_health: int
    router_metrics: int
    relay: int


def plan_ports(first_port: int) -> Ports:
    """All below 32768 (the node's RTP range too: above it are the kernel's ephemeral ports)."""
    rtp_size = 1000  # 16 calls in flight use 4 ports each; deleted calls free theirs at once
    rtp_min = procstat.free_window(rtp_size, first_port, 32768)
    singles = procstat.free_window(16, 2048, 32768, set(range(rtp_min, rtp_min + rtp_size)))
    node = proxies.ProxyPorts(
        ng_port=singles,
        rtp_min=rtp_min,
        rtp_max=rtp_min + rtp_size - 1,
        http_ports=(singles + 2, singles + 3, singles + 4),
    )
    return Ports(
        node,
        redis=singles + 6,
        router_ng=singles + 8,
        router_health=singles + 9,
        router_metrics=singles + 10,
        relay=singles + 12,
    )


@dataclass
class Setup:
    plan: Plan
    ports: Ports
    node_core: int
    generator_core: int
    rt: int
    media_ip: str
    log_dir: Path
    run_tag: str
    relay: bool = True  # a bare relay next to the router, for the alternating measurement
    profile_dir: Path | None = None  # set for the profiling pass: the router runs under cProfile
    hop_boost: int = 0  # router and relay run SCHED_FIFO this much above the others (--hop-boost)

    def launch(self, core: int, hop: bool = False) -> proxies.Launch:
        priority = self.rt + self.hop_boost if hop and self.rt > 0 else self.rt
        return proxies.Launch(core=core, realtime_priority=priority, media_ip=self.media_ip)

    def core_of(self, placement: str | None) -> int:
        return self.node_core if placement == "node" else self.generator_core


# ------------------------------------------------------------------------------------------ processes


def _venv_bin(name: str) -> str:
    return str(proxies.REPO / ".venv" / "bin" / name)


def _wrap(proc: Any, name: str, ng: tuple[str, int], log_path: Path) -> proxies.RunningProxy:
    return proxies.RunningProxy(name, proc.pid, ng, "", proxies.ProxyPorts(ng[1], 0, 0), log_path, proc)


def _started(proc: proxies.RunningProxy, ready: Callable[[], bool], failure: str) -> proxies.RunningProxy:
    """``proc`` once ``ready()`` says so; stopped if not, or if waiting is interrupted (Ctrl-C)."""
    try:
        ok = ready()
    except BaseException:
        proc.stop()
        raise
    if not ok:
        proc.stop()
        raise proxies.ProxyStartError(f"{failure}:\n{proc.log_tail()}")
    return proc


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(setup: Setup, core: int, tag: str) -> proxies.RunningProxy:
    port = setup.ports.redis
    data_dir = setup.log_dir / f"redis-{tag}"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--protected-mode", "no",
        "--daemonize", "no",
    ]  # fmt: skip
    log_path = setup.log_dir / f"redis-{tag}.log"
    redis = _wrap(proxies.spawn(argv, setup.launch(core), log_path), "redis", ("127.0.0.1", port), log_path)

    def ready() -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and redis.alive():
            if _redis_pong(port):
                return True
            time.sleep(0.05)
        return False

    return _started(redis, ready, "redis-server did not answer PING within 10 s")


def node_env(setup: Setup, redis: bool) -> dict[str, str]:
    """Added to bench/proxies.py's Karl environment (the same node as bench/run.py's `karl`)."""
    env = {
        "KARL_NODE_ID": "node-1",
        "KARL_DELETE_DELAY": "0",
        "KARL_CDR_ENABLED": "false",
        "KARL_SHUTDOWN_GRACE": "0",
    }
    if redis:
        env |= {"KARL_REDIS_ENABLED": "1", "KARL_REDIS_ADDR": f"127.0.0.1:{setup.ports.redis}"}
    return env


def start_router(setup: Setup, core: int, tag: str) -> proxies.RunningProxy:
    p = setup.ports
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARL_")}
    env |= {
        "KARL_CONFIG_PATH": "/nonexistent",
        "KARL_NG_ADDRESS": "127.0.0.1",
        "KARL_NG_PORT": str(p.router_ng),
        "KARL_REDIS_ADDR": f"127.0.0.1:{p.redis}",
        "KARL_HEALTH_PORT": str(p.router_health),
        "KARL_METRICS_PORT": str(p.router_metrics),
        "KARL_NODE_ID": "router-1",
        "KARL_LOG_LEVEL": "warning",
    }
    argv = [_venv_bin("python"), _venv_bin("karl-router")]
    if setup.profile_dir is not None:
        argv[1:1] = ["-m", "cProfile", "-o", str(setup.profile_dir / "router.prof")]
    log_path = setup.log_dir / f"router-{tag}.log"
    router = _wrap(
        proxies.spawn(argv, setup.launch(core, hop=True), log_path, env),
        "router",
        ("127.0.0.1", p.router_ng),
        log_path,
    )
    # `pong` only once the router has seen a ready node in Redis
    return _started(
        router,
        lambda: wait_for_ping("127.0.0.1", p.router_ng, 20.0, alive=router.alive),
        "karl-router did not answer pong within 20 s",
    )


# The floor of what any router costs: one more Python process (uvloop, as karl-router) that passes each
# datagram on to the node and the node's reply back by cookie, and does nothing else.
RELAY = """
import asyncio, sys
import uvloop
node = ("127.0.0.1", int(sys.argv[2]))
class Relay(asyncio.DatagramProtocol):
    def __init__(self):
        self.waiting = {}
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        cookie = data.split(b" ", 1)[0]
        if addr == node:
            client = self.waiting.pop(cookie, None)
            if client is not None:
                self.transport.sendto(data, client)
        else:
            self.waiting[cookie] = addr
            self.transport.sendto(data, node)
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Relay, local_addr=("127.0.0.1", int(sys.argv[1])))
    await asyncio.Event().wait()
uvloop.run(main())
"""


def start_relay(setup: Setup, core: int, tag: str) -> proxies.RunningProxy:
    p = setup.ports
    argv = [_venv_bin("python"), "-c", RELAY, str(p.relay), str(p.node.ng_port)]
    log_path = setup.log_dir / f"relay-{tag}.log"
    relay = _wrap(
        proxies.spawn(argv, setup.launch(core, hop=True), log_path), "relay", ("127.0.0.1", p.relay), log_path
    )
    return _started(
        relay,
        lambda: wait_for_ping("127.0.0.1", p.relay, 10.0, alive=relay.alive),
        "the relay did not pass on ping within 10 s",
    )


@dataclass
class Fleet:
    """The processes of one configuration, stopped in reverse order of starting."""

    target: tuple[str, int] = ("127.0.0.1", 0)
    paths: dict[str, tuple[str, int]] = field(default_factory=dict)  # NG address: direct, router, relay
    pids: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)  # /metrics port of the node and router in a fleet
    running: list[proxies.RunningProxy] = field(default_factory=list)

    def add(self, role: str, proc: proxies.RunningProxy) -> None:
        self.running.append(proc)
        self.pids[role] = proc.pid

    def dead(self) -> list[str]:
        return [p.name for p in self.running if not p.alive()]

    def stop(self) -> None:
        for proc in reversed(self.running):
            with contextlib.suppress(Exception):
                proc.stop()


def start_fleet(setup: Setup, config: Config, tag: str) -> Fleet:
    fleet = Fleet()
    try:
        side = setup.core_of(config.placement)
        if config.redis:
            fleet.add("redis", start_redis(setup, side, tag))
        node = proxies.start(
            "karl",
            setup.launch(setup.node_core),
            setup.ports.node,
            setup.log_dir / tag,
            extra_env=node_env(setup, config.redis),
        )
        fleet.add("node", node)
        fleet.target = node.ng
        if config.redis:
            fleet.metrics["node"] = setup.ports.node.http_ports[2]
        fleet.paths["direct"] = node.ng
        if config.router:
            router = start_router(setup, side, tag)
            fleet.add("router", router)
            fleet.target = fleet.paths["router"] = router.ng
            fleet.metrics["router"] = setup.ports.router_metrics
            if setup.relay:
                relay = start_relay(setup, side, tag)
                fleet.add("relay", relay)
                fleet.paths["relay"] = relay.ng
    except BaseException:
        fleet.stop()
        raise
    return fleet


# ---------------------------------------------------------------------------------------- measuring


_CLIENT_NUMBERS = itertools.count(1)


class KindTimedClient(NGClient):
    """An NG client that also keeps each reply's latency by request kind (offer, answer, delete):
    ng_bench's cycles tag each request with (call, kind, number)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        # NGClient's cookie prefix is random per client; the number makes the clients of one run
        # (the alternating measurement makes three) distinct by construction too.
        self._prefix = f"{self._prefix}{next(_CLIENT_NUMBERS)}_"
        self.by_kind: dict[str, list[int]] = {}

    def pipeline(
        self,
        requests: Iterable[tuple[Any, dict[str, Any]]],
        window: int,
        on_reply: Callable[[Any, Timed], Iterable[tuple[Any, dict[str, Any]]]] | None = None,
        deadline: float | None = None,
    ) -> int:
        def timed(tag: Any, reply: Timed) -> Iterable[tuple[Any, dict[str, Any]]]:
            kind = tag[1] if isinstance(tag, tuple) and len(tag) > 1 else "other"
            self.by_kind.setdefault(str(kind), []).append(reply.latency_ns)
            return on_reply(tag, reply) if on_reply is not None else ()

        return super().pipeline(requests, window, timed, deadline)


def _cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds (procstat.process_cpu_s is their sum)."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    fields = raw[raw.rindex(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# Redis round trips as the node and the router count them: (count, summed seconds) of their histograms
REDIS_METRICS = {
    "node": ("karl_fleet_redis_latency_seconds_count", "karl_fleet_redis_latency_seconds_sum"),
    "router": ("karl_router_redis_latency_seconds_count", "karl_router_redis_latency_seconds_sum"),
}


def _redis_round_trips(port: int, names: tuple[str, str]) -> tuple[float, float] | None:
    """(round trips, seconds spent in them) from a /metrics page; None when it cannot be read."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    values = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.split("{")[0] in values:
            values[name.split("{")[0]] += float(value)
    return values[names[0]], values[names[1]]


def measure_cycles(
    client: KindTimedClient, fleet: Fleet, seconds: float, inflight: int, tag: str
) -> dict[str, Any]:
    """ng_bench's cycles, with the CPU time of each of the fleet's processes and of this one, and the
    Redis round trips the node and the router made (read from their /metrics outside the window)."""
    client.by_kind = {}
    trips_before = {
        role: _redis_round_trips(port, REDIS_METRICS[role]) for role, port in fleet.metrics.items()
    }
    split_before = {role: _cpu_split(pid) for role, pid in fleet.pids.items()}
    cpu_before = {role: procstat.process_cpu_s(pid) for role, pid in fleet.pids.items()}
    delay_before = {role: procstat.process_run_delay_s(pid) for role, pid in fleet.pids.items()}
    self_before = procstat.self_cpu_s()
    result = ng_bench.run_cycles(client, seconds, inflight, tag)
    self_cpu = procstat.self_cpu_s() - self_before
    cpu = {role: procstat.process_cpu_s(pid) - cpu_before[role] for role, pid in fleet.pids.items()}
    delay = {role: procstat.process_run_delay_s(pid) - delay_before[role] for role, pid in fleet.pids.items()}
    split_after = {role: _cpu_split(pid) for role, pid in fleet.pids.items()}
    trips_after = {
        role: _redis_round_trips(port, REDIS_METRICS[role]) for role, port in fleet.metrics.items()
    }
    requests = max(result.requests, 1)
    out: dict[str, Any] = {
        "cycles_per_s": result.cycles_per_s,
        "latency_p50_us": result.latency_p50_us,
        "latency_p99_us": result.latency_p99_us,
        "errors": result.errors,
        "first_error": result.first_error,
        "requests": result.requests,
        "seconds": result.seconds,
        "cpu_s": {**cpu, "generator": self_cpu},
        "run_delay_s": delay,
        "cpu_us_per_request": {role: v * 1e6 / requests for role, v in cpu.items()},
        "user_sys_us_per_request": {
            role: [round((split_after[role][i] - split_before[role][i]) * 1e6 / requests, 1) for i in (0, 1)]
            for role in fleet.pids
        },
        "generator_cpu_us_per_request": self_cpu * 1e6 / requests,
    }
    for role in fleet.metrics:
        before, after = trips_before[role], trips_after[role]
        if before is not None and after is not None and after[0] > before[0]:
            trips = after[0] - before[0]
            out.setdefault("redis_round_trips_per_request", {})[role] = round(trips / requests, 3)
            out.setdefault("redis_round_trip_us", {})[role] = round((after[1] - before[1]) * 1e6 / trips, 1)
    for kind in KINDS:
        values = sorted(client.by_kind.get(kind, []))
        if values:
            out[f"{kind}_p50_us"] = ng_bench._percentile(values, 0.50)
            out[f"{kind}_p99_us"] = ng_bench._percentile(values, 0.99)
    return out


def _runtime_s(pid: int) -> float:
    """CPU time of all threads of a process from schedstat: exact to the nanosecond, unlike the 10 ms
    ticks of /proc/<pid>/stat, which matters for the short slices of the alternating measurement."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with (
            contextlib.suppress(FileNotFoundError, ProcessLookupError),
            open(f"/proc/{pid}/task/{tid}/schedstat") as f,
        ):
            total += int(f.read().split()[0])
    return total / 1e9


PATHS = ("direct", "relay", "router")


def measure_alternating(plan: Plan, fleet: Fleet, tag: str) -> dict[str, Any]:
    """Sequential cycles straight to the node, through the relay and through the router in turn, in
    slices of ``plan.slice_s`` (the order rotating every round), ``plan.alternating_s`` per path."""
    paths = [path for path in PATHS if path in fleet.paths]
    clients = {path: KindTimedClient(*fleet.paths[path]) for path in paths}
    latencies: dict[str, list[int]] = {path: [] for path in paths}
    cpu = {path: dict.fromkeys(fleet.pids, 0.0) for path in paths}
    totals = {path: {"requests": 0, "cycles": 0, "seconds": 0.0, "errors": 0} for path in paths}
    first_error: dict[str, str] = {}
    rounds = max(1, round(plan.alternating_s / plan.slice_s))
    try:
        for path in paths:  # warm each path up (the relay and the direct path are new to the node)
            ng_bench.run_cycles(clients[path], plan.slice_s, 1, f"{tag}{path}w")
        for n in range(rounds):
            for path in paths[n % len(paths) :] + paths[: n % len(paths)]:
                client = clients[path]
                client.by_kind = {}
                before = {role: _runtime_s(pid) for role, pid in fleet.pids.items()}
                result = ng_bench.run_cycles(client, plan.slice_s, 1, f"{tag}{path}{n}")
                for role, pid in fleet.pids.items():
                    cpu[path][role] += _runtime_s(pid) - before[role]
                for values in client.by_kind.values():
                    latencies[path].extend(values)
                total = totals[path]
                total["requests"] += result.requests
                total["cycles"] += result.cycles
                total["seconds"] += result.seconds
                total["errors"] += result.errors
                if result.first_error and path not in first_error:
                    first_error[path] = result.first_error
    finally:
        for client in clients.values():
            client.close()
    out: dict[str, Any] = {}
    for path in paths:
        values = sorted(latencies[path])
        total = totals[path]
        requests = max(total["requests"], 1)
        out[path] = {
            **total,
            "first_error": first_error.get(path),
            "cycles_per_s": total["cycles"] / total["seconds"] if total["seconds"] else 0.0,
            "latency_p50_us": ng_bench._percentile(values, 0.50),
            "latency_p99_us": ng_bench._percentile(values, 0.99),
            "cpu_us_per_request": {role: v * 1e6 / requests for role, v in cpu[path].items()},
        }
    return out


def _core_busy(setup: Setup, config: Config, measured: dict[str, Any]) -> dict[str, float]:
    """Share of each core the measured processes used during a run (the generator's core includes
    this process)."""
    elapsed = measured["seconds"]
    busy = {"node_core": 0.0, "generator_core": 0.0}
    for role, seconds in measured["cpu_s"].items():
        on_node_core = role == "node" or (role in ("router", "relay", "redis") and config.placement == "node")
        busy["node_core" if on_node_core else "generator_core"] += seconds
    return {core: round(value / elapsed, 3) for core, value in busy.items()}


@contextlib.contextmanager
def realtime(priority: int) -> Iterator[None]:
    """This process at SCHED_FIFO ``priority`` inside the block, normal scheduling outside it.

    Only the measurements run at real-time priority. Starting and stopping processes (fork, exec,
    wait) runs at normal priority: twice, while other work on the host was creating and deleting
    network namespaces, this process spun in the kernel for minutes between two measurements at
    SCHED_FIFO (presumably waiting on kernel work that a real-time task on the same core starves),
    and the children it forks inherit the policy of the moment."""
    if priority <= 0:
        yield
        return
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    try:
        yield
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def measure_rep(setup: Setup, config: Config, rep: int) -> dict[str, Any]:
    tag = f"{setup.run_tag}-{config.name.replace('+', '-').replace('@', '-')}-{rep}"
    out: dict[str, Any] = {"rep": rep, "errors": []}
    started = time.monotonic()
    fleet = start_fleet(setup, config, tag)
    out["start_s"] = round(time.monotonic() - started, 2)
    try:
        with KindTimedClient(*fleet.target) as client, realtime(setup.rt):
            warm = None
            for attempt in range(10):  # the router may need a moment after its first pong
                warm = ng_bench.run_cycles(client, setup.plan.warmup_s, 4, f"{tag}w{attempt}")
                if warm.errors == 0:
                    break
                time.sleep(0.3)
            if warm is None or warm.errors:
                out["errors"].append(f"warm-up failed: {warm.first_error if warm else ''}")
                return out
            for label, inflight in (("seq", 1), ("par", setup.plan.inflight)):
                measured = measure_cycles(client, fleet, setup.plan.ng_s, inflight, f"{tag}{label}")
                measured["core_busy"] = _core_busy(setup, config, measured)
                out[label] = measured
                if measured["errors"]:
                    out["errors"].append(
                        f"{label}: {measured['errors']} errors, first {measured['first_error']}"
                    )
            if config.router:
                out["alternating"] = alternating = measure_alternating(setup.plan, fleet, f"{tag}a")
                for path, measured in alternating.items():
                    if measured["errors"]:
                        why = f"{measured['errors']} errors, first {measured['first_error']}"
                        out["errors"].append(f"alternating {path}: {why}")
        dead = fleet.dead()
        if dead:
            out["errors"].append(f"not running at the end: {', '.join(dead)}")
    finally:
        stopping = time.monotonic()
        fleet.stop()
        out["stop_s"] = round(time.monotonic() - stopping, 2)
        out["total_s"] = round(time.monotonic() - started, 2)
    return out


# ------------------------------------------------------------------------------------------ figures

ROLES = ("node", "router", "relay", "redis")

# (key in a summary, path in a repetition's record)
FIGURES: dict[str, tuple[str, ...]] = {
    "cycles_per_s_seq": ("seq", "cycles_per_s"),
    "cycles_per_s_par": ("par", "cycles_per_s"),
    "latency_p50_us": ("seq", "latency_p50_us"),
    "latency_p99_us": ("seq", "latency_p99_us"),
    "latency_p50_us_par": ("par", "latency_p50_us"),
    "latency_p99_us_par": ("par", "latency_p99_us"),
    **{f"{k}_p50_us": ("seq", f"{k}_p50_us") for k in KINDS},
    **{f"{role}_cpu_us_seq": ("seq", "cpu_us_per_request", role) for role in ROLES},
    **{f"{role}_cpu_us_par": ("par", "cpu_us_per_request", role) for role in ROLES},
    "generator_cpu_us_seq": ("seq", "generator_cpu_us_per_request"),
    "generator_cpu_us_par": ("par", "generator_cpu_us_per_request"),
    "node_core_busy_par": ("par", "core_busy", "node_core"),
    "generator_core_busy_par": ("par", "core_busy", "generator_core"),
    **{
        f"{role}_redis_trips_seq": ("seq", "redis_round_trips_per_request", role)
        for role in ("node", "router")
    },
    **{f"{role}_redis_rtt_us_seq": ("seq", "redis_round_trip_us", role) for role in ("node", "router")},
    **{f"{role}_redis_rtt_us_par": ("par", "redis_round_trip_us", role) for role in ("node", "router")},
    # the alternating measurement of the router configurations
    **{f"alt_{path}_p50_us": ("alternating", path, "latency_p50_us") for path in PATHS},
    **{f"alt_{path}_p99_us": ("alternating", path, "latency_p99_us") for path in PATHS},
    **{f"alt_{path}_cycles_per_s": ("alternating", path, "cycles_per_s") for path in PATHS},
    **{
        f"alt_{path}_{role}_cpu_us": ("alternating", path, "cpu_us_per_request", role)
        for path in PATHS
        for role in ROLES
    },
}


def _get(record: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def figure(record: dict[str, Any], key: str) -> float | None:
    if record.get("errors"):
        return None
    return _get(record, FIGURES[key])


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key in FIGURES:
        stats = _stats([v for r in records if (v := figure(r, key)) is not None])
        if stats is not None:
            out[key] = stats
    return out


def derive(reps: dict[str, list[dict[str, Any]]], placements: list[str]) -> dict[str, Any]:
    """Paired per repetition (same repetition index, so under the same host conditions), then
    median (min..max)."""

    def paired(
        a: str, b: str, fn: Callable[[dict[str, Any], dict[str, Any]], float | None]
    ) -> dict[str, Any] | None:
        values = []
        for ra, rb in zip(reps.get(a, []), reps.get(b, []), strict=False):
            if not ra.get("errors") and not rb.get("errors") and (v := fn(ra, rb)) is not None:
                values.append(v)
        return _stats(values)

    def diff(key: str) -> Callable[[dict[str, Any], dict[str, Any]], float | None]:
        def fn(ra: dict[str, Any], rb: dict[str, Any]) -> float | None:
            x, y = figure(ra, key), figure(rb, key)
            return None if x is None or y is None else x - y

        return fn

    def within(key_a: str, key_b: str) -> Callable[[dict[str, Any], dict[str, Any]], float | None]:
        """Two figures of the same record (the alternating measurement): a - b."""

        def fn(ra: dict[str, Any], _: dict[str, Any]) -> float | None:
            x, y = figure(ra, key_a), figure(ra, key_b)
            return None if x is None or y is None else x - y

        return fn

    def ratio(key_a: str, key_b: str) -> Callable[[dict[str, Any], dict[str, Any]], float | None]:
        def fn(ra: dict[str, Any], rb: dict[str, Any]) -> float | None:
            x, y = figure(ra, key_a), figure(rb, key_b)
            return None if x is None or not y else x / y

        return fn

    out: dict[str, Any] = {}
    for where in placements:
        fleet, router = f"node+redis@{where}", f"router@{where}"
        d: dict[str, Any] = {
            # what the router adds: router - node+redis
            "router_added_p50_us": paired(router, fleet, diff("latency_p50_us")),
            "router_added_p99_us": paired(router, fleet, diff("latency_p99_us")),
            **{f"router_added_{k}_p50_us": paired(router, fleet, diff(f"{k}_p50_us")) for k in KINDS},
            "router_cycles_ratio_seq": paired(router, fleet, ratio("cycles_per_s_seq", "cycles_per_s_seq")),
            "router_cycles_ratio_par": paired(router, fleet, ratio("cycles_per_s_par", "cycles_per_s_par")),
            # router CPU per request / node CPU per request (the node behind it, same run)
            "router_cpu_ratio_seq": paired(router, router, ratio("router_cpu_us_seq", "node_cpu_us_seq")),
            "router_cpu_ratio_par": paired(router, router, ratio("router_cpu_us_par", "node_cpu_us_par")),
            # ... and against the single node without Redis
            "router_cpu_vs_single_node_seq": paired(
                router, "node", ratio("router_cpu_us_seq", "node_cpu_us_seq")
            ),
            "router_cpu_vs_single_node_par": paired(
                router, "node", ratio("router_cpu_us_par", "node_cpu_us_par")
            ),
            # what a state write adds: node+redis - node
            "write_added_p50_us": paired(fleet, "node", diff("latency_p50_us")),
            "write_added_p99_us": paired(fleet, "node", diff("latency_p99_us")),
            **{f"write_added_{k}_p50_us": paired(fleet, "node", diff(f"{k}_p50_us")) for k in KINDS},
            "write_node_cpu_added_us_seq": paired(fleet, "node", diff("node_cpu_us_seq")),
            "write_node_cpu_added_us_par": paired(fleet, "node", diff("node_cpu_us_par")),
            "write_cycles_ratio_seq": paired(fleet, "node", ratio("cycles_per_s_seq", "cycles_per_s_seq")),
            "write_cycles_ratio_par": paired(fleet, "node", ratio("cycles_per_s_par", "cycles_per_s_par")),
            # the same fleet, alternating slices: router - direct, relay - direct, router - relay
            "alt_router_added_p50_us": paired(
                router, router, within("alt_router_p50_us", "alt_direct_p50_us")
            ),
            "alt_router_added_p99_us": paired(
                router, router, within("alt_router_p99_us", "alt_direct_p99_us")
            ),
            "alt_relay_added_p50_us": paired(router, router, within("alt_relay_p50_us", "alt_direct_p50_us")),
            "alt_router_beyond_relay_p50_us": paired(
                router, router, within("alt_router_p50_us", "alt_relay_p50_us")
            ),
            "alt_router_cpu_ratio": paired(
                router, router, ratio("alt_router_router_cpu_us", "alt_router_node_cpu_us")
            ),
            "alt_relay_cpu_ratio": paired(
                router, router, ratio("alt_relay_relay_cpu_us", "alt_relay_node_cpu_us")
            ),
            "alt_node_cpu_via_router_minus_direct": paired(
                router, router, within("alt_router_node_cpu_us", "alt_direct_node_cpu_us")
            ),
        }
        out[where] = {k: v for k, v in d.items() if v is not None}
    return out


# -------------------------------------------------------------------------------------------- report


def _cell(entry: dict[str, Any] | None, digits: int = 0, scale: float = 1.0) -> str:
    if not entry:
        return "—"
    text = f"{entry['median'] * scale:,.{digits}f}"
    if entry["runs"] > 1:
        text += f" ({entry['min'] * scale:,.{digits}f}..{entry['max'] * scale:,.{digits}f})"
    return text


def _verdict(entry: dict[str, Any] | None, limit: float) -> str:
    if not entry:
        return "—"
    if entry["max"] <= limit:
        return "met"
    return "met at the median" if entry["median"] <= limit else "missed"


def _row(label: str, value: str, target: str = "") -> str:
    return f"| {label} | {value} | {target} |"


def _pair(d: dict[str, Any], a: str, b: str, digits: int = 0) -> str:
    return f"{_cell(d.get(a), digits)} / {_cell(d.get(b), digits)}"


def markdown(results: dict[str, Any]) -> str:
    k = results["method"]["plan"]["inflight"]
    summaries: dict[str, dict[str, Any]] = {n: e["summary"] for n, e in results["configs"].items()}
    cols = [
        ("cycles/s seq", "cycles_per_s_seq"),
        (f"cycles/s {k} in flight", "cycles_per_s_par"),
        ("p50 µs", "latency_p50_us"),
        ("p99 µs", "latency_p99_us"),
        ("node CPU µs/req seq", "node_cpu_us_seq"),
        (f"node CPU µs/req {k}", "node_cpu_us_par"),
        ("router CPU µs/req seq", "router_cpu_us_seq"),
        (f"router CPU µs/req {k}", "router_cpu_us_par"),
        ("Redis CPU µs/req seq", "redis_cpu_us_seq"),
        (f"Redis CPU µs/req {k}", "redis_cpu_us_par"),
    ]
    lines = ["| Configuration | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, summary in summaries.items():
        lines.append(f"| {name} | " + " | ".join(_cell(summary.get(key)) for _, key in cols) + " |")
    lines += [
        "",
        "Per command, sequential: latency p50 (µs). Redis round trips per request (sequential) and their",
        "mean time as the node's and the router's Redis clients see them (µs, sequential / in flight; in",
        "flight it includes the wait in the client's queue):",
        "",
        "| Configuration | offer | answer | delete | node trips/req | node trip µs | router trips/req "
        "| router trip µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, summary in summaries.items():
        cells = [_cell(summary.get(f"{kind}_p50_us")) for kind in KINDS]
        for role in ("node", "router"):
            cells.append(_cell(summary.get(f"{role}_redis_trips_seq"), 2))
            cells.append(_pair(summary, f"{role}_redis_rtt_us_seq", f"{role}_redis_rtt_us_par"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    alt_rows = [
        (name, path, summary)
        for name, summary in summaries.items()
        for path in PATHS
        if f"alt_{path}_p50_us" in summary
    ]
    if alt_rows:
        lines += [
            "",
            "Same fleet (Redis, node, router, relay), sequential cycles in alternating "
            f"{results['method']['plan']['slice_s']} s slices, "
            f"{results['method']['plan']['alternating_s']} s per path; CPU from schedstat, per request:",
            "",
            "| Fleet | path | cycles/s | p50 µs | p99 µs | node CPU µs/req | router CPU µs/req "
            "| relay CPU µs/req | Redis CPU µs/req |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, path, summary in alt_rows:
            cells = [
                _cell(summary.get(f"alt_{path}_cycles_per_s")),
                _cell(summary.get(f"alt_{path}_p50_us")),
                _cell(summary.get(f"alt_{path}_p99_us")),
                *(_cell(summary.get(f"alt_{path}_{role}_cpu_us")) for role in ROLES),
            ]
            lines.append(f"| {name} | {path} | " + " | ".join(cells) + " |")
    for where, d in results["derived"].items():
        added = d.get("router_added_p50_us")
        by_kind = " / ".join(_cell(d.get(f"router_added_{kind}_p50_us")) for kind in KINDS)
        write_by_kind = " / ".join(_cell(d.get(f"write_added_{kind}_p50_us")) for kind in KINDS)
        core = "node" if where == "node" else "NG client"
        lines += [
            "",
            f"Derived, router and Redis on the {core}'s core (`@{where}`), paired per repetition:",
            "",
            "| Figure | Value | Target |",
            "|---|---:|---|",
            _row(
                "Router adds, p50 latency (router - node+redis)",
                f"{_cell(added)} µs",
                f"≤ {ADDED_P50_TARGET_US:.0f} µs: {_verdict(added, ADDED_P50_TARGET_US)}",
            ),
            _row("Router adds, p99 latency", f"{_cell(d.get('router_added_p99_us'))} µs"),
            _row("Router adds, p50 by command (offer / answer / delete)", f"{by_kind} µs"),
            *(
                _row(
                    f"Router CPU / node CPU per request, {mode}",
                    _cell(d.get(f"router_cpu_ratio_{suffix}"), 2),
                    f"≤ 0.33: {_verdict(d.get(f'router_cpu_ratio_{suffix}'), CPU_RATIO_TARGET)}",
                )
                for mode, suffix in (("sequential", "seq"), (f"{k} in flight", "par"))
            ),
            _row(
                f"Router CPU / CPU of a node without Redis, seq / {k}",
                _pair(d, "router_cpu_vs_single_node_seq", "router_cpu_vs_single_node_par", 2),
            ),
            _row(
                f"Cycles/s through the router / straight to the node, seq / {k}",
                _pair(d, "router_cycles_ratio_seq", "router_cycles_ratio_par", 2),
            ),
            _row(
                "State write adds, p50 latency (node+redis - node)",
                f"{_cell(d.get('write_added_p50_us'))} µs",
            ),
            _row("State write adds, p99 latency", f"{_cell(d.get('write_added_p99_us'))} µs"),
            _row("State write adds, p50 by command (offer / answer / delete)", f"{write_by_kind} µs"),
            _row(
                f"State write adds, node CPU µs/request, seq / {k}",
                _pair(d, "write_node_cpu_added_us_seq", "write_node_cpu_added_us_par"),
            ),
            _row(
                f"Cycles/s with Redis / without, seq / {k}",
                _pair(d, "write_cycles_ratio_seq", "write_cycles_ratio_par", 2),
            ),
        ]
        if "alt_router_added_p50_us" in d:
            lines += [
                _row(
                    "Same fleet, alternating slices: router adds, p50 (router - direct)",
                    f"{_cell(d['alt_router_added_p50_us'])} µs",
                    f"≤ {ADDED_P50_TARGET_US:.0f} µs: "
                    + _verdict(d["alt_router_added_p50_us"], ADDED_P50_TARGET_US),
                ),
                _row(
                    "Same fleet, alternating slices: router adds, p99",
                    f"{_cell(d.get('alt_router_added_p99_us'))} µs",
                ),
                _row(
                    "Same fleet, alternating slices: router CPU / node CPU per request",
                    _cell(d.get("alt_router_cpu_ratio"), 2),
                    f"≤ 0.33: {_verdict(d.get('alt_router_cpu_ratio'), CPU_RATIO_TARGET)}",
                ),
                _row(
                    "Same fleet: node CPU per request via the router - straight",
                    f"{_cell(d.get('alt_node_cpu_via_router_minus_direct'))} µs",
                ),
            ]
        if "alt_relay_added_p50_us" in d:
            lines += [
                _row(
                    "Same fleet: a bare relay adds, p50 (relay - direct)",
                    f"{_cell(d['alt_relay_added_p50_us'])} µs",
                ),
                _row(
                    "Same fleet: the router's own work, p50 (router - relay)",
                    f"{_cell(d.get('alt_router_beyond_relay_p50_us'))} µs",
                ),
                _row("Same fleet: relay CPU / node CPU per request", _cell(d.get("alt_relay_cpu_ratio"), 2)),
            ]
    return "\n".join(lines)


def _boost_note(boost: int) -> str:
    if not boost:
        return ""
    return f"; router and relay {boost} level(s) higher (`--hop-boost`: they preempt whoever shares a core)"


def _digest_note(digest: dict[str, str]) -> str:
    if digest["start"] == digest["end"]:
        return f"digest {digest['start']}, unchanged during the run"
    return f"CHANGED during the run: digest {digest['start']} at the start, {digest['end']} at the end"


def write_results(results: dict[str, Any]) -> tuple[Path, Path, str]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"{results['stamp']}-fleet"
    json_path = RESULTS_DIR / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = markdown(results)
    m = results["machine"]
    method = results["method"]
    tree = method["source_tree"]
    text = "\n".join(
        [
            f"# Fleet control-plane run {results['stamp']} ({results['mode']}, "
            f"{method['plan']['reps']} repetition(s), medians (min..max))",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}; load average "
            f"{m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end; hypervisor "
            f"steal {m['steal_s_during_run']} s. Source: {tree['path']} at {(tree.get('commit') or '?')[:12]}"
            f"{' with uncommitted changes' if tree.get('uncommitted_changes') else ''}"
            f" (sources {_digest_note(method['source_digest'])}).",
            f"Node on core {method['node_core']}, NG client on core {method['generator_core']}; "
            "`@gen`: router (or relay) and Redis on the client's core, `@node`: on the node's core; "
            f"SCHED_FIFO {method['realtime_priority'] or 'off'} (node, router, Redis; the client while it "
            f"measures){_boost_note(method.get('hop_boost', 0))}. Each configuration on fresh processes, "
            "repetitions interleaved. Offer+answer+delete "
            f"cycles for {method['plan']['ng_s']} s sequentially and {method['plan']['inflight']} in flight; "
            "latency over all requests (all three commands) of the sequential run; CPU = utime + stime "
            "from /proc over each run, per request. Derived figures: per-repetition differences or "
            f"ratios, then median (min..max). Run took {results['elapsed_s']} s.",
            "",
            table,
            "",
        ]
    )
    md_path = RESULTS_DIR / f"{stem}.md"
    md_path.write_text(text)
    return json_path, md_path, table


# --------------------------------------------------------------------------------------- profiling


def profile_router(setup: Setup, placement: str) -> dict[str, Any]:
    """One unmeasured pass with the router under cProfile: where its Python time goes."""
    profile_dir = setup.log_dir / "profile"
    profile_dir.mkdir(parents=True, exist_ok=True)
    prof_setup = replace(setup, profile_dir=profile_dir)
    config = Config(f"router@{placement}", True, True, placement)
    _progress(f"profiling the router ({config.name}, under cProfile: slower, figures not used)")
    record = measure_rep(prof_setup, config, 99)
    path = profile_dir / "router.prof"
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not path.exists():
        return {"error": "no profile written", "record_errors": record.get("errors")}
    text = {}
    for sort in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(str(path), stream=buffer).strip_dirs().sort_stats(sort).print_stats(30)
        text[sort] = buffer.getvalue()
    (profile_dir / "router-profile.txt").write_text(text["tottime"] + "\n" + text["cumulative"])
    return {"path": str(path), "text": str(profile_dir / "router-profile.txt"), "requests": _requests(record)}


def _requests(record: dict[str, Any]) -> int:
    return sum(record.get(label, {}).get("requests", 0) for label in ("seq", "par"))


# -------------------------------------------------------------------------------------------- main

SOURCE_DIRS = ("core", "medianode", "ngrouter")


def source_digest() -> str:
    """A digest of the product's Python sources: every process starts from the work tree as it is at
    that moment, so a change in the middle of a run (others editing) must at least be noticed."""
    digest = hashlib.sha256()
    for directory in SOURCE_DIRS:
        for path in sorted((proxies.REPO / directory).rglob("*.py")):
            digest.update(str(path.relative_to(proxies.REPO)).encode())
            with contextlib.suppress(OSError):
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _brief(record: dict[str, Any]) -> str:
    if record.get("errors"):
        return "ERRORS: " + "; ".join(record["errors"])
    parts = [
        f"seq {figure(record, 'cycles_per_s_seq'):.0f}/s",
        f"par {figure(record, 'cycles_per_s_par'):.0f}/s",
        f"p50 {figure(record, 'latency_p50_us'):.0f} µs",
        f"p99 {figure(record, 'latency_p99_us'):.0f} µs",
    ]
    for role in ("node", "router", "redis"):
        seq = figure(record, f"{role}_cpu_us_seq")
        if seq is not None:
            parts.append(f"{role} {seq:.0f}/{figure(record, f'{role}_cpu_us_par'):.0f} µs/req")
    alternating = [(path, figure(record, f"alt_{path}_p50_us")) for path in PATHS]
    if any(value is not None for _, value in alternating):
        parts.append(
            "alternating p50 "
            + ", ".join(f"{path} {value:.0f}" for path, value in alternating if value is not None)
        )
    return ", ".join(parts) + f" (started in {record['start_s']} s, stopped in {record.get('stop_s')} s)"


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = replace(plan, reps=args.reps)
    if args.seconds:
        plan = replace(plan, ng_s=args.seconds)
    os.sched_setaffinity(0, {args.generator_core})
    if args.rt > 0:
        try:
            with realtime(args.rt):
                pass
        except PermissionError:
            _progress("no permission for real-time scheduling (CAP_SYS_NICE): running with --rt 0")
            args.rt = 0
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    ports = plan_ports(args.first_port)
    setup = Setup(
        plan,
        ports,
        args.node_core,
        args.generator_core,
        args.rt,
        args.media_ip,
        RESULTS_DIR / "logs" / f"{stamp}-fleet",
        f"f{os.getpid()}",
        relay=args.relay,
        hop_boost=args.hop_boost,
    )
    configs = configurations(args.placements)
    results: dict[str, Any] = {
        "stamp": stamp,
        "mode": "quick" if args.quick else "full",
        "machine": run.machine_info(),
        "method": {
            "plan": asdict(plan),
            "node_core": args.node_core,
            "generator_core": args.generator_core,
            "placements": list(args.placements),
            "realtime_priority": args.rt,
            "hop_boost": args.hop_boost,
            "media_ip": args.media_ip,
            "ports": asdict(ports),
            "configs": [asdict(c) for c in configs],
            "node_env": node_env(setup, True),
            "source_tree": proxies.tree_info(proxies.REPO),
        },
        "configs": {c.name: {"reps": [], "summary": {}} for c in configs},
    }
    results["machine"].pop("rtpengine", None)
    started = time.monotonic()
    steal_before = procstat.steal_s()
    digest = source_digest()
    for rep in range(plan.reps):
        for config in configs:
            entry = results["configs"][config.name]
            try:
                record = measure_rep(setup, config, rep)
            except Exception as exc:  # a failed start or a broken measurement must not end the run
                what = "start failed" if isinstance(exc, proxies.ProxyStartError) else type(exc).__name__
                record = {"rep": rep, "errors": [f"{what}: {exc}"], "start_s": None}
            entry["reps"].append(record)
            entry["summary"] = summarize(entry["reps"])
            _progress(f"rep {rep + 1}/{plan.reps} {config.name}: {_brief(record)}")
    reps = {name: entry["reps"] for name, entry in results["configs"].items()}
    results["derived"] = derive(reps, list(args.placements))
    if args.profile_router:
        results["router_profile"] = profile_router(setup, args.placements[0])
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["method"]["source_digest"] = {"start": digest, "end": source_digest()}
    if digest != results["method"]["source_digest"]["end"]:
        _progress("warning: the sources changed during the run; the figures may mix two versions")
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["machine"]["steal_s_during_run"] = round(procstat.steal_s() - steal_before, 2)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one repetition, 1 s runs (under a minute)")
    parser.add_argument("--reps", type=int, help=f"repetitions (default {FULL.reps}, quick {QUICK.reps})")
    parser.add_argument("--seconds", type=float, help=f"length of each measured run (default {FULL.ng_s})")
    parser.add_argument(
        "--placements",
        nargs="+",
        choices=PLACEMENTS,
        default=list(PLACEMENTS),
        help="where the router, relay and Redis run: on the NG client's core (gen) or the node's (node)",
    )
    parser.add_argument("--node-core", type=int, default=0)
    parser.add_argument("--generator-core", type=int, default=1)
    parser.add_argument(
        "--rt",
        type=int,
        default=1,
        help="SCHED_FIFO priority of the node, router, relay and Redis, and of this process while it "
        "measures (0: normal scheduling)",
    )
    parser.add_argument(
        "--hop-boost",
        type=int,
        default=0,
        help="run the router and the relay this many SCHED_FIFO levels above the node, Redis and the "
        "client: a woken router preempts whoever shares its core, as if it had a core of its own "
        "(what a router pod with a CPU of its own gets); 0: all at the same priority",
    )
    parser.add_argument(
        "--media-ip", default="127.0.0.210", help="the node's media address (no media is sent)"
    )
    parser.add_argument("--first-port", type=int, default=9000, help="lowest port of the node's RTP range")
    parser.add_argument(
        "--relay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start a bare uvloop UDP relay next to the router and measure through it too (the floor "
        "of one more hop; router - relay: what the router's own work adds); default on",
    )
    parser.add_argument(
        "--profile-router",
        action="store_true",
        help="afterwards, one more pass with the router under cProfile (its figures are not used)",
    )
    args = parser.parse_args(argv)
    # Turn SIGTERM into an exception so that the finally blocks stop the processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run_all(args)
    json_path, md_path, table = write_results(results)
    print(table)
    if "router_profile" in results:
        print(f"\nrouter profile: {results['router_profile'].get('text', results['router_profile'])}")
    print(f"\nresults: {json_path}\n         {md_path}  ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
