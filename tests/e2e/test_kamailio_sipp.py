"""End to end through a real SIP proxy: a sipp caller calls a sipp callee through Kamailio, whose
rtpengine module anchors the media on the NG server under test (the reference rtpengine, or Karl).

    caller (sipp, 127.0.0.10) ──SIP──► Kamailio (127.0.0.1) ──SIP──► callee (sipp -rtp_echo, 127.0.0.11)
                                          │ NG (udp 127.0.0.1)
         RTP ◄──────────────────► media proxy (rtpengine 127.0.0.3 / Karl 127.0.0.2) ◄──────► RTP (echo)

The Kamailio configuration is `kamailio/kamailio.cfg` (quoted verbatim by docs/kamailio.md) with the
addresses of this run prepended as pre-processor defines. Each call plays g711a.pcap and then
dtmf_2833_1.pcap; the callee echoes every packet. The test proves that

* both parties were given the media proxy's address (and one of its ports) in SDP,
* every call completes (sipp exit code 0, the statistics count every call as successful),
* the proxy counted, per direction, exactly the packets and bytes of the captures (NG `query`),
* and the echo came back to the caller unchanged, through the proxy port the caller was given.

Run: .venv/bin/pytest tests/e2e/test_kamailio_sipp.py -q -k rtpengine
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from karl_testkit import ROOT, NgServer, free_port, free_port_block, wait_for

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
KAMAILIO_TEMPLATE = HERE / "kamailio" / "kamailio.cfg"
UAC_SCENARIO = HERE / "sipp" / "uac.xml"
UAS_SCENARIO = HERE / "sipp" / "uas.xml"
DOC = ROOT / "docs" / "kamailio.md"

SIPP_PCAPS = Path("/usr/share/sip-tester")
AUDIO_PCAP = SIPP_PCAPS / "g711a.pcap"
DTMF_PCAP = SIPP_PCAPS / "dtmf_2833_1.pcap"

PROXY_SIP_IP = "127.0.0.1"
UAC_IP = "127.0.0.10"
UAS_IP = "127.0.0.11"
# The caller's SDP advertises [media_port+4]: sipp sends its captures from that port but does not own
# it (it binds only media_port and media_port+2), so the test can listen there for the echo.
UAC_RTP_OFFSET = 4

NG_SERVERS = {"rtpengine": ("rtpengine_factory", "127.0.0.3"), "karl": ("karl_factory", "127.0.0.2")}
SIPP_TIMEOUT = 90.0


# ------------------------------------------------------------------------------------ pcap reading


@dataclass(frozen=True)
class Capture:
    """The UDP datagrams of a pcap file, as sipp's play_pcap_audio sends them."""

    payloads: tuple[bytes, ...]
    timestamps: tuple[float, ...]

    @property
    def packets(self) -> int:
        return len(self.payloads)

    @property
    def bytes(self) -> int:
        return sum(map(len, self.payloads))

    @property
    def duration(self) -> float:
        return self.timestamps[-1] - self.timestamps[0] if self.timestamps else 0.0


# Link-layer header lengths of the link types sipp's captures use (DLT_NULL, EN10MB, RAW, LINUX_SLL).
_LINK_HEADER = {0: 4, 1: 14, 101: 0, 113: 16, 228: 0}


def read_pcap_udp(path: Path) -> Capture:
    """Read a classic pcap file (either byte order, µs or ns timestamps) and keep its UDP payloads."""
    data = path.read_bytes()
    magic = data[:4]
    orders = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
              b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
    if magic not in orders:
        raise ValueError(f"{path}: not a pcap file")
    order, tick = orders[magic]
    (link_type,) = struct.unpack_from(order + "I", data, 20)
    if link_type not in _LINK_HEADER:
        raise ValueError(f"{path}: unsupported link type {link_type}")
    payloads: list[bytes] = []
    stamps: list[float] = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, included, _original = struct.unpack_from(order + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + included]
        offset += 16 + included
        packet = frame[_LINK_HEADER[link_type] :]
        version = packet[0] >> 4
        if version == 4 and packet[9] == socket.IPPROTO_UDP:
            udp = packet[(packet[0] & 0x0F) * 4 :]
        elif version == 6 and packet[6] == socket.IPPROTO_UDP:
            udp = packet[40:]
        else:
            continue
        (udp_length,) = struct.unpack_from("!H", udp, 4)
        payloads.append(bytes(udp[8:udp_length]))
        stamps.append(seconds + fraction * tick)
    return Capture(tuple(payloads), tuple(stamps))


