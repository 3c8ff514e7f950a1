"""The `statistics` reply in rtpengine 10.5's layout, from the engine's plain counters and the NG
server's per-proxy ones (sans-IO: what the data plane counted is read through the engine)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from karl_core.ng.statistics import PROXY_COUNTERS, control_statistics, seconds_text
from karl_medianode.engine import CallEngine


def _mos(engine: CallEngine) -> dict[str, Any]:
    """rtpengine's MOS summary: one sample per RTCP report block that had a MOS."""
    totals = engine.quality_totals
    total, squares, samples = totals.mos.total, totals.mos_squares, totals.mos.count
    average = total / samples if samples else 0.0
    variance = squares / samples - average * average if samples else 0.0
    return {
        "mos_total": f"{total:.6f}",
        "mos2_total": f"{squares:.6f}",
        "mos_samples_total": samples,
        "mos_average": f"{average:.6f}",
        "mos_stddev": f"{max(0.0, variance) ** 0.5:.6f}",
    }


def relayed_totals(engine: CallEngine) -> tuple[int, int, int]:
    packets = engine.counters.closed_packets
    octets = engine.counters.closed_bytes
    errors = engine.counters.closed_errors
    for call in engine.all_calls():
        for stream in call.all_streams():
            seen = engine.reading(stream)
            packets += seen.packets
            octets += seen.bytes
            errors += seen.errors
    return packets, octets, errors


def interval_statistics() -> dict[str, Any]:
    """10.5's `intervalstatistics`: what it last reported to Graphite (per command: minimum, maximum
    and average processing delay, then minimum, maximum and average requests per second). 10.5 fills
    them only when it sends to a Graphite server (`--graphite`); Karl has no Graphite output, so, like
    10.5 without one, every value is zero."""
    commands = [command.value for _, command in PROXY_COUNTERS]
    interval: dict[str, Any] = {
        "totalcallsduration": seconds_text(0),
        "minmanagedsessions": 0,
        "maxmanagedsessions": 0,
    }
    for name in commands:
        for kind in ("min", "max", "avg"):
            interval[f"{kind}{name}delay"] = seconds_text(0)
    for name in commands:
        for kind in ("min", "max", "avg"):
            interval[f"{kind}{name}requestrate"] = "0"
    return interval


def statistics(
    engine: CallEngine, by_proxy: Mapping[str, Mapping[str, int]], uptime: float
) -> dict[str, Any]:
    """`by_proxy`: per proxy address, requests by command name and `error` (`NgCounters.by_proxy`);
    a proxy's mapping may carry `micros`, the time spent per command name in µs (`ProxyCounters`)."""
    c = engine.counters
    packets, octets, errors = relayed_totals(engine)
    avg = c.total_call_seconds / c.ended_calls if c.ended_calls else 0.0
    current = {
        "sessionsown": len(engine.all_calls()),
        "sessionsforeign": 0,
        "sessionstotal": len(engine.all_calls()),
        "transcodedmedia": 0,
        "packetrate_user": 0,
        "byterate_user": 0,
        "errorrate_user": 0,
        "packetrate_kernel": 0,
        "byterate_kernel": 0,
        "errorrate_kernel": 0,
        "packetrate": 0,
        "byterate": 0,
        "errorrate": 0,
        "media_userspace": sum(len(call.ports) for call in engine.all_calls()),
        "media_kernel": 0,
        "media_mixed": 0,
    }
    total = {
        "uptime": str(int(uptime)),
        "managedsessions": c.managed_sessions,
        "rejectedsessions": c.rejected_sessions,
        "timeoutsessions": c.timeout_sessions,
        "silenttimeoutsessions": c.silent_timeout_sessions,
        "finaltimeoutsessions": c.final_timeout_sessions,
        "offertimeoutsessions": c.offer_timeout_sessions,
        "regularterminatedsessions": c.regular_terminated,
        "forcedterminatedsessions": c.forced_terminated,
        "relayedpackets_user": packets,
        "relayedpacketerrors_user": errors,
        "relayedbytes_user": octets,
        "relayedpackets_kernel": 0,
        "relayedpacketerrors_kernel": 0,
        "relayedbytes_kernel": 0,
        "relayedpackets": packets,
        "relayedpacketerrors": errors,
        "relayedbytes": octets,
        "zerowaystreams": 0,
        "onewaystreams": 0,
        "avgcallduration": f"{avg:.6f}",
        "totalcallsduration": f"{c.total_call_seconds:.6f}",
        "totalcallsduration2": "0.000000",
        "totalcallsduration_stddev": "0.000000",
    }
    control = control_statistics(by_proxy)
    return {
        "currentstatistics": current,
        "totalstatistics": total,
        "intervalstatistics": interval_statistics(),
        "mos": _mos(engine),
        "controlstatistics": control,
        "interfaces": [],
        "transcoders": [],
    }
