"""Bencode as the NG protocol uses it.

Byte strings are exposed as `str`, decoded as UTF-8 with ``errors="surrogateescape"`` so that any
byte sequence survives decode → encode unchanged.

Two decoders share one recursive-descent parser; nesting deeper than `MAX_DEPTH` is refused, so
hostile input cannot exhaust the stack:

* `decode` — strict: canonical integers, terminated containers, string keys, no duplicate keys,
  and the whole input must be exactly one value.
* `decode_ng_dict` — the top-level NG request dictionary, exactly as leniently as rtpengine 10.5
  decodes it (behaviour probed against the 10.5.3.5 daemon):
    - containers still open at the end of the input are closed there (``d7:command4:ping`` is a
      valid ping, so is ``d7:command4:ping1:al1:x``), but a dictionary key without a value is not;
    - bytes after the closed top-level dictionary are ignored;
    - integers are read like C ``strtoll``: leading whitespace, ``+``/``-`` and leading zeros after
      a sign are accepted (``i 2e``, ``i+2e``, ``i-03e``, ``i-0e``); a bare leading ``0`` must be
      followed by ``e`` (``i03e`` is refused); values saturate at the int64 limits;
    - string lengths have no leading zeros (``05:hello`` is refused);
    - for a duplicated key the first value wins (rtpengine's dictionary lookup finds the first).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeAlias

BValue: TypeAlias = "int | str | list[BValue] | dict[str, BValue]"

MAX_DEPTH = 64
"""Deepest container nesting accepted by the decoders (Kamailio's messages use 3 levels)."""

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class BencodeError(ValueError):
    """The input is not acceptable bencode."""


_INT_BODY_STRICT = re.compile(rb"0|-?[1-9][0-9]*")
# C strtoll: optional isspace() run, optional sign, at least one decimal digit.
_INT_BODY_LENIENT = re.compile(rb"[ \t\n\v\f\r]*[+-]?[0-9]+")

_D, _L, _I, _E = ord("d"), ord("l"), ord("i"), ord("e")
_ZERO, _NINE = ord("0"), ord("9")


def _clamp64(value: int) -> int:
    if value > INT64_MAX:
        return INT64_MAX
    if value < INT64_MIN:
        return INT64_MIN
    return value


def saturating_int64(text: bytes | str) -> int:
    """A decimal number (optional leading whitespace and sign, validated by the caller), saturated
    to int64 like C ``strtoll``. Does not hand huge digit strings to `int` (CPython refuses more
    than 4300 digits with a ValueError)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.strip()
    negative = text.startswith("-")
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > 19:
        return INT64_MIN if negative else INT64_MAX
    value = int(digits or "0")
    return _clamp64(-value if negative else value)


# ---------------------------------------------------------------------------------------- encoding


def encode(value: Any, *, sort_keys: bool = True) -> bytes:
    """Encode `value` (str, bytes, int, list/tuple, dict with str/bytes keys) as bencode.

    With `sort_keys` (the default) the output is canonical: dictionary keys sorted as bytes.
    ``sort_keys=False`` keeps each mapping's own key order (rtpengine writes its replies in
    insertion order). Raises `TypeError` for other types, including `bool`, and `BencodeError`
    for strings that cannot be encoded or keys that collide once encoded.
    """
    if not sort_keys:
        # NG replies: plain dicts, lists, ints and ASCII strings, built as text in one pass
        parts: list[str] = []
        if _encode_text(value, parts, 0):
            return "".join(parts).encode("ascii")
    out: list[bytes] = []
    _encode_into(value, out, sort_keys, 0)
    return b"".join(out)


_KEY_HEADS: dict[str, str] = {}
"""Encoded dictionary keys of replies ("10:local port"), by key: a `query` or `delete` reply has about
200 keys from a small vocabulary, and formatting each anew was a quarter of its encoding time."""
_KEY_HEADS_LIMIT = 4096
"""Keys kept at most (party tags are keys too: a stream of new calls cannot grow the table past it)."""


def _encode_text(value: Any, parts: list[str], depth: int) -> bool:
    """The fast path of `encode` (key order kept): False as soon as something is not a plain dict,
    list, int or ASCII string (the general encoder then starts over). An ASCII string's length in
    characters is its length in bytes. Strings and ints inside containers are handled inline, not by
    recursion: a reply has hundreds of them, and the call each would cost is most of its time."""
    if depth > MAX_DEPTH:
        return False
    append = parts.append
    kind = type(value)
    if kind is dict:
        append("d")
        heads = _KEY_HEADS
        for key, item in value.items():
            head = heads.get(key)
            if head is None:
                if type(key) is not str or not key.isascii():
                    return False
                head = f"{len(key)}:{key}"
                if len(heads) < _KEY_HEADS_LIMIT:
                    heads[key] = head
            append(head)
            item_kind = type(item)
            if item_kind is str:
                if not item.isascii():
                    return False
                append(f"{len(item)}:{item}")
            elif item_kind is int:
                append(f"i{item}e")
            elif not _encode_text(item, parts, depth + 1):
                return False
        append("e")
        return True
    if kind is list:
        append("l")
        for item in value:
            item_kind = type(item)
            if item_kind is str:
                if not item.isascii():
                    return False
                append(f"{len(item)}:{item}")
            elif item_kind is int:
                append(f"i{item}e")
            elif not _encode_text(item, parts, depth + 1):
                return False
        append("e")
        return True
    if kind is str:
        if not value.isascii():
            return False
        append(f"{len(value)}:{value}")
        return True
    if kind is int:
        append(f"i{value}e")
        return True
    return False


def _to_bytes(s: str | bytes) -> bytes:
    if isinstance(s, bytes):
        return s
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise BencodeError(f"string cannot be encoded: {exc}") from None


def _encode_item(value: Any, out: list[bytes], sort_keys: bool, depth: int) -> None:
    """A container's member: plain strings and integers inline, the rest through `_encode_into`."""
    kind = type(value)
    if kind is int:
        out.append(b"i%de" % value)
    elif kind is str and value.isascii():
        out.append(b"%d:%s" % (len(value), value.encode("ascii")))
    else:
        _encode_into(value, out, sort_keys, depth)


