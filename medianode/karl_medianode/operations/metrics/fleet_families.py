"""Families of a node's membership in a fleet (`node.fleet`, on with KARL_REDIS_ENABLED): its lease, the
calls it holds, requests it refused for ownership, and its round trips to Redis. They exist with zero
values on a single node, like the other optional parts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from karl_core.state.fleet_state import LATENCY_BUCKETS
from karl_medianode.operations.metrics.families import counter, gauge, histogram, labelled_counter

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode


def fleet_families(node: MediaNode) -> Iterator[Metric]:
    fleet = node.fleet
    c = fleet.fleet_counters if fleet is not None else None
    stats = fleet.state.stats if fleet is not None else None
    yield gauge(
        "karl_fleet_lease_valid",
        "1 while this node's lease in Redis is valid by its own clock (it may take new calls); 0 otherwise "
        "and on a single node.",
        int(fleet is not None and fleet.lease_valid()),
    )
    yield gauge(
        "karl_fleet_holding_over",
        "1 while Redis does not answer and the node goes on answering for the calls it holds past its "
        "lease (it takes no new calls).",
        int(fleet is not None and fleet.holding_over()),
    )
    yield gauge(
        "karl_fleet_calls_held", "Calls this node holds in the fleet.", len(fleet.owned) if fleet else 0
    )
    yield gauge(
        "karl_fleet_writes_queued",
        "Call-state writes waiting to go to Redis.",
        fleet.writer.queued if fleet else 0,
    )
    yield labelled_counter(
        "karl_fleet_lease_renewals_total",
        "Renewals of this node's lease in Redis, by result: ok, failed (Redis did not answer in time or "
        "answered an error).",
        ("result",),
        [(("ok",), c.lease_renewals if c else 0), (("failed",), c.lease_failures if c else 0)],
    )
    yield counter(
        "karl_fleet_lease_lost_total",
        "Renewals that found the lease gone: Redis lost its data, or this node was cut off past its TTL; "
        "the node then writes all its calls again.",
        c.lease_lost if c else 0,
    )
    yield counter(
        "karl_fleet_reasserted_calls_total",
        "Calls written again, whole, because their keys were gone from Redis: all the calls held when the "
        "lease was found gone (Redis lost its data, or the node was cut off past its TTL), and single "
        "calls whose keys expired.",
        c.reasserted if c else 0,
    )
    yield counter(
        "karl_fleet_fenced_calls_total",
        "Calls this node stopped answering for because another node holds them now.",
        c.fenced_calls if c else 0,
    )
    yield counter(
        "karl_fleet_calls_adopted_total",
        "Calls of a failed node that the failover controller moved to this node and it took up (restored "
        "on its own ports, relaying towards the parties' last addresses).",
        c.adopted if c else 0,
    )
    yield counter(
        "karl_fleet_adoptions_failed_total",
        "Calls moved to this node that it could not take up (no stored state, no free ports): they ended.",
        c.adoption_failed if c else 0,
    )
    peers = fleet.peers if fleet is not None else None
    yield gauge(
        "karl_fleet_peers",
        "The other registered members of the fleet, as Redis last said.",
        len(peers.members) if peers else 0,
    )
    yield gauge(
        "karl_fleet_peers_reachable",
        "Other registered members that answer this node's NG ping (probed every second).",
        sum(1 for member in peers.members if peers.reachable(member)) if peers else 0,
    )
    yield gauge(
        "karl_fleet_majority_reachable",
        "1 while this node reaches more than half of the other registered members (always 1 alone); 0: "
        "cut off from most of the fleet, it does not hold over through a Redis outage.",
        int(fleet is None or fleet.majority_reachable()),
    )
    webhook = fleet.webhook if fleet is not None else None
    yield labelled_counter(
        "karl_fleet_webhook_deliveries_total",
        "POSTs of failover events to KARL_FAILOVER_WEBHOOK_URL, by result: ok (2xx), failed (an error or "
        "another status: retried).",
        ("result",),
        [
            (("ok",), webhook.counters.delivered if webhook else 0),
            (("failed",), webhook.counters.failed_attempts if webhook else 0),
        ],
    )
    yield counter(
        "karl_fleet_webhook_dropped_total",
        "Failover events dropped undelivered because 10,000 were waiting already.",
        webhook.counters.dropped if webhook else 0,
    )
    yield gauge(
        "karl_fleet_webhook_queued",
        "Failover events waiting to be delivered (or retried).",
        webhook.queued if webhook else 0,
    )
    yield counter(
        "karl_fleet_cdrs_withheld_total",
        "Ended calls this node wrote no CDR for because another node holds them (that node writes it).",
        c.cdrs_withheld if c else 0,
    )
    yield labelled_counter(
        "karl_fleet_refused_requests_total",
        "NG requests refused for ownership, by reason: not_owner (another node holds the call, or this "
        "node's lease is not valid), state_unavailable (Redis could not say who holds it).",
        ("reason",),
        [
            (("not_owner",), c.not_owner if c else 0),
            (("state_unavailable",), c.state_unavailable if c else 0),
        ],
    )
    yield counter(
        "karl_fleet_redis_errors_total",
        "Round trips to Redis that failed or timed out.",
        stats.errors if stats else 0,
    )
    yield histogram(
        "karl_fleet_redis_latency_seconds",
        "Round-trip time of this node's Redis requests (lease, ownership, batched state writes).",
        LATENCY_BUCKETS,
        stats.latency_counts if stats else [0] * (len(LATENCY_BUCKETS) + 1),
        stats.latency_sum if stats else 0.0,
    )
