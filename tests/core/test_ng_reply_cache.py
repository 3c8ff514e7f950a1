"""The retransmission reply cache (sans-IO; the clock is passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from karl_core.ng.reply_cache import CacheState, CacheStatus, ReplyCache

MISS, PENDING, HIT = CacheStatus.MISS, CacheStatus.PENDING, CacheStatus.HIT


def test_miss_then_pending_then_hit() -> None:
    cache = ReplyCache()
    assert cache.begin(b"c1", now=0.0).status is MISS
    assert cache.pending_count == 1
    # a retransmission while the first copy is processed: wait for it
    assert cache.begin(b"c1", now=0.5).status is PENDING
    cache.finish(b"c1", b"c1 d6:result2:oke", now=0.6)
    state = cache.begin(b"c1", now=1.0)
    assert state == CacheState(HIT, b"c1 d6:result2:oke")
    assert len(cache) == 1 and cache.pending_count == 0


def test_key_is_whatever_the_caller_chooses() -> None:
    cache = ReplyCache()
    # rtpengine: cookie only, so another sender reusing the cookie gets the cached reply
    cache.begin(b"k", 0.0)
    cache.finish(b"k", b"reply", 0.0)
    assert cache.begin(b"k", 1.0).reply == b"reply"
    # keyed by (sender, cookie) the same cookie from elsewhere is new
    cache.begin((("127.0.0.1", 5060), b"k"), 0.0)
    cache.finish((("127.0.0.1", 5060), b"k"), b"one", 0.0)
    assert cache.begin((("127.0.0.2", 5060), b"k"), 1.0).status is MISS


def test_error_replies_are_cached_like_any_other() -> None:
    cache = ReplyCache()
    cache.begin(b"e", 0.0)
    cache.finish(b"e", b"e d6:result5:error12:error-reason20:Unrecognized commande", 0.0)
    assert cache.begin(b"e", 1.0).status is HIT


def test_finish_without_begin_overwrites() -> None:
    # 10.5 answers "cookie " (no payload) without a lookup but still caches the error under the cookie,
    # replacing an earlier reply (observed)
    cache = ReplyCache()
    cache.begin(b"c9", 0.0)
    cache.finish(b"c9", b"pong", 0.0)
    cache.finish(b"c9", b"no payload error", 1.0)
    assert cache.begin(b"c9", 2.0).reply == b"no payload error"
    assert len(cache) == 1


def test_abandon_lets_the_next_copy_process() -> None:
    cache = ReplyCache()
    assert cache.begin(b"a", 0.0).status is MISS
    cache.abandon(b"a")
    assert cache.begin(b"a", 0.1).status is MISS
    cache.abandon(b"unknown")  # harmless


@pytest.mark.parametrize(
    ("inserted_at", "looked_up_at", "status"),
    [
        (0.0, 29.9, HIT),
        (0.0, 30.0, HIT),  # swapped to the old generation, still there
        (0.0, 59.9, HIT),
        (0.0, 60.0, MISS),
        (10.0, 40.0, HIT),  # the clock started at 0: swap at 30, drop at 60
        (29.0, 59.0, HIT),
    ],
)
def test_entries_live_between_one_and_two_generations(
    inserted_at: float, looked_up_at: float, status: CacheStatus
) -> None:
    cache = ReplyCache(generation_seconds=30.0)
    cache.begin(b"x", 0.0)  # starts the generation clock
    cache.abandon(b"x")
    cache.begin(b"k", inserted_at)
    cache.finish(b"k", b"r", inserted_at)
    if looked_up_at >= 30.0:
        cache.begin(b"tick", 30.0)  # traffic at the swap time
        cache.abandon(b"tick")
    assert cache.begin(b"k", looked_up_at).status is status


def test_every_entry_survives_one_generation_and_none_two_with_steady_traffic() -> None:
    cache = ReplyCache(generation_seconds=30.0)
    count = 300
    for i in range(count):
        cache.begin(i, i * 0.7)
        cache.finish(i, b"r", i * 0.7)
    now = (count - 1) * 0.7
    for i in range(count):
        age = now - i * 0.7
        status = cache.begin(i, now).status
        if age < 30.0:
            assert status is HIT, i
        elif age >= 60.0:
            assert status is MISS, i


def test_idle_gap_longer_than_two_generations_drops_everything() -> None:
    cache = ReplyCache(generation_seconds=30.0)
    cache.begin(b"k", 0.0)
    cache.finish(b"k", b"r", 0.0)
    assert cache.begin(b"k", 90.0).status is MISS


def test_stale_in_progress_mark_expires() -> None:
    cache = ReplyCache(generation_seconds=30.0)
    assert cache.begin(b"stuck", 0.0).status is MISS
    assert cache.begin(b"stuck", 59.0).status is PENDING
    assert cache.begin(b"stuck", 60.0).status is MISS


def test_a_flood_of_unique_keys_stays_bounded() -> None:
    cache = ReplyCache(generation_seconds=30.0, max_entries=100)
    for i in range(10_000):
        key = i.to_bytes(4, "big")
        assert cache.begin(key, 1.0).status is MISS
        cache.finish(key, b"r", 1.0)
        assert len(cache) <= 200
    # the newest generation is kept, the oldest evicted first
    assert cache.begin((9_999).to_bytes(4, "big"), 1.0).status is HIT
    assert cache.begin((0).to_bytes(4, "big"), 1.0).status is MISS


def test_in_progress_keys_are_bounded_too() -> None:
    cache = ReplyCache(max_entries=10)
    for i in range(1000):
        cache.begin(i, 0.0)
    assert cache.pending_count <= 10
    assert cache.begin(999, 0.0).status is PENDING
    assert cache.begin(0, 0.0).status is MISS  # the oldest mark was forgotten


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        ReplyCache(generation_seconds=0)
    with pytest.raises(ValueError):
        ReplyCache(max_entries=0)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["begin", "finish", "abandon"]),
        st.integers(0, 5),
        st.floats(min_value=0.0, max_value=5.0),
    ),
    max_size=60,
)


@settings(deadline=None)
@given(_ops)
def test_model(ops: list[tuple[str, int, float]]) -> None:
    """Against a simple model: a reply, once finished, is returned until it is 60 s old."""
    cache = ReplyCache(generation_seconds=30.0)
    now = 0.0
    finished: dict[int, tuple[bytes, float]] = {}
    pending: set[int] = set()
    for op, key, dt in ops:
        now += dt
        if op == "begin":
            state = cache.begin(key, now)
            cached = finished.get(key)
            if cached is not None and now - cached[1] < 30.0:
                assert state == CacheState(HIT, cached[0])  # always kept for a full generation
            elif cached is not None and now - cached[1] >= 60.0:
                assert state.status is not HIT  # never kept beyond two
            if state.status is HIT:
                assert cached is not None and state.reply == cached[0]
            elif state.status is PENDING:
                assert key in pending
            else:
                pending.add(key)
        elif op == "finish":
            reply = f"{key}@{now}".encode()
            cache.finish(key, reply, now)
            finished[key] = (reply, now)
            pending.discard(key)
        else:
            cache.abandon(key)
            pending.discard(key)
