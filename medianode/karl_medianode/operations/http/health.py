"""Health probes (no key needed): /health, /health/detail, /live, /ready, /startup.

The probes run on the node's own event loop, so answering at all proves the loop turns; /live therefore
also checks that the loop monitor ticked recently and that the loop was not stalled (lag).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from karl_medianode.node import MediaNode
from karl_medianode.operations.http.errors import json_response
from karl_medianode.operations.http.stats import PORT_POOL_CRITICAL, PORT_POOL_WARN, port_pool

NODE = web.AppKey("node", MediaNode)

#: The loop monitor ticks every 0.25 s: no tick for this long means the loop (or the monitor) is stuck.
LIVE_MAX_TICK_AGE = 2.0
#: A tick that came this late means the loop was stalled this long.
LIVE_MAX_LAG = 2.0
#: Lag above which /health/detail reports the event loop as degraded.
LAG_WARN = 0.1


def _ng_listener(node: MediaNode) -> dict[str, Any]:
    ng = node.ng
    bound = ng is not None and ng.transport is not None and not ng.transport.is_closing()
    return {
        "status": "UP" if bound else "DOWN",
        "address": node.settings.ng_address,
        "port": node.settings.ng_port,
        "bound": bound,
    }


def _port_pool(node: MediaNode) -> dict[str, Any]:
    pool = port_pool(node)
    return {
        "status": pool.status,
        "capacity": pool.capacity,
        "in_use": pool.in_use,
        "free": pool.free,
        "usage_ratio": round(pool.usage, 4),
        "warn_at": PORT_POOL_WARN,
        "critical_at": PORT_POOL_CRITICAL,
        "exhausted_total": pool.exhausted_total,
    }


def _event_loop(node: MediaNode, now: float) -> dict[str, Any]:
    tick_age = max(0.0, now - node.last_tick)
    if tick_age > LIVE_MAX_TICK_AGE or node.loop_lag > LIVE_MAX_LAG:
        status = "DOWN"
    elif node.loop_lag_max > LAG_WARN:
        status = "DEGRADED"
    else:
        status = "UP"
    return {
        "status": status,
        "lag_seconds": round(node.loop_lag, 6),
        "lag_max_seconds": round(node.loop_lag_max, 6),
        "last_tick_age_seconds": round(tick_age, 3),
        "warn_lag_seconds": LAG_WARN,
        "max_lag_seconds": LIVE_MAX_LAG,
    }


def _cdr(node: MediaNode) -> dict[str, Any]:
    counters = getattr(node.cdr, "counters", None)
    if counters is None:
        return {"status": "UNKNOWN"}
    db_up = getattr(counters, "db_up", None)
    pending = int(getattr(counters, "spool_pending", 0))
    return {
        # A database outage never blocks calls: records wait in the spool, so it only degrades.
        "status": "DEGRADED" if db_up is False else "UP",
        "database": "not configured" if db_up is None else ("up" if db_up else "down"),
        "records_total": int(getattr(counters, "records_total", 0)),
        "spool_pending": pending,
        "db_errors_total": int(getattr(counters, "db_errors_total", 0)),
    }


def components(node: MediaNode, now: float) -> dict[str, dict[str, Any]]:
    result = {
        "ng_listener": _ng_listener(node),
        "port_pool": _port_pool(node),
        "event_loop": _event_loop(node, now),
        "draining": {"status": "DRAINING" if node.draining else "UP", "draining": node.draining},
        "startup": {"status": "UP" if node.startup_complete else "STARTING"},
    }
    if node.cdr is not None:
        result["cdr"] = _cdr(node)
    result["redis"] = _redis(node)
    return result


def _redis(node: MediaNode) -> dict[str, Any]:
    fleet = node.fleet
    if fleet is None:
        return {"status": "NOT_CONFIGURED", "detail": "single-node mode: state is in memory"}
    stats = fleet.state.stats
    now = fleet.clock()
    valid = fleet.lease_valid()
    holding_over = fleet.holding_over()
    return {
        # DEGRADED while holding over: Redis is away, the calls held go on, no new ones come
        "status": "UP" if valid else "DEGRADED" if holding_over else "DOWN",
        "address": fleet.settings.describe(),
        "node_id": fleet.node_id,
        "boot_id": fleet.boot_id,
        "lease_valid": valid,
        "holding_over": holding_over,
        "lease_valid_for": round(max(0.0, fleet.lease.valid_until() - now), 3),
        "last_answer_age": None if stats.last_ok is None else round(now - stats.last_ok, 3),
        "last_error": stats.last_error,
        "calls_held": len(fleet.owned),
        "writes_queued": fleet.writer.queued,
    }


def overall(parts: dict[str, dict[str, Any]]) -> str:
    statuses = {part["status"] for part in parts.values()}
    if "DOWN" in statuses:
        return "DOWN"
    if statuses - {"UP", "NOT_CONFIGURED"}:
        return "DEGRADED"
    return "UP"


def liveness(node: MediaNode, now: float) -> tuple[bool, list[str]]:
    reasons = []
    tick_age = now - node.last_tick
    if tick_age > LIVE_MAX_TICK_AGE:
        reasons.append(f"the event-loop monitor last ticked {tick_age:.1f} s ago")
    if node.loop_lag > LIVE_MAX_LAG:
        reasons.append(f"the event loop was stalled for {node.loop_lag:.1f} s")
    return not reasons, reasons


def readiness(node: MediaNode) -> tuple[bool, list[str]]:
    reasons = []
    if not node.startup_complete:
        reasons.append("start-up has not completed")
    if node.draining:
        reasons.append("draining: not taking new calls")
    elif node.engine is not None and not node.engine.accepting:
        reasons.append("shutting down: not taking new calls")
    if not port_pool(node).has_free_pair:
        reasons.append("the media port pool has no free port pair")
    if not _ng_listener(node)["bound"]:
        reasons.append("the NG listener is not bound")
    if node.fleet is not None and not node.fleet.lease_valid():
        reasons.append("no valid lease in Redis: the fleet cannot place calls here")
    return not reasons, reasons


def _probe(ok: bool, reasons: list[str], **extra: Any) -> web.Response:
    body = {"status": "UP" if ok else "DOWN", **extra}
    if reasons:
        body["reasons"] = reasons
    return json_response(body, 200 if ok else 503)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "UP"})


async def health_detail(request: web.Request) -> web.Response:
    node = request.app[NODE]
    parts = components(node, time.monotonic())
    status = overall(parts)
    return json_response({"status": status, "components": parts}, 503 if status == "DOWN" else 200)


async def live(request: web.Request) -> web.Response:
    ok, reasons = liveness(request.app[NODE], time.monotonic())
    return _probe(ok, reasons)


async def ready(request: web.Request) -> web.Response:
    ok, reasons = readiness(request.app[NODE])
    return _probe(ok, reasons)


async def startup(request: web.Request) -> web.Response:
    node = request.app[NODE]
    ok = node.startup_complete
    return _probe(ok, [] if ok else ["start-up has not completed"])


def build_health_app(node: MediaNode) -> web.Application:
    app = web.Application(client_max_size=1024)
    app[NODE] = node
    for path, handler in (
        ("/health", health),
        ("/health/detail", health_detail),
        ("/live", live),
        ("/ready", ready),
        ("/startup", startup),
    ):
        app.router.add_get(path, handler)
    return app
