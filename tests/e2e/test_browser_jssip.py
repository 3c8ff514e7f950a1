"""The whole way from a browser to a SIP phone: JsSIP in headless Chromium registers with Kamailio over
WebSocket and calls a plain RTP phone, or is called by it; Kamailio's `rtpengine_manage()` anchors the
media on Karl with the flags of docs/webrtc.md, and each side must hear the other's tone.

    network namespace 0 of a NetnsLab            root namespace
    ┌──────────────────────────────────┐
    │ Chromium (headless, Playwright)  │  SIP/WS   Kamailio (kamailio/websocket.cfg)
    │ tests/e2e/jssip/phone.html       ├─────────► ws:// and udp on the lab bridge ◄──SIP/UDP── phone
    │ + JsSIP (npm, pinned)            │             │ NG (udp 127.0.0.1)              (Python UA,
    │ fake microphone: 440 Hz          │             ▼                                  bridge addr)
    │                                  │  ICE, DTLS-SRTP, rtcp-mux
    │                                  ├─────────► Karl (media on the bridge address) ◄──RTP/AVP── phone
    └──────────────────────────────────┘                                              (PCMU, 1000 Hz)

The browser REGISTERs as sip:browser@<bridge> (usrloc in memory); Kamailio routes sip:phone@… to the
phone's fixed address and everything else by registration. An SDP that comes over the WebSocket goes
to the SIP side with `RTP/AVP ICE=remove rtcp-mux-demux …`; every other SDP goes to the browser with
`UDP/TLS/RTP/SAVPF ICE=force rtcp-mux-require generate-mid SDES-off …`. The browser's ear is WebAudio
on the remote track; the phone's an FFT of the PCMU it receives. Hanging up (the browser's BYE or the
phone's) goes through Kamailio too, and Karl must then have deleted the call.

JsSIP comes from the npm registry: tests/e2e/jssip/package.json and its lock pin it, and the first run
installs it with `npm ci` under .pytest_cache/ (git-ignored), reused while the lock is unchanged.

Run: .venv/bin/pytest tests/e2e/test_browser_jssip.py -q
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_kamailio_sipp import Kamailio, launch_kamailio, signalling_tools, tail
from tests.medianode.test_browser_media import both_hear_each_other, chromium_page
from tests.medianode.test_webrtc_media import Phone

from fleet.fleet_kit import NetnsLab
from karl_testkit import ROOT, NgServer, free_port, make_party, tcp_listening, wait_for

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "jssip"
PAGE = ASSETS / "phone.html"
TEMPLATE = HERE / "kamailio" / "websocket.cfg"
JSSIP_VERSION = json.loads((ASSETS / "package.json").read_text())["dependencies"]["jssip"]
NPM_TIMEOUT = 300.0


# ------------------------------------------------------------------------------------------ JsSIP


def npm_install(directory: Path) -> Path:
    """JsSIP as pinned by tests/e2e/jssip (package.json + package-lock.json) installed with `npm ci`
    into `directory`, unless an earlier run already did; the path of its browser bundle."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: the test installs JsSIP from the npm registry (Debian package npm)")
    manifests = [ASSETS / "package.json", ASSETS / "package-lock.json"]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in manifests)).hexdigest()
    bundle = directory / "node_modules" / "jssip" / "dist" / "jssip.min.js"
    stamp = directory / "installed.sha256"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time (parallel runs share the cache)
        if not (bundle.exists() and stamp.exists() and stamp.read_text() == digest):
            stamp.unlink(missing_ok=True)
            for path in manifests:
                shutil.copy(path, directory / path.name)
            try:
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                    cwd=directory, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False,
                )
            except subprocess.TimeoutExpired:
                pytest.fail(f"npm ci of jssip@{JSSIP_VERSION} took longer than {NPM_TIMEOUT:.0f}s")
            if done.returncode != 0:
                pytest.fail(f"npm ci of jssip@{JSSIP_VERSION} failed:\n{done.stdout}\n{done.stderr}")
            if not bundle.exists():
                pytest.fail(f"jssip@{JSSIP_VERSION} has no {bundle.relative_to(directory)}")
            stamp.write_text(digest)
    installed = json.loads((directory / "node_modules" / "jssip" / "package.json").read_text())["version"]
    assert installed == JSSIP_VERSION, (installed, JSSIP_VERSION)
    return bundle


@pytest.fixture(scope="session")
def jssip(pytestconfig: pytest.Config) -> Path:
    cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    if cache is None:
        return npm_install(ROOT / ".pytest_cache" / "d" / "karl-jssip")
    return npm_install(Path(cache.mkdir("karl-jssip")))


# -------------------------------------------------------------------------------------- the browser


