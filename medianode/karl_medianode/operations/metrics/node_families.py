"""Families about the node itself: identity, lifecycle state, event loop, process resources."""

from __future__ import annotations

import gc
import platform
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from karl_core import __version__
from karl_medianode.operations.metrics.families import gauge, labelled_counter, labelled_gauge
from karl_medianode.operations.metrics.process_stats import read_process_stats

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode
    from karl_medianode.operations.metrics.state import NodeMetrics


def is_ready(node: MediaNode) -> bool:
    """What /ready reports: start-up complete, not draining or stopping, a port pair free, NG bound
    and, in a fleet, a valid lease."""
    engine, ng = node.engine, node.ng
    return (
        (node.fleet is None or node.fleet.lease_valid())
        and node.startup_complete
        and not node.draining
        and engine is not None
        and engine.accepting
        and node.ports.free >= 2
        and ng is not None
        and ng.transport is not None
        and not ng.transport.is_closing()
    )


def node_families(node: MediaNode, metrics: NodeMetrics) -> Iterator[Metric]:
    yield labelled_gauge(
        "karl_build_info",
        "Always 1; the labels say which Karl and which Python run this node.",
        ("version", "python"),
        [((__version__, platform.python_version()), 1)],
    )
    yield gauge("karl_node_uptime_seconds", "Seconds since this node started.", time.time() - node.started)
    yield gauge(
        "karl_node_ready",
        "1 when /ready would answer 200: started, not draining or stopping, media ports left, NG bound, "
        "and in a fleet a valid lease.",
        int(is_ready(node)),
    )
    yield gauge(
        "karl_node_draining", "1 while the node is drained (no new calls), else 0.", int(node.draining)
    )
    engine = node.engine
    yield gauge(
        "karl_node_accepting_calls",
        "1 while the call engine accepts new calls (0 when draining or shutting down).",
        int(engine is not None and engine.accepting),
    )
    yield gauge(
        "karl_event_loop_lag_seconds",
        "How late the event loop ran the last monitor tick (every 0.25 s); media waits that long.",
        node.loop_lag,
    )
    yield gauge(
        "karl_event_loop_lag_max_seconds",
        "Worst recent event-loop lag (decays by 5% per tick).",
        node.loop_lag_max,
    )
    yield gauge(
        "karl_event_loop_last_tick_age_seconds",
        "Seconds since the event-loop monitor last ran; grows without bound when the loop is wedged.",
        max(0.0, time.monotonic() - node.last_tick),
    )
    stats = read_process_stats()
    yield labelled_counter(
        "karl_process_cpu_seconds_total",
        "CPU time used by this process, by mode.",
        ("mode",),
        [(("user",), stats.cpu_user_seconds), (("system",), stats.cpu_system_seconds)],
    )
    yield gauge(
        "karl_process_resident_memory_bytes", "Resident memory of this process.", stats.resident_bytes
    )
    yield gauge(
        "karl_process_open_fds",
        "Open file descriptors (every media port is one socket).",
        stats.open_fds,
    )
    yield gauge("karl_process_max_fds", "Limit of open file descriptors (RLIMIT_NOFILE).", stats.max_fds)
    yield gauge(
        "karl_process_start_time_seconds",
        "When this process started, in seconds since the Unix epoch.",
        stats.start_time,
    )
    yield labelled_counter(
        "karl_python_gc_collections_total",
        "Garbage collections run by Python, by generation (each one pauses the event loop).",
        ("generation",),
        [((str(generation),), entry["collections"]) for generation, entry in enumerate(gc.get_stats())],
    )
    yield gauge(
        "karl_metrics_scrape_duration_seconds",
        "How long the previous scrape took to collect Karl's metrics (the event loop is busy meanwhile).",
        metrics.last_scrape_seconds,
    )