def _encode_into(value: Any, out: list[bytes], sort_keys: bool, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError("structure nested too deeply")
    # Fast paths for the exact types replies are made of (every reply is encoded on the NG path).
    kind = type(value)
    if kind is str:
        raw = _to_bytes(value)
        out.append(b"%d:%s" % (len(raw), raw))
        return
    if kind is int:
        out.append(b"i%de" % value)
        return
    if kind is dict and all(type(key) is str for key in value):
        # str keys of one dict cannot collide once encoded, so no duplicate check is needed
        pairs = [(_to_bytes(key), item) for key, item in value.items()]
        if sort_keys:
            pairs.sort(key=lambda pair: pair[0])
        out.append(b"d")
        for raw_key, item in pairs:
            out.append(b"%d:%s" % (len(raw_key), raw_key))
            _encode_item(item, out, sort_keys, depth + 1)
        out.append(b"e")
        return
    if kind is list:
        out.append(b"l")
        for item in value:
            _encode_item(item, out, sort_keys, depth + 1)
        out.append(b"e")
        return
    if isinstance(value, str | bytes):
        raw = _to_bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, bool):
        raise TypeError("bencode has no booleans; send an int or a string")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode_into(item, out, sort_keys, depth + 1)
        out.append(b"e")
    elif isinstance(value, Mapping):
        items: list[tuple[bytes, Any]] = []
        for key, item in value.items():
            if not isinstance(key, str | bytes):
                raise TypeError(f"bencode dictionary keys must be str or bytes, not {type(key).__name__}")
            items.append((_to_bytes(key), item))
        if sort_keys:
            items.sort(key=lambda pair: pair[0])
        seen: set[bytes] = set()
        out.append(b"d")
        for raw_key, item in items:
            if raw_key in seen:
                raise BencodeError(f"duplicate dictionary key {raw_key!r}")
            seen.add(raw_key)
            out.append(b"%d:" % len(raw_key))
            out.append(raw_key)
            _encode_into(item, out, sort_keys, depth + 1)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


# ---------------------------------------------------------------------------------------- decoding