@dataclass
class Softphone:
    """The page of tests/e2e/jssip/phone.html with JsSIP loaded, and what its console said."""

    page: Any
    console: list[str]

    def events(self) -> list[str]:
        return list(self.page.evaluate("() => window.events"))

    def remote_sdp(self) -> str:
        """The SDP the browser was given, as it came in SIP (JsSIP's `sdp` event; Chromium's
        `remoteDescription` is a re-serialisation that drops what it does not use)."""
        return str(self.page.evaluate("() => window.remoteSdp"))

    def diagnostics(self) -> str:
        try:
            events = self.events()
        except Exception as exc:  # the page may be gone
            events = [f"({exc})"]
        return f"events: {events}\nconsole:\n" + "\n".join(self.console[-40:])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetnsLab]:
    with NetnsLab(1, tmp_path, tag=None) as built:
        yield built


@pytest.fixture
def softphone(lab: NetnsLab, jssip: Path, tmp_path: Path) -> Iterator[Softphone]:
    """Headless Chromium in namespace 0 of the lab, on the JsSIP page, its fake microphone a 440 Hz tone."""
    with chromium_page(lab, tmp_path) as page:
        page.set_default_timeout(20_000)
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        page.goto(PAGE.as_uri())  # a file: URL is a secure context (getUserMedia, WebRTC)
        page.add_script_tag(path=str(jssip))
        assert page.evaluate("() => JsSIP.version") is not None
        yield Softphone(page, console)


# ------------------------------------------------------------------------------------- a SIP phone

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type"}


@dataclass(frozen=True)
class Sip:
    """A parsed SIP message (header names lower-case, compact forms expanded)."""

    first: str
    headers: tuple[tuple[str, str], ...]
    body: str

    @classmethod
    def parse(cls, data: bytes) -> Sip:
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        first, *lines = head.split("\r\n")
        headers: list[tuple[str, str]] = []
        for line in lines:
            if line[:1] in (" ", "\t") and headers:  # a folded line continues the header before it
                headers[-1] = (headers[-1][0], f"{headers[-1][1]} {line.strip()}")
                continue
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers.append((COMPACT.get(name, name), value.strip()))
        return cls(first, tuple(headers), body)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def get(self, name: str) -> str:
        values = self.all(name)
        assert values, f"no {name} header in {self.first!r}"
        return values[0]

    @property
    def status(self) -> int | None:
        return int(self.first.split()[1]) if self.first.startswith("SIP/2.0 ") else None

    @property
    def method(self) -> str | None:
        return None if self.status is not None else self.first.split()[0]

    @property
    def cseq_method(self) -> str:
        return self.get("cseq").split()[1]


def render(first: str, headers: list[tuple[str, str]], body: str = "") -> bytes:
    if body:
        headers = [*headers, ("Content-Type", "application/sdp")]
    lines = [first, *(f"{name}: {value}" for name, value in headers)]
    return "\r\n".join([*lines, f"Content-Length: {len(body.encode())}", "", body]).encode()


def uris(header_values: list[str]) -> list[str]:
    """The <…> name-addrs of headers like Record-Route (several per line, or one per line)."""
    return [found for value in header_values for found in re.findall(r"<[^>]*>", value)]


