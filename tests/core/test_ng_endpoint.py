"""The NG server endpoint without sockets or clocks: datagrams in, requests or datagrams out."""

from __future__ import annotations

import json

from karl_core.ng import bencode
from karl_core.ng.endpoint import REPLY_DATAGRAM_LIMIT, Datagram, NgEndpoint, Request
from karl_core.ng.framing import Encoding
from karl_core.ng.reply_cache import ReplyCache

PROXY = ("192.0.2.10", 5060)
OTHER = ("192.0.2.11", 5060)
PING = b"c1 " + bencode.encode({"command": "ping"})


def test_a_new_request_is_handed_out_and_its_reply_goes_back_in_its_encoding() -> None:
    endpoint = NgEndpoint()
    request = endpoint.datagram_received(PING, PROXY, 0.0)
    assert isinstance(request, Request)
    assert (request.cookie, request.addr, request.encoding) == (b"c1", PROXY, Encoding.BENCODE)
    assert endpoint.reply(request, {"result": "pong"}, 0.1) == [Datagram(b"c1 d6:result4:ponge", PROXY)]
    json_request = endpoint.datagram_received(b'c2 {"command":"ping"}', PROXY, 0.2)
    assert isinstance(json_request, Request) and json_request.encoding is Encoding.JSON
    assert endpoint.reply(json_request, {"result": "pong"}, 0.3)[0].data == b'c2 {"result":"pong"}'


def test_copies_that_arrive_while_the_first_is_processed_wait_and_get_its_reply() -> None:
    endpoint = NgEndpoint()
    request = endpoint.datagram_received(PING, PROXY, 0.0)
    assert isinstance(request, Request)
    assert endpoint.datagram_received(PING, PROXY, 0.5) == []
    assert endpoint.datagram_received(PING, OTHER, 0.6) == []
    sent = endpoint.reply(request, {"result": "pong"}, 1.0)
    assert [d.addr for d in sent] == [PROXY, PROXY, OTHER]
    assert len({d.data for d in sent}) == 1
    # a later copy is a cache hit, answered at once with the same bytes
    assert endpoint.datagram_received(PING, PROXY, 2.0) == [sent[0]]
    assert (endpoint.counters.cache_waits, endpoint.counters.cache_hits) == (2, 1)


def test_the_cache_is_keyed_by_the_cookie_alone_as_in_rtpengine() -> None:
    endpoint = NgEndpoint()
    request = endpoint.datagram_received(PING, PROXY, 0.0)
    assert isinstance(request, Request)
    endpoint.reply(request, {"result": "pong"}, 0.0)
    other_command = b"c1 " + bencode.encode({"command": "list"})
    assert endpoint.datagram_received(other_command, OTHER, 1.0) == [Datagram(b"c1 d6:result4:ponge", OTHER)]


def test_no_cookie_is_dropped_and_an_empty_payload_gets_the_cached_error() -> None:
    endpoint = NgEndpoint()
    assert endpoint.datagram_received(b"nocookie", PROXY, 0.0) is None
    assert endpoint.datagram_received(b" leading", PROXY, 0.0) is None
    error = endpoint.datagram_received(b"e1 ", PROXY, 0.0)
    assert error == [Datagram(b"e1 d6:result5:error12:error-reason25:Invalid data (no payload)e", PROXY)]
    # rtpengine stores that error under the cookie: a later request reusing it gets the error
    assert endpoint.datagram_received(b"e1 " + bencode.encode({"command": "ping"}), PROXY, 1.0) == error
    assert (endpoint.counters.no_cookie, endpoint.counters.empty, endpoint.counters.datagrams) == (2, 1, 4)


def test_an_abandoned_request_is_processed_anew_when_retransmitted() -> None:
    endpoint = NgEndpoint()
    first = endpoint.datagram_received(PING, PROXY, 0.0)
    assert isinstance(first, Request)
    assert endpoint.datagram_received(PING, OTHER, 0.1) == []
    endpoint.abandon(first)
    again = endpoint.datagram_received(PING, PROXY, 1.0)
    assert isinstance(again, Request)
    assert endpoint.reply(again, {"result": "pong"}, 1.1) == [Datagram(b"c1 d6:result4:ponge", PROXY)]


def test_replies_expire_with_the_cache_generations() -> None:
    endpoint = NgEndpoint(ReplyCache(generation_seconds=30.0))
    request = endpoint.datagram_received(PING, PROXY, 0.0)
    assert isinstance(request, Request)
    endpoint.reply(request, {"result": "pong"}, 0.0)
    assert endpoint.datagram_received(PING, PROXY, 59.0) != []  # 30 to 60 s: still cached
    assert isinstance(endpoint.datagram_received(PING, PROXY, 121.0), Request)


def test_fits_tells_whether_a_reply_can_be_sent_in_one_datagram() -> None:
    endpoint = NgEndpoint()
    for payload, encoding in ((PING, Encoding.BENCODE), (b'c1 {"command":"ping"}', Encoding.JSON)):
        request = endpoint.datagram_received(payload, PROXY, 0.0)
        assert isinstance(request, Request) and request.encoding is encoding
        small = {"result": "ok", "sdp": "v=0\r\n" * 100}
        assert endpoint.fits(request, small)
        # just under and just over the limit, counted exactly
        overhead = len(endpoint.encode(request, {"result": "ok", "sdp": ""}))
        size = REPLY_DATAGRAM_LIMIT - overhead
        while len(endpoint.encode(request, {"result": "ok", "sdp": "x" * size})) > REPLY_DATAGRAM_LIMIT:
            size -= 1  # bencode's length prefix has more digits than "0"
        edge = "x" * size
        assert endpoint.fits(request, {"result": "ok", "sdp": edge})
        assert not endpoint.fits(request, {"result": "ok", "sdp": edge + "x"})
        if encoding is Encoding.JSON:  # escaping grows a reply: "\r\n" is four characters in JSON
            escaped = "\r\n" * ((REPLY_DATAGRAM_LIMIT - overhead) // 3)
            assert len(json.dumps(escaped)) > REPLY_DATAGRAM_LIMIT - overhead
            assert not endpoint.fits(request, {"result": "ok", "sdp": escaped})
        endpoint.abandon(request)
