"""The NG router in front of real media nodes: real `redis-server`, `karl` nodes in network namespaces of
their own (each with its own address), `karl-router` processes in the root namespace, and parties in a
namespace of their own sending real RTP.

    proxy (this test, 127.0.0.1) ──NG──► karl-router (127.0.0.1) ──NG──► karl in netns k (10.213.n.10+k)
    parties (netns "P") ◄──────────────────── RTP ────────────────────► the call's node
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from fleet.fleet_calls import (
    Stream,
    answer,
    health_detail,
    media_address,
    node_calls,
    offer,
    router_metrics,
    send_at_once,
)
from fleet.fleet_kit import FleetNode, FleetRouter, NetnsLab, RedisServer, metric, restart_node
from karl_core.ng import bencode
from karl_core.ng.fleet import NOT_OWNER
from karl_core.state.lease import NodeLease
from karl_core.state.placement import PlacementRing
from karl_testkit import Party, sdp, wait_for

pytestmark = pytest.mark.fleet


def test_calls_spread_over_the_nodes_and_every_command_reaches_the_owner(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]], redis_server: RedisServer
) -> None:
    lab, nodes, router = fleet(3)
    parties = lab.count - 1
    a, b = lab.party(parties), lab.party(parties)
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    calls = [f"spread-{i}@test" for i in range(24)]
    for call_id in calls:
        assert offer(router.ng, call_id, a, ip)["result"] == "ok"
        assert answer(router.ng, call_id, b, ip)["result"] == "ok"
    owners = {call_id: redis.hget(f"karl:call:{call_id}", "owner") for call_id in calls}
    per_node = Counter(owners.values())
    assert set(per_node) == {node.node_id for node in nodes}, per_node  # every node got calls
    assert max(per_node.values()) <= 0.6 * len(calls), per_node
    for node in nodes:  # each node has exactly the calls Redis says it holds
        assert node_calls(node) == per_node[node.node_id]
        assert redis.smembers(f"karl:node-calls:{node.node_id}") == {
            c for c, o in owners.items() if o == node.node_id
        }
    # a node asked directly about another node's call refuses it (it is not the owner)
    call_id = calls[0]
    other = next(node for node in nodes if node.node_id != owners[call_id])
    refused = other.ng.request({"command": "query", "call-id": call_id})
    assert refused["error-reason"] == NOT_OWNER and refused["karl-owner"] == owners[call_id]
    # media of one call goes through its owner's address, every packet
    offered = offer(router.ng, calls[0], a, ip)
    answered = answer(router.ng, calls[0], b, ip)
    owner_ip = lab.ns_ip(int(owners[calls[0]].split("-")[1]))
    assert media_address(offered)[0] == media_address(answered)[0] == owner_ip
    with Stream(a, media_address(answered), b, media_address(offered)).running() as stream:
        stream.flowing(20)
    assert stream.received == stream.sent
    queried = router.ng.request({"command": "query", "call-id": calls[0]})
    relayed = sum(int(tag["medias"][0]["streams"][0]["stats"]["packets"]) for tag in queried["tags"].values())
    assert relayed == sum(stream.sent)
    # list and statistics merge the nodes; delete empties Redis
    assert {c for c in router.ng.request({"command": "list", "limit": 100})["calls"]} == set(calls)
    stats = router.ng.request({"command": "statistics"})["statistics"]
    assert int(stats["currentstatistics"]["sessionstotal"]) == len(calls)
    # per proxy: the proxy that talked to the router (this test), not the routers the nodes saw
    [proxy] = stats["controlstatistics"]["proxies"]
    assert proxy["proxy"] == "127.0.0.1"
    assert proxy["offercount"] == len(calls) + 1 and proxy["answercount"] == len(calls) + 1
    for call_id in calls:
        assert (
            router.ng.request({"command": "delete", "call-id": call_id, "delete-delay": 0})["result"] == "ok"
        )
    wait_for(lambda: not redis.keys("karl:call*"), timeout=5)
    assert all(not redis.smembers(f"karl:node-calls:{node.node_id}") for node in nodes)
    placements = sum(
        metric(router_metrics(router), "karl_router_placements_total", node=n.node_id) for n in nodes
    )
    assert placements == len(calls)


def test_one_datagram_through_two_routers_at_once_makes_one_call(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    fleet_router: Callable[..., FleetRouter],
    redis_server: RedisServer,
) -> None:
    lab, nodes, first = fleet(2)
    second = fleet_router(redis_server, cluster_id=lab.cluster_id)
    wait_for(lambda: second.ng.request({"command": "ping"})["result"] == "pong", timeout=10)
    parties = lab.count - 1
    a = lab.party(parties)
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    for round_ in range(5):
        call_id = f"twice-{round_}@test"
        datagram = f"dup{round_}_cookie ".encode() + bencode.encode(
            {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": sdp(a.port, ip)}
        )
        replies = send_at_once([(datagram, first.ng.address), (datagram, second.ng.address)])
        assert replies[0] == replies[1]  # the same reply: one execution, one set of ports
        assert b"6:result2:ok" in replies[0]
        assert redis.hget(f"karl:call:{call_id}", "owner") in {n.node_id for n in nodes}
    assert sum(node_calls(node) for node in nodes) == 5


def test_an_offer_the_rings_pick_does_not_hold_is_followed_to_the_calls_holder(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]], redis_server: RedisServer
) -> None:
    """The router sends a call it does not know straight to the ring's pick (no Redis round trip).
    When another node holds the call already (a router whose cache is cold, a ring that changed), the
    pick undoes what it did and names the holder; the router follows, and the proxy sees one answer
    from the holder, on the holder's ports."""
    lab, nodes, router = fleet(2)
    parties = lab.count - 1
    a = lab.party(parties)
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    ring = PlacementRing()
    ring.update(NodeLease.from_json(redis.get(f"karl:node:{node.node_id}")) for node in nodes)
    holder, other = nodes[1], nodes[0]
    # calls the ring places on the other node, held by `holder` (the proxy offered them to it directly)
    calls = [c for c in (f"held-{i}@test" for i in range(40)) if ring.first(c) == other.node_id][:4]
    assert len(calls) == 4
    first_ports = {}
    for call_id in calls:
        direct = offer(holder.ng, call_id, a, ip)
        assert direct["result"] == "ok", direct
        first_ports[call_id] = media_address(direct)
    assert node_calls(holder) == len(calls)
    retried = metric(router_metrics(router), "karl_router_retries_total", reason="not_owner")
    for call_id in calls:
        again = offer(router.ng, call_id, a, ip)  # a re-offer, through the router
        assert again["result"] == "ok", again
        assert media_address(again) == first_ports[call_id]  # the holder's ports, not new ones
        assert redis.hget(f"karl:call:{call_id}", "owner") == holder.node_id
    assert metric(router_metrics(router), "karl_router_retries_total", reason="not_owner") == retried + len(
        calls
    )
    assert node_calls(other) == 0  # what the ring's pick set up for them is undone
    assert node_calls(holder) == len(calls)
    # the router knows the holder now: later commands go straight to it
    for call_id in calls:
        assert router.ng.request({"command": "query", "call-id": call_id})["result"] == "ok"
    assert metric(router_metrics(router), "karl_router_retries_total", reason="not_owner") == retried + len(
        calls
    )


