"""`peek_route` reads a request's command and call-id without decoding it: whenever it answers, the
answer is what the full decoder reads; it never raises, whatever the bytes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from karl_core.ng import bencode
from karl_core.ng.commands import Command
from karl_core.ng.errors import NgError
from karl_core.ng.requests import decode_command
from karl_core.ng.routing import peek_route

texts = st.text(max_size=20)
values: Any = st.recursive(
    st.one_of(texts, st.integers(min_value=-(2**40), max_value=2**40)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {"command": st.sampled_from([c.value for c in Command] + ["transform", "bogus"])},
    optional={"call-id": st.one_of(texts, st.integers()), "call ID": texts},
).flatmap(lambda head: st.dictionaries(texts, values, max_size=5).map(lambda tail: {**tail, **head}))


def full_command(payload: bytes) -> Command | None:
    try:
        return decode_command(payload).command
    except NgError:
        return None


@settings(max_examples=400, deadline=None)
@given(requests, st.booleans())
def test_whenever_it_answers_it_agrees_with_the_full_decoder(message: dict[str, Any], sort: bool) -> None:
    payload = bencode.encode(message, sort_keys=sort)
    peeked = peek_route(payload)
    if peeked is not None:
        assert full_command(payload) is peeked[0]
        # (the options may refuse the request for a missing tag: that is the node's to say)
        assert bencode.decode_ng_dict(payload)["call-id"] == peeked[1]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    peek_route(data)
    peek_route(b"d7:command6:answer7:call-id1:x" + data)


def test_it_reads_a_plain_request_and_leaves_everything_unusual_to_the_full_decoder() -> None:
    sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    plain = bencode.encode(
        {"command": "answer", "call-id": "a@b", "from-tag": "x", "sdp": sdp, "flags": ["x"]}
    )
    assert peek_route(plain) == (Command.ANSWER, "a@b")
    assert peek_route(b"d7:call-id3:a@b7:command6:deletee") == (Command.DELETE, "a@b")
    for unusual in (
        b'{"command": "answer", "call-id": "a"}',  # JSON
        b"d7:call ID3:a@b7:command6:deletee",  # an alias of call-id
        b"d7:call-id3:a@b7:call-id3:c@d7:command6:deletee",  # a duplicate (the first would win)
        b"d7:call-id3:a@b7:command6:delete",  # truncated (10.5 closes it; the full decoder knows how)
        b"d7:call-id3:a@b7:command9:transforme",  # a command 10.5 does not know
        b"d7:call-idi5e7:command6:deletee",  # a call-id that is not a string
        b"d7:call-id3:a@b7:command6:deletee trailing",
    ):
        assert peek_route(unusual) is None, unusual
