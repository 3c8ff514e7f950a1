"""RTCP call-quality statistics side by side: the same call against rtpengine 10.5 and against Karl.

Two parties exchange RTP through each server, send sender reports, and answer them with receiver reports
that echo the LSR with a DLSR, in two rounds more than a second apart. Extra reporters cover the edge
cases: one that echoes no SR (LSR 0), one that reports about an SSRC that never sent anything, and an SSRC
that sends sender and receiver reports but no RTP. Then the "SSRC" sections of the `query` and `delete`
replies must be the same: same SSRCs, keys and structure, the same integers for jitter, loss, samples,
intervals and entry counts. Only what depends on timing may differ: round-trip times (+-15 ms a leg), the
MOS computed from them (+-1, only where the round-trip times explain it), and "reported at" (+-1 s).
Variants: separate RTCP ports, rtcp-mux, and an SSRC switch that continues the sequence numbers; and a
compound whose reports precede a malformed part.

Every step is done on both servers back to back, so one scenario costs the wall-clock time of one.
"""

from __future__ import annotations

import re
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import karl_testkit as testkit
from karl_medianode.quality import mos_x10
from karl_medianode.rtp.rtcp import build_xr, xr_dlrr, xr_receiver_reference_time, xr_voip_metrics
from karl_testkit import NgServer, Party, make_party, sdp, wait_for

pytestmark = pytest.mark.sidebyside

REFERENCE_IP = "127.0.0.3"
KARL_IP = "127.0.0.2"
RTT_LEG_TOLERANCE_US = 15_000
"""Round-trip times are timing: rtpengine stamps a datagram with the kernel's receive time (SO_TIMESTAMP),
Karl when its event loop handles it, which a busy machine delays by milliseconds."""
RTT_TOLERANCE = {"round-trip time leg": RTT_LEG_TOLERANCE_US, "round-trip time": 2 * RTT_LEG_TOLERANCE_US}
"""The end-to-end round-trip time is the sum of two legs, each measured with that difference."""
RTT_SPACING = 0.05
"""Time between the SRs and the RRs answering them: what the servers measure as round-trip time."""
DLSR_10_MS = 655  # 10 ms in 1/65536 s

SSRC_A, SSRC_B = 0xA1A1_0001, 0xB2B2_0002
SSRC_A_OLD = 0xA0A0_0000
"""What A sends with before switching to SSRC_A (in the SSRC-switch variant)."""
SSRC_C = 0xC3C3_0003
"""A second reporter on A's side that never echoes an SR (LSR 0)."""
SSRC_D = 0xD4D4_0004
"""A reporter on B's side that reports about SSRC_NOBODY."""
SSRC_E = 0xE5E5_0005
"""Sends SRs and RRs from A's side but no RTP."""
SSRC_NOBODY = 0xDEAD_BEEF
"""Never sends anything."""


# ---- servers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NgServer, NgServer]]:
    if not Path(testkit.RTPENGINE).exists():
        pytest.skip("the reference rtpengine daemon is not installed (Debian package rtpengine-daemon)")
    log_dir = tmp_path_factory.mktemp("rtcp-sbs")
    reference = testkit.start_rtpengine(log_dir, REFERENCE_IP, 40)
    try:
        karl = testkit.start_karl(log_dir, KARL_IP, 40)
    except Exception:
        reference.stop()
        raise
    yield reference, karl
    karl.stop()
    reference.stop()


# ---- RTP and RTCP -------------------------------------------------------------------------------


def rtp(seq: int, ssrc: int, pt: int) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc) + b"\xd5" * 160


def report_block(
    about: int, *, fraction: int, cumulative: int, jitter: int, lsr: int = 0, dlsr: int = 0
) -> bytes:
    return (
        struct.pack("!IB", about, fraction)
        + (cumulative & 0xFFFFFF).to_bytes(3, "big")
        + struct.pack("!IIII", 1000, jitter, lsr, dlsr)
    )


