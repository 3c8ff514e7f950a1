"""Strict reading of query parameters: each problem is a 400 that names the parameter."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Collection

from multidict import MultiMapping

from karl_medianode.operations.http.errors import ApiError

# A sign is accepted so that "-0" reads as the 0 it is; the range check refuses real negatives.
_INTEGER = re.compile(r"-?[0-9]{1,12}")
_NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?")


def _bad(name: str, problem: str) -> ApiError:
    return ApiError(400, f"query parameter '{name}' {problem}")


class QueryParams:
    """The query of one request, checked against the parameters an endpoint knows."""

    def __init__(self, query: MultiMapping[str], known: Collection[str]) -> None:
        self._query = query
        for name in query:
            if name not in known:
                expected = ", ".join(sorted(known)) or "none"
                raise ApiError(400, f"unknown query parameter '{name}' (this endpoint takes: {expected})")
            if len(query.getall(name)) > 1:
                raise _bad(name, "is given more than once")

    def _raw(self, name: str) -> str | None:
        return self._query.get(name)

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        if not _INTEGER.fullmatch(raw) or not minimum <= int(raw) <= maximum:
            raise _bad(name, f"must be an integer from {minimum} to {maximum}, got {raw[:40]!r}")
        return int(raw)

    def seconds(self, name: str) -> float | None:
        """A non-negative number of seconds (decimals and exponents allowed)."""
        raw = self._raw(name)
        if raw is None:
            return None
        value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
        if not math.isfinite(value) or value < 0:
            raise _bad(name, f"must be a number of seconds >= 0, got {raw[:40]!r}")
        return value

    def choice(self, name: str, choices: Collection[str]) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        if raw not in choices:
            raise _bad(name, f"must be one of {', '.join(sorted(choices))}, got {raw[:40]!r}")
        return raw

    def address(self, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        raw = self._raw(name)
        if raw is None:
            return None
        try:
            return ipaddress.ip_address(raw)
        except ValueError:
            raise _bad(name, f"must be an IPv4 or IPv6 address, got {raw[:60]!r}") from None

    def text(self, name: str) -> str | None:
        return self._raw(name)
