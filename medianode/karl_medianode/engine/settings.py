"""What the engine is told (its settings) and what it counts (plain integers the metrics read)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from karl_medianode.dtls.certificate import DtlsCertificate

JITTER_BUFFER_BOUNDS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3)


# Karl's own error texts (rtpengine has none for these; the call is left as it was).
TOO_MANY_MEDIA = "Too many media in SDP"
REPLY_TOO_LARGE = "Reply too large for one NG datagram"

# rtpengine knows these commands; Karl does not implement them yet and says so instead of faking success.
NOT_SUPPORTED = "Command not supported by Karl yet"

ReplyCheck = Callable[[dict[str, Any]], bool]
"""Told an offer's/answer's reply before it commits; False: the reply cannot be sent (too large)."""


class LoadLimit(Exception):
    """A new call was refused because the node is full."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class JitterBufferSettings:
    """`jitter_buffer` of the configuration, in seconds."""

    min_delay: float = 0.02
    max_delay: float = 0.2
    adaptive: bool = True


@dataclass
class EngineSettings:
    advertised_ip: str
    media_ip: str
    max_sessions: int = 10000
    max_media: int = 64
    """`m=` lines one SDP may carry."""
    loop_marker: str | None = None
    """What `loop-protect` writes (`a=rtpengine:<marker>`); None: a random one for this engine."""
    delete_delay: float = 30.0
    timeout: float = 60.0
    silent_timeout: float = 3600.0
    final_timeout: float = 0.0
    offer_timeout: float = 3600.0
    jitter_buffer: JitterBufferSettings | None = None
    """RTP of new streams goes through a jitter buffer (None: off, the default)."""
    key_source: Callable[[int], bytes] = field(default=secrets.token_bytes, repr=False)
    """Random bytes for Karl's SRTP master keys and salts (tests may pass a deterministic one)."""
    dtls_certificate: DtlsCertificate = field(default_factory=DtlsCertificate.generate, repr=False)
    """What Karl proves itself with in DTLS handshakes (the fleet's, see `dtls.certificate`)."""


@dataclass
class EngineCounters:
    """Node-wide counters, plain integers (exported at scrape time, never per packet)."""

    managed_sessions: int = 0
    rejected_sessions: int = 0
    timeout_sessions: int = 0
    silent_timeout_sessions: int = 0
    final_timeout_sessions: int = 0
    offer_timeout_sessions: int = 0
    regular_terminated: int = 0
    forced_terminated: int = 0
    closed_packets: int = 0
    closed_bytes: int = 0
    closed_errors: int = 0
    closed_dropped: int = 0  # relay drops of streams already closed (blocked, no destination, ...)
    total_call_seconds: float = 0.0
    ended_calls: int = 0
    ports_exhausted: int = 0
    failed_changes: int = 0
    """Offers/answers that failed and were rolled back (the call, if any, is as it was)."""
    too_many_media: int = 0
    replies_too_large: int = 0
    srtp_termination_refused: int = 0
    fragments_dropped: int = 0
    """Trickle-ICE fragments for calls that did not exist yet, not kept (too many waiting)."""
    ended_by_reason: dict[str, int] = field(default_factory=dict)
