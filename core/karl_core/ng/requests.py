"""From a request's payload to what a handler needs, and from a failure to its reply: the pure part of
serving one NG request, shared by the media node's NG socket and the socket-free engine tests.

`decode_request` is the whole path (payload → command, options, reply encoding); it is also offered in
its two steps, `decode_command` and `decode_options`, for a server that wants to know the command
before the options are read (to count or log a failure under the command's name). Every error is an
`NgError` with rtpengine 10.5's text; `ng_error_reply` turns one into the reply 10.5 sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .commands import Command, parse_command
from .endpoint import NgEndpoint, Request
from .errors import NgError
from .framing import Encoding, decode_payload, error_reply
from .options import NgOptions, check_required, parse_options


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """A decoded payload that names a known command (its options not read yet)."""

    message: dict[str, Any]
    command: Command
    encoding: Encoding
    """The reply's encoding (the payload's)."""


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """A request ready for its handler."""

    command: Command
    options: NgOptions
    encoding: Encoding


def decode_command(payload: bytes) -> CommandMessage:
    """Decode the payload (bencode or JSON) and find its command; raises `NgError`."""
    message, encoding = decode_payload(payload)
    return CommandMessage(message, parse_command(message), encoding)


def decode_options(message: Mapping[str, Any], command: Command) -> NgOptions:
    """Read the options of `command` and check the ones 10.5 requires before it looks at any call;
    raises `NgError`."""
    options = parse_options(message, command)
    check_required(options)
    return options


def decode_request(payload: bytes) -> DecodedRequest:
    """`decode_command` then `decode_options`; raises `NgError`."""
    decoded = decode_command(payload)
    return DecodedRequest(decoded.command, decode_options(decoded.message, decoded.command), decoded.encoding)


def ng_error_reply(exc: NgError) -> dict[str, Any]:
    """The reply to a request that failed with `exc`."""
    return error_reply(exc.reason)


def reply_fits(endpoint: NgEndpoint, request: Request, reply: Mapping[str, Any]) -> bool:
    """Whether a handler's reply (`result` may still be missing: `ok` is assumed) fits in one datagram
    as the answer to `request`, cookie included."""
    return endpoint.fits(request, {"result": "ok", **reply})
