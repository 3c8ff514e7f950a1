"""The CDR spool and file on a real file system: order, acknowledgement, torn writes, restarts."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from karl_medianode.operations.cdr.filesink import FileSink
from karl_medianode.operations.cdr.spool import REJECTED_NAME, Spool


def line(n: int) -> bytes:
    return json.dumps({"record_id": f"id-{n:04d}", "n": n}, sort_keys=True).encode() + b"\n"


def drain(spool: Spool, limit: int = 3) -> list[int]:
    """Read and acknowledge everything waiting; returns the record numbers in the order read."""
    seen: list[int] = []
    while (batch := spool.peek(limit)) is not None:
        assert all(item.record is not None for item in batch.items)
        seen += [item.record["n"] for item in batch.items if item.record is not None]
        spool.ack(batch)
    return seen


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("cdr-spool-"))


def test_records_come_out_in_order_across_segments_and_finished_segments_go(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", segment_records=4)
    assert spool.open() == 0
    for n in range(10):
        spool.append([line(n)])
    assert spool.pending == 10
    assert len([s for s in segments(tmp_path / "spool") if s.endswith(".jsonl")]) == 3
    assert drain(spool) == list(range(10))
    assert spool.pending == 0
    # only the segment still being appended to is kept (empty of waiting records)
    assert [s for s in segments(tmp_path / "spool") if s.endswith(".jsonl")] == [
        "cdr-spool-000000000003.jsonl"
    ]
    spool.close()


def test_acknowledged_records_are_not_read_again_after_a_restart(tmp_path: Path) -> None:
    first = Spool(tmp_path, segment_records=100)
    first.open()
    first.append([line(n) for n in range(5)])
    batch = first.peek(2)
    assert batch is not None
    first.ack(batch)
    first.close()  # a crash: nothing else is written

    second = Spool(tmp_path, segment_records=100)
    assert second.open() == 3
    second.append([line(5)])
    assert drain(second) == [2, 3, 4, 5]
    second.close()
    third = Spool(tmp_path)
    assert third.open() == 0
    assert segments(tmp_path) == []  # all acknowledged segments were removed at open


def test_unacknowledged_batch_is_read_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append([line(0), line(1)])
    first = spool.peek(10)
    again = spool.peek(10)
    assert first is not None and again is not None
    assert [i.line for i in first.items] == [i.line for i in again.items]
    spool.ack(first)
    with pytest.raises(ValueError):
        spool.ack(again)  # not the next batch any more


def test_a_torn_last_line_from_a_crash_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append([line(0), line(1)])
    spool.close()
    segment = tmp_path / "cdr-spool-000000000001.jsonl"
    with open(segment, "ab") as handle:
        handle.write(line(2)[:15])  # the append of record 2 died half-way
    reopened = Spool(tmp_path)
    assert reopened.open() == 2
    assert segment.read_bytes() == line(0) + line(1)
    assert drain(reopened) == [0, 1]


def test_a_damaged_ack_means_sending_again_not_losing(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append([line(n) for n in range(4)])
    batch = spool.peek(3)
    assert batch is not None
    spool.ack(batch)
    spool.close()
    (tmp_path / "cdr-spool-000000000001.ack").write_text("2 17\n")  # offset not at line 2's end
    reopened = Spool(tmp_path)
    assert reopened.open() == 4
    assert drain(reopened) == [0, 1, 2, 3]


def test_unreadable_lines_are_returned_for_rejection(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append([line(0), b"{not json\n", line(2)])
    batch = spool.peek(10)
    assert batch is not None
    assert [item.record is None for item in batch.items] == [False, True, False]
    spool.reject([batch.items[1]])
    spool.ack(batch)
    assert (tmp_path / REJECTED_NAME).read_bytes() == b"{not json\n"
    assert spool.pending == 0 and spool.rejected == 1


def test_append_refuses_anything_but_whole_lines(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    for bad in ([b"no newline"], [b"two\nlines\n"]):
        with pytest.raises(ValueError):
            spool.append(bad)
    assert spool.pending == 0


def test_count_waiting_reads_without_changing(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append([line(n) for n in range(3)])
    batch = spool.peek(1)
    assert batch is not None
    spool.ack(batch)
    spool.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert Spool.count_waiting(tmp_path) == 2
    assert Spool.count_waiting(tmp_path / "missing") == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ---------------------------------------------------------------------- the CDR file


def test_file_sink_appends_lines_and_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "cdr.jsonl"
    sink = FileSink(path)
    sink.append([line(0)])
    sink.append([line(1), line(2)])
    assert path.read_bytes() == line(0) + line(1) + line(2)
    sink.close()


def test_file_sink_follows_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "cdr.jsonl"
    sink = FileSink(path)
    sink.append([line(0)])
    os.rename(path, tmp_path / "cdr.jsonl.1")  # logrotate's move-and-create
    sink.append([line(1)])
    assert (tmp_path / "cdr.jsonl.1").read_bytes() == line(0)
    assert path.read_bytes() == line(1)
    sink.close()


PARTIAL_WRITE = """
import resource, signal, sys
from karl_medianode.operations.cdr.filesink import FileSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # exceeding the limit: EFBIG instead of a signal
sink = FileSink(sys.argv[1])
sink.append([b"A" * 50 + b"\\n"])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (80, hard))
try:
    sink.append([b"B" * 50 + b"\\n"])
    print("written")
except OSError as exc:
    print("failed", exc.errno)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
sink.append([b"C" * 50 + b"\\n"])
"""


def test_file_sink_ends_a_line_left_unfinished_by_a_failed_write(tmp_path: Path) -> None:
    """A write cut short (here by a file size limit, as by a full disk) leaves half a line; the next
    record still starts on a line of its own."""
    path = tmp_path / "cdr.jsonl"
    result = subprocess.run(
        [sys.executable, "-c", PARTIAL_WRITE, str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["failed", str(errno.EFBIG)]
    assert path.read_bytes().split(b"\n") == [b"A" * 50, b"B" * 29, b"C" * 50, b""]


def test_file_sink_reports_an_unwritable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sink = FileSink(blocker / "cdr.jsonl")  # a "directory" that is a file
    with pytest.raises(OSError):
        sink.append([line(0)])
