"""The m= line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..memo import short_text_cache
from .cnumbers import atoi, strtol, strtoul, to_c_uint
from .errors import SdpError
from .protocols import is_rtp_protocol
from .tokens import iter_list_tokens, split_tokens

MAX_PORT_COUNT = 10  # rtpengine 10.5 rejects m=<port>/<n> with n > 10 (and n <= 0)


@dataclass(frozen=True, slots=True)
class MediaLine:
    """`m=<media> <port>[/<port count>] <proto> <format> ...`.

    `formats` are the raw tokens after the protocol ("0 8 101" -> ("0", "8", "101")); an empty tuple
    means nothing (not even a space) followed the protocol. `port_token` is the port token as
    received when it is not the canonical text of port/port_count ("00", "12abc", "2000/2x"), else
    None; `render()` uses it verbatim so an untouched line renders byte-exactly, and `with_port()`
    drops it so a new port is printed canonically."""

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...] = ()
    port_token: str | None = None

    @classmethod
    def parse(cls, value: str) -> MediaLine:
        """Parse as rtpengine 10.5 does; SdpError whenever it answers "Failed to parse SDP".

        Probed: the port is read with strtol, so "12abc" is port 12 and "+2000" is 2000, and two
        spaces before the port make an empty port token whose number is read from the next token
        (rtpengine then treats the following token as the protocol). Ports outside 0..65535, a
        missing protocol, and a "/n" count outside 1..10 (read with atoi) are errors.

        Cached (the line is immutable): an offer or answer reads each m= line three times, to
        validate it, to read what it offers and to rewrite it."""
        return _parsed_media_line(value)

    @classmethod
    def _parse_uncached(cls, value: str) -> MediaLine:
        split = split_tokens(value, 3)
        if split is None:
            raise SdpError("malformed m= line", repr(value))
        (media, port_token, proto), starts, rest = split
        parsed = strtol(value, starts[1])
        if parsed is None:
            raise SdpError("m= port is not a number", repr(value))
        port, end = parsed
        if not 0 <= port <= 0xFFFF:
            raise SdpError("m= port out of range", repr(value))
        port_count: int | None = None
        if end < len(value) and value[end] == "/":
            port_count = atoi(value, end + 1)
            if not 0 < port_count <= MAX_PORT_COUNT:
                raise SdpError("m= port count out of range", repr(value))
        formats = () if rest is None else tuple(rest.split(" "))
        line = cls(media, port, port_count, proto, formats)
        return line if line.port_text() == port_token else replace(line, port_token=port_token)

    @classmethod
    def build(
        cls, media: str, port: int, proto: str, formats: Iterable[str | int], port_count: int | None = None
    ) -> MediaLine:
        """A new m= line with canonical spacing."""
        return cls(media, port, port_count, proto, tuple(str(f) for f in formats))

    def port_text(self) -> str:
        if self.port_token is not None:
            return self.port_token
        return str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"

    def render(self) -> str:
        return f"{self.media} {self.port_text()} {self.proto}" + "".join(" " + f for f in self.formats)

    @property
    def is_rtp(self) -> bool:
        return is_rtp_protocol(self.proto)

    @property
    def stream_count(self) -> int:
        """Number of consecutive port pairs (1 without a "/n")."""
        return 1 if self.port_count is None else self.port_count

    # (the constructor, not dataclasses.replace: several times faster, and every SDP sent on edits its
    # m= lines)

    def with_port(self, port: int, port_count: int | None = None) -> MediaLine:
        return MediaLine(self.media, port, port_count, self.proto, self.formats)

    def with_proto(self, proto: str) -> MediaLine:
        return MediaLine(self.media, self.port, self.port_count, proto, self.formats, self.port_token)

    def with_formats(self, formats: Iterable[str | int]) -> MediaLine:
        tokens = tuple(str(f) for f in formats)
        return MediaLine(self.media, self.port, self.port_count, self.proto, tokens, self.port_token)

    def format_list(self) -> list[str]:
        """The format tokens rtpengine iterates: `formats` without a final empty token."""
        return [token for token, _ in iter_list_tokens(" ".join(self.formats))] if self.formats else []

    def payload_types(self) -> list[int]:
        """The RTP payload type numbers as rtpengine 10.5 reads them from the format list.

        Probed: each token is read with strtoul and cast to a 32-bit unsigned int, which must be at
        most 127: "8x" -> 8, "+8" -> 8, "4294967296" -> 0, "-4294967295" -> 1, an empty token (two
        spaces) reads the following number again. A token without digits ("*", "abc"), "-1", "128"
        or anything overflowing raises SdpError (rtpengine: "Incomplete SDP specification")."""
        text = " ".join(self.formats)
        out: list[int] = []
        for token, start in iter_list_tokens(text):
            parsed = strtoul(text, start)
            if parsed is None:
                raise SdpError("payload type is not a number", repr(token))
            pt = to_c_uint(parsed[0])
            if pt > 127:
                raise SdpError("payload type out of range", repr(token))
            out.append(pt)
        return out


@short_text_cache(maxsize=1024, max_length=256)
def _parsed_media_line(value: str) -> MediaLine:
    return MediaLine._parse_uncached(value)
