"""a=rtcp (RFC 3605)."""

from __future__ import annotations

from dataclasses import dataclass

from .addresses import parse_network_address
from .cnumbers import str_to_i
from .errors import SdpError
from .tokens import split_tokens

# The two ways an a=rtcp line can be unusable for rtpengine 10.5 differ in what a rewrite does
# with the line (probed): a bad port ("a=rtcp:abc", "a=rtcp:70000") makes it an ignored attribute
# that is removed like a good one; a bad address part ("a=rtcp:2001 IN IP4 bogus") makes it an
# unknown attribute that stays in place.
BAD_RTCP_PORT = "invalid a=rtcp port"
BAD_RTCP_ADDRESS = "invalid a=rtcp address"


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """`a=rtcp:<port> [<nettype> <addrtype> <address>]`."""

    port: int
    nettype: str | None = None
    addrtype: str | None = None
    address: str | None = None

    @classmethod
    def parse(cls, value: str) -> RtcpAttribute:
        """Raises SdpError with reason BAD_RTCP_PORT or BAD_RTCP_ADDRESS (see above). The port is
        read with str_to_i ("2001x" -> 2001) and must be 1..65535."""
        split = split_tokens(value, 1)
        if split is None:
            raise SdpError(BAD_RTCP_PORT, repr(value))
        (port_text,), _, rest = split
        port = str_to_i(port_text, 0)
        if not 0 < port <= 0xFFFF:
            raise SdpError(BAD_RTCP_PORT, repr(value))
        if not rest:
            return cls(port)
        address = split_tokens(rest, 3)
        if address is None:
            raise SdpError(BAD_RTCP_ADDRESS, repr(value))
        nettype, addrtype, addr = address[0]
        if parse_network_address(nettype, addrtype, addr) is None:
            raise SdpError(BAD_RTCP_ADDRESS, repr(value))
        return cls(port, nettype, addrtype, addr)

    def render(self) -> str:
        if self.address is None:
            return str(self.port)
        return f"{self.port} {self.nettype or 'IN'} {self.addrtype or 'IP4'} {self.address}"
