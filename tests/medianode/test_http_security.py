"""Security of a running node: API keys and roles, rate limits and blocks (API and NG), the NG allow-list,
TLS on every HTTP port, and secrets kept out of the log."""

from __future__ import annotations

import logging
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from tests.medianode.test_http_support import (
    NgSource,
    NodeThread,
    get,
    http,
    make_config,
    ng_address,
    relay_rtp,
    running_node,
    setup_call,
)

from karl_core.config.loader import build_config
from karl_medianode.operations.http.auth import ApiKeys, parse_keys
from karl_medianode.operations.http.server import HttpServers, _announce
from karl_testkit import wait_for

READER = "reader-8c1f7e0b5a9d4e6f2b3c"
OPERATOR = "operator-1d2e3f4a5b6c7d8e9f0a"
ADMIN = "admin-a9b8c7d6e5f4a3b2c1d0e9f8"
FILE_OPERATOR = "file-operator-0f1e2d3c4b5a6978"
WEAK = "Zq9"
SECRETS = (READER, OPERATOR, ADMIN, FILE_OPERATOR, WEAK)
FLOOD_SECONDS = 1.5


def all_log_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.getMessage()} {vars(r)}" for r in records)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeThread, list[logging.LogRecord]]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    key_file = tmp_path_factory.mktemp("keys") / "api-keys"
    key_file.write_text(f"# operators\n\noperate:{FILE_OPERATOR}\n")
    key_file.chmod(0o600)
    config = make_config(
        KARL_API_KEYS=f"read:{READER},operate:{OPERATOR}, admin:{ADMIN},read:{WEAK}",
        KARL_API_KEYS_FILE=str(key_file),
        KARL_API_RATE_LIMIT="0",
    )
    try:
        with running_node(config) as node:
            yield node, records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_requests_without_a_valid_key_get_401(keyed: tuple[NodeThread, list[logging.LogRecord]]) -> None:
    runner, _ = keyed
    before = runner.node.admission.counters.api_auth_failures_total
    sessions = runner.url("api", "/api/v1/sessions")
    for headers in (
        None,
        bearer("not-a-key"),
        bearer(READER[:-1]),
        {"Authorization": f"Basic {READER}"},
        {"X-API-Key": ""},
    ):
        reply = http("GET", sessions, headers=headers)
        assert reply.status == 401, headers
        assert reply.error["code"] == "unauthorized"
        assert reply.headers["WWW-Authenticate"].startswith('Bearer realm="karl"')
    # nothing is given away about paths or methods without a key
    assert get(runner.url("api", "/api/v1/nothing")).status == 401
    assert http("PUT", runner.url("api", "/api/v1/stats")).status == 401
    assert runner.node.admission.counters.api_auth_failures_total == before + 7
    # the document and the probes are public
    assert get(runner.url("api", "/api/v1/openapi.json")).json()["security"] == [
        {"bearerKey": []},
        {"headerKey": []},
    ]
    assert get(runner.url("health", "/ready")).status == 200


def test_roles_decide_what_a_key_may_do(keyed: tuple[NodeThread, list[logging.LogRecord]]) -> None:
    runner, _ = keyed
    api = runner.url("api")
    failures = runner.node.admission.counters.api_auth_failures_total
    for key in (READER, WEAK):  # a read key, weak or not, only reads
        assert get(api + "/api/v1/sessions", key).status == 200
        assert get(api + "/api/v1/stats", key).status == 200
        assert get(api + "/api/v1/sessions/none", key).status == 404
        for method, path in (("DELETE", "/api/v1/sessions/none"), ("POST", "/api/v1/admin/drain")):
            reply = http(method, api + path, headers=bearer(key))
            assert reply.status == 403, (method, path)
            assert reply.error == {
                "code": "forbidden",
                "message": "this operation needs the 'operate' role; the key has 'read'",
            }
    assert runner.node.draining is False
    assert runner.node.admission.counters.api_auth_failures_total == failures + 4  # the 403s
    for headers in (bearer(OPERATOR), {"X-API-Key": OPERATOR}, bearer(FILE_OPERATOR), bearer(ADMIN)):
        assert http("DELETE", api + "/api/v1/sessions/none", headers=headers).status == 404  # allowed
        drained = http("POST", api + "/api/v1/admin/drain", headers=headers)
        assert drained.status == 200 and drained.json()["draining"] is True
        undrained = http("POST", api + "/api/v1/admin/undrain", headers=headers)
        assert undrained.status == 200 and undrained.json()["draining"] is False
        assert (
            get(api + "/api/v1/stats", headers.get("X-API-Key") or headers["Authorization"][7:]).status == 200
        )
    assert get(api + "/api/v1/nothing", ADMIN).status == 404


