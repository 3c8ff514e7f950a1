"""`karl-router`: the NG socket the proxies talk to, the fleet view, health probes and metrics.

The router keeps no state of its own beyond caches (owner cache, fleet view): run two or more behind
one address. What the proxies' addresses mean to nodes — the allow-list and per-source rate limits —
the router enforces itself with the same settings as a node (`KARL_NG_ALLOW`, `KARL_NG_RATE_LIMIT`,
`KARL_NG_BURST`): the nodes only ever see the routers."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from karl_core import __version__
from karl_core.admission import build_admission
from karl_core.config import KarlConfig
from karl_core.ng.commands import Command
from karl_core.ng.endpoint import Request
from karl_core.ng.node_link import NodeLink
from karl_core.ng.options import NgOptions
from karl_core.ng.server import NgProtocol
from karl_core.runtime import StartupError, bind_udp, tune_garbage_collection
from karl_core.state.fleet_state import FleetState
from karl_core.state.redis_connection import RedisSettings, connect
from karl_core.state.redis_keys import KeySchema
from karl_core.state.resp import lean_client
from karl_ngrouter.fleet_view import FleetView
from karl_ngrouter.metrics import RouterCollector
from karl_ngrouter.router import Router

log = logging.getLogger("karl.router")


@dataclass
class RouterApp:
    config: KarlConfig
    state: FleetState
    view: FleetView
    router: Router
    link: NodeLink
    protocol: NgProtocol | None = None
    started: float = field(default_factory=time.monotonic)
    _runners: list[web.AppRunner] = field(default_factory=list)

    def handle(self, command: Command, options: NgOptions, request: Request) -> Any:
        if command is Command.PING:
            return self.router.ping()
        if command in (Command.LIST, Command.STATISTICS):
            return self.router.fan_out(request, command, options)
        assert options.call_id is not None  # the options' checks refuse a call command without one
        return self.router.forward(request, command, options.call_id, options.supports_load_limit)

    # -- health --------------------------------------------------------------------------------------
    def detail(self) -> dict[str, Any]:
        view, now = self.view, time.monotonic()
        stats = self.state.stats
        nodes = {
            node_id: {
                "ng": status.lease.ng,
                "ready": status.lease.ready,
                "draining": status.lease.draining,
                "load": status.lease.load,
                "capacity": status.lease.capacity,
                "answering": view.answering(status),
                "lease_seen": status.gone_since is None,
                "last_pong_age": None if status.last_pong is None else round(now - status.last_pong, 3),
                "placement_weight": view.ring.weights.get(node_id, 0),
            }
            for node_id, status in sorted(view.nodes.items())
        }
        ready = self.ready_reasons()
        return {
            "status": "UP" if not ready else "DOWN",
            "reasons": ready,
            "version": __version__,
            "redis": {
                "status": "UP" if view.redis_reachable() else "DOWN",
                "address": RedisSettings.from_config(self.config.database).describe(),
                "last_answer_age": None if stats.last_ok is None else round(now - stats.last_ok, 3),
                "last_error": stats.last_error,
            },
            "members": view.members,
            "nodes": nodes,
        }

    def ready_reasons(self) -> list[str]:
        reasons = []
        if self.protocol is None:
            reasons.append("the NG socket is not open")
        if not self.view.redis_reachable():
            reasons.append("Redis does not answer")
        if not self.view.ready_nodes():
            reasons.append("no ready media node answers")
        return reasons

    async def start_http(self) -> None:
        async def probe(request: web.Request) -> web.Response:
            reasons = self.ready_reasons()
            return web.json_response(
                {"status": "UP" if not reasons else "DOWN", "reasons": reasons},
                status=503 if reasons else 200,
            )

        async def live(request: web.Request) -> web.Response:
            return web.json_response({"status": "UP"})

        async def detail(request: web.Request) -> web.Response:
            body = self.detail()
            return web.json_response(body, status=200 if body["status"] == "UP" else 503)

        registry = CollectorRegistry()
        registry.register(RouterCollector(self))

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        health = web.Application()
        health.router.add_get("/health", probe)
        health.router.add_get("/ready", probe)
        health.router.add_get("/live", live)
        health.router.add_get("/startup", live)
        health.router.add_get("/health/detail", detail)
        health.router.add_get("/metrics", metrics)
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", metrics)
        cfg = self.config
        for app, address, port in (
            (health, cfg.health.address, cfg.health.port),
            (metrics_app, cfg.metrics.address, cfg.metrics.port),
        ):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, address, port).start()
            except OSError as exc:
                await runner.cleanup()
                raise StartupError(f"cannot listen on {address}:{port}: {exc.strerror}") from None
            self._runners.append(runner)

    async def stop(self) -> None:
        self.view.stop()
        if self.protocol is not None:
            await self.protocol.drain(1.0)
            if self.protocol.transport is not None:
                self.protocol.transport.close()
        self.link.close()
        for runner in self._runners:
            await runner.cleanup()
        await self.state.client.aclose()
        if self.state.lean is not None:
            self.state.lean.close()


async def run_router(config: KarlConfig) -> int:
    settings = RedisSettings.from_config(config.database)
    client = connect(settings)
    state = FleetState(client, KeySchema(settings.prefix), lean=lean_client(settings))
    link = await NodeLink.open()
    view = FleetView(state, link)
    app = RouterApp(config, state, view, Router(state, view, link), link)
    loop = asyncio.get_running_loop()
    try:
        sock = bind_udp(config.ng_protocol.address, config.ng_protocol.udp_port, "NG")
        protocol = NgProtocol(
            lambda *_: None,
            admission=build_admission(config),
            forwarder=app.handle,
            shortcut=app.router.shortcut,
        )
        await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        app.protocol = protocol
        app.router.proxies = protocol.counters
        await app.start_http()
    except StartupError as exc:
        log.error("%s", exc, extra={"event": "startup_failed"})
        await app.stop()
        return 1
    view.start()
    tune_garbage_collection()
    log.info(
        "NG router started",
        extra={
            "event": "router_started",
            "ng": f"{config.ng_protocol.address}:{config.ng_protocol.udp_port}",
            "redis": settings.describe(),
            "router_id": config.node.id,
        },
    )
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("NG router stopping", extra={"event": "router_stopping"})
    await app.stop()
    return 0
