"""The CDR writer without a database: the file, its failures, and what `submit` does with bad luck."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from karl_medianode.engine import CallEnded
from karl_medianode.operations.cdr import CdrWriter, DsnError
from karl_medianode.operations.cdr.record import encode_record
from karl_medianode.operations.cdr.spool import Spool
from karl_testkit import run_async, until


def ended(n: int) -> CallEnded:
    return CallEnded(f"call-{n}", "timeout", 1714564800.0, 1714564860.0)


def test_file_only_writer_appends_every_record(tmp_path: Path) -> None:
    path = tmp_path / "cdr" / "cdr.jsonl"

    async def scenario() -> CdrWriter:
        writer = CdrWriter("node-1", str(path), str(tmp_path / "spool"), None)
        writer.submit(ended(0))  # before start: queued, written once started
        await writer.start()
        for n in range(1, 50):
            writer.submit(ended(n))
        await writer.stop(5)
        await writer.stop(5)  # a second stop does nothing
        return writer

    writer = run_async(scenario())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["call_id"] for r in records] == [f"call-{n}" for n in range(50)]
    assert all(r["node_id"] == "node-1" and r["reason"] == "timeout" for r in records)
    assert len({r["record_id"] for r in records}) == 50
    c = writer.counters
    assert (c.records_total, c.file_written_total, c.file_errors_total, c.dropped_total) == (50, 50, 0, 0)
    assert c.db_up is None and c.spool_pending == 0 and c.db_written_total == 0
    assert not (tmp_path / "spool").exists()  # no database: no spool


def test_submit_never_raises_and_counts_what_it_loses(tmp_path: Path) -> None:
    async def scenario() -> CdrWriter:
        writer = CdrWriter("n", str(tmp_path / "cdr.jsonl"), None, None, queue_limit=3)
        await writer.start()
        writer.submit("not a call")  # type: ignore[arg-type]
        for n in range(10):  # no await in between: the queue cannot drain
            writer.submit(ended(n))
        await until(lambda: writer.counters.file_written_total == 3, "the queued 3 written")
        await writer.stop(5)
        writer.submit(ended(99))  # after stop
        return writer

    c = run_async(scenario()).counters
    assert c.records_total == 10 and c.file_written_total == 3
    assert c.dropped_total == 1 + 7 + 1


def test_an_unwritable_file_is_reported_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    caplog.set_level(logging.INFO, logger="karl.cdr")

    async def scenario() -> CdrWriter:
        writer = CdrWriter("n", str(blocker / "cdr.jsonl"), None, None)
        await writer.start()
        for n in range(20):
            writer.submit(ended(n))
            await asyncio.sleep(0)
        await until(lambda: writer.counters.file_errors_total == 20, "20 failed records")
        await writer.stop(1)
        return writer

    assert run_async(scenario()).counters.file_written_total == 0
    errors = [r for r in caplog.records if getattr(r, "event", "") == "cdr_file_error"]
    assert 1 <= len(errors) <= 2  # the start-up error and one rate-limited write error


def test_leftover_spool_without_a_database_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    spool.append([encode_record({"record_id": "x"})] * 2)
    spool.close()
    caplog.set_level(logging.INFO, logger="karl.cdr")

    async def scenario() -> None:
        writer = CdrWriter("n", None, str(tmp_path / "spool"), None)
        await writer.start()
        await writer.stop(1)

    run_async(scenario())
    (leftover,) = [r for r in caplog.records if getattr(r, "event", "") == "cdr_spool_leftover"]
    assert "2 CDRs wait" in leftover.getMessage()
    assert Spool.count_waiting(tmp_path / "spool") == 2  # left as they were


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(DsnError):
        CdrWriter("n", None, "/tmp/spool", "mysql://u:pw@h:3306")
    with pytest.raises(ValueError, match="spool directory"):
        CdrWriter("n", None, None, "mysql://u:pw@h:3306/d")


def _write_syscalls() -> int:
    """write(2) calls this process made so far, all its threads (the kernel's count)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/self/io")


def test_records_of_calls_ending_moments_apart_share_a_write(tmp_path: Path) -> None:
    """A busy node ends a call every few milliseconds: their records reach the file together, a write
    (and an fsync, and a hand-over to the I/O thread, which wakes the event loop with a write of its
    own) per group, not per record — which cost as much CPU as the calls' signalling."""
    path = tmp_path / "cdr.jsonl"

    async def scenario() -> int:
        writer = CdrWriter("n", str(path), None, None)
        await writer.start()
        before = _write_syscalls()
        for n in range(40):
            writer.submit(ended(n))
            await asyncio.sleep(0.002)
        await until(lambda: writer.counters.file_written_total == 40, "the 40 records written")
        writes = _write_syscalls() - before
        await writer.stop(5)
        return writes

    writes = run_async(scenario())
    assert [json.loads(line)["call_id"] for line in path.read_text().splitlines()] == [
        f"call-{n}" for n in range(40)
    ]
    assert writes < 20, f"{writes} writes for 40 records"


def test_a_stop_with_a_deadline_shorter_than_the_linger_still_writes_what_is_queued(tmp_path: Path) -> None:
    """The intake waits for more records before it writes; a stop ends that wait, so even a stop with
    no time to spare writes the records already queued instead of dropping them."""
    path = tmp_path / "cdr.jsonl"

    async def scenario() -> CdrWriter:
        writer = CdrWriter("n", str(path), None, None)
        await writer.start()
        for n in range(5):
            writer.submit(ended(n))
        await asyncio.sleep(0)  # the intake takes them up and starts waiting for more
        await writer.stop(0.005)
        return writer

    writer = run_async(scenario())
    assert writer.counters.dropped_total == 0
    assert [json.loads(line)["call_id"] for line in path.read_text().splitlines()] == [
        f"call-{n}" for n in range(5)
    ]
