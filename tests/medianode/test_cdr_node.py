"""CDRs from real Karl processes: a timed-out call gets its record, and records spooled while the
database is down survive a restart of the node and reach the database exactly once."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from karl_medianode.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_receiver_report,
    build_sender_report,
)
from karl_testkit import NgServer, Party, sdp, wait_for

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=sendrecv\r\n"
)


def call(node: NgServer, call_id: str, delete: bool = True) -> None:
    assert (
        node.ng.request(
            {"command": "offer", "call-id": call_id, "from-tag": "a", "sdp": SDP.format(port=4000)}
        )["result"]
        == "ok"
    )
    answer = {
        "command": "answer",
        "call-id": call_id,
        "from-tag": "a",
        "to-tag": "b",
        "sdp": SDP.format(port=4002),
    }
    assert node.ng.request(answer)["result"] == "ok"
    if delete:
        assert node.ng.request({"command": "delete", "call-id": call_id, "from-tag": "a"})["result"] == "ok"


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_record_carries_sequence_loss_and_what_the_parties_reported(
    karl_factory: Callable[..., NgServer], parties: Callable[[], Party], tmp_path: Path
) -> None:
    """Real RTP with a gap and real RTCP reports through a Karl process; the record of the deleted call
    has the loss per direction and each party's quality (the MOS of the party that knew both legs)."""
    cdr = tmp_path / "cdr.jsonl"
    node = karl_factory(KARL_DELETE_DELAY="0", KARL_CDR_PATH=str(cdr))
    a, b = parties(), parties()
    offer = node.ng.request({"command": "offer", "call-id": "rated", "from-tag": "a", "sdp": sdp(a.port)})
    answer = node.ng.request(
        {"command": "answer", "call-id": "rated", "from-tag": "a", "to-tag": "b", "sdp": sdp(b.port)}
    )
    to_a_side, to_b_side = media_port(answer["sdp"]), media_port(offer["sdp"])
    ip = node.media_ip
    for seq in (*range(10), *range(13, 20)):  # 10, 11, 12 never sent
        a.rtp.sendto(rtp(seq, 0xA), (ip, to_a_side))
    for seq in range(20):
        b.rtp.sendto(rtp(seq, 0xB), (ip, to_b_side))
    assert len([b.rtp.recv(2048) for _ in range(17)]) == 17
    assert len([a.rtp.recv(2048) for _ in range(20)]) == 20
    sr_a = SenderReport(0xA, 3_900_000_000, 1 << 30, 0, 17, 2720, ())
    sr_b = SenderReport(0xB, 3_900_000_000, 1 << 31, 0, 20, 3200, ())
    a.rtcp.sendto(build_sender_report(sr_a), (ip, to_a_side + 1))
    b.rtcp.sendto(build_sender_report(sr_b), (ip, to_b_side + 1))
    b.rtcp.recv(2048), a.rtcp.recv(2048)
    a.rtcp.sendto(report(0xA, ReportBlock(0xB, 0, 0, 19, 8, sr_b.ntp_middle, 1)), (ip, to_a_side + 1))
    b.rtcp.recv(2048)
    b.rtcp.sendto(report(0xB, ReportBlock(0xA, 38, 3, 19, 80, sr_a.ntp_middle, 1)), (ip, to_b_side + 1))
    a.rtcp.recv(2048)
    assert node.ng.request({"command": "delete", "call-id": "rated", "from-tag": "a"})["result"] == "ok"

    (record,) = wait_for(lambda: [r for r in records(cdr) if r.get("call_id") == "rated"], timeout=8)
    assert record["loss_tracked"] is True and record["rtcp_reports"] == 4
    forward, backward = record["directions"]
    assert (forward["from"], forward["lost"], backward["lost"]) == ("a", 3, 0)
    assert record["totals"]["lost"] == 3
    caller, callee = record["tags"]
    assert caller["quality"]["mos"] is None and caller["quality"]["jitter_seconds"] == 0.001
    quality = callee["quality"]
    assert quality["ssrc"] == 0xB and quality["cumulative_lost"] == 3
    assert quality["packet_loss_ratio"] == round(38 / 256, 6) and quality["jitter_seconds"] == 0.01
    # 14 % loss, 10 ms jitter, loopback delays: R = 93.2 - 0.75 - 14 * 2.5 = 57.45 -> MOS 2.97
    assert quality["mos"] == quality["mos_min"] == 2.9 and quality["mos_samples"] == 1


def report(reporter: int, block: ReportBlock) -> bytes:
    return build_receiver_report(ReceiverReport(reporter, (block,)))


def rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + b"\xff" * 160


def media_port(sdp_text: str) -> int:
    match = re.search(r"^m=audio (\d+) ", sdp_text, re.M)
    assert match, sdp_text
    return int(match.group(1))


def test_a_timed_out_call_gets_its_record(karl_factory: Callable[..., NgServer], tmp_path: Path) -> None:
    cdr = tmp_path / "cdr.jsonl"
    node = karl_factory(KARL_TIMEOUT="1", KARL_DELETE_DELAY="0", KARL_CDR_PATH=str(cdr))
    call(node, "quiet-call", delete=False)  # no media at all: the 1 s media timeout ends it
    found = wait_for(lambda: [r for r in records(cdr) if r.get("call_id") == "quiet-call"], timeout=8)
    assert found[0]["reason"] == "timeout"


@pytest.fixture
def mariadb() -> Iterator[object]:
    from medianode.mariadb_fixture import running_mariadb, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with running_mariadb() as server:
        yield server


def test_records_spooled_while_the_database_is_down_survive_a_node_restart(
    karl_factory: Callable[..., NgServer], mariadb: object, tmp_path: Path
) -> None:
    server = mariadb
    dsn = server.create_database("karl_restart")  # type: ignore[attr-defined]
    env = {
        "KARL_DELETE_DELAY": "0",
        "KARL_MYSQL_DSN": dsn,
        "KARL_CDR_PATH": str(tmp_path / "cdr.jsonl"),
        "KARL_CDR_SPOOL_DIR": str(tmp_path / "spool"),
    }
    server.stop()  # type: ignore[attr-defined]  # the database is down from the start
    first = karl_factory(**env)
    for n in range(5):
        call(first, f"spooled-{n}")
    wait_for(lambda: len(records(tmp_path / "cdr.jsonl")) == 5, timeout=5)  # the file is independent
    assert first.stop() == 0  # the node goes away with its records still in the spool
    server.start()  # type: ignore[attr-defined]
    second = karl_factory(**env)  # a new process on the same spool replays it

    def rows() -> list[tuple[object, ...]]:
        try:
            return list(server.query("karl_restart", "SELECT call_id FROM karl_cdr ORDER BY call_id"))  # type: ignore[attr-defined]
        except Exception:
            return []

    got = wait_for(lambda: rows() if len(rows()) >= 5 else None, timeout=20)
    assert [r[0] for r in got] == [f"spooled-{n}" for n in range(5)], "each record exactly once"
    call(second, "after-restart")
    wait_for(lambda: len(rows()) == 6, timeout=10)
