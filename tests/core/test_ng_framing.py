"""Datagram framing, payload dispatch, replies and command names (behaviour observed with rtpengine
10.5.3.5 over loopback unless stated)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from karl_core.ng import errors
from karl_core.ng.bencode import decode
from karl_core.ng.commands import Command, parse_command
from karl_core.ng.errors import NgError, NoCookie
from karl_core.ng.framing import (
    Encoding,
    NgRequest,
    decode_payload,
    decode_request,
    encode_reply,
    error_reply,
    load_limit_reply,
    split_cookie,
)
from karl_core.ng.options import check_required, parse_options

# ------------------------------------------------------------------------------------------- cookie


@pytest.mark.parametrize(
    ("datagram", "cookie", "payload"),
    [
        (b"abc d7:command4:pinge", b"abc", b"d7:command4:pinge"),
        (b"abc ", b"abc", b""),  # -> "Invalid data (no payload)"
        (b"c1  d7:command4:pinge", b"c1", b" d7:command4:pinge"),  # -> "Invalid NG data format"
        (b"\x00\xff d7:command4:pinge", b"\x00\xff", b"d7:command4:pinge"),  # any bytes -> pong
        (b"a\tb c", b"a\tb", b"c"),
    ],
)
def test_split_cookie_at_the_first_space(datagram: bytes, cookie: bytes, payload: bytes) -> None:
    assert split_cookie(datagram) == (cookie, payload)


@pytest.mark.parametrize("datagram", [b"", b"abc", b" d7:command4:pinge", b"abc\td7:command4:pinge", b" "])
def test_no_cookie_means_silent_drop(datagram: bytes) -> None:
    # 10.5 sends nothing back for these (a tab is not a separator)
    with pytest.raises(NoCookie):
        split_cookie(datagram)


# ------------------------------------------------------------------------------------------ payload


def test_decode_payload_chooses_the_format_by_the_first_byte() -> None:
    assert decode_payload(b"d7:command4:pinge") == ({"command": "ping"}, Encoding.BENCODE)
    assert decode_payload(b'{"command":"ping"}') == ({"command": "ping"}, Encoding.JSON)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", errors.INVALID_DATA_NO_PAYLOAD),
        (b"x", errors.INVALID_NG_DATA_FORMAT),
        (b"l7:command4:pinge", errors.INVALID_NG_DATA_FORMAT),
        (b" d7:command4:pinge", errors.INVALID_NG_DATA_FORMAT),
        (b" {}", errors.INVALID_NG_DATA_FORMAT),
        (b"[]", errors.INVALID_NG_DATA_FORMAT),
        (b"i1e", errors.INVALID_NG_DATA_FORMAT),
        (b"d7:command4:ping\x00e", errors.BENCODE_DECODE_FAILED),
        (b"d7:command4:ping1:ai5", errors.BENCODE_DECODE_FAILED),
        (b'{"command":"ping",}', errors.JSON_PARSE_FAILED),
        (b'{"command":"ping","a":1.5}', errors.BENCODE_DECODE_FAILED),
    ],
)
def test_decode_payload_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(NgError) as info:
        decode_payload(payload)
    assert info.value.reason == reason


def test_decode_request() -> None:
    assert decode_request(b"c7 d7:command4:pinge") == NgRequest(b"c7", {"command": "ping"}, Encoding.BENCODE)
    with pytest.raises(NoCookie):
        decode_request(b"d7:command4:pinge")


# ------------------------------------------------------------------------------------------- replies


def test_replies_keep_rtpengine_key_order() -> None:
    # byte-for-byte what 10.5 sent
    assert encode_reply(b"p1", {"result": "pong"}, Encoding.BENCODE) == b"p1 d6:result4:ponge"
    assert encode_reply(b"abc", error_reply(errors.INVALID_DATA_NO_PAYLOAD), Encoding.BENCODE) == (
        b"abc d6:result5:error12:error-reason25:Invalid data (no payload)e"
    )
    assert encode_reply(b"c3", {"calls": ["call0", "call2"], "result": "ok"}, Encoding.JSON) == (
        b'c3 {"calls":["call0","call2"],"result":"ok"}'
    )
    assert encode_reply(b"p", error_reply(errors.NO_COMMAND), Encoding.JSON) == (
        b'p {"result":"error","error-reason":"Dictionary contains no key \\"command\\""}'
    )
    assert load_limit_reply(errors.SESSION_LIMIT) == {
        "result": "load limit",
        "message": "Parallel session limit reached",
    }


def test_reply_body_decodes_strictly() -> None:
    reply = encode_reply(b"k", {"sdp": "v=0\r\n", "result": "ok"}, Encoding.BENCODE)
    cookie, _, body = reply.partition(b" ")
    assert cookie == b"k"
    assert decode(body) == {"sdp": "v=0\r\n", "result": "ok"}


# ------------------------------------------------------------------------------------------ commands


@pytest.mark.parametrize("command", list(Command))
def test_every_command_string_is_recognised(command: Command) -> None:
    assert parse_command({"command": command.value}) is command


def test_there_are_exactly_the_24_commands_of_10_5() -> None:
    assert len(Command) == 24
    assert {c.value for c in Command} >= {"start recording", "block DTMF", "play DTMF", "subscribe request"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({}, errors.NO_COMMAND),
        ({"command": 1}, errors.NO_COMMAND),  # observed: not a string = no key
        ({"command": ["ping"]}, errors.NO_COMMAND),
        ({"Command": "ping"}, errors.NO_COMMAND),
        ({"command": "Ping"}, errors.UNRECOGNIZED_COMMAND),  # case-sensitive
        ({"command": "ping "}, errors.UNRECOGNIZED_COMMAND),
        ({"command": "ping\x00"}, errors.UNRECOGNIZED_COMMAND),
        ({"command": "block dtmf"}, errors.UNRECOGNIZED_COMMAND),
        ({"command": "start-recording"}, errors.UNRECOGNIZED_COMMAND),
        # newer versions' commands: 10.5 answers "Unrecognized command"
        ({"command": "connect"}, errors.UNRECOGNIZED_COMMAND),
        ({"command": "transform"}, errors.UNRECOGNIZED_COMMAND),
        ({"command": "pause recording"}, errors.UNRECOGNIZED_COMMAND),
        ({"command": "create"}, errors.UNRECOGNIZED_COMMAND),
    ],
)
def test_parse_command_errors(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(NgError) as info:
        parse_command(payload)
    assert info.value.reason == reason


def test_error_texts_are_exact() -> None:
    assert errors.NO_CALL_ID == "No call-id in message"
    assert errors.UNKNOWN_CALL_ID == "Unknown call-id"
    assert errors.UNKNOWN_CALL_ID_UPPER == "Unknown call-ID"
    assert errors.NO_SDP == "No SDP body in message"
    assert errors.CALL_NOT_FOUND_WARNING == "Call-ID not found or tags didn't match"
    assert errors.INVALID_LIMIT == "invalid limit, must be >= 0"
    assert errors.NO_COMMAND == 'Dictionary contains no key "command"'
    error = NgError(errors.NO_TO_TAG)
    assert error.reason == "No to-tag in message" == str(error)


# --------------------------------------------------------------------------------------- properties


@given(st.binary(max_size=300))
def test_arbitrary_datagrams_raise_only_protocol_errors(datagram: bytes) -> None:
    try:
        request = decode_request(datagram)
        command = parse_command(request.payload)
        check_required(parse_options(request.payload, command))
    except (NoCookie, NgError):
        pass


_SYNTAX = [*(bytes([c]) for c in b"dlei07:- {}[],\""), b"9" * 50]
_WORDS = [b"7:command", b"4:ping", b"5:offer", b"5:flags", b"5:limit", b"3:sdp", b"5:codec", b"6:delete"]
_ng_soup = st.lists(st.sampled_from([*_SYNTAX, *_WORDS]), max_size=40)


@given(st.sampled_from([b"d", b"{"]), _ng_soup)
def test_ng_shaped_garbage_raises_only_protocol_errors(first: bytes, parts: list[bytes]) -> None:
    try:
        request = decode_request(b"cookie " + first + b"".join(parts))
        command = parse_command(request.payload)
        check_required(parse_options(request.payload, command))
    except NgError:
        pass


@given(st.binary(min_size=1, max_size=20).filter(lambda b: b" " not in b), st.binary(max_size=50))
def test_split_cookie_round_trip(cookie: bytes, payload: bytes) -> None:
    assert split_cookie(cookie + b" " + payload) == (cookie, payload)


@given(
    st.binary(min_size=1, max_size=20).filter(lambda b: b" " not in b),
    st.dictionaries(st.text(max_size=6), st.integers(-5, 5) | st.text(max_size=6), max_size=4),
    st.sampled_from(list(Encoding)),
)
def test_reply_round_trip(cookie: bytes, reply: dict[str, Any], encoding: Encoding) -> None:
    datagram = encode_reply(cookie, reply, encoding)
    request = decode_request(datagram)
    assert request.cookie == cookie
    assert request.encoding is encoding
    if "\x00" not in "".join(reply) + "".join(v for v in reply.values() if isinstance(v, str)):
        assert request.payload == reply
