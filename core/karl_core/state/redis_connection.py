"""How the fleet reaches Redis: one address (`host:port`, `redis://`, `rediss://`, `unix://`) or Redis
Sentinels, a password, a key prefix, and short timeouts.

Every command is bounded (`command_timeout`, 0.3 s by default): a request a proxy is waiting for must
be answered (or refused) well before Kamailio retransmits it after 1 s, and a hung Redis must cost a
request that much at most, not the socket's default of seconds. Nothing is retried here: callers know
whether a retry is worth it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from karl_core.config.sections import DatabaseSection

COMMAND_TIMEOUT = 0.3
"""Seconds any one Redis command may take."""


@dataclass(frozen=True, slots=True)
class RedisSettings:
    addr: str = ""
    password: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = "karl"
    prefix: str = "karl"
    lease_ttl: float = 3.0
    command_timeout: float = COMMAND_TIMEOUT

    @classmethod
    def from_config(cls, database: DatabaseSection) -> RedisSettings:
        sentinels = []
        for entry in filter(None, (part.strip() for part in database.redis_sentinels.split(","))):
            host, _, port = entry.rpartition(":")
            sentinels.append((host.strip("[]"), int(port)))
        return cls(
            addr=database.redis_addr,
            password=database.redis_password,
            sentinels=tuple(sentinels),
            sentinel_master=database.redis_sentinel_master,
            prefix=database.redis_prefix,
            lease_ttl=float(database.redis_lease_ttl),
        )

    def describe(self) -> str:
        """Where Redis is, for logs and health (never the password, also not one inside a URL)."""
        if self.sentinels:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel {self.sentinel_master}@{hosts}"
        scheme, sep, rest = self.addr.partition("://")
        if not sep:
            return self.addr
        # neither `user:password@` nor a query (`?password=` is how a unix:// URL carries one)
        return f"{scheme}://{rest.partition('?')[0].rpartition('@')[2]}"


def connect(settings: RedisSettings) -> aioredis.Redis:
    """A client (its connections open on first use). `decode_responses` stays off: call-ids and states
    are bytes on the wire and are decoded where they are read."""
    common: dict[str, Any] = {
        # a call-id that is not UTF-8 (NG strings keep such bytes as surrogates) goes out as it came in
        "encoding_errors": "surrogateescape",
        "socket_timeout": settings.command_timeout,
        "socket_connect_timeout": settings.command_timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if settings.password:
        common["password"] = settings.password
    if settings.sentinels:
        sentinel = Sentinel(
            list(settings.sentinels),
            sentinel_kwargs={"socket_timeout": settings.command_timeout},
            **common,
        )
        client: aioredis.Redis = sentinel.master_for(settings.sentinel_master)
        return client
    if "://" in settings.addr:
        return aioredis.Redis.from_url(settings.addr, **common)
    host, _, port = settings.addr.rpartition(":")
    return aioredis.Redis(host=host.strip("[]"), port=int(port), **common)
