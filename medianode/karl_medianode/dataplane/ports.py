"""Media port allocation: bound, non-blocking UDP sockets out of a configured port range."""

from __future__ import annotations

import errno
import ipaddress
import socket

from karl_medianode.engine.ports import PortRange, PortsExhausted

__all__ = ["DEFAULT_BUFFER_SIZE", "PortAllocator", "PortsExhausted"]

# Enough for a few hundred milliseconds of a busy stream; the kernel caps it at net.core.[rw]mem_max.
DEFAULT_BUFFER_SIZE = 256 * 1024

# Errors that mean "this port cannot be had" (another process holds it, or it is privileged): try the next.
_PORT_TAKEN = {errno.EADDRINUSE, errno.EACCES}
# Errors that mean "no socket can be had at all right now".
_NO_SOCKETS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class PortAllocator:
    """Hands out UDP sockets bound to `bind_ip` on ports `min_port..max_port` (inclusive).

    It is the engine's `PortPool`: `reserve_*` binds at once and keeps the socket until the relay
    `take`s it for an `OpenStream` effect (or `unreserve` closes it: the change was rolled back). The
    order is `PortRange`'s round-robin; ports bound by another process are skipped, and a port is never
    handed out twice while one of our sockets holds it. `release` closes a taken socket and frees its
    port. `allocate_*` bind and take in one step (tools and tests that drive the relay directly).
    """

    def __init__(
        self,
        bind_ip: str,
        min_port: int,
        max_port: int,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        self.range = PortRange(min_port, max_port, self._claim, self._unclaim)
        self.bind_ip = bind_ip
        self.min_port = min_port
        self.max_port = max_port
        self.buffer_size = buffer_size
        self.family = socket.AF_INET6 if ipaddress.ip_address(bind_ip).version == 6 else socket.AF_INET
        self._reserved: dict[int, socket.socket] = {}
        self._owned: dict[socket.socket, int] = {}

    @property
    def capacity(self) -> int:
        """Number of ports in the range."""
        return self.range.capacity

    @property
    def in_use(self) -> int:
        """Number of ports held by sockets this allocator bound and that were not released."""
        return len(self.range.taken)

    @property
    def free(self) -> int:
        """Ports of the range not held by us (some may still be held by other processes)."""
        return self.capacity - self.in_use

    # ---- the engine's PortPool

    def reserve_pair(self) -> tuple[int, int]:
        return self.range.reserve_pair()

    def reserve_single(self) -> int:
        return self.range.reserve_single()

    def reserve_port(self, port: int) -> int:
        return self.range.reserve_port(port)

    def unreserve(self, port: int) -> None:
        self.range.unreserve(port)

    def take(self, port: int) -> socket.socket:
        """The bound socket of a reserved port, handed to the relay (which `release`s it when done)."""
        sock = self._reserved.pop(port)
        self._owned[sock] = port
        return sock

    # ---- bound sockets in one step

    def allocate_pair(self) -> tuple[socket.socket, socket.socket]:
        """An even port for RTP and the next (odd) one for RTCP, both bound."""
        rtp, rtcp = self.reserve_pair()
        return self.take(rtp), self.take(rtcp)

    def allocate_single(self) -> socket.socket:
        """One bound socket on any free port (rtcp-mux `require`: no RTCP port)."""
        return self.take(self.reserve_single())

    def allocate_port(self, port: int) -> socket.socket:
        """That very port, bound (a restored call keeps its ports); PortsExhausted when it cannot be had."""
        return self.take(self.reserve_port(port))

    def port_of(self, sock: socket.socket) -> int | None:
        """The port of a socket handed out and not yet released."""
        return self._owned.get(sock)

    def close_keeping_port(self, sock: socket.socket) -> None:
        """Close `sock` but keep its port taken until `unreserve` (its stream is still counted as open
        by the engine)."""
        self._owned.pop(sock, None)
        sock.close()

    def release(self, sock: socket.socket) -> None:
        """Close `sock` and make its port available again. Releasing twice is harmless."""
        port = self._owned.pop(sock, None)
        sock.close()
        if port is not None:
            self.range.unreserve(port)

    def owns(self, sock: socket.socket) -> bool:
        return sock in self._owned

    def _claim(self, port: int) -> bool:
        sock = self._bind(port)
        if sock is None:
            return False
        self._reserved[port] = sock
        return True

    def _unclaim(self, port: int) -> None:
        sock = self._reserved.pop(port, None)
        if sock is not None:
            sock.close()

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
