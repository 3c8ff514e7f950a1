"""A lean Redis connection for the fleet's hot path: the scripts a node runs on every call change (its
first write of a new call places it).

`redis.asyncio` spends about 100 µs of CPU per command in its own layers (connection pool, command
packing, a task per command); this sends a batch of commands as one buffer and parses the replies with
`hiredis`, in a plain `asyncio.Protocol`, on one connection whose replies come back in order. Used for
plain TCP and unix sockets; TLS and Sentinel stay with `redis.asyncio` (`lean_client` says which).

A command that times out closes the connection (a late reply would otherwise answer the next command)
and fails every command still waiting on it; the next command opens a new one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from karl_core.state.redis_connection import RedisSettings

Command = Sequence[str | bytes | int]


def _reply_error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


def pack(commands: Sequence[Command]) -> bytes:
    """RESP arrays of bulk strings, one per command, in one buffer."""
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, int):
                data = str(arg).encode()
            elif isinstance(arg, str):
                data = arg.encode("utf-8", "surrogateescape")
            else:
                data = arg
            parts.append(b"$%d\r\n" % len(data))
            parts.append(data)
            parts.append(b"\r\n")
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=_reply_error)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if self.waiting:
                waiter = self.waiting.popleft()
                if not waiter.done():
                    waiter.set_result(reply)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or RedisConnectionError("Redis closed the connection")
        self.transport = None
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(RedisConnectionError(str(self.lost)))


class LeanRedis:
    """One connection to one Redis server (TCP or unix socket), opened on first use."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        timeout: float = 0.3,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password, self.db = username, password, db
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and protocol.transport is not None:
                return protocol
            loop = asyncio.get_running_loop()
            try:
                if self.path is not None:
                    opening = loop.create_unix_connection(_Protocol, self.path)
                else:
                    opening = loop.create_connection(_Protocol, self.host, self.port)
                _, opened = await asyncio.wait_for(opening, self.timeout)
            except (TimeoutError, OSError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis: {exc or type(exc).__name__}") from None
            hello: list[Command] = []
            if self.password:
                auth = [self.username, self.password] if self.username else [self.password]
                hello.append(["AUTH", *auth])
            if self.db:
                hello.append(["SELECT", self.db])
            self._protocol = opened
            if hello:
                for reply in await self._send(opened, hello):
                    if isinstance(reply, Exception):
                        self.close()
                        raise reply
            return opened

    def _send(self, protocol: _Protocol, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        loop = asyncio.get_running_loop()
        assert protocol.transport is not None
        waiters = [loop.create_future() for _ in commands]
        protocol.waiting.extend(waiters)
        protocol.transport.write(pack(commands))
        gathered: asyncio.Future[list[Any]] = asyncio.gather(*waiters)
        expiry = loop.call_later(self.timeout, self._expire, protocol, gathered)
        gathered.add_done_callback(lambda _: expiry.cancel())
        return gathered

    def _expire(self, protocol: _Protocol, gathered: asyncio.Future[list[Any]]) -> None:
        if gathered.done():
            return
        # replies come in order: once one is missing, the connection cannot be trusted any more
        if protocol.transport is not None:
            protocol.transport.abort()
        if not gathered.done():
            gathered.set_exception(RedisTimeoutError(f"Redis did not answer within {self.timeout:.2f} s"))

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send the commands at once; their replies in order (an error reply is its exception)."""
        protocol = await self._connection()
        return await self._send(protocol, commands)

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


def lean_client(settings: RedisSettings) -> LeanRedis | None:
    """A lean connection for these settings, or None where `redis.asyncio` must do it (TLS, Sentinel)."""
    if settings.sentinels:
        return None
    common: dict[str, Any] = {"timeout": settings.command_timeout, "password": settings.password or None}
    if "://" not in settings.addr:
        host, _, port = settings.addr.rpartition(":")
        return LeanRedis(host=host.strip("[]"), port=int(port), **common)
    if settings.addr.startswith("rediss://"):
        return None
    parsed = parse_url(settings.addr)
    extra = set(parsed) - {"host", "port", "path", "db", "username", "password", "connection_class"}
    if extra:
        return None  # options only redis.asyncio knows
    return LeanRedis(
        host=str(parsed.get("host", "127.0.0.1")),
        port=int(parsed.get("port", 6379)),
        path=parsed.get("path"),
        username=parsed.get("username"),
        password=parsed.get("password") or settings.password or None,
        db=int(parsed.get("db", 0) or 0),
        timeout=settings.command_timeout,
    )
