"""Karl's NG codec against the real rtpengine 10.5 daemon: the same raw datagrams go to rtpengine, and
the reply Karl's codec would build must be byte-identical (framing, bencode/JSON quirks, error texts,
key order, the cookie cache). Only requests whose answer does not depend on call state are used."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from karl_core.ng.commands import Command, parse_command
from karl_core.ng.errors import INVALID_DATA_NO_PAYLOAD, NgError, NoCookie
from karl_core.ng.framing import (
    Encoding,
    decode_payload,
    encode_reply,
    error_reply,
    reply_encoding,
    split_cookie,
)
from karl_core.ng.options import check_required, parse_options
from karl_core.ng.reply_cache import CacheStatus, ReplyCache
from karl_testkit import RTPENGINE, NgServer, start_rtpengine

pytestmark = pytest.mark.sidebyside


class _StatefulRequest(Exception):
    """The request would need call state; not comparable here."""


def karl_reply(datagram: bytes, cache: ReplyCache, now: float = 0.0) -> bytes | None:
    """The reply Karl's NG codec produces, following the order documented in `framing`."""
    try:
        cookie, payload = split_cookie(datagram)
    except NoCookie:
        return None
    if not payload:
        reply = encode_reply(cookie, error_reply(INVALID_DATA_NO_PAYLOAD), Encoding.BENCODE)
        cache.finish(cookie, reply, now)
        return reply
    state = cache.begin(cookie, now)
    body: dict[str, Any]
    if state.status is CacheStatus.HIT:
        assert state.reply is not None
        return state.reply
    try:
        request, _ = decode_payload(payload)
        command = parse_command(request)
        options = parse_options(request, command)
        check_required(options)
        if command is Command.PING:
            body = {"result": "pong"}
        elif command is Command.LIST and options.limit == 0:
            body = {"calls": [], "result": "ok"}
        else:
            cache.abandon(cookie)
            raise _StatefulRequest(command)
    except NgError as exc:
        body = error_reply(exc.reason)
    reply = encode_reply(cookie, body, reply_encoding(payload))
    cache.finish(cookie, reply, now)
    return reply


@pytest.fixture(scope="module")
def rtpengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NgServer]:
    """One reference daemon for the whole module (conftest's factory would start one per test)."""
    if not Path(RTPENGINE).exists():
        pytest.skip("the reference rtpengine daemon is not installed (Debian package rtpengine-daemon)")
    server = start_rtpengine(tmp_path_factory.mktemp("rtpengine"), "127.0.0.61", 20)
    try:
        yield server
    finally:
        server.stop()


_cookie_seq = iter(range(1, 10**9))


def fresh_cookie() -> bytes:
    return b"sbs%d_%d" % (random.getrandbits(32), next(_cookie_seq))


CASES = [
    b"d7:command4:pinge",
    b"d7:command4:ping",
    b"d7:command4:pingexyz",
    b"d7:command4:ping1:ad1:b1:c",
    b"d7:command4:ping1:ai5",
    b"d7:command4:ping7:command5:offere",
    b"d7:command4:ping\x00e",
    b"d",
    b"x",
    b"l7:command4:pinge",
    b" d7:command4:pinge",
    b"d7:commandi1ee",
    b"d7:command5:Pinge",
    b"d7:command7:connecte",
    b"d7:command4:list5:limiti0ee",
    b"d7:command4:list5:limiti-0ee",
    b"d7:command4:list5:limiti-03ee",
    b"d7:command4:list5:limit2:-1e",
    b"d7:command4:list5:limiti03ee",
    b"d7:command5:offer7:call-id1:ce",
    b"d7:command5:offer3:sdp1:x4:from-tag1:fe",
    b"d7:command6:answer3:sdp1:x7:call-id1:c8:from-tag0:e",
    b"d7:command5:query7:call ID1:ce",
    b"d7:command6:deletee",
    b"d7:command11:block media8:from-tag1:fe",
    b'{"command":"ping"}',
    b"{'command':'ping'} /* comment */ {}",
    b'{"command":"ping","a":1.5}',
    b'{"command":"ping","a":null}',
    b'{"command":"ping",}',
    b'{"command":"ping\\u0000x"}',
    b'{"command":"list","limit":false}',
    b'{"command":"list","limit":18446744073709551615}',
    b'{"command":"ping","a":"\xff"}',
    b"",
]


@pytest.mark.parametrize("payload", CASES)
def test_same_reply_as_rtpengine(rtpengine: NgServer, payload: bytes) -> None:
    datagram = fresh_cookie() + b" " + payload
    expected = karl_reply(datagram, ReplyCache())
    assert rtpengine.ng.raw(datagram) == expected


@pytest.mark.parametrize("datagram", [b"nocookie", b" d7:command4:pinge", b"tab\td7:command4:pinge"])
def test_no_cookie_no_reply(rtpengine: NgServer, datagram: bytes) -> None:
    assert karl_reply(datagram, ReplyCache()) is None
    # a ping sent right after is answered first: the datagram before it got no reply at all
    cookie = fresh_cookie()
    rtpengine.ng.sock.sendto(datagram, rtpengine.ng.address)
    assert rtpengine.ng.raw(cookie + b" d7:command4:pinge") == cookie + b" d6:result4:ponge"


def test_reply_cache_is_keyed_by_cookie_alone(rtpengine: NgServer) -> None:
    cache = ReplyCache()
    cookie = fresh_cookie()
    sequence = [
        cookie + b" d7:command4:pinge",
        cookie + b" d7:command7:unknowne",  # another command, same cookie: the cached pong
        cookie + b" ",  # no payload: answered without lookup, and cached over the pong
        cookie + b" d7:command4:pinge",
    ]
    for datagram in sequence:
        assert rtpengine.ng.raw(datagram) == karl_reply(datagram, cache)
    assert rtpengine.ng.raw(sequence[-1]).endswith(b"Invalid data (no payload)e")  # type: ignore[union-attr]


def test_mutated_requests(rtpengine: NgServer) -> None:
    rng = random.Random(20240610)
    seeds = [
        b"d7:command4:ping1:ai5e1:bl1:x1:yd1:ci-3eee",
        b'{"command":"ping","a":[1,2,{"b":"c"}],"d":-5}',
        b"{'command':'ping', 'x': 0x1f /*c*/ , \"y\":\"\\u00e9\\n\"}",
        b'{"command":"ping","t":true,"n":010,"b":0b11,"h":$ff}',
    ]
    alphabet = b"dlie0123456789:-+ x{}[]\"',/*\\u.$bE\t\n"
    compared = 0
    for _ in range(300):
        payload = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(payload) + 1)
            roll = rng.random()
            if roll < 0.35 and pos < len(payload):
                payload[pos] = rng.choice(alphabet)
            elif roll < 0.7:
                payload[pos:pos] = bytes([rng.choice(alphabet)])
            elif roll < 0.85 and pos < len(payload):
                del payload[pos]
            else:
                del payload[pos:]
        datagram = fresh_cookie() + b" " + bytes(payload)
        try:
            expected = karl_reply(datagram, ReplyCache())
        except _StatefulRequest:
            continue
        assert rtpengine.ng.raw(datagram) == expected, datagram
        compared += 1
    assert compared > 200
