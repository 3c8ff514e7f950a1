"""The durable spool in front of the CDR database: records wait here until the database has them.

Layout of the spool directory (docs/cdr.md explains it to operators):

* `cdr-spool-<seq>.jsonl` — segments: one record per line, exactly as in the CDR file, appended and
  fsync'ed before the database is tried. Lines are read in order (segment by segment).
* `cdr-spool-<seq>.ack` — "<lines> <bytes>": how many leading lines of the segment the database has.
  Replaced atomically (write + rename). It is not fsync'ed: an ack lost in a crash only means those
  records are sent again, and the database ignores a record id it already has.
* A segment whose lines are all acknowledged is deleted (with its ack) once a newer segment exists.
* `cdr-rejected.jsonl` — records the database refused as invalid (kept for a person to look at).

Crash safety: a crash in the middle of an append leaves a torn last line; `open` cuts it off (that
record was never durable, so it was never acknowledged). After a restart appends go to a new segment.

Not thread-safe: the writer calls every method from one I/O thread.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from karl_medianode.operations.cdr.record import decode_record

SEGMENT_PREFIX = "cdr-spool-"
REJECTED_NAME = "cdr-rejected.jsonl"
_SEGMENT = re.compile(r"cdr-spool-(\d{12})\.(jsonl|ack|ack\.tmp)\Z")
_READ_CHUNK = 64 * 1024


@dataclass
class SpoolItem:
    """One spooled line (without its newline) and the record it holds (None if unreadable)."""

    line: bytes
    record: dict[str, Any] | None


@dataclass
class SpoolBatch:
    """The next lines waiting, from one segment; give it back to `ack` once the database has them."""

    seq: int
    start_line: int
    end_line: int
    end_offset: int
    items: list[SpoolItem] = field(default_factory=list)


@dataclass
class _Segment:
    seq: int
    lines: int = 0
    size: int = 0
    acked_lines: int = 0
    acked_offset: int = 0

    @property
    def pending(self) -> int:
        return self.lines - self.acked_lines


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Spool:
    def __init__(self, directory: str | Path, segment_records: int = 1000) -> None:
        if segment_records < 1:
            raise ValueError("segment_records must be at least 1")
        self.directory = Path(directory)
        self.segment_records = segment_records
        self.pending = 0
        """Records appended and not yet acknowledged."""
        self.rejected = 0
        self._segments: dict[int, _Segment] = {}
        self._next_seq = 1
        self._active: _Segment | None = None
        self._active_fd: int | None = None

    # ------------------------------------------------------------------ file names

    def _segment_path(self, seq: int) -> Path:
        return self.directory / f"{SEGMENT_PREFIX}{seq:012d}.jsonl"

    def _ack_path(self, seq: int) -> Path:
        return self.directory / f"{SEGMENT_PREFIX}{seq:012d}.ack"

    # ------------------------------------------------------------------ opening

    def open(self) -> int:
        """Create the directory, repair and index what an earlier run left; returns the records
        waiting."""
        self.directory.mkdir(parents=True, exist_ok=True)
        seqs: set[int] = set()
        acks: set[int] = set()
        for entry in self.directory.iterdir():
            match = _SEGMENT.match(entry.name)
            if match is None:
                continue
            seq = int(match.group(1))
            if match.group(2) == "jsonl":
                seqs.add(seq)
            elif match.group(2) == "ack":
                acks.add(seq)
            else:
                entry.unlink(missing_ok=True)  # an ack replacement interrupted by a crash
        for seq in sorted(acks - seqs):
            self._ack_path(seq).unlink(missing_ok=True)
        for seq in sorted(seqs):
            segment = self._load_segment(seq)
            if segment.pending == 0:
                self._delete_segment(seq)
            else:
                self._segments[seq] = segment
        self._next_seq = max(seqs, default=0) + 1
        self.pending = sum(s.pending for s in self._segments.values())
        return self.pending

    def _load_segment(self, seq: int) -> _Segment:
        path = self._segment_path(seq)
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            # a torn last line: the append never finished, so the record was never durable
            with open(path, "r+b") as handle:
                handle.truncate(complete)
                os.fsync(handle.fileno())
            data = data[:complete]
        segment = _Segment(seq, lines=data.count(b"\n"), size=len(data))
        acked = self._read_ack(seq)
        if acked is not None:
            lines, offset = acked
            # trust the ack only if it points at a line boundary with that many lines before it
            if (
                0 <= offset <= len(data)
                and (offset == 0 or data[offset - 1 : offset] == b"\n")
                and data.count(b"\n", 0, offset) == lines
            ):
                segment.acked_lines, segment.acked_offset = lines, offset
        return segment

    def _read_ack(self, seq: int) -> tuple[int, int] | None:
        try:
            text = self._ack_path(seq).read_text(encoding="ascii")
            lines, offset = (int(part) for part in text.split())
        except (OSError, ValueError):
            return None
        return lines, offset

    @staticmethod
    def count_waiting(directory: str | Path) -> int:
        """Records waiting in a spool directory, read-only (to warn when nothing will send them)."""
        base = Path(directory)
        if not base.is_dir():
            return 0
        probe = Spool(base)
        total = 0
        for entry in base.iterdir():
            match = _SEGMENT.match(entry.name)
            if match is None or match.group(2) != "jsonl":
                continue
            seq = int(match.group(1))
            try:
                data = entry.read_bytes()
            except OSError:
                continue
            lines = data.count(b"\n")
            acked = probe._read_ack(seq)
            total += max(0, lines - (acked[0] if acked else 0))
        return total

    # ------------------------------------------------------------------ appending

    def _new_active(self) -> None:
        self._close_active()
        seq = self._next_seq
        self._next_seq += 1
        fd = os.open(self._segment_path(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            _fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            raise
        self._active_fd = fd
        self._active = self._segments[seq] = _Segment(seq)

    def _close_active(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
        self._active_fd = None
        self._active = None

    def append(self, lines: list[bytes]) -> None:
        """Append records (each a line ending in a newline) and fsync; raises OSError if they are not
        durable (then nothing of them counts as spooled)."""
        if not lines:
            return
        for line in lines:
            if not line.endswith(b"\n") or b"\n" in line[:-1]:
                raise ValueError("each spooled record must be exactly one line ending in a newline")
        if self._active is None or self._active.lines >= self.segment_records:
            self._new_active()
        assert self._active is not None and self._active_fd is not None
        segment, fd = self._active, self._active_fd
        data = b"".join(lines)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError:
            # undo a partial write so the segment keeps whole lines only; start afresh next time
            with contextlib.suppress(OSError):
                os.ftruncate(fd, segment.size)
            self._close_active()
            if segment.lines == 0:
                self._segments.pop(segment.seq, None)
                self._segment_path(segment.seq).unlink(missing_ok=True)
            raise
        segment.lines += len(lines)
        segment.size += len(data)
        self.pending += len(lines)

    # ------------------------------------------------------------------ reading and acknowledging

    def _drop_finished(self) -> _Segment | None:
        """The oldest segment with records waiting; fully acknowledged older ones are deleted."""
        for seq in sorted(self._segments):
            segment = self._segments[seq]
            if segment.pending > 0:
                return segment
            if segment is not self._active:
                self._delete_segment(seq)
                del self._segments[seq]
        return None

    def peek(self, limit: int) -> SpoolBatch | None:
        """Up to `limit` waiting records, oldest first (all from one segment); None if none wait."""
        segment = self._drop_finished()
        if segment is None:
            return None
        wanted = min(limit, segment.pending)
        items: list[SpoolItem] = []
        offset = segment.acked_offset
        with open(self._segment_path(segment.seq), "rb") as handle:
            handle.seek(offset)
            buffer = b""
            while len(items) < wanted:
                chunk = handle.read(_READ_CHUNK)
                if not chunk:
                    break
                buffer += chunk
                while len(items) < wanted:
                    end = buffer.find(b"\n")
                    if end < 0:
                        break
                    line, buffer = buffer[:end], buffer[end + 1 :]
                    offset += end + 1
                    items.append(SpoolItem(line, _parse(line)))
        if not items:
            raise OSError(f"spool segment {segment.seq} is shorter than its index says")
        return SpoolBatch(segment.seq, segment.acked_lines, segment.acked_lines + len(items), offset, items)

    def ack(self, batch: SpoolBatch) -> None:
        """The database has every record of `batch`: move past them (and delete a finished segment)."""
        segment = self._segments.get(batch.seq)
        if segment is None or segment.acked_lines != batch.start_line:
            raise ValueError("acknowledging a batch that is not the next one in the spool")
        segment.acked_lines = batch.end_line
        segment.acked_offset = batch.end_offset
        self.pending -= len(batch.items)
        if segment.pending == 0 and segment is not self._active:
            self._delete_segment(segment.seq)
            del self._segments[segment.seq]
            return
        tmp = self._ack_path(segment.seq).with_suffix(".ack.tmp")
        tmp.write_text(f"{segment.acked_lines} {segment.acked_offset}\n", encoding="ascii")
        os.replace(tmp, self._ack_path(segment.seq))

    def reject(self, items: list[SpoolItem]) -> None:
        """Keep records the database refused in `cdr-rejected.jsonl` (acknowledge them separately)."""
        if not items:
            return
        path = self.directory / REJECTED_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            _write_all(fd, b"".join(item.line + b"\n" for item in items))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.rejected += len(items)

    def _delete_segment(self, seq: int) -> None:
        self._segment_path(seq).unlink(missing_ok=True)
        self._ack_path(seq).unlink(missing_ok=True)

    def close(self) -> None:
        self._close_active()


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        return decode_record(line)
    except (ValueError, RecursionError):  # ValueError covers UnicodeDecodeError and JSONDecodeError
        return None
