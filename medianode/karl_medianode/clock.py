"""A coarse clock the media hot path reads as an attribute instead of calling time functions."""

from __future__ import annotations

import asyncio
import time

DEFAULT_INTERVAL = 0.1


class CoarseClock:
    """`now` (wall clock, `time.time()`) and `mono` (`time.monotonic()`), refreshed every `interval`
    seconds by the event loop once `start`ed, and on demand by `tick()`."""

    __slots__ = ("_handle", "_interval", "_loop", "mono", "now")

    def __init__(self) -> None:
        self.now: float = time.time()
        self.mono: float = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._interval = DEFAULT_INTERVAL

    def tick(self) -> None:
        self.now = time.time()
        self.mono = time.monotonic()

    def start(self, loop: asyncio.AbstractEventLoop, interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.stop()
        self._loop = loop
        self._interval = interval
        self._refresh()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def _refresh(self) -> None:
        self.tick()
        if self._loop is not None:
            self._handle = self._loop.call_later(self._interval, self._refresh)
