"""CDRs against a real MariaDB server (started by the test, on loopback): writes, a database outage in
the middle of a stream of records, a restart with records still spooled, duplicate replays, and calls
driven through an in-process media node over NG. No record may be lost or written twice."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from karl_core.config import KarlConfig
from karl_core.session import CallState, Codec, Endpoint, MediaState, PacketStreamState
from karl_medianode.engine import CallEnded, EngineSettings
from karl_medianode.node import MediaNode, NodeSettings
from karl_medianode.operations.cdr import CdrWriter, mysqlsink, parse_dsn
from karl_medianode.operations.cdr.mysqlsink import MysqlSink, create_table_sql, row_values
from karl_medianode.operations.cdr.record import build_record, encode_record
from karl_medianode.operations.cdr.spool import Spool
from karl_testkit import NgClient, free_port, free_port_block, run_async, until
from medianode.mariadb_fixture import MariaDbServer, running_mariadb

T = TypeVar("T")
FAST_RETRY = {"retry_min": 0.05, "retry_max": 0.3, "connect_timeout": 1.0, "query_timeout": 3.0}


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDbServer]:
    with running_mariadb() as server:
        yield server


@pytest.fixture
def db(mariadb: MariaDbServer, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A fresh database for this test: (name, DSN). The server is running when the test starts."""
    mariadb.start()
    name = request.node.name.removeprefix("test_")[:24].replace("-", "_")
    return name, mariadb.create_database(name)


def finished_call(n: int) -> CallEnded:
    start = 1714564800.0 + n
    state = CallState(f"call-{n:04d}@test", start, start)
    a = state.new_monologue(start, f"from-{n}")
    b = state.new_monologue(start, f"to-{n}")
    a.partner, b.partner = b.uid, a.uid
    for mono, port in ((a, 4000), (b, 5000)):
        media = MediaState(1, "audio", "RTP/AVP", ["0"], [Codec(0, "PCMU", 8000)], sdp_address="127.0.0.1")
        media.sdp_port = port
        media.streams = [
            PacketStreamState(
                1, "127.0.0.2", port + 20000, Endpoint("127.0.0.1", port), packets=n, bytes=n * 172
            )
        ]
        mono.medias = [media]
    return CallEnded(state.call_id, "deleted", start, start + 30.0, state)


def table_rows(server: MariaDbServer, database: str) -> list[tuple[Any, ...]]:
    return server.query(
        database, "SELECT record_id, call_id, from_tag, to_tag, packets FROM karl_cdr ORDER BY id"
    )


def file_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------------- writing


def test_records_go_to_the_file_and_the_database(mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path):
    name, dsn = db
    cdr_path = tmp_path / "cdr" / "cdr.jsonl"

    async def scenario() -> CdrWriter:
        writer = CdrWriter("node-a", str(cdr_path), str(tmp_path / "spool"), dsn, **FAST_RETRY)
        await writer.start()
        for n in range(1, 6):
            writer.submit(finished_call(n))
        await until(lambda: writer.counters.db_written_total == 5, "5 records in the database")
        await until(lambda: writer.counters.file_written_total == 5, "5 records in the file")
        await writer.stop(5)
        return writer

    writer = run_async(scenario())
    assert writer.counters.records_total == 5 and writer.counters.db_up is True
    assert writer.counters.spool_pending == 0 and writer.counters.spooled_total == 0
    in_file = file_records(cdr_path)
    assert [r["call_id"] for r in in_file] == [f"call-{n:04d}@test" for n in range(1, 6)]
    rows = table_rows(mariadb, name)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (r["record_id"], r["call_id"], r["from_tag"], r["to_tag"], r["totals"]["packets"]) for r in in_file
    ]
    (stored,) = mariadb.query(name, "SELECT record, start_time, end_time, duration FROM karl_cdr LIMIT 1")[
        0:1
    ]
    assert json.loads(stored[0]) == in_file[0]
    assert stored[1].isoformat() == "2024-05-01T12:00:01" and stored[3] == 30.0
    assert Spool.count_waiting(tmp_path / "spool") == 0


