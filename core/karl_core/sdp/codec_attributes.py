"""a=rtpmap, a=fmtp and a=rtcp-fb: the per-payload-type attributes.

Each `parse` raises SdpError exactly when rtpengine 10.5 does not recognise the attribute; such a
line is then left in place like an unknown attribute (probed: "a=rtpmap:0 PCMU" and
"a=fmtp:abc q" survive a rewrite verbatim, next to the generated a=rtpmap lines)."""

from __future__ import annotations

from dataclasses import dataclass

from .cnumbers import str_to_i, strtol, strtoul, to_c_int, to_c_uint
from .errors import SdpError
from .tokens import split_tokens


@dataclass(frozen=True, slots=True)
class RtpMap:
    """`a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`; channels None when not given (or not
    a number, which rtpengine ignores)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        """Probed rules: the payload type and clock rate are read like strtoul ("8abc" -> 8,
        "+8000" -> 8000, "4294967296" -> 0); the clock rate must be a number up to the next "/"
        ("80x" fails); "PCMU" without a rate fails; two spaces after the payload type fail;
        anything after the encoding token is ignored."""
        split = split_tokens(value, 2)
        if split is None:
            raise SdpError("malformed a=rtpmap", repr(value))
        (_, enc), starts, _ = split
        pt = strtoul(value, starts[0])
        if pt is None:
            raise SdpError("a=rtpmap payload type is not a number", repr(value))
        encoding, slash, params = enc.partition("/")
        if not slash:
            raise SdpError("a=rtpmap without clock rate", repr(value))
        clock_text, slash, channel_text = params.partition("/")
        clock = strtoul(clock_text) if clock_text else None
        if clock is None or clock[1] != len(clock_text):
            raise SdpError("a=rtpmap clock rate is not a number", repr(value))
        channels: int | None = None
        if channel_text:
            parsed = strtol(channel_text)
            if parsed is not None and parsed[1] == len(channel_text) and parsed[0] != 0:
                channels = to_c_int(parsed[0])
        return cls(to_c_uint(pt[0]), encoding, to_c_uint(clock[0]), channels)

    def encoding_text(self) -> str:
        """`<encoding>/<rate>[/<channels>]` as rtpengine 10.5 prints it in the a=rtpmap lines it
        generates: rebuilt from the numbers ("L16/+8000" -> "L16/8000") and the channel count only
        when above one ("speex/16000/1" -> "speex/16000")."""
        text = f"{self.encoding}/{self.clock_rate}"
        return f"{text}/{self.channels}" if self.channels is not None and self.channels > 1 else text

    def render(self) -> str:
        channels = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{channels}"


@dataclass(frozen=True, slots=True)
class Fmtp:
    """`a=fmtp:<pt> <params>`; params is everything after the first space, verbatim."""

    payload_type: int
    params: str = ""

    @classmethod
    def parse(cls, value: str) -> Fmtp:
        """Probed rules: the payload type is read with str_to_i ("0abc" -> 0, "abc" fails);
        "a=fmtp:8  y=2" has params " y=2"; "a=fmtp:9\\tz=3" is payload type 9 with empty params."""
        split = split_tokens(value, 1)
        if split is None:
            raise SdpError("malformed a=fmtp", repr(value))
        (pt_text,), _, rest = split
        pt = str_to_i(pt_text, -1)
        if pt == -1:
            raise SdpError("a=fmtp payload type is not a number", repr(value))
        return cls(pt, rest or "")

    def render(self) -> str:
        return f"{self.payload_type} {self.params}"


@dataclass(frozen=True, slots=True)
class RtcpFb:
    """`a=rtcp-fb:<pt|*> <feedback>`; payload_type None for the wildcard "*".

    rtpengine 10.5 regenerates rtcp-fb lines of numbered payload types after their a=rtpmap, but
    leaves wildcard ones where they are (probed)."""

    payload_type: int | None
    feedback: str = ""

    @classmethod
    def parse(cls, value: str) -> RtcpFb:
        split = split_tokens(value, 1)
        if split is None:
            raise SdpError("malformed a=rtcp-fb", repr(value))
        (pt_text,), _, rest = split
        if pt_text == "*":
            return cls(None, rest or "")
        pt = str_to_i(pt_text, -1)
        if pt == -1:
            raise SdpError("a=rtcp-fb payload type is not a number", repr(value))
        return cls(pt, rest or "")

    def render(self) -> str:
        pt = "*" if self.payload_type is None else str(self.payload_type)
        return f"{pt} {self.feedback}"
