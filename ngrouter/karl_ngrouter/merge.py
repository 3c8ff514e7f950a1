"""`list` and `statistics` of a fleet: each node answers for itself, the router merges the answers into
what one big rtpengine would say. Pure functions over decoded replies.

Counters add up; `uptime` is the longest; averages (`avg…`, `average…`) are averaged over the nodes
that answered; per-proxy entries are merged by proxy (the router then puts its own per-proxy figures
in `controlstatistics`: the nodes only see routers); other text is the first node's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def merge_list(replies: Sequence[Mapping[str, Any]], limit: int) -> dict[str, Any]:
    calls: list[Any] = []
    for reply in replies:
        found = reply.get("calls")
        if isinstance(found, list):
            calls.extend(found)
    return {"result": "ok", "calls": calls[: max(0, limit)]}


def merge_statistics(replies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    parts = [reply["statistics"] for reply in replies if isinstance(reply.get("statistics"), dict)]
    return {"result": "ok", "statistics": _merge("", parts)}


def _decimals(text: str) -> int | None:
    """Digits after the point of a number written as text (0 for an integer); None: not a number."""
    whole, _, fraction = text.partition(".")
    if whole.lstrip("-").isdigit() and (not fraction or fraction.isdigit()):
        return len(fraction)
    return None


def _merge(key: str, values: list[Any]) -> Any:
    if not values:
        return None
    first = values[0]
    if all(isinstance(v, dict) for v in values):
        keys: list[str] = []
        for value in values:
            keys.extend(k for k in value if k not in keys)
        return {k: _merge(k, [v[k] for v in values if k in v]) for k in keys}
    if all(isinstance(v, list) for v in values):
        return _merge_lists(values)
    averaged = key.startswith(("avg", "average"))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if key == "uptime":
            return max(values)
        return round(sum(values) / len(values)) if averaged else sum(values)
    if all(isinstance(v, str) for v in values):
        decimals = [_decimals(v) for v in values]
        if all(d is not None for d in decimals):
            numbers = [float(v) for v in values]
            total = max(numbers) if key == "uptime" else sum(numbers)
            if averaged:
                total /= len(numbers)
            places = max(d for d in decimals if d is not None)
            return f"{total:.{places}f}"
    return first


def _merge_lists(values: list[list[Any]]) -> list[Any]:
    merged: list[Any] = []
    by_proxy: dict[str, list[Any]] = {}
    for value in values:
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("proxy"), str):
                by_proxy.setdefault(item["proxy"], []).append(item)
            else:
                merged.append(item)
    merged.extend(_merge("", entries) for entries in by_proxy.values())
    return merged
