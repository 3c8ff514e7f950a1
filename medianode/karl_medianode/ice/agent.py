"""One ICE agent (RFC 8445) for one party's media: Karl's side of the connectivity checks, sans-IO.

The agent owns no socket and reads no clock. The media node hands it the STUN datagrams that arrive
on the party's sockets (`handle_datagram`) and calls `handle_timer` at `next_deadline()`; after each
call it takes what to send (`take_transmits`) and what changed (`take_events`).

What it does, trimmed to what a media relay needs (Karl has one host candidate per component, so
there is no gathering and no candidate pairing beyond "Karl's socket with each of the party's candidates"):

- answers authenticated Binding requests (USERNAME `<Karl's ufrag>:<party's ufrag>`, MESSAGE-INTEGRITY
  with Karl's password) with a success response carrying XOR-MAPPED-ADDRESS; anything else is dropped
  and counted (`dropped`);
- learns peer-reflexive candidates from requests and sends triggered checks back;
- sends its own checks to the party's candidates, paced every `PACING` seconds, retransmitted with
  doubling timeouts;
- nomination: controlling, the first pair of a component that succeeds is checked again with
  USE-CANDIDATE and selected when that succeeds; controlled, a pair is selected as soon as an
  authenticated request with USE-CANDIDATE arrives on it (the request proves the path);
- role conflicts are resolved by the tie-breakers (RFC 8445 7.3.1.1, 487 Role Conflict);
- consent freshness (RFC 7675): once a component has a selected pair, Karl checks it every
  `CONSENT_INTERVAL`; without any answer for `CONSENT_TIMEOUT` the pair is deselected (the party
  gets no more media until a check succeeds again).
"""

from __future__ import annotations

import enum
import ipaddress
import secrets
from dataclasses import dataclass, field

from aioice import stun

from karl_core.sdp.candidate import Candidate
from karl_core.sdp.errors import SdpError
from karl_medianode.ice.credentials import IceCredentials, candidate_priority

Address = tuple[str, int]

PACING = 0.02
"""Ta: one new check (or retransmission) every 20 ms at most per agent (RFC 8445 14.2)."""
FIRST_RTO = 0.1
MAX_RTO = 1.6
MAX_TRIES = 7
"""A check is given up (the pair fails) after 7 sends, about 6 s."""
CONSENT_INTERVAL = 5.0
CONSENT_TIMEOUT = 30.0
PEER_REFLEXIVE_TYPE_PREFERENCE = 110
MAX_REMOTE_CANDIDATES = 64
"""Candidates kept per agent (a hostile SDP or a flood of checks from new sources cannot grow it)."""
SOFTWARE = "Karl"


class IceState(enum.StrEnum):
    NEW = "new"
    """No checks yet."""
    CHECKING = "checking"
    CONNECTED = "connected"
    """Every component has a selected pair."""
    FAILED = "failed"
    """Every check failed, or consent was lost."""


class PairState(enum.Enum):
    WAITING = 0
    IN_PROGRESS = 1
    SUCCEEDED = 2
    FAILED = 3


@dataclass(slots=True)
class RemoteCandidate:
    component: int
    address: Address
    priority: int
    kind: str


@dataclass(slots=True)
class CandidatePair:
    component: int
    remote: Address
    priority: int
    state: PairState = PairState.WAITING
    nominating: bool = False
    """The check in flight carries USE-CANDIDATE."""
    nominated: bool = False
    """The controlling party nominated this pair (controlled: selected once Karl's check succeeds)."""
    sent_controlling: bool = False
    """The role Karl's check in flight was sent in (a 487 answer switches only from that role)."""
    transaction: bytes = b""
    tries: int = 0
    rto: float = FIRST_RTO
    due: float = 0.0
    """When the check in flight is sent again (IN_PROGRESS)."""


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send `data` from the party's socket of `component` to `destination`."""

    component: int
    destination: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class Selected:
    """Media for the party's `component` goes to `address` from now on (None: consent lost, none)."""

    component: int
    address: Address | None


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: IceState


IceEvent = Selected | StateChanged


@dataclass(slots=True)
class IceCounters:
    requests: int = 0
    """Authenticated Binding requests answered."""
    dropped: int = 0
    """STUN datagrams dropped: malformed, unknown ufrag, bad integrity, unexpected responses."""
    role_conflicts: int = 0


