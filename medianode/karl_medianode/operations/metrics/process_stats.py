"""CPU, memory and file descriptors of this process, read from /proc at scrape time (Linux), with
portable fallbacks. Karl exports them under its own `karl_process_*` names."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

_IMPORTED = time.time()


@dataclass
class ProcessStats:
    cpu_user_seconds: float
    cpu_system_seconds: float
    resident_bytes: int
    open_fds: int
    max_fds: int
    start_time: float


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


_BOOT_TIME = _boot_time()
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = resource.getpagesize()


def _open_fds() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 0


def read_process_stats() -> ProcessStats:
    max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # the command name (field 2) may contain spaces and parentheses: split after its last ')'
        fields = stat[stat.rindex(b")") + 2 :].split()
        # fields[0] is field 3 of proc(5): utime = 14, stime = 15, starttime = 22, rss = 24
        utime, stime = int(fields[11]) / _TICKS, int(fields[12]) / _TICKS
        start = (_BOOT_TIME + int(fields[19]) / _TICKS) if _BOOT_TIME is not None else _IMPORTED
        rss = int(fields[21]) * _PAGE
    except (OSError, ValueError, IndexError):
        times = os.times()
        utime, stime = times.user, times.system
        start = _IMPORTED
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the peak: the best available
    return ProcessStats(utime, stime, rss, _open_fds(), max_fds, start)
