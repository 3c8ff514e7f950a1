"""A call as the engine holds it: the shared session state plus the specs of its media sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

from karl_core.session import CallState, MediaState, Monologue
from karl_medianode.engine.streams import MediaPorts, StreamSpec
from karl_medianode.quality import CallQuality


@dataclass
class Call:
    state: CallState
    ports: dict[tuple[int, int], MediaPorts] = field(default_factory=dict)
    """(monologue uid, media index) → the sockets towards that party for that media."""
    quality: CallQuality = field(default_factory=CallQuality)
    """RTCP statistics (MOS, jitter, loss, RTT) per SSRC; the data plane feeds it."""

    @property
    def call_id(self) -> str:
        return self.state.call_id

    @property
    def last_activity(self) -> float:
        """When signalling last happened (media counts too; see the streams); drives the media timeout."""
        return self.state.last_activity

    @last_activity.setter
    def last_activity(self, value: float) -> None:
        self.state.last_activity = value

    @property
    def ended_at(self) -> float | None:
        """When the whole call was deleted (its delete delay may still be running)."""
        return self.state.ended_at

    @ended_at.setter
    def ended_at(self, value: float | None) -> None:
        self.state.ended_at = value

    def media_ports(self, mono: Monologue, media: MediaState) -> MediaPorts:
        key = (mono.uid, media.index)
        found = self.ports.get(key)
        if found is None:
            found = self.ports[key] = MediaPorts()
        return found

    def all_streams(self) -> list[StreamSpec]:
        return [s for ports in self.ports.values() for s in ports.streams()]

    def monologue_streams(self, mono: Monologue) -> list[StreamSpec]:
        return [s for (uid, _), ports in self.ports.items() if uid == mono.uid for s in ports.streams()]

    def stream_table(self) -> dict[int, StreamSpec]:
        """Every stream by port: what `CallChange` compares before and after a change."""
        return {s.port: s for ports in self.ports.values() for s in ports.all_specs()}
