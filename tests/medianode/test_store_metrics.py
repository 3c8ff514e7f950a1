"""The call store families (`karl_call_store_*`) move with what really happens to the calls' state: Karl
processes with a state directory (KARL_STATE_DIR), driven over NG and scraped on their metrics port.
Saves and removals are counted, a restart says how many calls came back, a call another node owns is
fenced, and a directory that cannot be written counts failures while every NG request is answered."""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from karl_core.state import FileCallStore, OwnerToken, stored_calls
from karl_core.state.file_call_store import JOURNAL_NAME
from karl_testkit import NgServer, established, free_port, make_party, restart_karl, sdp, start_karl, wait_for

MEDIA_IP = "127.0.0.2"
SAVES = "karl_call_store_saves_total"
REMOVALS = "karl_call_store_removals_total"
RESTORES = "karl_call_store_restores_total"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def first_scrape(port: int) -> Samples:
    """The first scrape of a node just started (its HTTP servers come up just after NG)."""

    def attempt() -> Samples | None:
        try:
            return scrape(port)
        except (urllib.error.URLError, ConnectionError):
            return None

    samples: Samples = wait_for(attempt, timeout=10, interval=0.1)
    return samples


def value(samples: Samples, name: str, result: str) -> float:
    return samples[(name, frozenset({("result", result)}))]


def store_env(tmp_path: Path, node_id: str) -> dict[str, str]:
    return {
        "KARL_STATE_DIR": str(tmp_path / "calls"),
        "KARL_NODE_ID": node_id,
        "KARL_DELETE_DELAY": "0",
        "KARL_METRICS_PORT": str(free_port()),
    }


def metrics_port(env: dict[str, str]) -> int:
    return int(env["KARL_METRICS_PORT"])


def kill(node: NgServer) -> None:
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    node.ng.close()


def request_ok(node: NgServer, **payload: object) -> None:
    reply = node.ng.request(payload)
    assert reply["result"] == "ok", reply


def stored_owners(directory: Path) -> dict[str, str]:
    """call-id -> owner of every call in the store."""
    return {record.call_id: record.token.owner for record in stored_calls(directory)}


@contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make the state directory unwritable for the node, then give it back. Root writes through any
    mode, so there the directory is moved away and a plain file takes its place."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)
        return
    aside = directory.with_name(directory.name + ".aside")
    directory.rename(aside)
    directory.write_text("not a directory")
    try:
        yield
    finally:
        directory.unlink()
        aside.rename(directory)


def test_saves_and_removals_are_counted_and_a_restart_says_how_many_calls_came_back(tmp_path: Path) -> None:
    env = store_env(tmp_path, "store-metrics")
    parties = [make_party() for _ in range(6)]
    node = start_karl(tmp_path, MEDIA_IP, 40, **env)
    try:
        start = first_scrape(metrics_port(env))
        for result in ("saved", "stale", "fenced", "failed"):
            assert value(start, SAVES, result) == 0, result
        assert value(start, RESTORES, "restored") == value(start, RESTORES, "failed") == 0

        established(node, parties[0], parties[1], "kept-1")
        one_call = scrape(metrics_port(env))
        assert value(one_call, SAVES, "saved") >= 2, "the offer and the answer were each written"
        established(node, parties[2], parties[3], "kept-2")
        established(node, parties[4], parties[5], "hung-up")
        three_calls = scrape(metrics_port(env))
        assert value(three_calls, SAVES, "saved") >= value(one_call, SAVES, "saved") + 4
        assert set(stored_owners(tmp_path / "calls")) == {"kept-1", "kept-2", "hung-up"}

        request_ok(node, command="delete", **{"call-id": "hung-up"})
        wait_for(lambda: value(scrape(metrics_port(env)), REMOVALS, "removed") == 1, timeout=5)
        after = scrape(metrics_port(env))
        assert value(after, REMOVALS, "fenced") == value(after, REMOVALS, "failed") == 0
        for result in ("stale", "fenced", "failed"):
            assert value(after, SAVES, result) == 0, result
        assert set(stored_owners(tmp_path / "calls")) == {"kept-1", "kept-2"}

        # killed with two calls in the store, and a line in it that nothing can read (a disk error)
        kill(node)
        with (tmp_path / "calls" / JOURNAL_NAME).open("ab") as journal:
            journal.write(b'{"call_id": "tor\x00\n')
        env = {**env, "KARL_METRICS_PORT": str(free_port())}
        node = restart_karl(tmp_path, node, env)
        restarted = first_scrape(metrics_port(env))
        assert value(restarted, RESTORES, "restored") == 2
        assert value(restarted, RESTORES, "failed") == 1, "the unreadable line"
        assert sorted(node.ng.request({"command": "list"})["calls"]) == ["kept-1", "kept-2"]
        [kept] = (tmp_path / "calls").glob("calls-unreadable-*.jsonl")  # for a human to look at
        assert kept.read_bytes() == b'{"call_id": "tor\x00\n'
        assert f"unreadable call state, kept in {kept}: line " in node.log()

        # the restored calls go on being written and removed
        moved = sdp(parties[0].port + 2)
        request_ok(node, command="offer", **{"call-id": "kept-1", "from-tag": "A", "sdp": moved})
        request_ok(node, command="delete", **{"call-id": "kept-2"})
        later = scrape(metrics_port(env))
        assert value(later, SAVES, "saved") >= 1
        assert value(later, SAVES, "stale") == value(later, SAVES, "fenced") == 0
        assert value(later, REMOVALS, "removed") == 1
        assert set(stored_owners(tmp_path / "calls")) == {"kept-1"}
    finally:
        node.stop()
        for party in parties:
            party.close()


