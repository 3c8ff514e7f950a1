"""Where an offer + answer + delete cycle's time goes inside a media node, with no network and no client.

A `MediaNode` is started on a uvloop event loop in this process (its media sockets real, its NG socket
unused); the bench's G.711 cycle (`calls.py`: offer, answer, delete with delete-delay 0) is fed to the
node's NG protocol object as datagrams, the loop turning between requests so that packet streams are
attached and closed as on a live node. Reported: CPU µs per cycle without a profiler (the figure),
then the functions that took the most time under cProfile (which slows everything down about twice:
read the shares, not the absolute numbers). With `--parts`, instead of cProfile: the cycle split into
the parts of docs/performance.md ("Where a signalling request's time goes"), timed with wrappers around
the functions that do them (each wrapper adds about a microsecond per call).

With `--cdr` the node writes call records as `make run`'s does (a `CdrWriter` on a scratch file; its
I/O thread's CPU is the process's too).

    python bench/profile_cycle.py --cycles 2000 [--store] [--cdr] [--top 40] [--parts]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import importlib
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calls
from karl_core.config import KarlConfig
from karl_core.ng import bencode
from karl_medianode.cli import node_settings
from karl_medianode.node import MediaNode
from karl_medianode.operations.cdr import CdrWriter

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


async def run(
    cycles: int,
    store: bool,
    profile: cProfile.Profile | None,
    warmed_up: Callable[[], None] | None = None,
    cdr: bool = False,
) -> float:
    state_dir = tempfile.mkdtemp(prefix="karl-profile-") if store else None
    cdr_dir = tempfile.mkdtemp(prefix="karl-profile-cdr-") if cdr else None
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
    writer = CdrWriter("profile", f"{cdr_dir}/cdr.jsonl", None, None) if cdr_dir else None
    if writer is not None:
        await writer.start()
        node.call_ended_listeners.append(writer.submit)
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
        messages = calls.cycle("profile", index)
        return [b"%d_%d " % (index, n) + bencode.encode(m) for n, m in enumerate(messages)]

    async def cycle(requests: list[bytes]) -> None:
        for datagram in requests:
            await request(datagram)

    for index in range(200):  # warm up: caches, the allocator, the collector's freeze
        await cycle(datagrams(index))
    prepared = [datagrams(index) for index in range(200, 200 + cycles)]  # the client's work, beforehand
    if warmed_up is not None:
        warmed_up()
    started = time.process_time()
    if profile is not None:
        profile.enable()
    for requests in prepared:
        await cycle(requests)
    if profile is not None:
        profile.disable()
    spent = time.process_time() - started
    await node.shutdown()
    if writer is not None:
        await writer.stop()
    if cdr_dir is not None:
        shutil.rmtree(cdr_dir, ignore_errors=True)
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
    return spent / cycles * 1e6


_ENGINE = "karl_medianode.engine.engine"
_TIMED: dict[str, tuple[str, str]] = {
    "request": ("karl_core.ng.server", "NgProtocol.datagram_received"),
    "decode": ("karl_core.ng.server", "decode_command"),
    "options": ("karl_core.ng.server", "decode_options"),
    "reply": ("karl_core.ng.endpoint", "NgEndpoint.reply"),
    "dispatch": ("karl_medianode.node", "MediaNode.dispatch"),
    "engine": (_ENGINE, "CallEngine.handle"),
    "read": (_ENGINE, "read_sdp"),
    "write": (_ENGINE, "write_sdp"),
    "apply": ("karl_medianode.control.engine_driver", "EngineDriver.apply"),
    "store": ("karl_medianode.control.call_persistence", "CallPersistence.changed"),
    "store_end": ("karl_medianode.control.call_persistence", "CallPersistence.ended"),
    "cdr": ("karl_medianode.operations.cdr.writer", "CdrWriter.submit"),
}
"""The functions timed for `--parts`: (module, name there) — the name the caller looks up."""


def _time_parts() -> tuple[dict[str, list[int]], Callable[[], None]]:
    """Wrap the `_TIMED` functions; returns their total nanoseconds and calls, and a reset."""
    totals: dict[str, list[int]] = {}
    for part, (module_name, name) in _TIMED.items():
        owner: Any = importlib.import_module(module_name)
        *path, attribute = name.split(".")
        for step in path:
            owner = getattr(owner, step)
        function = getattr(owner, attribute)
        total = totals[part] = [0, 0]

        def timed(*args: Any, _function: Any = function, _total: list[int] = total, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return _function(*args, **kwargs)
            finally:
                _total[0] += time.perf_counter_ns() - started
                _total[1] += 1

        setattr(owner, attribute, functools.wraps(function)(timed))

    def reset() -> None:
        for total in totals.values():
            total[0] = total[1] = 0

    return totals, reset


def _print_parts(totals: dict[str, list[int]], cycles: int) -> None:
    us = {part: total[0] / cycles / 1000 for part, total in totals.items()}
    rows = [
        ("Engine: reading the two SDPs", us["read"]),
        ("Engine: writing the two SDPs sent on", us["write"]),
        ("Engine: everything else", us["engine"] - us["read"] - us["write"]),
        ("Driver: applying effects", us["apply"] - us["store"] - us["store_end"] - us["cdr"]),
        ("Driver: the call store (--store)", us["store"] + us["store_end"]),
        ("Node: call records, event-loop side (--cdr)", us["cdr"]),
        ("Node: the rest of dispatching", us["dispatch"] - us["engine"] - us["apply"]),
        ("NG: decoding three requests (bencode)", us["decode"]),
        ("NG: decoding three requests (options)", us["options"]),
        ("NG: encoding and caching three replies", us["reply"]),
        ("NG: the rest", us["request"] - us["decode"] - us["options"] - us["reply"] - us["dispatch"]),
    ]
    whole = us["request"]
    for label, value in rows:
        print(f"{label:42s} {value:7.1f} µs  {100 * value / whole:4.1f} %")
    print(f"{'All (wrappers included)':42s} {whole:7.1f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--store", action="store_true", help="with the file call store (KARL_STATE_DIR)")
    parser.add_argument("--cdr", action="store_true", help="with call records, as `make run` writes them")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--parts", action="store_true", help="the parts of a cycle (wrappers), no cProfile")
    args = parser.parse_args(argv)
    plain = uvloop.run(run(args.cycles, args.store, None, cdr=args.cdr))
    print(f"{plain:.0f} µs of CPU per offer+answer+delete cycle ({args.cycles} cycles, no profiler)")
    if args.parts:
        totals, reset = _time_parts()
        uvloop.run(run(args.cycles, args.store, None, warmed_up=reset, cdr=args.cdr))
        _print_parts(totals, args.cycles)
        return 0
    profile = cProfile.Profile()
    uvloop.run(run(args.cycles, args.store, profile, cdr=args.cdr))
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
