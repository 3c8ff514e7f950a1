"""An independent ICE agent (aioice's own `Connection`, with its own sockets) for tests: run it in a
network namespace of its own (aioice skips 127.0.0.1, so it needs a real interface).

Protocol on stdin/stdout, one JSON object per line:
  out: {"ufrag", "pwd", "candidates": [a=candidate values]}      (after gathering)
  in:  {"ufrag", "pwd", "candidates": [...]}                      (Karl's, from its SDP)
  ...  ICE runs; the peer sends `--packets` RTP packets with `--ssrc` every 20 ms and collects what
       arrives for `--listen` seconds
  out: {"connected": bool, "received": [hex of each datagram], "error": str | null}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time

from aioice import Candidate, Connection


def rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes([seq & 0xFF]) * 160


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--controlling", action="store_true")
    parser.add_argument("--packets", type=int, default=20)
    parser.add_argument("--ssrc", type=lambda v: int(v, 0), default=0xA11CE)
    parser.add_argument("--listen", type=float, default=3.0)
    args = parser.parse_args()
    conn = Connection(ice_controlling=args.controlling, components=1, use_ipv6=False)
    await conn.gather_candidates()
    print(json.dumps({
        "ufrag": conn.local_username,
        "pwd": conn.local_password,
        "candidates": [c.to_sdp() for c in conn.local_candidates],
    }), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    karl = json.loads(line)
    conn.remote_username, conn.remote_password = karl["ufrag"], karl["pwd"]
    for value in karl["candidates"]:
        await conn.add_remote_candidate(Candidate.from_sdp(value))
    await conn.add_remote_candidate(None)
    result: dict[str, object] = {"connected": False, "received": [], "error": None}
    try:
        await asyncio.wait_for(conn.connect(), 15)
        result["connected"] = True
        received: list[str] = []

        async def receive() -> None:
            while True:
                data, _component = await conn.recvfrom()
                received.append(data.hex())

        reader = asyncio.ensure_future(receive())
        for seq in range(args.packets):
            await conn.send(rtp(seq, args.ssrc))
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + args.listen
        while time.monotonic() < deadline and len(received) < args.packets:
            await asyncio.sleep(0.05)
        reader.cancel()
        result["received"] = received
    except Exception as exc:  # reported to the test, which fails with it
        result["error"] = repr(exc)
    finally:
        await conn.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
