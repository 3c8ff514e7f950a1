"""`FileCallStore`: a node's calls kept in a local directory, as an append-only journal.

Each change of a call is one line appended to `calls.jsonl` (a JSON document: call-id, version, owner,
epoch, the call's state); a call's end appends a short removal line. The last line of a call wins. A
write is an `open(O_APPEND)`, one `write` and a `close`: a few microseconds, where the earlier layout (a
file per call, written to a temporary and renamed over the old one, unlinked at the end) cost ext4
200 to 300 µs per rename and per unlink, more than the request it followed.

What survives what is unchanged: a change is not fsynced, so what the kernel has accepted survives
the process (a signal, an OOM kill, a crash) and a power loss can lose the last seconds; a compaction is
(the new journal replaces the old one only once it is on disk). A process killed in
the middle of a write leaves a line cut short at the end of the journal; the next start cuts it off, and
the call's previous line stands. A line that is complete but unreadable (a disk error, a hand edit) is
reported at start and moved to `calls-unreadable-<time>.jsonl` for a human to look at.

The journal is compacted when it has grown past `compact_at_least` bytes and holds more superseded lines
than live ones: the live lines are copied, as bytes, to `calls.jsonl.tmp`, which is renamed over the
journal, so a compaction cut short leaves the old journal whole. The cost is a copy of the live calls at
most once per as many bytes written.

One store writes a directory at a time (a node's own `KARL_STATE_DIR`): it holds a lock on
`calls.lock` (`flock`) from its start to `close()`, and a second one is refused with `StateDirInUse` —
two writers would each compact away the other's calls. Files of the earlier layout (`<digest>.json`) are
taken into the journal at start and then removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from karl_core.state.call_store import OwnerToken, SaveResult, StoredCall, is_foreign, refusal

JOURNAL_NAME = "calls.jsonl"
LOCK_NAME = "calls.lock"
COMPACT_AT_LEAST = 4 * 1024 * 1024
"""Bytes a journal may reach before a compaction is considered (it then also needs more dead lines than
live ones)."""

_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class StateDirInUse(OSError):
    """Another store (another process, or another store of this one) writes the directory."""


@dataclass(slots=True)
class _Held:
    """What the store knows of a call on disk: enough for fencing, and where its live line is."""

    version: int
    token: OwnerToken
    offset: int
    length: int


@dataclass
class _Scan:
    """What reading a journal found: the live calls, where their lines are, and the lines it could not
    read (number, text, why)."""

    calls: dict[str, StoredCall]
    held: dict[str, _Held]
    bad_lines: list[tuple[int, bytes, str]]
    complete_bytes: int
    """Bytes up to the end of the last complete line (a line cut short after it is a write never
    finished)."""


def _line_prefix(call_id: str) -> bytes:
    """How a call's own line starts (the document's first key is its call-id): a check that the bytes a
    compaction copies are the call's."""
    return ('{"call_id":' + json.dumps(call_id) + ",").encode()


def _scan(data: bytes) -> _Scan:
    calls: dict[str, StoredCall] = {}
    held: dict[str, _Held] = {}
    bad: list[tuple[int, bytes, str]] = []
    complete = data.rfind(b"\n") + 1
    position = 0
    for number, line in enumerate(data[:complete].split(b"\n")[:-1], start=1):
        length = len(line) + 1
        offset, position = position, position + length
        if not line.strip():
            continue  # an empty line: after a write that was cut short and taken back
        try:
            document = json.loads(line)
            call_id = str(document["call_id"])
            token = OwnerToken(str(document["owner"]), int(document["epoch"]))
            if document.get("removed") is True:
                calls.pop(call_id, None)
                held.pop(call_id, None)
                continue
            version = int(document["version"])
            state = document["state"]
            if not isinstance(state, dict):
                raise TypeError(f"state is {type(state).__name__}, not an object")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            bad.append((number, line, f"{type(exc).__name__}: {exc}"))
            continue
        calls[call_id] = StoredCall(call_id, version, token, state)
        held[call_id] = _Held(version, token, offset, length)
    return _Scan(calls, held, bad, complete)


def stored_calls(directory: str | os.PathLike[str]) -> list[StoredCall]:
    """The calls a directory holds, read without changing anything (tools, tests, a look from outside
    while the node runs)."""
    path = Path(directory) / JOURNAL_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return list(_scan(data).calls.values())