# ------------------------------------------------------------------------------- tools and checks


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )


def _run(cmd: list[str], timeout: float = 20.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)


def kamailio_modules_dir(kamailio: str) -> Path | None:
    """Kamailio's compiled-in module directory (`kamailio -h` prints it), else a usual location."""
    usage = _run([kamailio, "-h"])
    help_text = usage.stdout + usage.stderr
    found = re.search(r"-L path\s+Modules search path \(default: ([^)]+)\)", help_text)
    candidates = [Path(found.group(1))] if found else []
    for pattern in ("/usr/lib/*/kamailio/modules", "/usr/lib64/kamailio/modules", "/usr/lib/kamailio/modules",
                    "/usr/local/lib*/kamailio/modules", "/usr/local/lib/*/kamailio/modules"):
        candidates += sorted(Path("/").glob(pattern.lstrip("/")))
    return next((d for d in candidates if (d / "rtpengine.so").exists()), None)


@dataclass(frozen=True)
class Tools:
    kamailio: str
    modules: Path
    sipp: str


def signalling_tools() -> Tools:
    """Kamailio with its rtpengine module, and sipp, or a skip that says what is missing."""
    kamailio, sipp = _tool("kamailio"), _tool("sipp")
    if kamailio is None:
        pytest.skip("kamailio is not installed (Debian package kamailio)")
    if sipp is None:
        pytest.skip("sipp is not installed (Debian package sip-tester)")
    modules = kamailio_modules_dir(kamailio)
    if modules is None:
        pytest.skip("Kamailio's rtpengine module is not installed (rtpengine.so not found)")
    return Tools(kamailio, modules, sipp)


def required_tools() -> Tools:
    """The programs this test drives (sipp playing media too), or a skip that says what is missing."""
    tools = signalling_tools()
    sipp = tools.sipp
    if "PCAP" not in _run([sipp, "-v"]).stdout:
        pytest.skip("this sipp was built without PCAP play")
    if "-rtp_echo" not in _run([sipp, "-h"]).stdout:
        pytest.skip("this sipp has no -rtp_echo option")
    for pcap in (AUDIO_PCAP, DTMF_PCAP):
        if not pcap.exists():
            pytest.skip(f"{pcap} is missing (Debian package sip-tester)")
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        pytest.skip("sipp plays pcap files through a raw socket, which needs CAP_NET_RAW")
    return tools


def udp_bound(ip: str, port: int) -> bool:
    """Whether some process has a UDP socket bound to ip:port (read from /proc, without binding)."""
    wanted = f"{int.from_bytes(socket.inet_aton(ip), sys.byteorder):08X}:{port:04X}"
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1] == wanted for line in lines)


def tail(path: Path, lines: int = 80) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no file)"
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------------- Kamailio


def render_kamailio_cfg(template: str, defines: dict[str, str]) -> str:
    """The template with `#!define` lines for this run; the template's `#!ifndef` defaults yield."""
    first, _, rest = template.partition("\n")
    assert first.startswith("#!KAMAILIO"), "the template must start with #!KAMAILIO"
    return first + "\n" + "".join(f"#!define {k} {v}\n" for k, v in defines.items()) + rest


@dataclass
class Kamailio:
    proc: subprocess.Popen[bytes]
    ip: str
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        # It runs in its own session: its children (one per worker) go with the group.
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_kamailio(tools: Tools, ng: NgServer, workdir: Path) -> Kamailio:
    return launch_kamailio(tools.kamailio, tools.modules, ng, workdir, KAMAILIO_TEMPLATE, PROXY_SIP_IP)


def ng_socket(server: NgServer) -> str:
    """The NG address of `server` the way `rtpengine_sock` lists a node: udp:HOST:PORT."""
    host, port = server.ng.address
    return f"udp:{host}:{port}"


