"""JSON requests and replies as rtpengine 10.5 (json-glib 1.6) handles them.

Every parametrised case was sent to rtpengine 10.5.3.5 as an NG payload; the comment or the expected
outcome is what it answered (`pong`, or the error text), or — for string contents — the call-id it
stored (read back with `list`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karl_core.ng.errors import BENCODE_DECODE_FAILED, JSON_PARSE_FAILED, NgError
from karl_core.ng.json_dialect import MAX_DEPTH, decode_json_dict, encode_json


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"command":"ping"}', {"command": "ping"}),
        (b'{ "command" : "ping" }', {"command": "ping"}),
        (b'{"command":"ping"}  ', {"command": "ping"}),
        (b'{"command":"ping"}\n', {"command": "ping"}),
        (b"{'command':'ping'}", {"command": "ping"}),  # single quotes
        (b'{"command":"ping" /* c */ }', {"command": "ping"}),  # comment from "/" to the next "/"
        (b'{"command":"ping"}{"command":"list"}', {"command": "ping"}),  # later objects ignored
        (b'{"command":"ping"}[]', {"command": "ping"}),
        (b'{"command":"ping","command":"offer"}', {"command": "offer"}),  # last duplicate wins
        (b'{"command":"pi\\u006eg"}', {"command": "ping"}),
        (b'{"command":"ping\\u0000x"}', {"command": "ping"}),  # strings end at NUL
        (b'{"comm\\u0000and":"ping"}', {"comm": "ping"}),  # keys too
        (b'{"a":true,"b":false}', {"a": 1, "b": 0}),  # limit: true -> 1 call
        (b'{"a":01}', {"a": 1}),  # leading 0 = octal
        (b'{"a":010}', {"a": 8}),
        (b'{"a":0x10}', {"a": 16}),  # limit 0x10 -> all calls
        (b'{"a":$ff}', {"a": 255}),
        (b'{"a":0b101}', {"a": 5}),
        (b'{"a":-0}', {"a": 0}),
        (b'{"a":- 5}', {"a": -5}),
        (b'{"a":9223372036854775807}', {"a": 9223372036854775807}),
        (b'{"a":9223372036854775808}', {"a": -9223372036854775808}),  # -> invalid limit
        (b'{"a":18446744073709551615}', {"a": -1}),  # -> invalid limit
        (b'{"a":18446744073709551617}', {"a": -1}),  # saturated, -> invalid limit
        (b'{"a":-9223372036854775809}', {"a": 9223372036854775807}),  # wraps -> all calls
        (b'{"a":"\\x41"}', {"a": "x41"}),  # unknown escape = the character
        (b'{"a":"\\q"}', {"a": "q"}),
        (b'{"a":"\\101"}', {"a": "A"}),  # octal escape
        (b'{"a":"\\1012"}', {"a": "A2"}),
        (b'{"a":"\\777"}', {"a": "\udcff"}),  # one raw byte 0xff
        (b'{"a":"\\0ab"}', {"a": ""}),
        (b'{"a":"a\\u41"b"}', {"a": "a\u4100b"}),  # short \\u swallows the next character
        (b"{'a':'sq\\\"x'}", {"a": 'sq\\"x'}),  # no escapes in single quotes
        (b'{"a":"\\ud83d\\ude00"}', {"a": "\U0001f600"}),
        (b'{"a":"\\ud800x\\"zz"}', {"a": '\udced\udca0\udc80"zz'}),  # lone surrogate kept as 3 bytes
        (b'{"a":"\\uZZ"}', {"a": "ZZ"}),
        (b'{"a":"\\/\\\\"}', {"a": "/\\"}),
        (b'{"a":"tab\there\n"}', {"a": "tab\there\n"}),  # raw control characters accepted
        (b'{"a":"\xc3\xa9"}', {"a": "\u00e9"}),
        (b'{"a":[[[[[1]]]]],"b":{"c":[]}}', {"a": [[[[[1]]]]], "b": {"c": []}}),
        (b'{"":1}', {"": 1}),
        (b"{} var x = {};", {}),
    ],
)
def test_decode_like_rtpengine(data: bytes, expected: dict[str, Any]) -> None:
    assert decode_json_dict(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b'{"command":"ping"} x',
        b'{"command":"ping",}',
        b'{"command":"ping"} // c',
        b'{"command":"ping"} # c',
        b'{"command":"ping", // c\n "a":1}',
        b'{command:"ping"}',
        b'{"command":"ping","a":NaN}',
        b'{"command":"ping","a":TRUE}',
        b'{"command":"ping","a":tru}',
        b'{"command":"ping","a":[1,]}',
        b'{"command":"ping","a":[1 2]}',
        b'{"command":"ping" "a":1}',
        b'{"command" "ping"}',
        b'{"command"="ping"}',
        b'{"command":"ping"',
        b'{"command":"ping"}1',
        b'{"command":"ping"}"x"',
        b'{"command":"ping"}\x00',
        b'{"command":"ping"}\x00x',
        b'{"command":"list","limit":+1}',
        b'{"command":"ping","a":"\\ud800"}',  # the closing quote is swallowed looking for \\u
        b'{"command":"ping","a":"\\u12"}',
        b'{"command":"ping","a":"\xff"}',  # invalid UTF-8
        b'{"a":08}',  # not octal
        b'{"a":1x}',
        b'{"a":0x}',
        b'{"a":1.2.3}',
        b'{"a":"\\ud800\\u0041"}',  # malformed surrogate pair
        b'{"a":/* unterminated',
        b"{'a",
    ],
)
def test_json_parse_failures(data: bytes) -> None:
    with pytest.raises(NgError) as info:
        decode_json_dict(data)
    assert info.value.reason == JSON_PARSE_FAILED


@pytest.mark.parametrize(
    "data",
    [
        b'{"command":"ping","a":1.5}',
        b'{"command":"ping","a":null}',
        b'{"command":"list","limit":1e0}',
        b'{"command":"list","limit":1.}',
        b'{"command":"list","limit":.5}',
        b'{"command":"list","limit":1E2}',
        b'{"command":"ping","a":[1,null]}',
        b'{"command":"ping","a":[1.5]}',
        b"[]",  # not an object (rtpengine never gets here: its first byte must be "{")
        b"",
    ],
)
def test_values_bencode_cannot_hold(data: bytes) -> None:
    with pytest.raises(NgError) as info:
        decode_json_dict(data)
    assert info.value.reason == BENCODE_DECODE_FAILED


def test_a_parse_error_anywhere_beats_an_unconvertible_value() -> None:
    with pytest.raises(NgError) as info:
        decode_json_dict(b'{"a":null} x')
    assert info.value.reason == JSON_PARSE_FAILED
    # ... while nulls in ignored later objects do not matter
    assert decode_json_dict(b'{"a":1} {"b":null}') == {"a": 1}


def test_huge_numbers_saturate_like_g_ascii_strtoull() -> None:
    many = b"9" * 5000
    assert decode_json_dict(b'{"a":' + many + b',"b":-' + many + b',"c":0x' + b"f" * 5000 + b"}") == {
        "a": -1,  # 2**64-1 read as signed
        "b": 1,  # the parser negates the scanner's -1
        "c": -1,
    }


def test_nesting_cap() -> None:
    ok = b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert decode_json_dict(ok)
    with pytest.raises(NgError):
        decode_json_dict(b'{"a":' + b"[" * 100_000)


def test_encode_like_json_glib() -> None:
    # rtpengine's reply to `list` with these call-ids (observed byte-for-byte)
    ids = ["J\x01\x08\x09\x0a\x0b\x0c\x0d\x1e\x1f\x7f\"\\/\u00e9", "K\udcff\x00Z"]
    assert encode_json({"calls": ids, "result": "ok"}) == (
        b'{"calls":["J\\u0001\\b\\t\\n\\u000b\\f\\r\\u001e\x1f\\u007f\\"\\\\/\xc3\xa9","K\xff"],"result":"ok"}'
    )
    assert encode_json({"result": "pong"}) == b'{"result":"pong"}'
    assert encode_json({"a": [1, -2, {}], "b": {"c": []}}) == b'{"a":[1,-2,{}],"b":{"c":[]}}'


@pytest.mark.parametrize("bad", [{"a": True}, {"a": 1.5}, {"a": None}, {1: "x"}])
def test_encode_rejects_what_ng_replies_never_hold(bad: Any) -> None:
    with pytest.raises(TypeError):
        encode_json(bad)


_json_keys = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=8)
_json_values = st.recursive(
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_json_keys, children, max_size=3),
    max_leaves=10,
)


@settings(deadline=None)
@given(st.dictionaries(_json_keys, _json_values, max_size=4))
def test_encode_decode_round_trip(value: dict[str, Any]) -> None:
    assert decode_json_dict(encode_json(value)) == value


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_ng_error(data: bytes) -> None:
    with contextlib.suppress(NgError):
        decode_json_dict(b"{" + data)


@given(st.lists(st.sampled_from(list('{}[]:,"\'\\/*-+.0123456789xbe$ut nvar=;é')), max_size=60))
def test_json_alphabet_soup_raises_only_ng_error(chars: list[str]) -> None:
    with contextlib.suppress(NgError):
        decode_json_dict(("{" + "".join(chars)).encode())
