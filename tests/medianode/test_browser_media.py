"""A real browser through Karl: Debian's Chromium, headless, driven by Playwright, in a network namespace
of its own (Chromium gathers no host candidate on loopback), with mDNS candidate obfuscation off and a
fake microphone playing a 440 Hz tone. It calls a plain RTP phone through Karl with the flags Kamailio's
`rtpengine_manage` sends for a browser, and is called by one; each side's dominant received frequency
(the browser's through WebAudio, the phone's by FFT of the PCMU it receives) proves audio both ways:
ICE, DTLS-SRTP and SRTP ↔ RTP through Karl with a stack that is not Python's."""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import struct
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from tests.medianode.test_webrtc_media import PHONE_HZ, RATE, TO_BROWSER, TO_PHONE, Phone, request

from fleet.fleet_kit import NetnsLab
from karl_testkit import free_port, free_port_block, make_party, sdp, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_HZ = 440.0

PAGE_SETUP = """
async (config) => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const pc = new RTCPeerConnection(config);
  window.pc = pc;
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  const pcmu = RTCRtpReceiver.getCapabilities('audio').codecs.filter(c => c.mimeType === 'audio/PCMU');
  pc.getTransceivers()[0].setCodecPreferences(pcmu);
  pc.ontrack = (event) => {
    const remote = event.streams[0] || new MediaStream([event.track]);
    const element = new Audio();  // Chrome feeds a remote stream to WebAudio only while it plays
    element.srcObject = remote; element.muted = true; element.play();
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    context.createMediaStreamSource(remote).connect(analyser);
    window.heard = () => {
      const bins = new Float32Array(analyser.frequencyBinCount);
      analyser.getFloatFrequencyData(bins);
      let best = 1;
      for (let i = 2; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
      return {hz: best * context.sampleRate / analyser.fftSize, level: bins[best]};
    };
  };
}
"""
GATHERED = """
async () => {
  const pc = window.pc;
  if (pc.iceGatheringState !== 'complete') {
    await new Promise(done => pc.addEventListener('icegatheringstatechange',
      () => pc.iceGatheringState === 'complete' && done()));
  }
  return pc.localDescription.sdp;
}
"""


def tone_wav(path: Path, hz: float, seconds: float = 20.0, rate: int = 48000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = (
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * n / rate)))
            for n in range(int(seconds * rate))
        )
        out.writeframes(b"".join(frames))
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetnsLab]:
    with NetnsLab(1, tmp_path, tag=None) as built:
        yield built


