"""The call stores: versions and ownership tokens decide which writes count; the file store keeps
calls across processes, never leaves a torn one, and keeps its journal bounded."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from karl_core.state import CallStore, FileCallStore, MemoryCallStore, OwnerToken, SaveResult, stored_calls
from karl_core.state.file_call_store import JOURNAL_NAME, StateDirInUse

NODE = OwnerToken("node-a", 1)


def next_process(store: FileCallStore, **options: Any) -> FileCallStore:
    """The store of the next process on the same directory (this one lets the directory go, as a
    process that ends does)."""
    store.close()
    return FileCallStore(store.directory, **options)


STATE: dict[str, Any] = {"schema": 3, "call_id": "c1", "created": 1.0, "last_signal": 1.0}


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CallStore:
    return MemoryCallStore() if request.param == "memory" else FileCallStore(tmp_path / "calls")


def test_versions_only_move_forward(store: CallStore) -> None:
    assert store.save("c1", 1, NODE, STATE) is SaveResult.SAVED
    assert store.save("c1", 2, NODE, {**STATE, "answered": True}) is SaveResult.SAVED
    assert store.save("c1", 2, NODE, STATE) is SaveResult.STALE
    assert store.save("c1", 1, NODE, STATE) is SaveResult.STALE
    [held] = store.load_all()
    assert held.version == 2 and held.state["answered"] is True


def test_a_foreign_or_older_owner_is_fenced(store: CallStore) -> None:
    assert store.save("c1", 5, NODE, STATE) is SaveResult.SAVED
    assert store.save("c1", 6, OwnerToken("node-b", 1), STATE) is SaveResult.FENCED
    assert store.remove("c1", OwnerToken("node-b", 1)) is SaveResult.FENCED
    assert store.save("c1", 6, OwnerToken("node-a", 0), STATE) is SaveResult.FENCED
    # a newer epoch of the same owner (a restart that re-took the call) starts its versions anew
    assert store.save("c1", 1, OwnerToken("node-a", 2), STATE) is SaveResult.SAVED
    assert store.save("c1", 7, NODE, STATE) is SaveResult.FENCED
    assert store.remove("c1", OwnerToken("node-a", 2)) is SaveResult.SAVED
    assert store.load_all() == []


def test_the_file_store_keeps_calls_for_the_next_process(tmp_path: Path) -> None:
    first = FileCallStore(tmp_path)
    for n in range(3):
        first.save(f"call {n}@host/with:odd chars", 1, NODE, {**STATE, "call_id": f"call {n}"})
    first.remove("call 1@host/with:odd chars", NODE)
    second = next_process(first)
    loaded = {record.call_id: record for record in second.load_all()}
    assert set(loaded) == {"call 0@host/with:odd chars", "call 2@host/with:odd chars"}
    assert loaded["call 2@host/with:odd chars"].token == NODE
    # the next process carries the versions on
    assert second.save("call 0@host/with:odd chars", 1, NODE, STATE) is SaveResult.STALE


def versions(store_dir: Path) -> dict[str, int]:
    return {record.call_id: record.version for record in stored_calls(store_dir)}


def test_a_write_cut_short_leaves_the_previous_version_and_is_cut_off(tmp_path: Path) -> None:
    store = FileCallStore(tmp_path)
    store.save("c1", 1, NODE, STATE)
    journal = tmp_path / JOURNAL_NAME
    with journal.open("ab") as out:
        out.write(b'{"call_id":"c1","version":2,"ow')  # killed in the middle of the next write
    again = next_process(store)
    [record] = again.load_all()
    assert record.version == 1 and not again.unreadable
    assert journal.read_bytes().endswith(b"}\n"), "the half line is gone"
    # the next line starts on a line of its own
    assert again.save("c1", 2, NODE, STATE) is SaveResult.SAVED
    assert versions(tmp_path) == {"c1": 2}


def test_an_unreadable_line_is_reported_once_and_kept_for_a_human(tmp_path: Path) -> None:
    store = FileCallStore(tmp_path)
    store.save("c1", 1, NODE, STATE)
    with (tmp_path / JOURNAL_NAME).open("ab") as out:
        out.write(b"not json\n")
        out.write(b'{"call_id":"c2","version":1,"owner":"node-a","epoch":1,"state":[]}\n')
    store.save("c3", 1, NODE, STATE)  # a line the store wrote after them
    again = next_process(store)
    assert {record.call_id for record in again.load_all()} == {"c1", "c3"}
    why = {reason.split(":")[0]: path for path, reason in again.unreadable}
    assert set(why) == {"line 2 of calls.jsonl", "line 3 of calls.jsonl"}
    [kept] = set(why.values())
    assert kept.read_bytes().startswith(b"not json\n")
    assert kept.stat().st_mode & 0o777 == 0o600, "the lines hold calls' keys, as the journal does"
    third = next_process(again)
    assert len(third.load_all()) == 2 and not third.unreadable, "reported once, then out of the journal"


def test_the_journal_is_compacted_and_keeps_only_the_last_of_each_call(tmp_path: Path) -> None:
    store = FileCallStore(tmp_path, compact_at_least=20_000)
    big = {**STATE, "padding": "x" * 500}
    for version in range(1, 201):
        for n in range(5 if version <= 100 else 4):
            store.save(f"call-{n}", version, NODE, {**big, "version_seen": version})
        if version == 100:
            store.remove("call-4", NODE)  # hung up half way
    assert store.compactions >= 5
    assert (tmp_path / JOURNAL_NAME).stat().st_size < 20_000 + 5 * 1000
    # what the next process reads is the last of each call, and a call ended stays ended
    assert versions(tmp_path) == {"call-0": 200, "call-1": 200, "call-2": 200, "call-3": 200}
    loaded = {record.call_id: record for record in next_process(store).load_all()}
    assert loaded["call-2"].state["version_seen"] == 200
    assert set(loaded) == {"call-0", "call-1", "call-2", "call-3"}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_compaction_cut_short_leaves_the_journal_whole(tmp_path: Path) -> None:
    store = FileCallStore(tmp_path)
    store.save("c1", 1, NODE, STATE)
    store.save("c1", 2, NODE, STATE)
    (tmp_path / (JOURNAL_NAME + ".tmp")).write_bytes(b'{"call_id":"c1","vers')  # killed mid-compaction
    again = next_process(store)
    assert [record.version for record in again.load_all()] == [2]
    assert not list(tmp_path.glob("*.tmp"))


def test_calls_of_the_earlier_layout_are_taken_into_the_journal(tmp_path: Path) -> None:
    """A Karl before the journal kept one `<digest>.json` per call: an upgrade keeps those calls."""
    digest = hashlib.sha256(b"old-call").hexdigest()[:40]
    document = {"call_id": "old-call", "version": 4, "owner": "node-a", "epoch": 1, "state": STATE}
    (tmp_path / f"{digest}.json").write_text(json.dumps(document))
    (tmp_path / "garbage.json").write_text("not json")
    store = FileCallStore(tmp_path)
    [record] = store.load_all()
    assert (record.call_id, record.version, record.token) == ("old-call", 4, NODE)
    assert [path.name for path, _ in store.unreadable] == ["garbage.json"], "left in place, reported"
    assert sorted(path.name for path in tmp_path.glob("*.json")) == ["garbage.json"]
    assert versions(tmp_path) == {"old-call": 4}
    assert store.save("old-call", 4, NODE, STATE) is SaveResult.STALE  # versions carry on


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of its own, so that the test can fill it (root only: CI runs as root)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "karl-test", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        # lazy: a store the test left open (its lock file) must not keep the tmpfs mounted
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def fill(disk: Path) -> Path:
    """Fill the disk with one file; returns it (delete it to have space again)."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(descriptor, b"\0" * 512) == 512:
            pass
    except OSError:
        pass  # full
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_fails_the_write_and_leaves_no_half_line(small_disk: Path) -> None:
    store = FileCallStore(small_disk / "calls")
    store.save("c1", 1, NODE, STATE)
    filler = fill(small_disk)
    big = {**STATE, "padding": "x" * 8000}
    with pytest.raises(OSError):
        store.save("c1", 2, NODE, big)
    with pytest.raises(OSError):
        store.save("c2", 1, NODE, big)
    filler.unlink()  # space again
    assert store.save("c2", 1, NODE, STATE) is SaveResult.SAVED
    assert store.save("c1", 2, NODE, STATE) is SaveResult.SAVED
    again = next_process(store)
    assert {record.call_id: record.version for record in again.load_all()} == {"c1": 2, "c2": 1}
    assert not again.unreadable, "no half line was left in the journal"


