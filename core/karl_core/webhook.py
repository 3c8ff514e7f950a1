"""Delivery of failover events to `KARL_FAILOVER_WEBHOOK_URL` (by the nodes: for the calls they take
up, and for the calls failover could not keep): an HTTP POST of the event as JSON, in
the order the events came, each until the receiver answers 2xx — at least once: a receiver may get an
event twice and recognises it by its `event_id`. A failed attempt is retried with a growing wait (half
a second, doubling up to 30 s). The queue is bounded; when it is full the oldest event is dropped,
counted and logged. Events live in the node's memory: a node that dies before it delivered them has
moved nothing any more (its calls move again, with new events)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from karl_core.logs import LogThrottle

log = logging.getLogger("karl.fleet")

EVENT_NAMESPACE = uuid.UUID("5f0d6a52-6c2b-4c8e-9a9f-4b6f1d0c2a11")


def event_id(*parts: object) -> str:
    """The id of an event, the same for every copy of it (the receiver de-duplicates by it)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, "\x00".join(str(part) for part in parts)))


FIRST_RETRY = 0.5
LAST_RETRY = 30.0
ATTEMPT_TIMEOUT = 3.0
QUEUE_LIMIT = 10_000


@dataclass
class WebhookCounters:
    delivered: int = 0
    failed_attempts: int = 0
    dropped: int = 0


class WebhookSender:
    def __init__(self, url: str, queue_limit: int = QUEUE_LIMIT) -> None:
        self.url = url
        self.counters = WebhookCounters()
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._limit = queue_limit
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._throttle = LogThrottle(30.0)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, event: dict[str, Any]) -> None:
        if len(self._queue) >= self._limit:
            dropped = self._queue.popleft()
            self.counters.dropped += 1
            log.error(
                "failover webhook queue full: event %s for call %s dropped",
                dropped.get("event_id"),
                dropped.get("call_id"),
                extra={"event": "webhook_dropped", "call_id": dropped.get("call_id")},
            )
        self._queue.append(event)
        self._wake.set()

    async def stop(self, timeout: float = 2.0) -> None:
        """Give what is queued `timeout` seconds to go out, then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._queue and self._task is not None and not self._task.done():
                    await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                event = self._queue[0]
                wait = FIRST_RETRY
                while not await self._deliver(session, event):
                    await asyncio.sleep(wait)
                    wait = min(LAST_RETRY, wait * 2)
                if self._queue and self._queue[0] is event:
                    self._queue.popleft()

    async def _deliver(self, session: aiohttp.ClientSession, event: dict[str, Any]) -> bool:
        body = json.dumps(event, separators=(",", ":"))
        try:
            async with session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as reply:
                if 200 <= reply.status < 300:
                    self.counters.delivered += 1
                    return True
                why = f"HTTP {reply.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.counters.failed_attempts += 1
        suppressed = self._throttle.allow("webhook")
        if suppressed is not None:
            log.warning(
                "failover webhook %s failed (%s); retrying%s",
                self.url,
                why,
                f" ({suppressed} similar suppressed)" if suppressed else "",
                extra={"event": "webhook_failed"},
            )
        return False