def launch_kamailio(
    binary: str,
    modules: str | Path,
    ng: NgServer | None,
    workdir: Path,
    template: Path,
    ip: str,
    defines: dict[str, str] | None = None,
) -> Kamailio:
    """Kamailio with `template` (defines SIP_LISTEN, MODULES_PATH and, given `ng`, NG_SOCKETS filled in,
    then `defines`) on a free port of `ip`; checked with `kamailio -c` first, returned once it listens."""
    port = free_port(ip)
    values = {"SIP_LISTEN": f"udp:{ip}:{port}", "MODULES_PATH": f'"{modules}/"'}
    if ng is not None:
        values["NG_SOCKETS"] = f'"{ng_socket(ng)}"'
    values.update(defines or {})
    cfg = workdir / template.name
    cfg.write_text(render_kamailio_cfg(template.read_text(), values))
    run_dir = workdir / "run"
    run_dir.mkdir()
    check = _run([binary, "-c", "-f", str(cfg), "-w", str(workdir), "-Y", str(run_dir)], cwd=workdir)
    assert check.returncode == 0, f"kamailio -c rejected {cfg}:\n{check.stdout}\n{check.stderr}"

    log_path = workdir / "kamailio.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "-DD", "-E", "-f", str(cfg), "-w", str(workdir), "-Y", str(run_dir)],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
        )
    kamailio = Kamailio(proc, ip, port, log_path)

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"kamailio exited with {proc.returncode}:\n{tail(log_path)}")
        return udp_bound(ip, port)

    try:
        wait_for(listening, timeout=15)
    except BaseException:
        kamailio.stop()
        raise
    return kamailio


# ------------------------------------------------------------------------------------------ sipp


@dataclass
class MediaSink:
    """A UDP socket that keeps every datagram it receives, by source address, on a thread."""

    ip: str
    port: int
    received: dict[tuple[str, int], list[bytes]] = field(default_factory=lambda: defaultdict(list))
    sock: socket.socket = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((self.ip, self.port))
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, name="media-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.received[source].append(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclass(frozen=True)
class SippResult:
    name: str
    returncode: int
    stdout: str
    stats: list[dict[str, str]]
    sdp_seen: dict[str, tuple[str, int]]  # call-id -> (address, port) in the SDP this side received
    errors: str

    def explain(self) -> str:
        header = f"--- sipp {self.name} (exit {self.returncode}) ---"
        return f"{header}\n{self.stdout[-3000:]}\n{self.errors[-3000:]}"

    def final(self, column: str) -> int:
        return int(self.stats[-1][column])


def sipp_files(workdir: Path, name: str) -> dict[str, Path]:
    return {kind: workdir / f"sipp-{name}.{kind}" for kind in ("log", "err", "csv", "out")}


def sipp_trace_args(files: dict[str, Path]) -> list[str]:
    return [
        "-nostdin",
        "-trace_logs", "-log_file", str(files["log"]),
        "-trace_err", "-error_file", str(files["err"]),
        "-trace_stat", "-stf", str(files["csv"]), "-fd", "1",
        "-recv_timeout", "20000",
        "-timeout", f"{int(SIPP_TIMEOUT)}s",
    ]


def sipp_result(name: str, returncode: int, files: dict[str, Path], marker: str | None = None) -> SippResult:
    """What one sipp run left: exit code, output, statistics and, with `marker`, the "MARKER CALL-ID IP
    PORT" lines its scenario logged (the SDP address each call received)."""
    stats: list[dict[str, str]] = []
    if files["csv"].exists():
        with files["csv"].open(newline="") as f:
            stats = list(csv.DictReader(f, delimiter=";"))
    sdp_seen: dict[str, tuple[str, int]] = {}
    log = files["log"].read_text(errors="replace") if files["log"].exists() else ""
    for line in log.splitlines():
        fields = line.split()
        if marker is not None and len(fields) == 4 and fields[0] == marker:
            assert fields[1] not in sdp_seen, f"call-id {fields[1]} logged twice by sipp {name}"
            sdp_seen[fields[1]] = (fields[2], int(fields[3]))
    return SippResult(
        name, returncode, files["out"].read_text(errors="replace"), stats, sdp_seen,
        files["err"].read_text(errors="replace") if files["err"].exists() else "",
    )


@dataclass
class CallRun:
    caller: SippResult
    callee: SippResult
    uac_rtp: tuple[str, int]  # where the caller sends from and receives the echo
    uas_rtp: tuple[str, int]
    echoed: dict[tuple[str, int], list[bytes]]  # what reached the caller, by proxy address