def test_a_full_node_and_a_node_out_of_ports_send_calls_elsewhere(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]], redis_server: RedisServer
) -> None:
    # node-0: room for one call; node-1: ports for one call (two pairs); node-2: plenty
    lab, nodes, router = fleet(
        3,
        node_env={
            0: {"KARL_MAX_SESSIONS": "1"},
            1: {"KARL_RTP_MIN_PORT": "20000", "KARL_RTP_MAX_PORT": "20003"},
        },
    )
    parties = lab.count - 1
    a = lab.party(parties)
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    calls = [f"room-{i}@test" for i in range(16)]
    for index, call_id in enumerate(calls):
        extra = {"supports": ["load limit"]} if index % 2 else {}
        reply = offer(router.ng, call_id, a, ip, **extra)
        assert reply["result"] == "ok", reply
    per_node = Counter(redis.hget(f"karl:call:{c}", "owner") for c in calls)
    assert per_node["node-0"] <= 1 and per_node["node-1"] <= 1, per_node
    assert per_node["node-2"] >= len(calls) - 2
    assert [node_calls(node) for node in nodes] == [per_node[n.node_id] for n in nodes]
    assert metric(router_metrics(router), "karl_router_retries_total", reason="refused") >= 1
    # nobody has room: refused as rtpengine refuses a full node, with and without `load limit`
    for node in nodes[2:]:
        node.stop()
    wait_for(lambda: metric(router_metrics(router), "karl_router_nodes", state="live") == 2, timeout=10)
    refused = offer(router.ng, "no-room@test", a, ip, supports=["load limit"])
    assert refused["result"] == "load limit", refused
    refused = offer(router.ng, "no-room-2@test", a, ip)
    assert refused == {"result": "error", "error-reason": "Parallel session limit reached"}
    assert not redis.exists("karl:call:no-room@test", "karl:call:no-room-2@test")


