"""What the engine reads of the data plane: per stream, what packets did (counters, learned source).

The engine decides from it (media timeouts, `query`, the stored state) but never changes it. The
media node's relay answers from its live sockets; `NoMedia` is a data plane where no packet ever
arrived (engine tests, and a stream the data plane has not opened yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from karl_core.session import Address, SrtpProgress

STREAM_COUNTERS = (
    "rtcp_packets",
    "rtcp_bytes",
    "malformed",
    "dropped_blocked",
    "dropped_no_destination",
    "dropped_source",
    "dropped_malformed",
    "failures",
    "gaps",
    "late",
    "sequence_restarts",
    "quality_failures",
    "srtp_failures",
)
"""The data plane's other counters by name (besides packets, bytes, errors and lost): what a stored
stream keeps in `counters` and a restored one carries on."""


class StreamReading(Protocol):
    """What the data plane knows of one stream. The media node's `PacketStream` is one (read where
    it lives, nothing copied); `Reading` is the plain-data one."""

    @property
    def endpoint(self) -> Address | None:
        """Where packets to the party go now (learned, else advertised)."""
        ...

    @property
    def learned(self) -> Address | None: ...

    @property
    def confirmed(self) -> bool: ...

    @property
    def packets(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    @property
    def errors(self) -> int: ...

    @property
    def lost(self) -> int: ...

    @property
    def last_packet(self) -> float: ...

    @property
    def last_ssrc(self) -> int | None:
        """SSRC of the last RTP received."""
        ...

    @property
    def last_payload_type(self) -> int | None: ...

    @property
    def last_rtcp_ssrc(self) -> int | None: ...

    def stored_counters(self) -> dict[str, int]:
        """The other counters (`STREAM_COUNTERS`), non-zero ones only."""
        ...

    @property
    def srtp_received(self) -> tuple[SrtpProgress, ...]:
        """How far the SRTP of what the party sends got, per SSRC (none: not SRTP)."""
        ...

    @property
    def srtp_sent(self) -> tuple[SrtpProgress, ...]:
        """How far the SRTP of what Karl sends the party got, per SSRC."""
        ...


@dataclass(frozen=True)
class Reading:
    """A `StreamReading` as plain data (a stream nothing arrived on, or a test's)."""

    endpoint: Address | None = None
    learned: Address | None = None
    confirmed: bool = False
    packets: int = 0
    bytes: int = 0
    errors: int = 0
    lost: int = 0
    last_packet: float = 0.0
    last_ssrc: int | None = None
    last_payload_type: int | None = None
    last_rtcp_ssrc: int | None = None
    counters: Mapping[str, int] = field(default_factory=dict)
    srtp_received: tuple[SrtpProgress, ...] = ()
    srtp_sent: tuple[SrtpProgress, ...] = ()

    def stored_counters(self) -> dict[str, int]:
        return {name: value for name, value in self.counters.items() if value}


def dropped(seen: StreamReading) -> int:
    """Datagrams the stream received and did not forward (blocked, nowhere to go, wrong source, bad)."""
    c = seen.stored_counters()
    return (
        c.get("dropped_blocked", 0)
        + c.get("dropped_no_destination", 0)
        + c.get("dropped_source", 0)
        + c.get("dropped_malformed", 0)
        + c.get("srtp_failures", 0)
    )


class MediaView(Protocol):
    def read(self, port: int) -> StreamReading | None:
        """The stream on `port`, or None if the data plane has none there (not opened yet)."""
        ...

    def last_packet(self, ports: Iterable[int]) -> float:
        """When the last packet arrived on any of `ports` (0.0: never)."""
        ...


class NoMedia:
    """A data plane on which nothing arrives."""

    def read(self, port: int) -> StreamReading | None:
        return None

    def last_packet(self, ports: Iterable[int]) -> float:
        return 0.0
