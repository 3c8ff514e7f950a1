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
    Metric("ng_cpu_us_per_cycle_seq", "Proxy CPU per cycle, sequential", "µs", False),
    Metric(
        "ng_cpu_us_per_cycle_par",
        "Proxy CPU per cycle, {inflight} in flight",
        "µs",
        False,
    ),
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


DISPLAY_NAMES = {
    "rtpengine": "rtpengine",
    "python-floor-bare": "Python floor, no store",
    "python-floor": "Python floor",
    "python-plain-path": "Python plain path",
    "karl-baseline": "Karl baseline",
    "karl": "Karl",
}


def markdown_table(summaries: dict[str, dict[str, Any]], labels: dict[str, Any]) -> str:
    """Rows: figures; columns: each proxy (median, and min..max over the repetitions), then ratios.

    The columns are the proxies of the run among rtpengine, the Python floor, Karl baseline and Karl,
    in that order; the ratios each of the others / rtpengine, Karl / Python floor and Karl / Karl
    baseline (after / before a change), as far as both sides were run. Figures no proxy has are left
    out.
    """
    names = [name for name in DISPLAY_NAMES if name in summaries]
    pairs = [(name, "rtpengine") for name in names if name != "rtpengine" and "rtpengine" in names]
    for before in ("python-floor", "karl-baseline"):
        if before in names and "karl" in names:
            pairs.append(("karl", before))
    header = [
        "Figure",
        *(DISPLAY_NAMES[name] for name in names),
        *(f"{DISPLAY_NAMES[num]} / {DISPLAY_NAMES[den]}" for num, den in pairs),
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for metric in METRICS:
        figures = {name: summaries.get(name, {}).get(metric.key) for name in names}
        if not any(figures.values()):
            continue  # not measured in this run (--figures)
        cells = [f"{metric.label.format(**labels)} ({metric.unit})"]
        cells += [_cell(entry, metric.digits) if entry else "—" for entry in figures.values()]
        cells += [_ratio(figures[num], figures[den]) for num, den in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(entry: dict[str, Any], digits: int) -> str:
    bound = "≥ " if entry["generator_limited"] else ""
    cell = f"{bound}{_fmt(entry['median'], digits)}"
    if entry["runs"] > 1:
        cell += f" ({_fmt(entry['min'], digits)}..{_fmt(entry['max'], digits)})"
    return cell


def _ratio(num: dict[str, Any] | None, den: dict[str, Any] | None) -> str:
    """num / den of the medians; a lower bound on one side turns the ratio into a bound."""
    if not den or not num or not den["median"]:
        return "—"
    if den["generator_limited"] and num["generator_limited"]:
        return "—"
    bound = "≤ " if den["generator_limited"] else "≥ " if num["generator_limited"] else ""
    return f"{bound}{num['median'] / den['median']:.2f}"
