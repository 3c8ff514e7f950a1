"""Side-by-side benchmark of rtpengine (userspace) and Karl on this machine, in one run.

Each proxy in turn is started pinned to one core (``--proxy-core``, default 0); this process and the
load generator run on another (``--generator-core``, default 1). The repetitions are interleaved:
repetition 1 of every proxy, then repetition 2 of every proxy, and so on. Per proxy and repetition,
on a fresh proxy process:

1. memory per idle call (RSS delta over N answered calls without media),
2. offer+answer+delete cycles/s, sequential and K in flight, with NG latency,
3. CPU µs per forwarded packet and one-way latency at a moderate G.711 load,
4. max forwarded packets/s (ramp the rate over a fixed set of calls),
5. concurrent G.711 calls at zero loss (ramp the calls at 50 packets/s per direction).

Every figure is the median of the repetitions. Results go to ``bench/results/<stamp>.json`` and
``.md`` (the table with the Karl/rtpengine ratio). All traffic stays on loopback; every process
started here is stopped at the end. See docs/performance.md for the method.

``--only rtpengine python-floor karl`` adds ``python-floor`` (``bench/floor_proxy.py``): the least a
Python NG proxy does for the bench's G.711 cycle, as a real server measured the same way; it is the
floor Karl's signalling is set against (docs/performance.md). ``python-floor-bare`` is the same
without its state journal and call records, ``python-plain-path`` the floor with
``bench/plain_path.py``'s share of 10.5's work for a plain call. None is run unless named.

With ``--baseline-tree DIR`` a third proxy, ``karl-baseline``, is Karl started the same way from the
source tree DIR (a git worktree or clone of an older commit); the table then also shows
Karl / Karl baseline: after / before a change, measured under the same machine conditions.

    python bench/run.py            # full run, under ~10 minutes
    python bench/run.py --quick    # one repetition, short steps, under 2 minutes
    python bench/run.py --quick --only rtpengine
    git worktree add /tmp/karl-baseline <commit>
    python bench/run.py --baseline-tree /tmp/karl-baseline
    python bench/run.py --baseline-tree /tmp/karl-baseline --only karl-baseline karl --figures memory ng
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import ng_bench
import procstat
import proxies
import report
from loadgen import CallSet, Endpoints, Placement, TrafficResult, TrafficSpec, bind_endpoints, run_traffic
from ngclient import NGClient

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The measurements of one repetition, in the order they run.
FIGURES = ("memory", "ng", "moderate", "max_pps", "max_calls")


@dataclass(frozen=True)
class Plan:
    reps: int
    moderate_calls: int  # calls at 50 pps per direction for the CPU and latency figures
    moderate_s: float
    step_s: float  # one ramp step
    ng_s: float
    inflight: int
    memory_calls: int
    pps_calls: int  # calls over which the max-packets/s ramp spreads its rate
    max_calls: int  # cap for the concurrent-calls ramp (and the port ranges)
    pps_start: float
    pps_factor: float
    calls_start: int
    calls_factor: float
    refine_steps: int
    loss_limit: float = 0.001  # max-pps ramp: more loss than this fails a step
    keepup_latency_us: float = 5000.0  # median latency above this: the proxy's queues are growing
    saturation_util: float = 0.95  # proxy CPU share of its core at which the ramp stops
    recv_batch_s: float = 0.0005  # receiver nap in ramp steps (cheaper generator; latency unused)
    step_budget: int = 14  # steps per ramp, at most


FULL = Plan(
    reps=3,
    moderate_calls=200,
    moderate_s=5.0,
    step_s=3.0,
    ng_s=3.0,
    inflight=16,
    memory_calls=1000,
    pps_calls=200,
    max_calls=2500,
    pps_start=40_000,
    pps_factor=1.3,
    calls_start=300,
    calls_factor=1.25,
    refine_steps=2,
)

QUICK = replace(
    FULL,
    reps=1,
    moderate_s=2.5,
    step_s=1.5,
    ng_s=1.0,
    memory_calls=500,
    pps_factor=1.35,
    calls_factor=1.3,
    refine_steps=1,
    step_budget=9,
)


@dataclass
class Setup:
    plan: Plan
    launch: proxies.Launch
    ports: proxies.ProxyPorts
    endpoints: Endpoints
    generator_core: int
    realtime_priority: int
    log_dir: Path
    run_tag: str
    endpoint_ports: tuple[int, int]
    figures: tuple[str, ...] = FIGURES
    trees: dict[str, Path] = field(default_factory=dict)  # karl-baseline: its source tree


@dataclass
class Step:
    x: float  # what the ramp varies
    value: float  # the figure this step shows (forwarded packets/s, or calls)
    passed: bool
    saturated: bool
    generator_limited: bool
    result: TrafficResult


@dataclass
class Ramp:
    best: Step | None = None
    steps: list[Step] = field(default_factory=list)
    generator_limited: bool = False
    stopped_because: str = ""


def ramp(
    start: float, factor: float, limit: float, refine: int, budget: int, trial: Callable[[float], Step]
) -> Ramp:
    """Raise x by ``factor`` until a step fails or saturates the proxy, then bisect ``refine`` times.

    A step the generator could not deliver is retried once; if that falls short too, the ramp stops
    and its result is a lower bound (``generator_limited``), unless the proxy was saturated anyway.
    """
    out = Ramp()
    lo: float | None = None
    hi: float | None = None
    x = min(start, limit)

    def conclusive(step: Step) -> bool:
        # A proxy that used its whole core without loss has shown its limit, even if the generator
        # fell a little short of the offered rate.
        return not step.generator_limited or (step.passed and step.saturated)

    def attempt(value: float) -> Step | None:
        step = trial(value)
        out.steps.append(step)
        if not conclusive(step):
            step = trial(value)
            out.steps.append(step)
        if not conclusive(step):
            out.generator_limited = True
            out.stopped_because = "generator could not deliver the offered load"
            return None
        return step

    while len(out.steps) < budget:
        step = attempt(x)
        if step is None:
            return out
        if step.passed:
            lo = x
            if out.best is None or step.value > out.best.value:
                out.best = step
            if step.saturated:
                out.stopped_because = "proxy CPU saturated"
                return out
            if x >= limit:
                out.stopped_because = "reached the configured limit"
                return out
            x = min(limit, x * factor)
        else:
            hi = x
            if lo is None:
                x = x / factor**2  # started above the limit: step down
                continue
            break
    else:
        out.stopped_because = "step budget used up"
        return out
    out.stopped_because = "loss or growing queues"
    for _ in range(refine):
        if lo is None or hi is None or len(out.steps) >= budget:
            break
        mid = (lo + hi) / 2
        step = attempt(mid)
        if step is None:
            return out
        if step.passed:
            lo = mid
            if out.best is None or step.value > out.best.value:
                out.best = step
        else:
            hi = mid
    return out


def _rtp_spec(setup: Setup, duration: float, pps: float, batch: bool) -> TrafficSpec:
    return TrafficSpec(
        duration_s=duration,
        pps_per_stream=pps,
        # In ramp steps the first second (new calls: first packets, latching) is not judged.
        warmup_s=min(1.0, duration / 3) if batch else 0.5,
        recv_batch_s=setup.plan.recv_batch_s if batch else 0.0,
        realtime_priority=setup.realtime_priority,
    )


def _step_summary(step: Step) -> dict[str, Any]:
    r = step.result
    return {
        "x": step.x,
        "passed": step.passed,
        "saturated": step.saturated,
        "generator_limited": step.generator_limited,
        "calls": r.calls,
        "offered_pps": r.offered_pps,
        "forwarded_pps": r.forwarded_pps,
        "loss_ratio": r.loss_ratio,
        "lost": r.lost,
        "latency_p50_us": r.latency_p50_us,
        "proxy_cpu_util": r.proxy_cpu_util,
        "generator_cpu_util": r.generator_cpu_util,
        "proxy_socket_drops": r.proxy_socket_drops,
        "generator_limit_reasons": r.generator_limit_reasons,
    }


def _keeps_up(result: TrafficResult, plan: Plan) -> bool:
    return result.latency_p50_us is not None and result.latency_p50_us < plan.keepup_latency_us


def measure_memory(setup: Setup, proxy: proxies.RunningProxy, client: NGClient) -> dict[str, Any]:
    for _ in range(3):
        client.ping()
    before = procstat.process_rss_bytes(proxy.pid)
    ids = ng_bench.open_idle_calls(client, setup.plan.memory_calls, f"{setup.run_tag}-mem")
    time.sleep(0.5)
    after = procstat.process_rss_bytes(proxy.pid)
    ng_bench.close_calls(client, ids)
    return {
        "memory_kib_per_call": (after - before) / len(ids) / 1024,
        "memory_detail": {"calls": len(ids), "rss_before": before, "rss_after": after},
    }


def measure_ng(setup: Setup, proxy: proxies.RunningProxy, client: NGClient) -> dict[str, Any]:
    seq = ng_bench.run_cycles(client, setup.plan.ng_s, 1, f"{setup.run_tag}-ng1", proxy.pid)
    par = ng_bench.run_cycles(client, setup.plan.ng_s, setup.plan.inflight, f"{setup.run_tag}-ngk", proxy.pid)
    out: dict[str, Any] = {"ng_detail": {"sequential": seq.to_json(), "parallel": par.to_json()}}
    if seq.errors == 0:
        out |= {
            "ng_cycles_per_s_seq": seq.cycles_per_s,
            "ng_latency_p50_us": seq.latency_p50_us,
            "ng_latency_p99_us": seq.latency_p99_us,
        }
    if par.errors == 0:
        out["ng_cycles_per_s_par"] = par.cycles_per_s
    for key, result in (("ng_cpu_us_per_cycle_seq", seq), ("ng_cpu_us_per_cycle_par", par)):
        if result.errors == 0 and result.proxy_cpu_us_per_cycle is not None:
            out[key] = result.proxy_cpu_us_per_cycle
    return out


def _placement(setup: Setup, proxy: proxies.RunningProxy | None) -> Placement:
    if proxy is None:
        return Placement(generator_core=setup.generator_core)
    return Placement(proxy.pid, proxy.media_ip, setup.launch.core, setup.generator_core)


def _ensure_endpoints(setup: Setup, count: int) -> None:
    if setup.endpoints.count < count:
        bind_endpoints(count - setup.endpoints.count, ports=setup.endpoint_ports, endpoints=setup.endpoints)


def measure_moderate(setup: Setup, proxy: proxies.RunningProxy, client: NGClient) -> dict[str, Any]:
    plan = setup.plan
    _ensure_endpoints(setup, plan.moderate_calls)
    call_set = CallSet(setup.endpoints, f"{setup.run_tag}-mod")
    try:
        call_set.add_via_ng(client, plan.moderate_calls)
        result = run_traffic(
            call_set, _rtp_spec(setup, plan.moderate_s, 50.0, batch=False), _placement(setup, proxy)
        )
    finally:
        call_set.delete_all(client)
    out: dict[str, Any] = {"moderate_detail": result.to_json()}
    if result.lost == 0 and not result.generator_limited:
        out |= {
            "cpu_us_per_packet": result.proxy_cpu_us_per_packet,
            "latency_p50_us": result.latency_p50_us,
            "latency_p99_us": result.latency_p99_us,
        }
    return out


class _FreshCalls:
    """The calls of a ramp: grown or shrunk to each step's size, and replaced by new ones after a
    failed step. (rtpengine 10.5, after an overload, kept dropping half of the packets of the calls
    that had been overloaded, even at loads it had handled before; new calls were not affected.)"""

    def __init__(self, setup: Setup, client: NGClient, label: str) -> None:
        self.setup = setup
        self.client = client
        self.label = label
        self.generation = 0
        self.spoiled = False
        self.call_set = self._new()

    def _new(self) -> CallSet:
        self.generation += 1
        return CallSet(self.setup.endpoints, f"{self.setup.run_tag}-{self.label}{self.generation}")

    def get(self, count: int) -> CallSet:
        if self.spoiled:
            self.call_set.delete_all(self.client)
            self.call_set = self._new()
            self.spoiled = False
        if self.call_set.count > count:
            self.call_set.truncate(self.client, count)
        elif self.call_set.count < count:
            self.call_set.add_via_ng(self.client, count - self.call_set.count)
        return self.call_set

    def close(self) -> None:
        self.call_set.delete_all(self.client)


def measure_max_pps(
    setup: Setup, proxy: proxies.RunningProxy, client: NGClient, hint: float | None
) -> dict[str, Any]:
    plan = setup.plan
    _ensure_endpoints(setup, plan.pps_calls)
    calls = _FreshCalls(setup, client, "pps")
    where = _placement(setup, proxy)

    def trial(rate: float) -> Step:
        spec = _rtp_spec(setup, plan.step_s, rate / (2 * plan.pps_calls), batch=True)
        r = run_traffic(calls.get(plan.pps_calls), spec, where)
        passed = r.loss_ratio <= plan.loss_limit and _keeps_up(r, plan)
        saturated = (r.proxy_cpu_util or 0.0) >= plan.saturation_util
        calls.spoiled = not passed
        return Step(rate, r.forwarded_pps, passed, saturated, r.generator_limited, r)

    start, factor = (hint * 0.85, 1.08) if hint else (plan.pps_start, plan.pps_factor)
    try:
        result = ramp(start, factor, 1e7, plan.refine_steps, plan.step_budget, trial)
    finally:
        calls.close()
    out: dict[str, Any] = {
        "max_pps_detail": {
            "stopped_because": result.stopped_because,
            "steps": [_step_summary(s) for s in result.steps],
        }
    }
    if result.best is not None:
        out["max_pps"] = result.best.value
        out["max_pps_generator_limited"] = result.generator_limited
    return out


def measure_max_calls(
    setup: Setup, proxy: proxies.RunningProxy, client: NGClient, hint: float | None, max_pps: float | None
) -> dict[str, Any]:
    plan = setup.plan
    calls = _FreshCalls(setup, client, "calls")
    where = _placement(setup, proxy)

    def trial(x: float) -> Step:
        count = round(x)
        _ensure_endpoints(setup, count)
        r = run_traffic(calls.get(count), _rtp_spec(setup, plan.step_s, 50.0, batch=True), where)
        passed = r.lost == 0 and _keeps_up(r, plan)
        saturated = (r.proxy_cpu_util or 0.0) >= plan.saturation_util
        calls.spoiled = not passed
        return Step(count, count, passed, saturated, r.generator_limited, r)

    if hint:
        start, factor = hint * 0.85, 1.08
    elif max_pps:
        start, factor = 0.6 * max_pps / 100, 1.15
    else:
        start, factor = plan.calls_start, plan.calls_factor
    try:
        result = ramp(start, factor, plan.max_calls, plan.refine_steps, plan.step_budget, trial)
    finally:
        calls.close()
    out: dict[str, Any] = {
        "max_calls_detail": {
            "stopped_because": result.stopped_because,
            "steps": [_step_summary(s) for s in result.steps],
        }
    }
    if result.best is not None:
        out["max_calls"] = result.best.value
        out["max_calls_generator_limited"] = result.generator_limited or result.best.x >= plan.max_calls
    return out


def measure_rep(setup: Setup, name: str, rep: int, hints: dict[str, float]) -> dict[str, Any]:
    """One repetition on a fresh proxy process; a failing measurement is recorded, the rest go on."""
    out: dict[str, Any] = {"rep": rep, "errors": []}
    proxy = proxies.start(name, setup.launch, setup.ports, setup.log_dir, trees=setup.trees)
    try:
        with NGClient(*proxy.ng) as client:
            steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("memory", lambda: measure_memory(setup, proxy, client)),
                ("ng", lambda: measure_ng(setup, proxy, client)),
                ("moderate", lambda: measure_moderate(setup, proxy, client)),
                ("max_pps", lambda: measure_max_pps(setup, proxy, client, hints.get("max_pps"))),
                (
                    "max_calls",
                    lambda: measure_max_calls(
                        setup,
                        proxy,
                        client,
                        hints.get("max_calls"),
                        out.get("max_pps") or hints.get("max_pps"),
                    ),
                ),
            ]
            for label, measure in steps:
                if label not in setup.figures:
                    continue
                if not proxy.alive():
                    out["errors"].append(f"{label}: {name} is no longer running:\n{proxy.log_tail()}")
                    break
                started = time.monotonic()
                try:
                    out |= measure()
                except Exception as exc:  # a broken measurement must not end the comparison
                    out["errors"].append(f"{label}: {type(exc).__name__}: {exc}")
                out.setdefault("timing_s", {})[label] = round(time.monotonic() - started, 1)
                _progress(f"  {name} rep {rep + 1} {label}: {_brief(out, label)}")
    finally:
        proxy.stop()
    return out


def _brief(out: dict[str, Any], label: str) -> str:
    keys = {
        "memory": ["memory_kib_per_call"],
        "ng": ["ng_cycles_per_s_seq", "ng_cycles_per_s_par", "ng_latency_p50_us"],
        "moderate": ["cpu_us_per_packet", "latency_p50_us", "latency_p99_us"],
        "max_pps": ["max_pps"],
        "max_calls": ["max_calls"],
    }[label]
    parts = [f"{k}={out[k]:.6g}" for k in keys if isinstance(out.get(k), int | float)]
    return ", ".join(parts) or "no figure (see errors/details)"


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        done = subprocess.run(["rtpengine", "--version"], capture_output=True, text=True, timeout=5)
        rtpengine = (done.stdout + done.stderr).strip().replace("Version: ", "rtpengine ")
    except (OSError, subprocess.TimeoutExpired):
        rtpengine = "rtpengine (version unknown)"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rtpengine": rtpengine,
        "loadavg_start": os.getloadavg(),
    }


def _call_store_line(method: dict[str, Any]) -> list[str]:
    """Whether Karl ran with its file call store; results older than this field say nothing."""
    if "call_store" not in method:
        return []
    state = "on (KARL_STATE_DIR, a fresh directory per start)" if method["call_store"] else "off"
    measured = method.get("proxies", ())
    floor = ""
    if proxies.FLOOR in measured:
        kept = "keeps no state on disk"
        if method["call_store"]:
            kept = "journals every change as Karl's store does"
        floor = f"; the Python floor (bench/floor_proxy.py) {kept}"
    if proxies.FLOOR_BARE in measured:
        floor += "; the bare Python floor keeps neither state nor call records"
    if proxies.PLAIN_PATH in measured:
        floor += "; the Python plain path journals and records as the floor does"
    return [f"Karl's call store: {state}; rtpengine without Redis{floor}."]


def plan_ports(plan: Plan, first_port: int) -> tuple[proxies.ProxyPorts, tuple[int, int]]:
    """A free RTP window for the proxy, a window for the endpoints, NG and HTTP ports; all < 32768."""
    rtp_size = 4 * plan.max_calls + 200
    rtp_min = procstat.free_window(rtp_size, first_port, 32768)
    endpoint_size = 2 * plan.max_calls + 400
    avoid = set(range(rtp_min, rtp_min + rtp_size))
    ep_lo = procstat.free_window(endpoint_size, 2048, 32768, avoid)
    avoid |= set(range(ep_lo, ep_lo + endpoint_size))
    singles = procstat.free_window(8, 2048, 32768, avoid)
    ports = proxies.ProxyPorts(
        ng_port=singles,
        rtp_min=rtp_min,
        rtp_max=rtp_min + rtp_size - 1,
        http_ports=(singles + 2, singles + 4, singles + 6),
    )
    return ports, (ep_lo, ep_lo + endpoint_size)


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = replace(plan, reps=args.reps)
    os.sched_setaffinity(0, {args.generator_core})
    if args.rt > 0:
        try:
            # Above the generator's processes (rt, rt + 1): its readings of the proxy's CPU time at
            # the start and end of the sending window must not wait behind a busy sender.
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.rt + 2))
        except PermissionError:
            _progress("no permission for real-time scheduling (CAP_SYS_NICE): running with --rt 0")
            args.rt = 0
    trees: dict[str, Any] = {"karl": proxies.tree_info(proxies.REPO)}
    if args.baseline_tree:
        # Before anything is measured: a tree that imports code from elsewhere would compare nothing.
        trees[proxies.BASELINE] = proxies.check_karl_tree(args.baseline_tree)
        _progress(f"{proxies.BASELINE}: {_describe_tree(trees[proxies.BASELINE])}, imports checked")
    ports, endpoint_ports = plan_ports(plan, args.first_port)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    log_dir = RESULTS_DIR / "logs" / stamp
    launch = proxies.Launch(
        core=args.proxy_core,
        realtime_priority=args.rt,
        media_ip=args.media_ip,
        state_root=log_dir / "state" if args.call_store else None,
    )
    endpoints = bind_endpoints(plan.moderate_calls, args.ip_a, args.ip_b, endpoint_ports)
    setup = Setup(
        plan,
        launch,
        ports,
        endpoints,
        args.generator_core,
        args.rt,
        log_dir,
        f"r{os.getpid()}",
        endpoint_ports,
        tuple(args.figures),
        {proxies.BASELINE: args.baseline_tree.resolve()} if args.baseline_tree else {},
    )
    started = time.monotonic()
    steal_before = procstat.steal_s()
    results: dict[str, Any] = {
        "stamp": stamp,
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(),
        "method": {
            "plan": asdict(plan),
            "figures": list(setup.figures),
            "proxy_core": args.proxy_core,
            "generator_core": args.generator_core,
            "realtime_priority": args.rt,
            "media_ip": args.media_ip,
            "endpoint_ips": [args.ip_a, args.ip_b],
            "ports": asdict(ports),
            "endpoint_ports": endpoint_ports,
            "source_trees": trees,
            "call_store": bool(args.call_store),
            "proxies": list(args.only or proxies.DEFAULT_PROXIES),
        },
        "proxies": {},
    }
    names: list[str] = args.only or [
        name for name in proxies.DEFAULT_PROXIES if name != proxies.BASELINE or args.baseline_tree
    ]
    entries: dict[str, dict[str, Any]] = {name: {"reps": [], "summary": {}} for name in names}
    hints: dict[str, dict[str, float]] = {name: {} for name in names}  # later ramps start near these
    results["proxies"] = entries
    try:
        baseline: TrafficResult | None = None
        if "moderate" in setup.figures:
            _progress(f"direct baseline ({plan.moderate_calls} calls, no proxy)")
            direct = CallSet(endpoints, f"{setup.run_tag}-direct")
            direct.add_direct(plan.moderate_calls)
            baseline = run_traffic(
                direct, _rtp_spec(setup, plan.moderate_s, 50.0, batch=False), _placement(setup, None)
            )
            direct.delete_all(None)
            results["baseline_direct"] = baseline.to_json()
        # Interleaved: every proxy's repetition 1, then every proxy's repetition 2, ... so that slow
        # drifts of the host's load fall on all proxies alike.
        for rep in range(plan.reps):
            for name in names:
                entry = entries[name]
                if "error" in entry:
                    continue
                _progress(f"{name}: repetition {rep + 1}/{plan.reps}")
                try:
                    measured = measure_rep(setup, name, rep, hints[name])
                except proxies.ProxyStartError as exc:
                    entry["error"] = str(exc)
                    _progress(f"  {name} not measured: {str(exc).splitlines()[0]}")
                    continue
                if baseline is not None:
                    _add_added_latency(measured, baseline)
                entry["reps"].append(measured)
                entry["summary"] = report.summarize(entry["reps"])
                for key in ("max_pps", "max_calls"):
                    if isinstance(measured.get(key), int | float):
                        hints[name][key] = measured[key]
    finally:
        endpoints.close()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["machine"]["steal_s_during_run"] = round(procstat.steal_s() - steal_before, 2)
    return results


def _describe_tree(info: dict[str, Any]) -> str:
    commit = (info.get("commit") or "unknown commit")[:12]
    changes = " with uncommitted changes" if info.get("uncommitted_changes") else ""
    if info.get("bench_uncommitted_changes"):
        changes += " (bench/ with uncommitted changes)"
    return f"{info['path']} at {commit}{changes}"


def _add_added_latency(measured: dict[str, Any], baseline: TrafficResult) -> None:
    for pct in ("p50", "p99"):
        proxied = measured.get(f"latency_{pct}_us")
        direct = getattr(baseline, f"latency_{pct}_us")
        if isinstance(proxied, int | float) and isinstance(direct, int | float):
            measured[f"added_latency_{pct}_us"] = proxied - direct


def write_results(results: dict[str, Any], plan: Plan) -> tuple[Path, Path, str]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{results['stamp']}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    summaries = {name: entry.get("summary", {}) for name, entry in results["proxies"].items()}
    labels = {
        "moderate_pps": f"{plan.moderate_calls * 100:,}",
        "inflight": plan.inflight,
        "memory_calls": f"{plan.memory_calls:,}",
    }
    table = report.markdown_table(summaries, labels)
    base = results.get("baseline_direct")
    machine = results["machine"]
    trees = results["method"].get("source_trees", {})
    sources = [
        f"{report.DISPLAY_NAMES[name]}: {_describe_tree(trees[name])}."
        for name in (proxies.BASELINE, "karl")
        if name in trees and name in results["proxies"]
    ]
    direct = (
        [
            f"Direct loopback baseline (no proxy, same load): p50 {base.get('latency_p50_us')} µs, "
            f"p99 {base.get('latency_p99_us')} µs."
        ]
        if base
        else []
    )
    order = " → ".join(results["proxies"])
    text = "\n".join(
        [
            f"# Side-by-side run {results['stamp']} ({results['mode']}, {plan.reps} repetition(s), medians)",
            "",
            f"Machine: {machine['cpu']}, {machine['cores']} cores, kernel {machine['kernel']}, "
            f"{machine['rtpengine']}; load average {machine['loadavg_start'][0]:.2f} at the start, "
            f"{machine['loadavg_end'][0]:.2f} at the end; "
            f"hypervisor steal {machine['steal_s_during_run']} s.",
            *sources,
            f"Each repetition measured {order}; figures: {', '.join(results['method']['figures'])}.",
            *_call_store_line(results["method"]),
            *direct,
            "",
            table,
            "",
            "Cells: median (min..max over the repetitions). '≥' marks a figure limited by the load",
            "generator in at least one repetition: a lower bound for the proxy.",
            "",
        ]
    )
    md_path = RESULTS_DIR / f"{results['stamp']}.md"
    md_path.write_text(text)
    return json_path, md_path, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one repetition, short steps (< 2 minutes)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=proxies.PROXY_NAMES,
        help="measure only these proxies, in this order (karl-baseline needs --baseline-tree; "
        "python-floor is measured only when named here)",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        metavar="DIR",
        help="also measure karl-baseline: Karl from the source tree DIR (a git worktree or clone of "
        "another commit; its core/ and medianode/ on PYTHONPATH), with the same interpreter, "
        "environment and command as karl; the table adds Karl / Karl baseline",
    )
    parser.add_argument(
        "--figures",
        nargs="+",
        choices=FIGURES,
        default=list(FIGURES),
        help="measure only these figures (default: all); e.g. 'memory ng' for the control plane "
        "alone, which takes seconds per proxy instead of minutes",
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument(
        "--call-store",
        action="store_true",
        help="Karl keeps its calls in the file call store (KARL_STATE_DIR, a fresh directory per start)",
    )
    parser.add_argument("--proxy-core", type=int, default=0)
    parser.add_argument("--generator-core", type=int, default=1)
    parser.add_argument(
        "--rt",
        type=int,
        default=1,
        help="SCHED_FIFO priority for proxy and generator, so that other programs on the host "
        "do not take their cores (0: normal scheduling)",
    )
    parser.add_argument(
        "--media-ip",
        default="127.0.0.200",
        help="the proxy's media address (an address no test uses, so that socket counters are ours)",
    )
    parser.add_argument("--ip-a", default="127.0.0.201", help="caller endpoints' address")
    parser.add_argument("--ip-b", default="127.0.0.202", help="callee endpoints' address")
    parser.add_argument("--first-port", type=int, default=8000, help="lowest port of the proxy's RTP range")
    args = parser.parse_args(argv)
    if args.only and proxies.BASELINE in args.only and not args.baseline_tree:
        parser.error(f"--only {proxies.BASELINE} needs --baseline-tree DIR")
    if args.only and len(set(args.only)) != len(args.only):
        parser.error("--only lists a proxy twice")
    # In the order FIGURES runs them, whatever order they were given in.
    args.figures = [figure for figure in FIGURES if figure in args.figures]

    # Turn SIGTERM into an exception so that the finally blocks stop the proxies.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = replace(plan, reps=args.reps)
    try:
        results = run(args)
    except proxies.ProxyStartError as exc:  # the baseline tree's check, before anything is measured
        print(f"not measured: {exc}", file=sys.stderr)
        return 2
    json_path, md_path, table = write_results(results, plan)
    print(table)
    print(f"\nresults: {json_path}\n         {md_path}  ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