def rtcp_part(packet_type: int, count: int, body: bytes) -> bytes:
    return struct.pack("!BBH", 0x80 | count, packet_type, (len(body) + 4) // 4 - 1) + body


def sender_report(ssrc: int) -> tuple[bytes, int]:
    """An SR stamped now, and the middle bits of its NTP timestamp (what an RR echoes as LSR)."""
    now = time.time() + 2_208_988_800
    msw, lsw = int(now), int(now % 1 * 2**32)
    body = struct.pack("!IIIIII", ssrc, msw, lsw, 8000, 50, 8000)
    return rtcp_part(200, 0, body), (msw & 0xFFFF) << 16 | lsw >> 16


def receiver_report(reporter: int, *blocks: bytes) -> bytes:
    return rtcp_part(201, len(blocks), struct.pack("!I", reporter) + b"".join(blocks))


def media_port(sdp_text: str) -> int:
    found = re.search(r"^m=audio (\d+) ", sdp_text, re.M)
    assert found, sdp_text
    return int(found.group(1))


# ---- one call on one server ----------------------------------------------------------------------


@dataclass
class Side:
    """The call on one server: A's and B's sockets and where each sends its RTP and RTCP."""

    server: NgServer
    mux: bool
    call_id: str = field(default_factory=lambda: f"rtcp-sbs-{uuid.uuid4().hex}")
    a: Party = field(default_factory=make_party)
    b: Party = field(default_factory=make_party)
    a_to: int = 0
    b_to: int = 0
    labels: tuple[str, str] | None = None
    """NG labels of A and B (Kamailio's per-party MOS variables find the parties by them)."""
    sent: int = 0
    """Datagrams sent to the server (RTP and RTCP), to know when it has seen all of them."""

    def __post_init__(self) -> None:
        extra = "a=rtcp-mux\r\n" if self.mux else ""
        label_a, label_b = ({"label": self.labels[0]}, {"label": self.labels[1]}) if self.labels else ({}, {})
        ng = self.server.ng
        offer = ng.request(
            {
                "command": "offer",
                "call-id": self.call_id,
                "from-tag": "ta",
                **label_a,
                "sdp": sdp(self.a.port, extra=extra),
            }
        )
        assert offer["result"] == "ok", offer
        answer = ng.request(
            {
                "command": "answer",
                "call-id": self.call_id,
                "from-tag": "ta",
                "to-tag": "tb",
                **label_b,
                "sdp": sdp(self.b.port, extra=extra),
            }
        )
        assert answer["result"] == "ok", answer
        self.a_to, self.b_to = media_port(answer["sdp"]), media_port(offer["sdp"])

    def rtp_from_a(self, data: bytes) -> None:
        self.a.rtp.sendto(data, (self.server.media_ip, self.a_to))
        self.sent += 1

    def rtp_from_b(self, data: bytes) -> None:
        self.b.rtp.sendto(data, (self.server.media_ip, self.b_to))
        self.sent += 1

    def rtcp_from_a(self, data: bytes) -> None:
        sock, port = (self.a.rtp, self.a_to) if self.mux else (self.a.rtcp, self.a_to + 1)
        sock.sendto(data, (self.server.media_ip, port))
        self.sent += 1

    def rtcp_from_b(self, data: bytes) -> None:
        sock, port = (self.b.rtp, self.b_to) if self.mux else (self.b.rtcp, self.b_to + 1)
        sock.sendto(data, (self.server.media_ip, port))
        self.sent += 1

    def rtcp(self, *, a: tuple[bytes, ...] = (), b: tuple[bytes, ...] = ()) -> None:
        for data in a:
            self.rtcp_from_a(data)
        for data in b:
            self.rtcp_from_b(data)

    def query(self) -> dict[str, Any]:
        reply: dict[str, Any] = self.server.ng.request({"command": "query", "call-id": self.call_id})
        assert reply["result"] == "ok", reply
        return reply

    def delete(self) -> dict[str, Any]:
        reply: dict[str, Any] = self.server.ng.request(
            {"command": "delete", "call-id": self.call_id, "from-tag": "ta"}
        )
        assert reply["result"] == "ok", reply
        return reply

    def seen_everything(self) -> dict[str, Any] | None:
        """The query reply once the server has counted every datagram sent to it, else None."""
        reply = self.query()
        totals = reply["totals"]
        return reply if totals["RTP"]["packets"] + totals["RTCP"]["packets"] >= self.sent else None

    def close(self) -> None:
        self.a.close()
        self.b.close()


def on_both(sides: list[Side], step: Callable[[Side], object]) -> None:
    for side in sides:
        step(side)


def deliver(sides: list[Side], step: Callable[[Side], object]) -> None:
    """Send on both servers, then wait until both have handled it: reports sent to different ports
    (A's and B's) are otherwise handled in no particular order, and the order changes the statistics."""
    on_both(sides, step)
    for side in sides:
        settled(side)


def settled(side: Side) -> dict[str, Any]:
    reply = wait_for(side.seen_everything, timeout=5.0)
    assert isinstance(reply, dict)
    return reply


def pass_time(since: float, seconds: float) -> None:
    """Let `seconds` pass since `since` (monotonic): the spacing itself is what the servers measure."""
    deadline = since + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)


