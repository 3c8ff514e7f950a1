"""SDES-SRTP calls next to plain ones, rtpengine and Karl side by side: the proxy's CPU per packet.

    .venv/bin/python bench/srtp.py [--calls 100] [--seconds 5] [--reps 3]

Each proxy in turn runs pinned to core 0; this process sends and receives on core 1. Per proxy,
repetition and kind of call, on a fresh proxy process: `--calls` calls are set up (offer from party A,
answer from party B), then every call sends one G.711 packet (172 bytes of RTP) each way every 20 ms
for `--seconds`:

- plain: RTP/AVP on both legs;
- srtp: party A is an SDES phone (`RTP/SAVP`, one `AES_CM_128_HMAC_SHA1_80` key of its own), relayed to
  party B as plain RTP/AVP (`transport-protocol: RTP/AVP`): the proxy decrypts what A sends and
  encrypts what B sends.

A's SRTP packets are protected before the clock starts (libsrtp through pylibsrtp), so the sender
costs the same for both kinds. The figure is the proxy's CPU time (user + system, /proc) over the
sending window divided by the packets that arrived at the far ends; "calls per core" is one core's
second divided by the CPU of one call's 100 packets per second. Medians of the repetitions with their
range; results in bench/results/<stamp>-srtp.json and .md. Traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import select
import socket
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pylibsrtp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procstat
import proxies
from ngclient import NGClient

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PARTY_IP = "127.0.0.1"
MEDIA_IP = "127.0.0.2"
PACKET_INTERVAL = 0.02
SUITE = "AES_CM_128_HMAC_SHA1_80"


def sdp(port: int, crypto: str | None = None) -> str:
    proto = "RTP/SAVP" if crypto else "RTP/AVP"
    return (
        "v=0\r\n"
        f"o=- {port} 1 IN IP4 {PARTY_IP}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {PARTY_IP}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} {proto} 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n" + (f"a=crypto:1 {SUITE} inline:{crypto}\r\n" if crypto else "") + "a=sendrecv\r\n"
    )


def media_port(reply: Any) -> int:
    if reply.get("result") != "ok":
        raise RuntimeError(f"NG error: {reply!r}")
    for line in str(reply["sdp"]).splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise RuntimeError("no audio in reply SDP")


def rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc) + b"\xd5" * 160


@dataclass
class Call:
    a: socket.socket
    b: socket.socket
    to_a_side: int  # where A sends (the port in the answer)
    to_b_side: int  # where B sends (the port in the offer)
    key: bytes | None  # A's SRTP master key and salt (srtp calls)


def set_up(ng: NGClient, count: int, srtp: bool, first_port: int, tag: str) -> list[Call]:
    calls = []
    for index in range(count):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind((PARTY_IP, first_port + 4 * index))
        b.bind((PARTY_IP, first_port + 4 * index + 2))
        key = os.urandom(30) if srtp else None
        crypto = base64.b64encode(key).decode() if key else None
        call_id = f"srtp-bench-{tag}-{index}"
        offer: dict[str, Any] = {
            "command": "offer",
            "call-id": call_id,
            "from-tag": "a",
            "sdp": sdp(a.getsockname()[1], crypto),
            "ICE": "remove",
        }
        if srtp:
            offer["transport-protocol"] = "RTP/AVP"
        to_b_side = media_port(ng.transact(offer).reply)
        answer = {
            "command": "answer",
            "call-id": call_id,
            "from-tag": "a",
            "to-tag": "b",
            "sdp": sdp(b.getsockname()[1]),
            "ICE": "remove",
        }
        to_a_side = media_port(ng.transact(answer).reply)
        calls.append(Call(a, b, to_a_side, to_b_side, key))
    return calls


def packets_of(call: Call, index: int, count: int) -> tuple[list[bytes], list[bytes]]:
    """What A and B send, in order: A's protected with its key for srtp calls."""
    from_a = [rtp(seq, 0x10000 + index) for seq in range(count)]
    if call.key is not None:
        policy = pylibsrtp.Policy(
            key=call.key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
        session = pylibsrtp.Session(policy)
        from_a = [session.protect(packet) for packet in from_a]
    from_b = [rtp(seq, 0x20000 + index) for seq in range(count)]
    return from_a, from_b


def send_and_receive(calls: list[Call], seconds: float, pid: int) -> tuple[int, int, float]:
    """Paced sending from this process (one packet per call and direction every 20 ms), receiving
    in between; returns (sent, received, proxy CPU seconds over the window)."""
    rounds = int(seconds / PACKET_INTERVAL)
    plans = [packets_of(call, index, rounds) for index, call in enumerate(calls)]
    receivers = [sock for call in calls for sock in (call.a, call.b)]
    for sock in receivers:
        sock.setblocking(False)
    received = sent = 0

    def drain() -> int:
        got = 0
        ready, _, _ = select.select(receivers, [], [], 0)
        for sock in ready:
            while True:
                try:
                    sock.recv(2048)
                except BlockingIOError:
                    break
                got += 1
        return got

    cpu0 = procstat.process_cpu_s(pid)
    start = time.monotonic()
    for round_index in range(rounds):
        for call, (from_a, from_b) in zip(calls, plans, strict=True):
            call.a.sendto(from_a[round_index], (MEDIA_IP, call.to_a_side))
            call.b.sendto(from_b[round_index], (MEDIA_IP, call.to_b_side))
            sent += 2
        received += drain()
        wait = start + (round_index + 1) * PACKET_INTERVAL - time.monotonic()
        while wait > 0:
            received += drain()
            time.sleep(min(wait, 0.002))
            wait = start + (round_index + 1) * PACKET_INTERVAL - time.monotonic()
    settle = time.monotonic() + 0.3
    while time.monotonic() < settle:
        received += drain()
        time.sleep(0.01)
    cpu1 = procstat.process_cpu_s(pid)
    return sent, received, cpu1 - cpu0


def one_run(name: str, srtp: bool, calls: int, seconds: float, log_dir: Path, tag: str) -> dict[str, Any]:
    rtp_size = 4 * calls + 100
    rtp_min = procstat.free_window(rtp_size, 16000, 32768)
    avoid = set(range(rtp_min, rtp_min + rtp_size))
    party_first = procstat.free_window(4 * calls + 8, 2048, 32768, avoid)
    avoid |= set(range(party_first, party_first + 4 * calls + 8))
    singles = procstat.free_window(8, 2048, 32768, avoid)
    ports = proxies.ProxyPorts(
        singles, rtp_min, rtp_min + rtp_size - 1, (singles + 2, singles + 4, singles + 6)
    )
    proxy = proxies.start(
        name, proxies.Launch(core=0, realtime_priority=0, media_ip=MEDIA_IP), ports, log_dir
    )
    try:
        with NGClient(*proxy.ng) as ng:
            set_up_calls = set_up(ng, calls, srtp, party_first, tag)
        try:
            sent, received, cpu = send_and_receive(set_up_calls, seconds, proxy.pid)
        finally:
            for call in set_up_calls:
                call.a.close()
                call.b.close()
    finally:
        proxy.stop()
    return {
        "proxy": name,
        "kind": "srtp" if srtp else "plain",
        "sent": sent,
        "received": received,
        "cpu_s": cpu,
        "cpu_us_per_packet": 1e6 * cpu / received if received else float("inf"),
    }


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}..{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1})
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    runs = []
    with tempfile.TemporaryDirectory(prefix="karl-srtp-bench-") as tmp:
        for rep in range(args.reps):
            for name in ("rtpengine", "karl"):
                for srtp in (False, True):
                    result = one_run(
                        name, srtp, args.calls, args.seconds, Path(tmp), f"{rep}{name[0]}{int(srtp)}"
                    )
                    runs.append(result)
                    print(
                        f"rep {rep + 1} {name} {result['kind']}: "
                        f"{result['cpu_us_per_packet']:.1f} µs per packet, "
                        f"{result['received']}/{result['sent']} packets",
                        flush=True,
                    )

    def figure(name: str, kind: str) -> list[float]:
        return [r["cpu_us_per_packet"] for r in runs if r["proxy"] == name and r["kind"] == kind]

    rows = [
        "| Proxy CPU per packet (µs) | plain | SRTP ↔ RTP | SRTP / plain | calls per core, plain "
        "| calls per core, SRTP |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    summary: dict[str, Any] = {}
    for name in ("rtpengine", "karl"):
        plain, srtp = statistics.median(figure(name, "plain")), statistics.median(figure(name, "srtp"))
        summary[name] = {"plain_us": plain, "srtp_us": srtp, "calls_per_core_srtp": 1e6 / (100 * srtp)}
        rows.append(
            f"| {name} | {median_range(figure(name, 'plain'))} | {median_range(figure(name, 'srtp'))} | "
            f"{srtp / plain:.2f} | {1e6 / (100 * plain):,.0f} | {1e6 / (100 * srtp):,.0f} |"
        )
    ratio = summary["rtpengine"]["srtp_us"] / summary["karl"]["srtp_us"]
    table = "\n".join(
        [
            f"# SRTP run {stamp}: {args.calls} calls, {args.seconds} s, {args.reps} repetitions",
            "",
            *rows,
            "",
            f"SRTP calls per core, Karl / rtpengine: {ratio:.2f} (target ≥ 0.8).",
            "",
        ]
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{stamp}-srtp.json").write_text(
        json.dumps({"stamp": stamp, "args": vars(args), "runs": runs, "summary": summary}, indent=1)
    )
    (RESULTS_DIR / f"{stamp}-srtp.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
