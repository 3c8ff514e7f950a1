"""End to end: calls that Karl cannot take (an SRTP suite its library lacks) reach rtpengine through
Kamailio's script; SDES-SRTP calls Karl takes itself.

    caller (sipp, 127.0.0.10) ──SIP──► Kamailio (127.0.0.1) ──SIP──► callee (sipp, 127.0.0.11)
                                          │ NG, set 1: Karl (127.0.0.2)
                                          │ NG, set 2: rtpengine (127.0.0.3)

Karl terminates SDES-SRTP with 4 of rtpengine's 12 suites: it answers an SDES offer to be relayed as
plain RTP that has none of them (a phone offering only AES-256-CM) with the error "SRTP termination
not supported by Karl yet" and builds no call. Kamailio's
rtpengine module
tries another node on its own only for a load limit, "Parallel session limit reached" or "Ran out of
ports", so the script (`kamailio/srtp_fallback.cfg`, quoted verbatim by docs/kamailio.md) sends an
offer that set 1 refused to set 2 itself, and keeps each call's answer and delete on the set that took
its offer. The test proves, with sipp on both sides (signalling only):

* an SDES caller offering only `AES_256_CM_HMAC_SHA1_80` calling a plain callee through a script
  that asks for `RTP/AVP` towards the callee: Karl refuses the offer and holds no call, rtpengine
  carries the call (it lists it while the call is up, and gets its delete), the callee is offered
  plain RTP/AVP on rtpengine's address without any key, the caller gets `RTP/SAVP` with an
  AES-256-CM key of rtpengine's on rtpengine's address, and the call completes on both sides;
* an SDES caller (`RTP/SAVP` with `a=crypto`) through the same script stays on Karl: the callee is
  offered plain RTP/AVP on Karl's address without any key, the caller gets RTP/SAVP on Karl's address
  with exactly one `a=crypto` line (Karl's key, not its own), and rtpengine never sees the call;
* a plain call through the same script stays on Karl (set 1), and rtpengine never sees it, also right
  after a refused call (a refusal is an error reply: Kamailio does not disable the node for it).

No sleeps: the caller, once it has acknowledged the 200 OK, waits for an OPTIONS the test sends it after
looking at both media nodes, then hangs up.

Run: .venv/bin/pytest tests/e2e/test_kamailio_srtp_fallback.py -q
"""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.e2e.test_kamailio_sipp import (
    Kamailio,
    SippResult,
    launch_kamailio,
    ng_socket,
    signalling_tools,
    sipp_files,
    sipp_result,
    sipp_trace_args,
    tail,
    udp_bound,
)

from karl_testkit import ROOT, NgServer, free_port, free_port_block, wait_for

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
FALLBACK_TEMPLATE = HERE / "kamailio" / "srtp_fallback.cfg"
UAC_SCENARIO = HERE / "sipp" / "fallback_uac.xml"
UAS_SCENARIO = HERE / "sipp" / "fallback_uas.xml"
DOC = ROOT / "docs" / "kamailio.md"

KAMAILIO_IP = "127.0.0.1"
UAC_IP, UAS_IP = "127.0.0.10", "127.0.0.11"
KARL_IP, RTPENGINE_IP = "127.0.0.2", "127.0.0.3"

KARL_REFUSAL = "SRTP termination not supported by Karl yet"
CALLER_KEY = base64.b64encode(bytes(range(1, 31))).decode()  # 30 bytes: AES-128 key and salt
SDES_ATTRIBUTE = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CALLER_KEY}"
# AES-256 key and salt (46 bytes): a suite Karl's SRTP library cannot do, rtpengine can
AES256_KEY = base64.b64encode(bytes(range(1, 47))).decode()
AES256_ATTRIBUTE = f"a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{AES256_KEY}"
PLAIN_ATTRIBUTE = "a=ptime:20"
CALL_TIMEOUT = 30.0  # a call here is a handful of messages on loopback; this only bounds a failure


# ---------------------------------------------------------------------------------- SDP in traces