def test_bad_input_gets_the_answers_a_node_gives_and_nothing_is_forwarded(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
) -> None:
    lab, nodes, router = fleet(1)
    node = nodes[0]
    datagrams = [
        b"garbage without structure",
        b"c1 d7:command",  # truncated bencode
        b"c2 " + b"x" * 60000,  # oversize garbage
        b"c3 ",  # no payload
        b"c4 d7:command5:offere",  # no call-id
        b"c5 d7:command9:transform7:call-id1:xe",  # unknown command
        b"c6 d7:command6:answer7:call-id1:x8:from-tag1:ae",  # no SDP
        b'c7 {"command": "offer"',  # broken JSON
        b"c8 le",  # not a dictionary
    ]

    def exchange(address: tuple[str, int], source: str, datagram: bytes) -> bytes | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        sock.settimeout(0.5)
        try:
            sock.sendto(datagram, address)
            return sock.recv(65535)
        except TimeoutError:
            return None
        finally:
            sock.close()

    forwarded_before = metric(router_metrics(router), "karl_router_forwarded_total")
    for datagram in datagrams:
        # a new cookie at the node each time: its reply cache must not answer for the router's
        from_router = exchange(router.ng.address, "127.0.0.1", datagram)
        from_node = exchange(node.ng.address, lab.bridge_ip, datagram.replace(b"c", b"n", 1))
        if from_node is None:
            assert from_router is None, datagram
        else:
            assert from_router is not None and from_router.split(b" ", 1)[1] == from_node.split(b" ", 1)[1], (
                datagram
            )
    assert metric(router_metrics(router), "karl_router_forwarded_total") == forwarded_before
    assert router.proc.poll() is None


def test_ping_answers_pong_only_with_redis_and_a_ready_node(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]], redis_server: RedisServer
) -> None:
    _, nodes, router = fleet(1)
    assert router.ng.request({"command": "ping"}) == {"result": "pong"}
    redis_server.pause()
    try:
        wait_for(lambda: router.ng.request({"command": "ping"})["result"] == "error", timeout=5)
    finally:
        redis_server.resume()
    wait_for(lambda: router.ng.request({"command": "ping"})["result"] == "pong", timeout=5)
    nodes[0].stop()
    wait_for(lambda: router.ng.request({"command": "ping"})["result"] == "error", timeout=10)


def redis_part(node: FleetNode) -> dict[str, Any]:
    return dict(health_detail(node)["components"]["redis"])


