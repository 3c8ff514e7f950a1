"""Node-wide figures for `/api/v1/stats` and the health probes, read from the node's plain counters."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from karl_medianode.node import MediaNode
from karl_medianode.operations.node_stats import relayed_totals

#: Port pool usage at which /health/detail warns, and at which it calls the pool critical.
PORT_POOL_WARN = 0.80
PORT_POOL_CRITICAL = 0.95


@dataclass(frozen=True)
class PortPool:
    capacity: int
    in_use: int
    free: int
    exhausted_total: int

    @property
    def usage(self) -> float:
        return self.in_use / self.capacity if self.capacity else 1.0

    @property
    def has_free_pair(self) -> bool:
        """Room for at least one more RTP/RTCP port pair (ports held by other programs are unknown
        until a bind fails, so this can only be optimistic)."""
        return self.free >= 2

    @property
    def status(self) -> str:
        if not self.has_free_pair:
            return "DOWN"
        if self.usage >= PORT_POOL_CRITICAL:
            return "CRITICAL"
        return "WARN" if self.usage >= PORT_POOL_WARN else "UP"


def port_pool(node: MediaNode) -> PortPool:
    ports = node.ports
    exhausted = node.engine.counters.ports_exhausted if node.engine is not None else 0
    return PortPool(ports.capacity, ports.in_use, ports.free, exhausted)


def media_drops(node: MediaNode) -> int:
    """Media datagrams received and not forwarded, over the node's lifetime where counted."""
    engine = node.engine
    if engine is None:
        return 0
    # The engine may keep the drops of ended calls (a later addition); live calls are summed here.
    dropped = int(getattr(engine.counters, "closed_dropped", 0))
    for call in engine.all_calls():
        for s in engine.streams_of(call):
            dropped += (
                s.dropped_blocked
                + s.dropped_no_destination
                + s.dropped_source
                + s.dropped_malformed
                + s.srtp_failures
            )
    return dropped


def node_stats(node: MediaNode) -> dict[str, Any]:
    engine = node.engine
    assert engine is not None
    counters = engine.counters
    packets, octets, errors = relayed_totals(engine.engine)
    pool = port_pool(node)
    ng = node.ng.counters if node.ng is not None else None
    endpoint = node.ng.endpoint.counters if node.ng is not None else None
    active = engine.active_calls()
    admission = node.admission
    result: dict[str, Any] = {
        "active_sessions": active,
        "total_sessions": counters.managed_sessions,
        "packets_processed": packets,
        "packets_dropped": media_drops(node),
        "uptime_seconds": max(0.0, time.time() - node.started),
        "bytes_processed": octets,
        "packet_errors": errors,
        "node_id": node.config.node.id,
        "draining": node.draining,
        "accepting_calls": engine.accepting,
        "sessions": {
            "active": active,
            "deleting": len(engine.all_calls()) - active,
            "total": counters.managed_sessions,
            "rejected": counters.rejected_sessions,
            "ended": counters.ended_calls,
            "max": engine.settings.max_sessions,
        },
        "ports": {
            "min": node.ports.min_port,
            "max": node.ports.max_port,
            "capacity": pool.capacity,
            "in_use": pool.in_use,
            "free": pool.free,
            "exhausted_total": pool.exhausted_total,
        },
        "ng": {
            "datagrams": ng.refused + endpoint.datagrams if ng and endpoint else 0,
            "refused": ng.refused if ng else 0,
            "errors": ng.errors + endpoint.empty if ng and endpoint else 0,
            "commands": dict(ng.by_command) if ng else {},
        },
        "admission": None,
    }
    if admission is not None:
        c = admission.counters
        result["admission"] = {
            "ng_not_allowed": c.ng_not_allowed_total,
            "ng_rate_limited": c.ng_rate_limited_total,
            "api_rate_limited": c.api_rate_limited_total,
            "api_auth_failures": c.api_auth_failures_total,
            "blocks": c.blocks_total,
            "blocked_sources": admission.blocked_sources(),
        }
    return result
