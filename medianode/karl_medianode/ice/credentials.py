"""ICE credentials and candidates as Karl writes them into SDP, in rtpengine 10.5's shapes: an 8
character ufrag, a 26 character password, one 16 character foundation per local address and host
candidates with type preference 126 and local preference 65535."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

# RFC 8839 ice-char: ALPHA / DIGIT / "+" / "/"; rtpengine uses letters and digits only
_ICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
UFRAG_LENGTH = 8
PWD_LENGTH = 26
FOUNDATION_LENGTH = 16
HOST_TYPE_PREFERENCE = 126
LOCAL_PREFERENCE = 65535


def random_ice_string(length: int) -> str:
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


@dataclass(frozen=True, slots=True)
class IceCredentials:
    ufrag: str
    pwd: str

    @classmethod
    def new(cls) -> IceCredentials:
        return cls(random_ice_string(UFRAG_LENGTH), random_ice_string(PWD_LENGTH))


def foundation_for(address: str) -> str:
    """The same foundation for every candidate of one local address (RFC 8445 5.1.1.3: same type,
    base and server), stable across calls and nodes so a restored call advertises what it did."""
    digest = hashlib.sha256(address.encode()).digest()
    return "".join(_ICE_CHARS[b % len(_ICE_CHARS)] for b in digest[:FOUNDATION_LENGTH])


def candidate_priority(type_preference: int, local_preference: int, component: int) -> int:
    """RFC 8445 5.1.2.1."""
    return (type_preference << 24) | (local_preference << 8) | (256 - component)


def host_candidate(address: str, port: int, component: int, base: str | None = None) -> str:
    """The value of Karl's `a=candidate` line for one of its sockets, advertised as `address`; the
    foundation is that of the local address the socket is bound to (`base`, by default `address`),
    so a `media-address` changes the candidate's address, not its foundation (as in 10.5)."""
    priority = candidate_priority(HOST_TYPE_PREFERENCE, LOCAL_PREFERENCE, component)
    return f"{foundation_for(base or address)} {component} UDP {priority} {address} {port} typ host"
