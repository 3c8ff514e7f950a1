"""The fleet's shared state in Redis, as the nodes and routers use it: leases, call ownership and call
state (key names in `redis_keys`, atomic steps in `redis_scripts`).

`FleetState` is a thin async layer: each method is one round trip (a script or a pipeline), bounded by
the client's command timeout, and timed into `RedisStats`. `StateWriter` orders a node's writes: every
save and removal goes through one queue and one connection, in the order the calls changed, batched
into a pipeline when several are waiting — so a late write can never overtake a newer one or bring
back a call that was removed, and a busy node makes one round trip for many changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from karl_core.state import redis_scripts
from karl_core.state.call_store import OwnerToken, SaveResult, StoredCall
from karl_core.state.lease import LeaseFormatError, NodeLease
from karl_core.state.redis_keys import KeySchema
from karl_core.state.resp import LeanRedis

T = TypeVar("T")

TOMBSTONE_TTL = 3600.0
"""Seconds a call's tombstone (the epoch it ended at) lives: a node cut off for longer that held the
call before its last move could bring it back."""
CALL_TTL = 600.0
"""Seconds a call's keys live without their owner refreshing them (`touch`, every `CALL_TTL / 5`)."""

SCRIPT_NAMES = (
    "RELEASE",
    "SAVE",
    "REMOVE",
    "TOUCH",
    "RENEW_LEASE",
    "LEAVE",
    "SUSPECT",
    "SUSPICIONS",
    "LEAD",
    "ADOPT",
    "ABANDON",
    "RETIRE",
    "RECLAIM",
    "RESIGN",
)

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)


class StateUnavailable(Exception):
    """Redis did not answer in time, refused, or is unreachable: the message says which."""


@dataclass
class RedisStats:
    """Round trips to Redis: counts, errors and latency (buckets per range, the last one +Inf)."""

    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    last_ok: float | None = None
    """Monotonic time of the last answer."""
    last_error: str = ""

    def record(self, elapsed: float, error: str | None, now: float) -> None:
        self.requests += 1
        self.latency_sum += elapsed
        for index, bound in enumerate(LATENCY_BUCKETS):
            if elapsed <= bound:
                self.latency_counts[index] += 1
                break
        else:
            self.latency_counts[-1] += 1
        if error is None:
            self.last_ok = now
        else:
            self.errors += 1
            self.last_error = error

    def reachable(self, now: float, within: float) -> bool:
        return self.last_ok is not None and now - self.last_ok <= within


def as_text(value: Any) -> str:
    # call-ids are bytes from SIP: one that is not UTF-8 comes back as it went in (see `connect`)
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _token(reply: Sequence[Any], first: int = 1) -> OwnerToken:
    return OwnerToken(as_text(reply[first]), int(reply[first + 1]))


