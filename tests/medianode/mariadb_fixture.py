"""A private MariaDB server for tests: its own data directory in /tmp, a free TCP port on 127.0.0.1,
stoppable and restartable (for outage tests). Needs Debian's mariadb-server; skips the test otherwise.

Use it from a test module with a fixture of the scope you want:

    from medianode.mariadb_fixture import MariaDbServer, running_mariadb

    @pytest.fixture(scope="module")
    def mariadb() -> Iterator[MariaDbServer]:
        with running_mariadb() as server:
            yield server

    def test_x(mariadb):
        dsn = mariadb.create_database("x")          # mysql://karl_x:<password>@127.0.0.1:<port>/x
        mariadb.stop(); ...; mariadb.start()          # an outage (or kill(), or freeze()/thaw())
        rows = mariadb.query("x", "SELECT COUNT(*) FROM t")
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from karl_testkit import free_port

MARIADBD = shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/mariadbd"
INSTALL_DB = (
    shutil.which("mariadb-install-db", path="/usr/bin:/usr/sbin:/bin") or "/usr/bin/mariadb-install-db"
)
_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")

# small and fast: this server holds a few test tables
_SERVER_OPTIONS = [
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=4M",
    "--innodb-flush-log-at-trx-commit=2",
    "--performance-schema=OFF",
    "--skip-name-resolve",
    "--max-connections=64",
]


def unavailable_reason() -> str | None:
    """Why a MariaDB server cannot be started here, or None if it can."""
    if not Path(MARIADBD).exists() or not Path(INSTALL_DB).exists():
        return "MariaDB server not installed (Debian package mariadb-server: mariadbd, mariadb-install-db)"
    try:
        import pymysql  # noqa: F401
    except ImportError:
        return "PyMySQL is not installed in the virtualenv"
    return None


# Kills the server ($2) once the test process ($1) is gone, so that a run killed from outside (CI
# timeout, kill -9) leaves no server behind; ends by itself when the server stops. (PR_SET_PDEATHSIG
# would follow the *thread* that started the server, and tests start it from worker threads.)
_WATCHDOG = (
    'while kill -0 "$1" 2>/dev/null; do kill -0 "$2" 2>/dev/null || exit 0; sleep 0.5; done; kill -9 "$2"'
)


class MariaDbServer:
    """One mariadbd: `start()`, `stop()` (clean shutdown), `kill()` (crash), `freeze()`/`thaw()` (hung),
    `create_database()`."""

    def __init__(self, directory: Path | None = None) -> None:
        # the socket path must stay short (108 bytes), so the server lives in its own /tmp directory
        self._owns_base = directory is None
        self.base = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="karl-mdb-"))
        self.datadir = self.base / "data"
        self.socket = self.base / "mariadbd.sock"
        self.log_path = self.base / "error.log"
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._ready_before = 0
        self._as_root = os.geteuid() == 0

    def _user_option(self) -> list[str]:
        return ["--user=root"] if self._as_root else []

    def install(self) -> None:
        result = subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *self._user_option(),
                *_SERVER_OPTIONS,
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"mariadb-install-db failed ({result.returncode}):\n"
                + result.stdout.decode(errors="replace")[-2000:]
                + result.stderr.decode(errors="replace")[-2000:]
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        if not (self.datadir / "mysql").is_dir():
            self.install()
        self._ready_before = self._ready_lines()
        self.proc = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                f"--bind-address={self.host}",
                f"--socket={self.socket}",
                f"--pid-file={self.base / 'mariadbd.pid'}",
                f"--log-error={self.log_path}",
                *self._user_option(),
                *_SERVER_OPTIONS,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._watchdog = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG, "karl-mariadb-watchdog", str(os.getpid()), str(self.proc.pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mariadbd did not accept connections in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        self.admin_query("SELECT 1")

    def _ready_lines(self) -> int:
        try:
            return self.log_path.read_bytes().count(b"ready for connections")
        except OSError:
            return 0

    def _accepting(self) -> bool:
        # the server's own word and plain sockets: a driver whose connection fails leaves its
        # socket to the garbage collector
        if self._ready_lines() <= self._ready_before or not self.socket.exists():
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """A clean shutdown; the port stops answering before this returns."""
        self._end_watchdog()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """A crash (SIGKILL); InnoDB recovers at the next start."""
        self._end_watchdog()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def _end_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait(5)
            self._watchdog = None

    def freeze(self) -> None:
        """A hung server (SIGSTOP): connections stay open, nothing answers."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        self.stop()
        if self._owns_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket),
            user="root",
            password="",
            database=database,
            autocommit=True,
            connect_timeout=2,
            charset="utf8mb4",
        )

    def admin_query(self, sql: str, args: Any = None, database: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement as root over the socket; returns the rows."""
        conn = self._connect(database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def query(self, database: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        return self.admin_query(sql, args, database)

    def create_database(self, name: str, user: str | None = None, password: str | None = None) -> str:
        """A fresh database (dropped first if it exists) and a user allowed on it; returns its
        `mysql://` DSN over TCP."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: letters, digits and '_' only")
        user = user or f"k_{name}"[:32]
        password = password or secrets.token_urlsafe(12)
        self.admin_query(f"DROP DATABASE IF EXISTS `{name}`")
        self.admin_query(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        self.admin_query("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", (user, password))
        self.admin_query("ALTER USER %s@'127.0.0.1' IDENTIFIED BY %s", (user, password))
        self.admin_query(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@'127.0.0.1'", (user,))
        return f"mysql://{user}:{password}@{self.host}:{self.port}/{name}"


@contextmanager
def running_mariadb(directory: Path | None = None) -> Iterator[MariaDbServer]:
    """A started server, stopped and removed afterwards; skips the test if MariaDB is not installed."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = MariaDbServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.close()