@dataclass(frozen=True)
class AudioSdp:
    """What one party was told about the audio of the other: address, port, protocol and keys."""

    address: str
    port: int
    protocol: str
    crypto: tuple[str, ...]
    fingerprints: tuple[str, ...] = ()

    @staticmethod
    def parse(body: str) -> AudioSdp:
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        media = [line for line in lines if line.startswith("m=audio ")]
        assert len(media) == 1, body
        _, port, protocol, *_ = media[0].split()
        found = re.search(r"^c=IN IP4 (\S+)$", body, re.MULTILINE)
        assert found, body
        crypto = tuple(line for line in lines if line.startswith("a=crypto:"))
        fingerprints = tuple(line for line in lines if line.startswith("a=fingerprint:"))
        return AudioSdp(found.group(1), int(port), protocol, crypto, fingerprints)

    def inline_keys(self) -> set[str]:
        return {line.split("inline:", 1)[1].split("|", 1)[0] for line in self.crypto}


def traced_messages(trace: Path, direction: str) -> list[str]:
    """The SIP messages a sipp instance has "sent" or "received" so far, from its -trace_msg file
    (each entry: a dashed line with a timestamp, "UDP message sent (N bytes):" or "UDP message received
    [N] bytes :", an empty line, the message), with plain newlines."""
    text = trace.read_text(errors="replace") if trace.exists() else ""
    messages = []
    for chunk in re.split(r"^-{20,}.*$", text, flags=re.MULTILINE):
        head, _, message = chunk.strip("\r\n").partition("\n")
        if f" message {direction} " in head:
            messages.append(message.strip("\r\n").replace("\r\n", "\n"))
    return messages


def sdp_of(messages: list[str], start: str) -> AudioSdp | None:
    """The SDP of the first received message whose start line begins with `start`."""
    for message in messages:
        if message.startswith(start) and "\n\n" in message:
            return AudioSdp.parse(message.split("\n\n", 1)[1])
    return None


# --------------------------------------------------------------------------------------- the call


@dataclass(frozen=True)
class CallRun:
    call_id: str
    caller: SippResult
    callee: SippResult
    listed: dict[str, bool]  # engine name -> it listed the call while the call was up
    callee_got: AudioSdp | None  # the offer in the INVITE the callee received
    caller_got: AudioSdp | None  # the answer in the 200 OK the caller received

    def explain(self) -> str:
        return f"{self.caller.explain()}\n{self.callee.explain()}"


