"""A WebRTC endpoint for tests: aiortc's RTCPeerConnection (its own ICE, DTLS-SRTP and RTP stacks, no
code of Karl's) sending a sine tone as PCMU and reporting the frequency it hears. aioice skips
127.0.0.1, so run it in a network namespace of its own.

Protocol on stdin/stdout, one JSON object per line:
  --offer:  out {"sdp": offer}; in {"sdp": answer}
  --answer: in {"sdp": offer}; out {"sdp": answer}
  then it plays the tone and listens for `--seconds`
  out: {"state": connection state, "heard_hz": dominant frequency or null, "samples": count,
        "dtls": DTLS transport state, "error": str | null}
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import sys

import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

RATE = 8000
FRAME = 160


class Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self, hz: float) -> None:
        super().__init__()
        self.hz = hz
        self.sent = 0
        self.start: float | None = None

    async def recv(self) -> AudioFrame:
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        due = self.start + self.sent / RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self.sent) / RATE
        samples = (np.sin(2 * np.pi * self.hz * t) * 12000).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.sent
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent += FRAME
        return frame


def dominant_hz(samples: np.ndarray, rate: int) -> float | None:
    if len(samples) < rate // 4:
        return None
    window = samples[-rate:].astype(np.float64) * np.hanning(min(len(samples), rate))
    spectrum = np.abs(np.fft.rfft(window))
    spectrum[:5] = 0  # DC
    return float(np.fft.rfftfreq(len(window), 1 / rate)[int(np.argmax(spectrum))])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--offer", action="store_true")
    parser.add_argument("--hz", type=float, default=440.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver(Tone(args.hz), direction="sendrecv")
    pcmu = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"]
    transceiver.setCodecPreferences(pcmu)
    heard: list[np.ndarray] = []
    readers: list[asyncio.Future[None]] = []
    rates: list[int] = []
    result: dict[str, object] = {
        "state": None,
        "heard_hz": None,
        "samples": 0,
        "dtls": None,
        "error": None,
        "remote_reports": 0,
    }

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        async def read() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return  # the track ended (the connection closed)
                heard.append(frame.to_ndarray().reshape(-1))
                rates.append(frame.sample_rate)

        readers.append(asyncio.ensure_future(read()))

    async def read_line() -> dict[str, str]:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        return dict(json.loads(line))

    try:
        if args.offer:
            await pc.setLocalDescription(await pc.createOffer())
            print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
            answer = await read_line()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        else:
            offer = await read_line()
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
        deadline = loop.time() + 15
        while pc.connectionState not in ("connected", "failed") and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.seconds)
    except Exception as exc:  # reported to the test
        result["error"] = repr(exc)
    result["state"] = pc.connectionState
    # the other end's receiver reports on what this one sent: RTCP came through end to end
    stats = await pc.getStats()
    result["remote_reports"] = sum(1 for stat in stats.values() if stat.type == "remote-inbound-rtp")
    result["dtls"] = transceiver.sender.transport.state if transceiver.sender.transport else None
    if heard:
        samples = np.concatenate(heard)
        result["samples"] = len(samples)
        result["heard_hz"] = dominant_hz(samples, rates[-1])
    await pc.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
