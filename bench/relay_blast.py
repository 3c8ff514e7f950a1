"""Blast RTP-sized datagrams through one relayed stream on loopback and report the relay's speed.

    .venv/bin/python bench/relay_blast.py [--packets 200000] [--size 172] [--window 64] [--mode karl]

A child process runs the relay on uvloop (one stream per party, sinks crossed, as a call would have);
this process sends from party A's socket to the relay and receives at party B, keeping at most
`--window` packets in flight so that nothing is lost to overrun. Reported: packets/s forwarded end to
end, and the relay process's CPU time (user + system, from getrusage) per forwarded packet.
`--mode naive` runs the smallest possible uvloop relay (transport.sendto to a fixed address) instead of
Karl's, for comparison on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"


def _rtp(seq: int, size: int) -> bytes:
    header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, 0x12345678)
    return header + b"\xd5" * (size - 12)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _relay_main(mode: str, packets: int, party_a: tuple[str, int], party_b: tuple[str, int]) -> None:
    import uvloop  # noqa: F401  (the loop is installed by the caller)

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    state: dict[str, Any] = {}

    def started() -> None:
        state["cpu0"] = _cpu()
        state["t0"] = time.perf_counter()

    def finished() -> None:
        state["cpu1"] = _cpu()
        state["t1"] = time.perf_counter()
        if not done.done():
            done.set_result(None)

    async def watch(count: Callable[[], int]) -> None:
        # Start at the first packet; stop at `packets`, or when nothing arrived for 0.2 s (drops).
        while count() == 0:
            await asyncio.sleep(0.0005)
        started()
        last, idle_since = -1, time.perf_counter()
        while count() < packets:
            await asyncio.sleep(0.001)
            now_count = count()
            if now_count != last:
                last, idle_since = now_count, time.perf_counter()
                state["cpu1"], state["t1"] = _cpu(), time.perf_counter()
            elif time.perf_counter() - idle_since > 0.2:
                done.set_result(None)
                return
        finished()

    if mode == "naive":
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for s in socks:
            s.bind((HOST, 0))
        out: list[asyncio.DatagramTransport] = []

        class Naive(asyncio.DatagramProtocol):
            def __init__(self, dest: tuple[str, int], index: int) -> None:
                self.dest, self.index, self.count = dest, index, 0

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.count += 1
                out[1 - self.index].sendto(data, self.dest)

        naive_a = Naive(party_b, 0)
        ta, _ = await loop.create_datagram_endpoint(lambda: naive_a, sock=socks[0])
        tb, _ = await loop.create_datagram_endpoint(lambda: Naive(party_a, 1), sock=socks[1])
        out.extend([ta, tb])
        ports = [s.getsockname()[1] for s in socks]
        watcher = asyncio.ensure_future(watch(lambda: naive_a.count))

        def stats() -> dict[str, int]:
            return {"a_packets": naive_a.count}

    else:
        from karl_core.session import EndpointLearning
        from karl_medianode.clock import CoarseClock
        from karl_medianode.dataplane.ports import PortAllocator
        from karl_medianode.dataplane.relay import Relay

        clock = CoarseClock()
        clock.start(loop)
        allocator = PortAllocator(HOST, 20000, 31999)
        relay = Relay(loop, clock, allocator.release)
        (a_rtp, _), (b_rtp, _) = allocator.allocate_pair(), allocator.allocate_pair()
        a = relay.open_stream(a_rtp, HOST)
        b = relay.open_stream(b_rtp, HOST)
        for stream, peer in ((a, party_a), (b, party_b)):
            stream.advertise(peer)
            stream.learning = EndpointLearning.IMMEDIATE
            stream.signalled(clock.now)
        a.sink, b.sink = b, a
        ports = [a.local_port, b.local_port]

        watcher = asyncio.ensure_future(watch(lambda: a.packets))

        def stats() -> dict[str, int]:
            return {"a_packets": a.packets, "a_malformed": a.malformed, "b_errors": b.errors}

    print(json.dumps({"ports": ports}), flush=True)
    await done
    watcher.cancel()
    result = {
        "relay_cpu_s": state["cpu1"] - state["cpu0"],
        "relay_wall_s": state["t1"] - state["t0"],
        "stats": stats(),
    }
    print(json.dumps(result), flush=True)


def _child(mode: str, packets: int, party_a: tuple[str, int], party_b: tuple[str, int]) -> None:
    import uvloop

    uvloop.run(_relay_main(mode, packets, party_a, party_b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=172)
    parser.add_argument("--window", type=int, default=0, help="packets in flight; 0 = blast, B never reads")
    parser.add_argument("--mode", choices=["karl", "naive"], default="karl")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        a_port, b_port = int(args.child[2]), int(args.child[3])
        _child(args.child[0], int(args.child[1]), (HOST, a_port), (HOST, b_port))
        return

    party_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    party_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (party_a, party_b):
        s.bind((HOST, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    party_b.settimeout(2.0)
    party_a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(os.path.join(root, part) for part in ("medianode", "core"))
    env = dict(os.environ, PYTHONPATH=path)
    child = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--packets",
            str(args.packets),
            "--child",
            args.mode,
            str(args.packets),
            str(party_a.getsockname()[1]),
            str(party_b.getsockname()[1]),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        relay_a_port = json.loads(child.stdout.readline())["ports"][0]
        target = (HOST, relay_a_port)
        payloads = [_rtp(i, args.size) for i in range(256)]
        received = sent = 0
        t0 = time.perf_counter()
        if args.window == 0:
            # Flat out, nothing read at B: the relay is the bottleneck; its own counters tell the rate.
            for sent in range(1, args.packets + 1):
                party_a.sendto(payloads[sent & 255], target)
        else:
            while sent < min(args.window, args.packets):
                party_a.sendto(payloads[sent & 255], target)
                sent += 1
            try:
                while received < args.packets:
                    party_b.recv(2048)
                    received += 1
                    if sent < args.packets:
                        party_a.sendto(payloads[sent & 255], target)
                        sent += 1
            except TimeoutError:
                pass
        elapsed = time.perf_counter() - t0
        result = json.loads(child.stdout.readline())
    finally:
        child.wait(timeout=10)
    relayed = result["stats"]["a_packets"]
    wall = result["relay_wall_s"]
    cpu_us = result["relay_cpu_s"] / max(relayed, 1) * 1e6
    print(f"mode={args.mode} packets={args.packets} size={args.size} window={args.window or 'none (blast)'}")
    if args.window:
        rate = received / elapsed
        print(f"end to end: {received}/{sent} received at B in {elapsed:.3f} s = {rate:,.0f} packets/s")
    else:
        print(f"sender: {sent} sent in {elapsed:.3f} s = {sent / elapsed:,.0f} packets/s")
    print(
        f"relay: {relayed} packets relayed in {wall:.3f} s wall = {relayed / wall:,.0f} packets/s; "
        f"CPU {result['relay_cpu_s']:.3f} s = {cpu_us:.2f} µs per packet"
    )
    print(f"relay counters {result['stats']}")


if __name__ == "__main__":
    main()
