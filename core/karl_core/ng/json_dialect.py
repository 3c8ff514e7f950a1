"""JSON as rtpengine 10.5 reads and writes it (through json-glib 1.6).

rtpengine hands a payload starting with ``{`` to json-glib, whose scanner is far more lenient than
RFC 8259, and then converts the tree to bencode values. Reproduced here (each point probed against
rtpengine 10.5.3.5 or read off json-glib 1.6.6's scanner):

* accepted: single-quoted strings (no escapes inside), ``/…/`` comments between tokens (json-glib's
  single-line comment runs from ``/`` to the next ``/``, so ``/* c */`` works and ``// c`` does not),
  leading-zero octal (``010`` = 8), hex (``0x10``, ``$10``) and binary (``0b11``) integers, unknown
  escapes (``\\q`` = ``q``), octal escapes (``\\101`` = ``A``), raw control characters in strings,
  whitespace between ``-`` and its number, further objects or arrays after the first (ignored);
* refused (`JSON_PARSE_FAILED`): invalid UTF-8 or a NUL byte anywhere, trailing commas, missing
  commas, barewords (``NaN``, ``TRUE``), a trailing scalar, a lone or malformed UTF-16 surrogate
  escape, unterminated strings or comments;
* conversion (`BENCODE_DECODE_FAILED`, checked only after the whole document parsed): ``null`` and
  floating-point numbers anywhere in the first top-level value, or a top-level value that is not
  an object. ``true``/``false`` become 1/0;
* integers beyond 64 bits saturate at 2**64-1 and are then read as signed (so
  18446744073709551615 is -1); a leading ``-`` negates with 64-bit wrap-around;
* strings (and keys) end at their first NUL character (``"ping\\u0000x"`` is ``ping``); a repeated
  key keeps its first position and its last value.

Replies are written like json-glib's compact generator: no whitespace, keys in insertion order,
only ``\\``, ``"``, 0x01-0x1e and 0x7f escaped (``\\b \\f \\n \\r \\t``, else ``\\u00xx``; 0x1f is
written raw), strings cut at a NUL, everything else (UTF-8) raw.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import BENCODE_DECODE_FAILED, JSON_PARSE_FAILED, NgError

MAX_DEPTH = 64
_U64 = 1 << 64

# Token kinds. Single characters ({ } [ ] : , - = ; and anything else) are their own kind.
_EOF = "EOF"
_STRING = "STRING"
_INT = "INT"
_FLOAT = "FLOAT"
_IDENT = "IDENT"
_TRUE = "true"
_FALSE = "false"
_NULL = "null"
_VAR = "var"
_SYMBOLS = {b"true": _TRUE, b"false": _FALSE, b"null": _NULL, b"var": _VAR}

_SKIP = frozenset(b" \t\r\n")
_IDENT_FIRST = frozenset(b"_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_IDENT_NTH = _IDENT_FIRST | frozenset(b"0123456789-")
_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")
_SIMPLE_ESCAPES = {ord("n"): b"\n", ord("t"): b"\t", ord("r"): b"\r", ord("b"): b"\b", ord("f"): b"\f"}
_FLOAT_TEXT = re.compile(rb"[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?")

_UNSUPPORTED: Any = object()  # a null or a float: parses, but rtpengine cannot convert it


class _Fail(Exception):
    """Internal: the document does not parse."""


class _Scanner:
    """A re-implementation of the parts of json-glib's GScanner configuration that matter."""

    __slots__ = ("data", "n", "peeked", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.pos = 0
        self.peeked: tuple[str, Any] | None = None

    def peek(self) -> tuple[str, Any]:
        if self.peeked is None:
            self.peeked = self._scan()
        return self.peeked

    def next(self) -> tuple[str, Any]:
        token = self.peek()
        if token[0] != _EOF:
            self.peeked = None
        return token

    def _char(self) -> int:
        """Consume one byte; 0 at the end (as GScanner does)."""
        if self.pos < self.n:
            c = self.data[self.pos]
            self.pos += 1
            return c
        return 0

    def _peek_char(self) -> int:
        return self.data[self.pos] if self.pos < self.n else 0

    def _scan(self) -> tuple[str, Any]:
        data = self.data
        while True:
            if self.pos >= self.n:
                return (_EOF, None)
            c = data[self.pos]
            if c in _SKIP:
                self.pos += 1
                continue
            if c == 0x2F:  # '/': a comment up to the next '/'
                end = data.find(b"/", self.pos + 1)
                if end < 0:
                    raise _Fail("unterminated comment")
                self.pos = end + 1
                continue
            break
        self.pos += 1
        if c in _IDENT_FIRST:
            start = self.pos - 1
            while self.pos < self.n and data[self.pos] in _IDENT_NTH:
                self.pos += 1
            word = data[start : self.pos]
            symbol = _SYMBOLS.get(word)
            return (symbol, None) if symbol is not None else (_IDENT, word)
        if c == 0x22:  # '"'
            return (_STRING, self._dq_string())
        if c == 0x27:  # "'"
            end = data.find(b"'", self.pos)
            if end < 0:
                raise _Fail("unterminated string")
            text = data[self.pos : end]
            self.pos = end + 1
            return (_STRING, text)
        if c == 0x2E:  # '.' starts a float
            return self._number(_FLOAT, bytearray(b"0.") + bytes([self._char()]))
        if c == 0x24:  # '$' starts a hex number
            return self._number("HEX", bytearray([self._char()]))
        if c == 0x30:  # '0': octal, or 0x / 0b prefix
            nxt = self._peek_char()
            if nxt in (0x78, 0x58):  # x X
                self.pos += 1
                first = self._char()
                if first == 0 or first not in _HEX:
                    raise _Fail("bad hex constant")
                return self._number("HEX", bytearray([first]))
            if nxt in (0x62, 0x42):  # b B
                self.pos += 1
                first = self._char()
                if first == 0 or first not in _DIGITS:
                    raise _Fail("bad binary constant")
                return self._number("BINARY", bytearray([first]))
            return self._number("OCTAL", bytearray(b"0"))
        if c in _DIGITS:
            return self._number(_INT, bytearray([c]))
        return (chr(c), None)

    def _number(self, kind: str, text: bytearray) -> tuple[str, Any]:
        last = text[-1]
        while True:
            is_e = kind == _FLOAT and last in (0x65, 0x45)
            c = self._peek_char()
            if not (c in _ALNUM or c == 0x2E or (is_e and c in (0x2B, 0x2D))):
                break
            self.pos += 1
            if c == 0x2E:
                if kind not in (_INT, "OCTAL"):
                    raise _Fail("malformed number")
                kind = _FLOAT
            elif c in _DIGITS or c in (0x2B, 0x2D):
                pass
            elif c in (0x65, 0x45):
                if kind == "BINARY":
                    raise _Fail("malformed number")
                if kind != "HEX":
                    kind = _FLOAT
            elif kind != "HEX":
                raise _Fail("malformed number")
            text.append(c)
            last = c
        if kind == _FLOAT:
            if _FLOAT_TEXT.fullmatch(text) is None:
                raise _Fail("malformed float")
            return (_FLOAT, None)
        base = {"HEX": 16, "OCTAL": 8, "BINARY": 2, _INT: 10}[kind]
        return (_INT, _strtoull(bytes(text), base))

    def _dq_string(self) -> bytes:
        out = bytearray()
        while True:
            c = self._char()
            if c == 0:
                raise _Fail("unterminated string")
            if c == 0x22:
                return bytes(out)
            if c != 0x5C:  # not a backslash
                out.append(c)
                continue
            c = self._char()
            if c == 0:
                continue  # the next read reports the unterminated string
            simple = _SIMPLE_ESCAPES.get(c)
            if simple is not None:
                out += simple
            elif c == 0x75:  # 'u'
                if self._peek_char() in _HEX:
                    out += self._unicode_escape()
            elif 0x30 <= c <= 0x37:  # up to three octal digits, kept as one byte
                value = c - 0x30
                for _ in range(2):
                    nxt = self._peek_char()
                    if not 0x30 <= nxt <= 0x37:
                        break
                    self.pos += 1
                    value = value * 8 + nxt - 0x30
                out.append(value & 0xFF)
            else:
                out.append(c)  # \\ \" \/ and unknown escapes: the character itself

    def _hex4(self) -> int:
        # Like json-glib: up to four hex digits, positioned as if all four were there; the first
        # non-hex character ends the escape and is swallowed.
        value = 0
        for i in range(4):
            c = self._char()
            if c == 0 or c not in _HEX:
                break
            value += int(chr(c), 16) << ((3 - i) * 4)
        return value

    def _unicode_escape(self) -> bytes:
        unit = self._hex4()
        # A surrogate must be followed by a backslash-u escape of its partner. Otherwise the
        # characters read looking for it are lost and the lone surrogate is kept as three bytes.
        if 0xD800 <= unit <= 0xDFFF and self._char() == 0x5C and self._char() == 0x75:
            low = self._hex4()
            if not (0xD800 <= unit <= 0xDBFF and 0xDC00 <= low <= 0xDFFF):
                raise _Fail("malformed surrogate pair")
            unit = 0x10000 + ((unit & 0x3FF) << 10) + (low & 0x3FF)
        return chr(unit).encode("utf-8", "surrogatepass")


def _strtoull(text: bytes, base: int) -> int:
    """g_ascii_strtoull on a whole token (saturating), returned as a signed 64-bit value."""
    s = text.lstrip(b" \t\n\v\f\r")
    negative = False
    if s[:1] in (b"+", b"-"):
        negative = s[:1] == b"-"
        s = s[1:]
    if base == 16 and s[:2] in (b"0x", b"0X"):
        s = s[2:]
    if not s or not all(chr(c) in _BASE_DIGITS[base] for c in s):
        raise _Fail("malformed integer")
    s = s.lstrip(b"0")
    # 2**64 has 20 decimal digits; longer strings saturate (and CPython refuses int() on more than
    # 4300 decimal digits)
    value = _U64 if base == 10 and len(s) > 20 else int(s or b"0", base)
    if value >= _U64:
        value = _U64 - 1  # saturated, and not negated
    elif negative:
        value = (-value) % _U64
    return value - _U64 if value >= 1 << 63 else value


_BASE_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


class _Parser:
    __slots__ = ("depth", "scanner", "unsupported")

    def __init__(self, scanner: _Scanner) -> None:
        self.scanner = scanner
        self.depth = 0
        self.unsupported = False

    def document(self) -> Any:
        root: Any = None
        have_root = False
        first_unsupported = False
        while self.scanner.peek()[0] != _EOF:
            value, produced = self.statement(have_root)
            if produced and not have_root:
                root, have_root = value, True
                first_unsupported = self.unsupported
        if not have_root:
            raise NgError(BENCODE_DECODE_FAILED)
        if first_unsupported:
            raise NgError(BENCODE_DECODE_FAILED)
        return root

    def statement(self, have_root: bool) -> tuple[Any, bool]:
        kind = self.scanner.peek()[0]
        if kind == "{":
            return self.object(), True
        if kind == "[":
            return self.array(), True
        if kind == _VAR:  # "var name = <statement>;" is accepted by json-glib
            self.scanner.next()
            if self.scanner.next()[0] != _IDENT or self.scanner.next()[0] != "=":
                raise _Fail("bad assignment")
            result = self.statement(have_root)
            if self.scanner.peek()[0] == ";":
                self.scanner.next()
            return result
        if kind in (_NULL, _TRUE, _FALSE, "-", _INT, _FLOAT, _STRING, _IDENT) and not have_root:
            return self.value(self.scanner.next()), True
        raise _Fail("unexpected token at top level")

    def value(self, token: tuple[str, Any]) -> Any:
        kind, payload = token
        negative = False
        if kind == "-":
            if self.scanner.peek()[0] not in (_INT, _FLOAT):
                raise _Fail("'-' without a number")
            negative = True
            kind, payload = self.scanner.next()
        if kind == _INT:
            if negative:
                payload = -payload if payload != -(1 << 63) else payload
            return payload
        if kind == _STRING:
            return _c_string(payload)
        if kind == _TRUE:
            return 1
        if kind == _FALSE:
            return 0
        if kind in (_FLOAT, _NULL):
            self.unsupported = True
            return _UNSUPPORTED
        raise _Fail("not a value")

    def _member_value(self) -> Any:
        kind = self.scanner.peek()[0]
        if kind == "[":
            return self.array()
        if kind == "{":
            return self.object()
        return self.value(self.scanner.next())

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Fail("nested too deeply")

    def object(self) -> dict[str, Any]:
        self._enter()
        scanner = self.scanner
        scanner.next()  # '{'
        result: dict[str, Any] = {}
        while True:
            kind, payload = scanner.peek()
            if kind == "}":
                break
            if kind != _STRING:
                raise _Fail("member name expected")
            scanner.next()
            name = _c_string(payload)
            if scanner.next()[0] != ":":
                raise _Fail("':' expected")
            member = self._member_value()
            kind = scanner.peek()[0]
            if kind == ",":
                scanner.next()
                if scanner.peek()[0] == "}":
                    raise _Fail("trailing comma")
            elif kind != "}":
                raise _Fail("',' expected")
            result[name] = member
        scanner.next()  # '}'
        self.depth -= 1
        return result

    def array(self) -> list[Any]:
        self._enter()
        scanner = self.scanner
        scanner.next()  # '['
        result: list[Any] = []
        while scanner.peek()[0] != "]":
            result.append(self._member_value())
            kind = scanner.peek()[0]
            if kind == ",":
                scanner.next()
                if scanner.peek()[0] == "]":
                    raise _Fail("trailing comma")
            elif kind != "]":
                raise _Fail("',' expected")
        scanner.next()  # ']'
        self.depth -= 1
        return result


def _c_string(raw: bytes) -> str:
    nul = raw.find(b"\x00")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "surrogateescape")


