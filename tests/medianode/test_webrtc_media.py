"""WebRTC ↔ SIP through a real Karl node: a WebRTC endpoint (aiortc's RTCPeerConnection, an independent
ICE/DTLS-SRTP/RTP stack, in a network namespace of its own) calls a plain RTP party and is called by
one, with the flags Kamailio's `rtpengine_manage` sends for a browser. Audio both ways is shown by the
frequency each side hears (FFT of the decoded samples), not by packet counts."""

from __future__ import annotations

import audioop
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pylibsrtp
import pytest

from fleet.fleet_kit import NetnsLab
from karl_testkit import NgServer, make_party, sdp

PEER = Path(__file__).resolve().parent.parent / "peers" / "webrtc_peer.py"
BROWSER_HZ, PHONE_HZ = 440.0, 1000.0
RATE = 8000

TO_PHONE = {"transport-protocol": "RTP/AVP", "ICE": "remove", "rtcp-mux": ["demux"]}
TO_BROWSER = {
    "transport-protocol": "UDP/TLS/RTP/SAVPF",
    "ICE": "force",
    "rtcp-mux": ["require"],
    "flags": ["generate-mid"],
}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetnsLab]:
    with NetnsLab(1, tmp_path, tag=None) as built:
        yield built


class WebRtcPeer:
    def __init__(self, lab: NetnsLab, *, offers: bool, seconds: float = 3.0, hz: float = BROWSER_HZ) -> None:
        argv = [sys.executable, str(PEER), "--hz", str(hz), "--seconds", str(seconds)]
        if offers:
            argv.append("--offer")
        self.proc = subprocess.Popen(
            [*lab.exec_prefix(0), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the WebRTC peer exited ({self.proc.wait(5)})"
        return dict(json.loads(line))

    def write(self, sdp_text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"sdp": sdp_text}) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Phone:
    """A plain RTP phone: sends a PCMU tone every 20 ms and keeps the PCMU it receives (a thread)."""

    def __init__(
        self,
        sock: socket.socket,
        protect: Callable[[bytes], bytes] | None = None,
        unprotect: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """`protect`/`unprotect`: an SRTP phone's (SDES keys), applied to what it sends and receives."""
        self.sock = sock
        self.protect, self.unprotect = protect, unprotect
        self.heard = bytearray()
        self.destination: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, destination: tuple[str, int]) -> None:
        self.destination = destination
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.005)
        seq, started = 0, time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() >= started + seq * 0.02:
                t = (np.arange(160) + seq * 160) / RATE
                linear = (np.sin(2 * np.pi * PHONE_HZ * t) * 12000).astype("<i2").tobytes()
                header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0xF0E)
                assert self.destination is not None
                packet = header + audioop.lin2ulaw(linear, 2)
                self.sock.sendto(self.protect(packet) if self.protect else packet, self.destination)
                seq += 1
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            if self.unprotect is not None:
                try:
                    data = self.unprotect(data)
                except Exception:
                    continue  # (RTCP, or not for these keys: not heard)
            if len(data) > 12 and data[0] & 0xC0 == 0x80 and data[1] & 0x7F == 0:
                self.heard += data[12:]

    def stop(self) -> float | None:
        """Stop sending (also when it never started; again is harmless); the frequency heard."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if len(self.heard) < RATE // 4:
            return None
        samples = np.frombuffer(audioop.ulaw2lin(bytes(self.heard[-RATE:]), 2), dtype="<i2").astype(float)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        spectrum[:5] = 0
        return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def request(node: NgServer, **message: Any) -> dict[str, Any]:
    reply = node.ng.request(message)
    assert reply["result"] == "ok", reply
    return reply


@pytest.mark.parametrize("browser_calls", [True, False], ids=["browser-calls-phone", "phone-calls-browser"])
def test_a_webrtc_endpoint_and_a_plain_phone_hear_each_other_through_karl(
    karl_factory, lab: NetnsLab, browser_calls: bool
) -> None:
    node = karl_factory(media_ip=lab.bridge_ip, KARL_DELETE_DELAY="0")
    party = make_party()
    phone = Phone(party.rtp)
    peer = WebRtcPeer(lab, offers=browser_calls)
    ids = {"call-id": f"webrtc-{browser_calls}", "from-tag": "caller"}
    try:
        if browser_calls:
            offer = request(node, command="offer", sdp=peer.read()["sdp"], **ids, **TO_PHONE)
            to_phone = offer["sdp"]
            assert "RTP/AVP" in to_phone and "a=fingerprint" not in to_phone and "a=candidate" not in to_phone
            answer = request(
                node, command="answer", sdp=sdp(party.port), **ids, **{"to-tag": "callee"}, **TO_BROWSER
            )
            to_browser = answer["sdp"]
            peer.write(to_browser)
        else:
            offer = request(node, command="offer", sdp=sdp(party.port), **ids, **TO_BROWSER)
            to_browser = offer["sdp"]
            peer.write(to_browser)
            answer = request(
                node, command="answer", sdp=peer.read()["sdp"], **ids, **{"to-tag": "callee"}, **TO_PHONE
            )
            to_phone = answer["sdp"]
        assert "UDP/TLS/RTP/SAVPF" in to_browser and "a=fingerprint:sha-256 " in to_browser, to_browser
        karl_port = int(to_phone.split("m=audio ", 1)[1].split()[0])
        phone.start((node.media_ip, karl_port))
        result = peer.read()
    finally:
        heard_by_phone = phone.stop()
        peer.close()
        party.close()
    assert result["error"] is None and result["state"] == "connected", result
    assert result["dtls"] == "connected", result
    assert result["heard_hz"] == pytest.approx(PHONE_HZ, abs=10), result
    assert heard_by_phone == pytest.approx(BROWSER_HZ, abs=10)
    query = request(node, command="query", **{"call-id": ids["call-id"]})
    browser = "caller" if browser_calls else "callee"
    flags = query["tags"][browser]["medias"][0]["flags"]
    assert "ICE" in flags and "DTLS-SRTP" in flags, flags


def test_two_webrtc_endpoints_hear_each_other_and_get_each_others_rtcp_through_karl(
    karl_factory, lab: NetnsLab
) -> None:
    """Browser to browser through Karl (both legs `UDP/TLS/RTP/SAVPF`, ICE and DTLS terminated on each):
    each hears the other's tone, each gets the other's receiver reports (RTCP decrypted on one leg and
    encrypted on the other), and what a browser offers for its RTP (`a=extmap` header extensions,
    `a=rtcp-fb` feedback) reaches the other one."""
    node = karl_factory(media_ip=lab.bridge_ip, KARL_DELETE_DELAY="0")
    caller = WebRtcPeer(lab, offers=True, hz=BROWSER_HZ)
    callee = WebRtcPeer(lab, offers=False, hz=PHONE_HZ)
    ids = {"call-id": "webrtc-to-webrtc", "from-tag": "caller"}
    try:
        offered = caller.read()["sdp"]
        offer = request(node, command="offer", sdp=offered, **ids, **TO_BROWSER)
        to_callee = offer["sdp"]
        for line in offered.splitlines():
            if line.startswith(("a=extmap:", "a=rtcp-fb:")):
                assert line in to_callee.splitlines(), (line, to_callee)
        callee.write(to_callee)
        answered = callee.read()["sdp"]
        answer = request(node, command="answer", sdp=answered, **ids, **{"to-tag": "callee"}, **TO_BROWSER)
        to_caller = answer["sdp"]
        for line in answered.splitlines():
            if line.startswith(("a=extmap:", "a=rtcp-fb:")):
                assert line in to_caller.splitlines(), (line, to_caller)
        caller.write(to_caller)
        caller_result, callee_result = caller.read(), callee.read()
    finally:
        caller.close()
        callee.close()
    for result, hears in ((caller_result, PHONE_HZ), (callee_result, BROWSER_HZ)):
        assert result["error"] is None and result["state"] == "connected", result
        assert result["dtls"] == "connected", result
        assert result["heard_hz"] == pytest.approx(hears, abs=10), result
        assert result["remote_reports"] >= 1, result
    lines = to_callee.splitlines() + to_caller.splitlines()
    fingerprints = {line for line in lines if line.startswith("a=fingerprint")}
    assert len(fingerprints) == 1  # Karl's own certificate towards both: DTLS terminated on each leg
    query = request(node, command="query", **{"call-id": ids["call-id"]})
    for tag in ("caller", "callee"):
        flags = query["tags"][tag]["medias"][0]["flags"]
        assert "ICE" in flags and "DTLS-SRTP" in flags, flags


@pytest.mark.parametrize(
    "browser_calls", [True, False], ids=["browser-calls-sdes-phone", "sdes-phone-calls-browser"]
)
def test_a_webrtc_endpoint_and_an_sdes_phone_hear_each_other_through_karl(
    karl_factory, lab: NetnsLab, browser_calls: bool
) -> None:
    """DTLS-SRTP on the browser's leg, SDES-SRTP on the phone's (`RTP/SAVP`, keyed with libsrtp in the
    test): Karl terminates both, each with its own keys, and each side hears the other's tone."""
    node = karl_factory(media_ip=lab.bridge_ip, KARL_DELETE_DELAY="0")
    party = make_party()
    phone: Phone | None = None
    phone_key = os.urandom(30)
    phone_line = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(phone_key).decode()
    phone_sdp = (
        sdp(party.port)
        .replace("RTP/AVP", "RTP/SAVP")
        .replace("a=sendrecv\r\n", phone_line + "\r\na=sendrecv\r\n")
    )
    to_sdes_phone = {"transport-protocol": "RTP/SAVP", "ICE": "remove", "rtcp-mux": ["demux"]}
    peer = WebRtcPeer(lab, offers=browser_calls)
    ids = {"call-id": f"webrtc-sdes-{browser_calls}", "from-tag": "caller"}
    karl_key = b""
    try:
        if browser_calls:
            offer = request(node, command="offer", sdp=peer.read()["sdp"], **ids, **to_sdes_phone)
            to_phone = offer["sdp"]
            assert " RTP/SAVP " in to_phone and "a=candidate" not in to_phone, to_phone
            # the phone answers with its own key on the tag of Karl's AES_CM_128_HMAC_SHA1_80 line
            karls = next(line for line in to_phone.split("\r\n") if " AES_CM_128_HMAC_SHA1_80 " in line)
            tag = karls.split(":", 1)[1].split()[0]
            karl_key = base64.b64decode(karls.split("inline:", 1)[1] + "==")
            answer_sdp = phone_sdp.replace("a=crypto:1 ", f"a=crypto:{tag} ")
            answer = request(
                node, command="answer", sdp=answer_sdp, **ids, **{"to-tag": "callee"}, **TO_BROWSER
            )
            to_browser = answer["sdp"]
            peer.write(to_browser)
        else:
            offer = request(node, command="offer", sdp=phone_sdp, **ids, **TO_BROWSER)
            to_browser = offer["sdp"]
            peer.write(to_browser)
            answer = request(node, command="answer", sdp=peer.read()["sdp"], **ids, **{"to-tag": "callee"})
            to_phone = answer["sdp"]
            [karls] = [line for line in to_phone.split("\r\n") if line.startswith("a=crypto:")]
            karl_key = base64.b64decode(karls.split("inline:", 1)[1] + "==")
            assert " RTP/SAVP " in to_phone and "AES_CM_128_HMAC_SHA1_80" in karls, to_phone
        assert karl_key != phone_key
        assert "UDP/TLS/RTP/SAVPF" in to_browser and "a=fingerprint:sha-256 " in to_browser, to_browser
        profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
        tx = pylibsrtp.Session(
            pylibsrtp.Policy(phone_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        )
        rx = pylibsrtp.Session(
            pylibsrtp.Policy(karl_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
        )
        phone = Phone(party.rtp, protect=tx.protect, unprotect=rx.unprotect)
        karl_port = int(to_phone.split("m=audio ", 1)[1].split()[0])
        phone.start((node.media_ip, karl_port))
        result = peer.read()
    finally:
        heard_by_phone = phone.stop() if phone is not None else None
        peer.close()
        party.close()
    assert result["error"] is None and result["state"] == "connected", result
    assert result["dtls"] == "connected", result
    assert result["heard_hz"] == pytest.approx(PHONE_HZ, abs=10), result
    assert heard_by_phone == pytest.approx(BROWSER_HZ, abs=10)
