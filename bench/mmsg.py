"""sendmmsg/recvmmsg through ctypes: several datagrams per system call on one socket.

Python's socket module has neither. The load generator uses them in burst mode, where each stream
sends a few packets back to back, so that the generator's own per-packet cost drops well below the
proxy's and the measurement is limited by the proxy, not by the generator.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int]
_libc.sendmmsg.restype = ctypes.c_int
_libc.recvmmsg.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_MMsgHdr),
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_void_p,
]
_libc.recvmmsg.restype = ctypes.c_int


class MessageBatch:
    """``count`` message buffers of ``size`` bytes each, wired up for sendmmsg/recvmmsg.

    No destination addresses: sending needs a connected socket.
    """

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.buffers = [ctypes.create_string_buffer(size) for _ in range(count)]
        self._iov = (_IoVec * count)()
        self._msgs = (_MMsgHdr * count)()
        for i, buf in enumerate(self.buffers):
            self._iov[i].iov_base = ctypes.addressof(buf)
            self._iov[i].iov_len = size
            self._msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1

    def send(self, fd: int, count: int) -> int:
        """Send the first ``count`` buffers; returns how many went out (raises OSError on failure)."""
        sent: int = _libc.sendmmsg(fd, self._msgs, count, 0)
        if sent < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return sent

    def receive(self, fd: int) -> int:
        """Receive up to ``count`` waiting datagrams without blocking; returns how many (0: none)."""
        got: int = _libc.recvmmsg(fd, self._msgs, self.count, MSG_DONTWAIT, None)
        if got < 0:
            return 0  # EAGAIN, or an ICMP error left on the socket by an earlier run
        return got

    def length(self, index: int) -> int:
        return int(self._msgs[index].msg_len)
