"""Network addresses in SDP as rtpengine 10.5 accepts them (c=, o=, a=rtcp)."""

from __future__ import annotations

import ipaddress
import socket

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Probed with rtpengine 10.5: the network type must be exactly "IN" or "in" ("In" fails), the address
# type exactly "IP4" or "IP6" ("ip4" fails). Addresses are read with inet_pton, so no host names,
# no leading zeros in IPv4, no IPv6 scope ids, no /ttl suffix. The token is read as a C string: a
# NUL ends it ("1.2.3.4\0junk" passes). An IPv6 address may be written in brackets: from a leading
# "[" up to the first "]", whatever follows ("[::1]:5060" and "[::1]x" pass, "[::1" fails); an IPv4
# address may not ("[1.2.3.4]" fails).
_NETTYPES = frozenset({"IN", "in"})
_FAMILIES = {"IP4": socket.AF_INET, "IP6": socket.AF_INET6}


def _pton(family: int, text: str) -> bytes | None:
    try:
        return socket.inet_pton(family, text)
    except (OSError, ValueError):  # ValueError: NUL or characters that are not ASCII
        return None


def parse_address(addrtype: str, address: str) -> IpAddress | None:
    """The address of a `<addrtype> <address>` pair, or None if rtpengine would reject it."""
    family = _FAMILIES.get(addrtype)
    if family is None:
        return None
    address = address.partition("\0")[0]
    if family == socket.AF_INET6 and address.startswith("["):
        close = address.find("]")
        if close < 0:
            return None
        address = address[1:close]
    packed = _pton(family, address)
    if packed is None:
        return None
    return ipaddress.ip_address(packed)


def parse_network_address(nettype: str, addrtype: str, address: str) -> IpAddress | None:
    """Like parse_address, also checking the network type ("IN")."""
    if nettype not in _NETTYPES:
        return None
    return parse_address(addrtype, address)


def parse_any_address(address: str) -> IpAddress | None:
    """An IPv4 or IPv6 address without a family token (ICE candidates)."""
    address = address.partition("\0")[0]
    packed = _pton(socket.AF_INET, address) or _pton(socket.AF_INET6, address)
    return None if packed is None else ipaddress.ip_address(packed)
