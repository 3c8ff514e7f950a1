"""End to end with the real consumer of call-quality statistics: Kamailio 5.6's rtpengine module reads the
MOS of a call from Karl exactly as it reads it from rtpengine 10.5.

    test sockets ──NG offer/answer──► media proxy (rtpengine 127.0.0.3 / Karl 127.0.0.2)
    A, B ──RTP, SR, RR (both ways)──►     ▲
    test ──SIP OPTIONS──► Kamailio ──NG query (rtpengine_query())
         ◄── 200 OK, one X-MOS-<name> header per MOS pseudo-variable

The call is set up directly over NG, with the Call-ID and tags the SIP request carries, and labels
("caller", "callee") for the module's per-side (A/B) variables. Both parties send RTP and, in two rounds
more than a second apart, sender reports and receiver reports echoing them (LSR/DLSR), with losses and
jitter that differ per round and per direction, so that both legs' round-trip times are known and the call
has distinct lowest, highest and average MOS. Kamailio (`kamailio/mos.cfg`) answers with every MOS
variable ("<null>" where it set none). Everything is done on both servers back to back; the figures must
be the same, except what depends on timing: round-trip times (a tolerance per leg) and "at" (a second).

Run: .venv/bin/pytest -q tests/e2e/test_kamailio_mos.py
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_kamailio_sipp import Kamailio, kamailio_modules_dir, launch_kamailio, tail
from tests.medianode.test_rtcp_sidebyside import (
    Side,
    deliver,
    pass_time,
    receiver_report,
    report_block,
    rtp,
    sender_report,
)

from karl_testkit import NgServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.sidebyside]

HERE = Path(__file__).resolve().parent
MOS_TEMPLATE = HERE / "kamailio" / "mos.cfg"
KAMAILIO_IP = "127.0.0.1"
REFERENCE_IP, KARL_IP = "127.0.0.3", "127.0.0.2"

SSRC_A, SSRC_B = 0xA1A1_0001, 0xB2B2_0002
PT_A, PT_B = 0, 8  # PCMU from A, PCMA from B: both 8 kHz, so 8 jitter units are a millisecond
LABEL_A, LABEL_B = "caller", "callee"  # mos.cfg's MOS_A_LABEL and MOS_B_LABEL
RTT_SPACING = 0.045
"""Time between the SRs and the RRs echoing them; minus the DLSR it is what a leg's round trip measures."""
DLSR_10_MS = 655  # 10 ms in 1/65536 s
RTT_LEG_TOLERANCE_US = 15_000
"""rtpengine stamps a datagram with the kernel's receive time, Karl when its event loop handles it: a busy
machine makes that milliseconds apart (see tests/medianode/test_rtcp_sidebyside.py)."""


# ---- the scenario: what each party reports about the other, per round -----------------------------


@dataclass(frozen=True)
class Block:
    """A report block's figures: fraction lost (1/256), cumulative loss, jitter (RTP timestamp units)."""

    fraction: int
    cumulative: int
    jitter: int

    @property
    def loss_percent(self) -> int:
        return self.fraction * 100 // 256

    @property
    def jitter_ms(self) -> int:
        return self.jitter // 8


# Each block's MOS (41, 12, 14) stays the same for any end-to-end round trip from 26 to 115 ms, and two
# legs of RTT_SPACING minus the DLSR make about 70 ms: the MOS does not depend on timing, and can be exact.
A_ABOUT_B = (Block(fraction=8, cumulative=2, jitter=40), Block(fraction=72, cumulative=25, jitter=120))
B_ABOUT_A = (Block(fraction=11, cumulative=3, jitter=80), Block(fraction=67, cumulative=20, jitter=80))
# In round 1 B reports first, before A's report has measured the other leg: B's first block has no
# end-to-end round trip, hence no MOS, and rtpengine keeps it out of the MOS figures (but not out of
# the block count). So A's SSRC has two MOS samples, B's one (its round-2 block).


