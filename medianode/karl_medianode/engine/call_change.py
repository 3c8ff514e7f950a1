"""One request applied to a call as a unit: it either completes, or leaves the call as it was.

rtpengine 10.5 ends the whole call when a re-offer fails (e.g. `Ran out of ports` for a re-INVITE that
adds video). Karl keeps the call. The engine changes only its own data while it applies a request:
the call's state and its stream specs. A `CallChange` remembers both as they were, and the ports
reserved since:

* on failure everything is put back and the reserved ports are given back to the pool; the data
  plane never saw anything, so media keeps flowing on the old ports and `query` answers as before
  (a failed first offer leaves no call at all);
* on success the specs before and after are compared, and the differences become the effects (close,
  open, configure) the I/O layer applies — the only moment the data plane is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from karl_core.session import CallState
from karl_medianode.engine.calls import Call
from karl_medianode.engine.effects import CallEnded, CloseStream, ConfigureStream, Effect, OpenStream
from karl_medianode.engine.streams import MediaPorts, StreamSpec


@dataclass
class CallChange:
    call: Call
    new_call: bool
    can_fail: bool = True
    """An offer or answer: the call's state is remembered to be put back. Other changes (delete,
    block, timers) cannot fail half-way and only need the streams as they were."""
    reserved: list[int] = field(default_factory=list)
    """Ports reserved during the change (given back if it fails)."""
    ended: CallEnded | None = None
    """The change ended the call."""
    _state: CallState | None = None
    _ports: dict[
        tuple[int, int],
        tuple[
            StreamSpec | None,
            StreamSpec | None,
            tuple[StreamSpec, ...],
            dict[int, tuple[StreamSpec, ...]],
        ],
    ] = field(default_factory=dict)
    _before: dict[int, StreamSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        call = self.call
        self._before = {port: spec.copy() for port, spec in call.stream_table().items()}
        if self.can_fail and not self.new_call:  # (a failed first offer just removes the call)
            self._state = call.state.clone()
            self._ports = {
                key: (mp.rtp, mp.rtcp, mp.parked, dict(mp.branches)) for key, mp in call.ports.items()
            }

    def restore(self) -> list[int]:
        """Put the call back as it was; returns the ports the change reserved (the caller gives them
        back to the pool)."""
        call = self.call
        assert self.can_fail
        if self._state is None:
            return list(self.reserved)
        call.state = self._state
        call.ports = {}
        for key, (rtp, rtcp, parked, branches) in self._ports.items():
            call.ports[key] = MediaPorts(
                self._before[rtp.port] if rtp is not None else None,
                self._before[rtcp.port] if rtcp is not None else None,
                tuple(self._before[stream.port] for stream in parked),
                {
                    fork: tuple(self._before[stream.port] for stream in kept)
                    for fork, kept in branches.items()
                },
            )
        return list(self.reserved)

    def effects(self) -> list[Effect]:
        """What the data plane must do for the call to be as it is now."""
        before = self._before
        after = self.call.stream_table()
        closed: list[Effect] = [CloseStream(port) for port in before if port not in after]
        opened: list[Effect] = [OpenStream(spec.copy()) for port, spec in after.items() if port not in before]
        configured: list[Effect] = [
            ConfigureStream(spec.copy())
            for port, spec in after.items()
            if port not in before or before[port] != spec
        ]
        return closed + opened + configured