def decode(data: bytes) -> BValue:
    """Strictly decode `data`, which must hold exactly one canonical bencode value."""
    value, end = _parse(data, 0, lenient=False)
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}")
    return value


def decode_ng_dict(data: bytes) -> dict[str, Any]:
    """Decode an NG request dictionary as rtpengine 10.5 does (see the module docstring)."""
    if not data or data[0] != _D:
        raise BencodeError("not a bencode dictionary")
    value, _end = _parse(data, 0, lenient=True)
    assert isinstance(value, dict)
    return value


def _parse(data: bytes, pos: int, *, lenient: bool) -> tuple[BValue, int]:
    """Parse one value starting at `pos`; return it and the offset after it.

    Written as one closure with everything in locals: this runs for every NG request.
    """
    n = len(data)
    find = data.find
    int_body = _INT_BODY_LENIENT if lenient else _INT_BODY_STRICT

    def scalar(pos: int) -> tuple[BValue, int]:
        c = data[pos]
        if _ZERO <= c <= _NINE:
            colon = find(b":", pos, pos + 21)
            digits = data[pos:colon]
            if colon < 0 or not digits.isdigit() or (c == _ZERO and colon != pos + 1):
                raise BencodeError(f"bad string length at offset {pos}")
            end = colon + 1 + int(digits)
            if end > n:
                raise BencodeError(f"string at offset {pos} runs past the end of data")
            return data[colon + 1 : end].decode("utf-8", "surrogateescape"), end
        if c == _I:
            end = find(b"e", pos + 1)
            body = data[pos + 1 : end]
            # rtpengine reads a leading "0" as the whole number, otherwise strtoll.
            if end < 0 or int_body.fullmatch(body) is None or (body[:1] == b"0" and body != b"0"):
                raise BencodeError(f"bad integer at offset {pos}")
            return saturating_int64(body), end + 1
        raise BencodeError(f"unexpected byte {data[pos : pos + 1]!r} at offset {pos}")

    def container(pos: int, depth: int, is_dict: bool) -> tuple[BValue, int]:
        if depth > MAX_DEPTH:
            raise BencodeError("structure nested too deeply")
        out_dict: dict[str, BValue] = {}
        out_list: list[BValue] = []
        key: str | None = None
        item: BValue
        while pos < n:
            c = data[pos]
            if _ZERO <= c <= _NINE:
                # a string, as in `scalar` but without a call: most items of a request are strings
                colon = find(b":", pos, pos + 21)
                digits = data[pos:colon]
                if colon < 0 or not digits.isdigit() or (c == _ZERO and colon != pos + 1):
                    raise BencodeError(f"bad string length at offset {pos}")
                end = colon + 1 + int(digits)
                if end > n:
                    raise BencodeError(f"string at offset {pos} runs past the end of data")
                item = data[colon + 1 : end].decode("utf-8", "surrogateescape")
                pos = end
                if is_dict and key is None:
                    key = item
                    continue
            elif c == _E:
                if key is not None:
                    raise BencodeError(f"dictionary key without a value at offset {pos}")
                return (out_dict if is_dict else out_list), pos + 1
            elif c in (_D, _L):
                if key is None and is_dict:
                    raise BencodeError(f"dictionary key is not a string at offset {pos}")
                item, pos = container(pos + 1, depth + 1, c == _D)
            else:
                item, pos = scalar(pos)
                if is_dict and key is None:
                    if not isinstance(item, str):
                        raise BencodeError(f"dictionary key is not a string at offset {pos}")
                    key = item
                    continue
            if not is_dict:
                out_list.append(item)
                continue
            assert key is not None
            if key not in out_dict:
                out_dict[key] = item
            elif not lenient:
                raise BencodeError(f"duplicate dictionary key {key!r}")
            # else: the first value wins, as with rtpengine's dictionary lookup
            key = None
        # End of input inside a container: rtpengine closes every container still open there,
        # but not a dictionary waiting for a value.
        if not lenient or key is not None:
            raise BencodeError("unexpected end of data")
        return (out_dict if is_dict else out_list), pos

    if pos >= n:
        raise BencodeError("no data")
    first = data[pos]
    if first in (_D, _L):
        return container(pos + 1, 1, first == _D)
    return scalar(pos)