def test_keys_never_reach_the_log(keyed: tuple[NodeThread, list[logging.LogRecord]]) -> None:
    runner, records = keyed
    # exercise a failing and a succeeding request of each kind with every key
    for key in SECRETS:
        http("POST", runner.url("api", "/api/v1/admin/drain"), headers=bearer(key))
        http("POST", runner.url("api", "/api/v1/admin/undrain"), headers={"X-API-Key": key})
        get(runner.url("api", "/api/v1/stats"), key + "x")
    text = all_log_text(records)
    assert "drain requested through the REST API" in text  # the log was captured
    for secret in SECRETS:
        assert secret not in text
    weak = [r for r in records if getattr(r, "event", "") == "api_key_weak"]
    assert len(weak) == 1 and "KARL_API_KEYS entry 4" in weak[0].getMessage()


def test_start_up_warns_about_an_open_or_unencrypted_api(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "karl.http")

    def announce(address: str, keys: ApiKeys, tls: bool = False) -> list[logging.LogRecord]:
        caplog.clear()
        node = SimpleNamespace(config=build_config({"api": {"address": address}}, {}))
        _announce(node, keys, HttpServers(tls=tls))  # type: ignore[arg-type]
        return [r for r in caplog.records if r.levelno >= logging.WARNING]

    (open_warning,) = announce("0.0.0.0", ApiKeys())
    assert "has no API keys" in open_warning.getMessage() and "KARL_API_KEYS" in open_warning.getMessage()
    assert announce("127.0.0.1", ApiKeys()) == []  # a local-only open API is the documented default
    keys = ApiKeys(tuple(parse_keys(f"admin:{ADMIN}")))
    (clear_text,) = announce("192.0.2.1", keys)
    assert "KARL_TLS_CERT" in clear_text.getMessage()
    assert announce("192.0.2.1", keys, tls=True) == []


