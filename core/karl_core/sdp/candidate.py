"""a=candidate (ICE, RFC 8839)."""

from __future__ import annotations

from dataclasses import dataclass

from .addresses import parse_any_address
from .cnumbers import strtoul
from .errors import SdpError
from .tokens import split_tokens

# Both probed on rtpengine 10.5 and case-sensitive: "Udp", "tcp" and "SRFLX" are unknown there.
_TRANSPORTS = frozenset({"udp", "UDP"})
_TYPES = frozenset({"host", "srflx", "prflx", "relay"})


@dataclass(frozen=True, slots=True)
class Candidate:
    """`a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
    [raddr <address> rport <port>] [<extensions>]`.

    `usable` is False for a candidate rtpengine recognises as a candidate (and therefore strips
    when it handles ICE itself) but cannot use: unknown transport (e.g. TCP), unparseable address
    or unknown type. Numbers it did not get to read are 0 then."""

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    extensions: str = ""
    usable: bool = True

    @classmethod
    def parse(cls, value: str) -> Candidate:
        """Raises SdpError exactly when rtpengine 10.5 does not recognise the line as a candidate
        (it then stays in the SDP like an unknown attribute). Probed: fewer than eight tokens, a
        non-numeric component/priority/port, "typ" spelt otherwise, or an srflx/prflx/relay
        candidate without a complete "raddr <a> rport <p>". The checks stop early (and the
        candidate counts as recognised) at an unknown transport, an unparseable address or an
        unknown type."""
        split = split_tokens(value, 8)
        if split is None:
            raise SdpError("malformed a=candidate", repr(value))
        t, starts, rest = split

        def number(index: int) -> int | None:
            parsed = strtoul(value, starts[index])
            return None if parsed is None else parsed[0]

        component = number(1)
        if component is None:
            raise SdpError("a=candidate component is not a number", repr(value))
        unusable = cls(
            t[0],
            component,
            t[2],
            number(3) or 0,
            t[4],
            number(5) or 0,
            t[7],
            None,
            None,
            rest or "",
            usable=False,
        )
        if t[2] not in _TRANSPORTS:
            return unusable
        if number(3) is None:
            raise SdpError("a=candidate priority is not a number", repr(value))
        if parse_any_address(t[4]) is None:
            return unusable
        if number(5) is None:
            raise SdpError("a=candidate port is not a number", repr(value))
        if t[6] != "typ":
            raise SdpError("a=candidate without 'typ'", repr(value))
        if t[7] not in _TYPES:
            return unusable
        if t[7] == "host":
            return cls(
                t[0], component, t[2], unusable.priority, t[4], unusable.port, t[7], None, None, rest or ""
            )
        related = split_tokens(rest, 4) if rest is not None else None
        if rest is None or related is None or related[0][0] != "raddr" or related[0][2] != "rport":
            raise SdpError("a=candidate without raddr/rport", repr(value))
        (_, raddr, _, _), rstarts, rrest = related
        rport = strtoul(rest, rstarts[3])
        usable = parse_any_address(raddr) is not None
        if usable and rport is None:
            raise SdpError("a=candidate rport is not a number", repr(value))
        return cls(
            t[0],
            component,
            t[2],
            unusable.priority,
            t[4],
            unusable.port,
            t[7],
            raddr,
            None if rport is None else rport[0],
            rrest or "",
            usable,
        )

    def render(self) -> str:
        text = (
            f"{self.foundation} {self.component} {self.transport} {self.priority} {self.address} "
            f"{self.port} typ {self.type}"
        )
        if self.related_address is not None:
            text += f" raddr {self.related_address} rport {self.related_port or 0}"
        return f"{text} {self.extensions}" if self.extensions else text
