"""The security and CDR families move with real activity: a real Karl process (`python -m karl_medianode`)
with admission control, API keys and CDRs configured, driven over NG and HTTP and scraped on its
metrics port.

Without a MariaDB server (Debian mariadb-server) the database families are driven by an outage
instead (a DSN nobody listens on).
"""

from __future__ import annotations

import re
import secrets
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from karl_core.ng import bencode
from karl_testkit import NgClient, NgServer, free_port, wait_for

NG_ALLOWED = "127.0.0.1"
NG_FLOODER = "127.0.0.6"  # allowed, but sends far more than its rate limit
NG_STRANGER = "127.0.0.5"  # not in the allow-list

# Families this test drives, and what it takes to move the ones it cannot drive here.
DRIVEN = {
    "karl_ng_refused_total",
    "karl_ng_not_allowed_total",
    "karl_ng_rate_limited_total",
    "karl_api_rate_limited_total",
    "karl_security_blocks_total",
    "karl_security_blocked_sources",
    "karl_api_auth_failures_total",
    "karl_api_requests_total",
    "karl_cdr_records_total",
    "karl_cdr_file_written_total",
    "karl_cdr_db_errors_total",
    "karl_cdr_spooled_total",
    "karl_cdr_spool_pending",
}
# Move with a real database only (MariaDB from tests/medianode/mariadb_fixture.py, when installed):
# records written, and reachability going 1 -> 0 during an outage in the middle of the test.
NEEDS_A_DATABASE = {"karl_cdr_db_written_total", "karl_cdr_db_up"}
ONLY_ON_FAILURE = {"karl_cdr_file_errors_total", "karl_cdr_dropped_total"}  # unwritable file, full queue


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def family(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> dict[Any, float]:
    return {key: value for key, value in samples.items() if key[0] == name}


def moved(before: dict[Any, float], after: dict[Any, float], name: str) -> bool:
    old, new = family(before, name), family(after, name)
    return any(key not in old or old[key] != value for key, value in new.items())


def http_status(url: str, key: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def sdp(port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cdr\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=sendrecv\r\n"
    )


def launch(karl_factory: Callable[..., NgServer], **env: str) -> NgServer:
    return karl_factory(**env)


def start_database(stack: ExitStack) -> Any:
    """A private MariaDB server if this machine can run one, else None."""
    try:
        from medianode.mariadb_fixture import running_mariadb, unavailable_reason
    except ImportError:
        return None
    if unavailable_reason() is not None:
        return None
    return stack.enter_context(running_mariadb())


def call_and_hang_up(node: NgServer, call_id: str) -> None:
    offer = node.ng.request({"command": "offer", "call-id": call_id, "from-tag": "a", "sdp": sdp(40000)})
    assert offer["result"] == "ok", offer
    answer = node.ng.request(
        {"command": "answer", "call-id": call_id, "from-tag": "a", "to-tag": "b", "sdp": sdp(40002)}
    )
    assert answer["result"] == "ok", answer
    assert node.ng.request({"command": "delete", "call-id": call_id})["result"] == "ok"


def test_security_and_cdr_metrics_move(karl_factory: Callable[..., NgServer], tmp_path: Path) -> None:
    with ExitStack() as stack:
        database = start_database(stack)
        # Without a database server: a DSN nobody listens on, so that the outage families move.
        dsn = (
            database.create_database("karl_metrics")
            if database
            else f"mysql://k:pw@127.0.0.1:{free_port()}/k"
        )
        drive(karl_factory, tmp_path, dsn, database)


def drive(karl_factory: Callable[..., NgServer], tmp_path: Path, dsn: str, database: Any) -> None:
    api_key = secrets.token_urlsafe(24)
    metrics_port, api_port = free_port(), free_port()
    node = launch(
        karl_factory,
        KARL_METRICS_PORT=str(metrics_port),
        KARL_API_PORT=str(api_port),
        KARL_NG_ALLOW=f"{NG_ALLOWED}/32,{NG_FLOODER}/32",
        KARL_NG_RATE_LIMIT="50",
        KARL_NG_BURST="50",
        KARL_API_RATE_LIMIT="2",
        KARL_API_BURST="5",
        KARL_BLOCK_SECONDS="60",
        KARL_API_KEYS=f"admin:{api_key}",
        KARL_CDR_PATH=str(tmp_path / "cdr.jsonl"),
        KARL_CDR_SPOOL_DIR=str(tmp_path / "spool"),
        KARL_MYSQL_DSN=dsn,
        KARL_DELETE_DELAY="0",
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    def serving() -> bool:  # NG answers before the HTTP servers are up
        try:
            scrape(metrics_url)
        except urllib.error.URLError:
            return False
        return True

    wait_for(serving, timeout=10, interval=0.05)
    before = scrape(metrics_url)
    assert family(before, "karl_build_info"), "the node must serve Karl's metrics on /metrics"
    scrapes = [before]

    # NG from an address outside the allow-list: dropped without a reply.
    stranger = NgClient(("127.0.0.1", node.ng.address[1]))
    stranger.sock.close()
    stranger.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.sock.bind((NG_STRANGER, 0))
    assert stranger.raw(b"s1 " + bencode.encode({"command": "ping"}), timeout=0.5) is None
    stranger.close()

    # A flood from an allowed source: rate limited, then blocked.
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flooder.bind((NG_FLOODER, 0))
    ping = bencode.encode({"command": "ping"})
    for i in range(3000):
        flooder.sendto(f"f{i} ".encode() + ping, node.ng.address)
    flooder.close()

    # The REST API without a key, then faster than its rate limit.
    api = f"http://127.0.0.1:{api_port}/api/v1/stats"
    assert http_status(api) == 401
    statuses = [http_status(api, api_key) for _ in range(20)]
    assert 429 in statuses, statuses

    # A call from the proxy: ends at once (delete delay 0) and makes a CDR, written to the database
    # when there is one; then the database goes away and the next call's record waits in the spool.
    call_and_hang_up(node, "cdr-call-1")
    if database is not None:
        written: tuple[str, frozenset[tuple[str, str]]] = ("karl_cdr_db_written_total", frozenset())
        wait_for(lambda: scrape(metrics_url).get(written, 0) >= 1, timeout=15, interval=0.2)
        scrapes.append(scrape(metrics_url))
        assert scrapes[-1][("karl_cdr_db_up", frozenset())] == 1
        database.stop()
        call_and_hang_up(node, "cdr-call-2")

    expected = DRIVEN | (NEEDS_A_DATABASE if database is not None else set())

    def all_moved() -> bool:
        scrapes.append(scrape(metrics_url))
        return all(any(moved(before, later, name) for later in scrapes[1:]) for name in expected)

    try:
        wait_for(all_moved, timeout=15, interval=0.2)
    except AssertionError:
        still = sorted(n for n in expected if not any(moved(before, later, n) for later in scrapes[1:]))
        raise AssertionError(f"families that did not move: {still}\n--- karl log ---\n{node.log()}") from None
    after = scrapes[-1]
    assert after[("karl_security_blocked_sources", frozenset())] >= 1
    statuses_seen = {dict(key[1]).get("status") for key in family(after, "karl_api_requests_total")}
    assert {"401", "429"} <= statuses_seen, statuses_seen
    assert after[("karl_cdr_db_up", frozenset())] == 0  # unreachable (never there, or stopped)
    for name in ONLY_ON_FAILURE | NEEDS_A_DATABASE:
        assert family(after, name), f"{name} is exported"
    # no label value names a source address or a call
    for key in after:
        for value in dict(key[1]).values():
            assert not re.fullmatch(r"127\.\d+\.\d+\.\d+|cdr-call-\d", value), key
