"""Families of call quality from RTCP reports (`engine.quality_totals`, plain integers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from karl_medianode.engine import JITTER_BUFFER_BOUNDS
from karl_medianode.operations.distribution import Distribution
from karl_medianode.operations.metrics.families import distribution_family, labelled_counter
from karl_medianode.quality import QualityTotals

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode


def quality_families(node: MediaNode) -> Iterator[Metric]:
    engine = node.engine
    totals = engine.quality_totals if engine is not None else QualityTotals()
    yield distribution_family(
        "karl_rtcp_rtt_seconds",
        "Round-trip time between Karl and a party, from its RTCP reports (LSR/DLSR), in seconds.",
        totals.rtt,
    )
    yield distribution_family(
        "karl_rtcp_jitter_seconds",
        "Interarrival jitter the parties reported in RTCP, in seconds.",
        totals.jitter,
    )
    yield distribution_family(
        "karl_rtcp_packet_loss_ratio",
        "Fraction lost the parties reported in RTCP (0 to 1), one observation per report block.",
        totals.loss,
    )
    yield distribution_family(
        "karl_rtcp_mos",
        "MOS (1 to 5) of RTCP report blocks that had the round-trip time of both legs, as rtpengine "
        "computes it.",
        totals.mos,
    )
    yield distribution_family(
        "karl_jitter_buffer_latency",
        "Delay each RTP packet spent in the jitter buffer, in seconds (empty while jitter_buffer is off).",
        engine.jitter_delays if engine is not None else Distribution(JITTER_BUFFER_BOUNDS),
    )
    yield labelled_counter(
        "karl_rtcp_reports_total",
        "RTCP sender (SR) and receiver (RR) reports and XR blocks parsed, by type.",
        ("type",),
        [((kind,), count) for kind, count in totals.reports.items()],
    )
