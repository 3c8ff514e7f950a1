"""End to end with real SIP phones: Debian's baresip offering DTLS-SRTP with ICE, or SDES-SRTP, calls a
plain-RTP baresip (no SRTP module loaded at all) through Kamailio, whose rtpengine module anchors the
media on a Karl node that terminates the caller's security and relays plain RTP to the callee.

      caller (baresip, netns 0, 10.213.n.10)            callee (baresip, netns 1, 10.213.n.11)
      ausine 440 Hz, sndfile records what it decodes    ausine 1250 Hz, sndfile, plain RTP/AVP only
              │ SIP                                             ▲ SIP
              └──────────► Kamailio (10.213.n.1, root netns) ───┘
                              │ NG (udp 127.0.0.1), kamailio/baresip.cfg
      DTLS-SRTP+ICE or SDES ◄──► Karl (media on 10.213.n.1) ◄──► RTP/AVP

The phones live in network namespaces of a NetnsLab bridged to the root namespace: baresip's ICE module
gathers no candidate on a loopback address (as Chromium), so the caller needs a real interface. Kamailio
and Karl listen on the bridge's address. Each phone plays a sine of its own frequency (ausine) and
records what it decodes from the network (the sndfile filter writes `dump-*-dec.wav`). The script
(`kamailio/baresip.cfg`) sends the offer with the flags docs/webrtc.md gives for an SDP going to a SIP
phone (`RTP/AVP ICE=remove rtcp-mux-demux ...`) and the answer with no profile flag, so Karl answers
the caller in the profile it offered. The test proves, for each caller variant:

* the callee (whose baresip cannot do SRTP) was offered plain RTP/AVP on Karl's address, without any
  `a=crypto`, `a=fingerprint`, `a=setup` or ICE attribute;
* the caller got an answer in its own secure profile on Karl's address: Karl's DTLS fingerprint and
  ICE candidates, or exactly one `a=crypto` line with Karl's key (not the caller's);
* Karl's leg towards the caller did ICE and DTLS-SRTP, or SDES-SRTP (NG `query` during the call);
* and each phone's decoded audio has the other phone's tone as its dominant frequency (FFT).

A last test covers RTCP without multiplexing: baresip 1.0.0 does not multiplex RTCP (`rtcp_mux no`),
and RFC 5764 4.2 then wants a DTLS-SRTP session on the RTCP port too, whose keys protect the SRTCP
there. Karl runs it, as rtpengine 10.5 does: baresip reports both handshakes done ("DTLS-SRTP
complete" for audio/RTP and audio/RTCP). Without it baresip would send its RTCP in the clear while
its RTCP port waits for a handshake (Karl drops that: `karl_relay_dropped_total{reason="srtp"}`),
and would have no keys there for Karl's SRTCP.

Every process is bounded: baresip quits by itself after BARESIP_BOUND seconds (`-t`), and the test
stops both phones (the caller hangs up) as soon as each has recorded enough audio, without sleeps.
Network namespaces need root.

Run: .venv/bin/pytest tests/e2e/test_kamailio_baresip.py -q
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.e2e.test_kamailio_sipp import Kamailio, kamailio_modules_dir, launch_kamailio, tail

from fleet.fleet_kit import NetnsLab
from karl_testkit import NgServer, free_port, free_port_block, wait_for

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
KAMAILIO_TEMPLATE = HERE / "kamailio" / "baresip.cfg"
BARESIP_MODULES = Path("/usr/lib/baresip/modules")

CALLER_HZ, CALLEE_HZ = 440, 1250
RATE = 8000  # PCMU: sndfile records the decoded stream at the codec's rate
RECORDED = 2.0  # seconds of decoded audio each phone must have before the test stops them
CALL_TIMEOUT = 25.0  # the call is up and recorded in about 3 s; this only bounds a failure
BARESIP_BOUND = 45  # baresip -t: each phone quits by itself after this many seconds


@dataclass(frozen=True)
class Variant:
    """How the caller secures its media: the modules it loads and its account's parameters."""

    modules: tuple[str, ...]
    account: str
    karl_flags: tuple[str, ...]  # what Karl's NG `query` shows on the caller's leg


VARIANTS = {
    "dtls-ice": Variant(("dtls_srtp.so", "ice.so"), ";mediaenc=dtls_srtp;medianat=ice", ("ICE", "DTLS-SRTP")),
    "sdes": Variant(("srtp.so",), ";mediaenc=srtp-mand", ("SDES",)),
}


