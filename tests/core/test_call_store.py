"""The call stores: versions and ownership tokens decide which writes count; the file store keeps
calls across processes and never leaves a torn one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from karl_core.state import CallStore, FileCallStore, MemoryCallStore, OwnerToken, SaveResult

NODE = OwnerToken("node-a", 1)
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
    second = FileCallStore(tmp_path)
    loaded = {record.call_id: record for record in second.load_all()}
    assert set(loaded) == {"call 0@host/with:odd chars", "call 2@host/with:odd chars"}
    assert loaded["call 2@host/with:odd chars"].token == NODE
    # the next process carries the versions on
    assert second.save("call 0@host/with:odd chars", 1, NODE, STATE) is SaveResult.STALE


def test_a_write_cut_short_leaves_the_previous_version_and_junk_is_reported(tmp_path: Path) -> None:
    store = FileCallStore(tmp_path)
    store.save("c1", 1, NODE, STATE)
    [path] = tmp_path.glob("*.json")
    path.with_suffix(".tmp").write_text('{"call_id": "c1", "version": 2, "ow')  # killed mid-write
    (tmp_path / "garbage.json").write_text("not json")
    again = FileCallStore(tmp_path)
    [record] = again.load_all()
    assert record.version == 1
    assert [p.name for p, _ in again.unreadable] == ["garbage.json"]
    assert not list(tmp_path.glob("*.tmp"))
    assert json.loads(path.read_text())["version"] == 1
