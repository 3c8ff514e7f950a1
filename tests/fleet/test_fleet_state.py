"""The fleet's Redis layer (`karl_core.state`) against a real `redis-server`: placement by a node's first
write with one winner and epochs that are never handed out twice, releases only by the exact holder, the
ordered writer's verdicts (saved, stale, fenced) and its ordering and batching, leases and membership,
and what every operation does when Redis hangs, drops off the network or comes back empty.

Each test gets a fresh, empty Redis (`redis_server`); the scenarios run on an event loop of their own
(`run_async`) with their client created and closed inside it. `raw` is a plain synchronous client that
looks at the keys directly.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import redis

from fleet.fleet_kit import RedisServer, require_root_tools
from karl_core.config.sections import DatabaseSection
from karl_core.state.call_store import OwnerToken, SaveResult, StoredCall
from karl_core.state.fleet_state import (
    CALL_TTL,
    LATENCY_BUCKETS,
    FleetState,
    RedisStats,
    StateUnavailable,
    StateWriter,
)
from karl_core.state.lease import (
    LEASE_SCHEMA,
    LeaseClock,
    LeaseFormatError,
    NodeLease,
    default_margin,
)
from karl_core.state.redis_connection import COMMAND_TIMEOUT, RedisSettings, connect
from karl_core.state.redis_keys import KeySchema
from karl_core.state.resp import lean_client
from karl_testkit import make_lease, run_async, until

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
KEYS = KeySchema("t")
Write = asyncio.Future[tuple[SaveResult, OwnerToken | None]]
# an operation against a Redis that does not answer must give up within this (command timeout 0.3 s)
GIVES_UP_WITHIN = 1.0


# ----------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client(timeout=2.0)
    yield client
    client.close()


LEAN = {"on": True}
"""Whether `in_fleet` gives its FleetState the lean connection (the nodes' and routers' hot path) or
leaves every command to redis.asyncio (TLS and Sentinel): every test runs both ways."""


@pytest.fixture(autouse=True, params=["lean", "redis-asyncio"])
def connection_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    LEAN["on"] = request.param == "lean"
    yield request.param
    LEAN["on"] = True


def fleet_state(addr: str, keys: KeySchema = KEYS) -> FleetState:
    settings = RedisSettings(addr=addr)
    return FleetState(connect(settings), keys, lean=lean_client(settings) if LEAN["on"] else None)


def in_fleet(
    server: RedisServer,
    scenario: Callable[[FleetState], Awaitable[T]],
    timeout: float = 15.0,
) -> T:
    """Run `scenario` with a FleetState on a client of its own (closed after, whatever happens)."""

    async def main() -> T:
        state = fleet_state(server.addr)
        try:
            return await scenario(state)
        finally:
            await state.client.aclose()
            if state.lean is not None:
                state.lean.close()

    return run_async(main(), timeout)


@asynccontextmanager
async def running(state: FleetState, batch: int = 256) -> AsyncIterator[StateWriter]:
    writer = StateWriter(state, batch)
    writer.start()
    try:
        yield writer
    finally:
        await writer.stop()


async def settled(write: Write, timeout: float = 3.0) -> tuple[SaveResult, OwnerToken | None]:
    return await asyncio.wait_for(write, timeout)


def doc(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


lease = make_lease


async def first_write(
    state: FleetState, call_id: str, node: str, version: int = 1
) -> tuple[SaveResult, OwnerToken | None]:
    """A node's first save of a call it created on an offer (epoch 0): how a new call is placed."""
    async with running(state) as writer:
        return await settled(writer.save(call_id, version, OwnerToken(node, 0), node, doc(v=version)))


async def hold(state: FleetState, call_id: str, node: str) -> OwnerToken:
    """Call `call_id` held by `node` at the next fleet epoch, as the product creates it: the node's first
    save (version 1, state `{"v": 1}`) places it. Returns the token Redis gave it."""
    result, token = await first_write(state, call_id, node)
    assert result is SaveResult.SAVED and token is not None and token.owner == node, (result, token)
    return token


def place_without_state(raw: redis.Redis, call_id: str, node: str, keys: KeySchema = KEYS) -> OwnerToken:
    """A placement whose offer never saved state: ownership at the next fleet epoch and the node's index
    entry, but no call state."""
    epoch = int(raw.incr(keys.epoch))
    raw.hset(keys.call(call_id), mapping={"owner": node, "epoch": epoch})
    raw.sadd(keys.node_calls(node), call_id)
    return OwnerToken(node, epoch)


# --------------------------------------------------------------------------------------------- placement


