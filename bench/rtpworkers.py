"""The two loops of the load generator, each run in its own forked process.

A *sender* paces RTP packets for its share of the streams: every stream sends one packet per period,
and the streams are spread evenly over the period so that the proxy sees a smooth rate, not bursts.
Each packet carries its stream id in the SSRC and its send time (CLOCK_MONOTONIC, ns, shared by all
processes of the host) in the first payload bytes.

A *receiver* owns a share of the endpoint sockets, timestamps each arriving packet and counts it per
direction (the low bit of the stream id) into a latency histogram.

Senders and receivers share the endpoint sockets (inherited through fork): an endpoint sends from and
receives on the same socket, as a symmetric-RTP phone does.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import select
import socket
import struct
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import latency

# RTP header (V=2, PT=0 PCMU, seq, timestamp, SSRC) followed by the send time.
_PACKET = struct.Struct("!BBHIIq")
_STAMP = struct.Struct("!Iq")  # SSRC and send time, read at offset 8
_MIN_SLOT_NS = 200_000
_RECEIVER_BOOST = 5


@dataclass(frozen=True)
class SendStream:
    sock: socket.socket
    dest: tuple[str, int] | None  # None: the socket is connected to its destination
    stream_id: int


@dataclass(frozen=True)
class Schedule:
    t0_ns: int
    end_ns: int
    pps_per_stream: float
    payload_size: int
    realtime_priority: int = 0  # > 0: senders run SCHED_FIFO at this priority, receivers one above


def _set_priority(realtime_priority: int, nice_boost: int) -> None:
    """Put this process ahead of others: real-time (SCHED_FIFO) if asked for, else a lower nice value.

    The receiver runs at a higher priority than the senders: a receiver waiting behind the senders
    leaves packets queued and reports the wait as latency. Without CAP_SYS_NICE nothing changes.
    """
    with contextlib.suppress(OSError):
        if realtime_priority > 0:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime_priority))
        elif nice_boost:
            os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) - nice_boost)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sender_main(streams: list[SendStream], schedule: Schedule, conn: Connection) -> None:
    gc.disable()
    _set_priority(schedule.realtime_priority, 0)
    period_ns = int(1e9 / schedule.pps_per_stream)
    slots = max(1, min(len(streams), period_ns // _MIN_SLOT_NS))
    groups: list[list[SendStream]] = [[] for _ in range(slots)]
    for k, stream in enumerate(streams):
        groups[k % slots].append(stream)
    buf = bytearray(schedule.payload_size)
    pack = _PACKET.pack_into
    now_ns = time.monotonic_ns
    sent = [0, 0]
    errors = 0
    max_lag_ns = 0
    j = 0
    while True:
        slot_t = schedule.t0_ns + j * period_ns // slots
        if slot_t >= schedule.end_ns:
            break
        lag = now_ns() - slot_t
        if lag < 0:
            time.sleep(-lag / 1e9)
        elif lag > max_lag_ns:
            max_lag_ns = lag
        number = j // slots  # the packet number of this period, the same for every stream
        seq = number & 0xFFFF
        ts = number * 160 & 0xFFFFFFFF
        for stream in groups[j % slots]:
            pack(buf, 0, 0x80, 0, seq, ts, stream.stream_id, now_ns())
            try:
                if stream.dest is None:
                    stream.sock.send(buf)
                else:
                    stream.sock.sendto(buf, stream.dest)
                sent[stream.stream_id & 1] += 1
            except OSError:
                errors += 1
        j += 1
    finished = now_ns()
    conn.send(
        {
            "sent": sent,
            "send_errors": errors,
            "max_lag_ms": max_lag_ns / 1e6,
            "finished_late_ms": max(0, finished - schedule.end_ns) / 1e6,
            "active_s": (finished - schedule.t0_ns) / 1e9,
            "cpu_s": _own_cpu_s(),
        }
    )
    conn.close()


def receiver_main(
    socks: list[socket.socket],
    schedule: Schedule,
    warm_ns: int,
    drain_ns: int,
    senders_done_ns: Synchronized[int],
    batch_s: float,
    conn: Connection,
) -> None:
    """Receive until ``drain_ns`` after the senders are done (the parent sets ``senders_done_ns``).

    Packets sent before ``schedule.t0_ns`` (left over from an earlier run) are counted as stale;
    latencies are recorded for packets sent after ``warm_ns``. With ``batch_s`` > 0 the receiver
    naps that long after each poll, so that one wake-up collects many packets: cheaper, but it
    inflates latency.
    """
    gc.disable()
    _set_priority(schedule.realtime_priority + 1 if schedule.realtime_priority else 0, _RECEIVER_BOOST)
    poller = select.epoll()
    receive: dict[int, Any] = {}
    for sock in socks:
        sock.setblocking(False)
        poller.register(sock.fileno(), select.EPOLLIN)
        receive[sock.fileno()] = sock.recv_into
    buf = bytearray(2048)
    unpack = _STAMP.unpack_from
    now_ns = time.monotonic_ns
    hist = latency.new_histogram()
    limit = latency.LIMIT_US
    received = [0, 0]
    stale = 0
    t0_ns = schedule.t0_ns
    stop_ns = 0  # checked against the senders' progress whenever it passes
    while True:
        now = now_ns()
        if now >= stop_ns:
            done = senders_done_ns.value
            if done and now >= done + drain_ns:
                break
            stop_ns = done + drain_ns if done else now + 20_000_000
        if batch_s:
            time.sleep(batch_s)
        for fd, _mask in poller.poll(min(0.02, max(0.0, (stop_ns - now) / 1e9))):
            try:
                size = receive[fd](buf)
            except OSError:  # nothing there after all, or an ICMP error from an earlier run
                continue
            arrived = now_ns()
            if size < 20:
                continue
            stream_id, sent_ns = unpack(buf, 8)
            if not t0_ns <= sent_ns <= arrived:
                stale += 1  # from an earlier run (or not ours at all)
                continue
            received[stream_id & 1] += 1
            if sent_ns >= warm_ns:
                us = (arrived - sent_ns) // 1000
                hist[us if us < limit else limit] += 1
    poller.close()
    conn.send({"received": received, "stale": stale, "latency": latency.sparse(hist), "cpu_s": _own_cpu_s()})
    conn.close()