def timed(request: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    reply = request()
    return reply, time.monotonic() - started


def test_redis_hung_dropped_killed_and_restarted_empty_never_disturbs_established_calls(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]], redis_server: RedisServer
) -> None:
    lab, nodes, router = fleet(2)
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    calls: dict[str, tuple[Party, Party, dict[str, Any], dict[str, Any]]] = {}
    for index in range(4):
        a, b = lab.party(parties), lab.party(parties)
        call_id = f"outage-{index}@test"
        offered, answered = offer(router.ng, call_id, a, ip), answer(router.ng, call_id, b, ip)
        assert offered["result"] == answered["result"] == "ok"
        calls[call_id] = (a, b, offered, answered)
    owners = {call_id: redis.hget(f"karl:call:{call_id}", "owner") for call_id in calls}
    assert set(owners.values()) == {"node-0", "node-1"}, owners
    fresh = iter(range(1000))

    def established_calls_answer() -> None:
        for call_id, (a, _, offered, _) in calls.items():
            query = {"command": "query", "call-id": call_id}
            reply, took = timed(lambda query=query: router.ng.request(query))
            assert reply["result"] == "ok" and took < 1.0, (call_id, reply, took)
            reply, took = timed(lambda c=call_id, p=a: offer(router.ng, c, p, ip))
            assert reply["result"] == "ok" and took < 1.0, (call_id, reply, took)
            assert media_address(reply) == media_address(offered)

    def new_calls_refused_fast() -> None:
        a = calls[next(iter(calls))][0]
        reply, took = timed(lambda: offer(router.ng, f"refused-{next(fresh)}@test", a, ip))
        assert reply == {"result": "error", "error-reason": "Parallel session limit reached"}, reply
        assert took < 0.5, took

    def new_calls_work() -> None:
        a = calls[next(iter(calls))][0]
        call_id = f"after-{next(fresh)}@test"
        wait_for(lambda: offer(router.ng, call_id, a, ip)["result"] == "ok", timeout=10)
        assert (
            router.ng.request({"command": "delete", "call-id": call_id, "delete-delay": 0})["result"] == "ok"
        )

    def both_nodes(condition: Callable[[dict[str, Any]], bool]) -> None:
        wait_for(lambda: all(condition(redis_part(node)) for node in nodes), timeout=10)

    streams = [
        Stream(a, media_address(answered), b, media_address(offered))
        for a, b, offered, answered in calls.values()
    ]
    with streams[0].running(), streams[1].running(), streams[2].running(), streams[3].running():
        # Redis hung: the nodes hold over once their leases ran out; calls go on, new ones are refused
        redis_server.pause()
        both_nodes(lambda part: part["holding_over"])
        for node in nodes:  # what the metrics say about it
            url = node.url("metrics")
            assert metric(url, "karl_fleet_holding_over") == 1
            assert metric(url, "karl_fleet_lease_valid") == 0
            assert metric(url, "karl_fleet_lease_renewals_total", result="failed") >= 1
            assert metric(url, "karl_fleet_calls_held") == sum(o == node.node_id for o in owners.values())
        established_calls_answer()
        new_calls_refused_fast()
        for stream in streams:
            stream.flowing()
        redis_server.resume()
        both_nodes(lambda part: part["lease_valid"])
        new_calls_work()
        # traffic to Redis dropped (connections hang rather than break)
        redis_server.drop_traffic()
        both_nodes(lambda part: part["holding_over"])
        established_calls_answer()
        new_calls_refused_fast()
        redis_server.restore_traffic()
        both_nodes(lambda part: part["lease_valid"])
        new_calls_work()
        # Redis killed, then back EMPTY: the nodes write their leases and calls again, nothing restarts
        redis_server.kill()
        both_nodes(lambda part: part["holding_over"])
        established_calls_answer()
        new_calls_refused_fast()
        redis_server.restart()
        redis = redis_server.client()
        wait_for(lambda: {c: redis.hget(f"karl:call:{c}", "owner") for c in calls} == owners, timeout=10)
        assert all(redis.exists(f"karl:callstate:{call_id}") for call_id in calls)
        assert all(
            int(redis.get("karl:epoch") or 0) >= int(redis.hget(f"karl:call:{c}", "epoch")) for c in calls
        )
        both_nodes(lambda part: part["lease_valid"])
        for node in nodes:
            url = node.url("metrics")
            assert metric(url, "karl_fleet_lease_lost_total") >= 1
            assert metric(url, "karl_fleet_reasserted_calls_total") >= sum(
                o == node.node_id for o in owners.values()
            )
            assert metric(url, "karl_fleet_redis_errors_total") >= 1
            assert metric(url, "karl_call_store_saves_total", result="saved") >= 1
        established_calls_answer()
        new_calls_work()
        for stream in streams:
            stream.flowing()
    for stream in streams:  # not one packet lost through all of it
        assert stream.received == stream.sent, (stream.sent, stream.received)
    for node in nodes:
        assert node.proc.poll() is None


