"""What failover reads and writes in Redis (part 2 of the fleet), on top of `FleetState`: members'
reports of which peers they cannot reach, the leading controller and its term, and the moves of a dead
node's calls (scripts in `redis_scripts`, keys in `redis_keys`).

Every move carries the controller's term and is refused once another controller leads; every move
bumps the call's epoch, so the dead node, should it come back, is fenced on its first write."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from karl_core.state.call_store import OwnerToken
from karl_core.state.fleet_state import CALL_TTL, TOMBSTONE_TTL, FleetState, StateUnavailable, as_text

SUSPICION_TTL = 5.0
"""Seconds a report that a peer cannot be reached lives in Redis without being repeated."""


class MoveResult(Enum):
    ADOPTED = "adopted"
    """The call now belongs to the target, at the epoch returned."""
    MOVED = "moved"
    """The dead node no longer held it (it came back, or an earlier leader moved it): left alone."""
    DEPOSED = "deposed"
    """This controller no longer leads with its term: nothing was done."""
    ENDED = "ended"
    """No node had room: the call's keys are gone (see `abandon`)."""


@dataclass(frozen=True, slots=True)
class Leadership:
    leads: bool
    leader: str
    term: int


@dataclass(frozen=True, slots=True)
class Move:
    call_id: str
    result: MoveResult
    token: OwnerToken | None
    """The holder afterwards (the target for ADOPTED), if known."""
    state: str | None = None
    """The call's last state (JSON), for ENDED."""


