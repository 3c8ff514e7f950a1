"""Number parsing with the semantics of the C library calls rtpengine uses.

rtpengine reads numbers out of SDP with strtol/strtoul/atoi on the raw buffer. Those skip leading
whitespace, accept a sign, stop at the first non-digit and may read past the end of the token
(an empty token followed by " 8" reads 8). Reproducing that exactly decides which SDPs it accepts.
"""

from __future__ import annotations

import re

ULONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1
LONG_MIN = -(1 << 63)
INT_MAX = (1 << 31) - 1
INT_MIN = -(1 << 31)

# C isspace() in the "C" locale, then an optional sign, then ASCII digits only (not str.isdigit).
_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")


def _scan(text: str, start: int) -> tuple[bool, int, int] | None:
    """(negative, magnitude, end) of the number at text[start:], or None if there are no digits."""
    m = _NUMBER.match(text, start)
    if m is None:
        return None
    return m.group(1) == "-", int(m.group(2)), m.end()


def strtoul(text: str, start: int = 0) -> tuple[int, int] | None:
    """C strtoul(text + start, &end, 10): (value, end) or None when no digits were read.

    Overflow gives ULONG_MAX; a minus sign negates modulo 2**64 (as C does)."""
    scanned = _scan(text, start)
    if scanned is None:
        return None
    negative, value, end = scanned
    if value > ULONG_MAX:
        return ULONG_MAX, end
    if negative:
        value = (-value) & ULONG_MAX
    return value, end


def strtol(text: str, start: int = 0) -> tuple[int, int] | None:
    """C strtol(text + start, &end, 10): (value, end) or None when no digits; saturates at LONG_MIN/MAX."""
    scanned = _scan(text, start)
    if scanned is None:
        return None
    negative, value, end = scanned
    if negative:
        value = -value
    return max(LONG_MIN, min(LONG_MAX, value)), end


def to_c_int(value: int) -> int:
    """Truncate to a 32-bit signed int, as an implicit C conversion from long does."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value > INT_MAX else value


def to_c_uint(value: int) -> int:
    """Truncate to a 32-bit unsigned int."""
    return value & 0xFFFFFFFF


def atoi(text: str, start: int = 0) -> int:
    """C atoi: (int) strtol, 0 when there are no digits."""
    parsed = strtol(text, start)
    return 0 if parsed is None else to_c_int(parsed[0])


def str_to_i(token: str, default: int) -> int:
    """rtpengine's str_to_i(): strtol over the token alone (no look-ahead past it).

    Returns `default` if the token is empty, has no leading number or does not fit an int. Trailing
    garbage is ignored ("2001x" -> 2001)."""
    if not token:
        return default
    parsed = strtol(token)
    if parsed is None:
        return default
    value = parsed[0]
    if value > INT_MAX or value < INT_MIN:
        return default
    return value
