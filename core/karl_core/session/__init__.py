"""The session model: call → monologues (tags) → media → packet streams, with a stable serialization."""

from karl_core.session.model import (
    SCHEMA_VERSION,
    Address,
    CallState,
    Codec,
    Endpoint,
    EndpointLearning,
    MediaState,
    Monologue,
    PacketStreamState,
    SessionSchemaError,
    SrtpProgress,
    StreamPolicy,
)

__all__ = [
    "SCHEMA_VERSION",
    "Address",
    "CallState",
    "Codec",
    "Endpoint",
    "EndpointLearning",
    "MediaState",
    "Monologue",
    "PacketStreamState",
    "SessionSchemaError",
    "SrtpProgress",
    "StreamPolicy",
]
