"""The o= line."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .addresses import IpAddress, parse_network_address
from .cnumbers import strtoul
from .errors import SdpError
from .tokens import join_tokens, split_tokens


@dataclass(frozen=True, slots=True)
class Origin:
    """`o=<username> <session id> <version> <nettype> <addrtype> <address>`.

    Tokens are split the way rtpengine splits them (single spaces; "-  1" has an empty second
    token), so `render()` gives back the exact text. `extra` is whatever followed the address after
    a space (rtpengine keeps it), None if nothing did."""

    username: str
    session_id: str
    version: str
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"
    extra: str | None = None

    @classmethod
    def parse(cls, value: str) -> Origin:
        """Raises SdpError when there are fewer than six tokens (rtpengine: parse failure). A bad
        address is not an error here: rtpengine accepts an o= line whatever its address says."""
        split = split_tokens(value, 6)
        if split is None:
            raise SdpError("malformed o= line", repr(value))
        t, _, rest = split
        return cls(t[0], t[1], t[2], t[3], t[4], t[5], rest)

    def render(self) -> str:
        tokens = [self.username, self.session_id, self.version, self.nettype, self.addrtype, self.address]
        return join_tokens(tokens, self.extra)

    @property
    def version_number(self) -> int:
        """The version as rtpengine reads it (strtoull; 0 when not numeric)."""
        parsed = strtoul(self.version)
        return 0 if parsed is None else parsed[0]

    def ip(self) -> IpAddress | None:
        """The address if it is one rtpengine can parse."""
        return parse_network_address(self.nettype, self.addrtype, self.address)

    def with_address(self, addrtype: str, address: str) -> Origin:
        """Origin with a new address; what `replace-origin` changes."""
        return replace(self, addrtype=addrtype, address=address)