# ---- comparing "SSRC" sections -------------------------------------------------------------------


def compare_stats(reference: dict[str, Any], karl: dict[str, Any], path: str) -> list[str]:
    """One statistics dictionary ("average MOS", "lowest MOS", a progression entry)."""
    problems = []
    if sorted(reference) != sorted(karl):
        return [f"{path}: keys {sorted(reference)} != {sorted(karl)}"]
    for key in reference:
        want, got = reference[key], karl[key]
        if key in RTT_TOLERANCE:
            if (want == 0) != (got == 0) or abs(want - got) > RTT_TOLERANCE[key]:
                problems.append(
                    f"{path}/{key}: rtpengine {want}, Karl {got} (tolerance {RTT_TOLERANCE[key]} us)"
                )
        elif key == "reported at":
            if abs(want - got) > 1:
                problems.append(f"{path}/{key}: rtpengine {want}, Karl {got}")
        elif key == "MOS":
            if want == got:
                continue
            explained = abs(want - got) <= 1 and (
                "samples" in reference  # an average of values that may each sit at a boundary
                or mos_x10(reference["round-trip time"], reference["jitter"], reference["packet loss"])
                != mos_x10(karl["round-trip time"], reference["jitter"], reference["packet loss"])
            )
            if not explained:
                problems.append(f"{path}/MOS: rtpengine {want}, Karl {got}")
        elif want != got:
            problems.append(f"{path}/{key}: rtpengine {want!r}, Karl {got!r}")
    return problems


def compare_ssrc_sections(reference: dict[str, Any], karl: dict[str, Any]) -> list[str]:
    if sorted(reference) != sorted(karl):
        return [f"SSRCs listed: rtpengine {sorted(map(int, reference))}, Karl {sorted(map(int, karl))}"]
    problems = []
    for ssrc, want in reference.items():
        got = karl[ssrc]
        path = f"SSRC {int(ssrc):#x}"
        if sorted(want) != sorted(got):
            problems.append(f"{path}: keys {sorted(want)} != {sorted(got)}")
            continue
        if want["cumulative loss"] != got["cumulative loss"]:
            problems.append(
                f"{path}/cumulative loss: rtpengine {want['cumulative loss']}, Karl {got['cumulative loss']}"
            )
        for label in ("average MOS", "lowest MOS", "highest MOS"):
            problems += compare_stats(want[label], got[label], f"{path}/{label}")
        progression, karl_progression = want["MOS progression"], got["MOS progression"]
        if sorted(progression) != sorted(karl_progression):
            problems.append(
                f"{path}/MOS progression: keys {sorted(progression)} != {sorted(karl_progression)}"
            )
            continue
        if progression["interval"] != karl_progression["interval"]:
            problems.append(
                f"{path}/MOS progression/interval: rtpengine {progression['interval']}, "
                f"Karl {karl_progression['interval']}"
            )
        entries, karl_entries = progression["entries"], karl_progression["entries"]
        if len(entries) != len(karl_entries):
            problems.append(
                f"{path}/MOS progression: rtpengine {len(entries)} entries, Karl {len(karl_entries)}"
            )
            continue
        for index, (entry, karl_entry) in enumerate(zip(entries, karl_entries, strict=True)):
            problems += compare_stats(entry, karl_entry, f"{path}/MOS progression/{index}")
    return problems