def test_database_outage_in_the_middle_of_calls(mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path):
    name, dsn = db
    cdr_path = tmp_path / "cdr.jsonl"
    submit_times: list[float] = []

    async def scenario() -> CdrWriter:
        writer = CdrWriter("node-a", str(cdr_path), str(tmp_path / "spool"), dsn, **FAST_RETRY)
        await writer.start()

        def submit(n: int) -> None:
            began = time.perf_counter()
            writer.submit(finished_call(n))
            submit_times.append(time.perf_counter() - began)

        for n in range(10):
            submit(n)
        await until(lambda: writer.counters.db_written_total == 10, "the first 10 in the database")
        await asyncio.to_thread(mariadb.stop)
        for n in range(10, 30):
            submit(n)
            await asyncio.sleep(0.005)
        await until(lambda: writer.counters.db_up is False, "the outage noticed")
        await until(lambda: writer.counters.file_written_total == 30, "the file written during the outage")
        # the file and the spool are written side by side: one done does not mean the other is
        await until(lambda: writer.counters.spool_pending == 20, "the outage's 20 records spooled")
        assert writer.counters.db_written_total == 10
        await asyncio.to_thread(mariadb.start)
        for n in range(30, 35):
            submit(n)
        await until(lambda: writer.counters.db_written_total == 35, "all 35 in the database", timeout=15)
        await writer.stop(5)
        return writer

    writer = run_async(scenario(), timeout=60)
    rows = table_rows(mariadb, name)
    assert [r[1] for r in rows] == [f"call-{n:04d}@test" for n in range(35)]  # each once, in order
    assert len({r[0] for r in rows}) == 35
    assert [r["record_id"] for r in file_records(cdr_path)] == [r[0] for r in rows]
    assert writer.counters.spool_pending == 0 and writer.counters.db_errors_total >= 1
    assert writer.counters.spooled_total >= 20
    assert writer.counters.dropped_total == 0
    # far below the 1 s connect timeout: submit never waits for the database
    assert max(submit_times) < 0.25, max(submit_times)


def test_a_hung_database_delays_neither_calls_nor_the_file(
    mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path
):
    """The server stops answering mid-stream (SIGSTOP): records keep reaching the file at once; the
    insert that hung is sent again after its timeout and still makes one row per record."""
    name, dsn = db
    cdr_path = tmp_path / "cdr.jsonl"
    retry = {**FAST_RETRY, "query_timeout": 0.5, "connect_timeout": 0.5}

    async def scenario() -> CdrWriter:
        writer = CdrWriter("node-a", str(cdr_path), str(tmp_path / "spool"), dsn, **retry)
        await writer.start()
        for n in range(5):
            writer.submit(finished_call(n))
        await until(lambda: writer.counters.db_written_total == 5, "the first 5 in the database")
        mariadb.freeze()
        try:
            for n in range(5, 10):
                writer.submit(finished_call(n))
            await until(
                lambda: writer.counters.file_written_total == 10, "the file written while the database hangs"
            )
            await until(lambda: writer.counters.db_errors_total >= 1, "the hung insert timed out")
            assert writer.counters.db_written_total == 5 and writer.counters.db_up is False
        finally:
            mariadb.thaw()
        await until(lambda: writer.counters.db_written_total == 10, "all 10 in the database")
        await writer.stop(5)
        return writer

    writer = run_async(scenario())
    rows = table_rows(mariadb, name)
    assert [r[1] for r in rows] == [f"call-{n:04d}@test" for n in range(10)]
    assert writer.counters.spool_pending == 0


def test_restart_with_records_still_spooled(mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path):
    name, dsn = db
    spool_dir = tmp_path / "spool"
    mariadb.stop()

    async def first_run() -> CdrWriter:
        writer = CdrWriter("node-a", None, str(spool_dir), dsn, **FAST_RETRY)
        await writer.start()
        for n in range(7):
            writer.submit(finished_call(n))
        await until(lambda: writer.counters.spool_pending == 7, "7 records spooled")
        await until(lambda: writer.counters.db_errors_total >= 1, "a failed attempt")
        await writer.stop(0.5)
        return writer

    first = run_async(first_run())
    assert first.counters.db_written_total == 0 and first.counters.spooled_total == 7
    assert Spool.count_waiting(spool_dir) == 7
    mariadb.start()

    async def second_run() -> CdrWriter:
        writer = CdrWriter("node-a", None, str(spool_dir), dsn, **FAST_RETRY)
        await writer.start()
        assert writer.counters.spool_pending == 7
        await until(lambda: writer.counters.db_written_total == 7, "the spool replayed")
        writer.submit(finished_call(7))
        await until(lambda: writer.counters.db_written_total == 8, "a new record after the replay")
        await writer.stop(5)
        return writer

    second = run_async(second_run())
    assert second.counters.spooled_total == 7 and second.counters.spool_pending == 0
    rows = table_rows(mariadb, name)
    assert [r[1] for r in rows] == [f"call-{n:04d}@test" for n in range(8)]
    assert Spool.count_waiting(spool_dir) == 0


