"""RTP load generator for NG media proxies (rtpengine, Karl, anything that speaks NG).

It sets up N calls over NG (offer with a G.711 SDP, answer), gives each call two RTP endpoints
(UDP sockets on two loopback addresses), sends paced RTP through the proxy in both directions, and
reports packets sent/received per direction, loss, one-way latency (send time carried in the
payload) and, if given the proxy's pid, the proxy's CPU time per forwarded packet. Calls are deleted
at the end.

Honesty about the generator: it is Python too. It reports whether it kept its schedule
(``generator_limited``), how much CPU it used itself, and where packets were dropped — in the proxy's
socket queues or in the generator's own (``/proc/net/udp`` drop counters).

Run stand-alone, e.g.::

    python bench/loadgen.py --ng 127.0.0.1:2223 --calls 200 --duration 5
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import calls
import latency
import procstat
from ngclient import NGClient, Timed
from rtpworkers import Schedule, SendStream, receiver_main, sender_main

DEFAULT_IP_A = "127.0.0.201"
DEFAULT_IP_B = "127.0.0.202"
DEFAULT_ENDPOINT_PORTS = (4000, 10000)
_RCVBUF = 1 << 20


@dataclass
class Endpoints:
    """Pairs of bound UDP sockets: caller side (A) on one address, callee side (B) on another."""

    ip_a: str
    ip_b: str
    socks_a: list[socket.socket] = field(default_factory=list)
    socks_b: list[socket.socket] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.socks_a)

    def port(self, index: int) -> int:
        port: int = self.socks_a[index].getsockname()[1]
        return port

    def close(self) -> None:
        for sock in self.socks_a + self.socks_b:
            sock.close()
        self.socks_a.clear()
        self.socks_b.clear()


def bind_endpoints(
    count: int,
    ip_a: str = DEFAULT_IP_A,
    ip_b: str = DEFAULT_IP_B,
    ports: tuple[int, int] = DEFAULT_ENDPOINT_PORTS,
    endpoints: Endpoints | None = None,
) -> Endpoints:
    """Bind ``count`` more endpoint pairs on even ports (the same port number on both addresses)."""
    eps = endpoints if endpoints is not None else Endpoints(ip_a, ip_b)
    taken = {eps.port(i) for i in range(eps.count)}
    want = eps.count + count
    for port in range(ports[0] + ports[0] % 2, ports[1], 2):
        if eps.count >= want:
            return eps
        if port in taken:
            continue
        pair = []
        try:
            for ip in (eps.ip_a, eps.ip_b):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                pair.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.bind((ip, port))
        except OSError as exc:
            for sock in pair:
                sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        eps.socks_a.append(pair[0])
        eps.socks_b.append(pair[1])
    if eps.count < want:
        raise RuntimeError(f"only {eps.count} of {want} endpoint pairs could be bound in {ports}")
    return eps


@dataclass
class CallSet:
    """Calls whose media flows between ``endpoints``; ``dest_a[i]`` is where A of call i sends."""

    endpoints: Endpoints
    run_tag: str
    dest_a: list[tuple[str, int]] = field(default_factory=list)
    dest_b: list[tuple[str, int]] = field(default_factory=list)
    ids: list[calls.CallIds] = field(default_factory=list)
    setup_s: float = 0.0

    @property
    def count(self) -> int:
        return len(self.dest_a)

    def add_direct(self, count: int) -> None:
        """Calls without a proxy: A and B send to each other (the baseline for latency)."""
        eps = self.endpoints
        for i in range(self.count, self.count + count):
            self.dest_a.append((eps.ip_b, eps.port(i)))
            self.dest_b.append((eps.ip_a, eps.port(i)))

    def add_via_ng(self, client: NGClient, count: int, window: int = 32) -> None:
        """Set up ``count`` more calls through the proxy (offer, then answer), ``window`` in flight."""
        eps = self.endpoints
        first = self.count
        new_a: dict[int, tuple[str, int]] = {}
        new_b: dict[int, tuple[str, int]] = {}
        ids = [calls.call_ids(self.run_tag, i) for i in range(first, first + count)]

        def offers() -> Any:
            for k, cid in enumerate(ids):
                yield (k, "offer"), calls.offer(cid, eps.ip_a, eps.port(first + k))

        def on_reply(tag: tuple[int, str], timed: Timed) -> list[tuple[tuple[int, str], Any]]:
            k, kind = tag
            if kind == "offer":
                new_b[k] = calls.media_address(timed.reply)  # B sends to the offer's rewritten SDP
                return [((k, "answer"), calls.answer(ids[k], eps.ip_b, eps.port(first + k)))]
            new_a[k] = calls.media_address(timed.reply)  # A sends to the answer's rewritten SDP
            return []

        start = time.monotonic()
        client.pipeline(offers(), window, on_reply)
        self.setup_s += time.monotonic() - start
        for k in range(count):
            self.dest_a.append(new_a[k])
            self.dest_b.append(new_b[k])
            self.ids.append(ids[k])

    def truncate(self, client: NGClient | None, count: int, window: int = 32) -> None:
        """Keep the first ``count`` calls; delete the others on the proxy."""
        if client is not None:
            client.pipeline((((), calls.delete(cid)) for cid in self.ids[count:]), window)
        del self.ids[count:], self.dest_a[count:], self.dest_b[count:]

    def delete_all(self, client: NGClient | None, window: int = 32) -> None:
        self.truncate(client, 0, window)


@dataclass(frozen=True)
class TrafficSpec:
    duration_s: float
    pps_per_stream: float = 50.0
    payload_size: int = 172
    warmup_s: float = 0.5
    drain_s: float = 0.3
    senders: int = 2
    receivers: int = 1
    connect: bool = True
    recv_batch_s: float = 0.0  # > 0: fewer receiver wake-ups, for throughput runs (latency is off)
    realtime_priority: int = 0  # > 0: generator processes run SCHED_FIFO (see rtpworkers)


@dataclass(frozen=True)
class Placement:
    """Where the proxy and the generator run, so that their CPU time can be read."""

    proxy_pid: int | None = None
    proxy_ip: str | None = None  # the proxy's media address (its sockets' drop counters)
    proxy_core: int | None = None
    generator_core: int | None = None


@dataclass
class TrafficResult:
    calls: int
    streams: int
    pps_per_stream: float
    offered_pps: float
    duration_s: float
    sent: list[int]  # [A->B, B->A]
    received: list[int]
    lost: int
    loss_ratio: float
    achieved_send_pps: float
    forwarded_pps: float
    latency_p50_us: float | None
    latency_p99_us: float | None
    latency_p999_us: float | None
    latency_samples: int
    send_errors: int
    stale: int
    sender_max_lag_ms: float
    sender_finished_late_ms: float
    proxy_socket_drops: int
    generator_socket_drops: int
    backlog_drops: int
    # CPU seconds during the run. "softirqd" is the ksoftirqd thread of the core: deferred packet
    # work that the kernel does not charge to the process whose packets it is.
    proxy_cpu_s: float | None
    proxy_softirqd_s: float | None
    proxy_cpu_util: float | None  # (proxy + softirqd) CPU seconds per second while the senders run
    proxy_cpu_us_per_packet: float | None  # (proxy + softirqd) / packets forwarded
    proxy_wait_ms: float | None  # time the proxy was runnable but another task had its core
    generator_cpu_s: float
    generator_cpu_util: float
    generator_sender_cpu_s: float
    generator_receiver_cpu_s: float
    generator_limited: bool
    generator_limit_reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _CpuMeter:
    """CPU seconds of the proxy, the generator (this process and its children) and their cores."""

    def __init__(self, where: Placement) -> None:
        self.where = where
        self.proxy_softirqd = (
            procstat.ksoftirqd_pid(where.proxy_core) if where.proxy_core is not None else None
        )
        self.gen_softirqd = (
            procstat.ksoftirqd_pid(where.generator_core) if where.generator_core is not None else None
        )

    def read_proxy(self) -> float | None:
        """CPU seconds of the proxy and its core's softirq thread so far."""
        if self.where.proxy_pid is None:
            return None
        total: float = procstat.process_cpu_s(self.where.proxy_pid)
        if self.proxy_softirqd is not None:
            total += procstat.process_cpu_s(self.proxy_softirqd)
        return total

    def read(self) -> dict[str, float]:
        w = self.where
        values = {"gen": procstat.children_cpu_s() + procstat.self_cpu_s()}
        if w.proxy_pid is not None:
            values["proxy"] = procstat.process_cpu_s(w.proxy_pid)
            values["proxy_wait"] = procstat.process_run_delay_s(w.proxy_pid)
        if self.proxy_softirqd is not None:
            values["proxy_softirqd"] = procstat.process_cpu_s(self.proxy_softirqd)
        if self.gen_softirqd is not None:
            values["gen_softirqd"] = procstat.process_cpu_s(self.gen_softirqd)
        return values