# ---------------------------------------------------------------------------------------- SDP


@dataclass(frozen=True)
class AudioSdp:
    """An SDP body with one audio stream: its connection address, port, profile, and every attribute
    line (session and media level: baresip puts ICE credentials and fingerprints at session level)."""

    address: str
    port: int
    protocol: str
    attributes: tuple[str, ...]

    @staticmethod
    def parse(body: str) -> AudioSdp:
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        media = [line for line in lines if line.startswith("m=")]
        assert len(media) == 1 and media[0].startswith("m=audio "), body
        _, port, protocol, *_ = media[0].split()
        connections = [line for line in lines if line.startswith("c=IN IP4 ")]
        assert connections, body
        address = connections[-1].split()[2]  # the media-level c= wins over the session's
        return AudioSdp(address, int(port), protocol, tuple(line for line in lines if line.startswith("a=")))

    def lines(self, *prefixes: str) -> list[str]:
        return [line for line in self.attributes if line.startswith(prefixes)]


@dataclass(frozen=True)
class SipMessage:
    source: str
    destination: str
    text: str  # with plain newlines

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0]

    def header(self, name: str) -> str | None:
        found = re.search(rf"^{name}:\s*(.*)$", self.text.split("\n\n", 1)[0], re.MULTILINE | re.IGNORECASE)
        return found.group(1).strip() if found else None

    @property
    def sdp(self) -> AudioSdp | None:
        body = self.text.partition("\n\n")[2]
        return AudioSdp.parse(body) if "m=audio " in body else None


_TRACE = re.compile(r"\x1b\[36;1m#\n(\w+) (\S+) -> (\S+)\n(.*?)\x1b\[;m", re.DOTALL)


def traced_messages(log: str) -> list[SipMessage]:
    """The SIP messages a baresip run with `-s` printed ("#", "UDP src -> dst", the message)."""
    return [
        SipMessage(source, destination, text.replace("\r\n", "\n"))
        for _transport, source, destination, text in _TRACE.findall(log)
    ]


# ---------------------------------------------------------------------------------------- audio


def wav_samples(path: Path) -> tuple[int, np.ndarray]:
    """Sample rate and 16-bit mono samples of a WAV that may still be written (its sizes not final)."""
    data = path.read_bytes()
    rate, offset = RATE, 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"fmt ":
            channels, rate = struct.unpack_from("<HI", data, offset + 10)
            assert channels == 1, f"{path}: {channels} channels"
        if chunk == b"data":
            body = data[offset + 8 :]
            if 0 < size <= len(body):  # a finished file; while it is written the size is not final
                body = body[:size]
            return rate, np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.float64)
        offset += 8 + size + (size & 1)
    return rate, np.zeros(0)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[:5] = 0  # DC
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


# ---------------------------------------------------------------------------------------- phones


