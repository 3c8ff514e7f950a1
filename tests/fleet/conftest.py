"""Fixtures of the fleet tests: a real Redis, labs of network namespaces, media nodes and NG routers.

All of them need root and `ip`, `nft`, `redis-server`. Without them the fixtures skip, and with
KARL_FAIL_ON_SKIP=1 (CI) the suite-wide hook of tests/conftest.py turns each of those skips into a
failure: CI cannot go green without actually running the fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleet.fleet_calls import router_metrics
from fleet.fleet_kit import (
    REDIS_SERVER,
    FailoverProcess,
    FleetNode,
    FleetRouter,
    NetnsLab,
    RedisServer,
    WebhookReceiver,
    metric,
    require_root_tools,
    start_failover,
    start_node,
    start_router,
)
from karl_testkit import wait_for


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty `redis-server` on 127.0.0.1 and a free port (`start_node` makes it listen on the
    lab's bridge address too). Its nftables table, if any, is removed afterwards."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def netns_lab(tmp_path: Path) -> Iterator[Callable[..., NetnsLab]]:
    """Make labs: `lab = netns_lab(2)` gives a bridge and namespaces k=0 and k=1 (closed after, with
    whatever was started in them)."""
    require_root_tools("ip", "nft")
    labs: list[NetnsLab] = []

    def make(count: int = 2, probe: bool = True) -> NetnsLab:
        labs.append(NetnsLab(count, tmp_path, probe=probe))
        return labs[-1]

    yield make
    for lab in reversed(labs):
        lab.close()


@pytest.fixture
def fleet_nodes() -> Iterator[Callable[..., FleetNode]]:
    """Start media nodes: `fleet_nodes(lab, k, redis_or_None, "node-a", ports=(20000, 20999), KARL_X="v")`
    (stopped after; the lab would stop them too)."""
    started: list[FleetNode] = []

    def start(
        lab: NetnsLab,
        k: int,
        redis: RedisServer | None,
        node_id: str,
        ports: tuple[int, int] = (20000, 20999),
        **env: str,
    ) -> FleetNode:
        started.append(start_node(lab, k, redis, node_id, ports, **env))
        return started[-1]

    yield start
    for node in started:
        node.stop()


@pytest.fixture
def fleet_router(tmp_path: Path) -> Iterator[Callable[..., FleetRouter]]:
    """Start NG routers: `fleet_router(redis, ng_port=None, cluster_id=lab.cluster_id, KARL_X="v")`."""
    started: list[FleetRouter] = []

    def start(redis: RedisServer, ng_port: int | None = None, **env: str) -> FleetRouter:
        started.append(start_router(redis, ng_port, log_dir=tmp_path, **env))
        return started[-1]

    yield start
    for router in started:
        router.stop()


@pytest.fixture
def fleet(
    redis_server: RedisServer,
    netns_lab: Callable[..., NetnsLab],
    fleet_nodes: Callable[..., FleetNode],
    fleet_router: Callable[..., FleetRouter],
) -> Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]]:
    """`fleet(n, node_env={k: {...}})`: n nodes in namespaces 0..n-1, namespace n for the parties, a
    router. "{bridge_ip}" in a node's environment becomes the lab's bridge address (how a node reaches
    a server of the test's in the root namespace)."""

    def make(
        count: int = 3, node_env: dict[int, dict[str, str]] | None = None
    ) -> tuple[NetnsLab, list[FleetNode], FleetRouter]:
        lab = netns_lab(count + 1)

        def env_of(k: int) -> dict[str, str]:
            return {
                name: value.replace("{bridge_ip}", lab.bridge_ip)
                for name, value in (node_env or {}).get(k, {}).items()
            }

        nodes = [fleet_nodes(lab, k, redis_server, f"node-{k}", **env_of(k)) for k in range(count)]
        client = redis_server.client()
        wait_for(lambda: len(client.keys("karl:node:*")) == count, timeout=10)
        router = fleet_router(redis_server, cluster_id=lab.cluster_id)
        # every node ready in the router's view (leases say ready one renewal after start-up)
        wait_for(
            lambda: metric(router_metrics(router), "karl_router_nodes", state="placeable") == count,
            timeout=10,
        )
        return lab, nodes, router

    return make


@pytest.fixture
def failover_controller(tmp_path: Path) -> Iterator[Callable[..., FailoverProcess]]:
    """Start failover controllers: `failover_controller(redis, "failover-1", KARL_X="v")`."""
    started: list[FailoverProcess] = []

    def start(redis: RedisServer, controller_id: str, **env: str) -> FailoverProcess:
        started.append(start_failover(redis, controller_id, log_dir=tmp_path, **env))
        return started[-1]

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    """`webhook_receiver(fail_first=0)`: an HTTP server for failover events, on 0.0.0.0 (the nodes reach
    it through the lab's bridge address: `receiver.url_on("{bridge_ip}")` in `fleet`'s node_env)."""
    started: list[WebhookReceiver] = []

    def start(fail_first: int = 0) -> WebhookReceiver:
        started.append(WebhookReceiver("0.0.0.0", fail_first))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()
