"""The call engine, sans-IO: rtpengine's call semantics as a state machine with injected time, ports
and media readings, returning replies and effects. Nothing here opens a socket, reads a clock or
awaits (import-linter keeps it so); the media node's `control.engine_driver` applies the effects."""

from karl_medianode.engine.calls import Call
from karl_medianode.engine.effects import (
    CallChanged,
    CallEnded,
    CloseStream,
    ConfigureStream,
    Effect,
    OpenStream,
    Outcome,
    SendDatagram,
    SendToPeer,
    SetPeer,
)
from karl_medianode.engine.engine import CallEngine
from karl_medianode.engine.media_view import MediaView, NoMedia, Reading, StreamReading
from karl_medianode.engine.ports import PortPool, PortRange, PortsExhausted
from karl_medianode.engine.settings import (
    JITTER_BUFFER_BOUNDS,
    NOT_SUPPORTED,
    EngineCounters,
    EngineSettings,
    JitterBufferSettings,
    LoadLimit,
    ReplyCheck,
)
from karl_medianode.engine.streams import MediaPorts, StreamSpec

__all__ = [
    "JITTER_BUFFER_BOUNDS",
    "NOT_SUPPORTED",
    "Call",
    "CallChanged",
    "CallEnded",
    "CallEngine",
    "CloseStream",
    "ConfigureStream",
    "Effect",
    "EngineCounters",
    "EngineSettings",
    "JitterBufferSettings",
    "LoadLimit",
    "MediaPorts",
    "MediaView",
    "NoMedia",
    "OpenStream",
    "Outcome",
    "PortPool",
    "PortRange",
    "PortsExhausted",
    "Reading",
    "ReplyCheck",
    "SendDatagram",
    "SendToPeer",
    "SetPeer",
    "StreamReading",
    "StreamSpec",
]