def decode_json_dict(data: bytes) -> dict[str, Any]:
    """Decode a JSON NG request the way rtpengine 10.5 does.

    Raises `NgError` with `JSON_PARSE_FAILED` when json-glib would refuse the document and with
    `BENCODE_DECODE_FAILED` when it parses but cannot be converted to an NG dictionary.
    """
    if b"\x00" in data:  # g_utf8_validate with an explicit length refuses NUL bytes
        raise NgError(JSON_PARSE_FAILED)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise NgError(JSON_PARSE_FAILED) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        root = _Parser(_Scanner(data)).document()
    except _Fail:
        raise NgError(JSON_PARSE_FAILED) from None
    if not isinstance(root, dict):
        raise NgError(BENCODE_DECODE_FAILED)
    return root


# ---------------------------------------------------------------------------------------- encoding

_ESCAPES = {0x22: b'\\"', 0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}
_NEEDS_ESCAPE = re.compile(rb'["\\\x01-\x1e\x7f]')


def _escape_byte(m: re.Match[bytes]) -> bytes:
    c = m.group()[0]
    return _ESCAPES.get(c) or b"\\u00%02x" % c


def _json_string(value: str | bytes, out: list[bytes]) -> None:
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raw = raw[:nul]
    out.append(b'"')
    out.append(_NEEDS_ESCAPE.sub(_escape_byte, raw))
    out.append(b'"')


def encode_json(value: Any) -> bytes:
    """Encode a reply the way json-glib's compact generator writes rtpengine's replies."""
    out: list[bytes] = []
    _encode_into(value, out, 0)
    return b"".join(out)


def _encode_into(value: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("structure nested too deeply")
    if isinstance(value, str | bytes):
        _json_string(value, out)
    elif isinstance(value, bool):
        raise TypeError("NG replies have no booleans; send an int or a string")
    elif isinstance(value, int):
        out.append(b"%d" % value)
    elif isinstance(value, list | tuple):
        out.append(b"[")
        for i, item in enumerate(value):
            if i:
                out.append(b",")
            _encode_into(item, out, depth + 1)
        out.append(b"]")
    elif isinstance(value, Mapping):
        out.append(b"{")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str | bytes):
                raise TypeError(f"JSON object keys must be str or bytes, not {type(key).__name__}")
            if i:
                out.append(b",")
            _json_string(key, out)
            out.append(b":")
            _encode_into(item, out, depth + 1)
        out.append(b"}")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")
