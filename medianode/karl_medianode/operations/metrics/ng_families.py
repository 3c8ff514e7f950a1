"""Families about the NG control protocol (the SIP proxies' requests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import HistogramMetricFamily, Metric

from karl_core.ng.commands import label_value
from karl_core.ng.endpoint import EndpointCounters
from karl_core.ng.server import NgCounters
from karl_medianode.control.udp_drops import receive_drops
from karl_medianode.operations.metrics.families import counter, cumulative_buckets, gauge, labelled_counter

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode


def ng_families(node: MediaNode) -> Iterator[Metric]:
    ng = node.ng
    c = ng.counters if ng is not None else NgCounters()
    e = ng.endpoint.counters if ng is not None else EndpointCounters()
    yield counter(
        "karl_ng_datagrams_total",
        "Datagrams received on the NG socket (requests, retransmissions, garbage).",
        e.datagrams + c.refused,
    )
    yield labelled_counter(
        "karl_ng_commands_total",
        "NG requests processed (retransmissions answered from the cache not included), by command and "
        "result.",
        ("command", "result"),
        [
            ((label_value(command), label_value(result) or "none"), n)
            for (command, result), n in c.by_result.items()
        ],
    )
    duration = HistogramMetricFamily(
        "karl_ng_command_duration",
        "Time to process an NG request, in seconds, by command (from decoding to the reply).",
        labels=("command",),
    )
    for command, per_range in c.latency_counts.items():
        duration.add_metric(
            [label_value(command)],
            cumulative_buckets(c.latency_buckets, per_range),
            c.duration_by_command.get(command, 0.0),
        )
    yield duration
    yield counter(
        "karl_ng_errors_total",
        "NG requests answered with result 'error' (bad input, unknown call, refused offer, ...).",
        c.errors + e.empty,
    )
    yield counter(
        "karl_ng_internal_errors_total",
        "NG requests that hit a bug in Karl (answered with an internal error; the log has the trace).",
        c.internal_errors,
    )
    yield counter(
        "karl_ng_cookieless_dropped_total",
        "NG datagrams dropped without a reply because they had no cookie (not NG at all).",
        e.no_cookie,
    )
    sock = ng.transport.get_extra_info("socket") if ng is not None and ng.transport is not None else None
    yield counter(
        "karl_ng_receive_dropped_total",
        "NG datagrams the kernel dropped because the NG socket's receive buffer was full (a burst larger "
        "than it; requests are answered one at a time and nothing else queues). Proxies retransmit.",
        (receive_drops(sock) or 0) if sock is not None else 0,
    )
    yield counter(
        "karl_ng_refused_total",
        "NG datagrams dropped by admission control (source not allowed, rate limited or blocked).",
        c.refused,
    )
    yield counter(
        "karl_ng_reply_cache_hits_total",
        "Retransmitted NG requests answered from the reply cache (the proxy did not get our reply in time).",
        e.cache_hits,
    )
    yield gauge(
        "karl_ng_reply_cache_entries",
        "Replies kept for retransmissions (about a minute's worth of requests).",
        len(ng.cache) if ng is not None else 0,
    )
    yield gauge(
        "karl_ng_sources_seen",
        "Distinct source addresses that sent NG requests since start (the SIP proxies).",
        len(c.by_proxy),
    )