def phone_sdp(ip: str, port: int) -> str:
    """A plain phone's offer or answer: PCMU only, so that the browser sends what the phone decodes."""
    return (
        f"v=0\r\no=phone 1 1 IN IP4 {ip}\r\ns=phone\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )


def media_address(sdp_text: str) -> tuple[str, int]:
    """Where an SDP (one audio stream, a session or media c= line) wants its RTP."""
    address = re.search(r"^c=IN IP4 (\S+)", sdp_text, re.M)
    port = re.search(r"^m=audio (\d+) ", sdp_text, re.M)
    assert address and port, sdp_text
    return address.group(1), int(port.group(1))


class SipPhone:
    """A SIP user agent over UDP for one call at a time, that sends everything to Kamailio."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.proxy: tuple[str, int] | None = None  # Kamailio, once it runs
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, free_port(ip)))
        self.port = int(self.sock.getsockname()[1])
        self.trace: list[str] = []
        self.tag = secrets.token_hex(4)
        self.call_id = ""
        self.local = self.remote = self.target = ""
        self.route: list[str] = []

    @property
    def uri(self) -> str:
        return f"sip:phone@{self.ip}:{self.port}"

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        assert self.proxy is not None, "the phone has no proxy to send to"
        self.trace.append("> " + data.split(b"\r\n", 1)[0].decode())
        self.sock.sendto(data, self.proxy)

    def receive(self, wanted: Callable[[Sip], bool], timeout: float, resend: bytes | None = None) -> Sip:
        """The next message `wanted` accepts (others are ignored); `resend` is retransmitted every
        500 ms meanwhile (an unreliable transport's timer A, or a 200 OK's until the ACK)."""
        deadline = time.monotonic() + timeout
        next_resend = time.monotonic() + 0.5
        while True:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"the phone waited {timeout}s in vain; SIP so far: {self.trace}")
            self.sock.settimeout(max(0.01, min(deadline, next_resend) - now))
            try:
                message = Sip.parse(self.sock.recv(65535))
            except TimeoutError:
                if resend is not None and time.monotonic() >= next_resend:
                    self.send(resend)
                    next_resend += 0.5
                continue
            self.trace.append("< " + message.first)
            if wanted(message):
                return message

    def mine(self, message: Sip) -> bool:
        return message.get("call-id") == self.call_id

    def reply(self, request: Sip, status: int, reason: str, body: str = "") -> bytes:
        to = request.get("to") if ";tag=" in request.get("to") else f"{request.get('to')};tag={self.tag}"
        headers = [("Via", via) for via in request.all("via")]
        headers += [("Record-Route", rr) for rr in request.all("record-route")]
        headers += [("From", request.get("from")), ("To", to), ("Call-ID", request.get("call-id")),
                    ("CSeq", request.get("cseq")), ("Contact", f"<{self.uri}>")]
        data = render(f"SIP/2.0 {status} {reason}", headers, body)
        self.send(data)
        return data

    def request(self, method: str, uri: str, cseq: int, body: str = "") -> bytes:
        headers = [("Via", f"SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport")]
        headers += [("Route", route) for route in self.route]
        headers += [("Max-Forwards", "70"), ("From", self.local), ("To", self.remote),
                    ("Call-ID", self.call_id), ("CSeq", f"{cseq} {method}"), ("Contact", f"<{self.uri}>")]
        data = render(f"{method} {uri} SIP/2.0", headers, body)
        self.send(data)
        return data

    def answer(self, rtp_port: int, timeout: float = 20.0) -> Sip:
        """Wait for an INVITE, answer it (200 OK with our SDP) and wait for the ACK; the INVITE."""
        invite = self.receive(lambda m: m.method == "INVITE", timeout)
        self.call_id = invite.get("call-id")
        ok = self.reply(invite, 200, "OK", phone_sdp(self.ip, rtp_port))
        self.receive(lambda m: m.method == "ACK" and self.mine(m), 10.0, resend=ok)
        return invite

    def await_bye(self, timeout: float = 10.0) -> None:
        bye = self.receive(lambda m: m.method == "BYE" and self.mine(m), timeout)
        self.reply(bye, 200, "OK")

    def call(self, target: str, rtp_port: int, timeout: float = 20.0) -> Sip:
        """INVITE `target` with our SDP, wait for its 200 OK and ACK it; the 200 OK."""
        self.call_id = f"{secrets.token_hex(8)}@{self.ip}"
        self.local, self.remote, self.route = f"<{self.uri}>;tag={self.tag}", f"<{target}>", []
        invite = self.request("INVITE", target, 1, phone_sdp(self.ip, rtp_port))

        def final(message: Sip) -> bool:
            return message.status is not None and message.cseq_method == "INVITE" and self.mine(message)

        reply = self.receive(final, timeout, resend=invite)  # any response stops retransmitting
        while reply.status is not None and reply.status < 200:
            reply = self.receive(final, timeout)
        assert reply.status == 200, f"the call failed: {reply.first}; SIP so far: {self.trace}"
        self.remote = reply.get("to")
        self.target = uris(reply.all("contact"))[0].strip("<>")
        self.route = list(reversed(uris(reply.all("record-route"))))
        self.request("ACK", self.target, 1)
        return reply

    def hang_up(self, timeout: float = 10.0) -> None:
        bye = self.request("BYE", self.target, 2)

        def answered(message: Sip) -> bool:
            return message.status is not None and message.cseq_method == "BYE" and self.mine(message)

        reply = self.receive(answered, timeout, resend=bye)
        assert reply.status == 200, reply.first


# -------------------------------------------------------------------------------------------- test


@dataclass
class Stack:
    """Karl, Kamailio in front of it, and the SIP phone whose address Kamailio's configuration names."""

    node: NgServer
    kamailio: Kamailio
    ws_url: str
    phone: SipPhone


@pytest.fixture
def stack(lab: NetnsLab, karl_factory: Callable[..., NgServer], tmp_path: Path) -> Iterator[Stack]:
    """Karl (media on the lab's bridge address, calls deleted at once) and Kamailio with websocket.cfg
    on the bridge address (SIP over UDP and ws://), routing sip:phone@… to the phone."""
    tools = signalling_tools()
    if not (tools.modules / "websocket.so").exists():
        pytest.skip("Kamailio's websocket module is missing (Debian package kamailio-websocket-modules)")
    node = karl_factory(media_ip=lab.bridge_ip, KARL_DELETE_DELAY="0")
    ip = lab.bridge_ip
    ws_port = free_port(ip)
    workdir = tmp_path / "kamailio"
    workdir.mkdir()
    phone = SipPhone(ip)
    try:
        defines = {"WS_LISTEN": f"tcp:{ip}:{ws_port}", "PHONE_URI": f'"{phone.uri}"'}
        kamailio = launch_kamailio(tools.kamailio, tools.modules, node, workdir, TEMPLATE, ip, defines)
        try:
            wait_for(lambda: tcp_listening(ip, ws_port), timeout=10)
            phone.proxy = (kamailio.ip, kamailio.port)
            yield Stack(node, kamailio, f"ws://{ip}:{ws_port}", phone)
        finally:
            kamailio.stop()
    finally:
        phone.close()


def karl_call(node: NgServer, call_id: str) -> dict[str, Any]:
    return dict(node.ng.request({"command": "query", "call-id": call_id}))


def tag_of(name_addr: str) -> str:
    found = re.search(r";tag=([^;>\s]+)", name_addr)
    assert found, name_addr
    return found.group(1)


@pytest.mark.parametrize("browser_calls", [True, False], ids=["browser-calls-phone", "phone-calls-browser"])
def test_jssip_in_chromium_and_a_sip_phone_hear_each_other_through_kamailio_and_karl(
    lab: NetnsLab, stack: Stack, softphone: Softphone, browser_calls: bool
) -> None:
    ip, node, sip, page = lab.bridge_ip, stack.node, stack.phone, softphone.page
    party = make_party(ip)
    rtp = Phone(party.rtp)
    try:
        registration = {"ws": stack.ws_url, "uri": f"sip:browser@{ip}"}
        page.evaluate("(config) => window.startPhone(config)", registration)
        if browser_calls:
            page.evaluate("(target) => window.call(target)", f"sip:phone@{ip}")
            invite = sip.answer(party.port)
            to_phone, browser_tag = invite.body, tag_of(invite.get("from"))
        else:
            ok = sip.call(f"sip:browser@{ip}", party.port)
            to_phone, browser_tag = ok.body, tag_of(ok.get("to"))

        # The phone was given Karl's plain RTP, the browser Karl's ICE and DTLS-SRTP.
        assert "RTP/AVP" in to_phone and "a=fingerprint" not in to_phone, to_phone
        assert "a=candidate" not in to_phone and "a=ice-" not in to_phone, to_phone
        karl = media_address(to_phone)
        assert karl[0] == node.media_ip and node.port_min <= karl[1] <= node.port_max, to_phone
        to_browser = softphone.remote_sdp()
        for line in ("UDP/TLS/RTP/SAVPF", "a=fingerprint:sha-256 ", "a=ice-ufrag:", "a=candidate:",
                     "a=rtcp-mux", "a=mid:"):
            assert line in to_browser, (line, to_browser)
        assert "a=crypto:" not in to_browser, to_browser

        rtp.start(karl)
        both_hear_each_other(page, rtp)

        tags = karl_call(node, sip.call_id)["tags"]
        assert browser_tag in tags, (browser_tag, list(tags))
        for tag, leg in tags.items():
            flags = leg["medias"][0]["flags"]
            if tag == browser_tag:
                assert "ICE" in flags and "DTLS-SRTP" in flags, flags
            else:
                assert "ICE" not in flags and "DTLS-SRTP" not in flags, flags

        # Hanging up goes through Kamailio as well, which has Karl delete the call.
        if browser_calls:
            page.evaluate("() => window.hangUp()")
            sip.await_bye()
        else:
            sip.hang_up()
        wait_for(lambda: any(event.startswith("ended ") for event in softphone.events()), timeout=10)
        wait_for(lambda: karl_call(node, sip.call_id)["result"] == "error", timeout=10)
        complaints = [line for line in stack.kamailio.log().splitlines() if " ERROR: " in line]
        assert not complaints, "\n".join(complaints)
    except BaseException:
        print(f"--- SIP at the phone ---\n{sip.trace}\n--- the page ---\n{softphone.diagnostics()}")
        print(f"--- kamailio ---\n{tail(stack.kamailio.log_path)}\n--- karl ---\n{tail(node.log_path)}")
        raise
    finally:
        rtp.stop()
        party.close()


def test_the_flags_docs_webrtc_md_gives_are_the_ones_this_configuration_runs() -> None:
    """docs/webrtc.md quotes the two flag strings of `kamailio/websocket.cfg`, which this file runs."""
    config = TEMPLATE.read_text()
    doc = (ROOT / "docs" / "webrtc.md").read_text()
    for name in ("TO_SIP_FLAGS", "TO_BROWSER_FLAGS"):
        match = re.search(rf'^#!define {name} (".*")$', config, re.M)
        assert match, name
        assert f"rtpengine_manage({match.group(1)});" in doc, name
