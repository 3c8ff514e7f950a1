"""CDRs from real Karl processes: a timed-out call gets its record, and records spooled while the
database is down survive a restart of the node and reach the database exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from karl_testkit import NgServer, wait_for

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
