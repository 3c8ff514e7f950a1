"""A jitter buffer for relayed RTP, sans-IO: packets in, the same packets out in sequence order at the
pace their RTP timestamps say, a little later.

Each packet gets a playout time: an anchor (the arrival time of the first packet of its SSRC), plus the
RTP time elapsed since that packet (timestamp difference / clock rate), plus the buffer's delay. Packets
leave in sequence order once their playout time has come, so reordering and bursts on the way in are
smoothed out. The delay is `min_delay`, or in adaptive mode three times the interarrival jitter (RFC 3550
estimator) bounded by `min_delay` and `max_delay`: it grows at once when jitter grows and shrinks by at
most 1 ms per packet, so playout stays in order. The anchor follows the earliest arrivals: a packet that
comes earlier than the anchor predicts moves it back by up to 1 ms, so latency added by a late anchor (a
first packet that was late, a stall of the path) is given back within seconds.

A relay must not lose media, so nothing is ever dropped here: a packet behind one already released
(late, or a duplicate) goes out at once; a packet already behind its playout time, or one that would wait
longer than `max_delay`, re-anchors the schedule at itself (the sender's clock drifted, a burst of delay
came, the timestamps jumped: an announcement); a packet with the timestamp of the one before (the
updates of a DTMF event, the packets of one video frame) that is behind schedule just leaves at once,
without moving the anchor; a new SSRC flushes what is buffered; beyond `capacity` waiting packets, a
packet goes out at once.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

_TS_HALF = 1 << 31
_TS_MOD = 1 << 32
_NONE = -(1 << 62)
"""No extended sequence number yet (a real one can be negative: 65535 right after a first 0)."""
DELAY_STEP_DOWN = 0.001
"""Seconds the delay may shrink per packet in adaptive mode."""
ANCHOR_STEP_BACK = 0.001
"""Seconds the anchor may move back per packet that arrives earlier than it predicts."""


@dataclass(slots=True)
class JitterBufferStats:
    buffered: int = 0
    """Packets that went through the buffer and left at their playout time."""
    immediate: int = 0
    """Packets sent on at once: late, duplicated, beyond max_delay or over capacity."""
    resyncs: int = 0
    """Times the schedule was re-anchored (new SSRC, packets arriving behind their playout time)."""


class JitterBuffer:
    def __init__(
        self,
        min_delay: float,
        max_delay: float,
        adaptive: bool = True,
        clock_rate: int = 8000,
        capacity: int = 256,
    ) -> None:
        if not 0 <= min_delay <= max_delay:
            raise ValueError(f"need 0 <= min_delay <= max_delay, got {min_delay} and {max_delay}")
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.adaptive = adaptive
        self.clock_rate = clock_rate
        self.capacity = capacity
        self.delay = min_delay
        self.jitter = 0.0
        """Interarrival jitter estimate, seconds."""
        self.stats = JitterBufferStats()
        self._heap: list[tuple[int, float, float, bytes]] = []  # (extended seq, playout, arrival, packet)
        self._ssrc: bytes | None = None
        self._base_arrival = 0.0
        self._base_ts = 0
        self._highest = _NONE  # extended sequence number of the newest packet seen
        self._released = _NONE  # extended sequence number of the last packet that left
        self._last_transit: float | None = None
        self._last_ts: int | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def next_due(self) -> float | None:
        """When the first waiting packet is due (None: nothing waits)."""
        return self._heap[0][1] if self._heap else None

    def _extend(self, seq: int) -> int:
        if self._highest == _NONE:
            return seq
        base = self._highest & ~0xFFFF
        candidates = (base - 0x10000 + seq, base + seq, base + 0x10000 + seq)
        return min(candidates, key=lambda ext: abs(ext - self._highest))

    def _elapsed(self, timestamp: int) -> float:
        diff = (timestamp - self._base_ts) % _TS_MOD
        if diff >= _TS_HALF:
            diff -= _TS_MOD
        return diff / self.clock_rate

    def _anchor(self, timestamp: int, now: float) -> None:
        self._base_arrival = now
        self._base_ts = timestamp
        self._last_transit = None  # transit times are relative to the anchor: start the estimate afresh

    def _adapt(self, timestamp: int, now: float) -> None:
        transit = now - self._elapsed(timestamp)
        if self._last_transit is not None:
            self.jitter += (abs(transit - self._last_transit) - self.jitter) / 16
        self._last_transit = transit
        if not self.adaptive:
            return
        target = min(self.max_delay, max(self.min_delay, 3 * self.jitter))
        self.delay = target if target > self.delay else max(target, self.delay - DELAY_STEP_DOWN)

    def push(self, packet: bytes, now: float, clock_rate: int | None = None) -> list[bytes]:
        """Take an RTP packet (at least 12 bytes) that arrived at `now`; returns packets to send at once
        (this one if it cannot wait, and the buffered ones a new SSRC flushes). `clock_rate` (of the
        packet's payload type) is taken when a new SSRC starts."""
        seq = packet[2] << 8 | packet[3]
        timestamp = int.from_bytes(packet[4:8], "big")
        ssrc = packet[8:12]
        out: list[bytes] = []
        if ssrc != self._ssrc:
            out = self.flush()
            self._ssrc = ssrc
            if clock_rate:
                self.clock_rate = clock_rate
            self._highest = self._released = _NONE
            self._anchor(timestamp, now)
            if out:
                self.stats.resyncs += 1
        ext = self._extend(seq)
        if ext <= self._released or any(entry[0] == ext for entry in self._heap):
            self.stats.immediate += 1
            out.append(packet)
            return out
        self._highest = max(self._highest, ext)
        self._adapt(timestamp, now)
        same_timestamp = timestamp == self._last_ts
        self._last_ts = timestamp
        expected = self._base_arrival + self._elapsed(timestamp)
        if expected > now:  # earlier than the anchor predicts: move it back a little
            self._base_arrival -= min(expected - now, ANCHOR_STEP_BACK)
        playout = self._base_arrival + self._elapsed(timestamp) + self.delay
        if playout < now and same_timestamp:
            playout = now  # a DTMF update or a frame's next packet: no reason to move the schedule
        elif playout < now or playout - now > self.max_delay:
            # off schedule (clock drift, a burst of delay, a timestamp jump): start it again here
            self._anchor(timestamp, now)
            self.stats.resyncs += 1
            playout = now + self.delay
        if len(self._heap) >= self.capacity:
            self.stats.immediate += 1
            out.append(packet)
            return out
        heapq.heappush(self._heap, (ext, playout, now, packet))
        return out

    def pop_due(self, now: float) -> list[tuple[bytes, float]]:
        """Packets whose playout time has come, in sequence order, each with the delay it spent here."""
        due: list[tuple[bytes, float]] = []
        heap = self._heap
        while heap and heap[0][1] <= now:
            ext, _playout, arrival, packet = heapq.heappop(heap)
            self._released = ext
            self.stats.buffered += 1
            due.append((packet, now - arrival))
        return due

    def flush(self) -> list[bytes]:
        """Everything waiting, in sequence order (for a new SSRC or a closing stream)."""
        packets = [entry[3] for entry in sorted(self._heap)]
        if self._heap:
            self._released = max(self._released, max(entry[0] for entry in self._heap))
        self._heap.clear()
        return packets
