"""Admission control: who may send NG requests and REST calls, and how many (sans-IO).

The NG socket asks `Admission.admit(ip, now)` for every datagram and the REST API asks `admit_api`; both
pass `time.monotonic()`. Three mechanisms, in this order:

* **allow-list** (NG only, `security.ng_allow`): a source outside the listed networks is refused and
  counted in `ng_not_allowed_total`; an empty list admits anyone.
* **token bucket per source** (`*_rate_limit` requests/s, `*_burst` deep): a request without a token is
  refused and counted (`ng_rate_limited_total` / `api_rate_limited_total`).
* **blocking**: a source that had more than `burst` requests refused within `STRIKE_WINDOW` seconds keeps
  flooding after being told; it is refused outright for `block_seconds` (`blocks_total`, logged once per
  block). Refusals during a block count as rate limited too (and in `*_blocked_total`).

Memory stays bounded under a flood of distinct (e.g. spoofed) sources: at most `max_sources` buckets (least
recently used evicted; an evicted source just starts again with a full bucket) and at most `max_sources`
blocks (kept apart from the buckets, so that a flood of new sources cannot lift a block early).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum

from karl_core.config import KarlConfig
from karl_core.logs import LogThrottle

log = logging.getLogger("karl.admission")

DEFAULT_MAX_SOURCES = 65536
#: Refusals are counted towards a block within windows of this many seconds.
STRIKE_WINDOW = 10.0
#: Block notices per LOG_INTERVAL before they are summarised (a flood of spoofed sources must not flood
#: the log as well).
LOG_BURST = 5
LOG_INTERVAL = 10.0


class Verdict(IntEnum):
    ADMIT = 0
    LIMITED = 1
    BLOCKED = 2


@dataclass
class AdmissionCounters:
    """Plain counters, read by metrics at scrape time."""

    ng_not_allowed_total: int = 0
    #: NG datagrams refused for their rate, including those refused during a block.
    ng_rate_limited_total: int = 0
    #: REST requests refused for their rate (HTTP 429), including those refused during a block.
    api_rate_limited_total: int = 0
    #: Blocks imposed (NG and API).
    blocks_total: int = 0
    #: REST requests without a key or with an unknown key (HTTP 401), or with a key whose role does
    #: not allow the operation (HTTP 403).
    api_auth_failures_total: int = 0
    #: Of the rate-limited ones: refused because the source was blocked.
    ng_blocked_total: int = 0
    api_blocked_total: int = 0
    ng_blocks_total: int = 0
    api_blocks_total: int = 0
    #: Sources whose bucket was dropped to keep memory bounded.
    evicted_sources_total: int = 0


class _Bucket:
    __slots__ = ("stamp", "strikes", "tokens", "window_end")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.stamp = now
        self.strikes = 0
        self.window_end = 0.0


class _LogThrottle:
    """Admission notices behind the node's `LogThrottle`: at most `burst` per `interval` seconds, then
    one summary of how many were left out."""

    def __init__(self, burst: int = LOG_BURST, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._throttle = LogThrottle(interval, burst)

    def allow(self, now: float) -> bool:
        suppressed = self._throttle.allow("admission", now)
        if suppressed:
            log.warning(
                "%d more admission notices suppressed in the last %.0f s",
                suppressed,
                self.interval,
                extra={"event": "admission_notices_suppressed", "suppressed": suppressed},
            )
        return suppressed is not None


class SourceLimiter:
    """Token buckets per source address with blocking of sources that keep flooding.

    `rate` tokens per second refill a bucket of `burst` tokens; each request takes one. Not thread-safe
    (one event loop)."""

    def __init__(
        self,
        kind: str,
        rate: float,
        burst: int,
        block_seconds: float,
        *,
        max_sources: int = DEFAULT_MAX_SOURCES,
        strike_window: float = STRIKE_WINDOW,
        counters: AdmissionCounters | None = None,
        throttle: _LogThrottle | None = None,
    ) -> None:
        if rate <= 0 or burst < 1 or block_seconds <= 0 or max_sources < 1:
            raise ValueError("rate, burst, block_seconds and max_sources must be positive")
        self.kind = kind
        self.rate = float(rate)
        self.burst = burst
        self.block_seconds = float(block_seconds)
        self.max_sources = max_sources
        self.strike_window = strike_window
        self.counters = counters if counters is not None else AdmissionCounters()
        self._throttle = throttle if throttle is not None else _LogThrottle()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        # source -> end of its block; all blocks last equally long, so insertion order is expiry order
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def check(self, source: str, now: float) -> Verdict:
        """Take one token for `source`; LIMITED/BLOCKED mean: refuse this request."""
        until = self._blocked.get(source)
        if until is not None:
            if now < until:
                return Verdict.BLOCKED
            del self._blocked[source]
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._new_bucket(source, now)
        else:
            self._buckets.move_to_end(source)
            tokens = bucket.tokens + (now - bucket.stamp) * self.rate
            bucket.tokens = tokens if tokens < self.burst else float(self.burst)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict.ADMIT
        return self._strike(source, bucket, now)

    def strike(self, source: str, now: float) -> None:
        """Count a request that failed for another reason (e.g. a wrong API key) towards a block."""
        if self.is_blocked(source, now):
            return
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._new_bucket(source, now)
        self._strike(source, bucket, now)

    def is_blocked(self, source: str, now: float) -> bool:
        until = self._blocked.get(source)
        return until is not None and now < until

    def retry_after(self, source: str, now: float) -> float:
        """Seconds until `source` may try again (end of its block, or its next token)."""
        until = self._blocked.get(source)
        if until is not None and now < until:
            return until - now
        bucket = self._buckets.get(source)
        if bucket is None:
            return 0.0
        tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def blocked_count(self, now: float) -> int:
        """Sources blocked right now (expired blocks are forgotten here)."""
        blocked = self._blocked
        while blocked:
            until = next(iter(blocked.values()))
            if until > now:
                break
            blocked.popitem(last=False)
        return len(blocked)

    @property
    def tracked_sources(self) -> int:
        return len(self._buckets)

    def _new_bucket(self, source: str, now: float) -> _Bucket:
        buckets = self._buckets
        if len(buckets) >= self.max_sources:
            buckets.popitem(last=False)
            self.counters.evicted_sources_total += 1
        bucket = buckets[source] = _Bucket(float(self.burst), now)
        return bucket

    def _strike(self, source: str, bucket: _Bucket, now: float) -> Verdict:
        if now >= bucket.window_end:
            if bucket.window_end == 0.0 and self._throttle.allow(now):
                log.warning(
                    "%s source %s exceeds its rate limit of %g requests/s (burst %d)",
                    self.kind.upper(),
                    source,
                    self.rate,
                    self.burst,
                    extra={"event": "source_rate_limited", "source": source, "kind": self.kind},
                )
            bucket.window_end = now + self.strike_window
            bucket.strikes = 0
        bucket.strikes += 1
        if bucket.strikes > self.burst:
            self._block(source, bucket, now)
        return Verdict.LIMITED

    def _block(self, source: str, bucket: _Bucket, now: float) -> None:
        blocked = self._blocked
        blocked.pop(source, None)  # an expired block of this source: re-insert at the end (expiry order)
        if len(blocked) >= self.max_sources and self.blocked_count(now) >= self.max_sources:
            blocked.popitem(last=False)  # the block that would end soonest
        blocked[source] = now + self.block_seconds
        bucket.strikes = 0
        bucket.window_end = 0.0
        bucket.tokens = float(self.burst)  # a full bucket once the block is over
        self.counters.blocks_total += 1
        if self.kind == "ng":
            self.counters.ng_blocks_total += 1
        else:
            self.counters.api_blocks_total += 1
        if self._throttle.allow(now):
            log.warning(
                "blocking %s source %s for %g s: more than %d requests over its rate limit within %g s",
                self.kind.upper(),
                source,
                self.block_seconds,
                self.burst,
                self.strike_window,
                extra={
                    "event": "source_blocked",
                    "source": source,
                    "kind": self.kind,
                    "block_seconds": self.block_seconds,
                },
            )


class AllowList:
    """Networks allowed to send NG; decisions are cached per source (bounded) so that the hot path
    does not parse addresses."""

    def __init__(self, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network], max_cache: int) -> None:
        self.networks = networks
        self.max_cache = max_cache
        self._cache: dict[str, bool] = {}

    @classmethod
    def parse(cls, text: str, max_cache: int = DEFAULT_MAX_SOURCES) -> AllowList | None:
        """From `security.ng_allow` (comma-separated addresses/CIDRs); None when empty (anyone)."""
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            return None
        return cls([ipaddress.ip_network(item, strict=False) for item in items], max_cache)

    def allows(self, source: str) -> bool:
        known = self._cache.get(source)
        if known is not None:
            return known
        verdict = self._decide(source)
        if len(self._cache) >= self.max_cache:
            self._cache.clear()  # cheap and bounded; a flood of new sources only costs re-parsing
        self._cache[source] = verdict
        return verdict

    def _decide(self, source: str) -> bool:
        try:
            address = ipaddress.ip_address(source.partition("%")[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)  # a dual-stack socket reports IPv4 as ::ffff:a.b.c.d
        return any(address in net or (mapped is not None and mapped in net) for net in self.networks)


@dataclass
class Admission:
    """What the NG socket and the REST API ask before doing any work for a source."""

    allow: AllowList | None = None
    ng: SourceLimiter | None = None
    api: SourceLimiter | None = None
    counters: AdmissionCounters = field(default_factory=AdmissionCounters)
    #: REST requests answered, by (route template, method, status); filled by the HTTP layer.
    api_requests: dict[tuple[str, str, int], int] = field(default_factory=dict)
    log_throttle: _LogThrottle = field(default_factory=_LogThrottle, repr=False)

    def admit(self, source_ip: str, now: float) -> bool:
        """For every NG datagram: False = drop it without a reply (already counted)."""
        allow = self.allow
        if allow is not None and not allow.allows(source_ip):
            self.counters.ng_not_allowed_total += 1
            if self.log_throttle.allow(now):
                log.warning(
                    "dropped NG request from %s: not in the allow-list (KARL_NG_ALLOW)",
                    source_ip,
                    extra={"event": "ng_not_allowed", "source": source_ip},
                )
            return False
        limiter = self.ng
        if limiter is None:
            return True
        verdict = limiter.check(source_ip, now)
        if verdict is Verdict.ADMIT:
            return True
        self.counters.ng_rate_limited_total += 1
        if verdict is Verdict.BLOCKED:
            self.counters.ng_blocked_total += 1
        return False

    def admit_api(self, source_ip: str, now: float) -> bool:
        """For every REST request: False = answer 429 (already counted)."""
        limiter = self.api
        if limiter is None:
            return True
        verdict = limiter.check(source_ip, now)
        if verdict is Verdict.ADMIT:
            return True
        self.counters.api_rate_limited_total += 1
        if verdict is Verdict.BLOCKED:
            self.counters.api_blocked_total += 1
        return False

    def api_auth_failed(self, source_ip: str, now: float) -> None:
        """A REST request without a valid key: counted, and towards a block (guessing keys is flooding)."""
        self.counters.api_auth_failures_total += 1
        if self.api is not None:
            self.api.strike(source_ip, now)

    def api_role_refused(self) -> None:
        """A REST request with a valid key whose role is too low (403): counted, not held against the
        source (it is a known client)."""
        self.counters.api_auth_failures_total += 1

    def api_retry_after(self, source_ip: str, now: float) -> int:
        """Whole seconds for the Retry-After header of a 429 (at least 1)."""
        wait = self.api.retry_after(source_ip, now) if self.api is not None else 0.0
        return max(1, int(wait + 0.999))

    def blocked_sources(self, now: float | None = None) -> int:
        """Sources blocked right now, NG and API together (a source blocked on both counts twice)."""
        return self.blocked_ng_sources(now) + self.blocked_api_sources(now)

    def blocked_ng_sources(self, now: float | None = None) -> int:
        if self.ng is None:
            return 0
        return self.ng.blocked_count(time.monotonic() if now is None else now)

    def blocked_api_sources(self, now: float | None = None) -> int:
        if self.api is None:
            return 0
        return self.api.blocked_count(time.monotonic() if now is None else now)


def build_admission(config: KarlConfig, *, max_sources: int = DEFAULT_MAX_SOURCES) -> Admission:
    """The admission control `config.security` describes (rate 0 = that limit is off)."""
    sec = config.security
    counters = AdmissionCounters()
    throttle = _LogThrottle()
    ng = api = None
    if sec.ng_rate_limit > 0:
        ng = SourceLimiter(
            "ng",
            sec.ng_rate_limit,
            sec.ng_burst,
            sec.block_seconds,
            max_sources=max_sources,
            counters=counters,
            throttle=throttle,
        )
    if sec.api_rate_limit > 0:
        api = SourceLimiter(
            "api",
            sec.api_rate_limit,
            sec.api_burst,
            sec.block_seconds,
            max_sources=max_sources,
            counters=counters,
            throttle=throttle,
        )
    return Admission(
        allow=AllowList.parse(sec.ng_allow, max_sources),
        ng=ng,
        api=api,
        counters=counters,
        log_throttle=throttle,
    )
