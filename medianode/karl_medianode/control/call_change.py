"""One offer or answer applied to a call as a unit: it either completes, or leaves the call as it was.

rtpengine 10.5 ends the whole call when a re-offer fails (e.g. `Ran out of ports` for a re-INVITE that
adds video). Karl keeps the call: before an offer/answer touches a call, a `CallChange` remembers what
the change can alter — the call's signalling state, its socket table, and the forwarding setup of its
live streams — and:

* sockets the change gives up are only *retired* (kept open, still relaying) until the change commits;
* sockets it opens are *opened* and closed again if it fails;
* on failure everything remembered is put back, so media keeps flowing on the old ports and `query`
  answers exactly as before. A failed first offer leaves no call at all.

Requests are applied synchronously (no await between request and reply), so no packet is relayed
while a change is open and restoring the streams' setup is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from karl_medianode.control.calls import Call, MediaSockets
from karl_medianode.dataplane.relay import MediaStage, PacketStream

# What signalling may change on a live stream (never its counters: no packet moves during a change).
_STREAM_SETUP = (
    "sdp_peer",
    "advertised",
    "endpoint",
    "learned",
    "confirmed",
    "learning",
    "last_signal",
    "sink",
    "rtcp_sink",
    "rtcp_mux",
    "asymmetric",
    "strict_source",
    "media_handover",
    "blocked",
    "silence",
    "payload_types",
    "quality",
    "jitter",
)


def _stream_setup(stream: PacketStream) -> tuple[Any, ...]:
    detected = stream._detected
    return (
        *(getattr(stream, name) for name in _STREAM_SETUP),
        None if detected is None else list(detected),
    )


def _restore_stream_setup(stream: PacketStream, saved: tuple[Any, ...]) -> None:
    for name, value in zip(_STREAM_SETUP, saved, strict=False):
        setattr(stream, name, value)
    stream._detected = saved[-1]


@dataclass
class CallChange:
    """What an offer/answer did to `call` so far; see the module docstring."""

    call: Call
    new_call: bool
    opened: list[PacketStream] = field(default_factory=list)
    retired: list[PacketStream] = field(default_factory=list)
    retired_jitter: list[MediaStage] = field(default_factory=list)
    _state: Any = None
    _sockets: dict[tuple[int, int], tuple[MediaSockets, PacketStream | None, PacketStream | None]] = field(
        default_factory=dict
    )
    _streams: dict[PacketStream, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        call = self.call
        if self.new_call:
            return  # nothing to restore: a failed first offer removes the call
        self._state = call.state.clone()
        self._sockets = {key: (ms, ms.rtp, ms.rtcp) for key, ms in call.sockets.items()}
        self._streams = {stream: _stream_setup(stream) for stream in call.all_streams()}

    def restore(self) -> list[PacketStream]:
        """Put the call back as it was; returns the streams the change opened (the caller closes them).
        New jitter stages the change attached to old streams are closed here."""
        call = self.call
        if not self.new_call:
            call.state = self._state
            call.sockets.clear()
            for key, (ms, rtp, rtcp) in self._sockets.items():
                ms.rtp, ms.rtcp = rtp, rtcp
                call.sockets[key] = ms
            for stream, saved in self._streams.items():
                attached = stream.jitter
                _restore_stream_setup(stream, saved)
                if attached is not None and attached is not stream.jitter:
                    attached.close()
        return list(self.opened)
