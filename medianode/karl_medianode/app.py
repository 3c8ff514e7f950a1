"""The composition root: one media node with its optional parts, from start-up to a clean exit.

Order matters: admission control exists before the NG socket opens (it reads every datagram),
metrics attach right after the node starts (so no ended call is missed), the CDR writer and the
HTTP servers follow, and shutdown runs in reverse.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from karl_core.admission import build_admission
from karl_core.runtime import StartupError, tune_garbage_collection
from karl_medianode.node import MediaNode, NodeSettings
from karl_medianode.operations.cdr import CdrWriter
from karl_medianode.operations.http import start_http
from karl_medianode.operations.metrics import attach as attach_metrics

log = logging.getLogger("karl.node")


async def run_node(settings: NodeSettings) -> int:
    node = MediaNode(settings)
    config = node.config
    node.admission = build_admission(config)
    cdr: CdrWriter | None = None
    if config.cdr.enabled:
        try:
            cdr = CdrWriter(
                config.node.id, config.cdr.path, config.cdr.spool_dir, config.database.mysql_dsn or None
            )
        except ValueError as exc:  # the message never contains the password
            log.error(
                "invalid configuration: database.mysql_dsn (KARL_MYSQL_DSN): %s",
                exc,
                extra={"event": "startup_failed"},
            )
            return 2
    try:
        await node.start()
    except StartupError as exc:
        log.error("%s", exc, extra={"event": "startup_failed"})
        return 1
    attach_metrics(node)
    try:
        if cdr is not None:
            await cdr.start()
            node.cdr = cdr
            if node.fleet is not None:
                node.fleet.cdr_sink = cdr.submit  # only the call's holder writes its CDR
            else:
                node.call_ended_listeners.append(cdr.submit)
        node.http = await start_http(node)
    except (StartupError, OSError, ValueError) as exc:
        log.error("%s", exc, extra={"event": "startup_failed"})
        await node.shutdown()
        if cdr is not None:
            await cdr.stop(1.0)
        return 1
    node.startup_complete = True
    tune_garbage_collection()

    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            node.request_stop()
        else:
            node.settings.shutdown_grace = 0

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await node.run_until_stopped()
    if node.http is not None:
        await node.http.stop()
    if cdr is not None:
        await cdr.stop(5.0)
    return 0
