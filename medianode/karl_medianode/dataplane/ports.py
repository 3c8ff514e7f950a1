"""Media port allocation: bound, non-blocking UDP sockets out of a configured port range."""

from __future__ import annotations

import errno
import ipaddress
import socket

# Enough for a few hundred milliseconds of a busy stream; the kernel caps it at net.core.[rw]mem_max.
DEFAULT_BUFFER_SIZE = 256 * 1024

# Errors that mean "this port cannot be had" (another process holds it, or it is privileged): try the next.
_PORT_TAKEN = {errno.EADDRINUSE, errno.EACCES}
# Errors that mean "no socket can be had at all right now".
_NO_SOCKETS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class PortsExhausted(Exception):
    """No free port (pair) is left in the range. The message is rtpengine's NG error text."""

    def __init__(self, message: str = "Ran out of ports") -> None:
        super().__init__(message)


class PortAllocator:
    """Hands out UDP sockets bound to `bind_ip` on ports `min_port..max_port` (inclusive).

    Allocation goes round-robin through the range (as rtpengine moves on from its last used port), so a
    port that was just released is not reused at once. Ports bound by another process are skipped; a port
    is never handed out twice while one of our sockets holds it. `release` closes the socket and frees
    its port.
    """

    def __init__(
        self,
        bind_ip: str,
        min_port: int,
        max_port: int,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        if not 1 <= min_port <= max_port <= 65535:
            raise ValueError(f"invalid port range {min_port}..{max_port}")
        self.bind_ip = bind_ip
        self.min_port = min_port
        self.max_port = max_port
        self.buffer_size = buffer_size
        self.family = socket.AF_INET6 if ipaddress.ip_address(bind_ip).version == 6 else socket.AF_INET
        self._in_use: set[int] = set()
        self._owned: dict[socket.socket, int] = {}
        self._first_even = min_port + (min_port & 1)
        last_even = max_port - 1 - ((max_port - 1) & 1)
        self._pair_slots = max(0, (last_even - self._first_even) // 2 + 1)
        self._pair_cursor = 0
        self._single_cursor = 0

    @property
    def capacity(self) -> int:
        """Number of ports in the range."""
        return self.max_port - self.min_port + 1

    @property
    def in_use(self) -> int:
        """Number of ports held by sockets this allocator handed out and that were not released."""
        return len(self._in_use)

    @property
    def free(self) -> int:
        """Ports of the range not held by us (some may still be held by other processes)."""
        return self.capacity - len(self._in_use)

    def allocate_pair(self) -> tuple[socket.socket, socket.socket]:
        """An even port for RTP and the next (odd) one for RTCP, both bound."""
        in_use = self._in_use
        for _ in range(self._pair_slots):
            port = self._first_even + 2 * self._pair_cursor
            self._pair_cursor = (self._pair_cursor + 1) % self._pair_slots
            if port in in_use or port + 1 in in_use:
                continue
            rtp = self._bind(port)
            if rtp is None:
                continue
            rtcp = self._bind(port + 1)
            if rtcp is None:
                rtp.close()
                continue
            self._own(rtp, port)
            self._own(rtcp, port + 1)
            return rtp, rtcp
        raise PortsExhausted()

    def allocate_single(self) -> socket.socket:
        """One bound socket on any free port (rtcp-mux `require`: no RTCP port)."""
        in_use = self._in_use
        capacity = self.capacity
        for _ in range(capacity):
            port = self.min_port + self._single_cursor
            self._single_cursor = (self._single_cursor + 1) % capacity
            if port in in_use:
                continue
            sock = self._bind(port)
            if sock is None:
                continue
            self._own(sock, port)
            return sock
        raise PortsExhausted()

    def allocate_port(self, port: int) -> socket.socket:
        """That very port, bound (a restored call keeps its ports); PortsExhausted when it cannot be had."""
        if not self.min_port <= port <= self.max_port or port in self._in_use:
            raise PortsExhausted()
        sock = self._bind(port)
        if sock is None:
            raise PortsExhausted()
        self._own(sock, port)
        return sock

    def release(self, sock: socket.socket) -> None:
        """Close `sock` and make its port available again. Releasing twice is harmless."""
        port = self._owned.pop(sock, None)
        sock.close()
        if port is not None:
            self._in_use.discard(port)

    def owns(self, sock: socket.socket) -> bool:
        return sock in self._owned

    def _own(self, sock: socket.socket, port: int) -> None:
        self._owned[sock] = port
        self._in_use.add(port)

    def _bind(self, port: int) -> socket.socket | None:
        try:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
        except OSError as exc:
            if exc.errno in _NO_SOCKETS:
                raise PortsExhausted() from exc
            raise
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_size)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.buffer_size)
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.bind_ip, port))
        except OSError as exc:
            sock.close()
            if exc.errno in _PORT_TAKEN:
                return None
            raise
        return sock
