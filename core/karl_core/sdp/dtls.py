"""DTLS-SRTP attributes: a=fingerprint and a=setup."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SdpError
from .tokens import split_tokens

# Hash functions rtpengine 10.5 knows, with digest sizes. Probed: names match case-insensitively
# ("SHA-256" works); md5 is unknown (such a line stays in place as an unknown attribute).
FINGERPRINT_HASHES = {"sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}
SETUP_VALUES = frozenset({"actpass", "active", "passive", "holdconn"})
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """`a=fingerprint:<hash function> <XX:XX:...>`."""

    hash_func: str
    fingerprint: str

    @classmethod
    def parse(cls, value: str) -> Fingerprint:
        """Raises SdpError when rtpengine 10.5 would not accept it: unknown hash function, or not
        exactly the digest size in hex pairs separated by colons (probed: 19 or 21 pairs for
        sha-1 fail; text after a space following the digest is ignored)."""
        split = split_tokens(value, 2)
        if split is None:
            raise SdpError("malformed a=fingerprint", repr(value))
        (hash_func, fingerprint), _, _ = split
        size = FINGERPRINT_HASHES.get(hash_func.lower()) if hash_func.isascii() else None
        if size is None:
            raise SdpError("unknown fingerprint hash function", repr(value))
        if _digest(fingerprint, size) is None:
            raise SdpError("malformed fingerprint digest", repr(value))
        return cls(hash_func, fingerprint)

    @property
    def digest(self) -> bytes:
        size = FINGERPRINT_HASHES.get(self.hash_func.lower(), 0)
        return _digest(self.fingerprint, size) or b""

    def render(self) -> str:
        return f"{self.hash_func} {self.fingerprint}"


def _digest(text: str, size: int) -> bytes | None:
    """Read `size` colon-separated hex pairs; like rtpengine, stop at the first pair not followed by
    a colon (whatever follows it) and require that to be the last one."""
    out = bytearray()
    pos = 0
    for index in range(size):
        pair = text[pos : pos + 2]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            return None
        out.append(int(pair, 16))
        if text[pos + 2 : pos + 3] != ":":
            return bytes(out) if index + 1 == size else None
        pos += 3
    return None
