"""Direction attributes: a=sendrecv, a=sendonly, a=recvonly, a=inactive."""

from __future__ import annotations

import enum


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @classmethod
    def from_name(cls, name: str) -> Direction | None:
        """The direction an attribute name stands for (case-sensitive, like rtpengine:
        "a=SendOnly" is not a direction attribute there; "a=sendonly:x" is)."""
        return _BY_NAME.get(name)

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    def reversed(self) -> Direction:
        """The direction as seen from the other side (sendonly <-> recvonly)."""
        return _REVERSED[self]


_BY_NAME = {d.value: d for d in Direction}
_REVERSED = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


def rtpengine_direction(media_names: set[str], session_names: set[str]) -> Direction:
    """The direction rtpengine 10.5 derives for a media section from the attribute names present
    in it and in its session.

    Probed: media and session level are looked at together, and the checks go recvonly, then
    sendonly, then inactive, whatever the order of the lines: session a=recvonly with media
    a=sendonly gives recvonly; media a=inactive + a=recvonly gives recvonly; nothing gives
    sendrecv (a=sendrecv itself is never consulted)."""
    names = media_names | session_names
    for direction in (Direction.RECVONLY, Direction.SENDONLY, Direction.INACTIVE):
        if direction.value in names:
            return direction
    return Direction.SENDRECV