def assert_same_ssrc_sections(what: str, reference: dict[str, Any], karl: dict[str, Any]) -> None:
    assert "SSRC" in reference and "SSRC" in karl, (what, sorted(reference), sorted(karl))
    problems = compare_ssrc_sections(reference["SSRC"], karl["SSRC"])
    if problems:
        pytest.fail(
            f"{what}: Karl's \"SSRC\" differs from rtpengine's:\n  "
            + "\n  ".join(problems)
            + f"\n\nrtpengine: {reference['SSRC']}\nKarl:      {karl['SSRC']}",
            pytrace=False,
        )


def test_comparison_catches_differences() -> None:
    """The comparison itself: tolerances where timing differs, nothing else."""
    entry = {
        "MOS": 43,
        "round-trip time": 80_000,
        "round-trip time leg": 40_000,
        "jitter": 10,
        "packet loss": 0,
    }
    stamped = {**entry, "reported at": 1000}
    section = {
        "1": {
            "cumulative loss": 5,
            "average MOS": {**entry, "samples": 1},
            "lowest MOS": stamped,
            "highest MOS": stamped,
            "MOS progression": {"interval": 0, "entries": [stamped]},
        }
    }
    assert compare_ssrc_sections(section, section) == []
    close = {**stamped, "round-trip time": 109_000, "round-trip time leg": 54_000, "reported at": 1001}
    nearly = {**section["1"], "lowest MOS": close}
    assert compare_ssrc_sections(section, {"1": nearly}) == []
    for changed in (
        {"cumulative loss": 6},
        {"lowest MOS": {**stamped, "jitter": 11}},
        {"lowest MOS": {**stamped, "round-trip time": 111_000}},
        {"lowest MOS": {**stamped, "round-trip time leg": 56_000}},
        {"lowest MOS": {**stamped, "round-trip time": 0}},
        {"lowest MOS": {**stamped, "MOS": 42}},  # same RTT: no excuse for another MOS
        {"lowest MOS": {**stamped, "reported at": 1002}},
        {"average MOS": {**entry, "samples": 2}},
        {"MOS progression": {"interval": 1, "entries": [stamped]}},
        {"MOS progression": {"interval": 0, "entries": [stamped, stamped]}},
    ):
        assert compare_ssrc_sections(section, {"1": {**section["1"], **changed}}), changed
    assert compare_ssrc_sections(section, {"2": section["1"]})
    assert compare_ssrc_sections(section, {})


# ---- the scenario ---------------------------------------------------------------------------------


def send_media(sides: list[Side], switch_ssrc: bool) -> None:
    """A: 45 packets, 5 missing; B: 50 packets in PCMA. With `switch_ssrc`, A sends up to 29 with another
    SSRC, and the numbering just continues on the new one (30 follows 29)."""

    def media(side: Side) -> None:
        for seq in [*range(20), *range(25, 50)]:
            side.rtp_from_a(rtp(seq, SSRC_A_OLD if switch_ssrc and seq < 30 else SSRC_A, 0))
        for seq in range(100, 150):
            side.rtp_from_b(rtp(seq, SSRC_B, 8))

    on_both(sides, media)


def sender_reports(sides: list[Side], *ssrcs_from_a: int) -> dict[int, int]:
    """SRs from B and from `ssrcs_from_a` (on A's side); the same datagrams go to both servers."""
    reports = {ssrc: sender_report(ssrc) for ssrc in (*ssrcs_from_a, SSRC_B)}

    def send(side: Side) -> None:
        for ssrc, (data, _) in reports.items():
            (side.rtcp_from_b if ssrc == SSRC_B else side.rtcp_from_a)(data)

    deliver(sides, send)
    return {ssrc: lsr for ssrc, (_, lsr) in reports.items()}