def pair_priority(controlling: int, controlled: int) -> int:
    """RFC 8445 6.1.2.3 (G: the controlling agent's candidate priority, D: the controlled one's)."""
    return (
        (1 << 32) * min(controlling, controlled)
        + 2 * max(controlling, controlled)
        + (1 if controlling > controlled else 0)
    )


@dataclass
class IceAgent:
    local: IceCredentials
    controlling: bool
    local_addresses: dict[int, Address]
    """Karl's socket (host candidate) per component."""
    tie_breaker: int = field(default_factory=lambda: secrets.randbits(64))
    lite: bool = False
    """An ICE-lite agent (RFC 8445 2.5): always controlled, answers checks, sends none (no consent
    checks either: the full agent does them)."""
    remote: IceCredentials | None = None
    state: IceState = IceState.NEW
    counters: IceCounters = field(default_factory=IceCounters)
    selected: dict[int, Address] = field(default_factory=dict)
    _candidates: list[RemoteCandidate] = field(default_factory=list)
    _pairs: dict[tuple[int, Address], CandidatePair] = field(default_factory=dict)
    _triggered: list[CandidatePair] = field(default_factory=list)
    _next_check: float = 0.0
    _consent_due: dict[int, float] = field(default_factory=dict)
    _consent_seen: dict[int, float] = field(default_factory=dict)
    _transmits: list[Transmit] = field(default_factory=list)
    _events: list[IceEvent] = field(default_factory=list)

    # ------------------------------------------------------------------ signalling

    @property
    def components(self) -> list[int]:
        return sorted(self.local_addresses)

    def set_remote(self, credentials: IceCredentials, candidates: list[str], now: float) -> None:
        """The party's ICE credentials and `a=candidate` values from its SDP. New credentials are an
        ICE restart: every pair and selection starts over."""
        if self.remote is not None and credentials != self.remote:
            self._restart()
        self.remote = credentials
        for value in candidates:
            self.add_candidate(value, now)
        if self.state is IceState.NEW and self._pairs:
            self._set_state(IceState.CHECKING)

    def add_candidate(self, value: str, now: float) -> bool:
        """One `a=candidate` value (from the SDP or trickled); False: not one Karl can use."""
        try:
            parsed = Candidate.parse(value)
        except SdpError:
            return False
        if not parsed.usable or parsed.component not in self.local_addresses:
            return False
        if (":" in parsed.address) != (":" in self.local_addresses[parsed.component][0]):
            return False  # another address family than Karl's socket
        try:
            address = str(ipaddress.ip_address(parsed.address))  # as received datagrams report it
        except ValueError:
            return False  # a host name (mDNS `.local`): Karl resolves none
        self._add_remote(
            RemoteCandidate(parsed.component, (address, parsed.port), parsed.priority, parsed.type)
        )
        self._next_check = min(self._next_check, now) if self._next_check else now
        return True

    def _add_remote(self, candidate: RemoteCandidate) -> CandidatePair | None:
        key = (candidate.component, candidate.address)
        pair = self._pairs.get(key)
        if pair is not None:
            return pair
        if len(self._candidates) >= MAX_REMOTE_CANDIDATES:
            return None
        self._candidates.append(candidate)
        local = candidate_priority(126, 65535, candidate.component)
        priority = (
            pair_priority(local, candidate.priority)
            if self.controlling
            else pair_priority(candidate.priority, local)
        )
        pair = self._pairs[key] = CandidatePair(candidate.component, candidate.address, priority)
        return pair

    def _restart(self) -> None:
        self._candidates.clear()
        self._pairs.clear()
        self._triggered.clear()
        self._consent_due.clear()
        self._consent_seen.clear()
        self.selected.clear()
        self.state = IceState.NEW

    def set_role(self, controlling: bool) -> None:
        if controlling != self.controlling:
            self.controlling = controlling
            for pair in self._pairs.values():
                pair.nominating = False
                if controlling and pair.state is PairState.SUCCEEDED and pair.component not in self.selected:
                    # now Karl nominates: a pair that works already is checked again with USE-CANDIDATE
                    pair.nominating = True
                    pair.state = PairState.WAITING
                    self._triggered.insert(0, pair)

    # ------------------------------------------------------------------ datagrams

    def handle_datagram(self, component: int, data: bytes, source: Address, now: float) -> None:
        """A STUN datagram received on the party's socket of `component`."""
        try:
            message = stun.parse_message(data)
        except Exception:  # anything a hostile datagram makes the codec raise (struct.error too)
            self.counters.dropped += 1
            return
        if message.message_method != stun.Method.BINDING:
            self.counters.dropped += 1
            return
        if message.message_class == stun.Class.REQUEST:
            self._request(component, message, source, now)
        elif message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            self._response(component, message, source, now)
        else:
            pass  # a Binding indication: a keepalive, nothing to answer

    def _request(self, component: int, message: stun.Message, source: Address, now: float) -> None:
        username = message.attributes.get("USERNAME", "")
        ours, _, theirs = username.partition(":")
        if ours != self.local.ufrag or not message.check_message_integrity(self.local.pwd.encode()):
            self.counters.dropped += 1
            return
        if self.remote is not None and theirs != self.remote.ufrag:
            self.counters.dropped += 1
            return
        if not self._resolve_role_conflict(component, message, source):
            return
        self.counters.requests += 1
        response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, message.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = source
        response.add_message_integrity(self.local.pwd.encode())
        self._transmits.append(Transmit(component, source, bytes(response)))
        pair = self._pairs.get((component, source))
        if pair is None:
            priority = int(message.attributes.get("PRIORITY", 0))
            pair = self._add_remote(RemoteCandidate(component, source, priority, "prflx"))
            if pair is None:
                return
        if self.state is IceState.NEW or self.state is IceState.FAILED:
            self._set_state(IceState.CHECKING)
        if pair.state in (PairState.WAITING, PairState.FAILED) and self.remote is not None:
            pair.state = PairState.WAITING
            if pair not in self._triggered:
                self._triggered.append(pair)
            self._next_check = now
        if "USE-CANDIDATE" in message.attributes and not self.controlling:
            # RFC 8445 7.3.1.5: the pair is nominated, and selected once Karl's own check on it has
            # succeeded (a request alone proves nothing about its source address); a lite agent
            # sends no checks and takes the full agent's word
            pair.nominated = True
            if self.lite or pair.state is PairState.SUCCEEDED:
                self._select(component, source, now)

    def _resolve_role_conflict(self, component: int, message: stun.Message, source: Address) -> bool:
        """False: answered with 487 (the party must change its role)."""
        theirs = message.attributes.get("ICE-CONTROLLING" if self.controlling else "ICE-CONTROLLED")
        if theirs is None or self.lite:
            return True  # (a lite agent stays controlled: the full agent must control)
        self.counters.role_conflicts += 1
        # RFC 8445 7.3.1.1: the larger tie-breaker keeps (or takes) the controlling role
        if self.tie_breaker >= theirs if self.controlling else self.tie_breaker < theirs:
            error = stun.Message(stun.Method.BINDING, stun.Class.ERROR, message.transaction_id)
            error.attributes["ERROR-CODE"] = (487, "Role Conflict")
            error.add_message_integrity(self.local.pwd.encode())
            self._transmits.append(Transmit(component, source, bytes(error)))
            return False
        self.set_role(not self.controlling)
        return True

    def _response(self, component: int, message: stun.Message, source: Address, now: float) -> None:
        pair = next(
            (
                p
                for p in self._pairs.values()
                if p.transaction == message.transaction_id and p.state is PairState.IN_PROGRESS
            ),
            None,
        )
        if pair is None or self.remote is None or pair.component != component or pair.remote != source:
            self.counters.dropped += 1  # RFC 8445 7.2.5.2.1: a response must come from where we sent
            return
        if not message.check_message_integrity(self.remote.pwd.encode()):
            self.counters.dropped += 1
            return
        pair.transaction = b""
        if message.message_class == stun.Class.ERROR:
            if message.error_code == 487:
                # RFC 8445 7.2.5.1: switch, unless an earlier 487 switched already
                if pair.sent_controlling == self.controlling and not self.lite:
                    self.set_role(not self.controlling)
                pair.state = PairState.WAITING
                self._triggered.append(pair)
            else:
                pair.state = PairState.FAILED
                self._check_failed()
            return
        pair.state = PairState.SUCCEEDED
        if self.selected.get(component) == source:
            self._consent_seen[component] = now  # RFC 7675: consent comes from answers to Karl's checks
        if pair.nominated and not self.controlling:
            self._select(component, source, now)
        if pair.nominating:
            pair.nominating = False
            if self.controlling:
                self._select(component, source, now)
        elif self.controlling and component not in self.selected:
            pair.nominating = True
            pair.state = PairState.WAITING
            self._triggered.insert(0, pair)
            self._next_check = now

    def verified(self, source: Address, component: int | None = None) -> bool:
        """`source` answered one of Karl's checks (or is the selected address); on `component`
        only, if given."""
        if source in (address for c, address in self.selected.items() if component in (None, c)):
            return True
        return any(
            p.remote == source and p.state is PairState.SUCCEEDED and component in (None, p.component)
            for p in self._pairs.values()
        )

    def _select(self, component: int, address: Address, now: float) -> None:
        self._consent_seen[component] = now
        self._consent_due.setdefault(component, now + CONSENT_INTERVAL)
        if self.selected.get(component) == address:
            return
        self.selected[component] = address
        self._events.append(Selected(component, address))
        if all(c in self.selected for c in self.components):
            self._set_state(IceState.CONNECTED)

    def _set_state(self, state: IceState) -> None:
        if state is not self.state:
            self.state = state
            self._events.append(StateChanged(state))

    def _check_failed(self) -> None:
        if self.selected or any(p.state is not PairState.FAILED for p in self._pairs.values()):
            return
        self._set_state(IceState.FAILED)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        if self.remote is None or self.lite:
            return None
        due = [p.due for p in self._pairs.values() if p.state is PairState.IN_PROGRESS]
        if self._triggered or any(p.state is PairState.WAITING for p in self._pairs.values()):
            due.append(self._next_check)
        due.extend(self._consent_due.values())
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        if self.remote is None or self.lite:
            return
        for pair in self._pairs.values():
            if pair.state is PairState.IN_PROGRESS and pair.due <= now:
                if pair.tries >= MAX_TRIES:
                    pair.state = PairState.FAILED
                    pair.transaction = b""
                    self._check_failed()
                else:
                    self._send_check(pair, now, retransmit=True)
        if now >= self._next_check:
            waiting = self._next_waiting()
            if waiting is not None:
                self._send_check(waiting, now)
                self._next_check = now + PACING
        for component, due in list(self._consent_due.items()):
            if due > now:
                continue
            self._consent_due[component] = now + CONSENT_INTERVAL * (
                0.8 + 0.4 * secrets.randbelow(1000) / 1000
            )
            address = self.selected.get(component)
            if address is None:
                continue
            if now - self._consent_seen.get(component, now) >= CONSENT_TIMEOUT:
                del self.selected[component]
                self._events.append(Selected(component, None))
                self._set_state(IceState.FAILED)
                continue
            selected = self._pairs.get((component, address))
            if selected is not None and selected.state is not PairState.IN_PROGRESS:
                self._send_check(selected, now)

    def _next_waiting(self) -> CandidatePair | None:
        while self._triggered:
            pair = self._triggered.pop(0)
            if pair.state is PairState.WAITING:
                return pair
        waiting = [p for p in self._pairs.values() if p.state is PairState.WAITING]
        return max(waiting, key=lambda p: p.priority) if waiting else None

    def _send_check(self, pair: CandidatePair, now: float, retransmit: bool = False) -> None:
        assert self.remote is not None
        if not retransmit:
            pair.transaction = secrets.token_bytes(12)
            pair.tries = 0
            pair.rto = FIRST_RTO
        pair.sent_controlling = self.controlling
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, pair.transaction)
        request.attributes["USERNAME"] = f"{self.remote.ufrag}:{self.local.ufrag}"
        request.attributes["PRIORITY"] = candidate_priority(
            PEER_REFLEXIVE_TYPE_PREFERENCE, 65535, pair.component
        )
        if self.controlling:
            request.attributes["ICE-CONTROLLING"] = self.tie_breaker
            if pair.nominating:
                request.attributes["USE-CANDIDATE"] = None
        else:
            request.attributes["ICE-CONTROLLED"] = self.tie_breaker
        request.add_message_integrity(self.remote.pwd.encode())
        self._transmits.append(Transmit(pair.component, pair.remote, bytes(request)))
        pair.state = PairState.IN_PROGRESS
        pair.tries += 1
        pair.due = now + pair.rto
        pair.rto = min(pair.rto * 2, MAX_RTO)

    # ------------------------------------------------------------------ output

    def take_transmits(self) -> list[Transmit]:
        transmits, self._transmits = self._transmits, []
        return transmits

    def take_events(self) -> list[IceEvent]:
        events, self._events = self._events, []
        return events


def is_stun(data: bytes) -> bool:
    """RFC 7983 demultiplexing: a first octet of 0-3 and STUN's magic cookie."""
    return len(data) >= 20 and data[0] < 4 and data[4:8] == b"\x21\x12\xa4\x42"
