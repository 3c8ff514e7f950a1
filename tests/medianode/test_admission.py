"""Admission control on its own (sans-IO): allow-list, token buckets, blocks, bounded memory, speed."""

from __future__ import annotations

import logging
import time

import pytest

from karl_core.admission import AllowList, SourceLimiter, Verdict, build_admission
from karl_core.config.loader import build_config


def admission(**env: str):  # type: ignore[no-untyped-def]
    return build_admission(build_config({}, env))


def test_a_source_gets_its_burst_then_its_rate() -> None:
    limiter = SourceLimiter("ng", rate=10, burst=5, block_seconds=30)
    now = 100.0
    assert [limiter.check("10.0.0.1", now) for _ in range(6)] == [Verdict.ADMIT] * 5 + [Verdict.LIMITED]
    # another source has a bucket of its own
    assert limiter.check("10.0.0.2", now) is Verdict.ADMIT
    # 10 tokens/s: 0.15 s later one more request (and half a token left)
    assert limiter.check("10.0.0.1", now + 0.15) is Verdict.ADMIT
    assert limiter.check("10.0.0.1", now + 0.15) is Verdict.LIMITED
    assert limiter.retry_after("10.0.0.1", now + 0.15) == pytest.approx(0.05)
    # an idle source refills up to its burst, not beyond
    later = now + 60
    assert [limiter.check("10.0.0.1", later) for _ in range(6)] == [Verdict.ADMIT] * 5 + [Verdict.LIMITED]


def test_a_source_that_keeps_flooding_is_blocked_for_block_seconds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "karl.admission")
    ad = admission(KARL_NG_RATE_LIMIT="10", KARL_NG_BURST="5", KARL_BLOCK_SECONDS="30")
    now = 1000.0
    verdicts = [ad.admit("192.0.2.7", now) for _ in range(5 + 5 + 1)]
    assert verdicts == [True] * 5 + [False] * 6
    assert ad.counters.ng_rate_limited_total == 6
    assert ad.counters.blocks_total == 1 and ad.counters.ng_blocks_total == 1
    assert ad.blocked_sources(now) == 1 and ad.blocked_ng_sources(now) == 1
    # blocked: even after its bucket would have refilled
    assert not ad.admit("192.0.2.7", now + 10)
    assert ad.counters.ng_blocked_total == 1
    assert ad.admit("192.0.2.8", now + 10)  # others are not affected
    # the block ends after block_seconds, with a full bucket
    assert ad.admit("192.0.2.7", now + 30.5)
    assert ad.blocked_sources(now + 30.5) == 0
    blocks = [r for r in caplog.records if getattr(r, "event", "") == "source_blocked"]
    assert len(blocks) == 1 and "192.0.2.7" in blocks[0].getMessage()


def test_a_source_slightly_over_its_rate_is_limited_but_not_blocked() -> None:
    # 12 requests/s against 10/s: after the burst is used up, 2 refusals a second, 20 per 10 s window,
    # never more than the burst of 50 within a window
    limiter = SourceLimiter("ng", rate=10, burst=50, block_seconds=30, strike_window=10.0)
    verdicts = []
    for second in range(1, 101):
        verdicts += [limiter.check("198.51.100.2", float(second)) for _ in range(12)]
    assert verdicts.count(Verdict.LIMITED) > 100
    assert Verdict.BLOCKED not in verdicts and limiter.blocked_count(100.0) == 0


def test_the_api_limiter_is_separate_and_counts_auth_failures_towards_a_block() -> None:
    ad = admission(KARL_API_RATE_LIMIT="100", KARL_API_BURST="3", KARL_BLOCK_SECONDS="5")
    now = 50.0
    for _ in range(3):
        ad.api_auth_failed("203.0.113.9", now)
    assert ad.counters.api_auth_failures_total == 3
    assert ad.admit_api("203.0.113.9", now)  # three failures are not yet more than the burst
    ad.api_auth_failed("203.0.113.9", now)
    assert not ad.admit_api("203.0.113.9", now)  # the fourth: blocked
    assert ad.counters.api_blocks_total == 1 and ad.counters.api_rate_limited_total == 1
    assert ad.api_retry_after("203.0.113.9", now) == 5
    assert ad.admit("203.0.113.9", now)  # NG from the same address is judged on its own
    assert ad.admit_api("203.0.113.9", now + 5.1)


def test_allow_list_of_addresses_and_networks() -> None:
    ad = admission(KARL_NG_ALLOW="10.1.0.0/16, 192.0.2.5, 2001:db8::/32", KARL_NG_RATE_LIMIT="0")
    assert ad.ng is None  # rate 0: no limiter at all
    assert ad.admit("10.1.200.3", 0) and ad.admit("192.0.2.5", 0) and ad.admit("2001:db8::1", 0)
    assert ad.admit("::ffff:10.1.2.3", 0)  # IPv4 seen through a dual-stack socket
    assert not ad.admit("10.2.0.1", 0) and not ad.admit("192.0.2.6", 0) and not ad.admit("2001:db9::1", 0)
    assert not ad.admit("not-an-address", 0)
    assert ad.counters.ng_not_allowed_total == 4
    assert AllowList.parse(" , ") is None


def test_defaults_limit_but_allow_everyone() -> None:
    ad = admission()
    assert ad.allow is None and ad.ng is not None and ad.api is not None
    assert ad.ng.rate == 5000 and ad.ng.burst == 10000 and ad.api.rate == 50 and ad.api.burst == 100
    assert ad.ng.block_seconds == 60


def test_memory_stays_bounded_under_a_flood_of_distinct_sources_and_blocks_survive_it() -> None:
    limiter = SourceLimiter("ng", rate=1, burst=2, block_seconds=100, max_sources=1000)
    now = 10.0
    for _ in range(3 + 2):
        limiter.check("192.0.2.1", now)
    assert limiter.is_blocked("192.0.2.1", now)
    for i in range(50_000):
        limiter.check(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", now)
    assert limiter.tracked_sources == 1000
    assert limiter.counters.evicted_sources_total == 50_000 + 1 - 1000
    assert limiter.check("192.0.2.1", now + 1) is Verdict.BLOCKED  # the flood did not lift the block
    # blocks are bounded too: the oldest goes first when they fill up
    for i in range(3000):
        source = f"172.16.{i >> 8}.{i & 255}"
        for _ in range(5):
            limiter.check(source, now + 2)
    assert limiter.blocked_count(now + 2) == 1000


def test_admit_is_cheap_enough_for_every_ng_datagram() -> None:
    ad = admission(KARL_NG_ALLOW="127.0.0.0/8", KARL_NG_RATE_LIMIT="1000000", KARL_NG_BURST="1000000")
    sources = [f"127.0.{i >> 8}.{i & 255}" for i in range(1000)]
    admit = ad.admit
    started = time.perf_counter()
    n = 0
    for round_ in range(100):
        now = float(round_)
        for source in sources:
            n += admit(source, now)
    elapsed = time.perf_counter() - started
    assert n == 100_000
    # generous for a loaded 2-core machine; about 1 µs per call is typical
    assert elapsed / n < 10e-6, f"{elapsed / n * 1e6:.2f} µs per admit"