def test_a_call_another_node_owns_is_fenced_and_counted(tmp_path: Path) -> None:
    env = store_env(tmp_path, "this-node")
    # the fleet handed call "taken" to another node, which wrote it to the store this node uses
    FileCallStore(tmp_path / "calls").save("taken", 7, OwnerToken("other-node"), {"call_id": "taken"})
    a, b, c, d = (make_party() for _ in range(4))
    node = start_karl(tmp_path, MEDIA_IP, 40, **env)
    try:
        start = first_scrape(metrics_port(env))
        assert value(start, RESTORES, "restored") == value(start, RESTORES, "failed") == 0, "not ours"

        established(node, a, b, "taken")  # answered as usual: the proxy never sees the fencing
        fenced = scrape(metrics_port(env))
        assert value(fenced, SAVES, "fenced") >= 2, "the offer and the answer were refused"
        assert value(fenced, SAVES, "saved") == 0

        established(node, c, d, "ours")  # the store still takes this node's own calls
        wait_for(lambda: value(scrape(metrics_port(env)), SAVES, "saved") >= 2, timeout=5)

        request_ok(node, command="delete", **{"call-id": "taken"})
        ended = scrape(metrics_port(env))
        assert value(ended, REMOVALS, "fenced") == 1
        assert value(ended, REMOVALS, "removed") == value(ended, REMOVALS, "failed") == 0
        assert value(ended, SAVES, "fenced") == value(fenced, SAVES, "fenced"), "nothing more to write"
        assert stored_owners(tmp_path / "calls") == {"taken": "other-node", "ours": "this-node"}
        assert "belongs to another owner" in node.log()
    finally:
        node.stop()
        for party in (a, b, c, d):
            party.close()


def test_an_unwritable_state_directory_counts_failures_and_every_request_is_answered(tmp_path: Path) -> None:
    env = store_env(tmp_path, "failing-disk")
    directory = tmp_path / "calls"
    parties = [make_party() for _ in range(6)]
    node = start_karl(tmp_path, MEDIA_IP, 40, **env)
    try:
        first_scrape(metrics_port(env))
        established(node, parties[0], parties[1], "before")
        saved_before = value(scrape(metrics_port(env)), SAVES, "saved")
        assert saved_before >= 2

        with unwritable(directory):
            # new calls, a re-INVITE and a hang-up: all answered, none written
            established(node, parties[2], parties[3], "during-1")
            established(node, parties[4], parties[5], "during-2")
            moved = sdp(parties[0].port + 2)
            request_ok(node, command="offer", **{"call-id": "before", "from-tag": "A", "sdp": moved})
            request_ok(node, command="delete", **{"call-id": "before"})
            assert node.ng.request({"command": "ping"}) == {"result": "pong"}
            failing = scrape(metrics_port(env))
            assert value(failing, SAVES, "failed") >= 5
            assert value(failing, SAVES, "saved") == saved_before
            assert value(failing, REMOVALS, "failed") == 1
            assert value(failing, REMOVALS, "removed") == 0
            queried = node.ng.request({"command": "query", "call-id": "during-1"})
            assert queried["result"] == "ok", queried
            assert node.proc.poll() is None

        # said in the log, but not once per failed write
        log = node.log()
        assert log.count("could not keep the state of call") == 1, log
        assert "could not remove the state of call" in log
        assert "Traceback" not in log, "a failing disk is no bug of Karl's"
        assert value(failing, REMOVALS, "failed") >= 1

        # the disk is back: the next change is written again
        request_ok(node, command="delete", **{"call-id": "during-2"})
        sdp_moved = sdp(parties[2].port + 2)
        request_ok(node, command="offer", **{"call-id": "during-1", "from-tag": "A", "sdp": sdp_moved})
        wait_for(lambda: value(scrape(metrics_port(env)), SAVES, "saved") > saved_before, timeout=5)
        assert "during-1" in stored_owners(directory)
        assert "before" not in stored_owners(directory), "its removal went with the next write"
        assert sorted(node.ng.request({"command": "list"})["calls"]) == ["during-1"]
    finally:
        node.stop()
        for party in parties:
            party.close()
