"""One media node: binds the NG socket, runs the call engine and the relay, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from karl_core.config import KarlConfig
from karl_core.ng.commands import Command
from karl_core.ng.fleet import NODE_WIDE
from karl_core.ng.options import NgOptions
from karl_core.ng.server import NgProtocol
from karl_core.runtime import StartupError, bind_udp
from karl_core.state import FileCallStore, OwnerToken, StateDirInUse
from karl_core.state.redis_connection import RedisSettings
from karl_medianode.clock import CoarseClock
from karl_medianode.control.call_persistence import CallPersistence
from karl_medianode.control.engine_driver import EngineDriver
from karl_medianode.control.fleet_member import FleetMember
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import Relay
from karl_medianode.engine import CallEnded, EngineSettings
from karl_medianode.operations.node_stats import statistics

log = logging.getLogger("karl.node")


GARBAGE_LOG_INTERVAL = 30.0
"""Seconds between two log lines about garbage received on media ports."""
HANDOVER_WAIT = 10.0
"""Seconds a stopping fleet node waits for the failover controller to move the calls still up."""


@dataclass
class NodeSettings:
    ng_address: str
    ng_port: int
    media_ip: str
    advertised_ip: str
    port_min: int
    port_max: int
    engine: EngineSettings
    shutdown_grace: float = 10.0
    sweep_interval: float = 1.0
    # The whole configuration, for the parts that read more than the above (HTTP, CDRs, security).
    config: KarlConfig | None = None


class MediaNode:
    """Everything one media node runs; the HTTP servers, metrics and CDRs read its attributes."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.config = settings.config or KarlConfig()
        self.started = time.time()
        self.clock = CoarseClock()
        self.ports = PortAllocator(settings.media_ip, settings.port_min, settings.port_max)
        self.relay: Relay | None = None
        self.engine: EngineDriver | None = None
        self.ng: NgProtocol | None = None
        self.draining = False
        self.startup_complete = False
        # Event-loop health: lag of the last tick (seconds), the worst recently, and when it ticked.
        self.loop_lag = 0.0
        self.loop_lag_max = 0.0
        self.last_tick = time.monotonic()
        # Called with every CallEnded (CDRs, metrics); a failing listener never disturbs the others.
        self.call_ended_listeners: list[Callable[[CallEnded], None]] = []
        # Optional parts attached at start-up by other modules (see their docs): CDR writer, NG/API
        # admission control (allow-list, rate limits, blocks), HTTP servers.
        self.cdr: Any = None
        self.admission: Any = None
        self.http: Any = None
        self.persistence: CallPersistence | None = None
        self._file_store: FileCallStore | None = None
        # A member of a fleet (KARL_REDIS_ENABLED): lease, call ownership and state in Redis.
        self.fleet: FleetMember | None = None
        self._stopping = asyncio.Event()
        self._handing_over: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def drain(self) -> None:
        """Stop taking new calls; calls in progress keep relaying. In a fleet, the calls still up when
        KARL_SHUTDOWN_GRACE runs out are handed to other nodes (as on SIGTERM, without stopping)."""
        self.draining = True
        if self.engine is not None:
            self.engine.accepting = False
        log.info("draining: no new calls", extra={"event": "node_draining"})
        if self.fleet is not None and (self._handing_over is None or self._handing_over.done()):
            self._handing_over = asyncio.get_running_loop().create_task(self._hand_over_after_grace())

    async def _hand_over_after_grace(self) -> None:
        assert self.engine is not None and self.fleet is not None
        deadline = time.monotonic() + self.settings.shutdown_grace
        while self.engine.active_calls() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.draining and self.fleet.owned:
            # their old copies here keep relaying until the parties move to the new node; the media
            # timeout then ends them, with no CDR (the new holders write those)
            await self.fleet.hand_over(HANDOVER_WAIT)

    def undrain(self) -> None:
        if self._handing_over is not None:
            self._handing_over.cancel()
            if self.fleet is not None:  # a hand-over asked for already is called off
                task = asyncio.get_running_loop().create_task(self.fleet.cancel_hand_over())
                self._tasks.append(task)
        self.draining = False
        if self.engine is not None and not self._stopping.is_set():
            self.engine.accepting = True
        log.info("taking new calls again", extra={"event": "node_undrained"})

    def _call_ended(self, ended: CallEnded) -> None:
        for listener in self.call_ended_listeners:
            try:
                listener(ended)
            except Exception:
                log.exception("call-ended listener failed", extra={"call_id": ended.call_id})

    async def _loop_monitor(self, interval: float = 0.25) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + interval
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - expected)
            self.loop_lag = lag
            self.loop_lag_max = max(lag, self.loop_lag_max * 0.95)
            self.last_tick = time.monotonic()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        ng_sock = bind_udp(s.ng_address, s.ng_port, "NG")
        try:
            bind_udp(s.media_ip, 0, "media").close()
        except StartupError as exc:
            ng_sock.close()
            raise StartupError(f"media address {s.media_ip} (KARL_MEDIA_IP) is unusable: {exc}") from None
        self.clock.start(loop)
        self.relay = Relay(loop, self.clock, self.ports.release)
        self.engine = EngineDriver(s.engine, self.ports, self.relay, self.clock, self._call_ended)
        if self.config.database.redis_enabled:
            if self.config.state.dir:
                log.warning(
                    "state.dir (KARL_STATE_DIR) is not used: the fleet keeps calls in Redis",
                    extra={"event": "state_dir_ignored"},
                )
            self.fleet = FleetMember(self, RedisSettings.from_config(self.config.database))
            await self.fleet.start()
        elif self.config.state.dir:
            self._take_back_calls(self.config.state.dir)
        ng = self.ng = NgProtocol(self.dispatch, admission=self.admission)
        await loop.create_datagram_endpoint(lambda: ng, sock=ng_sock)
        self._tasks.append(loop.create_task(self._sweep_loop()))
        self._tasks.append(loop.create_task(self._loop_monitor()))
        log.info(
            "media node started",
            extra={
                "event": "node_started",
                "ng": f"{s.ng_address}:{s.ng_port}",
                "media_ip": s.media_ip,
                "advertised_ip": s.advertised_ip,
                "ports": f"{s.port_min}-{s.port_max}",
            },
        )

    def _take_back_calls(self, directory: str) -> None:
        """Keep calls in `directory` from now on, and restore the ones this node left there."""
        assert self.engine is not None
        try:
            store = FileCallStore(directory)
        except StateDirInUse as exc:
            raise StartupError(f"state.dir (KARL_STATE_DIR): {exc}") from None
        self._file_store = store
        self.persistence = CallPersistence(store, OwnerToken(self.config.node.id), self.engine)
        self.persistence.attach(self.call_ended_listeners)
        restored = self.persistence.restore_all(time.time())
        for path, why in store.unreadable:
            log.error("unreadable call state, kept in %s: %s", path, why, extra={"event": "restore_failed"})
        log.info(
            "calls restored from %s: %d",
            directory,
            restored,
            extra={"event": "calls_restored", "restored": restored},
        )

    async def _sweep_loop(self) -> None:
        assert self.engine is not None
        garbage_reported, garbage_logged_at = 0, 0.0
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            if self.fleet is not None and not self.fleet.may_act(self.fleet.clock()):
                # cut off from the fleet: the calls may be moving to other nodes, whose timers count now
                continue
            try:
                self.engine.handle_timer()
                self.engine.write_srtp_checkpoints()
            except Exception:
                log.exception("timer sweep failed")
            # garbage on the media ports: counted per packet, logged here at most every 30 s
            garbage = self.relay.counters.garbage if self.relay is not None else 0
            now = time.monotonic()
            if garbage > garbage_reported and now - garbage_logged_at >= GARBAGE_LOG_INTERVAL:
                log.warning(
                    "media ports received datagrams that are neither RTP nor valid RTCP (forwarded or "
                    "dropped as rtpengine does)",
                    extra={"event": "media_garbage", "datagrams": garbage - garbage_reported},
                )
                garbage_reported, garbage_logged_at = garbage, now

    def dispatch(
        self,
        command: Command,
        opts: NgOptions,
        addr: tuple[str, int],
        fits: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """Apply one NG request and return its reply. Synchronous: nothing else happens to any call
        while it runs, so requests for a call take effect one at a time, in arrival order. In a fleet,
        an awaitable when Redis must be asked or written first (`FleetMember.dispatch`)."""
        engine = self.engine
        assert engine is not None and self.ng is not None
        if command is Command.PING:
            return {"result": "pong"}
        if command is Command.STATISTICS:
            return {
                "result": "ok",
                "statistics": statistics(
                    engine.engine, self.ng.counters.by_proxy, time.time() - self.started
                ),
            }
        if self.fleet is not None and command not in NODE_WIDE:
            return self.fleet.dispatch(command, opts, fits)
        return engine.handle(command, opts, fits)

    def request_stop(self) -> None:
        self._stopping.set()
        if self.engine is not None:
            self.engine.accepting = False

    async def run_until_stopped(self) -> None:
        await self._stopping.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        engine = self.engine
        log.info("shutting down: no new calls", extra={"event": "node_stopping"})
        if self._handing_over is not None:
            self._handing_over.cancel()  # stopping hands over what is left itself
        if engine is not None:
            engine.accepting = False
            self.draining = True  # in a fleet, the lease says so: nothing is placed here any more
            deadline = time.monotonic() + self.settings.shutdown_grace
            while engine.active_calls() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if self.fleet is not None and engine.active_calls():
                # the calls still up go to other nodes, as in a failover (with their events)
                await self.fleet.hand_over(HANDOVER_WAIT)
            engine.close_all()
        if self.ng is not None:
            await self.ng.drain(1.0)
            if self.ng.transport is not None:
                self.ng.transport.close()
        if self.fleet is not None:
            await self.fleet.stop()
        if self._file_store is not None:
            self._file_store.close()  # the next node on this directory may write it
        for task in self._tasks:
            task.cancel()
        self.clock.stop()
        log.info("media node stopped", extra={"event": "node_stopped", "ports_in_use": self.ports.in_use})