def expected_figures() -> dict[str, int]:
    """What Kamailio must read, timing aside, derived from the blocks sent (rtpengine's rules: loss in
    percent of the fraction lost, jitter in ms, integer averages; Kamailio's: the lowest and the highest of
    all SSRCs' lowest and highest entries, and the average of the SSRCs' averages)."""
    a_low, a_high = A_ABOUT_B[1], A_ABOUT_B[0]  # more loss and jitter: the lower MOS
    b_only = B_ABOUT_A[1]
    a_avg_loss = (a_low.loss_percent + a_high.loss_percent) // 2
    a_avg_jitter = (a_low.jitter_ms + a_high.jitter_ms) // 2
    figures = {
        "min_packetloss": a_low.loss_percent,
        "min_jitter": a_low.jitter_ms,
        "max_packetloss": a_high.loss_percent,
        "max_jitter": a_high.jitter_ms,
        "average_packetloss": (a_avg_loss + b_only.loss_percent) // 2,
        "average_jitter": (a_avg_jitter + b_only.jitter_ms) // 2,
        "average_samples": (2 + 1) // 2,
        "min_packetloss_A": a_low.loss_percent,
        "min_jitter_A": a_low.jitter_ms,
        "max_packetloss_A": a_high.loss_percent,
        "max_jitter_A": a_high.jitter_ms,
        "average_packetloss_A": a_avg_loss,
        "average_jitter_A": a_avg_jitter,
        "average_samples_A": 2,
    }
    for kind in ("min", "max", "average"):
        figures[f"{kind}_packetloss_B"] = b_only.loss_percent
        figures[f"{kind}_jitter_B"] = b_only.jitter_ms
    figures["average_samples_B"] = 1
    return figures


# ---- Kamailio ---------------------------------------------------------------------------------------

SCOPES = ("", "_A", "_B")
NAMES = [
    f"{kind}{figure}{scope}"
    for scope in SCOPES
    for kind, figures in (
        ("min", ("", "_at", "_packetloss", "_jitter", "_roundtrip", "_roundtrip_leg")),
        ("max", ("", "_at", "_packetloss", "_jitter", "_roundtrip", "_roundtrip_leg")),
        ("average", ("", "_packetloss", "_jitter", "_roundtrip", "_roundtrip_leg", "_samples")),
    )
    for figure in figures
]
"""Every MOS pseudo-variable of Kamailio 5.6's rtpengine module: modparam "mos_<name>_pv", which mos.cfg
stores in $avp(mos_<name>) and returns as header "X-MOS-<name>"."""


@dataclass(frozen=True)
class KamailioTools:
    kamailio: str
    modules: Path


def kamailio_tools() -> KamailioTools:
    """Kamailio and its rtpengine module, or a skip that says what is missing."""
    kamailio = shutil.which("kamailio") or next(
        (str(p) for p in (Path("/usr/sbin/kamailio"), Path("/usr/bin/kamailio")) if p.exists()), None
    )
    if kamailio is None:
        pytest.skip("kamailio is not installed (Debian package kamailio)")
    modules = kamailio_modules_dir(kamailio)
    if modules is None:
        pytest.skip("Kamailio's rtpengine module is not installed (rtpengine.so not found)")
    return KamailioTools(kamailio, modules)


def start_mos_kamailio(tools: KamailioTools, ng: NgServer, workdir: Path) -> Kamailio:
    """Kamailio with mos.cfg, asking `ng` (its NG socket) for the call's statistics."""
    workdir.mkdir()
    return launch_kamailio(tools.kamailio, tools.modules, ng, workdir, MOS_TEMPLATE, KAMAILIO_IP)


