"""The jitter buffer as an opt-in stage of an RTP stream: the relay hands it the stream's RTP instead of
sending it, and a timer on the event loop sends each packet at its playout time (see
`rtp.jitter_buffer`). Only streams of nodes with `jitter_buffer.enabled` have one; the relay's own path
pays a single attribute check for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from karl_medianode.rtp.jitter_buffer import JitterBuffer

if TYPE_CHECKING:
    from karl_medianode.dataplane.relay import PacketStream


class JitterStage:
    __slots__ = ("_timer", "_timer_at", "buffer", "clock_rates", "loop", "on_delay", "stream")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stream: PacketStream,
        buffer: JitterBuffer,
        clock_rates: Mapping[int, int],
        on_delay: Callable[[float], None] | None = None,
    ) -> None:
        self.loop = loop
        self.stream = stream
        self.buffer = buffer
        self.clock_rates = clock_rates
        """Payload type → clock rate of the stream's media (for the RTP timestamps)."""
        self.on_delay = on_delay
        """Told how long each buffered packet waited, in seconds (node-wide statistics)."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def accept(self, data: bytes) -> None:
        """An RTP packet the relay received on the stream (already counted and checked)."""
        if 200 <= data[1] <= 204:  # RTCP a phone sent to the RTP port (RFC 5761): never delayed
            self._send(data)
            return
        rate = self.clock_rates.get(data[1] & 0x7F)
        try:
            for packet in self.buffer.push(data, self.loop.time(), rate):
                self._send(packet)
        finally:
            self._schedule()

    def _schedule(self) -> None:
        due = self.buffer.next_due()
        if due is None:
            self._cancel()
            return
        if self._timer is not None and self._timer_at <= due:
            return
        self._cancel()
        self._timer = self.loop.call_at(due, self._fire)
        self._timer_at = due

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        # uvloop fires timers on whole milliseconds and caches loop.time() per iteration: release
        # what was due at the time the timer was set for, or it would re-arm itself until then
        now = max(self.loop.time(), self._timer_at)
        try:
            for packet, waited in self.buffer.pop_due(now):
                self._send(packet)
                if self.on_delay is not None:
                    self.on_delay(waited)
        except Exception:
            self.stream.failures += 1
        self._schedule()

    def _send(self, data: bytes) -> None:
        self.stream.send_on(data)  # the relay's checks, made at the time the packet leaves

    def close(self) -> None:
        """The stream closes: stop the timer; what still waits goes nowhere (its socket is gone)."""
        self._cancel()
        self.buffer.flush()