def test_a_record_sent_again_makes_no_second_row(mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path):
    """A crash after the insert but before the spool's acknowledgement: the records go out again."""
    name, dsn = db
    spool_dir = tmp_path / "spool"

    async def write(count_from: int, count: int, written: int) -> CdrWriter:
        writer = CdrWriter("node-a", None, str(spool_dir), dsn, **FAST_RETRY)
        await writer.start()
        for n in range(count_from, count_from + count):
            writer.submit(finished_call(n))
        # wait for the database writes themselves: the spool may look empty before intake ran
        await until(lambda: writer.counters.db_written_total >= written, "records written")
        await until(lambda: writer.counters.spool_pending == 0, "nothing left in the spool")
        await writer.stop(5)
        return writer

    first = run_async(write(0, 4, 4))
    assert first.counters.db_written_total == 4
    acks = list(spool_dir.glob("*.ack"))
    assert acks
    for ack in acks:
        ack.unlink()  # the acknowledgement never reached the disk
    assert Spool.count_waiting(spool_dir) == 4

    replay = run_async(write(0, 0, 4))
    assert replay.counters.db_written_total == 4  # confirmed by the database ...
    rows = table_rows(mariadb, name)
    assert len(rows) == 4 and len({r[0] for r in rows}) == 4  # ... but no second row

    async def direct() -> None:
        sink = MysqlSink(parse_dsn(dsn))
        record = build_record(finished_call(99), "n")
        line = encode_record(record).rstrip(b"\n")
        assert await sink.write([row_values(record, line)]) == []
        assert await sink.write([row_values(record, line)] * 2) == []
        sink.close()

    run_async(direct())
    assert len(table_rows(mariadb, name)) == 5


def test_insert_privilege_is_enough_for_a_table_made_by_the_dba(
    mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path
):
    name, _ = db
    mariadb.query(name, create_table_sql("karl_cdr"))
    mariadb.admin_query("CREATE USER IF NOT EXISTS 'cdr_insert_only'@'127.0.0.1' IDENTIFIED BY 'pw'")
    mariadb.admin_query(f"GRANT INSERT ON `{name}`.* TO 'cdr_insert_only'@'127.0.0.1'")
    dsn = f"cdr_insert_only:pw@tcp(127.0.0.1:{mariadb.port})/{name}"  # the Go-style form

    async def scenario() -> CdrWriter:
        writer = CdrWriter("n", None, str(tmp_path / "spool"), dsn, **FAST_RETRY)
        await writer.start()
        for n in range(3):
            writer.submit(finished_call(n))
        await until(lambda: writer.counters.db_written_total == 3, "3 records in the database")
        await writer.stop(5)
        return writer

    assert run_async(scenario()).counters.db_errors_total == 0
    assert len(table_rows(mariadb, name)) == 3


