"""The failover controller's Prometheus families (docs/metrics.md, "Failover controller"), read from
its counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from karl_operator.failover.controller import REASONS, FailoverController


class FailoverCollector(Collector):
    def __init__(self, controller: FailoverController) -> None:
        self.controller = controller

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        c = self.controller
        counters = c.counters
        yield GaugeMetricFamily(
            "karl_failover_leading",
            "1 while this controller leads (it alone moves calls); 0 while it stands by.",
            value=int(c.leads),
        )
        yield GaugeMetricFamily(
            "karl_failover_term",
            "The leader's term as this controller last saw it (a new leader gets a higher one).",
            value=c.leadership.term if c.leadership is not None else 0,
        )
        runs = CounterMetricFamily(
            "karl_failover_nodes",
            "Nodes whose calls this controller moved, by reason: failed (dead: lease gone for the "
            "restart grace and unreachable for a majority), handover (stopping, it asked).",
            labels=["reason"],
        )
        moved = CounterMetricFamily(
            "karl_failover_calls_moved",
            "Calls this controller moved to another node, by reason (as karl_failover_nodes_total).",
            labels=["reason"],
        )
        for reason in REASONS:
            runs.add_metric([reason], counters.failovers[reason])
            moved.add_metric([reason], counters.calls_moved[reason])
        yield runs
        yield moved
        yield CounterMetricFamily(
            "karl_failover_calls_ended",
            "Calls of a dead node that no other node had room for: they ended.",
            value=counters.calls_ended,
        )
        yield CounterMetricFamily(
            "karl_failover_moves_refused",
            "Moves Redis refused: the call had moved already (its node came back), or this controller no "
            "longer led.",
            value=counters.moves_refused,
        )
        yield GaugeMetricFamily(
            "karl_failover_last_duration_seconds",
            "How long the last failover took, from finding the node dead to the last call moved.",
            value=counters.last_failover_seconds,
        )
        members = GaugeMetricFamily(
            "karl_failover_members",
            "Registered media nodes as the last look at Redis found them, by state: live (lease held), "
            "absent (lease gone: dead, restarting or cut off).",
            labels=["state"],
        )
        absent = sum(1 for lease in c.members.values() if lease is None)
        members.add_metric(["live"], len(c.members) - absent)
        members.add_metric(["absent"], absent)
        yield members
        now = c.clock()
        gone = GaugeMetricFamily(
            "karl_failover_lease_gone_seconds",
            "Per registered node without a lease: seconds since this controller saw it gone (its calls "
            "move once this passes the restart grace and a majority cannot reach it).",
            labels=["node"],
        )
        for node_id, lease in sorted(c.members.items()):
            if lease is None:
                gone.add_metric([node_id], c.watch.absent_for(node_id, now) or 0.0)
        yield gone
        yield GaugeMetricFamily(
            "karl_failover_redis_age_seconds",
            "Seconds since this controller last read the fleet from Redis (it ticks four times a second).",
            value=0.0 if c.last_tick is None else max(0.0, now - c.last_tick),
        )
