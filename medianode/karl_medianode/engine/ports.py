"""Media ports as the engine sees them: numbers taken from and given back to a pool.

The engine never binds a socket. It asks a `PortPool` for ports; the pool the media node injects binds
them at once (binding is synchronous) and hands the bound sockets to the data plane when the engine's
`OpenStream` effects are applied. `PortRange` is the allocation order both share: round-robin through
the range, as rtpengine moves on from its last used port, so a port just released is not reused at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class PortsExhausted(Exception):
    """No free port (pair) is left in the range. The message is rtpengine's NG error text."""

    def __init__(self, message: str = "Ran out of ports") -> None:
        super().__init__(message)


class PortPool(Protocol):
    """Where the engine's ports come from. Every port handed out is either opened by an `OpenStream`
    effect or given back with `unreserve` (a change that failed). The port of a closed stream goes
    back to the pool through the data plane, once it has really let go of it (the relay does when the
    event loop closed the socket)."""

    def reserve_pair(self) -> tuple[int, int]:
        """An even port for RTP and the next one for RTCP."""
        ...

    def reserve_single(self) -> int:
        """Any one free port (rtcp-mux: no RTCP port)."""
        ...

    def reserve_port(self, port: int) -> int:
        """That very port (a restored call keeps its ports); PortsExhausted when it cannot be had."""
        ...

    def unreserve(self, port: int) -> None:
        """A reserved port the engine will not use after all (its change was rolled back)."""
        ...


def _always(port: int) -> bool:
    return True


def _nothing(port: int) -> None:
    return None


class PortRange:
    """Round-robin allocation over `min_port..max_port`. `claim(port)` may refuse a port (another
    process holds it: the media node binds there, and `unclaim` undoes that); without them every free
    port can be had — the pool of engine tests, which open no sockets."""

    def __init__(
        self,
        min_port: int,
        max_port: int,
        claim: Callable[[int], bool] = _always,
        unclaim: Callable[[int], None] = _nothing,
    ) -> None:
        if not 1 <= min_port <= max_port <= 65535:
            raise ValueError(f"invalid port range {min_port}..{max_port}")
        self.min_port = min_port
        self.max_port = max_port
        self._claim = claim
        self._unclaim = unclaim
        self.taken: set[int] = set()
        self._first_even = min_port + (min_port & 1)
        last_even = max_port - 1 - ((max_port - 1) & 1)
        self._pair_slots = max(0, (last_even - self._first_even) // 2 + 1)
        self._pair_cursor = 0
        self._single_cursor = 0

    @property
    def capacity(self) -> int:
        return self.max_port - self.min_port + 1

    def reserve_pair(self) -> tuple[int, int]:
        taken = self.taken
        for _ in range(self._pair_slots):
            port = self._first_even + 2 * self._pair_cursor
            self._pair_cursor = (self._pair_cursor + 1) % self._pair_slots
            if port in taken or port + 1 in taken:
                continue
            if not self._claim(port):
                continue
            taken.add(port)
            try:
                second = self._claim(port + 1)
            except BaseException:
                self.unreserve(port)
                raise
            if not second:
                self.unreserve(port)
                continue
            taken.add(port + 1)
            return port, port + 1
        raise PortsExhausted()

    def reserve_single(self) -> int:
        taken = self.taken
        capacity = self.capacity
        for _ in range(capacity):
            port = self.min_port + self._single_cursor
            self._single_cursor = (self._single_cursor + 1) % capacity
            if port in taken or not self._claim(port):
                continue
            taken.add(port)
            return port
        raise PortsExhausted()

    def reserve_port(self, port: int) -> int:
        if not self.min_port <= port <= self.max_port or port in self.taken or not self._claim(port):
            raise PortsExhausted()
        self.taken.add(port)
        return port

    def unreserve(self, port: int) -> None:
        self._unclaim(port)
        self.taken.discard(port)