def first_round(sides: list[Side]) -> None:
    sent = time.monotonic()
    lsr = sender_reports(sides, SSRC_A, SSRC_E)
    pass_time(sent, RTT_SPACING)
    from_b = receiver_report(
        SSRC_B,
        report_block(SSRC_A, fraction=25, cumulative=5, jitter=160, lsr=lsr[SSRC_A], dlsr=DLSR_10_MS),
        report_block(SSRC_E, fraction=0, cumulative=0, jitter=8, lsr=lsr[SSRC_E], dlsr=DLSR_10_MS),
    )
    from_a = receiver_report(
        SSRC_A, report_block(SSRC_B, fraction=0, cumulative=0, jitter=80, lsr=lsr[SSRC_B], dlsr=DLSR_10_MS)
    )
    from_c = receiver_report(SSRC_C, report_block(SSRC_B, fraction=50, cumulative=7, jitter=40))
    from_d = receiver_report(
        SSRC_D,
        report_block(SSRC_NOBODY, fraction=9, cumulative=1, jitter=16, lsr=lsr[SSRC_A], dlsr=DLSR_10_MS),
    )
    # B's report first: A's end-to-end RTT needs the leg B's report measures
    deliver(sides, lambda side: side.rtcp_from_b(from_b))
    deliver(sides, lambda side: side.rtcp(a=(from_a, from_c), b=(from_d,)))


def second_round(sides: list[Side]) -> None:
    sent = time.monotonic()
    lsr = sender_reports(sides, SSRC_A)
    pass_time(sent, RTT_SPACING)
    from_b = receiver_report(
        SSRC_B, report_block(SSRC_A, fraction=10, cumulative=6, jitter=240, lsr=lsr[SSRC_A], dlsr=DLSR_10_MS)
    )
    from_a = receiver_report(
        SSRC_A, report_block(SSRC_B, fraction=5, cumulative=1, jitter=80, lsr=lsr[SSRC_B], dlsr=DLSR_10_MS)
    )
    from_e = receiver_report(
        SSRC_E, report_block(SSRC_B, fraction=3, cumulative=2, jitter=120, lsr=lsr[SSRC_B], dlsr=DLSR_10_MS)
    )
    from_c = receiver_report(SSRC_C, report_block(SSRC_B, fraction=60, cumulative=9, jitter=48))
    # B again at once: under a second after its last block, so dropped, but its cumulative loss (here
    # negative: duplicates) replaces the one shown
    again_b = receiver_report(
        SSRC_B,
        report_block(SSRC_A, fraction=200, cumulative=-3, jitter=800, lsr=lsr[SSRC_A], dlsr=DLSR_10_MS),
    )
    sent_b = time.monotonic()
    deliver(sides, lambda side: side.rtcp_from_b(from_b))
    deliver(sides, lambda side: side.rtcp(a=(from_a, from_e, from_c)))
    pass_time(sent_b, RTT_SPACING)
    deliver(sides, lambda side: side.rtcp_from_b(again_b))