def test_requests_for_one_call_racing_through_two_routers_leave_one_consistent_call(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    fleet_router: Callable[..., FleetRouter],
    redis_server: RedisServer,
) -> None:
    lab, nodes, first = fleet(2)
    second = fleet_router(redis_server, cluster_id=lab.cluster_id)
    wait_for(lambda: second.ng.request({"command": "ping"})["result"] == "pong", timeout=10)
    parties = lab.count - 1
    a, b, c = lab.party(parties), lab.party(parties), lab.party(parties)
    ip = lab.ns_ip(parties)
    redis = redis_server.client()

    def race(one: tuple[FleetRouter, dict[str, Any]], other: tuple[FleetRouter, dict[str, Any]]) -> list[Any]:
        """Both requests leave together, from one socket, to two router replicas."""
        cookies = [f"race{time.monotonic_ns()}_{i}".encode() for i in (0, 1)]
        datagrams = [
            (cookie + b" " + bencode.encode(message), router.ng.address)
            for cookie, (router, message) in zip(cookies, (one, other), strict=True)
        ]
        replies = dict(reply.partition(b" ")[::2] for reply in send_at_once(datagrams))
        return [bencode.decode(replies[cookie]) for cookie in cookies]

    kept = set()
    for index in range(8):
        call_id = f"race-{index}@test"
        offered = {"command": "offer", "call-id": call_id, "from-tag": "A", "sdp": sdp(a.port, ip)}
        deleted = {"command": "delete", "call-id": call_id, "delete-delay": 0}
        # in turn, one or the other leaves first
        if index % 2:
            delete_reply, offer_reply = race((second, deleted), (first, offered))
        else:
            offer_reply, delete_reply = race((first, offered), (second, deleted))
        assert offer_reply["result"] == "ok", offer_reply
        assert delete_reply["result"] == "ok", delete_reply
        # the delete came first (rtpengine's warning for an unknown call) or second (the call is gone)
        if "warning" in delete_reply:
            assert delete_reply["warning"] == "Call-ID not found or tags didn't match", delete_reply
            kept.add(call_id)
    # two forks answer at once through the two replicas: both reach the owner, one after the other
    call_id = "forks@test"
    assert offer(first.ng, call_id, a, ip)["result"] == "ok"
    forks = race(
        (
            first,
            {
                "command": "answer",
                "call-id": call_id,
                "from-tag": "A",
                "to-tag": "B1",
                "sdp": sdp(b.port, ip),
            },
        ),
        (
            second,
            {
                "command": "answer",
                "call-id": call_id,
                "from-tag": "A",
                "to-tag": "B2",
                "sdp": sdp(c.port, ip),
            },
        ),
    )
    assert [reply["result"] for reply in forks] == ["ok", "ok"], forks
    kept.add(call_id)
    tags = first.ng.request({"command": "query", "call-id": call_id})["tags"]
    assert {"A", "B1", "B2"} <= set(tags)

    # Redis and the nodes agree on every call: no call on two nodes, none left behind in Redis
    def calls_in_redis() -> set[str]:
        return {key.split(":", 2)[2] for key in redis.keys("karl:call:*")}

    try:
        wait_for(lambda: calls_in_redis() == kept, timeout=5)
    except AssertionError:
        raise AssertionError(
            f"Redis holds {sorted(calls_in_redis())}, the test kept {sorted(kept)}"
        ) from None
    for node in nodes:
        held = redis.smembers(f"karl:node-calls:{node.node_id}")
        assert node_calls(node) == len(held)
        assert {redis.hget(f"karl:call:{call}", "owner") for call in held} <= {node.node_id}
    assert sum(node_calls(node) for node in nodes) == len(kept)


