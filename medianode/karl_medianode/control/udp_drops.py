"""Datagrams the kernel dropped on one of our UDP sockets because its receive buffer was full.

Karl answers NG requests one at a time, in arrival order, with nothing queued in the process: the only
queue is the NG socket's receive buffer. A burst larger than that buffer (say 10,000 requests at once)
is cut by the kernel, which counts each datagram it dropped per socket in `/proc/net/udp` (column
`drops`). Proxies retransmit what got no answer. Read at scrape time only.
"""

from __future__ import annotations

import os
import socket

_TABLES = {socket.AF_INET: "/proc/net/udp", socket.AF_INET6: "/proc/net/udp6"}


def receive_drops(sock: socket.socket) -> int | None:
    """The kernel's drop count for `sock`, or None when it cannot be read (not Linux, closed socket)."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        with open(_TABLES.get(sock.family, "/proc/net/udp")) as table:
            next(table)  # header
            for line in table:
                fields = line.split()
                if len(fields) >= 13 and fields[9] == inode:
                    return int(fields[12])
    except (OSError, ValueError, StopIteration):
        return None
    return None
