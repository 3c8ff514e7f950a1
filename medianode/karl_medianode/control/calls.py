"""A call as the media node holds it: the shared session state plus the relay's live sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

from karl_core.session import CallState, MediaState, Monologue
from karl_medianode.dataplane.relay import PacketStream
from karl_medianode.quality import CallQuality


@dataclass
class MediaSockets:
    """The proxy's sockets of one media of one party (the ports advertised *to* that party)."""

    rtp: PacketStream | None = None
    rtcp: PacketStream | None = None

    def streams(self) -> list[PacketStream]:
        return [s for s in (self.rtp, self.rtcp) if s is not None]


@dataclass
class Call:
    state: CallState
    sockets: dict[tuple[int, int], MediaSockets] = field(default_factory=dict)
    # RTCP statistics (MOS, jitter, loss, RTT) per SSRC, and which socket each RTP SSRC arrives on.
    quality: CallQuality = field(default_factory=CallQuality)
    rtp_sources: dict[int, PacketStream] = field(default_factory=dict)

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

    def media_sockets(self, mono: Monologue, media: MediaState) -> MediaSockets:
        key = (mono.uid, media.index)
        found = self.sockets.get(key)
        if found is None:
            found = self.sockets[key] = MediaSockets()
        return found

    def all_streams(self) -> list[PacketStream]:
        return [s for sockets in self.sockets.values() for s in sockets.streams()]

    def monologue_streams(self, mono: Monologue) -> list[PacketStream]:
        return [s for (uid, _), sockets in self.sockets.items() if uid == mono.uid for s in sockets.streams()]