def test_the_router_enforces_the_proxies_allow_list(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]],
    fleet_router: Callable[..., FleetRouter],
    redis_server: RedisServer,
) -> None:
    lab, nodes, _ = fleet(1)
    guarded = fleet_router(redis_server, cluster_id=lab.cluster_id, KARL_NG_ALLOW="127.0.0.1/32")
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind((lab.bridge_ip, 0))  # another source address of this host
    stranger.settimeout(0.5)
    try:
        stranger.sendto(b"s1 " + bencode.encode({"command": "ping"}), guarded.ng.address)
        with pytest.raises(TimeoutError):
            stranger.recv(65535)  # dropped without a reply, as a node drops it
    finally:
        stranger.close()
    assert guarded.ng.request({"command": "ping"}) == {"result": "pong"}  # 127.0.0.1 is allowed
    assert node_calls(nodes[0]) == 0


def test_a_node_killed_mid_call_comes_back_with_its_calls_from_redis(
    fleet: Callable[..., tuple[NetnsLab, list[FleetNode], FleetRouter]], redis_server: RedisServer
) -> None:
    """SIGKILL between an offer and its answer, and during an established call: the node started again
    with its id takes both back from Redis, on the same ports, each at a new epoch (anything the earlier
    run might still write is fenced), and both go on."""
    lab, [node], router = fleet(1)
    parties = lab.count - 1
    ip = lab.ns_ip(parties)
    redis = redis_server.client()
    a, b, c, d = (lab.party(parties) for _ in range(4))
    offered = offer(router.ng, "talking@test", a, ip)
    answered = answer(router.ng, "talking@test", b, ip)
    half = offer(router.ng, "half@test", c, ip)  # its answer comes after the crash
    with Stream(a, media_address(answered), b, media_address(offered)).running() as stream:
        stream.flowing(20)
    owners = {call: redis.hgetall(f"karl:call:{call}") for call in ("talking@test", "half@test")}
    node.kill()  # no shutdown: nothing is written or removed on the way out
    wait_for(lambda: router.ng.request({"command": "ping"}, timeout=0.5)["result"] != "pong", timeout=10)
    restarted = restart_node(node)
    wait_for(lambda: router.ng.request({"command": "ping"}, timeout=0.5)["result"] == "pong", timeout=10)
    # the same owner at a newer epoch: only this node id may rebind its ports, and nothing moved
    for call, before in owners.items():
        after = redis.hgetall(f"karl:call:{call}")
        assert after["owner"] == before["owner"] and int(after["epoch"]) > int(before["epoch"])
    assert node_calls(restarted) == 2
    # the established call relays again on the ports the parties were given
    with Stream(a, media_address(answered), b, media_address(offered)).running() as again:
        again.flowing(20)
    assert again.received == again.sent
    # the half-set-up call is answered, on the port its offer gave
    finished = answer(router.ng, "half@test", d, ip)
    assert finished["result"] == "ok" and media_address(
        offer(router.ng, "half@test", c, ip)
    ) == media_address(half)
    for call in owners:
        assert router.ng.request({"command": "delete", "call-id": call, "delete-delay": 0})["result"] == "ok"
    wait_for(lambda: not redis.keys("karl:call*"), timeout=5)
