"""Streams that end without `close_stream`: a transport that fails on its own, or a socket the event
loop refuses to watch. The relay forgets the stream, tells its close listeners once, and the port is
free again; nothing else is disturbed."""

from __future__ import annotations

import asyncio

from karl_medianode.clock import CoarseClock
from karl_medianode.dataplane.ports import PortAllocator
from karl_medianode.dataplane.relay import PacketStream, Relay
from karl_testkit import free_port_block, run_async, until

MEDIA_IP = "127.0.0.2"


def test_a_transport_that_fails_on_its_own_frees_its_port() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        clock = CoarseClock()
        base = free_port_block(4, MEDIA_IP)
        ports = PortAllocator(MEDIA_IP, base, base + 3)
        relay = Relay(loop, clock, ports.release)
        closed: list[PacketStream] = []
        relay.close_listeners.append(closed.append)
        failing, other = (relay.open_stream(sock, MEDIA_IP) for sock in ports.allocate_pair())
        await until(lambda: all(relay._transports.get(s) is not None for s in (failing, other)), "attached")
        transport = relay._transports[failing]
        assert transport is not None
        transport.abort()  # as the event loop does when the socket fails
        await until(lambda: ports.in_use == 1, "the failed stream's port is free")
        assert closed == [failing] and failing.closed and relay.open_streams == 1
        relay.close_stream(failing)  # closing it again later is harmless
        assert closed == [failing]
        relay.close_stream(other)
        await until(lambda: ports.in_use == 0, "all ports free")
        assert closed == [failing, other]

    run_async(scenario(), timeout=10)


def test_a_socket_the_event_loop_refuses_is_counted_and_its_port_freed() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        clock = CoarseClock()
        base = free_port_block(2, MEDIA_IP)
        ports = PortAllocator(MEDIA_IP, base, base + 1)
        relay = Relay(loop, clock, ports.release)
        closed: list[PacketStream] = []
        relay.close_listeners.append(closed.append)
        sock = ports.allocate_single()
        stream = relay.open_stream(sock, MEDIA_IP)
        sock.close()  # gone before the event loop watches it: attaching fails
        await until(lambda: relay.attach_failures == 1, "the failed attach is counted")
        assert stream.closed and relay.open_streams == 0 and closed == [stream]
        assert ports.in_use == 0

    run_async(scenario(), timeout=10)


def test_a_port_whose_transport_failed_stays_with_its_call_until_the_call_ends() -> None:
    from karl_core.ng.commands import Command
    from karl_core.ng.options import parse_options
    from karl_medianode.control.engine_driver import EngineDriver
    from karl_medianode.engine import EngineSettings
    from karl_testkit import sdp

    def request(command: Command, **body: object) -> object:
        return parse_options({"command": command.value, **body}, command)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        clock = CoarseClock()
        base = free_port_block(8, MEDIA_IP)
        ports = PortAllocator(MEDIA_IP, base, base + 7)
        relay = Relay(loop, clock, ports.release)
        driver = EngineDriver(EngineSettings(MEDIA_IP, MEDIA_IP), ports, relay, clock)
        offer = {"call-id": "c1", "from-tag": "A", "sdp": sdp(20000)}
        driver.handle(Command.OFFER, request(Command.OFFER, **offer))  # type: ignore[arg-type]
        call = driver.find_call("c1")
        assert call is not None
        stream = driver.streams_of(call)[0]
        await until(lambda: relay._transports.get(stream) is not None, "attached")
        transport = relay._transports[stream]
        assert transport is not None
        transport.abort()
        await until(lambda: stream.closed, "the stream ended on its own")
        await asyncio.sleep(0)
        assert ports.in_use == 4, "the call still names the port: it is not handed out again"
        other = {"call-id": "c2", "from-tag": "A", "sdp": sdp(20010)}
        driver.handle(Command.OFFER, request(Command.OFFER, **other))  # type: ignore[arg-type]
        second = driver.find_call("c2")
        assert second is not None
        assert stream.local_port not in {s.port for s in second.all_streams()}
        for call_id in ("c1", "c2"):
            gone = {"call-id": call_id, "delete-delay": 0}
            driver.handle(Command.DELETE, request(Command.DELETE, **gone))  # type: ignore[arg-type]
        await until(lambda: ports.in_use == 0, "every port free once the calls ended")

    run_async(scenario(), timeout=10)
