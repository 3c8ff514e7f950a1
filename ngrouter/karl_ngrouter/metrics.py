"""The router's Prometheus families (docs/metrics.md, "NG router"), read from its counters at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from karl_core.ng.commands import label_value
from karl_core.state.fleet_state import LATENCY_BUCKETS
from karl_ngrouter.router import REFUSAL_REASONS, RETRY_REASONS

if TYPE_CHECKING:
    from karl_ngrouter.app import RouterApp


def _histogram(
    name: str, doc: str, bounds: tuple[float, ...], counts: list[int], total: float
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    cumulative, buckets = 0, []
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", sum(counts)))
    family.add_metric([], buckets, total)
    return family


class RouterCollector(Collector):
    def __init__(self, app: RouterApp) -> None:
        self.app = app

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        app = self.app
        router, ng = app.router, app.protocol
        requests = CounterMetricFamily(
            "karl_router_requests",
            "NG requests the router answered, by command and result (spelled as the node's "
            "karl_ng_commands_total: block_dtmf, load_limit; none: no reply was sent).",
            labels=["command", "result"],
        )
        if ng is not None:
            merged: Counter[tuple[str, str]] = Counter()
            for (command, result), n in ng.counters.by_result.items():
                merged[(label_value(command), label_value(result) or "none")] += n
            for labels, n in sorted(merged.items()):
                requests.add_metric(list(labels), n)
        yield requests
        for name, doc, counter in (
            (
                "karl_router_forwarded",
                "Requests for one call sent to the media node holding it, by node.",
                router.counters.forwarded,
            ),
            (
                "karl_router_placements",
                "New calls placed on a media node, by node.",
                router.counters.placements,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["node"])
            for node, n in sorted(counter.items()):
                family.add_metric([node], n)
            yield family
        for name, doc, reasons, counts in (
            (
                "karl_router_retries",
                "Requests sent again: not_owner, refused (node full or out of ports), timeout.",
                RETRY_REASONS,
                router.counters.retried,
            ),
            (
                "karl_router_refused",
                "Requests the router answered with an error of its own (or, for budget, with none), by why.",
                REFUSAL_REASONS,
                router.counters.refused,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["reason"])
            for reason in sorted(set(reasons) | set(counts)):  # every known reason, from zero
                family.add_metric([reason], counts[reason])
            yield family
        yield CounterMetricFamily(
            "karl_router_node_timeouts",
            "Requests a node did not answer in time.",
            value=router.counters.node_timeouts,
        )
        yield CounterMetricFamily(
            "karl_router_owner_cache_hits", "Calls found in the owner cache.", value=router.owners.hits
        )
        yield CounterMetricFamily(
            "karl_router_owner_cache_misses",
            "Calls looked up in Redis (not in the owner cache).",
            value=router.owners.misses,
        )
        yield GaugeMetricFamily(
            "karl_router_owner_cache_entries", "Calls in the owner cache.", value=len(router.owners)
        )
        stats = app.state.stats
        yield CounterMetricFamily("karl_router_redis_requests", "Round trips to Redis.", value=stats.requests)
        yield CounterMetricFamily(
            "karl_router_redis_errors", "Round trips to Redis that failed or timed out.", value=stats.errors
        )
        yield _histogram(
            "karl_router_redis_latency_seconds",
            "Round-trip time of the router's Redis requests.",
            LATENCY_BUCKETS,
            stats.latency_counts,
            stats.latency_sum,
        )
        nodes = GaugeMetricFamily(
            "karl_router_nodes", "Media nodes as this router sees them.", labels=["state"]
        )
        view = app.view
        nodes.add_metric(["registered"], len(view.members))
        nodes.add_metric(["live"], len(view.live()))
        nodes.add_metric(["answering"], sum(1 for s in view.live() if view.answering(s)))
        nodes.add_metric(["placeable"], len(view.ring.weights))
        yield nodes
        yield GaugeMetricFamily(
            "karl_router_redis_up",
            "1 while the router read the fleet from Redis within the last 2 s.",
            value=int(view.redis_reachable()),
        )
