"""`CdrWriter`: one record per finished call, to the CDR file and (with a DSN) to MySQL/MariaDB.

`submit` runs on the event loop for every finished call: it builds the record and queues it, never
blocks and never raises. Background tasks do the rest:

* intake: appends queued records to the CDR file and, with a database, to the durable spool (both
  fsync'ed, each in its own I/O thread so the event loop never waits on a disk), the records of each
  `INTAKE_LINGER` (20 ms) together;
* database: sends spooled records to the database in order, in batches, and acknowledges them in the
  spool. While the database is unreachable it retries with exponential backoff; records keep going to
  the file and the spool meanwhile. A new writer on the same spool directory sends what an earlier one
  left. Each record carries a unique `record_id` and the insert ignores ids already there, so a record
  sent again (after a crash between insert and acknowledgement) never becomes a second row.

Failures are logged at most once per `LOG_INTERVAL` per kind; the DSN's password is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from karl_core.logs import LogThrottle
from karl_medianode.engine import CallEnded
from karl_medianode.operations.cdr.dsn import MysqlDsn, parse_dsn
from karl_medianode.operations.cdr.filesink import FileSink
from karl_medianode.operations.cdr.mysqlsink import (
    DEFAULT_TABLE,
    DatabaseDown,
    InvalidRecord,
    MysqlSink,
    row_values,
)
from karl_medianode.operations.cdr.record import build_record, encode_record
from karl_medianode.operations.cdr.spool import Spool, SpoolItem

log = logging.getLogger("karl.cdr")

LOG_INTERVAL = 30.0
INTAKE_BATCH = 500
INTAKE_LINGER = 0.02
"""Seconds the intake waits after a record came before it writes, so that the records of that moment
go in one write (one hand-over to the I/O thread, one fsync) instead of one each: with a call ending
every few milliseconds, the thread hop and fsync per record cost as much CPU as the call's signalling."""

T = TypeVar("T")


@dataclass
class CdrCounters:
    """Plain counters read by metrics and health (see docs/cdr.md)."""

    records_total: int = 0
    """Records made (one per finished call)."""
    file_written_total: int = 0
    """Records appended to the CDR file."""
    file_errors_total: int = 0
    """Records that could not be written to the CDR file."""
    db_written_total: int = 0
    """Records the database confirmed (inserted, or already there)."""
    db_errors_total: int = 0
    """Failed database attempts (connect or insert)."""
    spooled_total: int = 0
    """Records that had to wait in the spool for the database: waiting when an attempt failed,
    appended while the database was failing, or found in the spool at start-up."""
    spool_pending: int = 0
    """Records in the spool not yet in the database."""
    rejected_total: int = 0
    """Records the database refused as invalid, set aside in the spool's cdr-rejected.jsonl."""
    dropped_total: int = 0
    """Records lost before reaching the spool (queue full, spool unwritable, submitted after stop)."""
    db_up: bool | None = None
    """Whether the last database attempt worked; None without a database."""