def test_the_journal_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Calls' states hold SRTP keys: the journal is 0600, also after a compaction."""
    store = FileCallStore(tmp_path)
    store.save("c1", 1, NODE, STATE)
    assert (tmp_path / JOURNAL_NAME).stat().st_mode & 0o777 == 0o600
    store.compact()
    assert (tmp_path / JOURNAL_NAME).stat().st_mode & 0o777 == 0o600


def test_a_removal_that_could_not_be_written_goes_with_the_next_write(tmp_path: Path) -> None:
    """An ended call whose removal line could not be written (the directory gone a moment, a full
    disk) must not come back at the next start, nor block a later call with its call-id: the line goes
    with the next write that can be made."""
    directory = tmp_path / "calls"
    store = FileCallStore(directory)
    store.save("ended", 5, NODE, STATE)
    store.save("talking", 1, NODE, STATE)
    aside = tmp_path / "aside"
    directory.rename(aside)
    directory.write_text("not a directory")  # (root writes through any mode: the directory is replaced)
    with pytest.raises(OSError):
        store.remove("ended", NODE)
    directory.unlink()
    aside.rename(directory)
    assert versions(directory) == {"ended": 5, "talking": 1}, "not on disk yet"
    assert store.save("talking", 2, NODE, STATE) is SaveResult.SAVED
    assert versions(directory) == {"talking": 2}
    # the call-id used again by a new call: its versions start anew
    assert store.save("ended", 1, NODE, STATE) is SaveResult.SAVED
    again = next_process(store)
    assert {record.call_id: record.version for record in again.load_all()} == {"talking": 2, "ended": 1}


