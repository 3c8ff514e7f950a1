"""Families of the optional parts attached to the node: admission control (`node.admission`) and CDRs
(`node.cdr`). Each family exists with zero values when its part is off or not attached."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric

from karl_medianode.operations.metrics.families import counter, gauge, labelled_counter, labelled_gauge

if TYPE_CHECKING:
    from karl_medianode.node import MediaNode


def _count(obj: Any, name: str) -> int:
    value = getattr(obj, name, 0) if obj is not None else 0
    return int(value) if isinstance(value, int | float) else 0


def admission_families(node: MediaNode) -> Iterator[Metric]:
    admission = getattr(node, "admission", None)
    c = getattr(admission, "counters", None)
    yield counter(
        "karl_ng_not_allowed_total",
        "NG datagrams dropped because their source is not in the allow-list (KARL_NG_ALLOW).",
        _count(c, "ng_not_allowed_total"),
    )
    yield counter(
        "karl_ng_rate_limited_total",
        "NG datagrams dropped because their source exceeded its rate limit (KARL_NG_RATE_LIMIT).",
        _count(c, "ng_rate_limited_total"),
    )
    yield counter(
        "karl_api_rate_limited_total",
        "REST API requests refused with 429 because their source exceeded its rate limit.",
        _count(c, "api_rate_limited_total"),
    )
    yield counter(
        "karl_security_blocks_total",
        "Times a flooding source was blocked (for KARL_BLOCK_SECONDS).",
        _count(c, "blocks_total"),
    )
    blocked = 0
    blocked_sources = getattr(admission, "blocked_sources", None)
    if blocked_sources is not None:
        value = blocked_sources() if callable(blocked_sources) else blocked_sources
        blocked = int(value) if isinstance(value, int) else 0
    yield gauge("karl_security_blocked_sources", "Sources blocked right now.", blocked)
    yield counter(
        "karl_api_auth_failures_total",
        "REST API requests refused with 401 (missing or unknown API key).",
        _count(c, "api_auth_failures_total"),
    )
    requests: dict[tuple[str, str, int], int] = getattr(admission, "api_requests", None) or {}
    yield labelled_counter(
        "karl_api_requests_total",
        "REST API requests answered, by route template, method and status code.",
        ("route", "method", "status"),
        [((route, method, str(status)), n) for (route, method, status), n in sorted(requests.items())],
    )


def cdr_families(node: MediaNode) -> Iterator[Metric]:
    cdr = getattr(node, "cdr", None)
    c = getattr(cdr, "counters", None)
    yield counter(
        "karl_cdr_records_total",
        "Call detail records produced (one per ended call).",
        _count(c, "records_total"),
    )
    yield counter(
        "karl_cdr_file_written_total",
        "CDRs appended to the JSON-lines file (KARL_CDR_PATH).",
        _count(c, "file_written_total"),
    )
    yield counter(
        "karl_cdr_file_errors_total",
        "CDRs that could not be appended to the file (disk full, permissions).",
        _count(c, "file_errors_total"),
    )
    yield counter(
        "karl_cdr_db_written_total",
        "CDRs written to the MySQL/MariaDB database.",
        _count(c, "db_written_total"),
    )
    yield counter(
        "karl_cdr_db_errors_total",
        "Failed attempts to write CDRs to the database.",
        _count(c, "db_errors_total"),
    )
    yield counter(
        "karl_cdr_spooled_total",
        "CDRs put in the local spool because the database was unreachable.",
        _count(c, "spooled_total"),
    )
    yield counter(
        "karl_cdr_dropped_total",
        "CDRs lost before reaching the spool (queue full, spool unwritable); should stay 0.",
        _count(c, "dropped_total"),
    )
    yield gauge(
        "karl_cdr_spool_pending",
        "CDRs waiting in the spool for the database now.",
        _count(c, "spool_pending"),
    )
    db_up = getattr(c, "db_up", None) if c is not None else None
    yield labelled_gauge(
        "karl_cdr_db_up",
        "1 while the CDR database is reachable, 0 while it is not; no sample when no database is configured.",
        (),
        [] if db_up is None else [((), int(bool(db_up)))],
    )
