"""Building and encoding a CDR from a finished call (sans-IO), and parsing the database DSN."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from karl_core.session import CallState, Codec, Endpoint, MediaState, PacketStreamState
from karl_medianode.engine import CallEnded
from karl_medianode.operations.cdr.dsn import DsnError, MysqlDsn, parse_dsn
from karl_medianode.operations.cdr.record import (
    MAX_PARTIES,
    MAX_TEXT,
    build_record,
    decode_record,
    encode_record,
)
from karl_medianode.quality import CallQuality
from karl_medianode.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_receiver_report,
    build_sender_report,
)

START = 1714564800.25  # 2024-05-01T12:00:00.25Z
SECRET_SDP = "v=0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:SECRETKEYSECRETKEYSECRETKEY\r\n"


def _media(sdp_port: int, local_port: int, packets: int, learned: tuple[str, int] | None) -> MediaState:
    media = MediaState(
        1,
        "audio",
        "RTP/AVP",
        ["0", "101"],
        [Codec(0, "PCMU", 8000), Codec(101, "telephone-event", 8000, fmtp="0-16")],
        sdp_address="192.0.2.10",
        sdp_port=sdp_port,
    )
    sdp = Endpoint("192.0.2.10", sdp_port)
    media.streams = [
        PacketStreamState(
            1,
            "203.0.113.1",
            local_port,
            advertised=sdp,
            endpoint=Endpoint(*learned) if learned else sdp,
            confirmed=learned is not None,
            packets=packets,
            bytes=packets * 172,
            errors=1,
        ),
        PacketStreamState(
            2,
            "203.0.113.1",
            local_port + 1,
            advertised=Endpoint("192.0.2.10", sdp_port + 1),
            packets=2,
            bytes=2 * 52,
        ),
    ]
    return media


def two_party_call(call_id: str = "call-1@example.org") -> CallEnded:
    state = CallState(call_id, START, START + 1)
    a = state.new_monologue(START, "tagA")
    b = state.new_monologue(START + 0.5, "tagB")
    a.partner, b.partner = b.uid, a.uid
    a.label = "caller"
    a.last_sdp = SECRET_SDP
    a.medias = [_media(4000, 30000, 50, learned=("198.51.100.7", 41000))]
    b.medias = [_media(5000, 30002, 40, learned=None)]
    b.medias[0].codecs = [Codec(8, "PCMA", 8000)]
    a.medias[0].streams[0].lost = 3
    return CallEnded(call_id, "deleted", START, START + 12.5, state, _quality())


def _quality() -> dict[str, object]:
    """B reports on A's media twice; A reports on B's once: both legs' RTT known for B's second report."""
    quality = CallQuality()
    rates = {0: 8000, 8: 8000, 101: 8000}
    quality.rtp_source(0xA, 0, "tagA", START)
    quality.rtp_source(0xB, 8, "tagB", START)
    sr_a = SenderReport(0xA, 3_900_000_000, 0x8000_0000, 0, 10, 1600, ())
    sr_b = SenderReport(0xB, 3_900_000_000, 0x4000_0000, 0, 10, 1600, ())
    quality.rtcp(build_sender_report(sr_a), START + 1.0, rates, "tagA")
    quality.rtcp(build_sender_report(sr_b), START + 1.0, rates, "tagB")
    dlsr = 65536 // 100  # 10 ms

    def rr(reporter: int, about: SenderReport, fraction: int, lost: int, jitter: int) -> bytes:
        block = ReportBlock(about.ssrc, fraction, lost, 100, jitter, about.ntp_middle, dlsr)
        return build_receiver_report(ReceiverReport(reporter, (block,)))

    quality.rtcp(rr(0xA, sr_b, 0, 0, 80), START + 1.05, rates, "tagA")  # A's leg: 40 ms
    quality.rtcp(rr(0xB, sr_a, 26, 4, 160), START + 1.03, rates, "tagB")  # B's leg: 20 ms
    return quality.summary()


def test_record_has_call_parties_addresses_codecs_and_directions() -> None:
    record = build_record(two_party_call(), "node-7", "11111111-2222-3333-4444-555555555555")
    assert record["record_id"] == "11111111-2222-3333-4444-555555555555"
    assert record["node_id"] == "node-7"
    assert record["call_id"] == "call-1@example.org"
    assert (record["from_tag"], record["to_tag"]) == ("tagA", "tagB")
    assert record["reason"] == "deleted"
    assert record["start"] == "2024-05-01T12:00:00.250000Z"
    assert record["end"] == "2024-05-01T12:00:12.750000Z"
    assert record["start_epoch"] == START and record["end_epoch"] == START + 12.5
    assert record["duration"] == 12.5
    caller, callee = record["tags"]
    assert caller["tag"] == "tagA" and caller["label"] == "caller" and caller["partner"] == "tagB"
    assert caller["addresses"]["sdp"] == ["192.0.2.10:4000", "192.0.2.10:4001"]
    assert caller["addresses"]["learned"] == ["198.51.100.7:41000"]
    assert caller["addresses"]["local"] == ["203.0.113.1:30000", "203.0.113.1:30001"]
    assert caller["codecs"] == ["PCMU/8000", "telephone-event/8000"]
    assert caller["medias"] == [
        {
            "index": 1,
            "type": "audio",
            "protocol": "RTP/AVP",
            "codecs": ["PCMU/8000", "telephone-event/8000"],
            "rejected": False,
            "srtp": None,
            "keying": None,
            "ice": False,
        }
    ]
    assert callee["addresses"]["learned"] == []  # it never sent from another address
    assert callee["codecs"] == ["PCMA/8000"]
    forward, backward = record["directions"]
    assert forward == {
        "from": "tagA",
        "to": "tagB",
        "packets": 52,
        "bytes": 50 * 172 + 2 * 52,
        "errors": 1,
        "rtp": {"packets": 50, "bytes": 50 * 172, "errors": 1},
        "rtcp": {"packets": 2, "bytes": 104, "errors": 0},
        "lost": 3,
    }
    assert (backward["from"], backward["to"], backward["rtp"]["packets"]) == ("tagB", "tagA", 40)
    assert backward["lost"] == 0
    assert record["totals"]["packets"] == 50 + 40 + 4
    assert record["totals"]["rtp"]["bytes"] == 90 * 172
    assert record["totals"]["lost"] == 3
    assert record["loss_tracked"] is True and record["truncated"] is False
    assert record["rtcp_reports"] == 4


def test_record_carries_what_each_party_reported_about_its_media() -> None:
    caller, callee = build_record(two_party_call(), "n1")["tags"]
    # A reported on B's media: its leg's RTT only (B's leg was not measured yet) -> no MOS
    assert caller["quality"]["ssrc"] == 0xA
    assert caller["quality"]["mos"] is None and caller["quality"]["mos_samples"] == 0
    assert caller["quality"]["jitter_seconds"] == 0.01  # 80 units at 8 kHz
    assert caller["quality"]["rtt_leg_seconds"] == pytest.approx(0.04, abs=1e-5)
    # B reported on A's media with both legs known: RTT 20 + 40 ms, 10 % lost (26/256), 20 ms jitter
    quality = callee["quality"]
    assert quality["ssrc"] == 0xB
    assert quality["rtt_leg_seconds"] == pytest.approx(0.02, abs=1e-5)
    assert quality["rtt_seconds"] == pytest.approx(0.06, abs=2e-5)
    assert quality["packet_loss_ratio"] == round(26 / 256, 6) and quality["cumulative_lost"] == 4
    assert quality["jitter_seconds"] == 0.02
    # effective delay 60 + 2 * 20 + 10 = 110 ms -> R = 93.2 - 2.75 - 10 * 2.5 = 65.45 -> MOS 3.377
    assert quality["mos"] == quality["mos_min"] == quality["mos_max"] == 3.3
    assert quality["mos_samples"] == 1


def test_encoding_is_one_sorted_utf8_line_without_sdp_secrets() -> None:
    record = build_record(two_party_call("anruf-ä€"), "n1")
    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert "anruf-ä€".encode() in line  # UTF-8, not \u escapes
    assert b"SECRETKEY" not in line and b"crypto" not in line
    text = line.decode()
    assert (
        text == json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    )
    assert decode_record(line) == record
    datetime.fromisoformat(record["start"].replace("Z", "+00:00"))


def test_each_record_gets_its_own_id() -> None:
    ended = two_party_call()
    assert build_record(ended, "n")["record_id"] != build_record(ended, "n")["record_id"]


def test_undecodable_bytes_and_oversized_input_are_bounded_and_valid_utf8() -> None:
    raw_call_id = b"bad-\xff\xfe-id".decode("utf-8", "surrogateescape")
    ended = two_party_call(raw_call_id)
    assert ended.state is not None
    for index in range(MAX_PARTIES + 5):
        ended.state.new_monologue(START, f"fork-{index}-" + "x" * 400)
    ended.state.monologues[1].label = "\ud800lone"
    record = build_record(ended, "n")
    line = encode_record(record)
    line.decode("utf-8")  # strict: valid UTF-8
    assert record["call_id"] == "bad-\\xff\\xfe-id"
    assert record["tags"][0]["label"] == "\\ud800lone"
    assert len(record["tags"]) == MAX_PARTIES
    assert all(len(party["tag"]) <= MAX_TEXT for party in record["tags"])
    assert record["truncated"] is True
    assert record["totals"]["packets"] == 94  # counted over every party, also past the cap


def test_call_without_state_still_makes_a_record() -> None:
    record = build_record(CallEnded("c", "offer timeout", START, START - 5.0), "n")
    assert record["tags"] == [] and record["directions"] == []
    assert record["duration"] == 0.0 and record["from_tag"] == "" and record["to_tag"] == ""
    assert record["totals"]["packets"] == 0


def test_decode_record_refuses_what_is_no_record() -> None:
    for line in (b"[]", b'{"x": 1}', b"{bad", b"\xff\xfe"):
        with pytest.raises(ValueError):
            decode_record(line)


# ---------------------------------------------------------------------- DSN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mysql://karl:secret@db.example:3307/cdrs", MysqlDsn("karl", "secret", "db.example", 3307, "cdrs")),
        ("mysql://karl:secret@10.0.0.5/cdrs", MysqlDsn("karl", "secret", "10.0.0.5", 3306, "cdrs")),
        ("mariadb://karl@[::1]:3306/cdrs", MysqlDsn("karl", "", "::1", 3306, "cdrs")),
        ("mysql://k%40rl:p%2Fss%3Aw@h:1/d", MysqlDsn("k@rl", "p/ss:w", "h", 1, "d")),
        ("mysql://karl:p@ss@h:3306/d", MysqlDsn("karl", "p@ss", "h", 3306, "d")),
        ("karl:secret@tcp(127.0.0.1:3306)/karl", MysqlDsn("karl", "secret", "127.0.0.1", 3306, "karl")),
        ("karl:secret@tcp(db)/karl", MysqlDsn("karl", "secret", "db", 3306, "karl")),
        ("karl:s:e@c@tcp([::1]:3310)/karl", MysqlDsn("karl", "s:e@c", "::1", 3310, "karl")),
        ("karl:pw@/karl", MysqlDsn("karl", "pw", "127.0.0.1", 3306, "karl")),
        (
            "karl:pw@unix(/run/mysqld/mysqld.sock)/karl",
            MysqlDsn("karl", "pw", "localhost", 3306, "karl", unix_socket="/run/mysqld/mysqld.sock"),
        ),
        ("  mysql://u:p@h:3306/d  ", MysqlDsn("u", "p", "h", 3306, "d")),
    ],
)
def test_dsn_forms(text: str, expected: MysqlDsn) -> None:
    assert parse_dsn(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("postgres://u:hunter2@h/d", "unsupported DSN scheme 'postgres'"),
        ("mysql://h:3306/d", "no user"),
        ("mysql://:hunter2@h:3306/d", "empty user"),
        ("mysql://u:hunter2@h:3306", "names no database"),
        ("mysql://u:hunter2@h:3306/", "names no database"),
        ("mysql://u:hunter2@h:99999/d", "invalid port '99999'"),
        ("mysql://u:hunter2@h:abc/d", "invalid port 'abc'"),
        ("mysql://u:hunter2@::1:3306/d", "IPv6 address in the DSN must be written in brackets"),
        ("mysql://u:hunter2@[::1/d", "unbalanced"),
        ("mysql://u:hunter2@h/d?ssl=true", "options after '?'"),
        ("mysql://u:hunter2@h/bad;name", "invalid database name"),
        ("mysql://u:hunter2@/d", "no host"),
        ("u:hunter2@udp(h:1)/d", "cannot read the address"),
        ("u:hunter2@tcp(h:0)/d", "invalid port '0'"),
        ("u:hunter2@unix(relative.sock)/d", "absolute socket path"),
        ("just-a-hostname", "no user"),
    ],
)
def test_bad_dsns_fail_clearly_without_the_password(text: str, message: str) -> None:
    with pytest.raises(DsnError) as caught:
        parse_dsn(text)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_dsn_never_shows_its_password() -> None:
    dsn = parse_dsn("mysql://karl:hunter2@db:3306/cdrs")
    assert "hunter2" not in repr(dsn) and "hunter2" not in str(dsn)
    assert dsn.redacted() == "mysql://karl:***@db:3306/cdrs"
    assert parse_dsn("karl@tcp([::1]:3306)/cdrs").redacted() == "mysql://karl@[::1]:3306/cdrs"
