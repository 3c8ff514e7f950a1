"""Caching pure functions of short strings on the signalling path (addresses, SDP lines).

An offer or answer parses the same few strings several times (its m= line to validate, read and rewrite
it), and most lines of one call's SDP are the same as every other call's (`a=rtpmap:0 PCMU/8000`).
`short_text_cache` keeps results for strings up to a length, so that hostile input cannot make the
table large: it holds at most `maxsize` strings of at most `max_length` characters; longer strings are
computed every time. Results must be immutable: callers share them. Exceptions are not cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

_R = TypeVar("_R")


def short_text_cache(maxsize: int, max_length: int) -> Callable[[Callable[[str], _R]], Callable[[str], _R]]:
    """An LRU cache (`maxsize` entries) for a pure function of one string, used for strings of at most
    `max_length` characters."""

    def decorate(function: Callable[[str], _R]) -> Callable[[str], _R]:
        cached = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def lookup(text: str) -> _R:
            return cached(text) if len(text) <= max_length else function(text)

        return lookup

    return decorate