class FileCallStore:
    """A node's calls in `directory`, one journal line per change (see the module docstring)."""

    def __init__(
        self, directory: str | os.PathLike[str], *, compact_at_least: int = COMPACT_AT_LEAST
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock: Any = self._take_lock()
        self.journal = self.directory / JOURNAL_NAME
        self._journal_path = str(self.journal)
        self.compact_at_least = compact_at_least
        self._held: dict[str, _Held] = {}
        self._live_bytes = 0
        self._torn = False
        """A write was cut short and could not be taken back: the next line starts on a new line."""
        self._unwritten_removals: dict[str, bytes] = {}
        """Removal lines of ended calls that could not be written yet (they go with the next write)."""
        self.compactions = 0
        self.compaction_failures = 0
        self.last_compaction_error = ""
        self._next_compaction_at = 0
        self.unreadable: list[tuple[Path, str]] = []
        """What `load_all` could not read, with why: where it is kept for a human, and the reason."""

    def _take_lock(self) -> Any:
        path = self.directory / LOCK_NAME
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(descriptor)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateDirInUse(
                    f"{self.directory} is in use by another Karl (it holds {path}): "
                    "each node needs a state directory of its own"
                ) from None
            raise
        # a file object, so that a store dropped without close() lets the directory go too
        return os.fdopen(descriptor, "rb", buffering=0)

    def close(self) -> None:
        """Let the directory go: another store may write it from now on (this one must not)."""
        self._lock.close()

    def save(self, call_id: str, version: int, token: OwnerToken, state: Any) -> SaveResult:
        held = self._held.get(call_id)
        refused = refusal(held, version, token)
        if refused is not None:
            return refused
        document = {
            "call_id": call_id,
            "version": version,
            "owner": token.owner,
            "epoch": token.epoch,
            "state": state,
        }
        line = (_ENCODE(document) + "\n").encode()
        # an earlier call of this call-id whose removal is not written yet: the removal goes first, in
        # this write (and stays pending if the write fails, so the ended call never comes back)
        offset = self._append_after_removals(line)
        if held is not None:
            self._live_bytes -= held.length
        self._held[call_id] = _Held(version, token, offset, len(line))
        self._live_bytes += len(line)
        self._maybe_compact(offset + len(line))
        return SaveResult.SAVED

    def remove(self, call_id: str, token: OwnerToken) -> SaveResult:
        """Remove an ended call. The call is gone from the store's view at once: if its removal line
        cannot be written (a full disk), it goes with the next line that can, so that neither a later
        call with the same call-id nor the next start sees the ended one."""
        held = self._held.get(call_id)
        if is_foreign(held, token):
            return SaveResult.FENCED
        if held is None:
            return SaveResult.SAVED  # nothing of it on disk
        del self._held[call_id]
        self._live_bytes -= held.length
        removal = {"call_id": call_id, "removed": True, "owner": token.owner, "epoch": token.epoch}
        self._unwritten_removals[call_id] = (_ENCODE(removal) + "\n").encode()
        self._append_after_removals(b"")
        return SaveResult.SAVED

    def _append_after_removals(self, line: bytes) -> int:
        """Append the removals not written yet, then `line`, in one write; returns `line`'s offset."""
        removals = b"".join(self._unwritten_removals.values())
        offset = self._append(removals + line) + len(removals)
        self._unwritten_removals.clear()
        return offset

    def load_all(self) -> list[StoredCall]:
        """Read the journal (and any files of the earlier layout), make it whole again, and return the
        calls it holds."""
        self.unreadable.clear()
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)  # a compaction or an old-layout write cut short: the old stands
        try:
            data = self.journal.read_bytes()
        except FileNotFoundError:
            data = b""
        scan = _scan(data)
        if scan.complete_bytes < len(data):
            os.truncate(self._journal_path, scan.complete_bytes)  # a write cut short: the line before stands
        self._held = scan.held
        self._live_bytes = sum(held.length for held in scan.held.values())
        self._torn = False
        self._unwritten_removals.clear()
        calls = scan.calls
        if scan.bad_lines and self._put_aside(scan.bad_lines):
            self._compact_counted(scan.complete_bytes)  # the journal without them: each is reported once
        self._take_in_old_layout(calls)
        return list(calls.values())

    def compact(self) -> None:
        """Rewrite the journal with only its live lines."""
        with open(self._journal_path, "rb") as journal:
            lines = [self._line_of(journal, call_id, held) for call_id, held in self._held.items()]
        temporary = self._journal_path + ".tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with open(descriptor, "wb") as out:  # 0600, as the journal: calls' states hold SRTP keys
                out.write(b"".join(lines))
                out.flush()
                # on disk before it replaces the journal: a power loss must not leave an empty one
                os.fsync(out.fileno())
            os.replace(temporary, self._journal_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)  # (not left to fill a full disk further)
            raise
        self._sync_directory()
        position = 0
        for line, held in zip(lines, self._held.values(), strict=True):
            held.offset, held.length = position, len(line)
            position += len(line)
        self._live_bytes = position
        self._torn = False
        self._unwritten_removals.clear()  # the new journal has none of those calls
        self._next_compaction_at = 0
        self.compactions += 1

    def _sync_directory(self) -> None:
        """The rename on disk too (best effort: the new journal is in place either way)."""
        with contextlib.suppress(OSError):
            descriptor = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def _line_of(self, journal: Any, call_id: str, held: _Held) -> bytes:
        journal.seek(held.offset)
        line: bytes = journal.read(held.length)
        if not (line.startswith(_line_prefix(call_id)) and line.endswith(b"\n")):
            # another process wrote the journal after this one read it: not how a node runs
            raise OSError(f"{self._journal_path}: the line of call {call_id!r} is not where it was written")
        return line

    def _append(self, line: bytes) -> int:
        """Append one line; returns its offset. A write the disk could not take whole is taken back, so
        that no half line is left for the next one to follow."""
        if self._torn:
            line = b"\n" + line
        descriptor = os.open(self._journal_path, _APPEND_FLAGS, 0o600)
        try:
            start = os.lseek(descriptor, 0, os.SEEK_END)
            try:
                written = os.write(descriptor, line)
            except OSError:
                self._take_back(descriptor, start)
                raise
            if written < len(line):
                self._take_back(descriptor, start)
                raise OSError(f"{self._journal_path}: {written} of {len(line)} bytes written (disk full?)")
        finally:
            os.close(descriptor)
        offset = start + 1 if line[0] == 0x0A else start
        self._torn = False
        return offset

    def _take_back(self, descriptor: int, start: int) -> None:
        try:
            os.ftruncate(descriptor, start)
        except OSError:
            self._torn = True

    def _maybe_compact(self, end: int) -> None:
        """Compact when due. A compaction that fails fails no save (the line is written): it is counted
        and tried again once the journal has grown by another `compact_at_least` bytes."""
        if end < max(self.compact_at_least, self._next_compaction_at) or end <= 2 * self._live_bytes:
            return
        self._compact_counted(end)

    def _compact_counted(self, end: int) -> None:
        """Compact; a failure is counted, fails nothing, and is tried again `compact_at_least` bytes
        past `end` (the journal's size now)."""
        try:
            self.compact()
        except OSError as exc:
            self.compaction_failures += 1
            self.last_compaction_error = str(exc)
            self._next_compaction_at = end + self.compact_at_least

    def _put_aside(self, bad_lines: list[tuple[int, bytes, str]]) -> bool:
        """Copy unreadable lines to a file of their own for a human; False if that failed (they then
        stay in the journal, and are reported again at the next start)."""
        kept = self.directory / f"calls-unreadable-{time.time_ns()}.jsonl"
        try:
            descriptor = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(descriptor, "wb") as out:  # 0600: the lines hold calls' SRTP keys
                out.write(b"".join(line + b"\n" for _, line, _ in bad_lines))
        except OSError as exc:
            with contextlib.suppress(OSError):
                kept.unlink()
            for number, _, why in bad_lines:
                self.unreadable.append(
                    (self.journal, f"line {number} of {JOURNAL_NAME}: {why} (left there: {exc})")
                )
            return False
        for number, _, why in bad_lines:
            self.unreadable.append((kept, f"line {number} of {JOURNAL_NAME}: {why}"))
        return True

    def _take_in_old_layout(self, calls: dict[str, StoredCall]) -> None:
        """Calls a Karl before the journal left, one `<digest>.json` each: written to the journal (unless
        it has the call already), then removed. One that cannot be read is left in place and reported."""
        for path in sorted(self.directory.glob("*.json")):
            try:
                document = json.loads(path.read_text())
                record = StoredCall(
                    str(document["call_id"]),
                    int(document["version"]),
                    OwnerToken(str(document["owner"]), int(document["epoch"])),
                    dict(document["state"]),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.unreadable.append((path, str(exc)))
                continue
            try:
                if record.call_id not in calls:
                    self.save(record.call_id, record.version, record.token, record.state)
                    calls[record.call_id] = record
                path.unlink()
            except OSError as exc:  # (a full disk): the file stays, to be taken in at the next start
                self.unreadable.append((path, f"not taken into {JOURNAL_NAME}: {exc}"))
