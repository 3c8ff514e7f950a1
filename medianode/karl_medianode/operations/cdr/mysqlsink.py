"""Writing CDRs to MySQL/MariaDB with aiomysql.

The table is created if missing. Each record's `record_id` is UNIQUE: sending a record again (after a
crash, or a lost reply) never makes a second row — the duplicate-key error of that row means "already
written". Errors are sorted into two kinds: `DatabaseDown` (cannot connect, connection
lost, timeout, anything unexpected: retry later) and records the server refuses as invalid (returned by
`write`, to be set aside instead of blocking every record behind them).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

import aiomysql
import pymysql

from karl_medianode.operations.cdr.dsn import MysqlDsn

DEFAULT_TABLE = "karl_cdr"
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_UINT64_MAX = 2**64 - 1

COLUMNS = (
    "record_id",
    "node_id",
    "call_id",
    "from_tag",
    "to_tag",
    "reason",
    "start_time",
    "end_time",
    "duration",
    "packets",
    "bytes",
    "errors",
    "record",
)


def create_table_sql(table: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS `{table}` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `record_id` CHAR(36) CHARACTER SET ascii NOT NULL,
  `node_id` VARCHAR(255) NOT NULL,
  `call_id` VARCHAR(255) NOT NULL,
  `from_tag` VARCHAR(255) NOT NULL,
  `to_tag` VARCHAR(255) NOT NULL,
  `reason` VARCHAR(32) NOT NULL,
  `start_time` DATETIME(6) NOT NULL,
  `end_time` DATETIME(6) NOT NULL,
  `duration` DOUBLE NOT NULL,
  `packets` BIGINT UNSIGNED NOT NULL,
  `bytes` BIGINT UNSIGNED NOT NULL,
  `errors` BIGINT UNSIGNED NOT NULL,
  `record` JSON NOT NULL,
  `inserted_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (`id`),
  UNIQUE KEY `uniq_record_id` (`record_id`),
  KEY `idx_call_id` (`call_id`),
  KEY `idx_end_time` (`end_time`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def insert_sql(table: str) -> str:
    names = ", ".join(f"`{c}`" for c in COLUMNS)
    values = ", ".join(["%s"] * len(COLUMNS))
    # a plain INSERT: needs only the INSERT privilege, and no error is turned into a warning
    return f"INSERT INTO `{table}` ({names}) VALUES ({values})"


ER_DUP_ENTRY = 1062
# a connection unused for this long is pinged before use
IDLE_CHECK = 30.0


class DatabaseDown(Exception):
    """The database cannot take records now; the message is safe to log (no password)."""


class InvalidRecord(ValueError):
    """A record that cannot become a row (corrupt spool line)."""


def _text(value: object, limit: int) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text[:limit]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), _UINT64_MAX)


def _time(value: object) -> datetime:
    try:
        return datetime.fromtimestamp(_number(value), UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return datetime(1970, 1, 1)


def row_values(record: dict[str, Any], line: bytes) -> tuple[Any, ...]:
    """The column values of one record; `line` is its JSON text (kept whole in `record`)."""
    record_id = record.get("record_id")
    if not isinstance(record_id, str) or not 1 <= len(record_id) <= 36 or not record_id.isascii():
        raise InvalidRecord("record_id missing or not a 36-character id")
    try:
        json_text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecord("record is not UTF-8") from None
    totals = record.get("totals")
    totals = totals if isinstance(totals, dict) else {}
    return (
        record_id,
        _text(record.get("node_id"), 255),
        _text(record.get("call_id"), 255),
        _text(record.get("from_tag"), 255),
        _text(record.get("to_tag"), 255),
        _text(record.get("reason"), 32),
        _time(record.get("start_epoch")),
        _time(record.get("end_epoch")),
        _number(record.get("duration")),
        _count(totals.get("packets")),
        _count(totals.get("bytes")),
        _count(totals.get("errors")),
        json_text,
    )


# refused for what the row holds, not for the state of the server: retrying cannot help
_BAD_DATA = (pymysql.err.DataError, pymysql.err.IntegrityError)


class MysqlSink:
    def __init__(
        self,
        dsn: MysqlDsn,
        table: str = DEFAULT_TABLE,
        connect_timeout: float = 5.0,
        query_timeout: float = 10.0,
    ) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(f"invalid CDR table name {table!r}")
        self.dsn = dsn
        self.table = table
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self._conn: Any = None
        self._last_used = 0.0

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def describe(self, exc: BaseException) -> str:
        """An exception as text without the password (drivers may quote what they were given)."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.dsn.password:
            text = text.replace(self.dsn.password, "***")
        return text[:500]

    async def connect(self) -> None:
        """Connect (if not connected) and create the table if missing; raises DatabaseDown."""
        if self._conn is not None:
            return
        dsn = self.dsn
        conn: Any = None
        try:
            conn = await aiomysql.connect(
                host=dsn.host,
                port=dsn.port,
                user=dsn.user,
                password=dsn.password,
                db=dsn.database,
                unix_socket=dsn.unix_socket,
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=self.connect_timeout,
                # no "table already exists" note when two nodes create the table at once
                init_command="SET SESSION sql_notes = 0",
            )
            async with conn.cursor() as cursor, asyncio.timeout(self.query_timeout):
                # CREATE only when missing: a table made by the DBA needs no CREATE privilege
                await cursor.execute("SHOW TABLES LIKE %s", (self.table.replace("_", "\\_"),))
                if not await cursor.fetchall():
                    await cursor.execute(create_table_sql(self.table))
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if not isinstance(exc, Exception):
                raise
            raise DatabaseDown(self.describe(exc)) from None
        self._conn = conn
        self._last_used = time.monotonic()

    async def _usable_connection(self) -> None:
        """Connect, or check a connection idle for a while: the server drops idle ones (wait_timeout),
        which is no outage and must not be reported as one."""
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_CHECK:
            try:
                async with asyncio.timeout(self.query_timeout):
                    await self._conn.ping(reconnect=False)
            except Exception:
                self.close()
        await self.connect()

    async def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        async with self._conn.cursor() as cursor, asyncio.timeout(self.query_timeout):
            await cursor.executemany(insert_sql(self.table), rows)
        self._last_used = time.monotonic()

    async def _insert_one(self, row: tuple[Any, ...]) -> bool:
        """False if the server refused the row as invalid; a row already there counts as written."""
        try:
            await self._insert([row])
        except _BAD_DATA as exc:
            return bool(exc.args and exc.args[0] == ER_DUP_ENTRY)
        return True

    async def write(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert rows in order; returns the indexes of rows the server refused as invalid (all others
        are in the table, once). Raises DatabaseDown (then none is known written)."""
        if not rows:
            return []
        await self._usable_connection()
        try:
            try:
                await self._insert(rows)  # one statement: all rows or none
                return []
            except _BAD_DATA:
                pass
            # a record already there (sent again after a crash) or an invalid one spoils the
            # statement: go through them one by one, in order
            return [index for index, row in enumerate(rows) if not await self._insert_one(row)]
        except asyncio.CancelledError:
            self.close()  # a statement cut short leaves the connection unusable
            raise
        except Exception as exc:
            self.close()
            raise DatabaseDown(self.describe(exc)) from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