def sip_query(kamailio: Kamailio, call_id: str) -> dict[str, str]:
    """Send an OPTIONS of the call (Call-ID, From-tag "ta", To-tag "tb") to Kamailio, which runs
    rtpengine_query() for it; return the X-MOS-* headers of its 200 OK, by variable name."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((KAMAILIO_IP, free_port(KAMAILIO_IP)))
        sock.settimeout(10.0)  # above Kamailio's NG timeout x tries (mos.cfg: 1 s x 3)
        here = f"{KAMAILIO_IP}:{sock.getsockname()[1]}"
        request = (
            f"OPTIONS sip:mos@{kamailio.ip}:{kamailio.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {here};branch=z9hG4bK-{uuid.uuid4().hex};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{LABEL_A}@{KAMAILIO_IP}>;tag=ta\r\n"
            f"To: <sip:{LABEL_B}@{KAMAILIO_IP}>;tag=tb\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (kamailio.ip, kamailio.port))
        try:
            reply = sock.recv(65535).decode()
        except TimeoutError:
            pytest.fail(f"no SIP reply from Kamailio\n--- kamailio ---\n{tail(kamailio.log_path)}")
    head, _, _ = reply.partition("\r\n\r\n")
    status, *lines = head.split("\r\n")
    assert status == "SIP/2.0 200 OK", f"{reply}\n--- kamailio ---\n{tail(kamailio.log_path)}"
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name.startswith("X-MOS-"):
            headers[name.removeprefix("X-MOS-")] = value.strip()
    assert sorted(headers) == sorted(NAMES), f"mos.cfg and this test disagree on the variables:\n{reply}"
    return headers


# ---- the call on one server ---------------------------------------------------------------------------


def send_media(call: Side) -> None:
    for seq in range(20):
        call.rtp_from_a(rtp(seq, SSRC_A, PT_A))
        call.rtp_from_b(rtp(100 + seq, SSRC_B, PT_B))


def report_round(calls: list[Side], index: int) -> None:
    """SRs from A and B; RTT_SPACING later B's RR echoing A's SR, then A's RR echoing B's SR."""
    sent = time.monotonic()
    sr_a, lsr_a = sender_report(SSRC_A)
    sr_b, lsr_b = sender_report(SSRC_B)

    def both_srs(call: Side) -> None:
        call.rtcp_from_a(sr_a)
        call.rtcp_from_b(sr_b)

    deliver(calls, both_srs)
    pass_time(sent, RTT_SPACING)
    b, a = B_ABOUT_A[index], A_ABOUT_B[index]
    from_b = receiver_report(
        SSRC_B,
        report_block(
            SSRC_A, fraction=b.fraction, cumulative=b.cumulative, jitter=b.jitter, lsr=lsr_a, dlsr=DLSR_10_MS
        ),
    )
    from_a = receiver_report(
        SSRC_A,
        report_block(
            SSRC_B, fraction=a.fraction, cumulative=a.cumulative, jitter=a.jitter, lsr=lsr_b, dlsr=DLSR_10_MS
        ),
    )
    deliver(calls, lambda call: call.rtcp_from_b(from_b))
    deliver(calls, lambda call: call.rtcp_from_a(from_a))


# ---- reading and comparing the figures ------------------------------------------------------------


def at_seconds(value: str) -> int:
    """Kamailio's "m:ss" (seconds since the call was created)."""
    found = re.fullmatch(r"(-?\d+):(\d\d)", value)
    assert found, value
    minutes, seconds = int(found.group(1)), int(found.group(2))
    return minutes * 60 + (seconds if minutes >= 0 else -seconds)


def is_time(name: str) -> bool:
    return name.startswith(("min_at", "max_at"))


def tolerance_of(name: str) -> int:
    """How far Karl's figure may be from rtpengine's: 0 for all but what timing decides."""
    if "roundtrip_leg" in name:
        return RTT_LEG_TOLERANCE_US
    if "roundtrip" in name:
        return 2 * RTT_LEG_TOLERANCE_US  # the end-to-end round trip is the sum of two legs
    if is_time(name):
        return 1  # whole seconds since the call was created, which each server stamps itself
    return 0


def compare_figures(reference: dict[str, str], karl: dict[str, str]) -> list[str]:
    """Every variable where Karl's figure is not rtpengine's (within `tolerance_of`)."""
    problems = []
    for name in NAMES:
        want, got = reference[name], karl[name]
        if want == got:
            continue
        tolerance = tolerance_of(name)
        if tolerance and "<null>" not in (want, got):
            number = at_seconds if is_time(name) else int
            if abs(number(want) - number(got)) <= tolerance:
                continue
        problems.append(f"{name}: rtpengine {want!r}, Karl {got!r}")
    return problems


def test_comparison_catches_differences() -> None:
    """The comparison itself: tolerances only for round trips and "at"."""
    figures = {name: "7" for name in NAMES} | {
        "min": "1.2",
        "min_at": "0:01",
        "min_roundtrip": "80000",
        "min_roundtrip_leg": "40000",
    }
    assert compare_figures(figures, dict(figures)) == []
    close = figures | {"min_at": "0:02", "min_roundtrip": "109000", "min_roundtrip_leg": "54000"}
    assert compare_figures(figures, close) == []
    for changed in (
        {"min": "1.3"},
        {"min_at": "0:03"},
        {"min_roundtrip": "111000"},
        {"min_roundtrip_leg": "56000"},
        {"min_roundtrip_leg": "<null>"},
        {"average_samples_B": "<null>"},
        {"max_packetloss_A": "8"},
    ):
        assert compare_figures(figures, figures | changed) == [
            f"{name}: rtpengine {figures[name]!r}, Karl {value!r}" for name, value in changed.items()
        ]
    assert at_seconds("1:05") == 65 and at_seconds("-1:05") == -65


