"""Failover (part 2 of the fleet): real `redis-server`, three `karl` nodes in network namespaces of their
own, `karl-router` and `karl-operator failover` in the root namespace, parties sending real RTP.

    proxy (this test) ──NG──► karl-router ──NG──► karl in netns 0..2 ◄── peer probes ──► each other
    karl-operator failover ◄──── Redis (leases, peers' reports, calls) ────► nodes, router
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from fleet.fleet_calls import (
    Stream,
    answer,
    answered_calls,
    assert_unknown,
    cdr_records,
    media_address,
    node_calls,
    offer,
    reinvite_through,
)
from fleet.fleet_kit import (
    FailoverProcess,
    FleetNode,
    FleetRouter,
    NetnsLab,
    RedisServer,
    WebhookReceiver,
    metric,
    restart_node,
)
from karl_core.ng.fleet import NOT_OWNER
from karl_testkit import Party, wait_for

pytestmark = pytest.mark.fleet

LEASE_TTL = 3.0


def test_a_killed_nodes_calls_move_to_the_survivors_and_talk_again(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    redis_server: RedisServer,
    failover_controller: Callable[..., FailoverProcess],
    webhook_receiver: Callable[..., WebhookReceiver],
) -> None:
    hook = webhook_receiver(fail_first=2)  # the first deliveries fail: they are retried
    hooked = {"KARL_FAILOVER_WEBHOOK_URL": hook.url_on("{bridge_ip}")}
    lab, nodes, router = fleet(3, node_env=dict.fromkeys(range(3), hooked))
    controller = failover_controller(redis_server, "failover-1", KARL_FAILOVER_RESTART_GRACE="1")
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    established: dict[str, tuple[Party, Party, tuple[str, int], tuple[str, int]]] = {}
    ringing: dict[str, Party] = {}
    for index in range(12):
        a, b = lab.party(parties), lab.party(parties)
        call_id = f"fo-{index}@test"
        offered = offer(router.ng, call_id, a, ip)
        assert offered["result"] == "ok", offered
        if index % 3 == 2:
            ringing[call_id] = b  # offered, not answered yet
            continue
        answered = answer(router.ng, call_id, b, ip)
        assert answered["result"] == "ok", answered
        established[call_id] = (a, b, media_address(answered), media_address(offered))
    owners = {call_id: redis.hget(f"karl:call:{call_id}", "owner") for call_id in [*established, *ringing]}
    epochs = {call_id: int(redis.hget(f"karl:call:{call_id}", "epoch")) for call_id in owners}
    victim_id, _ = Counter(owners.values()).most_common(1)[0]
    victim = next(node for node in nodes if node.node_id == victim_id)
    survivors = [node for node in nodes if node is not victim]
    survivor_ids = {node.node_id for node in survivors}
    moving = [call_id for call_id, owner in owners.items() if owner == victim_id]
    staying = [call_id for call_id in established if owners[call_id] != victim_id]
    assert moving and staying

    with ExitStack() as running:
        # RTP on the calls of the other nodes, counted packet by packet
        streams = [
            running.enter_context(Stream(a, to_a_side, b, to_b_side).running())
            for a, b, to_a_side, to_b_side in (established[c] for c in staying)
        ]
        killed_at = time.monotonic()
        victim.kill()

        def all_moved() -> bool:
            return all(redis.hget(f"karl:call:{c}", "owner") in survivor_ids for c in moving)

        wait_for(all_moved, timeout=LEASE_TTL + 3, interval=0.05)
        moved_after = time.monotonic() - killed_at
        # the survivors took the calls up: every call is on exactly one live node
        wait_for(lambda: sum(node_calls(node) for node in survivors) == len(owners), timeout=5)
        for stream in streams:
            stream.flowing(10)
    for stream in streams:
        assert stream.received == stream.sent, "calls on the other nodes lost packets"
    assert moved_after <= LEASE_TTL + 3
    for call_id in moving:
        assert int(redis.hget(f"karl:call:{call_id}", "epoch")) > epochs[call_id]  # the victim is fenced
    assert victim_id not in redis.smembers("karl:members")  # its calls are gone: it no longer counts

    # one event per moved call reached the webhook, after the refused attempts were retried
    wait_for(lambda: len(hook.events) >= len(moving), timeout=10)
    assert hook.refused == 2
    urls = [node.url("metrics") for node in survivors]
    assert sum(metric(u, "karl_fleet_webhook_deliveries_total", result="ok") for u in urls) == len(moving)
    assert sum(metric(u, "karl_fleet_webhook_deliveries_total", result="failed") for u in urls) == 2
    assert sum(metric(u, "karl_fleet_webhook_queued") for u in urls) == 0
    # the controller's account of it
    assert metric(controller.metrics_url, "karl_failover_leading") == 1
    assert metric(controller.metrics_url, "karl_failover_nodes_total", reason="failed") == 1
    assert metric(controller.metrics_url, "karl_failover_calls_moved_total", reason="failed") == len(moving)
    assert metric(controller.metrics_url, "karl_failover_members", state="live") == 2
    events = {event["call_id"]: event for event in hook.events}
    assert sorted(events) == sorted(moving) and len(hook.events) == len(moving)
    assert len({event["event_id"] for event in hook.events}) == len(moving)
    for call_id, event in events.items():
        new_owner = redis.hget(f"karl:call:{call_id}", "owner")
        assert (event["from_node"], event["to_node"]) == (victim_id, new_owner)
        assert event["epoch"] == int(redis.hget(f"karl:call:{call_id}", "epoch"))
        for leg in event["legs"]:
            assert (
                leg["old"]["address"]
                == victim.ns_ip
                != leg["new"]["address"]
                == lab.ns_ip(int(new_owner.split("-")[1]))
            )
            if leg["sdp"] is not None:  # Karl's SDP for a B2BUA: the new address and port
                assert f"c=IN IP4 {leg['new']['address']}" in leg["sdp"]
                assert f" {leg['new']['port']} RTP/AVP" in leg["sdp"]
    # the endpoints are told the new address: a re-INVITE through the proxy with the SDPs of the event
    for call_id in moving:
        queried = router.ng.request({"command": "query", "call-id": call_id})
        assert queried["result"] == "ok", queried
        if call_id in ringing:
            continue
        a, b, _, _ = established[call_id]
        legs = {leg["tag"]: leg for leg in events[call_id]["legs"]}
        offered, answered = reinvite_through(router, call_id, legs)
        # what the event said each party must send to is where Karl relays now
        assert media_address(answered) == (legs["A"]["new"]["address"], legs["A"]["new"]["port"])
        assert media_address(offered) == (legs["B"]["new"]["address"], legs["B"]["new"]["port"])
        with Stream(a, media_address(answered), b, media_address(offered)).running() as stream:
            stream.flowing(10)
        assert stream.received == stream.sent
    # a call that was still ringing is answered on its new node
    for call_id, b in ringing.items():
        if call_id in moving:
            assert answer(router.ng, call_id, b, ip)["result"] == "ok"
    # and every moved call ends through the router, on its new node
    for call_id in moving:
        deleted = router.ng.request({"command": "delete", "call-id": call_id, "delete-delay": 0})
        assert deleted["result"] == "ok", deleted
    wait_for(lambda: not any(redis.exists(f"karl:call:{c}") for c in moving), timeout=5)


def test_a_node_restarted_within_the_grace_takes_its_calls_back_on_the_same_ports(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    redis_server: RedisServer,
    failover_controller: Callable[..., FailoverProcess],
) -> None:
    lab, nodes, router = fleet(2)
    failover_controller(redis_server, "failover-1", KARL_FAILOVER_RESTART_GRACE="10")
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    node = nodes[0]
    calls = []
    for index in range(6):
        a, b = lab.party(parties), lab.party(parties)
        call_id = f"back-{index}@test"
        offered, answered = offer(router.ng, call_id, a, ip), answer(router.ng, call_id, b, ip)
        calls.append((call_id, a, b, media_address(answered), media_address(offered)))
    mine = [c for c in calls if redis.hget(f"karl:call:{c[0]}", "owner") == node.node_id]
    assert mine
    epochs = {c[0]: int(redis.hget(f"karl:call:{c[0]}", "epoch")) for c in mine}
    node.kill()
    # its lease runs out: from here the controller counts its restart grace
    wait_for(lambda: not redis.exists(f"karl:node:{node.node_id}"), timeout=LEASE_TTL + 2)
    restarted = restart_node(node)
    assert node_calls(restarted) == len(mine)
    for call_id, a, b, to_a_side, to_b_side in mine:
        assert redis.hget(f"karl:call:{call_id}", "owner") == node.node_id  # nothing moved
        assert int(redis.hget(f"karl:call:{call_id}", "epoch")) > epochs[call_id]
        # RTP to the ports the parties had flows again, with no signalling at all
        with Stream(a, to_a_side, b, to_b_side).running() as stream:
            stream.flowing(10)
        assert stream.received == stream.sent
    assert redis.hget("karl:call:" + mine[0][0], "owner") == node.node_id
    assert node.node_id in redis.smembers("karl:members")


def test_a_node_paused_past_its_lease_wakes_up_fenced_and_lets_its_calls_go(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    redis_server: RedisServer,
    failover_controller: Callable[..., FailoverProcess],
    tmp_path: Path,
) -> None:
    cdrs = {k: tmp_path / f"cdr-{k}.jsonl" for k in range(3)}
    lab, nodes, router = fleet(
        3, node_env={k: {"KARL_CDR_ENABLED": "1", "KARL_CDR_PATH": str(path)} for k, path in cdrs.items()}
    )
    failover_controller(redis_server, "failover-1", KARL_FAILOVER_RESTART_GRACE="1")
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    for index in range(9):
        a, b = lab.party(parties), lab.party(parties)
        call_id = f"paused-{index}@test"
        assert offer(router.ng, call_id, a, ip)["result"] == "ok"
        assert answer(router.ng, call_id, b, ip)["result"] == "ok"
    owners = {f"paused-{i}@test": redis.hget(f"karl:call:paused-{i}@test", "owner") for i in range(9)}
    sleeper_id, _ = Counter(owners.values()).most_common(1)[0]
    sleeper = next(node for node in nodes if node.node_id == sleeper_id)
    moving = [call_id for call_id, owner in owners.items() if owner == sleeper_id]
    os.kill(sleeper.proc.pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: all(redis.hget(f"karl:call:{c}", "owner") not in (None, sleeper_id) for c in moving),
            timeout=LEASE_TTL + 4,
        )
    finally:
        os.kill(sleeper.proc.pid, signal.SIGCONT)
    # awake: its lease was gone, its writes come back fenced, and it lets the moved calls go
    wait_for(lambda: node_calls(sleeper) == 0, timeout=10)
    for call_id in moving:
        refused = sleeper.ng.request({"command": "query", "call-id": call_id})
        assert refused["result"] == "error" and refused["error-reason"] == NOT_OWNER, refused
        assert router.ng.request({"command": "query", "call-id": call_id})["result"] == "ok"
        deleted = router.ng.request({"command": "delete", "call-id": call_id, "delete-delay": 0})
        assert deleted["result"] == "ok", deleted

    # one CDR per call, from the node that held it when it ended: none from the node that slept
    def cdr_calls(path: Path) -> list[str]:
        return [record["call_id"] for record in cdr_records(path)]

    wait_for(lambda: sorted(c for k in cdrs for c in cdr_calls(cdrs[k])) == sorted(moving), timeout=10)
    assert not set(cdr_calls(cdrs[sleeper.k])) & set(moving)


def cut_off(lab: NetnsLab, k: int, redis_port: int, peers: list[str]) -> None:
    """In namespace k: drop Redis traffic and everything to and from the other nodes (nftables). The
    router (at the bridge address) and the parties still reach the node."""
    lab.run(k, ["nft", "add", "table", "inet", "karl_cut"])
    for chain, hook in (("in", "input"), ("out", "output")):
        spec = f"{{ type filter hook {hook} priority -300 ; policy accept ; }}"
        lab.run(k, ["nft", "add", "chain", "inet", "karl_cut", chain, spec])
    peer_set = "{ " + ", ".join(peers) + " }"
    for chain, rule in (
        ("out", f"tcp dport {redis_port} drop"),
        ("in", f"tcp sport {redis_port} drop"),
        ("out", f"ip daddr {peer_set} drop"),
        ("in", f"ip saddr {peer_set} drop"),
    ):
        lab.run(k, ["nft", "add", "rule", "inet", "karl_cut", chain, *rule.split()])


def heal(lab: NetnsLab, k: int) -> None:
    lab.run(k, ["nft", "delete", "table", "inet", "karl_cut"])


def ready(node: FleetNode) -> bool:
    try:
        with urllib.request.urlopen(f"{node.url('health')}/ready", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_a_partitioned_node_goes_unready_its_calls_move_and_a_stale_router_reaches_the_new_owner(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    fleet_router: Callable[..., FleetRouter],
    redis_server: RedisServer,
    failover_controller: Callable[..., FailoverProcess],
    tmp_path: Path,
) -> None:
    cdrs = {k: tmp_path / f"cdr-{k}.jsonl" for k in range(3)}
    lab, nodes, router = fleet(
        3, node_env={k: {"KARL_CDR_ENABLED": "1", "KARL_CDR_PATH": str(path)} for k, path in cdrs.items()}
    )
    stale = fleet_router(redis_server, cluster_id=lab.cluster_id)
    failover_controller(redis_server, "failover-1", KARL_FAILOVER_RESTART_GRACE="1")
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    calls = [f"cut-{index}@test" for index in range(9)]
    for call_id in calls:
        a, b = lab.party(parties), lab.party(parties)
        assert offer(router.ng, call_id, a, ip)["result"] == "ok"
        assert answer(router.ng, call_id, b, ip)["result"] == "ok"
        assert stale.ng.request({"command": "query", "call-id": call_id})["result"] == "ok"  # cached
    owners = {call_id: redis.hget(f"karl:call:{call_id}", "owner") for call_id in calls}
    victim_id, _ = Counter(owners.values()).most_common(1)[0]
    victim = next(node for node in nodes if node.node_id == victim_id)
    moving = [call_id for call_id, owner in owners.items() if owner == victim_id]
    peers = [lab.ns_ip(node.k) for node in nodes if node is not victim]
    assert ready(victim)
    cut_off(lab, victim.k, redis_server.port, peers)
    try:
        wait_for(lambda: not ready(victim), timeout=LEASE_TTL + 2)
        wait_for(
            lambda: all(redis.hget(f"karl:call:{c}", "owner") not in (None, victim_id) for c in moving),
            timeout=LEASE_TTL + 6,
        )
        assert node_calls(victim) == len(moving)  # it cannot know yet, but it answers for none of them
        cut = victim.url("metrics")
        assert metric(cut, "karl_fleet_peers") == 2 and metric(cut, "karl_fleet_peers_reachable") == 0
        assert metric(cut, "karl_fleet_majority_reachable") == 0  # so it does not hold over
        survivors = [n for n in nodes if n is not victim]

        def adopted() -> float:
            return sum(metric(n.url("metrics"), "karl_fleet_calls_adopted_total") for n in survivors)

        wait_for(lambda: adopted() == len(moving), timeout=5)  # the survivors took them up

        def queries_answered(node: FleetNode) -> float:
            return metric(node.url("metrics"), "karl_ng_commands_total", command="query", result="ok")

        before = {node.node_id: queries_answered(node) for node in nodes}
        for call_id in moving:
            queried = stale.ng.request({"command": "query", "call-id": call_id})
            assert queried["result"] == "ok", queried
        # the new owners answered, the old node none (its lease is gone: the router asks Redis, and
        # the old node would refuse anyway: it may not act)
        answered = {node.node_id: queries_answered(node) - before[node.node_id] for node in nodes}
        assert answered[victim_id] == 0 and sum(answered.values()) == len(moving), answered
        for call_id in moving:
            deleted = stale.ng.request({"command": "delete", "call-id": call_id, "delete-delay": 0})
            assert deleted["result"] == "ok", deleted
            assert not redis.exists(f"karl:call:{call_id}")
    finally:
        heal(lab, victim.k)
    # healed: it finds the calls held by others, lets them go (ports freed), and is ready again
    wait_for(lambda: node_calls(victim) == 0, timeout=10)
    wait_for(lambda: ready(victim), timeout=10)
    assert metric(victim.url("metrics"), "karl_fleet_fenced_calls_total") == len(moving)

    def cdr_calls(path: Path) -> list[str]:
        return [record["call_id"] for record in cdr_records(path)]

    def all_cdrs() -> list[str]:
        return sorted(c for path in cdrs.values() for c in cdr_calls(path))

    wait_for(lambda: all_cdrs() == sorted(moving), timeout=10)
    assert not set(cdr_calls(cdrs[victim.k])) & set(moving)  # one CDR per call, none from the old node


def test_a_node_stopped_with_calls_still_up_hands_them_over_with_their_events(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    redis_server: RedisServer,
    failover_controller: Callable[..., FailoverProcess],
    webhook_receiver: Callable[..., WebhookReceiver],
    tmp_path: Path,
) -> None:
    """SIGTERM: no new calls; once KARL_SHUTDOWN_GRACE runs out, the calls still up go to other nodes as
    in a failover (with their webhook events), none is lost, and the stopping node writes no CDR for
    them (their new holders will)."""
    hook = webhook_receiver()
    env = {
        k: {
            "KARL_FAILOVER_WEBHOOK_URL": hook.url_on("{bridge_ip}"),
            "KARL_SHUTDOWN_GRACE": "1",
            "KARL_CDR_ENABLED": "1",
            "KARL_CDR_PATH": str(tmp_path / f"cdr-{k}.jsonl"),
        }
        for k in range(3)
    }
    lab, nodes, router = fleet(3, node_env=env)
    controller = failover_controller(redis_server, "failover-1")  # the restart grace plays no part
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    calls: dict[str, tuple[Party, Party]] = {}
    for index in range(9):
        a, b = lab.party(parties), lab.party(parties)
        call_id = f"drain-{index}@test"
        assert offer(router.ng, call_id, a, ip)["result"] == "ok"
        assert answer(router.ng, call_id, b, ip)["result"] == "ok"
        calls[call_id] = (a, b)
    owners = {call_id: redis.hget(f"karl:call:{call_id}", "owner") for call_id in calls}
    leaving_id, _ = Counter(owners.values()).most_common(1)[0]
    leaving = next(node for node in nodes if node.node_id == leaving_id)
    handed = [call_id for call_id, owner in owners.items() if owner == leaving_id]
    stopped_at = time.monotonic()
    assert leaving.stop(timeout=20) == 0  # SIGTERM, a clean exit
    took = time.monotonic() - stopped_at
    assert took < 1 + 10, took  # the grace, then the hand-over (bounded)
    others = {node.node_id for node in nodes if node is not leaving}
    assert all(redis.hget(f"karl:call:{c}", "owner") in others for c in handed)
    assert leaving_id not in redis.smembers("karl:members")  # it left cleanly
    handed_over = metric(controller.metrics_url, "karl_failover_calls_moved_total", reason="handover")
    assert handed_over == len(handed)
    assert metric(controller.metrics_url, "karl_failover_nodes_total", reason="failed") == 0
    wait_for(lambda: len(hook.events) == len(handed), timeout=10)
    assert sorted(event["call_id"] for event in hook.events) == sorted(handed)
    assert {event["from_node"] for event in hook.events} == {leaving_id}
    # re-pointed through the router with the events' SDPs, every handed-over call talks again
    events = {event["call_id"]: event for event in hook.events}
    for call_id in handed:
        a, b = calls[call_id]
        legs = {leg["tag"]: leg for leg in events[call_id]["legs"]}
        offered, answered = reinvite_through(router, call_id, legs)
        with Stream(a, media_address(answered), b, media_address(offered)).running() as stream:
            stream.flowing(10)
        assert stream.received == stream.sent
    for call_id in calls:
        deleted = router.ng.request({"command": "delete", "call-id": call_id, "delete-delay": 0})
        assert deleted["result"] == "ok", deleted

    def cdr_calls(k: int) -> list[str]:
        return [record["call_id"] for record in cdr_records(tmp_path / f"cdr-{k}.jsonl")]

    wait_for(lambda: sorted(c for k in range(3) for c in cdr_calls(k)) == sorted(calls), timeout=10)
    assert not set(cdr_calls(leaving.k)) & set(handed)  # one CDR per call, from its last holder
    # each record lists the nodes its call passed through
    for k in range(3):
        for record in cdr_records(tmp_path / f"cdr-{k}.jsonl"):
            call_id = record["call_id"]
            if call_id in handed:
                assert record["nodes"] == [leaving_id, record["node_id"]] and record["failovers"] == 1, record
            else:
                assert record["nodes"] == [owners[call_id]] and record["failovers"] == 0, record


def test_calls_no_node_has_room_for_end_with_a_cdr_and_an_event_and_are_never_half_adopted(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    redis_server: RedisServer,
    failover_controller: Callable[..., FailoverProcess],
    webhook_receiver: Callable[..., WebhookReceiver],
    tmp_path: Path,
) -> None:
    hook = webhook_receiver()
    hooked = {
        "KARL_FAILOVER_WEBHOOK_URL": hook.url_on("{bridge_ip}"),
        "KARL_CDR_ENABLED": "1",
        "KARL_CDR_PATH": str(tmp_path / "cdr.jsonl"),
    }
    lab, nodes, router = fleet(2, node_env={0: hooked, 1: {**hooked, "KARL_MAX_SESSIONS": "2"}})
    controller = failover_controller(redis_server, "failover-1", KARL_FAILOVER_RESTART_GRACE="1")
    victim, survivor = nodes
    redis = redis_server.client()
    calls = [f"full-{index}@test" for index in range(5)]
    answered_calls(victim.ng, lab, calls)  # all on the victim (offered to it directly: it places them)
    victim.kill()

    def settled() -> bool:
        return all(redis.hget(f"karl:call:{c}", "owner") in (None, survivor.node_id) for c in calls)

    wait_for(settled, timeout=LEASE_TTL + 4)
    moved = [c for c in calls if redis.hget(f"karl:call:{c}", "owner") == survivor.node_id]
    ended = [c for c in calls if c not in moved]
    assert len(moved) == 2 and len(ended) == 3  # the survivor had room for two
    assert not any(redis.exists(f"karl:callstate:{c}") for c in ended)  # nothing half-adopted
    wait_for(lambda: node_calls(survivor) == 2, timeout=5)
    wait_for(lambda: len(hook.events) == len(calls), timeout=10)
    by_kind: dict[str, list[str]] = {}
    for event in hook.events:
        by_kind.setdefault(event["event"], []).append(event["call_id"])
    assert sorted(by_kind["call_moved"]) == sorted(moved)
    assert sorted(by_kind["call_ended"]) == sorted(ended)
    for event in hook.events:
        if event["event"] == "call_ended":
            assert event["reason"] == "no_room" and event["from_node"] == victim.node_id
            assert {leg["tag"] for leg in event["legs"]} == {"A", "B"}
            assert all(leg["old"]["address"] == victim.ns_ip for leg in event["legs"])
    assert metric(controller.metrics_url, "karl_failover_calls_ended_total") == len(ended)
    assert_unknown(router.ng, ended)
    # the ended calls have their CDRs (written by the survivor for the failed node), with the reason

    def records() -> list[dict[str, Any]]:
        return cdr_records(tmp_path / "cdr.jsonl")

    wait_for(lambda: len(records()) == len(ended), timeout=10)
    for record in records():
        assert record["call_id"] in ended and record["reason"] == "failover no room", record
        assert record["nodes"] == [victim.node_id] and record["node_id"] == survivor.node_id
        assert {tag["tag"] for tag in record["tags"]} == {"A", "B"}


def test_calls_a_survivor_cannot_take_up_end_with_their_cdrs_and_events(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    redis_server: RedisServer,
    failover_controller: Callable[..., FailoverProcess],
    webhook_receiver: Callable[..., WebhookReceiver],
    tmp_path: Path,
) -> None:
    """The survivor says it has room (no session limit) but has no free ports: each call moved to it
    ends there, with its CDR and a `take_up_failed` event, and nothing of it is left in Redis."""
    hook = webhook_receiver()
    hooked = {
        "KARL_FAILOVER_WEBHOOK_URL": hook.url_on("{bridge_ip}"),
        "KARL_CDR_ENABLED": "1",
        "KARL_CDR_PATH": str(tmp_path / "cdr.jsonl"),
    }
    no_ports = {**hooked, "KARL_RTP_MIN_PORT": "21000", "KARL_RTP_MAX_PORT": "21001"}  # half a leg
    lab, nodes, router = fleet(2, node_env={0: hooked, 1: no_ports})
    failover_controller(redis_server, "failover-1", KARL_FAILOVER_RESTART_GRACE="1")
    victim, survivor = nodes
    redis = redis_server.client()
    calls = [f"portless-{index}@test" for index in range(3)]
    answered_calls(victim.ng, lab, calls)
    victim.kill()

    wait_for(lambda: metric(survivor.url("metrics"), "karl_fleet_adoptions_failed_total") == len(calls), 15)
    wait_for(lambda: not any(redis.exists(f"karl:call:{c}", f"karl:callstate:{c}") for c in calls), 5)
    assert node_calls(survivor) == 0
    wait_for(lambda: len(hook.events) == len(calls), timeout=10)
    assert sorted(event["call_id"] for event in hook.events) == sorted(calls)
    for event in hook.events:
        assert event["event"] == "call_ended" and event["reason"] == "take_up_failed", event
        assert event["from_node"] == victim.node_id
        assert {leg["tag"] for leg in event["legs"]} == {"A", "B"}
    assert_unknown(router.ng, calls)

    def records() -> list[dict[str, Any]]:
        return cdr_records(tmp_path / "cdr.jsonl")

    wait_for(lambda: len(records()) == len(calls), timeout=10)
    for record in records():
        assert record["reason"] == "failover take-up failed", record
        assert record["nodes"] == [victim.node_id, survivor.node_id], record
        assert record["node_id"] == survivor.node_id and record["failovers"] == 1


def test_a_node_drained_through_its_api_hands_its_calls_over_and_keeps_running(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    redis_server: RedisServer,
    failover_controller: Callable[..., FailoverProcess],
    webhook_receiver: Callable[..., WebhookReceiver],
) -> None:
    hook = webhook_receiver()
    env = {"KARL_FAILOVER_WEBHOOK_URL": hook.url_on("{bridge_ip}"), "KARL_SHUTDOWN_GRACE": "1"}
    lab, nodes, router = fleet(2, node_env=dict.fromkeys(range(2), env))
    failover_controller(redis_server, "failover-1")
    drained, other = nodes
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    calls = [f"api-drain-{index}@test" for index in range(4)]
    for call_id in calls:  # all on the node to drain (offered to it directly)
        a, b = lab.party(parties), lab.party(parties)
        assert offer(drained.ng, call_id, a, ip)["result"] == "ok"
        assert answer(drained.ng, call_id, b, ip)["result"] == "ok"
    request = urllib.request.Request(
        f"{drained.url('api')}/api/v1/admin/drain",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 200
    # after the grace (1 s) its calls go to the other node, with their events; it keeps running
    wait_for(lambda: all(redis.hget(f"karl:call:{c}", "owner") == other.node_id for c in calls), timeout=15)
    wait_for(lambda: sorted(e["call_id"] for e in hook.events) == sorted(calls), timeout=10)
    assert drained.proc.poll() is None and not ready(drained)
    wait_for(lambda: metric(drained.url("metrics"), "karl_fleet_calls_held") == 0, timeout=5)
    assert node_calls(other) == len(calls)
    for call_id in calls:  # the calls are the other node's now, through the router
        assert router.ng.request({"command": "query", "call-id": call_id})["result"] == "ok"
        refused = drained.ng.request({"command": "query", "call-id": call_id})
        assert refused["result"] == "error" and refused["error-reason"] == NOT_OWNER, refused


def test_a_node_that_restarts_before_taking_up_calls_moved_to_it_takes_them_up_on_its_own_ports(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]], redis_server: RedisServer
) -> None:
    """A call failover moved to a node that stopped before it took the call up (the move is in Redis,
    the call on the node's adoption list): started again, the node takes it up as a moved call, on
    its own address and ports — not as one of its own calls on the failed node's ports."""
    lab, nodes, _ = fleet(2)
    old, new = nodes
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    a, b = lab.party(parties), lab.party(parties)
    assert offer(old.ng, "pending@test", a, ip)["result"] == "ok"
    assert answer(old.ng, "pending@test", b, ip)["result"] == "ok"
    new.stop()
    old.kill()
    # what ADOPT leaves in Redis when the controller moves the call to `new`
    epoch = redis.incr("karl:epoch")
    redis.hset(
        "karl:call:pending@test", mapping={"owner": new.node_id, "epoch": epoch, "moved_from": old.node_id}
    )
    redis.hset("karl:callstate:pending@test", mapping={"owner": new.node_id, "epoch": epoch})
    redis.srem(f"karl:node-calls:{old.node_id}", "pending@test")
    redis.sadd(f"karl:node-calls:{new.node_id}", "pending@test")
    redis.rpush(f"karl:adopt:{new.node_id}", "pending@test")
    restarted = restart_node(new)
    assert node_calls(restarted) == 1
    assert not redis.llen(f"karl:adopt:{new.node_id}")

    def saved_addresses() -> set[str]:
        state = json.loads(redis.hget("karl:callstate:pending@test", "state"))
        return {
            stream["local_address"]
            for mono in state["monologues"]
            for media in mono["medias"]
            for stream in media["streams"]
        }

    wait_for(lambda: saved_addresses() == {restarted.ns_ip}, timeout=5)  # its own ports, written back
    assert json.loads(redis.hget("karl:callstate:pending@test", "state"))["nodes"] == [
        old.node_id,
        new.node_id,
    ]
    assert restarted.ng.request({"command": "query", "call-id": "pending@test"})["result"] == "ok"
