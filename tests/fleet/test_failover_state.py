"""Failover's Redis layer (`karl_core.state.failover_state`) against a real `redis-server`: leadership
with terms, moves fenced by the term and by the dead owner, calls no survivor can take, peers'
reports judged by Redis's clock, and the adoption lists the survivors read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis

from fleet.fleet_kit import RedisServer
from karl_core.state.call_store import OwnerToken, SaveResult
from karl_core.state.failover_state import FailoverState, MoveResult
from karl_core.state.fleet_state import FleetState, StateWriter
from karl_core.state.lease import NodeLease
from karl_core.state.redis_connection import RedisSettings, connect
from karl_core.state.redis_keys import KeySchema
from karl_core.state.resp import lean_client
from karl_testkit import make_lease, run_async

pytestmark = pytest.mark.timeout(60)

KEYS = KeySchema("t")


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client(timeout=2.0)
    yield client
    client.close()


def new_state(server: RedisServer) -> FleetState:
    settings = RedisSettings(addr=server.addr)
    return FleetState(connect(settings), KEYS, lean=lean_client(settings))


async def close(*states: FleetState) -> None:
    for state in states:
        await state.client.aclose()
        if state.lean is not None:
            state.lean.close()


async def place(state: FleetState, call_id: str, node_id: str, version: int = 1) -> OwnerToken:
    """A call `node_id` created and saved (its first write places it)."""
    writer = StateWriter(state)
    writer.start()
    try:
        document = json.dumps({"call_id": call_id, "version": version})
        result, token = await writer.save(call_id, version, OwnerToken(node_id, 0), node_id, document)
    finally:
        await writer.stop()
    assert result is SaveResult.SAVED and token is not None
    return token


def test_one_controller_leads_at_a_time_and_a_new_leader_gets_a_new_term(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario() -> None:
        first, second = new_state(redis_server), new_state(redis_server)
        try:
            a, b = FailoverState(first), FailoverState(second)
            led = await a.lead("c1", ttl=0.5)
            assert led.leads and led.term == 1
            other = await b.lead("c2", ttl=0.5)
            assert not other.leads and other.leader == "c1" and other.term == 1
            assert (await a.lead("c1", ttl=0.5)).term == 1  # renewing keeps the term
            raw.delete(KEYS.leader)  # c1's lead ran out (paused past its TTL)
            taken = await b.lead("c2", ttl=0.5)
            assert taken.leads and taken.term == 2
            assert not (await a.lead("c1", ttl=0.5)).leads
        finally:
            await close(first, second)

    run_async(scenario())


def test_a_move_needs_the_current_term_and_the_dead_owner_and_bumps_the_epoch(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario() -> None:
        state = new_state(redis_server)
        try:
            failover = FailoverState(state)
            held = await place(state, "c1", "dead")
            await place(state, "c2", "alive")
            term = (await failover.lead("ctl", ttl=5)).term
            [stale] = await failover.adopt("ctl", term + 1, "dead", [("c1", "n2")])
            assert stale.result is MoveResult.DEPOSED
            assert raw.hget(KEYS.call("c1"), "owner") == "dead"
            [wrong_owner] = await failover.adopt("ctl", term, "dead", [("c2", "n2")])
            assert wrong_owner.result is MoveResult.MOVED and wrong_owner.token == OwnerToken("alive", 2)
            [moved] = await failover.adopt("ctl", term, "dead", [("c1", "n2")])
            assert moved.result is MoveResult.ADOPTED and moved.token is not None
            assert moved.token.owner == "n2" and moved.token.epoch > held.epoch
            assert raw.hgetall(KEYS.call("c1")) == {
                "owner": "n2",
                "epoch": str(moved.token.epoch),
                "moved_from": "dead",
            }
            assert await failover.moved_from(["c1", "c2"]) == {"c1": "dead"}
            assert raw.hget(KEYS.call_state("c1"), "owner") == "n2"
            assert raw.smembers(KEYS.node_calls("dead")) == set()
            assert raw.smembers(KEYS.node_calls("n2")) == {"c1"}
            assert await failover.take_adoptions("n2") == ["c1"]
            assert await failover.take_adoptions("n2") == []
            # the dead node, come back, is fenced on its first write
            writer = StateWriter(state)
            writer.start()
            try:
                result, holder = await writer.save("c1", 2, held, "dead", json.dumps({"v": 2}))
            finally:
                await writer.stop()
            assert result is SaveResult.FENCED and holder == moved.token
            [again] = await failover.adopt("ctl", term, "dead", [("c1", "n3")])
            assert again.result is MoveResult.MOVED  # moved once only
        finally:
            await close(state)

    run_async(scenario())


def test_two_controllers_racing_over_one_dead_node_move_each_call_once(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario() -> None:
        first, second = new_state(redis_server), new_state(redis_server)
        try:
            calls = [f"c{i}" for i in range(50)]
            for call_id in calls:
                await place(first, call_id, "dead")
            a, b = FailoverState(first), FailoverState(second)
            led = await a.lead("c1", ttl=5)
            # c2 believes it leads with the term before (it was deposed while paused)
            moves_a, moves_b = await asyncio.gather(
                a.adopt("c1", led.term, "dead", [(c, "n1") for c in calls]),
                b.adopt("c2", led.term - 1 if led.term > 1 else 0, "dead", [(c, "n2") for c in calls]),
            )
            assert all(m.result is MoveResult.ADOPTED for m in moves_a)
            assert all(m.result is MoveResult.DEPOSED for m in moves_b)
            assert {raw.hget(KEYS.call(c), "owner") for c in calls} == {"n1"}
            epochs = [int(raw.hget(KEYS.call(c), "epoch")) for c in calls]
            assert len(set(epochs)) == len(calls)  # never one epoch twice
        finally:
            await close(first, second)

    run_async(scenario())


def test_a_call_no_node_can_take_ends_with_its_state_and_a_node_without_calls_retires(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario() -> None:
        state = new_state(redis_server)
        try:
            failover = FailoverState(state)
            await place(state, "c1", "dead")
            raw.sadd(KEYS.members, "dead", "n2")
            raw.hset(KEYS.suspects("dead"), "n2", "1")
            term = (await failover.lead("ctl", ttl=5)).term
            assert not await failover.retire("dead")  # it still has a call
            [ended] = await failover.abandon("ctl", term, "dead", ["c1"], "no_room")
            assert ended.result is MoveResult.ENDED and json.loads(ended.state or "")["call_id"] == "c1"
            assert not raw.exists(KEYS.call("c1"), KEYS.call_state("c1"))
            assert raw.get(KEYS.ended("c1"))  # the dead node, back, will not revive it
            raw.set(KEYS.node("dead"), "{}")
            assert not await failover.retire("dead")  # it has a lease again: it is back
            raw.delete(KEYS.node("dead"))
            assert await failover.retire("dead")
            assert raw.smembers(KEYS.members) == {"n2"} and not raw.exists(KEYS.suspects("dead"))
        finally:
            await close(state)

    run_async(scenario())


def test_peers_reports_count_while_fresh_and_a_reachable_report_withdraws_one(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario() -> None:
        state = new_state(redis_server)
        try:
            failover = FailoverState(state)
            await failover.report("n1", {"n3": False, "n2": True})
            await failover.report("n2", {"n3": False})
            assert await failover.suspicions(["n3", "n2"], fresh=2.0) == {"n3": {"n1", "n2"}, "n2": set()}
            await failover.report("n2", {"n3": True})
            assert await failover.suspicions(["n3"], fresh=2.0) == {"n3": {"n1"}}
            # a report older than the freshness (Redis's clock) no longer counts
            seconds, micros = raw.time()
            raw.hset(KEYS.suspects("n3"), "n1", seconds * 1000 + micros // 1000 - 5000)
            assert await failover.suspicions(["n3"], fresh=2.0) == {"n3": set()}
            assert 0 < raw.pttl(KEYS.suspects("n3")) <= 5000
        finally:
            await close(state)

    run_async(scenario())


def test_replicate_without_replicas_waits_for_nothing(redis_server: RedisServer) -> None:
    async def scenario() -> int:
        state = new_state(redis_server)
        try:
            return await FailoverState(state).replicate(1.0)
        finally:
            await close(state)

    assert run_async(scenario()) == 0


def test_a_call_that_ended_elsewhere_is_never_brought_back_but_one_redis_lost_is(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """A node cut off while its call moved and ended on another node must not re-create it when it comes
    back (nor write a second CDR): the removal left a tombstone with the epoch the call ended at. A call
    that Redis lost (restarted empty, or a promoted replica without the last writes) is written again."""

    async def scenario() -> None:
        state = new_state(redis_server)
        writer = StateWriter(state)
        writer.start()
        try:
            old = await place(state, "c1", "n1")
            failover = FailoverState(state)
            term = (await failover.lead("ctl", ttl=5)).term
            [moved] = await failover.adopt("ctl", term, "n1", [("c1", "n2")])
            assert moved.token is not None
            result, _ = await writer.remove("c1", moved.token, "n2")  # it ended on its new node
            assert result is SaveResult.SAVED
            assert int(raw.get(KEYS.ended("c1"))) == moved.token.epoch
            assert 0 < raw.pttl(KEYS.ended("c1")) <= 3600 * 1000
            # n1 comes back and writes it again: gone for good, and its end is not recorded twice
            result, holder = await writer.save("c1", 5, old, "n1", json.dumps({"v": 5}))
            assert (result, holder) == (SaveResult.FENCED, None)
            assert not raw.exists(KEYS.call("c1")) and "c1" not in raw.smembers(KEYS.node_calls("n1"))
            result, holder = await writer.remove("c1", old, "n1")
            assert (result, holder) == (SaveResult.FENCED, None)
            # a call Redis lost without a trace (no tombstone) comes back with its epoch
            kept = await place(state, "c2", "n1")
            raw.delete(KEYS.call("c2"), KEYS.call_state("c2"))
            result, holder = await writer.save("c2", 6, kept, "n1", json.dumps({"v": 6}))
            assert result is SaveResult.SAVED and holder == kept
            assert raw.hget(KEYS.call("c2"), "owner") == "n1"
            # the same call-id used again for a new call: placed afresh despite the tombstone
            fresh_result, fresh = await writer.save("c1", 1, OwnerToken("n3", 0), "n3", json.dumps({"v": 1}))
            assert fresh_result is SaveResult.SAVED and fresh is not None and fresh.owner == "n3"
        finally:
            await writer.stop()
            await close(state)

    run_async(scenario())


def test_a_controller_resigns_only_its_own_lead(redis_server: RedisServer, raw: redis.Redis) -> None:
    async def scenario() -> None:
        state = new_state(redis_server)
        try:
            failover = FailoverState(state)
            assert (await failover.lead("c1", ttl=5)).leads
            assert not await failover.resign("c")  # a prefix of the leader's name is not the leader
            assert not await failover.resign("c2")
            assert await failover.leader() == "c1"
            assert await failover.resign("c1")
            assert await failover.leader() is None
            assert (await failover.lead("c2", ttl=5)).term == 2
        finally:
            await close(state)

    run_async(scenario())


def test_a_restarted_node_and_the_controller_racing_for_its_calls_never_both_win(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """The node re-claims its calls (RECLAIM) while the controller moves them (ADOPT), all at once: each
    call ends up with exactly one of them, at an epoch nobody else got."""

    async def scenario() -> None:
        node_state, controller_state = new_state(redis_server), new_state(redis_server)
        try:
            calls = [f"c{i}" for i in range(60)]
            before = {c: (await place(node_state, c, "n1")).epoch for c in calls}
            failover = FailoverState(controller_state)
            term = (await failover.lead("ctl", ttl=5)).term
            back = NodeLease(
                "n1",
                "boot-2",
                "10.0.0.1:2223",
                "10.0.0.1:80",
                "10.0.0.1",
                20000,
                20999,
                0,
                0,
                True,
                False,
                "t",
            )

            async def restart() -> dict[str, OwnerToken | None]:
                await node_state.renew_lease(back, 3.0)  # as a node starts: its lease, then its calls
                return await node_state.reclaim("n1", calls)

            reclaimed, moved = await asyncio.gather(
                restart(), failover.adopt("ctl", term, "n1", [(c, "n2") for c in calls])
            )
            for move in moved:
                token = reclaimed[move.call_id]
                assert (token is None) == (move.result is MoveResult.ADOPTED), (move, token)
                holder = raw.hgetall(KEYS.call(move.call_id))
                winner = move.token if move.result is MoveResult.ADOPTED else token
                assert winner is not None
                assert (holder["owner"], int(holder["epoch"])) == (winner.owner, winner.epoch)
                assert winner.epoch > before[move.call_id]
            epochs = [int(raw.hget(KEYS.call(c), "epoch")) for c in calls]
            assert len(set(epochs)) == len(calls)
            assert raw.smembers(KEYS.node_calls("n2")) == {
                m.call_id for m in moved if m.token and m.token.owner == "n2"
            }
        finally:
            await close(node_state, controller_state)

    run_async(scenario())


def test_an_ended_calls_record_goes_onto_the_endings_list_in_the_same_step_and_one_node_takes_it(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """ABANDON and the record of the call's end are one step: nothing between them can lose the record;
    two nodes taking endings at once each get a different share, every record once."""

    async def scenario() -> None:
        state, other = new_state(redis_server), new_state(redis_server)
        try:
            failover = FailoverState(state)
            calls = [f"c{index}" for index in range(40)]
            for call_id in calls:
                await place(state, call_id, "dead")
            term = (await failover.lead("ctl", ttl=5)).term
            moves = await failover.abandon("ctl", term, "dead", calls, "no_room")
            assert all(m.result is MoveResult.ENDED for m in moves)
            assert raw.llen(KEYS.endings) == len(calls)
            # a repeat (the controller retrying after an error) ends nothing twice
            again = await failover.abandon("ctl", term, "dead", calls, "no_room")
            assert all(m.result is MoveResult.MOVED for m in again) and raw.llen(KEYS.endings) == len(calls)
            first, second = await asyncio.gather(
                failover.take_endings(15), FailoverState(other).take_endings(15)
            )
            rest = await failover.take_endings(100)
            taken = [e["call_id"] for e in first + second + rest]
            assert sorted(taken) == sorted(calls)  # each once
            ending = first[0]
            assert ending["node"] == "dead" and ending["reason"] == "no_room"
            assert json.loads(ending["state"])["call_id"] == ending["call_id"]
            assert await failover.take_endings() == []
        finally:
            await close(state, other)

    run_async(scenario())


def test_two_nodes_failing_in_one_tick_do_not_overfill_a_survivor_nor_do_failures_a_tick_later(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """Room is shared by every failover of a tick, and the calls moved to a node count against its room
    until its lease shows them."""
    from karl_operator.failover.controller import FailoverController

    async def scenario() -> None:
        state = new_state(redis_server)
        try:
            failover = FailoverState(state)
            survivors = {"n1": make_lease("n1", capacity=3), "n2": make_lease("n2", capacity=2)}
            survivors["n3"] = make_lease("n3", capacity=1, load=1)  # full
            for lease in survivors.values():
                await state.renew_lease(lease, ttl=30)
            raw.sadd(KEYS.members, "dead-a", "dead-b", "dead-c")
            for dead in ("dead-a", "dead-b"):
                for index in range(4):
                    await place(state, f"{dead}-{index}", dead)
            for reporter in survivors:
                await failover.report(reporter, {"dead-a": False, "dead-b": False})
            controller = FailoverController(state, "ctl", restart_grace=0.0)
            assert sorted(await controller.tick()) == ["dead-a", "dead-b"]
            moved = [f"{dead}-{index}" for dead in ("dead-a", "dead-b") for index in range(4)]
            owners = [raw.hget(KEYS.call(call_id), "owner") for call_id in moved]
            assert owners.count("n1") == 3 and owners.count("n2") == 2 and "n3" not in owners
            assert owners.count(None) == 3 and raw.llen(KEYS.endings) == 3
            assert controller.counters.calls_ended == 3
            # a third node fails before the survivors renewed their leases (still load 0): no room
            for index in range(2):
                await place(state, f"dead-c-{index}", "dead-c")
            for reporter in survivors:
                await failover.report(reporter, {"dead-c": False})
            assert await controller.tick() == ["dead-c"]
            assert [raw.hget(KEYS.call(f"dead-c-{i}"), "owner") for i in range(2)] == [None, None]
            assert controller.counters.calls_ended == 5
            # once the leases show the calls they took up, the lease alone says what room is left

            async def room() -> dict[str, int | None]:
                members, live = await state.nodes()
                by_id = {lease.node_id: lease for lease in live}
                return controller.room({n: by_id.get(n) for n in members})

            await state.renew_lease(make_lease("n1", capacity=3, load=3), ttl=30)
            await state.renew_lease(make_lease("n2", capacity=2, load=2), ttl=30)
            assert await room() == {} and not controller.committed  # all full: none takes calls
            await state.renew_lease(make_lease("n1", capacity=3, load=1), ttl=30)  # two of them ended
            assert await room() == {"n1": 2}
        finally:
            await close(state)

    run_async(scenario())
