"""NG datagram framing: ``COOKIE SP PAYLOAD`` in, ``COOKIE SP REPLY`` out.

The order in which rtpengine 10.5 handles a datagram, which a server must keep:

1. `split_cookie` — no cookie: drop silently (`NoCookie`).
2. Empty payload: reply `error_reply(INVALID_DATA_NO_PAYLOAD)` *without* consulting the reply
   cache, but store that reply under the cookie (10.5 does; a later request reusing the cookie
   then gets this error).
3. Reply cache lookup by cookie (see `reply_cache`).
4. `decode_payload`, `parse_command`, the command; every error becomes `error_reply(reason)`.
5. `encode_reply` in `reply_encoding(payload)`, cache it, send it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import bencode, json_dialect
from .errors import (
    BENCODE_DECODE_FAILED,
    INVALID_DATA_NO_PAYLOAD,
    INVALID_NG_DATA_FORMAT,
    NgError,
    NoCookie,
)

_SPACE = ord(" ")
_D = ord("d")
_BRACE = ord("{")


class Encoding(enum.Enum):
    """How the request was encoded; the reply uses the same."""

    BENCODE = "bencode"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class NgRequest:
    cookie: bytes
    payload: dict[str, Any]
    encoding: Encoding


def split_cookie(datagram: bytes) -> tuple[bytes, bytes]:
    """Split at the first space byte into (cookie, payload).

    Raises `NoCookie` when there is no space or the space is the first byte (rtpengine drops such
    datagrams without a reply; a tab is not a separator). The payload may be empty.
    """
    space = datagram.find(b" ")
    if space <= 0:
        raise NoCookie()
    return datagram[:space], datagram[space + 1 :]


def reply_encoding(payload: bytes) -> Encoding:
    """The encoding of the reply to `payload`, errors included: JSON once the first byte is ``{``
    (even if the JSON then fails to parse), bencode otherwise."""
    return Encoding.JSON if payload[:1] == b"{" else Encoding.BENCODE


def decode_payload(payload: bytes) -> tuple[dict[str, Any], Encoding]:
    """Decode an NG payload; its first byte chooses the format (``d`` bencode, ``{`` JSON).

    Raises `NgError` with rtpengine's texts: `Invalid data (no payload)`, `Invalid NG data format`
    (any other first byte, e.g. a bencoded list or leading whitespace),
    `Could not decode bencode dictionary`, `Failed to parse JSON document`.
    """
    if not payload:
        raise NgError(INVALID_DATA_NO_PAYLOAD)
    first = payload[0]
    if first == _D:
        try:
            return bencode.decode_ng_dict(payload), Encoding.BENCODE
        except bencode.BencodeError:
            raise NgError(BENCODE_DECODE_FAILED) from None
    if first == _BRACE:
        return json_dialect.decode_json_dict(payload), Encoding.JSON
    raise NgError(INVALID_NG_DATA_FORMAT)


def decode_request(datagram: bytes) -> NgRequest:
    """`split_cookie` + `decode_payload` (raises `NoCookie` or `NgError`)."""
    cookie, payload = split_cookie(datagram)
    decoded, encoding = decode_payload(payload)
    return NgRequest(cookie, decoded, encoding)


def encode_reply(cookie: bytes, reply: Mapping[str, Any], encoding: Encoding) -> bytes:
    """``cookie SP body``, the body in the request's encoding.

    Keys are written in the mapping's own order, as rtpengine writes its replies (e.g.
    ``result`` before ``error-reason``, ``calls`` before ``result``); a JSON body looks like
    json-glib's compact output (``{"result":"pong"}``).
    """
    if encoding is Encoding.JSON:
        body = json_dialect.encode_json(reply)
    else:
        body = bencode.encode(reply, sort_keys=False)
    return b"".join((cookie, b" ", body))


def error_reply(reason: str) -> dict[str, Any]:
    """The reply rtpengine sends for a failed request, keys in its order."""
    return {"result": "error", "error-reason": reason}


def load_limit_reply(message: str) -> dict[str, Any]:
    """The reply to a refused `offer` when the client sent ``supports: ["load limit"]``."""
    return {"result": "load limit", "message": message}
