"""Every way the fleet can be told where Redis is — `unix://` with a password, Sentinels, `rediss://`
(TLS) — against real `redis-server` processes; and a node that joins through Sentinels."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from fleet.fleet_kit import REDIS_SERVER, stop_process
from karl_core.state.call_store import OwnerToken, SaveResult
from karl_core.state.fleet_state import FleetState, StateUnavailable, StateWriter
from karl_core.state.redis_connection import RedisSettings, connect
from karl_core.state.redis_keys import KeySchema
from karl_testkit import established, free_port, make_party, run_async, sdp, simple_rtp, start_karl, wait_for

pytestmark = pytest.mark.fleet

Launch = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start a `redis-server` with these arguments (stopped after the test)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"redis-{len(started)}.log"
        argv = [REDIS_SERVER, *args, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
        started.append(subprocess.Popen([*argv, "--logfile", str(log)], stdout=subprocess.DEVNULL))
        return started[-1]

    yield start
    for proc in started:
        stop_process(proc)


async def place_through(settings: RedisSettings) -> str:
    """Place a call the way a node does (its first write, at epoch 0); returns the owner Redis gave it."""
    client = connect(settings)
    try:
        writer = StateWriter(FleetState(client, KeySchema("addr")))
        writer.start()
        try:
            result, token = await writer.save("call-1", 1, OwnerToken("node-a", 0), "node-a", "{}")
        finally:
            await writer.stop()
        assert result is SaveResult.SAVED and token is not None
        return token.owner
    finally:
        await client.aclose()


def test_a_unix_socket_with_a_password(launch: Launch, tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    launch("--port", "0", "--unixsocket", str(path), "--requirepass", "s3cret")
    wait_for(path.exists, timeout=5)
    assert run_async(place_through(RedisSettings(addr=f"unix://{path}", password="s3cret"))) == "node-a"
    # the wrong password is a clear failure, not a hang
    with pytest.raises(StateUnavailable, match=r"(?i)auth|password"):
        run_async(place_through(RedisSettings(addr=f"unix://{path}", password="wrong")))


def test_sentinels_lead_to_the_master(launch: Launch, tmp_path: Path) -> None:
    master = free_port()
    launch("--port", str(master), "--bind", "127.0.0.1")
    wait_for(lambda: redis.Redis(port=master, socket_timeout=0.3).ping(), timeout=5)
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor karl-main 127.0.0.1 {master} 1\n"
        f"dir {tmp_path}\n"
    )
    launch(str(conf), "--sentinel")
    sentinel = redis.Redis(port=sentinel_port, socket_timeout=0.3)
    wait_for(lambda: sentinel.execute_command("SENTINEL", "get-master-addr-by-name", "karl-main"), timeout=10)
    settings = RedisSettings(sentinels=(("127.0.0.1", sentinel_port),), sentinel_master="karl-main")
    assert run_async(place_through(settings)) == "node-a"
    assert redis.Redis(port=master, decode_responses=True).hget("addr:call:call-1", "owner") == "node-a"
    # a node configured with KARL_REDIS_SENTINELS joins the fleet through them
    node = start_karl(
        tmp_path,
        KARL_REDIS_ENABLED="true",
        KARL_REDIS_SENTINELS=f"127.0.0.1:{sentinel_port}",
        KARL_REDIS_SENTINEL_MASTER="karl-main",
        KARL_NODE_ID="sentinel-node",
    )
    try:
        wait_for(lambda: redis.Redis(port=master).exists("karl:node:sentinel-node"), timeout=10)
    finally:
        node.stop()


def test_rediss_with_the_servers_ca(launch: Launch, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    launch(
        "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=0.3).ping())
        except redis.RedisError:
            return False

    wait_for(answers, timeout=5)
    assert run_async(place_through(RedisSettings(addr=url))) == "node-a"
    # without the CA the server's certificate is refused: TLS is verified, not merely on
    with pytest.raises(StateUnavailable):
        run_async(place_through(RedisSettings(addr=f"rediss://127.0.0.1:{port}/0")))


def test_a_sentinel_failover_of_redis_loses_no_packet_and_hands_no_epoch_out_twice(
    launch: Launch, tmp_path: Path
) -> None:
    """The Redis primary killed under Sentinel: the replica is promoted, the node follows it through the
    Sentinels (holding over meanwhile), established calls lose no packet, and the epochs handed out
    after the promotion are new ones."""
    primary, replica, sentinel_port = free_port(), free_port(), free_port()
    primary_proc = launch("--port", str(primary), "--bind", "127.0.0.1", "--repl-diskless-sync-delay", "0")
    launch("--port", str(replica), "--bind", "127.0.0.1", "--replicaof", "127.0.0.1", str(primary))
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor karl-main 127.0.0.1 {primary} 1\n"
        "sentinel down-after-milliseconds karl-main 1000\nsentinel failover-timeout karl-main 5000\n"
    )
    launch(str(conf), "--sentinel")
    sentinel = redis.Redis(port=sentinel_port, socket_timeout=0.3, decode_responses=True)

    def master_port() -> int | None:
        try:
            found = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", "karl-main")
        except redis.RedisError:
            return None
        return int(found[1]) if found else None

    wait_for(lambda: master_port() == primary, timeout=10)
    replica_client = redis.Redis(port=replica, decode_responses=True, socket_timeout=1)
    wait_for(lambda: replica_client.info("replication").get("master_link_status") == "up", timeout=10)

    def sentinel_knows_the_replica() -> bool:  # it learns replicas from the primary's INFO (every 10 s)
        try:
            replicas = sentinel.execute_command("SENTINEL", "replicas", "karl-main")
        except redis.RedisError:
            return False
        for entry in replicas:
            fields = entry if isinstance(entry, dict) else dict(zip(entry[::2], entry[1::2], strict=True))
            if int(fields.get("port", 0)) == replica and "disconnected" not in fields.get("flags", ""):
                return True
        return False

    wait_for(sentinel_knows_the_replica, timeout=20, interval=0.2)
    node = start_karl(
        tmp_path,
        KARL_REDIS_ENABLED="true",
        KARL_REDIS_SENTINELS=f"127.0.0.1:{sentinel_port}",
        KARL_REDIS_SENTINEL_MASTER="karl-main",
        KARL_NODE_ID="sentinel-node",
    )
    try:
        primary_client = redis.Redis(port=primary, decode_responses=True, socket_timeout=1)
        wait_for(lambda: primary_client.exists("karl:node:sentinel-node"), timeout=10)
        a, b = make_party(), make_party()
        to_a_side, _ = established(node, a, b, "before@test")
        epoch_before = int(primary_client.hget("karl:call:before@test", "epoch"))
        replicated = str(epoch_before)
        wait_for(lambda: replica_client.hget("karl:call:before@test", "epoch") == replicated, timeout=5)
        sent = received = 0
        b.rtp.settimeout(1)

        def relay_one() -> None:  # A → node → B, one packet, counted
            nonlocal sent, received
            a.rtp.sendto(simple_rtp(sent), (node.media_ip, to_a_side))
            sent += 1
            b.rtp.recv(2048)
            received += 1

        for _ in range(20):
            relay_one()
        primary_proc.kill()
        primary_proc.wait(5)
        # media goes on while Sentinel notices (1 s) and promotes the replica
        promoted_at = time.monotonic() + 30
        while master_port() != replica:
            relay_one()
            assert time.monotonic() < promoted_at, "Sentinel did not promote the replica"
        # the node follows: its lease is renewed on the new primary, and new calls work again
        wait_for(lambda: replica_client.exists("karl:node:sentinel-node"), timeout=15)
        wait_for(
            lambda: node.ng.request({"command": "offer", "call-id": "after@test", "from-tag": "A",
                                     "sdp": sdp(a.port)})["result"] == "ok",
            timeout=15,
        )  # fmt: skip
        for _ in range(20):
            relay_one()
        assert received == sent  # no packet lost through the failover of Redis
        epoch_after = int(replica_client.hget("karl:call:after@test", "epoch"))
        assert epoch_after > epoch_before  # a new epoch, never one handed out before
        assert node.ng.request({"command": "query", "call-id": "before@test"})["result"] == "ok"
    finally:
        node.stop()