def test_api_rate_limit_answers_429_then_blocks_the_source_for_a_while() -> None:
    with running_node(KARL_API_RATE_LIMIT="1", KARL_API_BURST="5", KARL_BLOCK_SECONDS="2") as runner:
        stats = runner.url("api", "/api/v1/stats")
        statuses = [get(stats).status for _ in range(5)]
        assert statuses == [200] * 5
        limited = get(stats)
        assert limited.status == 429 and limited.error["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # keep hammering: more than `burst` refusals within the window block the source
        for _ in range(6):
            get(stats)
        counters = runner.node.admission.counters
        assert counters.api_blocks_total == 1 and counters.blocks_total == 1
        assert runner.run(lambda: runner.node.admission.blocked_api_sources()) == 1
        blocked = get(stats)
        assert blocked.status == 429 and int(blocked.headers["Retry-After"]) == 2
        assert counters.api_rate_limited_total >= 8 and counters.api_blocked_total >= 1
        # another address is not affected, and neither are the probes
        assert get(stats, source="127.0.0.61").status == 200
        assert get(runner.url("health", "/health")).status == 200
        assert get(runner.url("metrics", "/metrics")).status in (200, 503)
        requests = runner.run(lambda: dict(runner.node.admission.api_requests))
        assert requests[("/api/v1/stats", "GET", 429)] >= 8
        wait_for(lambda: get(stats).status == 200, timeout=4, interval=0.2)


def test_a_flooding_ng_source_is_limited_then_blocked_while_a_legitimate_source_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "karl.admission")
    config = make_config(
        media_ip="127.0.0.2",
        ports=40,
        KARL_NG_ALLOW="127.0.0.50, 127.0.0.51",
        KARL_NG_RATE_LIMIT="200",
        KARL_NG_BURST="100",
        KARL_BLOCK_SECONDS="30",
    )
    with running_node(config) as runner:
        address = ng_address(runner)
        counters = runner.node.admission.counters
        flood_sent = 0
        flood_seconds = 0.0
        stop = threading.Event()

        def flood() -> None:
            nonlocal flood_sent, flood_seconds
            sock = NgSource(address, "127.0.0.50").sock
            started = time.monotonic()
            try:
                while not stop.is_set() and time.monotonic() - started < FLOOD_SECONDS:
                    for _ in range(50):
                        flood_sent += 1
                        sock.sendto(b"f%d d7:command4:pinge" % flood_sent, address)
                    time.sleep(0.008)  # about 5000 requests/s
            finally:
                flood_seconds = time.monotonic() - started
                sock.close()

        legit = NgSource(address, "127.0.0.51")
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        calls = []
        try:
            wait_for(lambda: counters.ng_rate_limited_total > 0, timeout=5)
            calls.append(setup_call(legit, "legit-while-limited", retransmit=0.3))
            wait_for(lambda: counters.ng_blocks_total >= 1, timeout=5)
            calls.append(setup_call(legit, "legit-while-blocked", retransmit=0.3))
            assert flooder.is_alive()  # both calls were set up during the flood
            for call in calls:
                relay_rtp(call, runner.node.settings.media_ip, count=20)
            assert flooder.is_alive()  # ... and relayed media during it
            flooder.join(FLOOD_SECONDS + 5)
            rate = flood_sent / flood_seconds
            assert flood_sent >= 3000 and rate >= 2000, (flood_sent, flood_seconds)
            # the flooder got its burst and little more; the rest was dropped and counted
            handled = runner.node.ng.counters.by_command.get("ping", 0)  # type: ignore[union-attr]
            assert 100 <= handled <= 100 + 200 * 2, handled
            # (a datagram the kernel dropped from a full socket buffer never reaches admission: allow 2 %)
            refused = flood_sent - handled
            assert refused * 0.98 <= counters.ng_rate_limited_total <= refused
            assert counters.ng_blocked_total > 0 and counters.blocks_total == 1
            assert runner.run(lambda: runner.node.admission.blocked_ng_sources()) == 1
            # still blocked now that it is quiet: not even one ping is answered
            assert NgSource(address, "127.0.0.50").request({"command": "ping"}, timeout=0.5) is None
            assert legit.request({"command": "ping"})["result"] == "pong"
            # a source outside the allow-list is dropped and counted
            assert NgSource(address, "127.0.0.52").request({"command": "ping"}, timeout=0.5) is None
            assert counters.ng_not_allowed_total >= 1
            stats = get(runner.url("api", "/api/v1/stats")).json()
            assert (
                stats["admission"]["blocked_sources"] == 1 and stats["ng"]["refused"] >= flood_sent - handled
            )
            blocks = [r for r in caplog.records if getattr(r, "event", "") == "source_blocked"]
            assert len(blocks) == 1 and "127.0.0.50" in blocks[0].getMessage()
        finally:
            stop.set()
            flooder.join(5)
            legit.close()
            for call in calls:
                call.close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=karl-test", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def test_tls_on_every_http_port_when_a_certificate_is_configured(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    client = ssl.create_default_context(cafile=str(cert))
    config = make_config(KARL_TLS_CERT=str(cert), KARL_TLS_KEY=str(key), KARL_API_KEYS=f"read:{READER}")
    with running_node(config) as runner:
        assert runner.servers.tls
        api = runner.url("api")
        assert api.startswith("https://127.0.0.1:")
        reply = get(api + "/api/v1/stats", READER, ssl_context=client)
        assert reply.status == 200 and reply.json()["active_sessions"] == 0
        assert get(runner.url("health", "/health"), ssl_context=client).json() == {"status": "UP"}
        assert get(runner.url("metrics", "/metrics"), ssl_context=client).status in (200, 503)
        # plain HTTP is not spoken on these ports, and an unknown certificate is refused by the client
        for name in ("api", "health", "metrics"):
            plain = runner.url(name).replace("https://", "http://") + "/health"
            with pytest.raises(aiohttp.ClientError):
                get(plain, timeout=3)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            get(runner.url("health", "/health"), ssl_context=ssl.create_default_context(), timeout=3)
