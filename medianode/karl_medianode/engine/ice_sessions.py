"""The ICE agents of the engine's calls: one per party and media where Karl speaks ICE (sans-IO).

The agents are rebuilt from the call's state (`MediaState.ice_*`) after every change, so a call
restored on another node gets them back with the same credentials. Their timers sit in a deadline
heap of their own (one entry per call) because they run at 20 ms, far finer than the call timers.
What they want sent and what they select comes out as `SendDatagram` and `SetPeer` effects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from karl_medianode.engine.calls import Call
from karl_medianode.engine.deadlines import Deadlines
from karl_medianode.engine.effects import Effect, SendDatagram, SetPeer
from karl_medianode.engine.ice_negotiation import LITE_PEER, LITE_SELF, karl_controls
from karl_medianode.ice.agent import Address, IceAgent, IceState, Selected, StateChanged
from karl_medianode.ice.credentials import IceCredentials

log = logging.getLogger("karl.ice")

AgentKey = tuple[int, int]
"""(monologue uid, media index), as `Call.ports`."""


@dataclass
class IceTotals:
    """Over all calls, for the metrics."""

    requests: int = 0
    dropped: int = 0
    role_conflicts: int = 0
    connected: int = 0
    failed: int = 0


@dataclass
class _CallAgents:
    agents: dict[AgentKey, IceAgent] = field(default_factory=dict)
    ports: dict[AgentKey, dict[int, int]] = field(default_factory=dict)
    """Per agent, component → Karl's port."""