class FailoverState:
    def __init__(self, state: FleetState) -> None:
        self.state = state
        self.keys = state.keys

    # -- reachability --------------------------------------------------------------------------------
    async def report(self, reporter: str, reachable: Mapping[str, bool]) -> None:
        """`reporter` says which peers it reaches (True) or not (False), in one round trip."""
        if not reachable:
            return
        ttl = int(SUSPICION_TTL * 1000)
        replies = await self.state.run_batch(
            [
                ("SUSPECT", [self.keys.suspects(peer)], [reporter, "0" if ok else "1", ttl])
                for peer, ok in reachable.items()
            ]
        )
        _raise_first(replies)

    async def suspicions(self, targets: Sequence[str], fresh: float) -> dict[str, set[str]]:
        """Per target, the members that reported within `fresh` seconds that they cannot reach it."""
        if not targets:
            return {}
        replies = await self.state.run_batch(
            [("SUSPICIONS", [self.keys.suspects(target)], [int(fresh * 1000)]) for target in targets]
        )
        _raise_first(replies)
        return {target: {as_text(r) for r in reply} for target, reply in zip(targets, replies, strict=True)}

    # -- leadership ----------------------------------------------------------------------------------
    async def lead(self, controller_id: str, ttl: float) -> Leadership:
        reply = await self.state._script(
            "LEAD", [self.keys.leader, self.keys.leader_term], [controller_id, int(ttl * 1000)]
        )
        return Leadership(bool(reply[0]), as_text(reply[1]), int(reply[2]))

    async def resign(self, controller_id: str) -> bool:
        """Give up the lead, if this controller holds it."""
        return bool(await self.state._script("RESIGN", [self.keys.leader], [controller_id]))

    # -- moving calls --------------------------------------------------------------------------------
    async def adopt(
        self,
        controller_id: str,
        term: int,
        dead: str,
        assignments: Iterable[tuple[str, str]],
        handover: bool = False,
    ) -> list[Move]:
        """Move each (call-id, target) of `dead`'s calls, in one round trip. A failed node's calls
        move only while its lease is gone; `handover`: the node asked (it still holds a lease)."""
        pairs = list(assignments)
        if not pairs:
            return []
        keys = self.keys
        replies = await self.state.run_batch(
            [
                (
                    "ADOPT",
                    [
                        keys.leader,
                        keys.call(call_id),
                        keys.call_state(call_id),
                        keys.epoch,
                        keys.node_calls(dead),
                        keys.node_calls(target),
                        keys.adoptions(target),
                        keys.node(dead),
                    ],
                    [
                        controller_id,
                        term,
                        dead,
                        target,
                        call_id,
                        int(CALL_TTL * 1000),
                        "0" if handover else "1",
                    ],
                )
                for call_id, target in pairs
            ]
        )
        _raise_first(replies)
        moves = []
        for (call_id, _), reply in zip(pairs, replies, strict=True):
            result = MoveResult(as_text(reply[0]))
            owner = as_text(reply[1])
            moves.append(Move(call_id, result, OwnerToken(owner, int(reply[2])) if owner else None))
        return moves

    async def abandon(
        self, controller_id: str, term: int, dead: str, call_ids: Iterable[str], reason: str
    ) -> list[Move]:
        """End calls of `dead` that no survivor has room for: their keys go, and the record of each
        end (`reason`, last state) goes onto the fleet's endings list in the same step, for a live
        node to write its CDR and send its event (`take_endings`). Their states come back too."""
        ids = list(call_ids)
        if not ids:
            return []
        keys = self.keys
        replies = await self.state.run_batch(
            [
                (
                    "ABANDON",
                    [
                        keys.leader,
                        keys.call(call_id),
                        keys.call_state(call_id),
                        keys.node_calls(dead),
                        keys.ended(call_id),
                        keys.epoch,
                        keys.node(dead),
                        keys.endings,
                    ],
                    [controller_id, term, dead, call_id, int(TOMBSTONE_TTL * 1000), reason],
                )
                for call_id in ids
            ]
        )
        _raise_first(replies)
        moves = []
        for call_id, reply in zip(ids, replies, strict=True):
            result = MoveResult(as_text(reply[0]))
            detail = as_text(reply[1])
            state = detail if result is MoveResult.ENDED and detail else None
            moves.append(Move(call_id, result, None, state))
        return moves

    async def retire(self, node_id: str) -> bool:
        """Remove a dead node without calls from the members (see `redis_scripts.RETIRE`)."""
        keys = self.keys
        reply = await self.state._script(
            "RETIRE",
            [keys.node(node_id), keys.members, keys.suspects(node_id), keys.node_calls(node_id)],
            [node_id],
        )
        return bool(reply)

    async def leader(self) -> str | None:
        """The failover controller that leads now, if any."""
        current = await self.state._timed(lambda: self.state.client.get(self.keys.leader))
        return None if current is None else as_text(current).rsplit(" ", 1)[0]

    async def request_handover(self, node_id: str, boot_id: str, ttl: float) -> None:
        """A stopping node asks the failover controller to move its calls now (drain hand-over)."""
        key = self.keys.handover(node_id)
        await self.state._timed(lambda: self.state.client.set(key, boot_id, px=int(ttl * 1000)))

    async def handovers(self, node_ids: Sequence[str]) -> dict[str, str]:
        """The nodes among `node_ids` that asked for their calls to be moved, with the boot id that
        asked."""
        if not node_ids:
            return {}
        keys = [self.keys.handover(node_id) for node_id in node_ids]
        found = await self.state._timed(lambda: self.state.client.mget(keys))
        return {
            node_id: as_text(value)
            for node_id, value in zip(node_ids, found, strict=True)
            if value is not None
        }

    async def cancel_handover(self, node_id: str) -> None:
        key = self.keys.handover(node_id)
        await self.state._timed(lambda: self.state.client.delete(key))

    async def take_endings(self, count: int = 256) -> list[dict[str, Any]]:
        """Up to `count` records of calls failover could not keep, taken off the fleet's list (by one
        node only: that node writes their CDRs and sends their events). Unreadable ones are dropped."""
        key = self.keys.endings
        taken = await self.state._timed(lambda: self.state.client.lpop(key, count))
        endings = []
        for item in taken or []:
            try:
                ending = json.loads(as_text(item))
            except ValueError:
                continue
            if isinstance(ending, dict) and isinstance(ending.get("state"), str):
                endings.append(ending)
        return endings

    async def take_adoptions(self, node_id: str, count: int = 256) -> list[str]:
        """Up to `count` call-ids moved to `node_id`, oldest first, taken off its list."""
        key = self.keys.adoptions(node_id)
        taken = await self.state._timed(lambda: self.state.client.lpop(key, count))
        return [as_text(call_id) for call_id in taken or []]

    async def moved_from(self, call_ids: Sequence[str]) -> dict[str, str]:
        """The node each of these calls was moved away from by failover (calls never moved left out)."""
        if not call_ids:
            return {}

        async def fetch() -> list[Any]:
            async with self.state.client.pipeline(transaction=False) as pipe:
                for call_id in call_ids:
                    pipe.hget(self.keys.call(call_id), "moved_from")
                return list(await pipe.execute())

        found = await self.state._timed(fetch)
        return {c: as_text(node) for c, node in zip(call_ids, found, strict=True) if node is not None}

    async def replicate(self, timeout: float) -> int:
        """Wait until the writes so far reached the replicas Redis has (`WAIT`), so that a Sentinel
        failover cannot undo an epoch already handed out. Returns how many acknowledged (0 without
        replicas: nothing to wait for)."""
        info = await self.state._timed(lambda: self.state.client.info("replication"))
        replicas = int(info.get("connected_slaves", 0))
        if replicas == 0:
            return 0
        lean = self.state.lean
        if lean is not None:
            # WAIT covers the writes of its own connection: the moves went through the lean one
            [acked] = await self.state._timed(lambda: lean.execute([["WAIT", replicas, int(timeout * 1000)]]))
            if isinstance(acked, Exception):
                raise StateUnavailable(str(acked))
            return int(acked)
        acked = await self.state._timed(lambda: self.state.client.wait(replicas, int(timeout * 1000)))
        return int(acked)


def _raise_first(replies: Sequence[object]) -> None:
    failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
    if failed is not None:
        raise StateUnavailable(f"{type(failed).__name__}: {failed}")