def run_calls(tools: Tools, kamailio: Kamailio, proxy_media_ip: str, calls: int, workdir: Path) -> CallRun:
    uas_port, uac_port = free_port(UAS_IP), free_port(UAC_IP)
    uas_media = free_port_block(4, UAS_IP)  # sipp binds media_port and media_port+2
    uac_media = free_port_block(UAC_RTP_OFFSET + 2, UAC_IP)
    uas_files, uac_files = sipp_files(workdir, "uas"), sipp_files(workdir, "uac")

    with uas_files["out"].open("wb") as out:
        uas = subprocess.Popen(
            [tools.sipp, "-sf", str(UAS_SCENARIO), "-i", UAS_IP, "-p", str(uas_port),
             "-mi", UAS_IP, "-mp", str(uas_media), "-rtp_echo", "-set", "proxy_ip", proxy_media_ip,
             "-m", str(calls), *sipp_trace_args(uas_files)],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
        )
    sink = MediaSink(UAC_IP, uac_media + UAC_RTP_OFFSET)
    try:
        def uas_ready() -> bool:
            if uas.poll() is not None:
                raise AssertionError(f"sipp UAS exited with {uas.returncode}:\n{tail(uas_files['out'])}")
            return udp_bound(UAS_IP, uas_port) and udp_bound(UAS_IP, uas_media)

        wait_for(uas_ready, timeout=10)
        with uac_files["out"].open("wb") as out:
            uac = subprocess.run(
                [tools.sipp, f"{UAS_IP}:{uas_port}", "-rsa", f"{kamailio.ip}:{kamailio.port}",
                 "-sf", str(UAC_SCENARIO), "-i", UAC_IP, "-p", str(uac_port),
                 "-mi", UAC_IP, "-mp", str(uac_media), "-set", "proxy_ip", proxy_media_ip,
                 "-m", str(calls), "-l", str(calls), "-r", "100", *sipp_trace_args(uac_files)],
                stdout=out, stderr=subprocess.STDOUT, cwd=workdir, timeout=SIPP_TIMEOUT + 10, check=False,
            )
        uas_code = uas.wait(timeout=30)
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait(5)
        sink.close()
    return CallRun(
        caller=sipp_result("uac", uac.returncode, uac_files, "answer-sdp"),
        callee=sipp_result("uas", uas_code, uas_files, "offer-sdp"),
        uac_rtp=(UAC_IP, uac_media + UAC_RTP_OFFSET),
        uas_rtp=(UAS_IP, uas_media),
        echoed=dict(sink.received),
    )


# ----------------------------------------------------------------------------------------- tests


def peer(stream: dict[str, Any]) -> tuple[str, int]:
    """Where the proxy saw a stream's packets come from (NG `query`)."""
    return stream["endpoint"]["address"], stream["endpoint"]["port"]


def counted(stream_or_total: dict[str, Any]) -> tuple[int, int, int]:
    """(packets, bytes, errors) of a stream's `stats` or of a `totals` entry."""
    stats = stream_or_total.get("stats", stream_or_total)
    return stats["packets"], stats["bytes"], stats["errors"]


@pytest.fixture
def tools() -> Tools:
    return required_tools()


@pytest.fixture
def captures() -> tuple[Capture, Capture]:
    """The captures the caller plays, checked against the pauses of its scenario: sipp cancels a
    playback when the next one starts, so each pause must outlast the capture it follows."""
    audio, dtmf = read_pcap_udp(AUDIO_PCAP), read_pcap_udp(DTMF_PCAP)
    pauses = [int(p.get("milliseconds", "0")) for p in ET.parse(UAC_SCENARIO).getroot().iter("pause")]
    assert len(pauses) == 2, pauses
    assert pauses[0] >= audio.duration * 1000 + 300, (pauses, audio.duration)
    # The second pause also lets the callee's echo of the last packets return before the BYE.
    assert pauses[1] >= dtmf.duration * 1000 + 300, (pauses, dtmf.duration)
    return audio, dtmf


@pytest.fixture
def kamailio_with(tools: Tools, tmp_path: Path) -> Iterator[Callable[[NgServer], Kamailio]]:
    started: list[Kamailio] = []

    def start(ng: NgServer) -> Kamailio:
        started.append(start_kamailio(tools, ng, tmp_path))
        return started[-1]

    yield start
    for kamailio in started:
        kamailio.stop()