class FleetState:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: KeySchema,
        stats: RedisStats | None = None,
        lean: LeanRedis | None = None,
    ) -> None:
        self.client = client
        self.lean = lean
        """The scripts' connection where the address allows it (`resp.lean_client`): the hot path."""
        self.keys = keys
        self.stats = stats or RedisStats()
        self.unreadable_leases = 0
        self.unreadable_states: list[str] = []
        """Calls whose stored state `load` could not read (left in Redis for a human)."""
        # Scripts run by their SHA1 (EVALSHA): one round trip. A Redis that does not know them yet
        # (first use, or restarted) answers NOSCRIPT, and they are loaded once and run again.
        self._texts = {name: getattr(redis_scripts, name) for name in SCRIPT_NAMES}
        self.shas = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in self._texts.items()}

    async def _timed(self, operation: Callable[[], Awaitable[T]]) -> T:
        started = time.monotonic()
        try:
            result = await operation()
        except (TimeoutError, RedisError, OSError, UnicodeError) as exc:
            now = time.monotonic()
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.stats.record(now - started, why, now)
            raise StateUnavailable(why) from None
        now = time.monotonic()
        self.stats.record(now - started, None, now)
        return result

    async def load_scripts(self) -> None:
        if self.lean is not None:
            for reply in await self.lean.execute([["SCRIPT", "LOAD", text] for text in self._texts.values()]):
                if isinstance(reply, Exception):
                    raise reply
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for text in self._texts.values():
                pipe.script_load(text)
            await pipe.execute()

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        [reply] = await self.run_batch([(name, keys, args)])
        if isinstance(reply, Exception):
            raise StateUnavailable(f"{type(reply).__name__}: {reply}")
        return reply

    async def run_batch(self, calls: Sequence[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Several scripts in one pipeline (one round trip); a failed one's reply is its exception."""

        async def execute() -> list[Any]:
            if self.lean is not None:
                return await self.lean.execute(
                    [["EVALSHA", self.shas[name], len(keys), *keys, *args] for name, keys, args in calls]
                )
            async with self.client.pipeline(transaction=False) as pipe:
                for name, keys, args in calls:
                    pipe.evalsha(self.shas[name], len(keys), *keys, *args)
                return list(await pipe.execute(raise_on_error=False))

        async def run() -> list[Any]:
            replies = await execute()
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # a Redis that lost its scripts fails each of them without effect: run them all again
                await self.load_scripts()
                replies = await execute()
            return replies

        return await self._timed(run)

    async def ping(self) -> None:
        await self._timed(self.client.ping)

    # -- leases ------------------------------------------------------------------------------------
    async def renew_lease(self, lease: NodeLease, ttl: float) -> str | None:
        """Store `lease` for `ttl` seconds; returns the lease document it replaced, if any."""
        previous = await self._script(
            "RENEW_LEASE",
            [self.keys.node(lease.node_id), self.keys.members],
            [lease.to_json(), int(ttl * 1000), lease.node_id],
        )
        return None if previous is None else as_text(previous)

    async def leave(self, node_id: str, boot_id: str) -> None:
        await self._script("LEAVE", [self.keys.node(node_id), self.keys.members], [node_id, boot_id])

    async def members(self) -> list[str]:
        ids = await self._timed(lambda: self.client.smembers(self.keys.members))
        return sorted(as_text(node_id) for node_id in ids)

    async def nodes(self) -> tuple[list[str], list[NodeLease]]:
        """The registered members and the leases of those that are live (two round trips)."""
        members = await self.members()
        if not members:
            return [], []
        documents = await self._timed(lambda: self.client.mget([self.keys.node(n) for n in members]))
        leases = []
        for document in documents:
            if document is None:
                continue
            try:
                leases.append(NodeLease.from_json(document))
            except LeaseFormatError:
                self.unreadable_leases += 1
        return members, leases

    # -- ownership ---------------------------------------------------------------------------------
    async def owner_of(self, call_id: str) -> OwnerToken | None:
        owner, epoch = await self._timed(
            lambda: self.client.hmget(self.keys.call(call_id), ["owner", "epoch"])
        )
        if owner is None or epoch is None:
            return None
        return OwnerToken(as_text(owner), int(epoch))

    async def release(self, call_id: str, held: OwnerToken) -> bool:
        reply = await self._script(
            "RELEASE",
            [self.keys.call(call_id), self.keys.node_calls(held.owner), self.keys.call_state(call_id)],
            [held.owner, held.epoch, call_id],
        )
        return bool(reply)

    async def reclaim(self, node_id: str, call_ids: Sequence[str]) -> dict[str, OwnerToken | None]:
        """Take back, each at a new epoch, the calls `node_id` still holds (a restart on its host);
        None for a call another node holds now."""
        if not call_ids:
            return {}
        replies = await self.run_batch(
            [
                ("RECLAIM", [self.keys.call(c), self.keys.call_state(c), self.keys.epoch], [node_id])
                for c in call_ids
            ]
        )
        failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
        if failed is not None:
            raise StateUnavailable(f"{type(failed).__name__}: {failed}")
        return {
            call_id: _token(reply) if int(reply[0]) == 1 else None
            for call_id, reply in zip(call_ids, replies, strict=True)
        }

    # -- call state --------------------------------------------------------------------------------
    async def calls_of(self, node_id: str) -> list[str]:
        ids = await self._timed(lambda: self.client.smembers(self.keys.node_calls(node_id)))
        return sorted(as_text(call_id) for call_id in ids)

    async def load(self, call_ids: Sequence[str]) -> list[StoredCall]:
        """The stored state of these calls (absent ones left out), in one pipeline."""

        async def fetch() -> list[Any]:
            # `async with`: a pipeline that fails still gives its connection back to the pool
            async with self.client.pipeline(transaction=False) as pipe:
                for call_id in call_ids:
                    pipe.hmget(self.keys.call_state(call_id), ["version", "owner", "epoch", "state"])
                return list(await pipe.execute())

        rows = await self._timed(fetch) if call_ids else []
        stored = []
        for call_id, (version, owner, epoch, state) in zip(call_ids, rows, strict=True):
            if version is None or state is None:
                continue
            try:
                document = json.loads(state)
                if not isinstance(document, dict):
                    raise TypeError("not an object")
                token = OwnerToken(as_text(owner), int(epoch))
                stored.append(StoredCall(call_id, int(version), token, document))
            except (ValueError, TypeError, OverflowError, RecursionError):
                self.unreadable_states.append(call_id)
        return stored

    async def touch(self, calls: Sequence[tuple[str, OwnerToken]]) -> list[int]:
        """Refresh the keys of live calls: per call 1 renewed, 0 absent, -1 fenced."""
        if not calls:
            return []
        replies = await self.run_batch(
            [
                (
                    "TOUCH",
                    [self.keys.call(call_id), self.keys.call_state(call_id)],
                    [token.owner, token.epoch, int(CALL_TTL * 1000)],
                )
                for call_id, token in calls
            ]
        )
        failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
        if failed is not None:
            raise StateUnavailable(f"{type(failed).__name__}: {failed}")
        return [int(reply) for reply in replies]


@dataclass(slots=True)
class _Write:
    call_id: str
    token: OwnerToken
    node_id: str
    version: int
    state: str | None
    """The state document (JSON); None for a removal."""
    done: asyncio.Future[tuple[SaveResult, OwnerToken | None]]


class StateWriter:
    """One node's saves and removals, applied in order (see the module docstring).

    `save`/`remove` return a future right away: (result, token): the holder when `FENCED`, else the
    writer's own (owner, epoch) — the epoch Redis gave a writer that saved with epoch 0. A write that Redis
    did not take completes with `StateUnavailable`; the caller decides what to do with the call (the
    node saves it again later)."""

    def __init__(self, state: FleetState, batch: int = 256) -> None:
        self.state = state
        self.batch = batch
        self._queue: list[_Write] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout: float = 1.0) -> None:
        """Let what is queued go out (bounded), then stop."""
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for write in self._queue:
            if not write.done.done():
                write.done.set_exception(StateUnavailable("the writer stopped"))
        self._queue.clear()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def save(
        self, call_id: str, version: int, token: OwnerToken, node_id: str, state: str
    ) -> asyncio.Future[tuple[SaveResult, OwnerToken | None]]:
        return self._enqueue(_Write(call_id, token, node_id, version, state, self._future()))

    def remove(
        self, call_id: str, token: OwnerToken, node_id: str
    ) -> asyncio.Future[tuple[SaveResult, OwnerToken | None]]:
        return self._enqueue(_Write(call_id, token, node_id, 0, None, self._future()))

    @staticmethod
    def _future() -> asyncio.Future[tuple[SaveResult, OwnerToken | None]]:
        return asyncio.get_running_loop().create_future()

    def _enqueue(self, write: _Write) -> asyncio.Future[tuple[SaveResult, OwnerToken | None]]:
        self._queue.append(write)
        self._wake.set()
        return write.done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[: self.batch], self._queue[self.batch :]
                try:
                    await self._apply(batch)
                except Exception as exc:  # a bug must fail its writes, never stop the writer
                    for write in batch:
                        if not write.done.done():
                            write.done.set_exception(StateUnavailable(f"{type(exc).__name__}: {exc}"))

    async def _apply(self, batch: list[_Write]) -> None:
        keys = self.state.keys
        calls: list[tuple[str, list[str], list[Any]]] = []
        for write in batch:
            call_key, state_key = keys.call(write.call_id), keys.call_state(write.call_id)
            index = keys.node_calls(write.node_id)
            token = write.token
            if write.state is None:
                calls.append(
                    (
                        "REMOVE",
                        [call_key, state_key, index, keys.ended(write.call_id)],
                        [token.owner, token.epoch, write.call_id, int(TOMBSTONE_TTL * 1000)],
                    )
                )
            else:
                ttl = int(CALL_TTL * 1000)
                args = [token.owner, token.epoch, write.version, write.state, ttl, write.call_id]
                tombstone = keys.ended(write.call_id)
                calls.append(("SAVE", [call_key, state_key, index, keys.epoch, tombstone], args))
        try:
            replies = await self.state.run_batch(calls)
        except StateUnavailable as exc:
            for write in batch:
                if not write.done.done():
                    write.done.set_exception(StateUnavailable(str(exc)))
            return
        for write, reply in zip(batch, replies, strict=True):
            if write.done.done():
                continue
            if isinstance(reply, Exception):
                write.done.set_exception(StateUnavailable(f"{type(reply).__name__}: {reply}"))
                continue
            verdict = as_text(reply[0])
            holder = _token(reply)  # FENCED: who holds it; else the writer, with its (learned) epoch
            if verdict == "fenced":
                # no holder: the call ended elsewhere (the writer must let it go all the same)
                write.done.set_result((SaveResult.FENCED, holder if holder.owner else None))
            elif verdict == "stale":
                write.done.set_result((SaveResult.STALE, holder))
            else:
                write.done.set_result((SaveResult.SAVED, holder))
