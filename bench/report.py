"""The figures of the side-by-side run: their definitions, medians, and the markdown table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    digits: int = 0


METRICS: tuple[Metric, ...] = (
    Metric("cpu_us_per_packet", "Proxy CPU per forwarded packet ({moderate_pps} pps)", "µs", False, 2),
    Metric("max_pps", "Max forwarded packets/s, one core", "packets/s", True),
    Metric("max_calls", "Concurrent G.711 calls at zero loss (50 pps each way)", "calls", True),
    Metric("latency_p50_us", "One-way latency through the proxy p50 ({moderate_pps} pps)", "µs", False),
    Metric("latency_p99_us", "One-way latency through the proxy p99 ({moderate_pps} pps)", "µs", False),
    Metric("added_latency_p50_us", "Added latency p50 (proxied minus direct)", "µs", False),
    Metric("added_latency_p99_us", "Added latency p99 (proxied minus direct)", "µs", False),
    Metric("ng_cycles_per_s_seq", "offer+answer+delete cycles/s, sequential", "cycles/s", True),
    Metric("ng_cycles_per_s_par", "offer+answer+delete cycles/s, {inflight} in flight", "cycles/s", True),
    Metric("ng_latency_p50_us", "NG request latency p50 (sequential)", "µs", False),
    Metric("ng_latency_p99_us", "NG request latency p99 (sequential)", "µs", False),
    Metric("memory_kib_per_call", "Memory per idle call (RSS, {memory_calls} calls)", "KiB", False, 1),
)


def summarize(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Median (and min/max) over repetitions of every metric some repetition measured.

    A value marked as limited by the generator in any repetition stays marked: the figure is then
    a lower bound for the proxy, not its limit.
    """
    summary: dict[str, Any] = {}
    for metric in METRICS:
        values = [rep[metric.key] for rep in reps if isinstance(rep.get(metric.key), int | float)]
        if not values:
            continue
        summary[metric.key] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "runs": len(values),
            "generator_limited": any(rep.get(f"{metric.key}_generator_limited") for rep in reps),
        }
    return summary


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def markdown_table(summaries: dict[str, dict[str, Any]], labels: dict[str, Any]) -> str:
    """Rows: figures; columns: rtpengine, Karl (median, and min..max over the repetitions), Karl/rtpengine."""
    lines = [
        "| Figure | rtpengine | Karl | Karl / rtpengine |",
        "|---|---:|---:|---:|",
    ]
    rtp = summaries.get("rtpengine", {})
    karl = summaries.get("karl", {})
    for metric in METRICS:
        cells = []
        for side in (rtp, karl):
            entry = side.get(metric.key)
            if entry is None:
                cells.append("not yet measured" if side is karl else "—")
            else:
                bound = "≥ " if entry["generator_limited"] else ""
                cell = f"{bound}{_fmt(entry['median'], metric.digits)}"
                if entry["runs"] > 1:
                    cell += f" ({_fmt(entry['min'], metric.digits)}..{_fmt(entry['max'], metric.digits)})"
                cells.append(cell)
        label = metric.label.format(**labels)
        ratio = _ratio(rtp.get(metric.key), karl.get(metric.key))
        lines.append(f"| {label} ({metric.unit}) | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def _ratio(rtp: dict[str, Any] | None, karl: dict[str, Any] | None) -> str:
    """Karl / rtpengine; a lower bound on one side turns the ratio into a bound."""
    if not rtp or not karl or not rtp["median"]:
        return "—"
    if rtp["generator_limited"] and karl["generator_limited"]:
        return "—"
    bound = "≤ " if rtp["generator_limited"] else "≥ " if karl["generator_limited"] else ""
    return f"{bound}{karl['median'] / rtp['median']:.2f}"