def sanity_problems(figures: dict[str, str]) -> list[str]:
    """What is wrong with one server's figures on their own: unset variables, a MOS outside 1.0..5.0 or
    out of order, loss, jitter or samples other than sent, implausible round trips or times."""
    unset = [name for name in NAMES if figures[name] == "<null>"]
    if unset:
        return [f"not filled: {', '.join(unset)}"]
    problems = []
    for scope in SCOPES:
        mos = [float(figures[f"{kind}{scope}"]) for kind in ("min", "average", "max")]
        if not all(1.0 <= value <= 5.0 for value in mos) or mos != sorted(mos):
            problems.append(f"MOS{scope} min/average/max: {mos}")
    for name, value in expected_figures().items():
        if int(figures[name]) != value:
            problems.append(f"{name}: {figures[name]}, expected {value} from the reports sent")
    # A leg is about the spacing minus the DLSR; half of it allows for a server that stamps the SR late.
    leg_floor = int((RTT_SPACING - 0.010) * 1_000_000) // 2
    for name in NAMES:
        if "roundtrip" in name:
            floor = leg_floor if "leg" in name else 2 * leg_floor
            if not floor <= int(figures[name]) < 1_000_000:
                problems.append(f"{name}: {figures[name]} us, expected at least {floor} us (and under 1 s)")
        elif is_time(name) and not 0 <= at_seconds(figures[name]) <= 10:
            problems.append(f"{name}: {figures[name]}, expected within the call's first seconds")
    return problems


def ng_view(reply: dict[str, Any]) -> str:
    """The parts of an NG query reply that Kamailio reads for its MOS variables."""
    streams = {
        tag: [
            {key: stream.get(key) for key in ("local port", "flags", "SSRC")}
            for media in entry.get("medias", [])
            for stream in media.get("streams", [])
        ]
        for tag, entry in reply.get("tags", {}).items()
    }
    labels = {tag: entry.get("label") for tag, entry in reply.get("tags", {}).items()}
    view = {"created": reply.get("created"), "labels": labels, "streams": streams, "SSRC": reply.get("SSRC")}
    return json.dumps(view, indent=1, default=str)


# ---- the test -----------------------------------------------------------------------------------------


@pytest.fixture
def kamailio_tools_or_skip() -> KamailioTools:
    return kamailio_tools()


@pytest.fixture
def kamailios(
    kamailio_tools_or_skip: KamailioTools, tmp_path: Path
) -> Iterator[Callable[[NgServer], Kamailio]]:
    started: list[Kamailio] = []

    def start(ng: NgServer) -> Kamailio:
        started.append(start_mos_kamailio(kamailio_tools_or_skip, ng, tmp_path / f"kamailio-{ng.name}"))
        return started[-1]

    yield start
    for kamailio in started:
        kamailio.stop()


def test_kamailio_reads_the_same_mos_from_karl_as_from_rtpengine(
    kamailios: Callable[[NgServer], Kamailio],
    rtpengine_factory: Callable[..., NgServer],
    karl_factory: Callable[..., NgServer],
) -> None:
    servers = [rtpengine_factory(media_ip=REFERENCE_IP, ports=20), karl_factory(media_ip=KARL_IP, ports=20)]
    proxies = [kamailios(server) for server in servers]
    calls = [Side(server, mux=False, labels=(LABEL_A, LABEL_B)) for server in servers]
    try:
        deliver(calls, send_media)
        report_round(calls, 0)
        round_one = time.monotonic()
        pass_time(round_one, 1.05)  # rtpengine takes a reporter's next block only a second later
        report_round(calls, 1)

        figures = [sip_query(proxy, call.call_id) for proxy, call in zip(proxies, calls, strict=True)]
        replies = [call.query() for call in calls]
    finally:
        for call in calls:
            call.close()

    reference, karl = figures
    raw = (
        f"\n\nKamailio's figures from rtpengine: {reference}\nKamailio's figures from Karl:      {karl}"
        f"\n\nrtpengine's NG query reply (what Kamailio reads):\n{ng_view(replies[0])}"
        f"\n\nKarl's NG query reply (what Kamailio reads):\n{ng_view(replies[1])}"
    )
    # The reference itself: if rtpengine's figures are not what the reports say, the scenario is wrong.
    problems = sanity_problems(reference)
    assert not problems, "rtpengine's figures:\n  " + "\n  ".join(problems) + raw

    differences = compare_figures(reference, karl)
    if differences:
        pytest.fail(
            "Kamailio read other MOS figures from Karl than from rtpengine:\n  "
            + "\n  ".join(differences)
            + raw,
            pytrace=False,
        )
    assert not sanity_problems(karl), raw  # implied by the equality, but said on its own

    for proxy in proxies:
        complaints = [line for line in proxy.log().splitlines() if " ERROR: " in line or "CRITICAL" in line]
        assert not complaints, "\n".join(complaints)
