"""The c= line."""

from __future__ import annotations

from dataclasses import dataclass

from .addresses import IpAddress, parse_network_address
from .errors import SdpError
from .tokens import join_tokens, split_tokens


@dataclass(frozen=True, slots=True)
class Connection:
    """`c=<nettype> <addrtype> <address>[/<ttl>[/<count>]]`.

    `multicast` keeps a "/ttl[/count]" suffix verbatim (rtpengine 10.5 itself rejects such
    addresses). `extra` is text after the address token, kept as rtpengine keeps it
    ("c=IN IP4 1.2.3.4 extra" is accepted); None if there was no further space."""

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"
    multicast: str = ""
    extra: str | None = None

    @classmethod
    def parse(cls, value: str) -> Connection:
        """Split the tokens; raises SdpError with fewer than three. The address is not checked
        here (see `ip()` and `validate_for_rtpengine`)."""
        split = split_tokens(value, 3)
        if split is None:
            raise SdpError("malformed c= line", repr(value))
        t, _, rest = split
        address, slash, multicast = t[2].partition("/")
        return cls(t[0], t[1], address, slash + multicast, rest)

    def render(self) -> str:
        return join_tokens([self.nettype, self.addrtype, self.address + self.multicast], self.extra)

    def ip(self) -> IpAddress | None:
        """The address if rtpengine 10.5 can parse the whole address token, else None."""
        return parse_network_address(self.nettype, self.addrtype, self.address + self.multicast)

    @property
    def is_unspecified(self) -> bool:
        """0.0.0.0 or :: (old-style hold)."""
        ip = self.ip()
        return ip is not None and ip.is_unspecified

    def with_address(self, addrtype: str, address: str) -> Connection:
        """The same line pointing at another address (the multicast suffix is dropped)."""
        return Connection(self.nettype, addrtype, address, "", self.extra)