class IceSessions:
    def __init__(self) -> None:
        self._calls: dict[str, _CallAgents] = {}
        self._by_port: dict[int, tuple[str, AgentKey, int]] = {}
        self._deadlines = Deadlines()
        self.totals = IceTotals()
        self._folded: dict[int, tuple[int, int, int]] = {}
        """Per agent (id), its counters already added to `totals`."""

    def verified(self, call_id: str, key: AgentKey, source: Address, component: int = 1) -> bool | None:
        """Whether ICE verified `source` as the party's address on this leg's `component` (1: RTP,
        2: RTCP without rtcp-mux; None: no ICE on it)."""
        agent = self.agent(call_id, key)
        return None if agent is None else agent.verified(source, component)

    def agent_count(self) -> int:
        return sum(len(entry.agents) for entry in self._calls.values())

    def agent(self, call_id: str, key: AgentKey) -> IceAgent | None:
        found = self._calls.get(call_id)
        return None if found is None else found.agents.get(key)

    # ------------------------------------------------------------------ following the calls

    def sync(self, call: Call, now: float) -> list[Effect]:
        """Make the call's agents match its state (after a change of the call)."""
        entry = self._calls.get(call.call_id)
        if entry is None:
            entry = _CallAgents()
        self._forget_ports(entry)
        wanted: set[AgentKey] = set()
        for mono in call.state.monologues.values():
            for media in mono.medias:
                key = (mono.uid, media.index)
                sockets = call.ports.get(key)
                if not media.ice or media.rejected or sockets is None or sockets.rtp is None:
                    continue
                assert media.ice_ufrag is not None and media.ice_pwd is not None
                local = {1: (sockets.rtp.local_ip, sockets.rtp.port)}
                ports = {1: sockets.rtp.port}
                if sockets.rtcp is not None and not media.rtcp_mux:
                    local[2] = (sockets.rtcp.local_ip, sockets.rtcp.port)
                    ports[2] = sockets.rtcp.port
                credentials = IceCredentials(media.ice_ufrag, media.ice_pwd)
                # Karl controls towards the party it offered to, and towards an ICE-lite party
                lite_peer = LITE_PEER in media.flags
                lite_self = LITE_SELF in media.flags
                controlling = karl_controls(mono.answerer, media) and not lite_self
                agent = entry.agents.get(key)
                if (
                    agent is None
                    or agent.local != credentials
                    or agent.local_addresses != local
                    or agent.lite != lite_self
                ):
                    if agent is not None:
                        self._fold(agent)
                    agent = entry.agents[key] = IceAgent(credentials, controlling, local, lite=lite_self)
                elif lite_peer and not agent.controlling and not lite_self:
                    agent.set_role(True)
                entry.ports[key] = ports
                if media.ice_remote_ufrag and media.ice_remote_pwd:
                    remote = IceCredentials(media.ice_remote_ufrag, media.ice_remote_pwd)
                    agent.set_remote(remote, media.ice_candidates, now)
                wanted.add(key)
        for key in [k for k in entry.agents if k not in wanted]:
            self._fold(entry.agents.pop(key))
            entry.ports.pop(key, None)
        if not entry.agents:
            self._calls.pop(call.call_id, None)
            self._deadlines.discard(call.call_id)
            return []
        self._calls[call.call_id] = entry
        for key, ports in entry.ports.items():
            for component, port in ports.items():
                self._by_port[port] = (call.call_id, key, component)
        effects: list[Effect] = []
        for key in entry.agents:
            effects += self._outputs(call.call_id, entry, key)
        self._schedule(call.call_id)
        return effects

    def drop(self, call_id: str) -> None:
        entry = self._calls.pop(call_id, None)
        if entry is not None:
            for agent in entry.agents.values():
                self._fold(agent)
            self._forget_ports(entry)
        self._deadlines.discard(call_id)

    def _forget_ports(self, entry: _CallAgents) -> None:
        for ports in entry.ports.values():
            for port in ports.values():
                self._by_port.pop(port, None)

    # ------------------------------------------------------------------ datagrams and timers

    def handle_stun(self, port: int, data: bytes, source: Address, now: float) -> list[Effect]:
        """A STUN datagram received on `port` from `source`."""
        found = self._by_port.get(port)
        if found is None:
            self.totals.dropped += 1
            return []
        call_id, key, component = found
        entry = self._calls[call_id]
        entry.agents[key].handle_datagram(component, data, source, now)
        effects = self._outputs(call_id, entry, key)
        self._schedule(call_id)
        return effects

    def next_deadline(self) -> float | None:
        return self._deadlines.next()

    def handle_timer(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        while (call_id := self._deadlines.pop_due(now)) is not None:
            entry = self._calls.get(call_id)
            if entry is None:
                continue
            for key, agent in entry.agents.items():
                due = agent.next_deadline()
                if due is not None and due <= now:
                    agent.handle_timer(now)
                    effects += self._outputs(call_id, entry, key)
            self._schedule(call_id)
        return effects

    def _schedule(self, call_id: str) -> None:
        entry = self._calls.get(call_id)
        dues = [d for a in entry.agents.values() if (d := a.next_deadline()) is not None] if entry else []
        if dues:
            self._deadlines.set(call_id, min(dues))
        else:
            self._deadlines.discard(call_id)

    def _outputs(self, call_id: str, entry: _CallAgents, key: AgentKey) -> list[Effect]:
        agent = entry.agents[key]
        ports = entry.ports[key]
        effects: list[Effect] = [
            SendDatagram(ports[t.component], t.destination, t.data)
            for t in agent.take_transmits()
            if t.component in ports
        ]
        for event in agent.take_events():
            if isinstance(event, Selected):
                if event.component in ports:
                    effects.append(SetPeer(ports[event.component], event.address))
            elif isinstance(event, StateChanged):
                self._state_changed(call_id, key, event.state)
        self._fold(agent, keep=True)
        return effects

    def _state_changed(self, call_id: str, key: AgentKey, state: IceState) -> None:
        if state is IceState.CONNECTED:
            self.totals.connected += 1
            log.info("ICE connected", extra={"call_id": call_id, "event": "ice_connected", "media": key[1]})
        elif state is IceState.FAILED:
            self.totals.failed += 1
            log.warning(
                "ICE failed: no connectivity check succeeded, or the party stopped answering them",
                extra={"call_id": call_id, "event": "ice_failed", "media": key[1]},
            )

    def _fold(self, agent: IceAgent, *, keep: bool = False) -> None:
        """Add what the agent counted since last time to the totals."""
        counters = agent.counters
        before = self._folded.get(id(agent), (0, 0, 0))
        now = (counters.requests, counters.dropped, counters.role_conflicts)
        self.totals.requests += now[0] - before[0]
        self.totals.dropped += now[1] - before[1]
        self.totals.role_conflicts += now[2] - before[2]
        if keep:
            self._folded[id(agent)] = now
        else:
            self._folded.pop(id(agent), None)
