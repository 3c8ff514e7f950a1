"""The NG socket layer on its own: retransmissions while the first copy is still being processed."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from karl_core.ng import bencode
from karl_core.ng.commands import Command
from karl_core.ng.options import NgOptions
from karl_core.ng.server import NgProtocol, ReplyFits


def test_duplicate_in_flight_waits_for_the_first_and_runs_once() -> None:
    async def scenario() -> tuple[list[bytes], int, NgProtocol]:
        release = asyncio.Event()
        calls = 0

        async def slow_handler(
            command: Command, opts: NgOptions, addr: tuple[str, int], fits: ReplyFits
        ) -> dict[str, Any]:
            nonlocal calls
            calls += 1
            await release.wait()  # the first copy is "still being processed"
            return {"result": "ok", "n": calls}

        loop = asyncio.get_running_loop()
        protocol = NgProtocol(slow_handler)
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=("127.0.0.1", 0))
        address = transport.get_extra_info("sockname")
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        datagram = b"dup-1 " + bencode.encode({"command": "ping"})
        try:
            for _ in range(3):
                client.sendto(datagram, address)
            while protocol.endpoint.counters.cache_waits < 2:  # both retransmissions parked behind the first
                await asyncio.sleep(0.005)
            release.set()
            replies = [await asyncio.wait_for(loop.sock_recv(client, 65535), 2) for _ in range(3)]
            client.sendto(datagram, address)  # and a late one is served from the cache
            replies.append(await asyncio.wait_for(loop.sock_recv(client, 65535), 2))
        finally:
            client.close()
            transport.close()
        return replies, calls, protocol

    replies, calls, protocol = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert calls == 1
    assert len(set(replies)) == 1 and replies[0].startswith(b"dup-1 ")
    assert protocol.endpoint.counters.cache_hits == 1


def test_datagram_without_cookie_is_dropped_and_counted() -> None:
    async def scenario() -> NgProtocol:
        def handler(
            command: Command, opts: NgOptions, addr: tuple[str, int], fits: ReplyFits
        ) -> dict[str, Any]:
            raise AssertionError("must not be called")

        loop = asyncio.get_running_loop()
        protocol = NgProtocol(handler)
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=("127.0.0.1", 0))
        address = transport.get_extra_info("sockname")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for datagram in (b"nospace", b" leading-space", b"tab\td4:pinge"):
                client.sendto(datagram, address)
            while protocol.endpoint.counters.datagrams < 3:
                await asyncio.sleep(0.005)
        transport.close()
        return protocol

    protocol = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert protocol.endpoint.counters.no_cookie == 3
