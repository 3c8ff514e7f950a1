"""The fleet test harness itself: Redis that pauses, dies, restarts empty and drops off the network; labs
of network namespaces that carry UDP every way; a media node in a namespace relaying a call."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from fleet.fleet_kit import (
    FleetNode,
    NetnsLab,
    RedisServer,
    established_via,
    nft_tables,
    node_env,
    require_root_tools,
    restart_node,
    udp_exchange,
)
from karl_testkit import ROOT, Talk, make_party, wait_for

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------------------------------------ Redis


def test_redis_pause_times_out_and_resume_recovers(redis_server: RedisServer) -> None:
    client = redis_server.client(timeout=0.3, retry=False)
    client.set("k", "v")
    redis_server.pause()
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    redis_server.resume()
    assert wait_for(lambda: _get(client, "k")) == "v"  # paused, not restarted: the data is still there


def test_redis_kill_and_restart_is_empty_on_the_same_port(redis_server: RedisServer) -> None:
    port, addr = redis_server.port, redis_server.addr
    assert addr == f"127.0.0.1:{port}" and redis_server.url == f"redis://127.0.0.1:{port}/0"
    client = redis_server.client(timeout=0.5, retry=False)
    client.set("k", "v")
    redis_server.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    redis_server.restart()
    assert (redis_server.port, redis_server.addr) == (port, addr)
    assert client.ping() is True
    assert client.get("k") is None and client.dbsize() == 0


def test_redis_drop_traffic_hangs_connections_until_restored(redis_server: RedisServer) -> None:
    require_root_tools("nft")
    client = redis_server.client(timeout=0.3, retry=False)
    assert client.ping()
    redis_server.drop_traffic()
    assert ("inet", redis_server.nft_table) in nft_tables()
    with pytest.raises(redis.TimeoutError):  # a hang, not a reset (that would be ConnectionError)
        client.ping()
    with pytest.raises(RuntimeError, match="dropped"):  # CONFIG SET bind could not get through
        redis_server.listen_on("10.213.255.1")
    fresh = redis_server.client(timeout=0.3, retry=False)
    with pytest.raises(redis.TimeoutError):  # the SYN is dropped too
        fresh.ping()
    redis_server.restore_traffic()
    assert not redis_server.traffic_dropped
    wait_for(lambda: _ping(client), timeout=5)
    wait_for(lambda: _ping(fresh), timeout=5)
    # stopping removes the table even when the test left the traffic dropped
    redis_server.drop_traffic()
    redis_server.stop()
    assert ("inet", redis_server.nft_table) not in nft_tables()


def _get(client: redis.Redis, key: str) -> str | None:
    try:
        return client.get(key)  # type: ignore[return-value]
    except (redis.ConnectionError, redis.TimeoutError):
        return None


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


# ------------------------------------------------------------------------------------------ network lab


def test_namespaces_exchange_udp_with_each_other_and_the_root_namespace(
    netns_lab: Callable[..., NetnsLab],
) -> None:
    lab = netns_lab(2)
    assert lab.ns_ip(0) != lab.ns_ip(1) and lab.bridge_ip.endswith(".1")
    ns0, ns1 = lab.udp_socket(0), lab.udp_socket(1)
    on_bridge = lab.udp_socket(None)
    wildcard = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wildcard.bind(("0.0.0.0", 0))
    wildcard.settimeout(2)
    try:
        udp_exchange(ns0, ns1)  # namespace to namespace, through the bridge
        udp_exchange(ns1, ns0)
        for ns in (ns0, ns1):
            udp_exchange(ns, on_bridge)
            udp_exchange(on_bridge, ns)
            # a root-namespace socket on the wildcard answers from the bridge address
            wildcard.sendto(b"hello", ns.getsockname())
            data, peer = ns.recvfrom(100)
            assert (data, peer[0]) == (b"hello", lab.bridge_ip)
            ns.sendto(b"back", peer)
            assert wildcard.recv(100) == b"back"
    finally:
        for sock in (ns0, ns1, on_bridge, wildcard):
            sock.close()
    # the commands of `run` see the namespace, not the root namespace
    addresses = lab.run(1, ["ip", "-4", "-o", "addr", "show"]).stdout
    assert f"{lab.ns_ip(1)}/24" in addresses and lab.bridge_ip + "/" not in addresses
    assert f"default via {lab.bridge_ip}" in lab.run(1, ["ip", "route"]).stdout
    assert "lo" in lab.run(1, ["ip", "-o", "link", "show", "up"]).stdout


def test_redis_is_reachable_from_a_namespace_and_drop_traffic_covers_it(
    netns_lab: Callable[..., NetnsLab], redis_server: RedisServer
) -> None:
    lab = netns_lab(1, probe=False)
    redis_server.listen_on(lab.bridge_ip)
    done = lab.run(0, ["redis-cli", "-h", lab.bridge_ip, "-p", str(redis_server.port), "ping"])
    assert done.stdout.strip() == "PONG"
    # a client whose connection was opened inside the namespace
    client = redis_server.client(host=lab.bridge_ip, timeout=0.3, retry=False)
    assert lab.call_in(0, client.ping)
    redis_server.drop_traffic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    redis_server.restore_traffic()
    assert wait_for(lambda: lab.call_in(0, lambda: _ping(client)))


def test_a_lab_replaces_the_leftovers_of_a_crashed_run_and_cleans_up(tmp_path: Path) -> None:
    require_root_tools("ip", "nft")
    tag = f"{os.getpid()}l99"
    crashed = NetnsLab(1, tmp_path, tag=tag, probe=False)  # never closed: as if its process died
    names = (crashed.ns_name(0), crashed.veth_name(0), crashed.bridge)
    with NetnsLab(1, tmp_path, tag=tag) as lab:  # same names: the leftovers are deleted first
        assert lab.ns_name(0) in _netns()
        assert crashed.bridge_ip not in _addresses() or lab.bridge_ip == crashed.bridge_ip
    assert names[0] not in _netns()
    for link in names[1:]:
        assert subprocess.run(["ip", "link", "show", link], capture_output=True).returncode != 0
    crashed.close()  # nothing left to delete: harmless


CRASHING_RUN = """
import os, pathlib, sys
from fleet.fleet_kit import NetnsLab, RedisServer
log_dir = pathlib.Path(sys.argv[1])
redis = RedisServer(log_dir)
lab = NetnsLab(1, log_dir, probe=False)
redis.listen_on(lab.bridge_ip)
redis.drop_traffic()
print(lab.ns_name(0), lab.veth_name(0), lab.bridge, redis.nft_table, redis.proc.pid, flush=True)
os._exit(1)
"""


def test_the_leftovers_of_a_crashed_test_process_are_reaped(tmp_path: Path) -> None:
    require_root_tools("ip", "nft")
    path = os.pathsep.join(str(ROOT / p) for p in ("tests", "core", "medianode"))
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert crashed.returncode == 1, crashed.stderr
    netns, veth, bridge, table, redis_pid = crashed.stdout.split()
    assert netns in _netns() and ("inet", table) in nft_tables() and not _gone(int(redis_pid))
    with NetnsLab(1, tmp_path, probe=False):  # a new lab reaps what the dead process left
        assert netns not in _netns() and ("inet", table) not in nft_tables()
        for link in (veth, bridge):
            assert subprocess.run(["ip", "link", "show", link], capture_output=True).returncode != 0
        wait_for(lambda: _gone(int(redis_pid)), timeout=5)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"  # killed, not reaped yet by its new parent


def _netns() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


def _addresses() -> str:
    return subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout


# ---------------------------------------------------------------------------------------------- nodes


def test_node_env_points_a_node_at_its_namespace_and_redis(
    netns_lab: Callable[..., NetnsLab], redis_server: RedisServer
) -> None:
    lab = netns_lab(2, probe=False)
    env = node_env(lab, 1, redis_server, "node-b", KARL_LOG_LEVEL="debug")
    ip = lab.ns_ip(1)
    assert {env[k] for k in ("KARL_NG_ADDRESS", "KARL_MEDIA_IP", "KARL_API_ADDRESS")} == {ip}
    assert env["KARL_REDIS_ENABLED"] == "1"
    assert env["KARL_REDIS_ADDR"] == f"{lab.bridge_ip}:{redis_server.port}"
    assert (env["KARL_NODE_ID"], env["KARL_CLUSTER_ID"]) == ("node-b", lab.cluster_id)
    assert (env["KARL_RTP_MIN_PORT"], env["KARL_RTP_MAX_PORT"]) == ("20000", "20999")
    assert env["KARL_LOG_LEVEL"] == "debug"
    control = [
        int(env[k]) for k in ("KARL_NG_PORT", "KARL_API_PORT", "KARL_HEALTH_PORT", "KARL_METRICS_PORT")
    ]
    assert len(set(control)) == 4 and all(20999 < p < 32768 for p in control)
    other = node_env(lab, 0, None, "node-a")
    assert "KARL_REDIS_ENABLED" not in other and "KARL_REDIS_ADDR" not in other
    assert other["KARL_NG_PORT"] not in {str(p) for p in control}
    assert lab.bridge_ip in redis_server.bind  # node_env made Redis listen where the nodes reach it
    with pytest.raises(ValueError):
        node_env(lab, 0, None, "node-c", ports=(20000, 40000))


def test_a_node_in_a_namespace_answers_ping_and_relays_a_call(
    netns_lab: Callable[..., NetnsLab], fleet_nodes: Callable[..., FleetNode]
) -> None:
    lab = netns_lab(2, probe=False)
    node = fleet_nodes(lab, 0, None, "node-a")
    assert os.readlink(f"/proc/{node.proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert node.ng.address == (lab.ns_ip(0), int(node.env["KARL_NG_PORT"]))
    assert node.ng.request({"command": "ping"})["result"] == "pong"
    with urllib.request.urlopen(node.url("health") + "/live", timeout=2) as reply:
        assert reply.status == 200
    # A in the root namespace (on the bridge address), B in another namespace
    a, b = make_party(lab.bridge_ip), lab.party(1)
    try:
        to_a_side, to_b_side = established_via(node, a, b, "fleet-kit-call", lab.bridge_ip, lab.ns_ip(1))
        assert 20000 <= to_a_side <= 20999 and 20000 <= to_b_side <= 20999
        with Talk(a, to_a_side, b, to_b_side, media_ip=lab.ns_ip(0)).running() as talk:
            talk.flowing()
    finally:
        a.close()
        b.close()
    # a crash and a restart in the same namespace, on the same ports
    node.kill()
    again = restart_node(node)
    assert again.ng.request({"command": "ping"})["result"] == "pong"
    again.stop()
