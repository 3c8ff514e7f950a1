"""Families of the WebRTC side of the media node: ICE on Karl's sockets (and, later, DTLS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from karl_medianode.engine.ice_sessions import IceTotals
from karl_medianode.operations.metrics.families import counter, gauge, labelled_counter

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode


def webrtc_families(node: MediaNode) -> Iterator[Metric]:
    engine = node.engine
    ice = engine.engine.ice if engine is not None else None
    totals = ice.totals if ice is not None else IceTotals()
    yield gauge(
        "karl_ice_agents",
        "Legs of calls on which Karl is the ICE agent now.",
        ice.agent_count() if ice is not None else 0,
    )
    yield counter(
        "karl_ice_checks_answered_total",
        "Authenticated STUN Binding requests (ICE connectivity and consent checks) Karl answered.",
        totals.requests,
    )
    yield counter(
        "karl_ice_stun_dropped_total",
        "STUN datagrams dropped on ICE legs: malformed, unknown ufrag, wrong MESSAGE-INTEGRITY, a "
        "response to no check of Karl's or from another address, or for a port no agent has.",
        totals.dropped,
    )
    yield counter(
        "karl_ice_role_conflicts_total",
        "ICE role conflicts (both sides controlling or both controlled), resolved by tie-breaker.",
        totals.role_conflicts,
    )
    yield labelled_counter(
        "karl_ice_outcomes_total",
        "ICE agents that got a working pair for every component (connected), or whose checks all "
        "failed or whose party stopped answering consent checks (failed).",
        ("result",),
        [(("connected",), totals.connected), (("failed",), totals.failed)],
    )