@contextlib.contextmanager
def chromium_page(lab: NetnsLab, tmp_path: Path) -> Iterator[Any]:
    """A new page of headless Chromium running in namespace 0 of the lab, its fake microphone playing
    `BROWSER_HZ`, mDNS candidate obfuscation off (closed on leaving)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    launcher = tmp_path / "chromium-in-namespace"
    launcher.write_text(f'#!/bin/sh\nexec {" ".join(lab.exec_prefix(0))} {CHROMIUM} "$@"\n')
    launcher.chmod(0o755)
    wav = tone_wav(tmp_path / "tone.wav", BROWSER_HZ)
    args = [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(launcher), args=args, headless=True)
        try:
            yield chromium.new_page()
        finally:
            chromium.close()


@pytest.fixture
def browser(lab: NetnsLab, tmp_path: Path) -> Iterator[Any]:
    """A page of headless Chromium running in namespace 0 of the lab."""
    with chromium_page(lab, tmp_path) as page:
        blank = tmp_path / "page.html"  # a file: URL is a secure context (getUserMedia, WebRTC)
        blank.write_text("<!doctype html><title>karl</title>")
        page.goto(blank.as_uri())
        yield page


def wait_heard(page: Any, hz: float, timeout: float = 10.0) -> dict[str, Any]:
    """What the page hears, once it is `hz` (or the last reading after `timeout`)."""
    page.wait_for_function(
        "() => window.pc && window.pc.connectionState === 'connected'", timeout=timeout * 1000
    )
    last: dict[str, Any] = {}
    for _ in range(int(timeout / 0.25)):
        last = page.evaluate("() => window.heard ? window.heard() : null") or {}
        if last and abs(last["hz"] - hz) < 15 and last["level"] > -80:
            return last
        page.wait_for_timeout(250)
    return last


def both_hear_each_other(page: Any, phone: Phone) -> None:
    """The browser hears the phone's tone and the phone (a second of) the browser's; stops the phone."""
    try:
        heard_by_browser = wait_heard(page, PHONE_HZ)
        wait_for(lambda: len(phone.heard) >= RATE, timeout=10)
    finally:
        heard_by_phone = phone.stop()
    assert heard_by_browser and abs(heard_by_browser["hz"] - PHONE_HZ) < 15, heard_by_browser
    assert heard_by_phone == pytest.approx(BROWSER_HZ, abs=10)


@pytest.mark.parametrize("browser_calls", [True, False], ids=["browser-calls-phone", "phone-calls-browser"])
def test_chromium_and_a_plain_phone_hear_each_other_through_karl(
    karl_factory, lab: NetnsLab, browser: Any, browser_calls: bool
) -> None:
    node = karl_factory(media_ip=lab.bridge_ip, KARL_DELETE_DELAY="0")
    party = make_party()
    phone = Phone(party.rtp)
    ids = {"call-id": f"chromium-{browser_calls}", "from-tag": "caller"}
    browser.evaluate(PAGE_SETUP, {})
    try:
        if browser_calls:
            browser.evaluate("async () => window.pc.setLocalDescription(await window.pc.createOffer())")
            offer = request(node, command="offer", sdp=browser.evaluate(GATHERED), **ids, **TO_PHONE)
            answer = request(
                node, command="answer", sdp=sdp(party.port), **ids, **{"to-tag": "callee"}, **TO_BROWSER
            )
            browser.evaluate("(sdp) => window.pc.setRemoteDescription({type: 'answer', sdp})", answer["sdp"])
            to_phone = offer["sdp"]
        else:
            offer = request(node, command="offer", sdp=sdp(party.port), **ids, **TO_BROWSER)
            browser.evaluate(
                """async (sdp) => {
                     await window.pc.setRemoteDescription({type: 'offer', sdp});
                     await window.pc.setLocalDescription(await window.pc.createAnswer());
                   }""",
                offer["sdp"],
            )
            answer = request(
                node,
                command="answer",
                sdp=browser.evaluate(GATHERED),
                **ids,
                **{"to-tag": "callee"},
                **TO_PHONE,
            )
            to_phone = answer["sdp"]
        karl_port = int(to_phone.split("m=audio ", 1)[1].split()[0])
        phone.start((node.media_ip, karl_port))
        both_hear_each_other(browser, phone)
    finally:
        phone.stop()
        party.close()
    query = request(node, command="query", **{"call-id": ids["call-id"]})
    flags = query["tags"]["caller" if browser_calls else "callee"]["medias"][0]["flags"]
    assert "ICE" in flags and "DTLS-SRTP" in flags, flags


def stun_answers(server: tuple[str, int]) -> bool:
    """A STUN Binding request to `server` is answered (coturn is up)."""
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        probe.sendto(bytes(request), server)
        try:
            reply = stun.parse_message(probe.recv(2048))
        except (TimeoutError, ValueError):
            return False
    return reply.transaction_id == request.transaction_id


@pytest.fixture
def turn(lab: NetnsLab, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """coturn in the root namespace on the lab's bridge address (long-term credentials karl/secret,
    relay ports below the ephemeral range)."""
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed (make test installs it)")
    port = free_port(lab.bridge_ip)
    relay_min = free_port_block(100, lab.bridge_ip)
    log = tmp_path / "turnserver.log"
    argv = [
        "turnserver",
        "-n",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--simple-log",
        f"--log-file={log}",
        f"--listening-ip={lab.bridge_ip}",
        f"--listening-port={port}",
        f"--relay-ip={lab.bridge_ip}",
        f"--min-port={relay_min}",
        f"--max-port={relay_min + 99}",
        "--lt-cred-mech",
        "--realm=karl.test",
        "--user=karl:secret",
        "--fingerprint",
        f"--pidfile={tmp_path / 'turnserver.pid'}",
        f"--userdb={tmp_path / 'turndb'}",
    ]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: stun_answers((lab.bridge_ip, port)), timeout=10)
        yield lab.bridge_ip, port
    finally:
        server.terminate()
        server.wait(10)


def test_chromium_forced_through_a_turn_relay_is_heard_through_karl(
    karl_factory, lab: NetnsLab, browser: Any, turn: tuple[str, int]
) -> None:
    """The browser may only use a relay candidate (`iceTransportPolicy: relay`): Karl's checks and
    media reach it through coturn, whose relay address is what ICE selects on the browser's leg."""
    node = karl_factory(media_ip=lab.bridge_ip, KARL_DELETE_DELAY="0")
    party = make_party()
    phone = Phone(party.rtp)
    ids = {"call-id": "chromium-turn", "from-tag": "caller"}
    turn_url = f"turn:{turn[0]}:{turn[1]}?transport=udp"
    config = {
        "iceServers": [{"urls": turn_url, "username": "karl", "credential": "secret"}],
        "iceTransportPolicy": "relay",
    }
    browser.evaluate(PAGE_SETUP, config)
    try:
        browser.evaluate("async () => window.pc.setLocalDescription(await window.pc.createOffer())")
        browser_offer = browser.evaluate(GATHERED)
        candidates = [line for line in browser_offer.splitlines() if line.startswith("a=candidate:")]
        assert candidates and all(" typ relay " in line for line in candidates), candidates
        offer = request(node, command="offer", sdp=browser_offer, **ids, **TO_PHONE)
        answer = request(
            node, command="answer", sdp=sdp(party.port), **ids, **{"to-tag": "callee"}, **TO_BROWSER
        )
        browser.evaluate("(sdp) => window.pc.setRemoteDescription({type: 'answer', sdp})", answer["sdp"])
        phone.start((node.media_ip, int(offer["sdp"].split("m=audio ", 1)[1].split()[0])))
        both_hear_each_other(browser, phone)
    finally:
        phone.stop()
        party.close()
    query = request(node, command="query", **{"call-id": ids["call-id"]})
    [stream, *_] = query["tags"]["caller"]["medias"][0]["streams"]
    # media to the browser goes to coturn's relay address (on the bridge), not to the namespace
    assert stream["endpoint"]["address"] == lab.bridge_ip and stream["endpoint"]["port"] != turn[1], stream
