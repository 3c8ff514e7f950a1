"""Reply cache for NG retransmissions (sans-IO; the caller passes the clock in).

SIP proxies resend the identical datagram when a reply is late, and a resent `offer` must not
allocate new ports. rtpengine 10.5 (cookie_cache.c) therefore:

* keys replies by the **cookie alone** — not by sender, not by payload: a request reusing a cached
  cookie gets the cached reply byte-for-byte even if it carries another command;
* caches error replies too;
* keeps two generations swapped every 30 s, so an entry lives 30 to 60 s;
* makes a duplicate that arrives while the first copy is being processed wait, then answers it
  with the first copy's reply (no double processing).

The key here is any hashable the caller chooses: pass the cookie to behave exactly like
rtpengine, or ``(sender_address, cookie)`` to keep clients that reuse cookie values apart.

Differences from 10.5, all about bounded resources:

* the generation check runs on every call and drops both generations if two periods passed (10.5
  only ever swaps once per check);
* each generation holds at most `max_entries` replies; a full current generation is swapped out
  early, so a flood of unique keys costs at most ``2 * max_entries`` replies and evicts the
  oldest generation first;
* a key left "in progress" for longer than two generations (a handler that never called `finish`
  or `abandon`) is treated as absent, and at most `max_entries` keys can be in progress (the
  oldest is forgotten first).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass


class CacheStatus(enum.Enum):
    MISS = "miss"
    """Not cached and nobody is working on it: the caller must process the request and then call
    `finish` (or `abandon`); the key is now marked in progress."""
    PENDING = "pending"
    """Another copy is being processed: wait for its `finish` and send the same reply."""
    HIT = "hit"
    """Already answered: resend `CacheState.reply`."""


@dataclass(frozen=True, slots=True)
class CacheState:
    status: CacheStatus
    reply: bytes | None = None


_MISS = CacheState(CacheStatus.MISS)
_PENDING = CacheState(CacheStatus.PENDING)


class ReplyCache:
    """See the module docstring. Not thread-safe; one instance per event loop."""

    def __init__(self, generation_seconds: float = 30.0, max_entries: int = 65536) -> None:
        if generation_seconds <= 0:
            raise ValueError("generation_seconds must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.generation_seconds = generation_seconds
        self.max_entries = max_entries
        self._current: dict[Hashable, bytes] = {}
        self._old: dict[Hashable, bytes] = {}
        self._pending: dict[Hashable, float] = {}  # key -> when processing began
        self._swapped_at: float | None = None

    def __len__(self) -> int:
        """Number of cached replies (keys in progress are not counted)."""
        return len(self._current) + len(self._old)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def begin(self, key: Hashable, now: float) -> CacheState:
        """Look `key` up; on `MISS` the key is marked in progress."""
        self._age(now)
        reply = self._current.get(key)
        if reply is None:
            reply = self._old.get(key)
        if reply is not None:
            return CacheState(CacheStatus.HIT, reply)
        started = self._pending.get(key)
        if started is not None:
            if now - started < 2 * self.generation_seconds:
                return _PENDING
            del self._pending[key]  # stale: its handler never finished
        if len(self._pending) >= self.max_entries:
            del self._pending[next(iter(self._pending))]
        self._pending[key] = now
        return _MISS

    def finish(self, key: Hashable, reply: bytes, now: float) -> None:
        """Store the reply for `key` (replacing any cached one) and clear its in-progress mark.

        May be called without `begin` (rtpengine caches its "no payload" error that way).
        """
        self._age(now)
        self._pending.pop(key, None)
        self._old.pop(key, None)
        if key not in self._current and len(self._current) >= self.max_entries:
            self._swap(now)
        self._current[key] = reply

    def abandon(self, key: Hashable) -> None:
        """Processing ended without a reply: forget the in-progress mark (waiters must retry)."""
        self._pending.pop(key, None)

    def _age(self, now: float) -> None:
        if self._swapped_at is None:
            self._swapped_at = now
            return
        elapsed = now - self._swapped_at
        if elapsed >= 2 * self.generation_seconds:
            self._current = {}
            self._old = {}
            self._swapped_at = now
        elif elapsed >= self.generation_seconds:
            self._swap(now)

    def _swap(self, now: float) -> None:
        self._old = self._current
        self._current = {}
        self._swapped_at = now
