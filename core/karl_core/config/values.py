"""Value types shared by the configuration sections: ports, durations, addresses."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field

from karl_core.config.errors import rule_error, show

#: A UDP port media may use.
Port = Annotated[int, Field(ge=1, le=65535)]
#: A port a server listens on; 0 lets the operating system pick a free one (handy in tests).
ListenPort = Annotated[int, Field(ge=0, le=65535)]
#: A duration in whole seconds where 0 is meaningful (off / immediately).
Seconds = Annotated[int, Field(ge=0)]
#: A duration in whole seconds that must not be 0.
PositiveSeconds = Annotated[int, Field(ge=1)]


def ip_literal(value: str) -> str:
    """Validate an IPv4/IPv6 address literal and return its canonical spelling."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise rule_error(f"must be an IP address such as '192.0.2.10' or '::', got {show(value)}") from None


def is_wildcard(address: str) -> bool:
    """True for 0.0.0.0 and ::, which mean 'every local address' when binding."""
    return ipaddress.ip_address(address).is_unspecified


def addresses_overlap(a: str, b: str) -> bool:
    """Whether two listen addresses can collide on the same port."""
    return a == b or is_wildcard(a) or is_wildcard(b)


def lower_word(value: object) -> object:
    """Case-insensitive enumerations: compare words in lower case, leave other types to validation."""
    return value.strip().lower() if isinstance(value, str) else value
