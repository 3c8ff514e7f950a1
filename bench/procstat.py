"""Readings from /proc: process CPU time and memory, per-core busy time, UDP socket drops, used ports."""

from __future__ import annotations

import os
import resource

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    # The command name may contain spaces; fields are counted after its closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def process_run_delay_s(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (from schedstat).

    On a pinned process this is the time other tasks took from its core: an interference gauge.
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def children_cpu_s() -> float:
    """utime + stime of all reaped children of this process."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def steal_s() -> float:
    """CPU time the hypervisor gave to others while this VM wanted it (all cores)."""
    with open("/proc/stat") as f:
        values = f.readline().split()
    return int(values[8]) / _CLK_TCK


def ksoftirqd_pid(cpu: int) -> int | None:
    """The kernel thread that runs deferred network receive work for ``cpu`` (its time is not charged
    to the process whose packets it handles)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == f"ksoftirqd/{cpu}":
                    return int(entry)
        except OSError:
            continue
    return None


def _hex_ip(ip: str) -> str:
    # /proc/net/udp prints IPv4 addresses as the host-order hex of the network-order integer.
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"{d:02X}{c:02X}{b:02X}{a:02X}"


def udp_drops(ips: list[str]) -> dict[str, int]:
    """Sum of the per-socket receive-queue drop counters of all UDP sockets bound to each address."""
    wanted = {_hex_ip(ip): ip for ip in ips}
    drops = dict.fromkeys(ips, 0)
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            ip = wanted.get(fields[1].split(":")[0])
            if ip is not None:
                drops[ip] += int(fields[12])
    return drops


def softnet_dropped() -> int:
    """Packets dropped because a core's input backlog was full (all cores)."""
    total = 0
    with open("/proc/net/softnet_stat") as f:
        for line in f:
            total += int(line.split()[1], 16)
    return total


def used_ports() -> set[int]:
    """Local ports of every UDP and TCP socket on the host (any address)."""
    ports: set[int] = set()
    for table in ("udp", "udp6", "tcp", "tcp6"):
        try:
            with open(f"/proc/net/{table}") as f:
                next(f)
                for line in f:
                    ports.add(int(line.split()[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


def free_window(size: int, lo: int, hi: int, avoid: set[int] | None = None) -> int:
    """First even port ``p`` in [lo, hi) such that ``p .. p+size-1`` holds no port in use."""
    used = used_ports() | (avoid or set())
    start = lo + (lo % 2)
    while start + size <= hi:
        clash = [p for p in range(start, start + size) if p in used]
        if not clash:
            return start
        start = max(clash) + 1
        start += start % 2
    raise RuntimeError(f"no free window of {size} ports in [{lo}, {hi})")
