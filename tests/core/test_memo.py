"""`short_text_cache`: results cached for short strings only, exceptions never."""

from __future__ import annotations

import pytest

from karl_core.memo import short_text_cache


def test_short_strings_are_cached_long_ones_are_not() -> None:
    calls: list[str] = []

    @short_text_cache(maxsize=8, max_length=4)
    def upper(text: str) -> str:
        calls.append(text)
        return text.upper()

    assert [upper("ab"), upper("ab"), upper("abcde"), upper("abcde")] == ["AB", "AB", "ABCDE", "ABCDE"]
    assert calls == ["ab", "abcde", "abcde"]


def test_exceptions_are_not_cached() -> None:
    calls: list[str] = []

    @short_text_cache(maxsize=8, max_length=64)
    def number(text: str) -> int:
        calls.append(text)
        return int(text)

    for _ in range(2):
        with pytest.raises(ValueError):
            number("x")
    assert calls == ["x", "x"]


def test_the_table_keeps_the_most_recent_strings_only() -> None:
    calls: list[str] = []

    @short_text_cache(maxsize=8, max_length=64)
    def same(text: str) -> str:
        calls.append(text)
        return text

    for index in range(100):
        same(str(index))
    same("99")  # recent: still there
    same("0")  # long gone: computed again
    assert calls == [str(index) for index in range(100)] + ["0"]
