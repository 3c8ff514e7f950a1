"""What the engine asks the media node to do once a request (or a timer) has been applied.

Effects come out only for changes that completed: a failed offer or answer produces none. The I/O
layer applies them in order: closes, then opens, then configurations (a configuration may name as
sink a stream opened in the same batch), then the call's persistence and end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from karl_core.session import CallState, PacketStreamState
from karl_medianode.engine.streams import StreamSpec


@dataclass(frozen=True)
class OpenStream:
    """Start relaying on the reserved port `spec.port`; `restored`: counters and learned addresses
    carried over from a stored call."""

    spec: StreamSpec
    restored: PacketStreamState | None = None


@dataclass(frozen=True)
class ConfigureStream:
    """Make the open stream `spec.port` behave as `spec` says."""

    spec: StreamSpec


@dataclass(frozen=True)
class CloseStream:
    """Stop relaying on `port` and free it."""

    port: int


@dataclass(frozen=True)
class SendDatagram:
    """Send `data` from the open stream `port` to `destination` (ICE connectivity checks and their
    answers)."""

    port: int
    destination: tuple[str, int]
    data: bytes


@dataclass(frozen=True)
class SendToPeer:
    """Send `data` from the open stream `port` to its party, wherever the relay sends its media now
    (a DTLS client's first flight: the party's address is what ICE or latching found)."""

    port: int
    data: bytes


@dataclass(frozen=True)
class SetPeer:
    """ICE chose where the party of stream `port` receives media (None: nowhere, consent was lost)."""

    port: int
    address: tuple[str, int] | None


@dataclass(frozen=True)
class CallChanged:
    """The call's state changed in a way a store must keep (signalling, switches, a learned address)."""

    call_id: str


@dataclass
class CallEnded:
    """A call was finally removed (for CDRs, metrics, logs and the store).

    `reason`: deleted, timeout, silent timeout, final timeout, offer timeout or shutdown (a failed
    offer/answer ends no call: it is rolled back). `ended` is when the call ended for its parties
    (the delete request, not the end of the delete delay). `state` is the full session, with each
    stream's final counters."""

    call_id: str
    reason: str
    created: float
    ended: float
    state: CallState | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    """`CallQuality.summary()`: what the parties' RTCP reports said."""


Effect = (
    OpenStream | ConfigureStream | CloseStream | SendDatagram | SendToPeer | SetPeer | CallChanged | CallEnded
)


@dataclass
class Outcome:
    """The reply to one request (with `result`) and what must happen for it to be true."""

    reply: dict[str, Any]
    effects: list[Effect] = field(default_factory=list)
