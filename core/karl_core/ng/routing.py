"""What a router needs to route a request, read without decoding it: the command and the call-id of a
bencoded request dictionary. Everything else — the SDP, the flags — is skipped over, not decoded.

`peek_route` answers only for a plain, well-formed dictionary whose `command` and `call-id` it finds
once each; anything else (JSON, an alias such as `call ID`, a duplicate key, malformed or truncated
data, an unknown command) gets None, and the caller decodes the request fully, so that every error is
the exact one rtpengine 10.5 gives. The strings are decoded as `bencode.decode_ng_dict` decodes them,
so a call-id read here equals the one the full decoder reads.
"""

from __future__ import annotations

from .commands import Command

_BY_NAME = {command.value.encode(): command for command in Command}
_DIGITS = frozenset(b"0123456789")
_MAX_DEPTH = 32


def _string_end(data: bytes, pos: int, n: int) -> tuple[int, int] | None:
    """(start, end) of the string at `pos`, or None."""
    colon = data.find(b":", pos, pos + 21)
    if colon <= pos:
        return None
    digits = data[pos:colon]
    if not digits.isdigit() or (digits[0] == 0x30 and colon != pos + 1):
        return None
    end = colon + 1 + int(digits)
    return (colon + 1, end) if end <= n else None


def _skip(data: bytes, pos: int, n: int, depth: int) -> int | None:
    """The offset after the value at `pos`, or None when it is not well formed."""
    if pos >= n or depth > _MAX_DEPTH:
        return None
    c = data[pos]
    if c in _DIGITS:
        span = _string_end(data, pos, n)
        return None if span is None else span[1]
    if c == 0x69:  # i
        end = data.find(b"e", pos + 1)
        return None if end < 0 else end + 1
    if c in (0x6C, 0x64):  # l, d
        is_dict = c == 0x64
        pos += 1
        while pos < n and data[pos] != 0x65:  # e
            if is_dict:
                span = _string_end(data, pos, n) if data[pos] in _DIGITS else None
                if span is None:
                    return None
                pos = span[1]
            skipped = _skip(data, pos, n, depth + 1)
            if skipped is None:
                return None
            pos = skipped
        return pos + 1 if pos < n else None
    return None


def peek_route(payload: bytes) -> tuple[Command, str] | None:
    """(command, call-id) of a bencoded request, or None (see the module docstring).

    The router's hot path: strings and lists of strings — nearly all of a request — are stepped over
    inline; anything else goes through `_skip`."""
    n = len(payload)
    if n < 2 or payload[0] != 0x64:  # d
        return None
    find = payload.find
    command: Command | None = None
    call_id: str | None = None
    pos = 1
    while True:
        if pos >= n:
            return None
        if payload[pos] == 0x65:  # e
            break
        # the key: a string
        colon = find(b":", pos, pos + 21)
        if colon <= pos:
            return None
        digits = payload[pos:colon]
        if not digits.isdigit() or (digits[0] == 0x30 and colon != pos + 1):
            return None
        key_start = colon + 1
        pos = key_start + int(digits)
        if pos >= n:
            return None
        first = payload[pos]
        if 0x30 <= first <= 0x39:  # a string value
            colon = find(b":", pos, pos + 21)
            if colon <= pos:
                return None
            digits = payload[pos:colon]
            if not digits.isdigit() or (digits[0] == 0x30 and colon != pos + 1):
                return None
            value_start = colon + 1
            end = value_start + int(digits)
            if end > n:
                return None
            if pos - key_start == 7:
                name = payload[key_start:pos]
                if name == b"command":
                    text = payload[value_start:end]
                    if command is not None or text not in _BY_NAME:
                        return None
                    command = _BY_NAME[text]
                elif name == b"call-id":
                    if call_id is not None or end == value_start:
                        return None
                    call_id = payload[value_start:end].decode("utf-8", "surrogateescape")
            pos = end
            continue
        if pos - key_start == 7 and payload[key_start:pos] in (b"command", b"call-id"):
            return None  # not a string: the full decoder gives its error
        if first == 0x6C:  # a list: its strings inline, anything else through _skip
            pos += 1
            while pos < n and payload[pos] != 0x65:
                if 0x30 <= payload[pos] <= 0x39:
                    colon = find(b":", pos, pos + 21)
                    if colon <= pos:
                        return None
                    digits = payload[pos:colon]
                    if not digits.isdigit() or (digits[0] == 0x30 and colon != pos + 1):
                        return None
                    pos = colon + 1 + int(digits)
                    continue
                skipped = _skip(payload, pos, n, 2)
                if skipped is None:
                    return None
                pos = skipped
            if pos >= n:
                return None
            pos += 1
            continue
        skipped = _skip(payload, pos, n, 1)
        if skipped is None:
            return None
        pos = skipped
    if pos != n - 1 or command is None or call_id is None:
        return None
    return command, call_id
