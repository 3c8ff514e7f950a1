"""A node killed with calls carrying RTP (`kill -9`) and started again with the same state directory:
RTP resumes on the same ports with no signalling; `query`, timers and CDRs carry on as if nothing had
happened apart from the gap. A change is in the store before its reply leaves, so a kill right after a
reply never loses it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from karl_core.state import stored_calls
from karl_testkit import (
    ROOT,
    NgServer,
    Talk,
    established,
    free_port,
    free_port_block,
    karl_env,
    make_party,
    restart_karl,
    sdp,
    start_karl,
    wait_for,
)

MEDIA_IP = "127.0.0.2"


def kill(node: NgServer) -> None:
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    node.ng.close()


def steady_ports(reply: dict) -> dict:  # type: ignore[type-arg]
    """Each party's streams: local port and peer, the things that must survive a restart."""
    return {
        tag: [
            [(s["local port"], s.get("endpoint", {}).get("port")) for s in media["streams"]]
            for media in party["medias"]
        ]
        for tag, party in reply["tags"].items()
    }


def test_a_killed_node_takes_its_calls_back_and_media_resumes_without_signalling(tmp_path: Path) -> None:
    env = {
        "KARL_STATE_DIR": str(tmp_path / "calls"),
        "KARL_NODE_ID": "restore-test",
        "KARL_TIMEOUT": "4",
        "KARL_CDR_PATH": str(tmp_path / "cdr.jsonl"),
        "KARL_CDR_SPOOL_DIR": str(tmp_path / "spool"),
        "KARL_DELETE_DELAY": "0",
    }
    parties = [make_party() for _ in range(4)]
    a, b, c, d = parties
    node = start_karl(tmp_path, MEDIA_IP, 40, **env)
    try:
        to_a_side, to_b_side = established(node, a, b, "talking")
        established(node, c, d, "silent")  # no media at all: its media timeout must still come
        talk = Talk(a, to_a_side, b, to_b_side)
        with talk.running():
            talk.flowing()
            before = node.ng.request({"command": "query", "call-id": "talking"})
            kill(node)
            silent_since = talk.received.copy()
            node = restart_karl(tmp_path, node, env)
            talk.flowing(40)  # no request was sent: the restored sockets relay on the same ports
            assert talk.received[0] > silent_since[0] and talk.received[1] > silent_since[1]
            after = node.ng.request({"command": "query", "call-id": "talking"})
            assert steady_ports(after) == steady_ports(before)
            assert after["created"] == before["created"]
            assert after["totals"]["RTP"]["packets"] >= before["totals"]["RTP"]["packets"]
            assert "calls restored from" in node.log()
            # the silent call got a fresh media-timeout window at the restore, and then timed out,
            # while the talking one, with media, stays
            assert "silent" in node.ng.request({"command": "list"})["calls"]
            wait_for(lambda: "silent" not in node.ng.request({"command": "list"})["calls"], timeout=10)
            assert node.ng.request({"command": "list"})["calls"] == ["talking"]
            # the talking call ends with a CDR that knows the packets from before the restart
            assert node.ng.request({"command": "delete", "call-id": "talking"}) == {"result": "ok"}
        records = wait_for(lambda: _records(tmp_path / "cdr.jsonl", "talking"), timeout=10)
        assert records[-1]["reason"] == "deleted"
        assert records[-1]["totals"]["packets"] >= before["totals"]["RTP"]["packets"]
        assert node.ng.request({"command": "list"})["calls"] == []
        assert not stored_calls(tmp_path / "calls"), "ended calls leave nothing in the store"
    finally:
        node.stop()
        for party in parties:
            party.close()


def test_a_kill_right_after_a_reply_never_loses_the_change(tmp_path: Path) -> None:
    env = {"KARL_STATE_DIR": str(tmp_path / "calls"), "KARL_NODE_ID": "durable-test"}
    a, b = make_party(), make_party()
    node = start_karl(tmp_path, MEDIA_IP, 40, **env)
    try:
        established(node, a, b, "moving")
        for round_ in range(3):
            # a re-INVITE moving the caller to another port, then a kill the moment the reply is in
            moved = sdp(a.port + 2 * (round_ + 1))
            reply = node.ng.request({"command": "offer", "call-id": "moving", "from-tag": "A", "sdp": moved})
            assert reply["result"] == "ok"
            kill(node)
            node = restart_karl(tmp_path, node, env)
            query = node.ng.request({"command": "query", "call-id": "moving"})
            caller = query["tags"]["A"]["medias"][0]["streams"][0]
            assert caller["advertised endpoint"]["port"] == a.port + 2 * (round_ + 1)
    finally:
        node.stop()
        a.close()
        b.close()


def _records(path: Path, call_id: str) -> list[dict]:  # type: ignore[type-arg]
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("call_id") == call_id]


def test_a_second_node_on_a_state_directory_in_use_refuses_to_start(tmp_path: Path) -> None:
    """Two nodes given one KARL_STATE_DIR would compact away each other's calls: the second one says
    why and exits, the first one keeps its calls."""
    state = {"KARL_STATE_DIR": str(tmp_path / "calls"), "KARL_NODE_ID": "first"}
    node = start_karl(tmp_path, MEDIA_IP, 20, **state)
    try:
        a, b = make_party(), make_party()
        established(node, a, b, "kept")
        port_min = free_port_block(20, MEDIA_IP)
        env = karl_env(MEDIA_IP, free_port(), port_min, port_min + 19, {**state, "KARL_NODE_ID": "second"})
        second = subprocess.run(
            [sys.executable, "-m", "karl_medianode"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode != 0
        assert "in use by another Karl" in second.stdout + second.stderr, second.stdout + second.stderr
        assert node.proc.poll() is None
        assert node.ng.request({"command": "query", "call-id": "kept"})["result"] == "ok"
        assert [record.call_id for record in stored_calls(tmp_path / "calls")] == ["kept"]
    finally:
        node.stop()
