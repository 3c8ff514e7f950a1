"""Media counters that survive their streams: live streams are summed at scrape time, closed ones are
folded into running totals when the relay closes them (the relay's own counters die with the stream).

Direction: a stream is the socket one party sends to, so what it receives comes *from* that party. The
party's role in the call gives the direction: `from_caller` (the party that sent the first offer) or
`from_callee` (a party created to answer it, `Monologue.answerer`). A stream closed mid-call (re-INVITE
changing the media, a fork replaced) before any scrape saw it has no known party any more and counts as
`unattributed`; everything else is attributed exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from karl_medianode.dataplane.relay import PacketStream

if TYPE_CHECKING:
    from karl_medianode.control.engine_driver import EngineDriver
    from karl_medianode.engine import CallEnded

FROM_CALLER = "from_caller"
FROM_CALLEE = "from_callee"
UNATTRIBUTED = "unattributed"
DIRECTIONS = (FROM_CALLER, FROM_CALLEE, UNATTRIBUTED)


class DirectionTotals:
    """Sums of the relay's per-stream counters for the streams of one direction."""

    __slots__ = (
        "dropped_blocked",
        "dropped_malformed",
        "dropped_no_destination",
        "dropped_source",
        "failures",
        "malformed",
        "rtcp_bytes",
        "rtcp_errors",
        "rtcp_packets",
        "rtcp_streams",
        "rtp_bytes",
        "rtp_errors",
        "rtp_late",
        "rtp_lost",
        "rtp_packets",
        "rtp_streams",
        "srtp_failures",
    )

    def __init__(self) -> None:
        self.rtp_packets = 0
        self.rtp_bytes = 0
        self.rtcp_packets = 0
        self.rtcp_bytes = 0
        self.rtp_errors = 0
        self.rtp_lost = 0
        self.rtp_late = 0
        self.rtcp_errors = 0
        self.malformed = 0
        self.dropped_blocked = 0
        self.dropped_no_destination = 0
        self.dropped_source = 0
        self.dropped_malformed = 0
        self.failures = 0
        self.srtp_failures = 0
        self.rtp_streams = 0
        self.rtcp_streams = 0

    def add(self, s: PacketStream) -> None:
        if s.is_rtcp:
            self.rtcp_packets += s.packets
            self.rtcp_bytes += s.bytes
            self.rtcp_errors += s.errors
            self.rtcp_streams += 1
        else:
            # RTCP multiplexed on the RTP port is counted apart by the relay
            muxed_packets = s.rtcp_packets
            muxed_bytes = s.rtcp_bytes
            self.rtp_packets += s.packets - muxed_packets
            self.rtp_bytes += s.bytes - muxed_bytes
            self.rtcp_packets += muxed_packets
            self.rtcp_bytes += muxed_bytes
            self.rtp_errors += s.errors
            self.rtp_lost += s.gaps
            self.rtp_late += s.late
            self.malformed += s.malformed
            self.rtp_streams += 1
        self.dropped_blocked += s.dropped_blocked
        self.dropped_no_destination += s.dropped_no_destination
        self.dropped_source += s.dropped_source
        self.dropped_malformed += s.dropped_malformed
        self.failures += s.failures
        self.srtp_failures += s.srtp_failures

    def plus(self, other: DirectionTotals) -> DirectionTotals:
        total = DirectionTotals()
        for name in DirectionTotals.__slots__:
            setattr(total, name, getattr(self, name) + getattr(other, name))
        return total


def empty_totals() -> dict[str, DirectionTotals]:
    return {direction: DirectionTotals() for direction in DIRECTIONS}


class LiveMedia:
    """What a scan of the live streams found, besides the per-direction counter sums."""

    __slots__ = ("blocked_streams", "confirmed_rtcp", "confirmed_rtp", "totals")

    def __init__(self) -> None:
        self.totals = empty_totals()
        self.confirmed_rtp = 0
        self.confirmed_rtcp = 0
        self.blocked_streams = 0


class MediaLedger:
    def __init__(self) -> None:
        self.closed = empty_totals()
        # direction of every stream seen by the last scan; streams closed later are attributed by it
        self._directions: dict[PacketStream, str] = {}
        # streams closed before any scan saw them, attributed when their call's end is reported
        self._pending: list[PacketStream] = []

    def stream_closed(self, stream: PacketStream) -> None:
        """The relay closed `stream`: its counters are final."""
        direction = self._directions.pop(stream, None)
        if direction is None:
            self._pending.append(stream)
        else:
            self.closed[direction].add(stream)

    def call_ended(self, ended: CallEnded) -> None:
        """The engine closes a call's streams just before it reports the end; attribute them by the
        party that owned each local port in the call's final state."""
        if not self._pending:
            return
        owner: dict[tuple[str, int], str] = {}
        if ended.state is not None:
            for mono in ended.state.monologues.values():
                direction = FROM_CALLEE if mono.answerer else FROM_CALLER
                for media in mono.medias:
                    for stream_state in media.streams:
                        owner[(stream_state.local_address, stream_state.local_port)] = direction
        self._flush_pending(owner)

    def _flush_pending(self, owner: dict[tuple[str, int], str]) -> None:
        for stream in self._pending:
            direction = owner.get((stream.local_ip, stream.local_port), UNATTRIBUTED)
            self.closed[direction].add(stream)
        self._pending.clear()

    def scan(self, engine: EngineDriver | None) -> LiveMedia:
        """Sum the live streams (O(streams)) and remember each one's direction."""
        self._flush_pending({})
        live = LiveMedia()
        directions: dict[PacketStream, str] = {}
        if engine is not None:
            caller = live.totals[FROM_CALLER]
            callee = live.totals[FROM_CALLEE]
            for call in engine.all_calls():
                monologues = call.state.monologues
                for uid, index in call.ports:
                    mono = monologues.get(uid)
                    is_callee = mono is not None and mono.answerer
                    totals = callee if is_callee else caller
                    direction = FROM_CALLEE if is_callee else FROM_CALLER
                    for stream in engine.media_streams(call, uid, index):
                        if stream is None:
                            continue
                        totals.add(stream)
                        directions[stream] = direction
                        if stream.confirmed:
                            if stream.is_rtcp:
                                live.confirmed_rtcp += 1
                            else:
                                live.confirmed_rtp += 1
                        if stream.blocked:
                            live.blocked_streams += 1
        self._directions = directions
        return live