@dataclass
class FallbackProxy:
    """Karl (set 1) and rtpengine (set 2) behind Kamailio running srtp_fallback.cfg."""

    sipp: str
    kamailio: Kamailio
    karl: NgServer
    rtpengine: NgServer
    workdir: Path

    def engines(self) -> dict[str, NgServer]:
        return {"karl": self.karl, "rtpengine": self.rtpengine}

    def calls_on(self, engine: NgServer) -> list[str]:
        reply = engine.ng.request({"command": "list"})
        assert reply.get("result") == "ok", (engine.name, reply)
        return [str(call_id) for call_id in reply.get("calls", [])]

    def context(self, run: CallRun | None = None) -> str:
        parts = [run.explain()] if run else []
        parts.append(f"--- kamailio ---\n{tail(self.kamailio.log_path)}")
        for engine in self.engines().values():
            parts.append(f"--- {engine.name} ---\n{tail(engine.log_path, 40)}")
        return "\n".join(parts)

    def place_call(self, name: str, protocol: str, attribute: str) -> CallRun:
        """One call from a caller offering `protocol` (plus `attribute`) to a plain callee; the caller
        hangs up once the test has looked at both media nodes while the call is up."""
        call_id = f"{name}-{uuid.uuid4().hex[:12]}-1@{UAC_IP}"
        uas_port, uac_port = free_port(UAS_IP), free_port(UAC_IP)
        uas_media, uac_media = free_port_block(4, UAS_IP), free_port_block(4, UAC_IP)
        uas_files = sipp_files(self.workdir, f"{name}-uas")
        uac_files = sipp_files(self.workdir, f"{name}-uac")
        traces = {side: self.workdir / f"sipp-{name}-{side}.msg" for side in ("uas", "uac")}

        def trace_args(files: dict[str, Path], trace: Path) -> list[str]:
            return [*sipp_trace_args(files), "-trace_msg", "-message_file", str(trace), "-m", "1"]

        procs: list[subprocess.Popen[bytes]] = []
        try:
            with uas_files["out"].open("wb") as out:
                uas = subprocess.Popen(
                    [self.sipp, "-sf", str(UAS_SCENARIO), "-i", UAS_IP, "-p", str(uas_port),
                     "-mi", UAS_IP, "-mp", str(uas_media), *trace_args(uas_files, traces["uas"])],
                    stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
                )
            procs.append(uas)

            def uas_ready() -> bool:
                if uas.poll() is not None:
                    raise AssertionError(f"sipp UAS exited with {uas.returncode}:\n{tail(uas_files['out'])}")
                return udp_bound(UAS_IP, uas_port)

            wait_for(uas_ready, timeout=10)
            with uac_files["out"].open("wb") as out:
                uac = subprocess.Popen(
                    [self.sipp, f"{UAS_IP}:{uas_port}", "-rsa", f"{self.kamailio.ip}:{self.kamailio.port}",
                     "-sf", str(UAC_SCENARIO), "-i", UAC_IP, "-p", str(uac_port),
                     "-mi", UAC_IP, "-mp", str(uac_media), "-cid_str", call_id.replace("-1@", "-%u@", 1),
                     "-key", "offer_protocol", protocol, "-key", "offer_attribute", attribute,
                     *trace_args(uac_files, traces["uac"])],
                    stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
                )
            procs.append(uac)

            # The call is up once the caller has sent its ACK (it then waits for the test's OPTIONS);
            # a caller that gave up exits instead.
            def up_or_over() -> bool:
                if uac.poll() is not None:
                    return True
                return any(sent.startswith("ACK ") for sent in traced_messages(traces["uac"], "sent"))

            try:
                wait_for(up_or_over, timeout=CALL_TIMEOUT)
            except AssertionError as exc:
                raise AssertionError(f"call {call_id} neither came up nor failed\n{self.context()}") from exc
            listed = {which: call_id in self.calls_on(engine) for which, engine in self.engines().items()}
            if uac.poll() is None:
                go_ahead(call_id, UAC_IP, uac_port)
            uac_code = uac.wait(timeout=CALL_TIMEOUT)
            uas_code = uas.wait(timeout=CALL_TIMEOUT)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)

        return CallRun(
            call_id=call_id,
            caller=sipp_result("uac", uac_code, uac_files),
            callee=sipp_result("uas", uas_code, uas_files),
            listed=listed,
            callee_got=sdp_of(traced_messages(traces["uas"], "received"), "INVITE "),
            caller_got=sdp_of(traced_messages(traces["uac"], "received"), "SIP/2.0 200 "),
        )


