"""Where an offer + answer + delete cycle's time goes inside a media node, with no network and no client.

A `MediaNode` is started on a uvloop event loop in this process (its media sockets real, its NG socket
unused); the bench's G.711 cycle (`calls.py`: offer, answer, delete with delete-delay 0) is fed to the
node's NG protocol object as datagrams, the loop turning between requests so that packet streams are
attached and closed as on a live node. Reported: CPU µs per cycle without a profiler (the figure),
then the functions that took the most time under cProfile (which slows everything down about twice:
read the shares, not the absolute numbers).

    python bench/profile_cycle.py --cycles 2000 [--store] [--top 40]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calls
from karl_core.config import KarlConfig
from karl_core.ng import bencode
from karl_medianode.cli import node_settings
from karl_medianode.node import MediaNode

PEER = ("127.0.0.1", 50000)
MEDIA_IP = "127.0.0.1"


class _Replies:
    """The NG protocol's transport: keeps the last reply."""

    def __init__(self) -> None:
        self.last = b""

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.last = data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def run(cycles: int, store: bool, profile: cProfile.Profile | None) -> float:
    state_dir = tempfile.mkdtemp(prefix="karl-profile-") if store else None
    cfg = KarlConfig.model_validate(
        {
            "ng_protocol": {"address": "127.0.0.1", "udp_port": 0},
            "sessions": {"min_port": 20000, "max_port": 20999},
            "media": {"ip": MEDIA_IP},
            "state": {"dir": state_dir} if state_dir else {},
            "log": {"level": "warning"},
        }
    )
    node = MediaNode(node_settings(cfg))
    await node.start()
    assert node.ng is not None
    ng = node.ng
    replies = _Replies()
    ng.transport = replies  # type: ignore[assignment]

    async def request(datagram: bytes) -> None:
        ng.datagram_received(datagram, PEER)
        await asyncio.sleep(0)  # the loop attaches and closes packet streams, as it would between requests
        if b"6:result2:ok" not in replies.last:  # (not decoded: the client's work is not measured)
            raise RuntimeError(f"{datagram[:80]!r}: {replies.last[:300]!r}")

    def datagrams(index: int) -> list[bytes]:
        ids = calls.call_ids("profile", index)
        messages = [
            calls.offer(ids, "127.0.0.201", 6000 + 2 * (index % 500)),
            calls.answer(ids, "127.0.0.202", 8000 + 2 * (index % 500)),
            calls.delete(ids),
        ]
        return [b"%d_%d " % (index, n) + bencode.encode(m) for n, m in enumerate(messages)]

    async def cycle(requests: list[bytes]) -> None:
        for datagram in requests:
            await request(datagram)

    for index in range(200):  # warm up: caches, the allocator, the collector's freeze
        await cycle(datagrams(index))
    prepared = [datagrams(index) for index in range(200, 200 + cycles)]  # the client's work, beforehand
    started = time.process_time()
    if profile is not None:
        profile.enable()
    for requests in prepared:
        await cycle(requests)
    if profile is not None:
        profile.disable()
    spent = time.process_time() - started
    await node.shutdown()
    return spent / cycles * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--store", action="store_true", help="with the file call store (KARL_STATE_DIR)")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    plain = uvloop.run(run(args.cycles, args.store, None))
    print(f"{plain:.0f} µs of CPU per offer+answer+delete cycle ({args.cycles} cycles, no profiler)")
    profile = cProfile.Profile()
    uvloop.run(run(args.cycles, args.store, profile))
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