def test_concurrent_first_writes_from_many_nodes_have_exactly_one_winner(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """Offers for one call reach many nodes at once (router replicas, retransmissions): each node's first
    write (epoch 0) races to place it. One wins; every other comes back FENCED with the winner."""

    async def scenario(_: FleetState) -> None:
        states = [fleet_state(redis_server.addr) for _ in range(20)]
        try:
            await asyncio.gather(*(state.ping() for state in states))  # connected: the writes race
            results = await asyncio.gather(
                *(first_write(state, "race", f"n{index}") for index, state in enumerate(states))
            )
            winners = [token for result, token in results if result is SaveResult.SAVED]
            assert len(winners) == 1, results
            holder = winners[0]
            assert holder is not None and holder.epoch == 1
            assert sorted(result.name for result, _ in results) == ["FENCED"] * 19 + ["SAVED"]
            assert {token for _, token in results} == {holder}
            assert raw.get(KEYS.epoch) == "1", "a refused first write must not use up an epoch"
            assert await states[0].owner_of("race") == holder
            assert await states[0].owner_of("never-placed") is None
            assert await states[0].load(["race"]) == [StoredCall("race", 1, holder, {"v": 1})]
            for key in (KEYS.call("race"), KEYS.call_state("race")):
                assert 0 < raw.pttl(key) <= CALL_TTL * 1000
            for index in range(20):
                expected = ["race"] if f"n{index}" == holder.owner else []
                assert await states[0].calls_of(f"n{index}") == expected
        finally:
            await asyncio.gather(*(state.client.aclose() for state in states))
            for state in states:
                if state.lean is not None:
                    state.lean.close()

    in_fleet(redis_server, scenario)


def test_epochs_are_never_handed_out_twice(redis_server: RedisServer) -> None:
    async def scenario(state: FleetState) -> None:
        tokens = await asyncio.gather(*(hold(state, f"c{i}", f"n{i % 3}") for i in range(30)))
        epochs = [token.epoch for token in tokens]
        assert sorted(epochs) == list(range(1, 31))
        # the same call-id placed again after its removal, and a call its node took back after a
        # restart (RECLAIM): new epochs each time
        async with running(state) as writer:
            assert (await settled(writer.remove("c0", tokens[0], "n0")))[0] is SaveResult.SAVED
        again = await hold(state, "c0", "n0")
        taken_back = (await state.reclaim("n1", ["c1"]))["c1"]
        assert taken_back is not None and taken_back.owner == "n1"
        later = [again.epoch, taken_back.epoch]
        assert not set(later) & set(epochs) and len(set(later)) == 2 and min(later) > max(epochs)

    in_fleet(redis_server, scenario)


# ----------------------------------------------------------------------------------------------- release


def test_release_only_by_the_holder_and_only_without_state(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        held = place_without_state(raw, "c1", "n1")
        assert not await state.release("c1", OwnerToken("n2", held.epoch))
        assert not await state.release("c1", OwnerToken("n1", held.epoch + 1))
        assert await state.owner_of("c1") == held and await state.calls_of("n1") == ["c1"]
        assert await state.release("c1", held)
        assert await state.owner_of("c1") is None and await state.calls_of("n1") == []
        assert not await state.release("c1", held)  # nothing left to release

        saved = await hold(state, "c2", "n1")
        assert not await state.release("c2", saved)
        assert await state.owner_of("c2") == saved and await state.calls_of("n1") == ["c2"]
        assert raw.exists(KEYS.call_state("c2")) == 1

    in_fleet(redis_server, scenario)


# ------------------------------------------------------------------------------------------------- touch


def test_touch_renews_the_holders_keys_and_reports_absent_and_fenced_calls(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        token = await hold(state, "c1", "n1")
        raw.pexpire(KEYS.call("c1"), 5000)
        raw.pexpire(KEYS.call_state("c1"), 5000)
        before = state.stats.requests
        foreign = OwnerToken("n2", token.epoch)
        assert await state.touch([("c1", foreign), ("gone", token), ("c1", token)]) == [-1, 0, 1]
        assert state.stats.requests == before + 1  # one pipeline
        for key in (KEYS.call("c1"), KEYS.call_state("c1")):
            assert raw.pttl(key) > 5000
        assert raw.exists(KEYS.call("gone")) == 0
        assert await state.touch([]) == [] and state.stats.requests == before + 1

    in_fleet(redis_server, scenario)


# ------------------------------------------------------------------------------------------------ writer


def test_save_verdicts_saved_stale_and_fenced_with_the_holder(redis_server: RedisServer) -> None:
    async def scenario(state: FleetState) -> None:
        first = await hold(state, "c1", "n1")  # version 1 saved
        async with running(state) as writer:
            assert await settled(writer.save("c1", 1, first, "n1", doc(v=9))) == (SaveResult.STALE, first)
            assert await settled(writer.save("c1", 0, first, "n1", doc(v=0))) == (SaveResult.STALE, first)
            assert await settled(writer.save("c1", 3, first, "n1", doc(v=3))) == (SaveResult.SAVED, first)
            other = OwnerToken("n2", first.epoch)
            assert await settled(writer.save("c1", 4, other, "n2", doc(v=4))) == (SaveResult.FENCED, first)
            [stored] = await state.load(["c1"])
            assert stored == StoredCall("c1", 3, first, {"v": 3})
            assert await state.calls_of("n2") == []

            # the same owner with an older epoch: n1 restarted and took the call back meanwhile (RECLAIM)
            old = await hold(state, "c2", "n1")
            back = (await state.reclaim("n1", ["c2"]))["c2"]
            assert back is not None and back.owner == "n1" and back.epoch > old.epoch
            assert await settled(writer.save("c2", 5, old, "n1", doc(v=5))) == (SaveResult.FENCED, back)
            other = OwnerToken("n2", back.epoch)
            assert await settled(writer.save("c2", 5, other, "n2", doc(v=5))) == (SaveResult.FENCED, back)
            assert await state.load(["c2"]) == [StoredCall("c2", 1, back, {"v": 1})]
            assert await settled(writer.save("c2", 2, back, "n1", doc(v=2))) == (SaveResult.SAVED, back)
            [stored] = await state.load(["c2"])
            assert stored == StoredCall("c2", 2, back, {"v": 2})

    in_fleet(redis_server, scenario)


def test_a_first_write_without_an_epoch_places_the_call_or_adopts_its_placement(
    redis_server: RedisServer,
) -> None:
    """A node saves a call it created on an offer with epoch 0: the write itself places the call, or
    adopts the placement of the node's own earlier write (still at epoch 0 when it was sent), and says
    which epoch the node holds it at; a call another node holds is refused. Removal and touch with
    epoch 0 match on the owner alone."""

    async def scenario(state: FleetState) -> None:
        placed = await hold(state, "earlier", "n1")  # n1's earlier write placed it
        foreign = await hold(state, "foreign", "n2")
        async with running(state) as writer:
            result, fresh = await settled(writer.save("fresh", 1, OwnerToken("n1", 0), "n1", doc(v=1)))
            assert result is SaveResult.SAVED and fresh is not None and fresh.owner == "n1"
            assert fresh.epoch > foreign.epoch  # a new epoch of the fleet's counter
            assert await settled(writer.save("earlier", 2, OwnerToken("n1", 0), "n1", doc(v=2))) == (
                SaveResult.SAVED,
                placed,
            )
            assert await settled(writer.save("foreign", 1, OwnerToken("n1", 0), "n1", doc(v=1))) == (
                SaveResult.FENCED,
                foreign,
            )
            assert await state.touch([("fresh", OwnerToken("n1", 0)), ("foreign", OwnerToken("n1", 0))]) == [
                1,
                -1,
            ]
            assert await settled(writer.remove("fresh", OwnerToken("n1", 0), "n1")) == (
                SaveResult.SAVED,
                OwnerToken("n1", 0),
            )
            assert (await settled(writer.remove("foreign", OwnerToken("n1", 0), "n1")))[
                0
            ] is SaveResult.FENCED
        assert await state.owner_of("fresh") is None
        assert await state.owner_of("foreign") == foreign
        assert await state.calls_of("n1") == ["earlier"]

    in_fleet(redis_server, scenario)


def test_save_of_a_call_redis_lost_recreates_it_and_moves_the_epoch_counter_past_it(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        kept = OwnerToken("n1", 41)  # what the node held before Redis came back empty
        async with running(state) as writer:
            assert await settled(writer.save("c1", 7, kept, "n1", doc(v=7))) == (SaveResult.SAVED, kept)
            assert await state.owner_of("c1") == kept
            assert await state.calls_of("n1") == ["c1"]
            assert await state.load(["c1"]) == [StoredCall("c1", 7, kept, {"v": 7})]
            assert raw.get(KEYS.epoch) == "41"
            assert CALL_TTL * 1000 - 5000 < raw.pttl(KEYS.call("c1")) <= CALL_TTL * 1000
            # a lower epoch re-created for another call never moves the counter back
            low = OwnerToken("n2", 5)
            assert await settled(writer.save("c2", 1, low, "n2", doc(v=1))) == (SaveResult.SAVED, low)
            assert raw.get(KEYS.epoch) == "41"
        fresh = await hold(state, "c3", "n3")
        assert fresh.epoch == 42
        # the re-created owner is fenced against others like any placement
        assert await first_write(state, "c1", "n3") == (SaveResult.FENCED, kept)

    in_fleet(redis_server, scenario)


def test_remove_deletes_the_call_and_is_fenced_for_anyone_but_the_holder(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        token = await hold(state, "c1", "n1")
        async with running(state) as writer:
            raw.sadd(KEYS.node_calls("n2"), "c1")  # a stale index entry of the fenced writer
            foreign = OwnerToken("n2", token.epoch)
            assert await settled(writer.remove("c1", foreign, "n2")) == (SaveResult.FENCED, token)
            assert raw.exists(KEYS.call("c1"), KEYS.call_state("c1")) == 2
            assert await state.load(["c1"]) == [StoredCall("c1", 1, token, {"v": 1})]
            assert await state.calls_of("n1") == ["c1"]
            assert await state.calls_of("n2") == []  # only the fenced writer's own index is cleaned

            assert await settled(writer.remove("c1", token, "n1")) == (SaveResult.SAVED, token)
            assert raw.exists(KEYS.call("c1"), KEYS.call_state("c1")) == 0
            assert await state.calls_of("n1") == [] and await state.owner_of("c1") is None
            # removing what is gone already is fine
            assert await settled(writer.remove("c1", token, "n1")) == (SaveResult.SAVED, token)

    in_fleet(redis_server, scenario)


def test_a_fenced_remove_of_an_older_epoch_keeps_the_call_in_its_holders_index(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        old = await hold(state, "c1", "n1")
        held = (await state.reclaim("n1", ["c1"]))["c1"]  # n1 again (restarted), at a newer epoch
        assert held is not None and held.epoch > old.epoch
        async with running(state) as writer:
            assert await settled(writer.remove("c1", old, "n1")) == (SaveResult.FENCED, held)
        assert raw.exists(KEYS.call("c1"), KEYS.call_state("c1")) == 2
        assert await state.owner_of("c1") == held
        assert await state.calls_of("n1") == ["c1"], "the holder's index lost its call"

    in_fleet(redis_server, scenario)


@pytest.mark.parametrize("batch", [256, 1], ids=["one-pipeline", "pipeline-per-write"])
def test_a_save_queued_before_a_remove_never_leaves_the_call_behind(
    redis_server: RedisServer, raw: redis.Redis, batch: int
) -> None:
    async def scenario(state: FleetState) -> None:
        tokens = await asyncio.gather(*(hold(state, f"c{i}", "n1") for i in range(30)))
        async with running(state, batch) as writer:
            writes: list[Write] = []
            for i, token in enumerate(tokens):  # no await between a call's save and its removal
                writes.append(writer.save(f"c{i}", 2, token, "n1", doc(v=2)))
                writes.append(writer.save(f"c{i}", 3, token, "n1", doc(v=3)))
                writes.append(writer.remove(f"c{i}", token, "n1"))
            results = await asyncio.wait_for(asyncio.gather(*writes), 5)
        assert {result for result, _ in results} == {SaveResult.SAVED}
        assert await state.calls_of("n1") == []
        left = sorted(raw.keys("t:*"))
        # every call and state is gone; each left the epoch it ended at (so that it is never revived)
        assert left == sorted([KEYS.epoch] + [KEYS.ended(f"c{i}") for i in range(len(tokens))]), left

    in_fleet(redis_server, scenario)


def test_many_waiting_saves_go_out_in_few_pipelines_and_the_last_version_wins(
    redis_server: RedisServer,
) -> None:
    async def scenario(state: FleetState) -> None:
        token = await hold(state, "c1", "n1")  # version 1 saved
        async with running(state) as writer:
            before = state.stats.requests
            writes = [writer.save("c1", v, token, "n1", doc(v=v)) for v in range(2, 502)]
            assert writer.queued == 500
            results = await asyncio.wait_for(asyncio.gather(*writes), 5)
            round_trips = state.stats.requests - before
            assert writer.queued == 0
        assert [result for result, _ in results] == [SaveResult.SAVED] * 500
        assert 1 <= round_trips <= math.ceil(500 / writer.batch) < 500
        assert await state.load(["c1"]) == [StoredCall("c1", 501, token, {"v": 501})]

    in_fleet(redis_server, scenario)


def test_stopping_the_writer_fails_what_it_could_not_send(redis_server: RedisServer) -> None:
    async def scenario(state: FleetState) -> None:
        writer = StateWriter(state)  # never started: nothing goes out
        pending = writer.save("c1", 1, OwnerToken("n1", 1), "n1", doc(v=1))
        await writer.stop(timeout=0.05)
        with pytest.raises(StateUnavailable, match="stopped"):
            await settled(pending)
        assert writer.queued == 0

    in_fleet(redis_server, scenario)


def test_a_call_id_that_is_not_utf8_does_not_stop_the_writer(redis_server: RedisServer) -> None:
    async def scenario(state: FleetState) -> None:
        raw_bytes_id = b"odd-\xff-call".decode("utf-8", "surrogateescape")
        async with running(state) as writer:
            odd = writer.save(raw_bytes_id, 1, OwnerToken("n1", 1), "n1", doc(v=1))
            await asyncio.wait([odd], timeout=0.5)
            assert odd.done(), "the write of a non-UTF-8 call-id never completed"
            normal = writer.save("c1", 1, OwnerToken("n1", 2), "n1", doc(v=1))
            assert await settled(normal) == (SaveResult.SAVED, OwnerToken("n1", 2))

    in_fleet(redis_server, scenario)


# ------------------------------------------------------------------------------------------------- lease


def test_renew_lease_returns_the_document_it_replaced_and_registers_the_member(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        first = lease(load=1)
        assert await state.renew_lease(first, 3.0) is None
        second = lease(load=2)
        assert await state.renew_lease(second, 3.0) == first.to_json()
        assert await state.renew_lease(second, 3.0) == second.to_json()
        assert 0 < raw.pttl(KEYS.node("n1")) <= 3000
        assert await state.members() == ["n1"]
        assert raw.smembers(KEYS.members) == {"n1"}
        assert await state.nodes() == (["n1"], [second])

    in_fleet(redis_server, scenario)


def test_a_lease_expires_after_its_ttl_but_the_membership_stays(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        short = lease()
        started = time.monotonic()
        assert await state.renew_lease(short, 0.3) is None
        assert 0 < raw.pttl(KEYS.node("n1")) <= 300
        await until(lambda: raw.exists(KEYS.node("n1")) == 0, "the lease expired", timeout=3)
        assert time.monotonic() - started >= 0.25  # not before its TTL
        assert await state.nodes() == (["n1"], [])
        assert await state.renew_lease(short, 0.3) is None  # nothing to replace any more

    in_fleet(redis_server, scenario)


def test_leave_removes_lease_and_membership_unless_a_newer_boot_holds_the_lease(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        newer = lease(boot_id="boot-2")
        await state.renew_lease(newer, 3.0)
        await state.leave("n1", "boot-1")  # the earlier run of the node stops late
        assert await state.nodes() == (["n1"], [newer])
        await state.leave("n1", "boot-2")
        assert await state.nodes() == ([], [])
        assert raw.exists(KEYS.node("n1"), KEYS.members) == 0
        # a node whose lease expired already still leaves the members
        await state.renew_lease(lease("n2"), 0.2)
        await until(lambda: raw.exists(KEYS.node("n2")) == 0, "the lease expired", timeout=3)
        assert await state.members() == ["n2"]
        await state.leave("n2", "boot-1")
        assert await state.members() == []

    in_fleet(redis_server, scenario)


def test_nodes_lists_members_and_only_live_readable_leases(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        assert await state.nodes() == ([], [])
        live_a, live_d = lease("a"), lease("d", load=5)
        await state.renew_lease(live_a, 5.0)
        await state.renew_lease(live_d, 5.0)
        raw.sadd(KEYS.members, "b")  # a member whose lease has expired
        raw.sadd(KEYS.members, "c")
        raw.set(KEYS.node("c"), "{this is not a lease", px=5000)
        members, leases = await state.nodes()
        assert members == ["a", "b", "c", "d"]
        assert leases == [live_a, live_d]
        assert state.unreadable_leases == 1
        await state.nodes()
        assert state.unreadable_leases == 2  # counted at every read

    in_fleet(redis_server, scenario)


def test_a_lease_with_an_out_of_range_number_is_skipped_as_unreadable(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        good = lease("a")
        await state.renew_lease(good, 5.0)
        raw.sadd(KEYS.members, "b")
        raw.set(KEYS.node("b"), lease("b").to_json().replace('"capacity":100', '"capacity":1e999'), px=5000)
        assert await state.nodes() == (["a", "b"], [good])
        assert state.unreadable_leases == 1

    in_fleet(redis_server, scenario)


# ------------------------------------------------------------------------------- lease clock and document


def test_lease_clock_is_valid_only_after_a_confirmation_until_sent_at_plus_ttl_minus_margin() -> None:
    clock = LeaseClock(ttl=3.0, margin=0.5)
    assert clock.valid_until() == float("-inf")
    assert not clock.valid(0.0) and not clock.valid(-1e9)
    clock.confirmed(100.0)
    assert clock.valid_until() == pytest.approx(102.5)
    assert clock.valid(100.0) and clock.valid(102.49)
    assert not clock.valid(102.5) and not clock.valid(103.0)
    clock.confirmed(99.0)  # a late confirmation of an older renewal
    assert clock.valid_until() == pytest.approx(102.5)
    clock.confirmed(100.0)
    assert clock.valid_until() == pytest.approx(102.5)
    clock.confirmed(101.0)
    assert clock.valid_until() == pytest.approx(103.5) and clock.valid(103.0)


def test_default_margin_is_a_sixth_of_the_ttl() -> None:
    assert default_margin(3.0) == pytest.approx(0.5)
    assert default_margin(6.0) == pytest.approx(1.0)
    for ttl in (0.3, 1.0, 3.0, 30.0):
        assert 0 < default_margin(ttl) < ttl


def test_lease_document_round_trips_through_json() -> None:
    original = lease(ng="[2001:db8::1]:2223", capacity=0, load=7, ready=False, draining=True, schema=2)
    assert NodeLease.from_json(original.to_json()) == original
    assert NodeLease.from_json(original.to_json().encode()) == original
    assert original.ng_address == ("2001:db8::1", 2223)
    assert lease().ng_address == ("10.0.0.1", 2223)
    without_schema = json.loads(lease().to_json())
    del without_schema["schema"]
    without_schema["added_later"] = "ignored"
    assert NodeLease.from_json(json.dumps(without_schema)) == lease(schema=LEASE_SCHEMA)


def _lease_with(**changes: Any) -> str:
    document = json.loads(lease().to_json())
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not ...})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        "null",
        "42",
        '"a string"',
        b"\xff\xfe\xfd",
        _lease_with(ng=...),
        _lease_with(boot_id=...),
        _lease_with(ng="no-port"),
        _lease_with(ng="10.0.0.1:"),
        _lease_with(capacity="many"),
        _lease_with(port_min=None),
        _lease_with(load=[1]),
        pytest.param(
            _lease_with(capacity=...).replace("{", '{"capacity":1e999,', 1),
            id="capacity-1e999",
        ),
        pytest.param(
            "[" * 100_000,
            id="deeply-nested",
        ),
    ],
)
def test_an_unreadable_lease_document_raises_lease_format_error(text: str | bytes) -> None:
    with pytest.raises(LeaseFormatError):
        NodeLease.from_json(text)


@pytest.mark.parametrize(
    ("capacity", "load", "ready", "draining", "takes_calls", "free_share"),
    [
        (0, 5000, True, False, True, 1.0),  # no limit of its own
        (0, 0, False, False, False, 1.0),  # no limit, but not ready
        (10, 0, True, False, True, 1.0),
        (10, 3, True, False, True, 0.7),
        (10, 9, True, False, True, 0.1),
        (10, 10, True, False, False, 0.0),  # full
        (10, 12, True, False, False, 0.0),  # over full: never a negative weight
        (10, 3, True, True, False, 0.7),  # draining
        (10, 3, False, False, False, 0.7),  # not ready
    ],
)
def test_takes_calls_and_free_share(
    capacity: int, load: int, ready: bool, draining: bool, takes_calls: bool, free_share: float
) -> None:
    node = lease(capacity=capacity, load=load, ready=ready, draining=draining)
    assert node.takes_calls is takes_calls
    assert node.free_share() == pytest.approx(free_share)


# ------------------------------------------------------------------------------------------------- stats


def test_redis_stats_count_errors_and_latency_buckets() -> None:
    stats = RedisStats()
    assert not stats.reachable(now=0.0, within=10.0)
    stats.record(LATENCY_BUCKETS[0] / 2, None, now=5.0)
    stats.record(LATENCY_BUCKETS[-1] * 2, "TimeoutError", now=6.0)
    assert (stats.requests, stats.errors, stats.last_error, stats.last_ok) == (2, 1, "TimeoutError", 5.0)
    assert stats.latency_counts[0] == 1 and stats.latency_counts[-1] == 1 and sum(stats.latency_counts) == 2
    assert stats.latency_sum == pytest.approx(LATENCY_BUCKETS[0] / 2 + LATENCY_BUCKETS[-1] * 2)
    assert stats.reachable(now=5.5, within=1.0)
    assert not stats.reachable(now=6.5, within=1.0)


# ---------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("outage", ["paused", "traffic-dropped"])
def test_a_redis_that_does_not_answer_costs_a_command_timeout_and_the_writer_recovers(
    redis_server: RedisServer, outage: str
) -> None:
    if outage == "paused":
        start, end = redis_server.pause, redis_server.resume
    else:
        require_root_tools("nft")
        start, end = redis_server.drop_traffic, redis_server.restore_traffic

    async def scenario(state: FleetState) -> None:
        token = await hold(state, "c1", "n1")
        async with running(state) as writer:
            errors = state.stats.errors
            start()
            try:
                for operation in (lambda: state.touch([("c1", token)]), lambda: state.nodes()):
                    began = time.monotonic()
                    with pytest.raises(StateUnavailable, match="Timeout"):
                        await operation()
                    assert time.monotonic() - began < GIVES_UP_WITHIN
                assert state.stats.errors == errors + 2
                assert "Timeout" in state.stats.last_error

                # writes fail, none hangs: one batch in flight, two more queued behind it
                began = time.monotonic()
                in_flight = writer.save("c1", 2, token, "n1", doc(v=2))
                await until(lambda: writer.queued == 0, "the first write is in flight", timeout=1)
                queued = [writer.save("c1", v, token, "n1", doc(v=v)) for v in (3, 4)]
                outcomes = await asyncio.wait_for(
                    asyncio.gather(in_flight, *queued, return_exceptions=True), 3
                )
                assert all(isinstance(outcome, StateUnavailable) for outcome in outcomes), outcomes
                assert time.monotonic() - began < 2 * GIVES_UP_WITHIN
            finally:
                end()
            # the same client and writer work again
            assert await settled(writer.save("c1", 10, token, "n1", doc(v=10))) == (SaveResult.SAVED, token)
            assert await state.load(["c1"]) == [StoredCall("c1", 10, token, {"v": 10})]
            assert state.stats.reachable(time.monotonic(), within=1.0)

    in_fleet(redis_server, scenario)


def test_a_fresh_client_gives_up_on_a_redis_it_cannot_reach(redis_server: RedisServer) -> None:
    require_root_tools("nft")

    async def scenario(state: FleetState) -> None:
        redis_server.drop_traffic()
        try:
            began = time.monotonic()
            with pytest.raises(StateUnavailable):
                await first_write(state, "c1", "n1")  # the connection itself cannot be made
            assert time.monotonic() - began < GIVES_UP_WITHIN
        finally:
            redis_server.restore_traffic()
        assert (await first_write(state, "c1", "n1"))[0] is SaveResult.SAVED

    in_fleet(redis_server, scenario)


def test_after_redis_restarts_empty_the_same_client_works_and_reasserted_calls_keep_their_epoch(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        tokens = [await hold(state, f"c{i}", "n1") for i in range(5)]
        token = tokens[-1]
        assert token.epoch == 5
        async with running(state) as writer:
            redis_server.kill()
            began = time.monotonic()
            with pytest.raises(StateUnavailable):
                await state.owner_of("c4")
            assert time.monotonic() - began < GIVES_UP_WITHIN
            with pytest.raises(StateUnavailable):
                await settled(writer.save("c4", 2, token, "n1", doc(v=2)))

            redis_server.restart()
            assert await state.owner_of("c4") is None  # empty: ownership and counter are gone
            assert raw.dbsize() == 0
            # the node saves its call again: ownership comes back at its epoch, the counter past it
            assert await settled(writer.save("c4", 2, token, "n1", doc(v=2))) == (SaveResult.SAVED, token)
        assert await state.owner_of("c4") == token
        assert await state.calls_of("n1") == ["c4"]
        fresh = await hold(state, "c-new", "n2")
        assert fresh.epoch == token.epoch + 1
        assert await first_write(state, "c4", "n2") == (SaveResult.FENCED, token)

    in_fleet(redis_server, scenario)


def test_the_writer_works_again_after_more_outages_than_the_pool_has_connections(
    redis_server: RedisServer,
) -> None:
    async def scenario(state: FleetState) -> None:
        state.client.connection_pool.max_connections = 2
        token = await hold(state, "c1", "n1")
        version = 0
        async with running(state) as writer:
            for _ in range(3):
                version += 1
                # raises StateUnavailable (MaxConnectionsError) on the third round with the bug
                assert (await settled(writer.save("c1", version, token, "n1", doc(v=version))))[0] in (
                    SaveResult.SAVED,
                    SaveResult.STALE,
                )
                redis_server.pause()
                try:
                    with pytest.raises(StateUnavailable, match="Timeout"):
                        await settled(writer.save("c1", 1000, token, "n1", doc(v=1000)))
                finally:
                    redis_server.resume()
                version = 1000

    in_fleet(redis_server, scenario)


# -------------------------------------------------------------------------------------------------- load


def test_load_returns_the_present_states_and_lists_unreadable_ones(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    async def scenario(state: FleetState) -> None:
        t1 = await hold(state, "c1", "n1")
        t2 = await hold(state, "c2", "n2")
        place_without_state(raw, "placed-only", "n1")
        async with running(state) as writer:
            for write in (
                writer.save("c1", 3, t1, "n1", doc(a=1)),
                writer.save("c2", 2, t2, "n2", doc(b=[1, 2], c={"d": None})),
            ):
                assert (await settled(write))[0] is SaveResult.SAVED
        unreadable = {
            "bad-json": {"version": "1", "owner": "n1", "epoch": "1", "state": "{not json"},
            "not-an-object": {"version": "1", "owner": "n1", "epoch": "1", "state": "[1, 2]"},
            "bad-epoch": {"version": "1", "owner": "n1", "epoch": "one", "state": "{}"},
            "no-epoch": {"version": "1", "owner": "n1", "state": "{}"},
        }
        unreadable["no-state"] = {"version": "1", "owner": "n1", "epoch": "1"}  # absent, not unreadable
        for call_id, fields in unreadable.items():
            for name, value in fields.items():
                raw.hset(KEYS.call_state(call_id), name, value)

        wanted = ["c1", "absent", "placed-only", "bad-json", "c2", "not-an-object", "bad-epoch"]
        loaded = await state.load([*wanted, "no-epoch", "no-state"])
        assert loaded == [
            StoredCall("c1", 3, t1, {"a": 1}),
            StoredCall("c2", 2, t2, {"b": [1, 2], "c": {"d": None}}),
        ]
        assert state.unreadable_states == ["bad-json", "not-an-object", "bad-epoch", "no-epoch"]
        assert raw.exists(*(KEYS.call_state(call_id) for call_id in unreadable)) == 5, "left for a human"
        before = state.stats.requests
        assert await state.load([]) == [] and state.stats.requests == before

    in_fleet(redis_server, scenario)


# -------------------------------------------------------------------------------------- settings, prefixes


@pytest.mark.parametrize(
    ("addr", "shown"),
    [
        ("10.0.0.5:6379", "10.0.0.5:6379"),
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
        ("redis://:s3cret@10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
        ("rediss://karl:s3cret@redis.example:6380", "rediss://redis.example:6380"),
        ("redis://karl:s3cr@t@10.0.0.5:6379", "redis://10.0.0.5:6379"),
        ("unix://:s3cret@/run/redis.sock", "unix:///run/redis.sock"),
        pytest.param(
            "unix:///run/redis.sock?db=0&password=s3cret",
            "unix:///run/redis.sock",  # the whole query goes: it may carry the password
            id="unix-query-password",
        ),
        pytest.param(
            "redis://10.0.0.5:6379/0?password=s3cret",
            "redis://10.0.0.5:6379/0",
            id="redis-query-password",
        ),
    ],
)
def test_describe_never_shows_a_password(addr: str, shown: str) -> None:
    settings = RedisSettings(addr=addr, password="other-s3cret")
    assert "s3cr" not in settings.describe()
    assert settings.describe() == shown


def test_describe_of_sentinels_and_from_config() -> None:
    section = DatabaseSection(
        redis_enabled=True,
        redis_sentinels=" 10.0.0.1:26379, [2001:db8::2]:26380 ,",
        redis_sentinel_master="mymaster",
        redis_password="s3cret",
        redis_prefix="fleet-a",
        redis_lease_ttl=2,
    )
    settings = RedisSettings.from_config(section)
    assert settings.sentinels == (("10.0.0.1", 26379), ("2001:db8::2", 26380))
    assert (settings.sentinel_master, settings.prefix, settings.lease_ttl) == ("mymaster", "fleet-a", 2.0)
    assert settings.password == "s3cret" and settings.command_timeout == COMMAND_TIMEOUT
    assert settings.describe().startswith("sentinel mymaster@10.0.0.1:26379,")
    assert "s3cret" not in settings.describe()
    plain = RedisSettings.from_config(DatabaseSection(redis_enabled=True, redis_addr="10.0.0.5:6379"))
    assert (plain.addr, plain.sentinels, plain.password) == ("10.0.0.5:6379", (), "")


def test_connect_takes_an_address_or_a_url(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        for addr in (redis_server.addr, redis_server.url):
            client = connect(RedisSettings(addr=addr))
            try:
                state = FleetState(client, KEYS)
                await state.ping()
                assert state.stats.requests == 1 and state.stats.errors == 0
            finally:
                await client.aclose()

    run_async(scenario(), 10)


def test_two_prefixes_in_one_redis_do_not_see_each_other(redis_server: RedisServer) -> None:
    async def scenario(a: FleetState) -> None:
        b = FleetState(a.client, KeySchema("other"), lean=a.lean)
        held_a = await hold(a, "c1", "n1")
        held_b = await hold(b, "c1", "n1")  # each fleet places the call-id for itself
        assert held_a == held_b == OwnerToken("n1", 1)  # and counts its own epochs
        await a.renew_lease(lease("n1"), 5.0)
        assert await a.nodes() == (["n1"], [lease("n1")])
        assert await b.nodes() == ([], [])
        async with running(a) as writer_a, running(b) as writer_b:
            assert (await settled(writer_a.save("c1", 2, held_a, "n1", doc(f="a"))))[0] is SaveResult.SAVED
            assert await b.load(["c1"]) == [StoredCall("c1", 1, held_b, {"v": 1})]  # its own, not a's
            assert await settled(writer_b.remove("c1", held_b, "n1")) == (SaveResult.SAVED, held_b)
        assert await b.owner_of("c1") is None and await b.calls_of("n1") == []
        assert await a.owner_of("c1") == held_a and await a.calls_of("n1") == ["c1"]
        assert await a.load(["c1"]) == [StoredCall("c1", 2, held_a, {"f": "a"})]
        await b.leave("n1", "boot-1")
        assert await a.members() == ["n1"]

    in_fleet(redis_server, scenario)