@dataclass
class Phone:
    """One baresip in namespace `k` of the lab, with its own config directory."""

    name: str
    lab: NetnsLab
    k: int
    home: Path
    hz: int
    account: str
    modules: tuple[str, ...] = ()
    ip: str = field(init=False)
    sip_port: int = field(init=False)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.ip = self.lab.ns_ip(self.k)
        # ports free in the phone's namespace (a fresh one: every port is, but pick them as elsewhere)
        self.sip_port = self.lab.call_in(self.k, lambda: free_port(self.ip))
        rtp = self.lab.call_in(self.k, lambda: free_port_block(20, self.ip))
        self.home.mkdir(parents=True)
        (self.home / "dumps").mkdir()
        modules = "".join(f"module\t\t\t{m}\n" for m in ("g711.so", "ausine.so", "sndfile.so", *self.modules))
        (self.home / "config").write_text(
            "poll_method\t\tepoll\n"
            f"sip_listen\t\t{self.ip}:{self.sip_port}\n"
            "call_local_timeout\t20\n"
            "call_max_calls\t\t1\n"
            f"audio_source\t\tausine,{self.hz}\n"  # the frequency is ausine's device name
            "ausrc_srate\t\t48000\n"  # ausine makes 48 kHz stereo only; baresip resamples
            "ausrc_channels\t\t2\n"
            "audio_buffer\t\t20-160\n"
            f"rtp_ports\t\t{rtp}-{rtp + 19}\n"
            "rtcp_mux\t\tno\n"
            "jitter_buffer_delay\t1-5\n"
            "net_interface\t\teth0\n"
            f"module_path\t\t{BARESIP_MODULES}\n"
            f"{modules}"
            "module_tmp\t\taccount.so\n"
            "module_app\t\tmenu.so\n"
            f"snd_path\t\t{self.home / 'dumps'}\n"
        )
        (self.home / "accounts").write_text(
            f"<sip:{self.name}@{self.ip}:{self.sip_port}>;regint=0;audio_codecs=pcmu{self.account}\n"
        )

    @property
    def log_path(self) -> Path:
        return self.home / "baresip.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, *commands: str) -> None:
        argv = ["stdbuf", "-oL", "-eL", "baresip", "-f", str(self.home), "-t", str(BARESIP_BOUND), "-s"]
        for command in commands:
            argv += ["-e", command]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*self.lab.exec_prefix(self.k), *argv], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.home,
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"baresip {self.name} exited with {self.proc.returncode}:\n{self.log()}")
            return "baresip is ready." in self.log()

        wait_for(ready, timeout=10)

    def stop(self) -> None:
        """SIGTERM: baresip hangs up and closes its recordings; SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def recordings(self) -> list[Path]:
        return sorted((self.home / "dumps").glob("dump-*-dec.wav"))

    def decoded(self) -> tuple[int, np.ndarray]:
        """What this phone decoded from the network (all its recordings, in order)."""
        parts = [wav_samples(path) for path in self.recordings()]
        rate = parts[0][0] if parts else RATE
        return rate, np.concatenate([samples for _, samples in parts]) if parts else np.zeros(0)

    def decoded_seconds(self) -> float:
        rate, samples = self.decoded()
        return len(samples) / rate

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.sip_port}"

    def messages(self) -> list[SipMessage]:
        return traced_messages(self.log())

    def sent(self, start: str) -> SipMessage:
        """The first message this phone sent whose start line begins with `start`."""
        found = [m for m in self.messages() if m.source == self.address and m.start_line.startswith(start)]
        assert found, f"baresip {self.name} sent no {start.strip()}\n{tail(self.log_path, 100)}"
        return found[0]

    def received(self, start: str) -> SipMessage:
        """The first message this phone received whose start line begins with `start` and that has SDP."""
        found = [
            m for m in self.messages()
            if m.destination == self.address and m.start_line.startswith(start) and m.sdp is not None
        ]
        assert found, f"baresip {self.name} received no {start.strip()} with SDP\n{tail(self.log_path, 100)}"
        return found[0]


# ---------------------------------------------------------------------------------------- fixtures


@dataclass
class Setup:
    lab: NetnsLab
    karl: NgServer
    kamailio: Kamailio
    workdir: Path

    def context(self, *phones: Phone) -> str:
        parts = [f"--- baresip {p.name} ---\n{tail(p.log_path, 150)}" for p in phones]
        parts.append(f"--- kamailio ---\n{tail(self.kamailio.log_path, 40)}")
        parts.append(f"--- karl ---\n{tail(self.karl.log_path, 60)}")
        return "\n".join(parts)


def required_tools() -> tuple[str, Path]:
    """Kamailio and the directory of its modules (with rtpengine), and baresip with the modules this test
    loads, or a skip that says what is missing."""
    if os.geteuid() != 0:
        pytest.skip("the phones run in network namespaces, which need root")
    kamailio = shutil.which("kamailio") or next(
        (str(p) for p in (Path("/usr/sbin/kamailio"), Path("/usr/bin/kamailio")) if p.exists()), None
    )
    if kamailio is None:
        pytest.skip("kamailio is not installed (Debian package kamailio)")
    modules = kamailio_modules_dir(kamailio)
    if modules is None:
        pytest.skip("Kamailio's rtpengine module is not installed (rtpengine.so not found)")
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed (Debian package baresip-core)")
    wanted = ("g711", "ausine", "sndfile", "srtp", "dtls_srtp", "ice", "account", "menu")
    missing = [m for m in wanted if not (BARESIP_MODULES / f"{m}.so").exists()]
    if missing:
        pytest.skip(f"baresip modules missing from {BARESIP_MODULES}: {', '.join(missing)}")
    return kamailio, modules


@pytest.fixture
def setup(karl_factory: Callable[..., NgServer], tmp_path: Path) -> Iterator[Setup]:
    kamailio_binary, modules = required_tools()
    with NetnsLab(2, tmp_path, tag=None) as lab:
        karl = karl_factory(media_ip=lab.bridge_ip, ports=40, KARL_DELETE_DELAY="0")
        workdir = tmp_path / "kamailio"
        workdir.mkdir()
        kamailio = launch_kamailio(kamailio_binary, modules, karl, workdir, KAMAILIO_TEMPLATE, lab.bridge_ip)
        try:
            yield Setup(lab, karl, kamailio, tmp_path)
        finally:
            kamailio.stop()


# ---------------------------------------------------------------------------------------- the tests

# What must not reach a phone that cannot do SRTP: keys, DTLS and ICE attributes.
SECURITY_ATTRIBUTES = ("a=crypto:", "a=fingerprint:", "a=setup:", "a=tls-id:", "a=ice-", "a=candidate:",
                       "a=remote-candidates:")


def assert_on_karl(karl: NgServer, sdp: AudioSdp, who: str) -> None:
    assert sdp.address == karl.media_ip, (who, sdp)
    assert karl.port_min <= sdp.port <= karl.port_max, (who, sdp, karl.port_min, karl.port_max)


def assert_secure_answer(variant: str, offer: AudioSdp, answer: AudioSdp, karl: NgServer) -> None:
    """The caller's answer is in the profile it offered, keyed by Karl (never the caller's own key)."""
    assert answer.protocol == offer.protocol, (offer, answer)
    if variant == "dtls-ice":
        assert offer.protocol.startswith("UDP/TLS/RTP/SAVP"), offer
        fingerprints = answer.lines("a=fingerprint:")
        assert len(fingerprints) == 1, answer
        own = {line.split()[1].upper() for line in offer.lines("a=fingerprint:")}
        assert fingerprints[0].split()[1].upper() not in own, (offer, answer)
        assert answer.lines("a=setup:") in (["a=setup:active"], ["a=setup:passive"]), answer
        assert not answer.lines("a=crypto:"), answer
        assert answer.lines("a=ice-ufrag:") and answer.lines("a=ice-pwd:"), answer
        candidates = [line.split() for line in answer.lines("a=candidate:")]
        assert candidates, answer
        for candidate in candidates:  # Karl's own candidates, never the caller's
            assert candidate[4] == karl.media_ip, candidate
            assert karl.port_min <= int(candidate[5]) <= karl.port_max, candidate
    else:
        assert offer.protocol == "RTP/SAVP", offer
        crypto = answer.lines("a=crypto:")
        assert len(crypto) == 1, answer
        assert crypto[0].split()[1] == "AES_CM_128_HMAC_SHA1_80", crypto
        offered_keys = {line.split("inline:", 1)[1].split("|")[0] for line in offer.lines("a=crypto:")}
        assert crypto[0].split("inline:", 1)[1].split("|")[0] not in offered_keys, (offer, answer)
        assert not answer.lines("a=fingerprint:", "a=setup:", "a=ice-", "a=candidate:"), answer


def assert_hears(phone: Phone, hz: int, context: str) -> None:
    """The last second `phone` decoded is a loud tone of `hz`."""
    rate, samples = phone.decoded()
    last = samples[-rate:]
    rms = float(np.sqrt(np.mean(last**2))) if len(last) else 0.0
    assert rms > 2000, f"{phone.name} decoded near silence (RMS {rms:.0f})\n{context}"
    heard = dominant_hz(last, rate)
    assert heard == pytest.approx(hz, abs=10), f"{phone.name} heard {heard:.0f} Hz, not {hz} Hz\n{context}"


@dataclass(frozen=True)
class Call:
    """A finished call: both phones (stopped, their logs and recordings kept), the call's Call-ID and
    Karl's NG `query` of it taken while it was up."""

    caller: Phone
    callee: Phone
    call_id: str
    legs: dict[str, Any]
    context: str