def go_ahead(call_id: str, ip: str, port: int) -> None:
    """The OPTIONS the caller waits for before its BYE (sent straight to it; it does not answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((KAMAILIO_IP, free_port(KAMAILIO_IP)))
        here = f"{KAMAILIO_IP}:{sock.getsockname()[1]}"
        request = (
            f"OPTIONS sip:sipp@{ip}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {here};branch=z9hG4bK-{uuid.uuid4().hex}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:test@{KAMAILIO_IP}>;tag=go-ahead\r\n"
            f"To: <sip:sipp@{ip}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (ip, port))


# ----------------------------------------------------------------------------------------- tests


@pytest.fixture
def fallback_proxy(
    karl_factory: Callable[..., NgServer], rtpengine_factory: Callable[..., NgServer], tmp_path: Path
) -> Iterator[FallbackProxy]:
    tools = signalling_tools()
    karl = karl_factory(media_ip=KARL_IP, ports=20)
    rtpengine = rtpengine_factory(media_ip=RTPENGINE_IP, ports=20)
    workdir = tmp_path / "fallback"
    workdir.mkdir()
    kamailio = launch_kamailio(
        tools.kamailio, tools.modules, None, workdir, FALLBACK_TEMPLATE, KAMAILIO_IP,
        {"KARL_NODES": f'"1 == {ng_socket(karl)}"', "RTPENGINE_NODES": f'"2 == {ng_socket(rtpengine)}"'},
    )
    try:
        yield FallbackProxy(tools.sipp, kamailio, karl, rtpengine, workdir)
    finally:
        kamailio.stop()


def rtpengine_commands(rtpengine: NgServer, call_id: str) -> list[str]:
    """The NG commands rtpengine logged for `call_id`, in order (a retransmission counted once)."""
    received = re.findall(
        rf"\[{re.escape(call_id)}\]: \[control\] Received command '([^']+)'", rtpengine.log()
    )
    return list(dict.fromkeys(received))


def kamailio_complaints(kamailio: Kamailio) -> list[str]:
    return [line for line in kamailio.log().splitlines() if " ERROR: " in line or "CRITICAL" in line]


def assert_completed(run: CallRun, context: str) -> None:
    assert run.caller.returncode == 0 and run.callee.returncode == 0, context
    for side in (run.caller, run.callee):
        assert side.final("SuccessfulCall(C)") == 1, context
        assert side.final("FailedCall(C)") == 0, context


def assert_on(engine: NgServer, sdp: AudioSdp | None, who: str, context: str) -> AudioSdp:
    assert sdp is not None, f"the {who} received no SDP\n{context}"
    assert sdp.address == engine.media_ip, (who, sdp, engine.name)
    assert engine.port_min <= sdp.port <= engine.port_max, (who, sdp, engine.name)
    return sdp


def test_srtp_call_karl_refuses_goes_to_rtpengine(fallback_proxy: FallbackProxy) -> None:
    proxy = fallback_proxy
    run = proxy.place_call("aes256", "RTP/SAVP", AES256_ATTRIBUTE)
    context = proxy.context(run)
    log = proxy.kamailio.log()

    # Karl refused the offer with its error, and the script tried set 2.
    assert f"proxy replied with error: {KARL_REFUSAL}" in log, (
        f"Kamailio did not get Karl's refusal of the offer (Karl took the call: {run.listed['karl']})\n"
        f"{context}"
    )
    assert f"rtpengine set 1 refused the offer of call {run.call_id}, trying set 2" in log, context

    # The call completed through Kamailio, on rtpengine alone.
    assert_completed(run, context)
    assert run.listed == {"karl": False, "rtpengine": True}, context

    # The callee was offered plain RTP on rtpengine, without a key or fingerprint.
    offer = assert_on(proxy.rtpengine, run.callee_got, "callee", context)
    assert offer.protocol == "RTP/AVP" and offer.crypto == offer.fingerprints == (), offer
    # The caller got SRTP on rtpengine, with an AES-256-CM key of rtpengine's, never its own.
    answer = assert_on(proxy.rtpengine, run.caller_got, "caller", context)
    assert answer.protocol == "RTP/SAVP" and len(answer.crypto) == 1, answer
    assert answer.crypto[0].startswith("a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:"), answer
    assert AES256_KEY not in answer.inline_keys(), answer

    # Kamailio's only complaint is Karl's refusal (an answer or a delete sent to the wrong set would
    # have been answered "Unknown call-id").
    complaints = [line for line in kamailio_complaints(proxy.kamailio) if KARL_REFUSAL not in line]
    assert not complaints, "\n".join(complaints)

    # rtpengine got the call's offer, its answer and, with the BYE, its delete (logged before it
    # replied, so before the BYE went on); Karl holds nothing.
    try:
        wait_for(lambda: "delete" in rtpengine_commands(proxy.rtpengine, run.call_id), timeout=5)
    except AssertionError:
        pytest.fail(f"rtpengine got no delete for {run.call_id}\n{context}")
    assert rtpengine_commands(proxy.rtpengine, run.call_id) == ["offer", "answer", "delete"], context
    assert proxy.calls_on(proxy.karl) == [], context


def test_sdes_call_stays_on_karl_which_answers_with_its_own_key(fallback_proxy: FallbackProxy) -> None:
    proxy = fallback_proxy
    run = proxy.place_call("sdes", "RTP/SAVP", SDES_ATTRIBUTE)
    context = proxy.context(run)

    assert_completed(run, context)
    assert run.listed == {"karl": True, "rtpengine": False}, context
    # The callee was offered plain RTP on Karl, without a key.
    offer = assert_on(proxy.karl, run.callee_got, "callee", context)
    assert offer.protocol == "RTP/AVP" and offer.crypto == (), offer
    # The caller got SRTP on Karl, with one key: Karl's, not the caller's own.
    answer = assert_on(proxy.karl, run.caller_got, "caller", context)
    assert answer.protocol == "RTP/SAVP" and len(answer.crypto) == 1, answer
    assert answer.crypto[0].startswith("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), answer
    assert CALLER_KEY not in answer.inline_keys(), answer

    assert rtpengine_commands(proxy.rtpengine, run.call_id) == [], context
    assert "trying set 2" not in proxy.kamailio.log(), context
    assert not kamailio_complaints(proxy.kamailio), "\n".join(kamailio_complaints(proxy.kamailio))


def test_plain_call_stays_on_karl(fallback_proxy: FallbackProxy) -> None:
    proxy = fallback_proxy
    run = proxy.place_call("plain", "RTP/AVP", PLAIN_ATTRIBUTE)
    context = proxy.context(run)

    assert_completed(run, context)
    assert run.listed == {"karl": True, "rtpengine": False}, context
    offer = assert_on(proxy.karl, run.callee_got, "callee", context)
    answer = assert_on(proxy.karl, run.caller_got, "caller", context)
    assert offer.protocol == answer.protocol == "RTP/AVP", (offer, answer)
    assert offer.crypto == answer.crypto == (), (offer, answer)

    # Set 2 was never asked, and Kamailio had no complaint.
    assert proxy.calls_on(proxy.rtpengine) == [], context
    assert rtpengine_commands(proxy.rtpengine, run.call_id) == [], context
    assert "trying set 2" not in proxy.kamailio.log(), context
    assert not kamailio_complaints(proxy.kamailio), "\n".join(kamailio_complaints(proxy.kamailio))


def test_karl_takes_plain_calls_after_refusing_one(fallback_proxy: FallbackProxy) -> None:
    """A refusal is an error reply, not a dead node: Kamailio keeps Karl enabled for the next call."""
    proxy = fallback_proxy
    refused = proxy.place_call("aes256", "RTP/SAVP", AES256_ATTRIBUTE)
    plain = proxy.place_call("plain", "RTP/AVP", PLAIN_ATTRIBUTE)
    context = proxy.context(plain)

    assert_completed(refused, proxy.context(refused))
    assert refused.listed == {"karl": False, "rtpengine": True}, proxy.context(refused)
    assert_completed(plain, context)
    assert plain.listed == {"karl": True, "rtpengine": False}, context
    assert_on(proxy.karl, plain.callee_got, "callee", context)
    assert_on(proxy.karl, plain.caller_got, "caller", context)
    complaints = [line for line in kamailio_complaints(proxy.kamailio) if KARL_REFUSAL not in line]
    assert not complaints, "\n".join(complaints)


def test_doc_quotes_the_fallback_config() -> None:
    """docs/kamailio.md shows the very configuration this test runs."""
    assert FALLBACK_TEMPLATE.read_text() in DOC.read_text(), (
        f"{DOC} must contain {FALLBACK_TEMPLATE} verbatim (copy the file into the doc's cfg block)"
    )