VARIANTS = {
    "separate RTCP ports": {"mux": False, "switch_ssrc": False},
    "rtcp-mux": {"mux": True, "switch_ssrc": False},
    "SSRC switch continuing the sequence": {"mux": False, "switch_ssrc": True},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ssrc_statistics_match_rtpengine(variant: str, servers: tuple[NgServer, NgServer]) -> None:
    reference, karl = servers
    for server in servers:
        if server.proc.poll() is not None:
            pytest.fail(f"{server.name} has exited; log: {server.log_path}")
    sides = [Side(reference, VARIANTS[variant]["mux"]), Side(karl, VARIANTS[variant]["mux"])]
    before_stats = [mos_statistics(side.server) for side in sides]
    try:
        send_media(sides, VARIANTS[variant]["switch_ssrc"])
        before = [settled(side) for side in sides]
        assert before[0]["SSRC"] == {} and before[1]["SSRC"] == {}

        first_round(sides)
        after_one = [settled(side) for side in sides]
        round_one = time.monotonic()  # both servers have handled the first round by now
        assert_same_ssrc_sections("query after the first round", *after_one)

        pass_time(round_one, 1.05)  # the next block of a reporter counts only a second later
        second_round(sides)
        after_two = [settled(side) for side in sides]
        assert_same_ssrc_sections("query after the second round", *after_two)
        # each stream shows the SSRC it last received (Kamailio's per-party MOS variables need it)
        if VARIANTS[variant]["switch_ssrc"]:
            # right after a switch, rtpengine's worker threads race on which SSRC a stream shows (the
            # old one or the new one, from run to run); Karl shows the one received last
            reference, karl = stream_ssrcs(after_two[0]), stream_ssrcs(after_two[1])
            assert reference["ta"][0] in (SSRC_A_OLD, SSRC_A) and karl["ta"][0] == SSRC_A
            assert karl["ta"][1:] == reference["ta"][1:] and karl["tb"] == reference["tb"]
        else:
            assert stream_ssrcs(after_two[1]) == stream_ssrcs(after_two[0])
        # what rtpengine shows, so that a change on both sides cannot go unnoticed
        listed = sorted(int(ssrc) for ssrc in after_two[0]["SSRC"])
        # (E sent no RTP: no statistics about it, but as a reporter it has the RTT of both legs)
        assert listed == sorted((SSRC_A, SSRC_B, SSRC_E)), [hex(ssrc) for ssrc in listed]
        b_stats = after_two[0]["SSRC"][str(SSRC_B)]
        assert b_stats["cumulative loss"] == 0xFFFFFD
        assert b_stats["average MOS"]["samples"] == 1
        assert len(b_stats["MOS progression"]["entries"]) == 2

        deleted = [side.delete() for side in sides]
        assert_same_ssrc_sections("delete", *deleted)
        # `statistics` counts every report block that had a MOS, as it arrived (also the one then
        # dropped by the one-second rule): the same number of samples on both servers
        after_stats = [mos_statistics(side.server) for side in sides]
        (ref_samples, ref_total), (karl_samples, karl_total) = (
            (after["mos_samples_total"] - prior["mos_samples_total"], after["mos_total"] - prior["mos_total"])
            for prior, after in zip(before_stats, after_stats, strict=True)
        )
        assert ref_samples == karl_samples > 0
        # the MOS may differ by 0.1 per block where the round-trip times put it on a boundary
        assert abs(ref_total - karl_total) <= 0.1 * karl_samples + 1e-6
    finally:
        for side in sides:
            side.close()


def stream_ssrcs(reply: dict[str, Any]) -> dict[str, list[int | None]]:
    return {
        tag: [stream.get("SSRC") for media in entry["medias"] for stream in media.get("streams", [])]
        for tag, entry in reply["tags"].items()
    }


def mos_statistics(server: NgServer) -> dict[str, float]:
    """The "mos" section of `statistics`, numbers parsed (rtpengine writes the sums as strings)."""
    reply = server.ng.request({"command": "statistics"})
    section = reply["statistics"]["mos"]
    assert set(section) == {"mos_total", "mos2_total", "mos_samples_total", "mos_average", "mos_stddev"}
    return {key: float(value) for key, value in section.items()}


def test_reports_before_a_malformed_part_still_count(servers: tuple[NgServer, NgServer]) -> None:
    """rtpengine evaluates the parts of a compound as it walks it: an SR (and an RR's blocks) ahead of a
    part that makes the whole datagram invalid (here version 1) are taken into account, although the
    datagram is then dropped as an error."""
    sides = [Side(server, mux=False) for server in servers]
    try:
        send_media(sides, switch_ssrc=False)
        for side in sides:
            settled(side)
        # an RR part saying version 1: rtpengine drops the whole datagram when it gets there
        malformed_tail = b"\x40\xc9\x00\x01" + struct.pack("!I", SSRC_A)
        sr_a, lsr_a = sender_report(SSRC_A)
        sr_b, lsr_b = sender_report(SSRC_B)
        sent = time.monotonic()
        deliver(sides, lambda side: side.rtcp(a=(sr_a + malformed_tail,), b=(sr_b,)))
        pass_time(sent, RTT_SPACING)
        from_b = receiver_report(
            SSRC_B, report_block(SSRC_A, fraction=25, cumulative=5, jitter=160, lsr=lsr_a, dlsr=DLSR_10_MS)
        )
        from_a = receiver_report(
            SSRC_A, report_block(SSRC_B, fraction=0, cumulative=0, jitter=80, lsr=lsr_b, dlsr=DLSR_10_MS)
        )
        deliver(sides, lambda side: side.rtcp_from_b(from_b))
        on_both(sides, lambda side: side.rtcp_from_a(from_a + malformed_tail))
        replies = [settled(side) for side in sides]
        assert_same_ssrc_sections("query", *replies)
        assert sorted(int(ssrc) for ssrc in replies[0]["SSRC"]) == [SSRC_A]
    finally:
        for side in sides:
            side.close()


def xr(reporter: int, *blocks: tuple[int, bytes]) -> bytes:
    return build_xr(reporter, list(blocks))


@pytest.mark.parametrize("metrics_from", ["the party itself", "the other party"])
def test_xr_reference_time_dlrr_and_voip_metrics_match_rtpengine(
    metrics_from: str, servers: tuple[NgServer, NgServer]
) -> None:
    """RTCP XR (RFC 3611) as 10.5 reads it. A sends no SR but a receiver reference time, which B echoes in
    a DLRR: that gives the round trip of B's leg, so A's receiver report (about B's SR) has a MOS. Then
    VoIP metrics with a round-trip delay of 123 ms: rtpengine uses it for the end-to-end round trip of
    A's next report when A sent it about itself, and ignores it when B sent it about A (10.5 keeps it in
    the sender's own table)."""
    sides = [Side(server, mux=False) for server in servers]
    try:
        send_media(sides, switch_ssrc=False)
        for side in sides:
            settled(side)
        now = time.time() + 2_208_988_800
        seconds, fraction = int(now), int(now % 1 * 2**32)
        reference_time = (seconds & 0xFFFF) << 16 | fraction >> 16
        sr_b, lsr_b = sender_report(SSRC_B)
        sent = time.monotonic()
        deliver(sides, lambda side: side.rtcp(a=(xr(SSRC_A, xr_receiver_reference_time(seconds, fraction)),)))
        deliver(sides, lambda side: side.rtcp(b=(sr_b,)))
        pass_time(sent, RTT_SPACING)
        dlrr = xr(SSRC_B, xr_dlrr((SSRC_A, reference_time, DLSR_10_MS)))
        deliver(sides, lambda side: side.rtcp(b=(dlrr,)))
        block = report_block(SSRC_B, fraction=13, cumulative=2, jitter=80, lsr=lsr_b, dlsr=DLSR_10_MS)
        deliver(sides, lambda side: side.rtcp(a=(receiver_report(SSRC_A, block),)))
        first = [settled(side) for side in sides]
        assert_same_ssrc_sections("query after the DLRR round", *first)
        assert first[0]["SSRC"][str(SSRC_A)]["average MOS"]["MOS"] > 0, "the DLRR gave the other leg"

        pass_time(sent, 1.1)
        metrics = xr(SSRC_A, xr_voip_metrics(SSRC_A, 123))
        if metrics_from == "the party itself":
            deliver(sides, lambda side: side.rtcp(a=(metrics,)))
        else:
            about_a = xr(SSRC_B, xr_voip_metrics(SSRC_A, 123))
            deliver(sides, lambda side: side.rtcp(b=(about_a,)))
        sr_b2, lsr_b2 = sender_report(SSRC_B)
        deliver(sides, lambda side: side.rtcp(b=(sr_b2,)))
        block = report_block(SSRC_B, fraction=26, cumulative=4, jitter=160, lsr=lsr_b2, dlsr=DLSR_10_MS)
        deliver(sides, lambda side: side.rtcp(a=(receiver_report(SSRC_A, block),)))
        second = [settled(side) for side in sides]
        assert_same_ssrc_sections("query after the VoIP metrics", *second)
        lowest = second[0]["SSRC"][str(SSRC_A)]["lowest MOS"]["round-trip time"]
        assert (lowest == 123_000) == (metrics_from == "the party itself"), lowest
    finally:
        for side in sides:
            side.close()
