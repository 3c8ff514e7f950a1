"""Bencode: canonical encoding, strict decoding, and rtpengine 10.5's lenient NG dictionary decoding.

The lenient cases were each observed against rtpengine 10.5.3.5 (ping/list requests over loopback):
the comments say what 10.5 answered.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karl_core.ng.bencode import (
    INT64_MAX,
    INT64_MIN,
    MAX_DEPTH,
    BencodeError,
    _encode_into,
    decode,
    decode_ng_dict,
    encode,
)

# ------------------------------------------------------------------------------------------ encode


def test_encode_scalars() -> None:
    assert encode(0) == b"i0e"
    assert encode(-42) == b"i-42e"
    assert encode("") == b"0:"
    assert encode("spam") == b"4:spam"
    assert encode(b"\x00\xff") == b"2:\x00\xff"
    assert encode("é") == b"2:\xc3\xa9"  # length counts bytes, not characters


def test_encode_containers_sorts_keys_as_bytes() -> None:
    assert encode([1, "a", [], {}]) == b"li1e1:aledee"
    assert encode(("x",)) == b"l1:xe"
    # "Z" (0x5a) < "a" (0x61) < "é" (0xc3...): bytewise, not by code point of the first letter only
    assert encode({"é": 1, "a": 2, "Z": 3}) == b"d1:Zi3e1:ai2e2:\xc3\xa9i1ee"
    assert encode({b"b": 1, "a": 2}) == b"d1:ai2e1:bi1ee"


def test_encode_can_keep_insertion_order() -> None:
    assert encode({"result": "ok", "calls": []}, sort_keys=False) == b"d6:result2:ok5:callslee"


def test_encode_surrogateescaped_str_round_trips_to_the_original_bytes() -> None:
    raw = b"\xff\xfe-\x80"
    text = raw.decode("utf-8", "surrogateescape")
    assert encode(text) == b"4:" + raw


@pytest.mark.parametrize("bad", [True, False, 1.5, None, {1: 2}, {(1,): 2}, object(), {"a": {1, 2}}])
def test_encode_rejects_unsupported_types_with_type_error(bad: Any) -> None:
    with pytest.raises(TypeError):
        encode(bad)


def test_encode_rejects_unencodable_strings_and_colliding_keys() -> None:
    with pytest.raises(BencodeError):
        encode("\ud800")  # a lone surrogate outside the surrogateescape range has no bytes
    with pytest.raises(BencodeError):
        encode({"a": 1, b"a": 2})


def test_encode_refuses_cycles_and_absurd_nesting() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(BencodeError):
        encode(cyclic)


# ---------------------------------------------------------------------------------- strict decode


def test_decode_values() -> None:
    assert decode(b"i0e") == 0
    assert decode(b"i-9223372036854775808e") == INT64_MIN
    assert decode(b"4:spam") == "spam"
    assert decode(b"0:") == ""
    assert decode(b"l4:spami3ee") == ["spam", 3]
    assert decode(b"d3:cow3:moo4:spaml1:a1:bee") == {"cow": "moo", "spam": ["a", "b"]}


def test_decode_accepts_unsorted_keys_as_rtpengine_sends_them() -> None:
    assert decode(b"d6:result4:pong3:abci1ee") == {"result": "pong", "abc": 1}


def test_decode_gives_surrogateescaped_str_for_invalid_utf8() -> None:
    value = decode(b"3:a\xffb")
    assert value == "a\udcffb"
    assert encode(value) == b"3:a\xffb"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"i03e",  # leading zero
        b"i-0e",
        b"i+1e",
        b"i 1e",
        b"ie",
        b"i1",
        b"05:hello",
        b"5:hell",
        b"4spam",
        b"l",  # unterminated
        b"d1:a",
        b"d1:ai1e",
        b"di1ei2ee",  # integer key
        b"dl1:ae1:be",  # list key
        b"d1:ai1e1:ai2ee",  # duplicate key
        b"i1ei2e",  # trailing data
        b"4:spamx",
        b"e",
        b"x",
        b"d1:ae",  # key without value
    ],
)
def test_strict_decode_rejects(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(data)


# ------------------------------------------------------------------------------- lenient NG dict


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # all answered "pong" by 10.5 (with the dictionary shown)
        (b"d7:command4:pinge", {"command": "ping"}),
        (b"d7:command4:ping", {"command": "ping"}),  # final "e" missing
        (b"d7:command4:pingexyz", {"command": "ping"}),  # trailing bytes
        (b"d7:command4:ping1:ad1:b1:c", {"command": "ping", "a": {"b": "c"}}),  # inner dict open at the end
        (b"d7:command4:ping1:al1:x", {"command": "ping", "a": ["x"]}),
        (b"d7:command4:ping1:al", {"command": "ping", "a": []}),
        (b"d7:command4:ping1:ad", {"command": "ping", "a": {}}),
        (b"d7:command4:ping1:ald1:b1:c", {"command": "ping", "a": [{"b": "c"}]}),
        (b"d7:command4:ping1:ad1:bl", {"command": "ping", "a": {"b": []}}),
        (b"d7:command4:ping1:ali1e", {"command": "ping", "a": [1]}),
        # the first of two equal keys wins (10.5 answered pong, not "No SDP body")
        (b"d7:command4:ping7:command5:offere", {"command": "ping"}),
        (b"d", {}),  # -> Dictionary contains no key "command"
        (b"de", {}),
    ],
)
def test_decode_ng_dict_is_as_lenient_as_rtpengine(data: bytes, expected: dict[str, Any]) -> None:
    assert decode_ng_dict(data) == expected


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        # `list` with these limits, against 3 calls in 10.5: the number of calls returned
        (b"i1e", 1),
        (b"i-0e", 0),
        (b"i+2e", 2),
        (b"i 2e", 2),
        (b"i\t1e", 1),
        (b"i\n2e", 2),
        (b"i 03e", 3),
        (b"i-03e", -3),  # -> invalid limit
        (b"i-00e", 0),
        (b"i+0e", 0),
        (b"i99999999999999999999999e", INT64_MAX),  # saturates (all 3 calls)
        (b"i-99999999999999999999e", INT64_MIN),
    ],
)
def test_decode_ng_dict_reads_integers_like_strtoll(literal: bytes, value: int) -> None:
    assert decode_ng_dict(b"d5:limit" + literal + b"e") == {"limit": value}


def test_huge_integers_saturate_instead_of_failing() -> None:
    # CPython's int() refuses more than 4300 digits; strtoll saturates
    many = b"9" * 5000
    assert decode_ng_dict(b"d1:ai" + many + b"e1:bi-" + many + b"ee") == {"a": INT64_MAX, "b": INT64_MIN}
    assert decode_ng_dict(b"d1:ai " + b"0" * 5000 + b"12ee") == {"a": 12}
    with pytest.raises(BencodeError):
        decode(b"i" + many + b"x")


@pytest.mark.parametrize(
    "data",
    [
        # each answered "Could not decode bencode dictionary" by 10.5
        b"d7:command4:ping\x00e",  # garbage inside the dictionary
        b"d7:command4:ping1:ai5",  # truncated integer
        b"d7:command4:ping1:a3:ab",  # string longer than the data
        b"d7:command4:ping1:a",  # key without value at the end
        b"d7:command4:pingi1e1:a",  # integer key
        b"d7:command4:ping1:ae",  # key followed by "e"
        b"d7:command4:ping1:ad1:b",  # inner key without value at the end
        b"d7:command4:ping1:ad1:be",
        b"d5:limiti03ee",  # a leading 0 must be the whole number
        b"d5:limiti00ee",
        b"d5:limiti-ee",
        b"d5:limitiee",
        b"d5:limiti- 1ee",
        b"d5:limiti2.5ee",
        b"d5:limiti0x10ee",
        b"d5:limit05:helloe",
        b"dd1:a1:bee",  # dictionary as key
    ],
)
def test_decode_ng_dict_rejects_what_rtpengine_rejects(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode_ng_dict(data)


@pytest.mark.parametrize("data", [b"", b"l7:command4:pinge", b"i1e", b"4:ping", b"x"])
def test_decode_ng_dict_needs_a_dictionary(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode_ng_dict(data)


def test_hostile_nesting_is_refused_without_recursion_error() -> None:
    deep = b"d1:a" + b"l" * 100_000
    with pytest.raises(BencodeError):
        decode_ng_dict(deep)
    with pytest.raises(BencodeError):
        decode(b"l" * 100_000 + b"e" * 100_000)
    # the cap itself: MAX_DEPTH containers are fine, one more is not
    assert decode(b"l" * MAX_DEPTH + b"e" * MAX_DEPTH) is not None
    with pytest.raises(BencodeError):
        decode(b"l" * (MAX_DEPTH + 1) + b"e" * (MAX_DEPTH + 1))


# ------------------------------------------------------------------------------------- properties

_keys = st.text(max_size=8) | st.binary(max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape"))
_leaves = (
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX)
    | st.text(max_size=20)
    | st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape"))
)
_values = st.recursive(
    _leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=10,
)


@settings(deadline=None)
@given(_values)
def test_encode_decode_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data  # canonical: re-encoding is byte-identical


@settings(deadline=None)
@given(_values)
def test_key_order_kept_encoding_is_the_general_encoding(value: Any) -> None:
    """`sort_keys=False` (every NG reply) takes a text fast path for plain ASCII structures; it must
    give exactly the bytes of the general encoder, and fall back to it for everything else."""
    general: list[bytes] = []
    _encode_into(value, general, False, 0)
    assert encode(value, sort_keys=False) == b"".join(general)


def test_key_order_kept_encoding_refuses_what_the_general_one_refuses() -> None:
    with pytest.raises(TypeError):
        encode({"a": [1, True]}, sort_keys=False)
    deep: Any = 1
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(BencodeError):
        encode(deep, sort_keys=False)
    assert encode({"ü": "é"}, sort_keys=False) == "d2:ü2:ée".encode()


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=3), st.binary(max_size=10))
def test_ng_dict_round_trip_with_trailing_garbage(value: dict[str, Any], tail: bytes) -> None:
    assert decode_ng_dict(encode(value) + tail) == value


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(_keys, _values, min_size=1, max_size=3), st.data())
def test_ng_dict_truncated_is_a_prefix_or_an_error(value: dict[str, Any], data: st.DataObject) -> None:
    encoded = encode(value, sort_keys=False)
    cut = data.draw(st.integers(min_value=1, max_value=len(encoded)))
    try:
        decoded = decode_ng_dict(encoded[:cut])
    except BencodeError:
        return
    # whatever a truncated dictionary yields, it only holds keys of the original
    assert set(decoded) <= set(value)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_bencode_error(data: bytes) -> None:
    for func in (decode, decode_ng_dict):
        with contextlib.suppress(BencodeError):
            func(data)


_SOUP = [b"d", b"l", b"e", b"i", b"0", b"1", b"2", b":", b"-", b" ", b"a"]


@given(st.lists(st.sampled_from(_SOUP), max_size=60))
def test_bencode_alphabet_soup_raises_only_bencode_error(parts: list[bytes]) -> None:
    data = b"d" + b"".join(parts)
    with contextlib.suppress(BencodeError):
        decode_ng_dict(data)