@pytest.mark.parametrize("calls", [1, 20])
@pytest.mark.parametrize("engine", list(NG_SERVERS))
def test_calls_through_kamailio(
    engine: str,
    calls: int,
    request: pytest.FixtureRequest,
    tools: Tools,
    captures: tuple[Capture, Capture],
    kamailio_with: Callable[[NgServer], Kamailio],
    tmp_path: Path,
) -> None:
    factory_name, media_ip = NG_SERVERS[engine]
    server: NgServer = request.getfixturevalue(factory_name)(media_ip=media_ip, ports=200)
    kamailio = kamailio_with(server)

    run = run_calls(tools, kamailio, server.media_ip, calls, tmp_path)
    context = f"{run.caller.explain()}\n{run.callee.explain()}\n--- kamailio ---\n{tail(kamailio.log_path)}"

    # Every call succeeded on both sides, and with 20 calls they were all up at once.
    assert run.caller.returncode == 0 and run.callee.returncode == 0, context
    for side in (run.caller, run.callee):
        assert side.final("SuccessfulCall(C)") == calls, context
        assert side.final("FailedCall(C)") == 0, context
    assert max(int(row["CurrentCall"]) for row in run.caller.stats) == calls, context

    # Each party received the proxy's address and one of its ports: the caller in the 200 OK, the
    # callee in the INVITE (the scenarios also fail a call whose SDP names another address).
    call_ids = set(run.caller.sdp_seen)
    assert len(call_ids) == calls and set(run.callee.sdp_seen) == call_ids, context
    for side in (run.caller, run.callee):
        for call_id, (address, port) in side.sdp_seen.items():
            assert address == server.media_ip, (side.name, call_id, address)
            assert server.port_min <= port <= server.port_max, (side.name, call_id, port)

    # What one call sends each way: the captures, packet for packet. Loopback at 50 packets/s per
    # call loses nothing, so the counts are exact.
    audio, dtmf = captures
    sent = audio.payloads + dtmf.payloads
    packets, size = len(sent), sum(map(len, sent))

    for call_id in sorted(call_ids):
        caller_port = run.caller.sdp_seen[call_id][1]
        callee_port = run.callee.sdp_seen[call_id][1]
        reply = server.ng.request({"command": "query", "call-id": call_id})
        assert reply.get("result") == "ok", (call_id, reply)

        # Streams by the proxy port they receive on: the port given to that party in SDP.
        streams = {
            stream["local port"]: stream
            for tag in reply["tags"].values()
            for media in tag["medias"]
            for stream in media["streams"]
        }
        from_caller, from_callee = streams[caller_port], streams[callee_port]
        assert peer(from_caller) == run.uac_rtp, from_caller
        assert peer(from_callee) == run.uas_rtp, from_callee
        # Caller → proxy: exactly the captures sipp played (loopback at 50 packets/s per call loses
        # nothing on the way in).
        assert counted(from_caller) == (packets, size, 0), from_caller
        # Proxy → callee → proxy: sipp's -rtp_echo thread is not lossless when the machine is busy
        # (seen with rtpengine too), so the echo can miss a packet or two; what matters for the
        # proxy is that it forwarded to the caller exactly what it received from the callee.
        echoed = run.echoed.get((server.media_ip, caller_port), [])
        back, back_size = len(echoed), sum(map(len, echoed))
        assert counted(from_callee) == (back, back_size, 0), (from_callee, back)
        assert back >= packets // 2, f"the echo path barely works: {back} of {packets}"
        assert counted(reply["totals"]["RTP"]) == (packets + back, size + back_size, 0), reply["totals"]

        # Proxy → caller: the echo, byte for byte, from the port the caller sends to (symmetric RTP).
        # Compared as a multiset: the order may change on the way (rtpengine 10.5 passes
        # telephone-event packets through a send queue ordered by RTP timestamp, and all packets of
        # one DTMF event share a timestamp, so two of them are sometimes swapped).
        assert not Counter(echoed) - Counter(sent), (call_id, "the caller got packets nobody sent")

    # Nothing reached the caller from anywhere else, and Kamailio had no complaint about a reply.
    assert set(run.echoed) == {(server.media_ip, run.caller.sdp_seen[c][1]) for c in call_ids}
    complaints = [line for line in kamailio.log().splitlines() if " ERROR: " in line or "CRITICAL" in line]
    assert not complaints, "\n".join(complaints)


def test_doc_quotes_the_kamailio_template() -> None:
    """docs/kamailio.md shows the very configuration this test runs."""
    assert KAMAILIO_TEMPLATE.read_text() in DOC.read_text(), (
        f"{DOC} must contain {KAMAILIO_TEMPLATE} verbatim (copy the file into the doc's cfg block)"
    )
