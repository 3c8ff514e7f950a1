"""Families about calls and media: sessions, streams, packets, relay drops and the media port pool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from karl_core.ng.commands import label_value
from karl_medianode.operations.metrics.families import (
    counter,
    distribution_family,
    gauge,
    labelled_counter,
    labelled_gauge,
)
from karl_medianode.operations.metrics.media_ledger import DIRECTIONS, DirectionTotals

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode
    from karl_medianode.operations.metrics.state import NodeMetrics

# The engine's end reasons (engine.CallEnded.reason), as label values.
END_REASONS = (
    "deleted",
    "timeout",
    "silent_timeout",
    "final_timeout",
    "offer_timeout",
    "shutdown",
)

DROP_REASONS = ("blocked", "no_destination", "strict_source", "malformed_rtcp", "srtp", "internal_failure")


def session_families(node: MediaNode, metrics: NodeMetrics) -> Iterator[Metric]:
    engine = node.engine
    calls = list(engine.all_calls()) if engine is not None else []
    in_delete_delay = sum(1 for call in calls if call.state.deleted_at is not None)
    yield gauge(
        "karl_sessions_active",
        "Calls in progress (known calls minus those only waiting for their delete delay).",
        len(calls) - in_delete_delay,
    )
    yield gauge(
        "karl_ng_active_calls",
        "Calls the NG engine knows, including deleted calls still in their delete delay.",
        len(calls),
    )
    yield gauge(
        "karl_sessions_in_delete_delay",
        "Deleted calls kept for their delete delay so that late NG messages still find them.",
        in_delete_delay,
    )
    yield gauge(
        "karl_sessions_unanswered",
        "Calls offered but not answered yet (ringing, or waiting for their offer timeout).",
        sum(1 for call in calls if not call.state.answered),
    )
    yield gauge(
        "karl_sessions_max",
        "Concurrent calls allowed before new offers are refused (KARL_MAX_SESSIONS).",
        engine.settings.max_sessions if engine is not None else node.settings.engine.max_sessions,
    )
    c = engine.counters if engine is not None else None
    yield counter("karl_sessions_total", "Calls created since start.", c.managed_sessions if c else 0)
    yield counter(
        "karl_sessions_rejected_total",
        "New calls refused: session limit reached, node draining or shutting down.",
        c.rejected_sessions if c else 0,
    )
    ended = {reason: 0 for reason in END_REASONS}
    if c is not None:
        for reason, count in c.ended_by_reason.items():
            key = label_value(reason)
            ended[key] = ended.get(key, 0) + count
    yield labelled_counter(
        "karl_sessions_ended_total",
        "Calls ended, by reason.",
        ("reason",),
        [((reason,), count) for reason, count in ended.items()],
    )
    yield distribution_family(
        "karl_session_duration_seconds",
        "Duration of ended calls, from creation to delete (or timeout), in seconds.",
        metrics.durations,
    )


def media_families(node: MediaNode, metrics: NodeMetrics) -> Iterator[Metric]:
    live = metrics.ledger.scan(node.engine)
    closed = metrics.ledger.closed
    totals = {d: live.totals[d].plus(closed[d]) for d in DIRECTIONS}
    now_rtp = sum(live.totals[d].rtp_streams for d in DIRECTIONS)
    now_rtcp = sum(live.totals[d].rtcp_streams for d in DIRECTIONS)
    yield labelled_gauge(
        "karl_media_streams_open",
        "Media sockets relaying now, by kind (rtp: RTP or rtcp-mux socket, rtcp: dedicated RTCP socket).",
        ("kind",),
        [(("rtp",), now_rtp), (("rtcp",), now_rtcp)],
    )
    yield labelled_counter(
        "karl_media_streams_opened_total",
        "Media sockets opened since start, by kind.",
        ("kind",),
        [
            (("rtp",), sum(t.rtp_streams for t in totals.values())),
            (("rtcp",), sum(t.rtcp_streams for t in totals.values())),
        ],
    )
    yield labelled_gauge(
        "karl_media_streams_confirmed",
        "Open media sockets whose peer address is confirmed (latched), by kind.",
        ("kind",),
        [(("rtp",), live.confirmed_rtp), (("rtcp",), live.confirmed_rtcp)],
    )
    yield gauge(
        "karl_media_streams_blocked",
        "Open media sockets whose media is blocked (block media, or a call in its delete delay).",
        live.blocked_streams,
    )

    def by_kind_and_direction(rtp: str, rtcp: str) -> list[tuple[tuple[str, str], float]]:
        samples: list[tuple[tuple[str, str], float]] = []
        for d in DIRECTIONS:
            t: DirectionTotals = totals[d]
            samples.append((("rtp", d), getattr(t, rtp)))
            samples.append((("rtcp", d), getattr(t, rtcp)))
        return samples

    yield labelled_counter(
        "karl_media_packets_total",
        "Datagrams received on media sockets (dropped ones included), by kind and direction.",
        ("kind", "direction"),
        by_kind_and_direction("rtp_packets", "rtcp_packets"),
    )
    yield labelled_counter(
        "karl_media_bytes_total",
        "Bytes received on media sockets (UDP payload), by kind and direction.",
        ("kind", "direction"),
        by_kind_and_direction("rtp_bytes", "rtcp_bytes"),
    )
    yield labelled_counter(
        "karl_media_errors_total",
        "Relay errors (unknown payload type, strict-source and malformed-RTCP drops, failed sends, "
        "ICMP errors), by socket kind and direction of the socket they were counted on.",
        ("kind", "direction"),
        by_kind_and_direction("rtp_errors", "rtcp_errors"),
    )
    yield labelled_counter(
        "karl_media_rtp_lost_total",
        "RTP packets missing from the sequence numbers of what the parties sent when later ones arrived "
        "(loss before Karl; those that came late after all are in karl_media_rtp_late_total), by "
        "direction.",
        ("direction",),
        [((d,), totals[d].rtp_lost) for d in DIRECTIONS],
    )
    yield labelled_counter(
        "karl_media_rtp_late_total",
        "RTP packets that arrived out of order or twice, by direction.",
        ("direction",),
        [((d,), totals[d].rtp_late) for d in DIRECTIONS],
    )
    yield labelled_counter(
        "karl_media_malformed_total",
        "Datagrams on RTP sockets that are not RTP or RTCP at all (still forwarded, as rtpengine does).",
        ("direction",),
        [((d,), totals[d].malformed) for d in DIRECTIONS],
    )
    fields = {
        "blocked": "dropped_blocked",
        "no_destination": "dropped_no_destination",
        "strict_source": "dropped_source",
        "malformed_rtcp": "dropped_malformed",
        "srtp": "srtp_failures",
        "internal_failure": "failures",
    }
    yield labelled_counter(
        "karl_relay_dropped_total",
        "Datagrams the relay did not forward, by reason.",
        ("reason",),
        [((reason,), sum(getattr(totals[d], fields[reason]) for d in DIRECTIONS)) for reason in DROP_REASONS],
    )


def port_families(node: MediaNode) -> Iterator[Metric]:
    ports = node.ports
    yield gauge("karl_port_pool_ports_in_use", "Media ports held by calls.", ports.in_use)
    yield gauge(
        "karl_port_pool_ports_free",
        "Media ports of the range not held by Karl (another process may hold some).",
        ports.free,
    )
    yield gauge("karl_port_pool_ports_capacity", "Ports in the media port range.", ports.capacity)
    yield gauge(
        "karl_port_pool_usage_ratio",
        "Share of the media port range in use (0 to 1).",
        ports.in_use / ports.capacity if ports.capacity else 0.0,
    )
    engine = node.engine
    yield counter(
        "karl_port_pool_exhausted_total",
        "Offers/answers that failed because no media port (pair) was free ('Ran out of ports').",
        engine.counters.ports_exhausted if engine is not None else 0,
    )
    yield counter(
        "karl_call_changes_rolled_back_total",
        "Offers/answers that failed and changed nothing: the call kept its ports and media "
        "(a failed first offer leaves no call).",
        engine.counters.failed_changes if engine is not None else 0,
    )
    refused = (
        (
            ("srtp_termination", engine.counters.srtp_termination_refused),
            ("too_many_media", engine.counters.too_many_media),
            ("reply_too_large", engine.counters.replies_too_large),
        )
        if engine is not None
        else ()
    )
    yield labelled_counter(
        "karl_offers_refused_total",
        "Offers/answers Karl refused before building anything: SRTP termination asked for, more media "
        "than sessions.max_media, or a reply too large for a datagram.",
        ("reason",),
        [((reason,), n) for reason, n in refused],
    )