class CdrWriter:
    def __init__(
        self,
        node_id: str,
        path: str | None,
        spool_dir: str | None,
        mysql_dsn: str | None,
        *,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        batch_size: int = 100,
        queue_limit: int = 10000,
        segment_records: int = 1000,
        connect_timeout: float = 5.0,
        query_timeout: float = 10.0,
        table: str = DEFAULT_TABLE,
    ) -> None:
        """Raises `DsnError` for an unusable DSN, ValueError for a DSN without a spool directory."""
        self.node_id = node_id
        self.dsn: MysqlDsn | None = parse_dsn(mysql_dsn) if mysql_dsn else None
        if self.dsn is not None and not spool_dir:
            raise ValueError("a CDR database needs a spool directory (cdr.spool_dir)")
        self.path = path or None
        self.spool_dir = spool_dir or None
        self.retry_min = retry_min
        self.retry_max = max(retry_max, retry_min)
        self.batch_size = max(1, batch_size)
        self.queue_limit = max(1, queue_limit)
        self.counters = CdrCounters(db_up=None if self.dsn is None else False)
        self._file = FileSink(path) if path else None
        self._spool = Spool(spool_dir, segment_records) if self.dsn is not None and spool_dir else None
        self._db = (
            MysqlSink(self.dsn, table, connect_timeout, query_timeout) if self.dsn is not None else None
        )
        self._queue: deque[bytes] = deque()
        self._wake_intake = asyncio.Event()
        self._wake_db = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closing = asyncio.Event()
        self._intake_busy = False
        self._tasks: list[asyncio.Task[None]] = []
        self._file_io: ThreadPoolExecutor | None = None
        self._spool_io: ThreadPoolExecutor | None = None
        self._spool_open = False
        self._started = False
        self._closed = False
        self._stopped = False
        # spool positions appended by this writer, and how many of them are counted in spooled_total
        self._appended = 0
        self._counted = 0
        # the last database attempt failed (not merely: not connected yet)
        self._db_failing = False
        self._throttle = LogThrottle(LOG_INTERVAL)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open the file and the spool and start the background tasks. Never fails for an unreachable
        database or an unwritable file (both are logged and retried)."""
        if self._started:
            return
        self._started = True
        self._file_io = ThreadPoolExecutor(1, thread_name_prefix="karl-cdr-file")
        if self._file is not None:
            try:
                await self._run(self._file_io, self._file.open)
            except OSError as exc:
                log.error(
                    "cannot open the CDR file %s: %s (retried with every record)",
                    self.path,
                    exc.strerror or exc,
                    extra={"event": "cdr_file_error"},
                )
        if self._spool is not None:
            self._spool_io = ThreadPoolExecutor(1, thread_name_prefix="karl-cdr-spool")
            try:
                waiting = await self._run(self._spool_io, self._open_spool)
            except OSError as exc:
                log.error(
                    "cannot open the CDR spool %s: %s (retried with every record)",
                    self.spool_dir,
                    exc.strerror or exc,
                    extra={"event": "cdr_spool_error"},
                )
            else:
                self.counters.spooled_total += waiting
                self.counters.spool_pending = waiting
                if waiting:
                    log.info(
                        "%d CDRs wait in the spool %s from an earlier run; sending them to the database",
                        waiting,
                        self.spool_dir,
                        extra={"event": "cdr_spool_replay", "records": waiting},
                    )
        elif self.spool_dir is not None:
            leftover = await self._run(self._file_io, Spool.count_waiting, self.spool_dir)
            if leftover:
                log.warning(
                    "%d CDRs wait in the spool %s but no database is configured (KARL_MYSQL_DSN); "
                    "they stay there",
                    leftover,
                    self.spool_dir,
                    extra={"event": "cdr_spool_leftover", "records": leftover},
                )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._intake_loop(), name="karl-cdr-intake"))
        if self._db is not None:
            self._tasks.append(loop.create_task(self._db_loop(), name="karl-cdr-database"))
        log.info(
            "CDRs: file %s, database %s",
            self.path or "off",
            self.dsn.redacted() if self.dsn is not None else "off",
            extra={"event": "cdr_started"},
        )

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, give the database until `timeout` to take what is spooled, then stop.
        Records the database does not have stay in the spool for the next start."""
        self._closed = True
        self._closing.set()  # (an intake lingering for more records writes at once)
        if not self._started or self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        self._wake_intake.set()
        while (self._queue or self._intake_busy) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._spool is not None:
            while self._spool.pending > 0 and self.counters.db_up is True and loop.time() < deadline:
                await asyncio.sleep(0.01)
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._db is not None:
            self._db.close()
        if self._queue:
            lost = len(self._queue)
            self._queue.clear()
            self.counters.dropped_total += lost
            log.error(
                "%d CDRs were still queued at shutdown and are lost (the disk did not keep up)",
                lost,
                extra={"event": "cdr_dropped", "records": lost},
            )
        remaining = max(1.0, deadline - loop.time())
        for executor, closer in ((self._file_io, self._file), (self._spool_io, self._spool)):
            if executor is None:
                continue
            if closer is not None:
                with contextlib.suppress(TimeoutError, OSError):
                    async with asyncio.timeout(remaining):
                        await self._run(executor, closer.close)
            executor.shutdown(wait=False)
        if self._spool is not None:
            self.counters.spool_pending = self._spool.pending
            if self._spool.pending:
                log.info(
                    "%d CDRs stay in the spool %s for the next start",
                    self._spool.pending,
                    self.spool_dir,
                    extra={"event": "cdr_spool_kept", "records": self._spool.pending},
                )

    # ------------------------------------------------------------------ the event-loop side

    def submit(self, ended: CallEnded) -> None:
        """Queue the record of a finished call. Runs on the event loop; never blocks, never raises."""
        try:
            if self._closed:
                self._drop(1, "submitted after the CDR writer stopped")
                return
            line = encode_record(build_record(ended, self.node_id))
            self.counters.records_total += 1
            if len(self._queue) >= self.queue_limit:
                self._drop(1, "the CDR queue is full (the disk does not keep up)")
                return
            self._queue.append(line)
            self._wake_intake.set()
        except Exception:
            self.counters.dropped_total += 1
            if self._throttle.allow("build") is not None:
                call_id = str(getattr(ended, "call_id", "?"))[:255]
                log.exception(
                    "cannot make the CDR of a call", extra={"event": "cdr_error", "call_id": call_id}
                )

    def _drop(self, count: int, why: str) -> None:
        self.counters.dropped_total += count
        suppressed = self._throttle.allow("drop")
        if suppressed is not None:
            extra = {"event": "cdr_dropped", "records": count, "suppressed": suppressed}
            log.error("CDR lost: %s", why, extra=extra)

    @staticmethod
    async def _run(executor: ThreadPoolExecutor, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, func, *args)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # ------------------------------------------------------------------ intake: file and spool

    def _open_spool(self) -> int:
        """In the spool thread: open once; returns the records found waiting."""
        assert self._spool is not None
        if self._spool_open:
            return 0
        found = self._spool.open()
        self._spool_open = True
        return found

    def _append_spool(self, lines: list[bytes]) -> int:
        found = self._open_spool()
        assert self._spool is not None
        self._spool.append(lines)
        return found

    async def _intake_loop(self) -> None:
        while not self._stopping.is_set():
            if not self._queue:
                self._intake_busy = False
                self._wake_intake.clear()
                await self._wake_intake.wait()
                continue
            self._intake_busy = True
            if len(self._queue) < INTAKE_BATCH and not self._closed:
                # group commit: the records of the next moment share this write's thread hop and fsync
                # (a stop ends the wait: its deadline may be shorter than the linger)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(INTAKE_LINGER):
                        await self._closing.wait()
            lines = [self._queue.popleft() for _ in range(min(INTAKE_BATCH, len(self._queue)))]
            jobs = []
            if self._file is not None:
                jobs.append(self._write_file(lines))
            if self._spool is not None:
                jobs.append(self._write_spool(lines))
            await asyncio.gather(*jobs)

    async def _write_file(self, lines: list[bytes]) -> None:
        assert self._file is not None and self._file_io is not None
        try:
            await self._run(self._file_io, self._file.append, lines)
        except OSError as exc:
            self.counters.file_errors_total += len(lines)
            suppressed = self._throttle.allow("file")
            if suppressed is not None:
                log.error(
                    "cannot write %d CDRs to %s: %s",
                    len(lines),
                    self.path,
                    exc.strerror or exc,
                    extra={"event": "cdr_file_error", "suppressed": suppressed},
                )
            return
        self.counters.file_written_total += len(lines)

    async def _write_spool(self, lines: list[bytes]) -> None:
        assert self._spool is not None and self._spool_io is not None
        try:
            found = await self._run(self._spool_io, self._append_spool, lines)
        except OSError as exc:
            self.counters.dropped_total += len(lines)
            suppressed = self._throttle.allow("spool")
            if suppressed is not None:
                log.error(
                    "cannot spool %d CDRs in %s for the database: %s (they are lost for the database)",
                    len(lines),
                    self.spool_dir,
                    exc.strerror or exc,
                    extra={"event": "cdr_spool_error", "suppressed": suppressed},
                )
            return
        self.counters.spooled_total += found
        self._appended += len(lines)
        if self._db_failing:
            self._count_waiting()
        self.counters.spool_pending = self._spool.pending
        self._wake_db.set()

    def _count_waiting(self) -> None:
        """Every record appended so far waits for the database: count those not yet counted."""
        self.counters.spooled_total += self._appended - self._counted
        self._counted = self._appended

    # ------------------------------------------------------------------ database

    def _db_failed(self, reason: str) -> None:
        self.counters.db_errors_total += 1
        was_up = self.counters.db_up
        self.counters.db_up = False
        self._db_failing = True
        self._count_waiting()
        if was_up:
            self._throttle.reset("db")
        suppressed = self._throttle.allow("db")
        if suppressed is not None:
            pending = self._spool.pending if self._spool is not None else 0
            log.warning(
                "CDR database %s unavailable (%s); %d records wait in the spool",
                self.dsn.redacted() if self.dsn else "",
                reason,
                pending,
                extra={"event": "cdr_db_down", "spool_pending": pending, "suppressed": suppressed},
            )

    def _db_ok(self) -> None:
        if self.counters.db_up is not True:
            pending = self._spool.pending if self._spool is not None else 0
            log.info(
                "CDR database %s connected; %d records wait in the spool",
                self.dsn.redacted() if self.dsn else "",
                pending,
                extra={"event": "cdr_db_up", "spool_pending": pending},
            )
        self.counters.db_up = True
        self._db_failing = False

    async def _db_loop(self) -> None:
        assert self._db is not None and self._spool is not None and self._spool_io is not None
        spool, db, io = self._spool, self._db, self._spool_io
        backoff = self.retry_min
        task = asyncio.current_task()
        # checked each round: a cancellation can be lost when it meets a finishing driver call
        while not self._stopping.is_set() and not (task is not None and task.cancelling()):
            try:
                await db.connect()
                if not self._spool_open or spool.pending == 0:
                    self._db_ok()  # connected with nothing to send
                    self._wake_db.clear()
                    if not self._spool_open or spool.pending == 0:
                        await self._wake_db.wait()
                    continue
                batch = await self._run(io, spool.peek, self.batch_size)
                if batch is None:
                    continue
                rows: list[tuple[Any, ...]] = []
                kept: list[SpoolItem] = []
                invalid: list[SpoolItem] = []
                for item in batch.items:
                    try:
                        if item.record is None:
                            raise InvalidRecord("unreadable spool line")
                        rows.append(row_values(item.record, item.line))
                        kept.append(item)
                    except InvalidRecord:
                        invalid.append(item)
                refused = await db.write(rows)
                rejected = invalid + [kept[i] for i in refused]
                if rejected:
                    await self._run(io, spool.reject, rejected)
                    self._rejected(rejected)
                await self._run(io, spool.ack, batch)
                self.counters.db_written_total += len(rows) - len(refused)
                self.counters.spool_pending = spool.pending
                self._db_ok()
                backoff = self.retry_min
            except DatabaseDown as exc:
                self._db_failed(str(exc))
                await self._pause(backoff * (1.0 + 0.2 * random.random()))
                backoff = min(backoff * 2, self.retry_max)
            except OSError as exc:
                suppressed = self._throttle.allow("spool-read")
                if suppressed is not None:
                    log.error(
                        "cannot read the CDR spool %s: %s",
                        self.spool_dir,
                        exc.strerror or exc,
                        extra={"event": "cdr_spool_error", "suppressed": suppressed},
                    )
                await self._pause(backoff)
                backoff = min(backoff * 2, self.retry_max)
            except Exception:  # a bug must not end the task: records keep waiting in the spool
                if self._throttle.allow("db-loop") is not None:
                    log.exception("CDR database task failed", extra={"event": "cdr_error"})
                await self._pause(backoff)
                backoff = min(backoff * 2, self.retry_max)

    def _rejected(self, items: list[SpoolItem]) -> None:
        self.counters.rejected_total += len(items)
        suppressed = self._throttle.allow("rejected")
        if suppressed is not None:
            ids = [str((item.record or {}).get("record_id", "?"))[:36] for item in items[:5]]
            log.error(
                "the CDR database refused %d records as invalid; kept in %s/cdr-rejected.jsonl",
                len(items),
                self.spool_dir,
                extra={"event": "cdr_rejected", "record_ids": ids, "suppressed": suppressed},
            )
