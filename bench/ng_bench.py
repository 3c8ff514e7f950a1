"""Control-plane benchmark: offer + answer + delete cycles per second over NG.

Each cycle is one call's life without media: ``offer`` (G.711 SDP), ``answer``, ``delete``
(delete-delay 0). Run with one request in flight (sequential: the latency a lone SIP proxy sees) and
with K calls in flight (throughput under concurrency). Reports cycles/s and per-request latency
percentiles; with the server's pid also its CPU time per cycle.

    python bench/ng_bench.py --ng 127.0.0.1:2223 --seconds 3 --inflight 1 16
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import calls
import procstat
from ngclient import BValue, NGClient, Timed

_Tag = tuple[calls.CallIds, str, int]  # call, request kind, call number


@dataclass
class NgBenchResult:
    inflight: int
    seconds: float
    cycles: int
    cycles_per_s: float
    requests: int
    errors: int
    first_error: str | None
    latency_p50_us: float
    latency_p99_us: float
    proxy_cpu_us_per_cycle: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index] / 1000.0


def run_cycles(
    client: NGClient, seconds: float, inflight: int, run_tag: str, proxy_pid: int | None = None
) -> NgBenchResult:
    """Start new calls for ``seconds`` keeping ``inflight`` calls in progress; finish those started."""
    ip_a, ip_b = "198.51.100.1", "198.51.100.2"  # documentation addresses: no media is sent
    latencies: list[int] = []
    errors = 0
    first_error: str | None = None
    cycles = 0

    def new_calls() -> Iterator[tuple[_Tag, dict[str, BValue]]]:
        for n in itertools.count():
            ids = calls.call_ids(run_tag, n)
            yield (ids, "offer", n), calls.offer(ids, ip_a, 20000 + 2 * (n % 5000))

    def on_reply(tag: _Tag, timed: Timed) -> list[tuple[_Tag, dict[str, BValue]]]:
        nonlocal errors, first_error, cycles
        ids, kind, n = tag
        latencies.append(timed.latency_ns)
        if timed.reply.get("result") != "ok":
            errors += 1
            if first_error is None:
                first_error = f"{kind}: {timed.reply.get('error-reason', timed.reply)!r}"
            if kind == "offer":
                return []  # nothing was created; the cycle ends here
        if kind == "offer":
            return [((ids, "answer", n), calls.answer(ids, ip_b, 40000 + 2 * (n % 5000)))]
        if kind == "answer":
            return [((ids, "delete", n), calls.delete(ids))]
        cycles += 1
        return []

    cpu_before = procstat.process_cpu_s(proxy_pid) if proxy_pid is not None else None
    start = time.monotonic()
    requests = client.pipeline(new_calls(), inflight, on_reply, deadline=start + seconds)
    elapsed = time.monotonic() - start
    cpu = procstat.process_cpu_s(proxy_pid) - cpu_before if proxy_pid and cpu_before is not None else None
    latencies.sort()
    return NgBenchResult(
        inflight=inflight,
        seconds=elapsed,
        cycles=cycles,
        cycles_per_s=cycles / elapsed if elapsed > 0 else 0.0,
        requests=requests,
        errors=errors,
        first_error=first_error,
        latency_p50_us=_percentile(latencies, 0.50),
        latency_p99_us=_percentile(latencies, 0.99),
        proxy_cpu_us_per_cycle=cpu * 1e6 / cycles if cpu is not None and cycles else None,
    )


def open_idle_calls(client: NGClient, count: int, run_tag: str, window: int = 32) -> list[calls.CallIds]:
    """Set up ``count`` answered calls that carry no media (for memory per call)."""
    opened: list[calls.CallIds] = []
    failures: list[str] = []

    def offers() -> Iterator[tuple[_Tag, dict[str, BValue]]]:
        for n in range(count):
            ids = calls.call_ids(run_tag, n)
            yield (ids, "offer", n), calls.offer(ids, "198.51.100.1", 20000 + 2 * n)

    def on_reply(tag: _Tag, timed: Timed) -> list[tuple[_Tag, dict[str, BValue]]]:
        ids, kind, n = tag
        if timed.reply.get("result") != "ok":
            failures.append(f"{kind}: {timed.reply.get('error-reason', timed.reply)!r}")
            return []
        if kind == "offer":
            return [((ids, "answer", n), calls.answer(ids, "198.51.100.2", 20000 + 2 * n))]
        opened.append(ids)
        return []

    client.pipeline(offers(), window, on_reply)
    if failures:
        close_calls(client, opened)
        raise RuntimeError(f"{len(failures)} of {count} calls failed, first: {failures[0]}")
    return opened


def close_calls(client: NGClient, ids: list[calls.CallIds], window: int = 32) -> None:
    client.pipeline((((), calls.delete(cid)) for cid in ids), window)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ng", required=True, help="NG server HOST:PORT")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument("--inflight", type=int, nargs="+", default=[1, 16], help="calls in flight")
    parser.add_argument("--proxy-pid", type=int, help="measure this process's CPU time per cycle")
    parser.add_argument("--core", type=int, help="pin this client to a core")
    args = parser.parse_args(argv)
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    host, _, port = args.ng.rpartition(":")
    results = []
    with NGClient(host or "127.0.0.1", int(port)) as client:
        for k in args.inflight:
            tag = f"ngb{os.getpid()}k{k}"
            results.append(run_cycles(client, args.seconds, k, tag, args.proxy_pid).to_json())
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