def test_an_ended_calls_removal_outlives_a_failed_write_of_a_new_call_with_its_call_id(
    tmp_path: Path,
) -> None:
    """The removal of an ended call is pending (not written); a new call with the same call-id then
    fails to be written too. The removal must still reach the disk with the next write that works,
    or a restart brings the ended call back."""
    directory = tmp_path / "calls"
    store = FileCallStore(directory)
    store.save("x", 3, NODE, {**STATE, "old": True})
    aside = tmp_path / "aside"
    directory.rename(aside)
    directory.write_text("not a directory")  # every write fails for a moment
    with pytest.raises(OSError):
        store.remove("x", NODE)
    with pytest.raises(OSError):
        store.save("x", 1, NODE, STATE)  # a new call, same call-id
    directory.unlink()
    aside.rename(directory)
    assert store.save("y", 1, NODE, STATE) is SaveResult.SAVED
    assert store.remove("x", NODE) is SaveResult.SAVED  # the new call ends: nothing of it on disk
    assert versions(directory) == {"y": 1}
    assert [record.call_id for record in next_process(store).load_all()] == ["y"]


def test_a_directory_is_written_by_one_store_at_a_time(tmp_path: Path) -> None:
    """Two writers of one journal would compact away each other's calls: the second is refused with a
    message saying why, until the first lets the directory go; reading from outside stays possible."""
    store = FileCallStore(tmp_path)
    store.save("c1", 1, NODE, STATE)
    with pytest.raises(StateDirInUse, match="in use by another Karl"):
        FileCallStore(tmp_path)
    assert versions(tmp_path) == {"c1": 1}
    again = next_process(store)
    assert [record.call_id for record in again.load_all()] == ["c1"]


def test_unreadable_lines_on_a_full_disk_are_reported_and_the_start_goes_on(small_disk: Path) -> None:
    """Neither setting unreadable lines aside nor the compaction after it can be done on a full disk:
    the store starts with the calls it could read, says why, and leaves no temporary file behind."""
    store = FileCallStore(small_disk / "calls")
    store.save("c1", 1, NODE, STATE)
    with (small_disk / "calls" / JOURNAL_NAME).open("ab") as out:
        out.write(b"not json\n")
    fill(small_disk)
    again = next_process(store)
    assert [record.call_id for record in again.load_all()] == ["c1"]
    [(path, why)] = again.unreadable
    assert path.name == JOURNAL_NAME and "left there" in why, why
    assert not list((small_disk / "calls").glob("*.tmp")) and not list(
        (small_disk / "calls").glob("calls-unreadable-*")
    )
