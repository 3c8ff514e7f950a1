"""A media node that loses a call to another owner stops acting for it: its next write is refused in
Redis (owner and epoch compared in Lua), it answers `not owner` from then on, its timers end the call
without a CDR (the holder writes that one), and it never touches the holder's keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fleet.fleet_calls import cdr_records
from fleet.fleet_kit import FleetNode, NetnsLab, RedisServer, metric
from karl_core.ng.fleet import NOT_OWNER
from karl_testkit import sdp, wait_for

pytestmark = pytest.mark.fleet


def cdr_call_ids(node: FleetNode) -> list[str]:
    return [record["call_id"] for record in cdr_records(Path(node.env["KARL_CDR_PATH"]))]


def test_a_call_taken_by_another_owner_is_fenced_everywhere(
    redis_server: RedisServer,
    netns_lab: Callable[..., NetnsLab],
    fleet_nodes: Callable[..., FleetNode],
) -> None:
    lab = netns_lab(2)
    node = fleet_nodes(
        lab, 0, redis_server, "node-a", KARL_TIMEOUT="2", KARL_OFFER_TIMEOUT="2", KARL_DELETE_DELAY="0"
    )
    party = lab.party(1)
    ip = lab.ns_ip(1)
    redis = redis_server.client()
    wait_for(lambda: metric(node.url("metrics"), "karl_fleet_lease_valid") == 1, timeout=10)

    def offer(call_id: str) -> dict[str, object]:
        return dict(
            node.ng.request(
                {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": sdp(party.port, ip)}
            )
        )

    # a call that stays with this node ends by its media timeout with a CDR, as on a single node
    assert offer("kept@test")["result"] == "ok"
    # a call the fleet gives to another node meanwhile (as a failover would: new owner, newer epoch)
    assert offer("moved@test")["result"] == "ok"
    assert redis.hget("karl:call:moved@test", "owner") == "node-a"
    redis.hset("karl:call:moved@test", mapping={"owner": "node-b", "epoch": "999"})
    # the node's next change is refused by Redis: it stops answering for the call and lets it go
    # (no relay, ports freed, no CDR: the holder writes it), and that request is sent to the holder
    refused_change = offer("moved@test")
    assert refused_change["error-reason"] == NOT_OWNER and refused_change["karl-owner"] == "node-b"
    wait_for(lambda: metric(node.url("metrics"), "karl_fleet_fenced_calls_total") == 1, timeout=5)
    sessions = node.ng.request({"command": "statistics"})["statistics"]["currentstatistics"]["sessionstotal"]
    assert sessions == 1  # released at once
    refused = node.ng.request({"command": "query", "call-id": "moved@test"})
    assert refused == {
        "result": "error",
        "error-reason": NOT_OWNER,
        "karl-owner": "node-b",
        "karl-epoch": 999,
    }
    # the kept call times out (never answered) and gets a CDR; the moved call's keys (the new owner's)
    # are left alone
    wait_for(lambda: "kept@test" in cdr_call_ids(node), timeout=10)
    wait_for(lambda: metric(node.url("metrics"), "karl_fleet_cdrs_withheld_total") == 1, timeout=10)
    assert cdr_call_ids(node) == ["kept@test"]
    assert redis.hgetall("karl:call:moved@test") == {"owner": "node-b", "epoch": "999"}
    assert redis.exists("karl:callstate:moved@test")  # the new owner's to write, not this node's to delete
    assert not redis.exists("karl:call:kept@test", "karl:callstate:kept@test")


def test_an_offer_for_another_nodes_call_is_undone_and_refused(
    redis_server: RedisServer,
    netns_lab: Callable[..., NetnsLab],
    fleet_nodes: Callable[..., FleetNode],
) -> None:
    lab = netns_lab(2)
    node = fleet_nodes(lab, 0, redis_server, "node-a")
    party = lab.party(1)
    ip = lab.ns_ip(1)
    redis = redis_server.client()
    wait_for(lambda: metric(node.url("metrics"), "karl_fleet_lease_valid") == 1, timeout=10)
    redis.hset("karl:call:elsewhere@test", mapping={"owner": "node-b", "epoch": "7"})
    ports_before = metric(node.url("metrics"), "karl_port_pool_ports_in_use")
    assert ports_before == 0
    # a proxy (or a router with a stale cache) sends the offer here: the node creates the call, its
    # first write finds node-b holding it, and the call is undone before the reply
    reply = node.ng.request(
        {"command": "offer", "call-id": "elsewhere@test", "from-tag": "A", "sdp": sdp(party.port, ip)}
    )
    assert reply == {"result": "error", "error-reason": NOT_OWNER, "karl-owner": "node-b", "karl-epoch": 7}
    assert node.ng.request({"command": "statistics"})["statistics"]["currentstatistics"]["sessionstotal"] == 0
    assert metric(node.url("metrics"), "karl_port_pool_ports_in_use") == ports_before
    assert metric(node.url("metrics"), "karl_fleet_cdrs_withheld_total") == 0
    assert cdr_call_ids(node) == []
    assert redis.hgetall("karl:call:elsewhere@test") == {"owner": "node-b", "epoch": "7"}
    assert not redis.exists("karl:callstate:elsewhere@test")
    assert redis.smembers("karl:node-calls:node-a") == set()