def _sleep_until(monotonic_ns: int) -> None:
    delay = (monotonic_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def run_traffic(call_set: CallSet, spec: TrafficSpec, where: Placement | None = None) -> TrafficResult:
    """Send paced RTP over every call of ``call_set`` for ``spec.duration_s`` and measure."""
    where = where or Placement()
    if call_set.count == 0:
        raise ValueError("no calls to send over")
    eps = call_set.endpoints
    n = call_set.count
    for i in range(n):
        if spec.connect:
            eps.socks_a[i].connect(call_set.dest_a[i])
            eps.socks_b[i].connect(call_set.dest_b[i])
    ctx = multiprocessing.get_context("fork")
    senders = max(1, min(spec.senders, n))
    receivers = max(1, min(spec.receivers, n))
    send_shares: list[list[SendStream]] = [[] for _ in range(senders)]
    recv_shares: list[list[socket.socket]] = [[] for _ in range(receivers)]
    for i in range(n):
        for sock, dest, sid in (
            (eps.socks_a[i], call_set.dest_a[i], 2 * i),
            (eps.socks_b[i], call_set.dest_b[i], 2 * i + 1),
        ):
            send_shares[i % senders].append(SendStream(sock, None if spec.connect else dest, sid))
        recv_shares[i % receivers].extend((eps.socks_a[i], eps.socks_b[i]))

    drop_ips = [eps.ip_a, eps.ip_b] + ([where.proxy_ip] if where.proxy_ip else [])
    drops_before = procstat.udp_drops(drop_ips)
    backlog_before = procstat.softnet_dropped()
    meter = _CpuMeter(where)
    cpu_before = meter.read()

    t0 = time.monotonic_ns() + 150_000_000
    end = t0 + int(spec.duration_s * 1e9)
    schedule = Schedule(t0, end, spec.pps_per_stream, spec.payload_size, spec.realtime_priority)
    senders_done = ctx.Value("q", 0)
    recv_procs = []
    recv_pipes: list[Connection] = []
    child_ends: list[Connection] = []
    for share in recv_shares:
        parent_end, child_end = ctx.Pipe(duplex=False)
        args = (
            share,
            schedule,
            t0 + int(spec.warmup_s * 1e9),
            int(spec.drain_s * 1e9),
            senders_done,
            spec.recv_batch_s,
            child_end,
        )
        child_ends.append(child_end)
        recv_procs.append(ctx.Process(target=receiver_main, args=args))
        recv_pipes.append(parent_end)
    send_procs = []
    send_pipes: list[Connection] = []
    for send_share in send_shares:
        parent_end, child_end = ctx.Pipe(duplex=False)
        send_procs.append(ctx.Process(target=sender_main, args=(send_share, schedule, child_end)))
        child_ends.append(child_end)
        send_pipes.append(parent_end)
    for proc in recv_procs + send_procs:
        proc.daemon = True  # never outlive the generator
        proc.start()
    for child_end in child_ends:
        child_end.close()  # the children hold theirs: a child's death now shows up as EOF
    try:
        # The proxy's share of its core while the senders run (not counting start and drain).
        _sleep_until(t0)
        cpu_at_t0, read_t0 = meter.read_proxy(), time.monotonic()
        _sleep_until(end)
        cpu_at_end, read_end = meter.read_proxy(), time.monotonic()
        send_reports = [pipe.recv() for pipe in send_pipes]
        senders_done.value = time.monotonic_ns()
        recv_reports = [pipe.recv() for pipe in recv_pipes]
    except EOFError:
        for proc in recv_procs + send_procs:
            proc.terminate()
        raise RuntimeError("a load generator process died (see its traceback above)") from None
    finally:
        for proc in recv_procs + send_procs:
            proc.join()

    cpu_after = meter.read()
    cpu = {key: cpu_after[key] - cpu_before[key] for key in cpu_before}
    drops_after = procstat.udp_drops(drop_ips)
    backlog = procstat.softnet_dropped() - backlog_before

    sent = [sum(r["sent"][d] for r in send_reports) for d in (0, 1)]
    received = [sum(r["received"][d] for r in recv_reports) for d in (0, 1)]
    hist = latency.merge(r["latency"] for r in recv_reports)
    total_sent = sum(sent)
    total_received = sum(received)
    lost = max(0, total_sent - total_received)
    active_s = max(r["active_s"] for r in send_reports)
    offered = 2 * n * spec.pps_per_stream
    achieved = total_sent / active_s if active_s > 0 else 0.0
    gen_drops = sum(drops_after[ip] - drops_before[ip] for ip in (eps.ip_a, eps.ip_b))
    proxy_drops = drops_after[where.proxy_ip] - drops_before[where.proxy_ip] if where.proxy_ip else 0
    finished_late = max(r["finished_late_ms"] for r in send_reports)

    proxy_s = cpu.get("proxy")
    proxy_total = proxy_s + cpu.get("proxy_softirqd", 0.0) if proxy_s is not None else None
    gen_total = cpu["gen"] + cpu.get("gen_softirqd", 0.0)

    sending_util = (
        (cpu_at_end - cpu_at_t0) / (read_end - read_t0)
        if cpu_at_t0 is not None and cpu_at_end is not None
        else None
    )

    reasons = []
    if achieved < 0.98 * offered:  # lateness at the end counts here too: active_s includes it
        reasons.append(f"sent {achieved:.0f} of {offered:.0f} pps offered")
    if gen_drops > 0:
        reasons.append(f"{gen_drops} packets dropped in the generator's own socket queues")

    return TrafficResult(
        calls=n,
        streams=2 * n,
        pps_per_stream=spec.pps_per_stream,
        offered_pps=offered,
        duration_s=spec.duration_s,
        sent=sent,
        received=received,
        lost=lost,
        loss_ratio=lost / total_sent if total_sent else 0.0,
        achieved_send_pps=achieved,
        forwarded_pps=total_received / active_s if active_s > 0 else 0.0,
        latency_p50_us=latency.percentile_us(hist, 0.50),
        latency_p99_us=latency.percentile_us(hist, 0.99),
        latency_p999_us=latency.percentile_us(hist, 0.999),
        latency_samples=latency.sample_count(hist),
        send_errors=sum(r["send_errors"] for r in send_reports),
        stale=sum(r["stale"] for r in recv_reports),
        sender_max_lag_ms=max(r["max_lag_ms"] for r in send_reports),
        sender_finished_late_ms=finished_late,
        proxy_socket_drops=proxy_drops,
        generator_socket_drops=gen_drops,
        backlog_drops=backlog,
        proxy_cpu_s=proxy_s,
        proxy_softirqd_s=cpu.get("proxy_softirqd"),
        proxy_cpu_util=sending_util,
        proxy_cpu_us_per_packet=(
            proxy_total * 1e6 / total_received if proxy_total is not None and total_received else None
        ),
        proxy_wait_ms=cpu["proxy_wait"] * 1000 if "proxy_wait" in cpu else None,
        generator_cpu_s=gen_total,
        generator_cpu_util=gen_total / active_s if active_s > 0 else 0.0,
        generator_sender_cpu_s=sum(r["cpu_s"] for r in send_reports),
        generator_receiver_cpu_s=sum(r["cpu_s"] for r in recv_reports),
        generator_limited=bool(reasons),
        generator_limit_reasons=reasons,
    )


def _parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--ng", help="NG server HOST:PORT to set calls up through")
    target.add_argument("--direct", action="store_true", help="no proxy: endpoints send to each other")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of traffic")
    parser.add_argument("--pps", type=float, default=50.0, help="packets/s per stream (per direction)")
    parser.add_argument("--payload-size", type=int, default=172, help="UDP payload bytes (RTP incl.)")
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--receivers", type=int, default=1, help="receiver processes")
    parser.add_argument("--recv-batch-us", type=float, default=0.0, help="receiver nap after each poll")
    parser.add_argument("--rt", type=int, default=0, help="SCHED_FIFO priority for the generator (0: off)")
    parser.add_argument("--no-connect", action="store_true", help="use sendto on unconnected sockets")
    parser.add_argument("--proxy-pid", type=int, help="measure this process's CPU time")
    parser.add_argument("--proxy-ip", help="the proxy's media address (for its socket drop counters)")
    parser.add_argument("--proxy-core", type=int, help="the core the proxy is pinned to")
    parser.add_argument("--generator-core", type=int, help="pin the generator to this core")
    parser.add_argument("--ip-a", default=DEFAULT_IP_A)
    parser.add_argument("--ip-b", default=DEFAULT_IP_B)
    parser.add_argument("--ports", default=f"{DEFAULT_ENDPOINT_PORTS[0]}-{DEFAULT_ENDPOINT_PORTS[1]}")
    args = parser.parse_args(argv)

    if args.generator_core is not None:
        os.sched_setaffinity(0, {args.generator_core})
    lo, hi = (int(p) for p in args.ports.split("-"))
    eps = bind_endpoints(args.calls, args.ip_a, args.ip_b, (lo, hi))
    call_set = CallSet(eps, run_tag=f"lg{os.getpid()}")
    client = NGClient(*_parse_hostport(args.ng)) if args.ng else None
    try:
        if client is None:
            call_set.add_direct(args.calls)
        else:
            call_set.add_via_ng(client, args.calls)
        spec = TrafficSpec(
            duration_s=args.duration,
            pps_per_stream=args.pps,
            payload_size=args.payload_size,
            senders=args.senders,
            receivers=args.receivers,
            connect=not args.no_connect,
            recv_batch_s=args.recv_batch_us / 1e6,
            realtime_priority=args.rt,
        )
        where = Placement(args.proxy_pid, args.proxy_ip, args.proxy_core, args.generator_core)
        result = run_traffic(call_set, spec, where)
        out = result.to_json()
        out["setup_s"] = call_set.setup_s
        json.dump(out, sys.stdout, indent=2)
        print()
    finally:
        if client is not None:
            call_set.delete_all(client)
            client.close()
        eps.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
