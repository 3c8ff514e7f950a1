"""Families of the WebRTC side of the media node: ICE and DTLS-SRTP on Karl's sockets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from karl_medianode.engine.dtls_sessions import DtlsTotals
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
        "karl_own_datagrams_unsent_total",
        "ICE checks and answers and DTLS records of Karl's own the kernel refused to send (no route to a "
        "candidate's address, another address family); not counted as errors of the stream.",
        engine.unsent_own_datagrams if engine is not None else 0,
    )
    yield counter(
        "karl_ice_role_conflicts_total",
        "ICE role conflicts (both sides controlling or both controlled), resolved by tie-breaker.",
        totals.role_conflicts,
    )
    dtls = engine.engine.dtls if engine is not None else None
    dtls_totals = dtls.totals if dtls is not None else DtlsTotals()
    yield labelled_counter(
        "karl_dtls_handshakes_total",
        "DTLS-SRTP handshakes Karl finished (connected: SRTP keyed) or that failed (no common profile, "
        "a certificate that matches no fingerprint of the party's SDP, a broken handshake).",
        ("result",),
        [(("connected",), dtls_totals.connected), (("failed",), dtls_totals.failed)],
    )
    yield counter(
        "karl_dtls_records_dropped_total",
        "DTLS records dropped: for no handshake of Karl's, unreadable, from another address than the "
        "party's handshake, or after a failed handshake.",
        dtls_totals.dropped,
    )
    yield labelled_counter(
        "karl_ice_outcomes_total",
        "ICE agents that got a working pair for every component (connected), or whose checks all "
        "failed or whose party stopped answering consent checks (failed).",
        ("result",),
        [(("connected",), totals.connected), (("failed",), totals.failed)],
    )
