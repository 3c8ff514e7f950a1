"""rtpengine's way of splitting an SDP line value into space-separated tokens.

Tokens are separated by exactly one space; two spaces make an empty token. The last token may end
the value without a separator, but an empty remainder is not a token. A value split this way and
joined again with single spaces gives back the original text, which is what lets the typed views
(`Origin`, `Connection`, `MediaLine`) re-render lines byte-exactly.
"""

from __future__ import annotations


def split_tokens(value: str, count: int) -> tuple[list[str], list[int], str | None] | None:
    """Take `count` tokens off the front of `value`.

    Returns (tokens, their start offsets in value, rest) or None when there are fewer than `count`
    tokens. `rest` is the text after the separator that followed the last token, or None when the
    last token ran to the end of the value (no separator)."""
    tokens: list[str] = []
    starts: list[int] = []
    pos = 0
    end = len(value)
    for _ in range(count):
        sep = value.find(" ", pos)
        if sep >= 0:
            tokens.append(value[pos:sep])
            starts.append(pos)
            pos = sep + 1
            continue
        if pos >= end:
            return None
        tokens.append(value[pos:])
        starts.append(pos)
        if len(tokens) < count:
            return None
        return tokens, starts, None
    return tokens, starts, value[pos:]


def join_tokens(tokens: list[str], rest: str | None) -> str:
    """Inverse of split_tokens."""
    joined = " ".join(tokens)
    return joined if rest is None else f"{joined} {rest}"


def iter_list_tokens(text: str) -> list[tuple[str, int]]:
    """All tokens of a space-separated list as rtpengine walks it: (token, offset).

    Like str.split(" ") except that a final empty token is dropped ("0 " -> ["0"], "" -> [])."""
    out: list[tuple[str, int]] = []
    pos = 0
    end = len(text)
    while pos < end:
        sep = text.find(" ", pos)
        if sep < 0:
            out.append((text[pos:], pos))
            break
        out.append((text[pos:sep], pos))
        pos = sep + 1
    return out
