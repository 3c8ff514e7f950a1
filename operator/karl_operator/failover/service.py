"""`karl-operator failover` as a process: Redis, the controller, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from karl_core.config import KarlConfig
from karl_core.state.fleet_state import FleetState
from karl_core.state.redis_connection import RedisSettings, connect
from karl_core.state.redis_keys import KeySchema
from karl_core.state.resp import lean_client
from karl_operator.failover.controller import FailoverController

log = logging.getLogger("karl.failover")


async def run_failover(config: KarlConfig) -> int:
    settings = RedisSettings.from_config(config.database)
    state = FleetState(connect(settings), KeySchema(settings.prefix), lean=lean_client(settings))
    controller = FailoverController(state, config.node.id, config.database.failover_restart_grace)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.info(
        "failover controller started",
        extra={
            "event": "failover_started",
            "controller_id": config.node.id,
            "redis": settings.describe(),
            "restart_grace": config.database.failover_restart_grace,
        },
    )
    task = loop.create_task(controller.run())
    await stopping.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await state.client.aclose()
    if state.lean is not None:
        state.lean.close()
    log.info("failover controller stopped", extra={"event": "failover_stopped"})
    return 0
