"""Static RTP payload types (RFC 3551) and the names rtpengine 10.5 prints for them.

rtpengine writes an a=rtpmap line for every payload type of an RTP m= line, also for static
types that came without one. Probed with rtpengine 10.5 (m=audio and m=video alike):
- it names 0 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 25 26 28 31 32 33 34;
- 10 and 11 come out swapped compared with RFC 3551: "a=rtpmap:10 L16/44100" and
  "a=rtpmap:11 L16/44100/2" (the RFC has 10 = two channels, 11 = one);
- any other payload type without an a=rtpmap (unassigned static ones such as 1, 2, 19-24, 27, 29,
  30, 35, and dynamic ones) is printed as "a=rtpmap:<pt> /0".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StaticPayloadType:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1

    def encoding_text(self) -> str:
        """`<encoding>/<rate>[/<channels>]`, channels only when above one."""
        text = f"{self.encoding}/{self.clock_rate}"
        return f"{text}/{self.channels}" if self.channels > 1 else text


def _table(*entries: tuple[int, str, int, int]) -> dict[int, StaticPayloadType]:
    return {pt: StaticPayloadType(pt, name, rate, channels) for pt, name, rate, channels in entries}


_COMMON = (
    (0, "PCMU", 8000, 1),
    (3, "GSM", 8000, 1),
    (4, "G723", 8000, 1),
    (5, "DVI4", 8000, 1),
    (6, "DVI4", 16000, 1),
    (7, "LPC", 8000, 1),
    (8, "PCMA", 8000, 1),
    (9, "G722", 8000, 1),
    (12, "QCELP", 8000, 1),
    (13, "CN", 8000, 1),
    (14, "MPA", 90000, 1),
    (15, "G728", 8000, 1),
    (16, "DVI4", 11025, 1),
    (17, "DVI4", 22050, 1),
    (18, "G729", 8000, 1),
    (25, "CelB", 90000, 1),
    (26, "JPEG", 90000, 1),
    (28, "nv", 90000, 1),
    (31, "H261", 90000, 1),
    (32, "MPV", 90000, 1),
    (33, "MP2T", 90000, 1),
    (34, "H263", 90000, 1),
)

RFC3551_PAYLOAD_TYPES = _table(*_COMMON, (10, "L16", 44100, 2), (11, "L16", 44100, 1))
"""The static payload types as RFC 3551 assigns them."""

RTPENGINE_PAYLOAD_TYPES = _table(*_COMMON, (10, "L16", 44100, 1), (11, "L16", 44100, 2))
"""The static payload types as rtpengine 10.5 names them (10 and 11 swapped, see above)."""

UNKNOWN_ENCODING_TEXT = "/0"


def static_payload_type(pt: int) -> StaticPayloadType | None:
    """rtpengine's idea of a static payload type, None if it has none."""
    return RTPENGINE_PAYLOAD_TYPES.get(pt)


def rtpengine_rtpmap_text(pt: int) -> str:
    """What follows "a=rtpmap:<pt> " in rtpengine 10.5 output for a payload type that had no
    (valid) a=rtpmap in the received SDP: "PCMU/8000" for 0, "/0" for 96."""
    known = RTPENGINE_PAYLOAD_TYPES.get(pt)
    return UNKNOWN_ENCODING_TEXT if known is None else known.encoding_text()
