"""Health probes and /metrics against a running node: no key needed, readiness follows drain and the port
pool, liveness follows the event loop."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from tests.medianode.test_http_support import (
    NgSource,
    NodeThread,
    get,
    http,
    ng_address,
    offer,
    running_node,
    udp_party,
)

from karl_testkit import wait_for

KEYS = "read:reader-key-0123456789abcdef,operate:operator-key-0123456789abcdef"


@pytest.fixture(scope="module")
def runner() -> Iterator[NodeThread]:
    # 4 media ports: one call (two RTP/RTCP pairs) fills the pool. Keys on: probes still need none.
    with running_node(media_ip="127.0.0.2", ports=4, KARL_API_KEYS=KEYS) as node:
        yield node


def probe(runner: NodeThread, path: str) -> tuple[int, dict[str, object]]:
    reply = get(runner.url("health", path))
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    return reply.status, reply.json()


def test_all_probes_answer_without_a_key(runner: NodeThread) -> None:
    assert probe(runner, "/health") == (200, {"status": "UP"})
    for path in ("/live", "/ready", "/startup"):
        assert probe(runner, path) == (200, {"status": "UP"}), path
    status, detail = probe(runner, "/health/detail")
    parts = detail["components"]
    assert isinstance(parts, dict)
    loop = parts["event_loop"]
    # A busy machine may have held the node's loop up for more than warn_lag_seconds (0.1 s) in the last
    # seconds: the loop, and so the whole, are DEGRADED then, and UP otherwise; never DOWN (a 2 s stall).
    healthy = "UP" if loop["lag_max_seconds"] <= loop["warn_lag_seconds"] else "DEGRADED"
    assert status == 200 and detail["status"] == healthy, detail
    assert parts["ng_listener"] == {
        "status": "UP",
        "address": "127.0.0.1",
        "port": runner.node.settings.ng_port,
        "bound": True,
    }
    pool = parts["port_pool"]
    assert pool["status"] == "UP" and pool["capacity"] == 4 and pool["free"] == 4 and pool["in_use"] == 0
    assert pool["warn_at"] == 0.8 and pool["critical_at"] == 0.95
    assert loop["status"] == healthy and loop["warn_lag_seconds"] == 0.1, loop
    assert loop["lag_seconds"] < loop["max_lag_seconds"] and loop["last_tick_age_seconds"] < 1, loop
    assert parts["draining"] == {"status": "UP", "draining": False}
    assert parts["redis"]["status"] == "NOT_CONFIGURED"
    assert "cdr" not in parts  # no CDR writer attached to this node
    assert get(runner.url("api", "/api/v1/stats")).status == 401  # while the API needs one


def test_ready_fails_while_draining_and_recovers(runner: NodeThread) -> None:
    operator = {"Authorization": "Bearer operator-key-0123456789abcdef"}
    assert http("POST", runner.url("api", "/api/v1/admin/drain"), headers=operator).status == 200
    try:
        status, body = probe(runner, "/ready")
        assert status == 503 and body == {"status": "DOWN", "reasons": ["draining: not taking new calls"]}
        assert probe(runner, "/live")[0] == 200  # draining is no reason to restart
        status, detail = probe(runner, "/health/detail")
        assert status == 200 and detail["status"] == "DEGRADED"
        assert detail["components"]["draining"] == {"status": "DRAINING", "draining": True}  # type: ignore[index]
    finally:
        assert http("POST", runner.url("api", "/api/v1/admin/undrain"), headers=operator).status == 200
    assert probe(runner, "/ready") == (200, {"status": "UP"})


def test_ready_fails_while_the_port_pool_is_exhausted_and_recovers(runner: NodeThread) -> None:
    ng = NgSource(ng_address(runner))
    first, second = udp_party(), udp_party()
    try:
        assert offer(ng, "fills-the-pool", first)["result"] == "ok"
        status, body = probe(runner, "/ready")
        assert status == 503 and body["reasons"] == ["the media port pool has no free port pair"]
        status, detail = probe(runner, "/health/detail")
        assert status == 503 and detail["status"] == "DOWN"
        pool = detail["components"]["port_pool"]  # type: ignore[index]
        assert pool["status"] == "DOWN" and pool["free"] == 0 and pool["usage_ratio"] == 1.0
        refused = offer(ng, "no-room", second)
        assert refused["result"] == "error" and refused["error-reason"] == "Ran out of ports"
        assert probe(runner, "/live")[0] == 200
        operator = {"X-API-Key": "operator-key-0123456789abcdef"}
        deleted = http(
            "DELETE", runner.url("api", "/api/v1/sessions/" + quote("fills-the-pool")), headers=operator
        )
        assert deleted.status == 200
        assert probe(runner, "/ready") == (200, {"status": "UP"})
        _, detail = probe(runner, "/health/detail")
        assert detail["components"]["port_pool"]["exhausted_total"] == 1  # type: ignore[index]
    finally:
        ng.close()
        first.close()
        second.close()


def test_startup_and_ready_fail_until_start_up_completed(runner: NodeThread) -> None:
    runner.run(lambda: setattr(runner.node, "startup_complete", False))
    try:
        assert probe(runner, "/startup") == (
            503,
            {"status": "DOWN", "reasons": ["start-up has not completed"]},
        )
        status, body = probe(runner, "/ready")
        assert status == 503 and body["reasons"] == ["start-up has not completed"]
        assert probe(runner, "/live")[0] == 200
    finally:
        runner.run(lambda: setattr(runner.node, "startup_complete", True))
    assert probe(runner, "/startup")[0] == 200


def test_live_fails_when_the_event_loop_stalls(runner: NodeThread) -> None:
    # Block the node's loop for 2.3 s; the probe sent meanwhile is answered once the loop runs again and
    # must report the stall (stale monitor tick or the lag it measured).
    stalled = threading.Event()

    def stall() -> None:
        stalled.set()
        time.sleep(2.3)

    runner.loop.call_soon_threadsafe(stall)
    assert stalled.wait(5)
    status, body = probe(runner, "/live")
    assert status == 503 and body["status"] == "DOWN", body
    assert any("event loop" in reason for reason in body["reasons"]), body  # type: ignore[attr-defined]
    wait_for(lambda: probe(runner, "/live")[0] == 200, timeout=3)


def test_cdr_component_appears_when_a_cdr_writer_is_attached(runner: NodeThread) -> None:
    counters = SimpleNamespace(
        records_total=7, file_written_total=7, db_written_total=5, db_errors_total=2, spooled_total=2,
        spool_pending=2, db_up=False,
    )  # fmt: skip
    runner.run(lambda: setattr(runner.node, "cdr", SimpleNamespace(counters=counters)))
    try:
        status, detail = probe(runner, "/health/detail")
        cdr = detail["components"]["cdr"]  # type: ignore[index]
        assert status == 200 and detail["status"] == "DEGRADED"
        assert cdr == {
            "status": "DEGRADED",
            "database": "down",
            "records_total": 7,
            "spool_pending": 2,
            "db_errors_total": 2,
        }
        counters.db_up = None  # file only
        assert probe(runner, "/health/detail")[1]["components"]["cdr"]["status"] == "UP"  # type: ignore[index]
    finally:
        runner.run(lambda: setattr(runner.node, "cdr", None))


def test_metrics_are_served_without_a_key(runner: NodeThread) -> None:
    reply = get(runner.url("metrics", "/metrics"))
    if importlib.util.find_spec("karl_medianode.operations.metrics") is None:
        assert reply.status == 503 and b"karl_medianode.operations.metrics" in reply.body
    else:
        assert reply.status == 200, reply.body[:500]
        assert reply.headers["Content-Type"].startswith("text/plain")
        assert b"karl_sessions_active" in reply.body
    assert get(runner.url("metrics", "/other")).status == 404
