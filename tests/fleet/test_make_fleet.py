"""`make fleet`: the README's three-node fleet on one machine, Redis included, with one command — it
starts, places calls on its nodes through the router, and stops every process on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from fleet.fleet_kit import metric
from karl_testkit import ROOT, NgClient, free_port, free_port_block, make_party, sdp, wait_for

pytestmark = pytest.mark.fleet


def test_make_fleet_runs_three_nodes_behind_the_router_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    base = free_port_block(50)
    ports = {
        "FLEET_BASE_PORT": str(base),
        "FLEET_NG_PORT": str(free_port()),
        "FLEET_REDIS_PORT": str(free_port()),
        "FLEET_RTP_MIN": "27000",
        "FLEET_RTP_MAX": "27199",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KARL_", "FLEET_"))} | ports
    log = (tmp_path / "fleet.log").open("wb")
    fleet = subprocess.Popen(
        ["make", "--no-print-directory", "fleet"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = NgClient(("127.0.0.1", int(ports["FLEET_NG_PORT"])))
    store = redis.Redis(port=int(ports["FLEET_REDIS_PORT"]), decode_responses=True, socket_timeout=1)
    try:

        def pong() -> bool:
            try:
                return bool(client.request({"command": "ping"}, timeout=0.5)["result"] == "pong")
            except TimeoutError:
                return False

        wait_for(pong, timeout=30)
        wait_for(lambda: store.scard("karl:members") == 3, timeout=10)
        router_metrics = f"http://127.0.0.1:{base + 3}"
        wait_for(lambda: metric(router_metrics, "karl_router_nodes", state="placeable") == 3, timeout=10)
        a, b = make_party("127.0.0.1"), make_party("127.0.0.1")
        owners = set()
        for index in range(12):
            call_id = f"make-fleet-{index}"
            offer = client.request(
                {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": sdp(a.port)}
            )
            assert offer["result"] == "ok", offer
            answer = client.request(
                {"command": "answer", "call-id": call_id, "from-tag": "A", "to-tag": "B", "sdp": sdp(b.port)}
            )
            assert answer["result"] == "ok", answer
            owners.add(store.hget(f"karl:call:{call_id}", "owner"))
        assert owners == {"node-1", "node-2", "node-3"}
    finally:
        os.killpg(fleet.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        try:
            fleet.wait(20)
        finally:
            log.close()
    text = (tmp_path / "fleet.log").read_text()
    assert "fleet: stopping" in text, text
    # every process the fleet started was in its session: none is left
    left = subprocess.run(["pgrep", "-s", str(fleet.pid)], capture_output=True, text=True, check=False)
    assert left.stdout.split() == [], text
