"""The per-proxy control statistics of rtpengine 10.5's `statistics` reply (`controlstatistics`): what
each proxy asked, how often and for how long. Shared by the media node and the NG router, which
answers for its proxies in a fleet (the nodes behind it only see routers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .commands import Command

# rtpengine's short names of the per-proxy control counters, in its order (that of its commands).
PROXY_COUNTERS: list[tuple[str, Command]] = [
    ("ping", Command.PING),
    ("offer", Command.OFFER),
    ("answer", Command.ANSWER),
    ("delete", Command.DELETE),
    ("query", Command.QUERY),
    ("list", Command.LIST),
    ("startrec", Command.START_RECORDING),
    ("stoprec", Command.STOP_RECORDING),
    ("startfwd", Command.START_FORWARDING),
    ("stopfwd", Command.STOP_FORWARDING),
    ("blkdtmf", Command.BLOCK_DTMF),
    ("unblkdtmf", Command.UNBLOCK_DTMF),
    ("blkmedia", Command.BLOCK_MEDIA),
    ("unblkmedia", Command.UNBLOCK_MEDIA),
    ("playmedia", Command.PLAY_MEDIA),
    ("stopmedia", Command.STOP_MEDIA),
    ("playdtmf", Command.PLAY_DTMF),
    ("stats", Command.STATISTICS),
    ("slnmedia", Command.SILENCE_MEDIA),
    ("unslnmedia", Command.UNSILENCE_MEDIA),
    ("pub", Command.PUBLISH),
    ("subreq", Command.SUBSCRIBE_REQUEST),
    ("subans", Command.SUBSCRIBE_ANSWER),
    ("unsub", Command.UNSUBSCRIBE),
]


def seconds_text(micros: int) -> str:
    """A total time the way 10.5 prints its `timeval` sums: seconds, a dot, six digits of µs."""
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def control_statistics(by_proxy: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """`by_proxy`: per proxy address, requests by command name and `error` (its error replies); a
    proxy's mapping may carry `micros`, the time spent per command name in µs (`ProxyCounters`)."""
    proxies: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    for proxy, counts in by_proxy.items():
        entry: dict[str, Any] = {"proxy": proxy}
        micros: Mapping[str, int] = getattr(counts, "micros", {})
        for short, command in PROXY_COUNTERS:
            n = counts.get(command.value, 0)
            entry[f"{short}count"] = n
            entry[f"{short}duration"] = seconds_text(micros.get(command.value, 0))
            totals[f"total{short}count"] = totals.get(f"total{short}count", 0) + n
        entry["errorcount"] = counts.get("error", 0)
        proxies.append(entry)
    if not proxies:
        totals = {f"total{short}count": 0 for short, _ in PROXY_COUNTERS}
    return {"proxies": proxies, **totals}