def test_a_connection_the_server_dropped_while_idle_is_no_outage(
    mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    name, dsn = db
    monkeypatch.setattr(mysqlsink, "IDLE_CHECK", 0.0)  # check before every use, not after 30 s
    user = parse_dsn(dsn).user

    async def scenario() -> CdrWriter:
        writer = CdrWriter("n", None, str(tmp_path / "spool"), dsn, **FAST_RETRY)
        await writer.start()
        writer.submit(finished_call(1))
        await until(lambda: writer.counters.db_written_total == 1, "the first record")
        # what wait_timeout does to an idle connection
        for (conn_id,) in mariadb.admin_query(
            "SELECT id FROM information_schema.processlist WHERE user = %s", (user,)
        ):
            mariadb.admin_query(f"KILL CONNECTION {int(conn_id)}")
        writer.submit(finished_call(2))
        await until(lambda: writer.counters.db_written_total == 2, "the second record")
        await writer.stop(5)
        return writer

    writer = run_async(scenario())
    assert writer.counters.db_errors_total == 0 and writer.counters.spooled_total == 0
    assert len(table_rows(mariadb, name)) == 2


def test_unreadable_spool_lines_are_set_aside(mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path):
    name, dsn = db
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    spool.open()
    spool.append(
        [
            encode_record(build_record(finished_call(1), "n")),
            b"{garbage\n",
            b'{"record_id": "not-a-uuid-but-too-long-for-the-column-xxxxxxxxxx"}\n',
            encode_record(build_record(finished_call(2), "n")),
        ]
    )
    spool.close()

    async def scenario() -> CdrWriter:
        writer = CdrWriter("n", None, str(spool_dir), dsn, **FAST_RETRY)
        await writer.start()
        await until(
            lambda: writer.counters.db_written_total + writer.counters.rejected_total >= 4, "spool processed"
        )
        await until(lambda: writer.counters.spool_pending == 0, "the spool emptied")
        await writer.stop(5)
        return writer

    writer = run_async(scenario())
    assert writer.counters.db_written_total == 2 and writer.counters.rejected_total == 2
    assert [r[1] for r in table_rows(mariadb, name)] == ["call-0001@test", "call-0002@test"]
    assert (spool_dir / "cdr-rejected.jsonl").read_bytes().count(b"\n") == 2


def test_wrong_password_is_retried_quietly_and_never_logged(
    mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    name, dsn = db
    wrong = dsn.replace("@127.0.0.1", "x9Secret@127.0.0.1")
    caplog.set_level(logging.DEBUG, logger="karl.cdr")

    async def scenario() -> CdrWriter:
        writer = CdrWriter(
            "n", str(tmp_path / "cdr.jsonl"), str(tmp_path / "spool"), wrong, retry_min=0.01, retry_max=0.02
        )
        await writer.start()
        writer.submit(finished_call(1))
        await until(lambda: writer.counters.db_errors_total >= 10, "repeated failed attempts")
        await until(lambda: writer.counters.file_written_total == 1, "the file written anyway")
        await writer.stop(0.2)
        return writer

    writer = run_async(scenario())
    assert writer.counters.db_up is False and writer.counters.spool_pending == 1
    password = parse_dsn(wrong).password
    assert all(password not in record.getMessage() for record in caplog.records)
    down = [r for r in caplog.records if getattr(r, "event", "") == "cdr_db_down"]
    assert 1 <= len(down) <= 2, [r.getMessage() for r in down]
    assert "Access denied" in down[0].getMessage()
    tables = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s"
    assert mariadb.admin_query(tables, (name,)) == [(0,)]


def test_operator_loads_a_cdr_file_into_the_database_once(
    mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path
):
    """`python -m karl_medianode.operations.cdr load`: a node ran without database; its CDR file is
    loaded later, twice, plus a line that is no record. Every record is in the table once."""
    name, dsn = db
    cdr_path = tmp_path / "cdr.jsonl"

    async def scenario() -> None:
        writer = CdrWriter("node-a", str(cdr_path), None, None)
        await writer.start()
        for n in range(3):
            writer.submit(finished_call(n))
        await until(lambda: writer.counters.file_written_total == 3, "3 records in the file")
        await writer.stop(5)

    run_async(scenario())
    with open(cdr_path, "ab") as handle:
        handle.write(b"not json\n")
    env = {**os.environ, "KARL_MYSQL_DSN": dsn}
    command = [sys.executable, "-m", "karl_medianode.operations.cdr", "load", str(cdr_path)]
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr  # the unreadable line is reported
        assert "3 records sent" in done.stdout and "1 unreadable" in done.stdout
        assert f"{cdr_path}:4: not a CDR record" in done.stderr
        assert parse_dsn(dsn).password not in done.stdout + done.stderr
    assert [r[1] for r in table_rows(mariadb, name)] == [f"call-{n:04d}@test" for n in range(3)]
    pending = subprocess.run(
        [sys.executable, "-m", "karl_medianode.operations.cdr", "pending", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pending.stdout.strip() == "0"
    bad_env = {**env, "KARL_MYSQL_DSN": "mysql://u:hunter2@h/d?x=1"}
    bad = subprocess.run(command, env=bad_env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "options after '?'" in bad.stderr and "hunter2" not in bad.stderr


# ---------------------------------------------------------------------- through a media node


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234) + b"\x11" * 160


def sdp(port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8\r\na=sendrecv\r\n"
    )


def test_calls_through_a_media_node_end_up_in_file_and_database(
    mariadb: MariaDbServer, db: tuple[str, str], tmp_path: Path
):
    name, dsn = db
    cdr_path = tmp_path / "cdr.jsonl"
    media_ip = "127.0.0.2"
    base = free_port_block(20, media_ip)
    settings = NodeSettings(
        ng_address="127.0.0.1",
        ng_port=free_port(),
        media_ip=media_ip,
        advertised_ip=media_ip,
        port_min=base,
        port_max=base + 19,
        engine=EngineSettings(advertised_ip=media_ip, media_ip=media_ip),
        shutdown_grace=0,
        config=KarlConfig(),
    )
    party_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    party_a.bind(("127.0.0.1", 0))
    party_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    party_b.bind(("127.0.0.1", 0))
    party_b.settimeout(2)
    a_port = party_a.getsockname()[1]
    ng = NgClient(("127.0.0.1", settings.ng_port))

    async def request(payload: dict[str, Any]) -> Any:
        reply = await asyncio.to_thread(ng.request, payload)
        assert reply["result"] == "ok", reply
        return reply

    async def scenario() -> CdrWriter:
        node = MediaNode(settings)
        writer = CdrWriter("media-1", str(cdr_path), str(tmp_path / "spool"), dsn, **FAST_RETRY)
        await writer.start()
        node.cdr = writer
        node.call_ended_listeners.append(writer.submit)
        await node.start()
        try:
            for call in ("cdr-e2e-1", "cdr-e2e-2"):
                offer = await request(
                    {"command": "offer", "call-id": call, "from-tag": "alice", "sdp": sdp(a_port)}
                )
                answer = await request(
                    {
                        "command": "answer",
                        "call-id": call,
                        "from-tag": "alice",
                        "to-tag": "bob",
                        "sdp": sdp(party_b.getsockname()[1]),
                    }
                )
                assert offer["sdp"] and answer["sdp"]
                to_karl = int(answer["sdp"].split("m=audio ")[1].split()[0])
                for seq in range(5):
                    party_a.sendto(rtp(seq), (media_ip, to_karl))
                for _ in range(5):
                    await asyncio.to_thread(party_b.recv, 2048)
                await request({"command": "delete", "call-id": call, "from-tag": "alice", "delete-delay": 0})
            await until(lambda: writer.counters.db_written_total == 2, "both calls in the database")
            await until(lambda: writer.counters.file_written_total == 2, "both calls in the file")
        finally:
            await node.shutdown()
            await writer.stop(5)
        return writer

    try:
        run_async(scenario())
    finally:
        ng.close()
        party_a.close()
        party_b.close()
    records = file_records(cdr_path)
    assert [r["call_id"] for r in records] == ["cdr-e2e-1", "cdr-e2e-2"]
    for record in records:
        assert record["node_id"] == "media-1" and record["reason"] == "deleted"
        assert [t["tag"] for t in record["tags"]] == ["alice", "bob"]
        assert (record["from_tag"], record["to_tag"]) == ("alice", "bob")
        alice_to_bob = record["directions"][0]
        assert (alice_to_bob["from"], alice_to_bob["to"]) == ("alice", "bob")
        assert alice_to_bob["rtp"]["packets"] == 5 and alice_to_bob["rtp"]["bytes"] == 5 * 172
        assert record["tags"][0]["addresses"]["sdp"][0] == f"127.0.0.1:{a_port}"
        assert "PCMU/8000" in record["tags"][0]["codecs"]
        assert 0 <= record["duration"] < 30
    rows = table_rows(mariadb, name)
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("cdr-e2e-1", "alice", "bob", 5),
        ("cdr-e2e-2", "alice", "bob", 5),
    ]