def place_call(setup: Setup, variant: str) -> Call:
    """The caller (`variant`) calls the plain callee through Kamailio; both phones are stopped (the caller
    hangs up) once each has decoded RECORDED seconds of audio."""
    lab, karl, kamailio = setup.lab, setup.karl, setup.kamailio
    outbound = f';outbound="sip:{kamailio.ip}:{kamailio.port}"'  # every request through Kamailio
    callee = Phone("callee", lab, 1, setup.workdir / "callee", CALLEE_HZ, ";answermode=auto")
    caller = Phone(
        "caller", lab, 0, setup.workdir / "caller", CALLER_HZ, outbound + VARIANTS[variant].account,
        VARIANTS[variant].modules,
    )
    try:
        callee.start()
        caller.start(f"/dial sip:callee@{callee.ip}:{callee.sip_port}")

        def recorded() -> bool:
            for phone in (caller, callee):
                assert phone.proc is not None
                if phone.proc.poll() is not None:
                    raise AssertionError(f"baresip {phone.name} exited with {phone.proc.returncode}")
            return min(caller.decoded_seconds(), callee.decoded_seconds()) >= RECORDED

        try:
            wait_for(recorded, timeout=CALL_TIMEOUT, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{setup.context(caller, callee)}") from None
        call_id = caller.sent("INVITE ").header("Call-ID")
        assert call_id, caller.sent("INVITE ").text
        legs = karl.ng.request({"command": "query", "call-id": call_id})
    finally:
        caller.stop()  # hangs up: Kamailio sends Karl the delete with the BYE
        callee.stop()
    context = setup.context(caller, callee)
    assert legs.get("result") == "ok", f"{legs}\n{context}"
    return Call(caller, callee, call_id, legs, context)


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_secure_baresip_and_plain_baresip_hear_each_other_through_kamailio_and_karl(
    setup: Setup, variant: str
) -> None:
    karl = setup.karl
    call = place_call(setup, variant)
    caller, callee, context = call.caller, call.callee, call.context

    # The signalling: plain towards the callee, the caller's own secure profile back to it, on Karl.
    offer_to_callee = callee.received("INVITE ").sdp
    assert offer_to_callee is not None, context
    assert_on_karl(karl, offer_to_callee, "callee")
    assert offer_to_callee.protocol == "RTP/AVP", offer_to_callee
    assert not offer_to_callee.lines(*SECURITY_ATTRIBUTES), offer_to_callee
    invite = caller.sent("INVITE ")
    caller_offer, answer = invite.sdp, caller.received("SIP/2.0 200 ").sdp
    assert caller_offer is not None and answer is not None, context
    assert_on_karl(karl, answer, "caller")
    assert_secure_answer(variant, caller_offer, answer, karl)

    # Karl terminated the caller's security on the caller's leg, and the callee's leg is plain.
    caller_tag = re.search(r";tag=([^;\s]+)", invite.header("From") or "")
    assert caller_tag, invite.text
    caller_leg = call.legs["tags"][caller_tag.group(1)]["medias"][0]
    (callee_tag,) = set(call.legs["tags"]) - {caller_tag.group(1)}
    callee_leg = call.legs["tags"][callee_tag]["medias"][0]
    assert caller_leg["protocol"] == caller_offer.protocol, caller_leg
    assert set(VARIANTS[variant].karl_flags) <= set(caller_leg["flags"]), caller_leg
    assert callee_leg["protocol"] == "RTP/AVP", callee_leg
    assert not {"ICE", "DTLS-SRTP", "SDES"} & set(callee_leg["flags"]), callee_leg
    assert all("crypto suite" not in stream for stream in callee_leg["streams"]), callee_leg

    # The media: each phone decoded the other's tone.
    assert_hears(caller, CALLEE_HZ, context)
    assert_hears(callee, CALLER_HZ, context)

    # The BYE went through Kamailio as a delete: Karl (no delete delay) holds the call no more.
    def released() -> bool:
        return call.call_id not in karl.ng.request({"command": "list"}).get("calls", [])

    try:
        wait_for(released, timeout=5)
    except AssertionError:
        pytest.fail(f"Karl still holds call {call.call_id} after the BYE\n{context}")
    log = setup.kamailio.log().splitlines()
    complaints = [line for line in log if " ERROR: " in line or "CRITICAL" in line]
    assert not complaints, "\n".join(complaints)


def test_dtls_caller_without_rtcp_mux_gets_a_dtls_handshake_on_its_rtcp_port(setup: Setup) -> None:
    """baresip 1.0.0 (`rtcp_mux no`) waits for a DTLS handshake on its RTCP port as well and sends its
    RTCP in the clear until then; Karl connects there too, as rtpengine does ("DTLS-SRTP complete
    (audio/RTCP)"), with a handshake of its own (RFC 5764 4.2)."""
    call = place_call(setup, "dtls-ice")
    assert "DTLS-SRTP complete (audio/RTP)" in call.caller.log(), call.context
    assert "DTLS-SRTP complete (audio/RTCP)" in call.caller.log(), call.context
