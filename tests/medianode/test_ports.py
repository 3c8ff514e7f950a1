"""Port allocation with real sockets on 127.0.0.1, in port blocks found free at run time."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from karl_medianode.dataplane.ports import PortAllocator, PortsExhausted
from karl_testkit import free_port_block

HOST = "127.0.0.1"


@pytest.fixture
def allocators() -> Iterator[list[PortAllocator]]:
    """Allocators created by a test; every socket they still hold is closed afterwards."""
    made: list[PortAllocator] = []
    yield made
    for allocator in made:
        for sock in list(allocator._owned):
            allocator.release(sock)


def make(allocators: list[PortAllocator], count: int, host: str = HOST) -> PortAllocator:
    base = free_port_block(count, host)
    allocator = PortAllocator(host, base, base + count - 1)
    allocators.append(allocator)
    return allocator


def port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def test_pairs_are_even_and_odd_bound_nonblocking(allocators: list[PortAllocator]) -> None:
    allocator = make(allocators, 20)
    for _ in range(5):
        rtp, rtcp = allocator.allocate_pair()
        assert port(rtp) % 2 == 0 and port(rtcp) == port(rtp) + 1
        assert allocator.min_port <= port(rtp) < port(rtcp) <= allocator.max_port
        for sock in (rtp, rtcp):
            assert sock.type == socket.SOCK_DGRAM and sock.family == socket.AF_INET
            assert sock.getblocking() is False
            assert sock.getsockname()[0] == HOST
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > 0
    assert allocator.in_use == 10
    assert allocator.free == allocator.capacity - 10 == 10


def test_odd_range_start_still_gives_even_rtp_ports(allocators: list[PortAllocator]) -> None:
    base = free_port_block(8, HOST)  # even; start the range one above
    allocator = PortAllocator(HOST, base + 1, base + 7)
    allocators.append(allocator)
    got = [allocator.allocate_pair() for _ in range(3)]
    assert sorted(port(rtp) for rtp, _ in got) == [base + 2, base + 4, base + 6]
    with pytest.raises(PortsExhausted):
        allocator.allocate_pair()


def test_no_port_is_handed_out_twice(allocators: list[PortAllocator]) -> None:
    allocator = make(allocators, 40)
    ports = []
    for _ in range(10):
        rtp, rtcp = allocator.allocate_pair()
        ports += [port(rtp), port(rtcp)]
    ports += [port(allocator.allocate_single()) for _ in range(20)]
    assert len(ports) == len(set(ports)) == 40
    assert allocator.free == 0
    with pytest.raises(PortsExhausted):
        allocator.allocate_single()
    with pytest.raises(PortsExhausted, match="Ran out of ports"):
        allocator.allocate_pair()


def test_ports_held_by_someone_else_are_skipped(allocators: list[PortAllocator]) -> None:
    allocator = make(allocators, 8)
    base = allocator.min_port
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, base + 3))  # the RTCP half of the second pair
    try:
        got = [allocator.allocate_pair() for _ in range(3)]
        assert sorted(port(rtp) for rtp, _ in got) == [base, base + 4, base + 6]
        with pytest.raises(PortsExhausted):
            allocator.allocate_pair()
        # The even port of the skipped pair was not kept bound by the failed attempt.
        assert allocator.in_use == 6
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((HOST, base + 2))
        probe.close()
    finally:
        squatter.close()


def test_release_makes_a_port_reusable_and_is_idempotent(allocators: list[PortAllocator]) -> None:
    allocator = make(allocators, 4)
    first = allocator.allocate_pair()
    second = allocator.allocate_pair()
    with pytest.raises(PortsExhausted):
        allocator.allocate_pair()
    freed = port(first[0])
    for sock in first:
        allocator.release(sock)
    allocator.release(first[0])  # again: no effect
    assert allocator.in_use == 2
    assert first[0].fileno() == -1
    again = allocator.allocate_pair()
    assert port(again[0]) == freed
    assert {port(s) for s in again}.isdisjoint({port(s) for s in second})


def test_allocation_moves_round_robin_instead_of_restarting(allocators: list[PortAllocator]) -> None:
    allocator = make(allocators, 10)
    rtp, rtcp = allocator.allocate_pair()
    first = port(rtp)
    allocator.release(rtp)
    allocator.release(rtcp)
    # The port just freed is not reused at once: the next pairs continue through the range.
    following = []
    for _ in range(4):
        pair = allocator.allocate_pair()
        following.append(port(pair[0]))
        for sock in pair:
            allocator.release(sock)
    assert following == [first + 2, first + 4, first + 6, first + 8]
    assert port(allocator.allocate_pair()[0]) == first  # wrapped around


def test_ipv6(allocators: list[PortAllocator]) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    allocator = make(allocators, 6, "::1")
    rtp, rtcp = allocator.allocate_pair()
    assert rtp.family == socket.AF_INET6
    assert rtp.getsockname()[:2] == ("::1", allocator.min_port)
    assert port(rtcp) == allocator.min_port + 1


def test_invalid_ranges_are_rejected() -> None:
    with pytest.raises(ValueError):
        PortAllocator(HOST, 2000, 1000)
    with pytest.raises(ValueError):
        PortAllocator(HOST, 0, 1000)
    with pytest.raises(ValueError):
        PortAllocator("not an address", 1000, 2000)


def test_thousands_of_pairs_quickly(allocators: list[PortAllocator]) -> None:
    import time

    allocator = make(allocators, 2000)
    start = time.perf_counter()
    pairs = [allocator.allocate_pair() for _ in range(1000)]
    for rtp, rtcp in pairs[::2]:
        allocator.release(rtp)
        allocator.release(rtcp)
    pairs = [allocator.allocate_pair() for _ in range(500)]
    elapsed = time.perf_counter() - start
    assert allocator.in_use == 2000
    assert elapsed < 5.0, f"1500 pair allocations took {elapsed:.2f} s"
