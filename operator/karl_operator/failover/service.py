"""`karl-operator failover` as a process: Redis, the controller, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from karl_core.config import KarlConfig
from karl_core.state.fleet_state import FleetState, StateUnavailable
from karl_core.state.redis_connection import RedisSettings, connect
from karl_core.state.redis_keys import KeySchema
from karl_core.state.resp import lean_client
from karl_operator.failover.controller import FailoverController
from karl_operator.failover.metrics import FailoverCollector

log = logging.getLogger("karl.failover")


async def serve_metrics(controller: FailoverController, config: KarlConfig) -> web.AppRunner | None:
    """/metrics on KARL_METRICS_ADDRESS:KARL_METRICS_PORT (0: none)."""
    if not config.metrics.port:
        return None
    registry = CollectorRegistry()
    registry.register(FailoverCollector(controller))

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.metrics.address, config.metrics.port).start()
    except OSError as exc:
        log.error("cannot serve metrics on port %d: %s", config.metrics.port, exc)
        await runner.cleanup()
        return None
    return runner


async def run_failover(config: KarlConfig) -> int:
    """`karl-operator failover`: the controller until SIGTERM/SIGINT, with its metrics."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await failover_until(config, stopping.wait, with_metrics=True)
    return 0


async def failover_until(
    config: KarlConfig,
    stop: Callable[[], Awaitable[object]],
    *,
    with_metrics: bool = False,
    running: Callable[[FailoverController | None], None] | None = None,
) -> None:
    """Run a failover controller for the fleet whose Redis `config` names until `stop()` returns; it
    resigns its leadership on the way out. The operator runs one per KarlCluster."""
    settings = RedisSettings.from_config(config.database)
    state = FleetState(connect(settings), KeySchema(settings.prefix), lean=lean_client(settings))
    controller = FailoverController(state, config.node.id, config.database.failover_restart_grace)
    loop = asyncio.get_running_loop()
    log.info(
        "failover controller started",
        extra={
            "event": "failover_started",
            "controller_id": config.node.id,
            "redis": settings.describe(),
            "restart_grace": config.database.failover_restart_grace,
        },
    )
    runner = await serve_metrics(controller, config) if with_metrics else None
    task = loop.create_task(controller.run())
    if running is not None:
        running(controller)  # (the operator tells it which nodes Kubernetes lost)
    try:
        await stop()
    finally:
        if running is not None:
            running(None)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(StateUnavailable):
            await controller.failover.resign(config.node.id)
        if runner is not None:
            await runner.cleanup()
        await state.client.aclose()
        if state.lean is not None:
            state.lean.close()
        log.info("failover controller stopped", extra={"event": "failover_stopped"})
