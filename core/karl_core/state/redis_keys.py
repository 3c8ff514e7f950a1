"""Names of the fleet's keys in Redis. Every key starts with the fleet's prefix, so several fleets can
share one Redis (`KARL_REDIS_PREFIX`).

| key | type | holds |
|---|---|---|
| `<p>:node:<id>` | string (JSON), TTL = lease | a node's lease: addresses, capacity, load, boot id |
| `<p>:members` | set | ids of the registered nodes (a node leaves it when it stops cleanly) |
| `<p>:call:<call-id>` | hash | `owner`, `epoch`: who may act for the call |
| `<p>:callstate:<call-id>` | hash | `version`, `owner`, `epoch`, `state` (the engine's `CallState`, JSON) |
| `<p>:node-calls:<id>` | set | call-ids a node owns (restart, failover and the sweeper read it) |
| `<p>:epoch` | integer | the fleet's epoch counter: no (owner, epoch) pair is ever handed out twice |
| `<p>:ended:<call-id>` | string, TTL | the epoch a call ended (or failed over and ended) at: never revived |
| `<p>:suspect:<id>` | hash, TTL | members that cannot reach node `<id>` → when they last said so (ms) |
| `<p>:adopt:<id>` | list | call-ids moved to node `<id>` by failover, for it to take up |
| `<p>:endings` | list | calls failover could not keep (JSON), for a live node to write CDRs and events |
| `<p>:handover:<id>` | string, TTL | node `<id>` is stopping: move its calls now (its boot id) |
| `<p>:failover:leader` | string, TTL | the failover controller that leads, and its term (`<id> <term>`) |
| `<p>:failover:term` | integer | the leaders' term counter: every failover action carries its term |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySchema:
    prefix: str = "karl"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    @property
    def members(self) -> str:
        return f"{self.prefix}:members"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    def call(self, call_id: str) -> str:
        return f"{self.prefix}:call:{call_id}"

    def call_state(self, call_id: str) -> str:
        return f"{self.prefix}:callstate:{call_id}"

    def node_calls(self, node_id: str) -> str:
        return f"{self.prefix}:node-calls:{node_id}"

    def suspects(self, node_id: str) -> str:
        return f"{self.prefix}:suspect:{node_id}"

    def adoptions(self, node_id: str) -> str:
        return f"{self.prefix}:adopt:{node_id}"

    @property
    def endings(self) -> str:
        return f"{self.prefix}:endings"

    def handover(self, node_id: str) -> str:
        return f"{self.prefix}:handover:{node_id}"

    @property
    def leader(self) -> str:
        return f"{self.prefix}:failover:leader"

    @property
    def leader_term(self) -> str:
        return f"{self.prefix}:failover:term"

    def ended(self, call_id: str) -> str:
        return f"{self.prefix}:ended:{call_id}"
