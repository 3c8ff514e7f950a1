"""The CDR database DSN: `mysql://user:password@host:port/database` or Go-style
`user:password@tcp(host:port)/database` (as docs/configuration.md shows), also `unix(/path/to.sock)`.

Sans-IO. Error messages never contain the password, and neither does `repr()` of the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

DEFAULT_PORT = 3306
_URL_SCHEMES = ("mysql://", "mariadb://")
# MariaDB/MySQL unquoted identifier characters; the name is passed to the driver, never spliced into SQL.
_DATABASE = re.compile(r"[A-Za-z0-9_$-]{1,64}")
_GO_ADDRESS = re.compile(r"(?P<net>tcp|unix)\((?P<addr>[^()]*)\)\Z")


class DsnError(ValueError):
    """A DSN that cannot be used; the message says what is wrong and never repeats the password."""


@dataclass(frozen=True)
class MysqlDsn:
    user: str
    password: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database: str = ""
    unix_socket: str | None = None

    def redacted(self) -> str:
        """The DSN for logs: the password replaced by `***`."""
        secret = ":***" if self.password else ""
        where = f"unix({self.unix_socket})" if self.unix_socket else _host_port(self.host, self.port)
        return f"mysql://{self.user}{secret}@{where}/{self.database}"

    def __str__(self) -> str:
        return self.redacted()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_dsn(text: str) -> MysqlDsn:
    """Parse either DSN form; raises `DsnError` naming the problem."""
    if not isinstance(text, str):
        raise DsnError("the MySQL DSN must be a string")
    text = text.strip()
    if not text:
        raise DsnError("the MySQL DSN is empty")
    lowered = text.lower()
    if lowered.startswith(_URL_SCHEMES):
        return _parse_url(text[text.index("://") + 3 :])
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise DsnError(f"unsupported DSN scheme {scheme!r}: use mysql://user:password@host:port/database")
    return _parse_go(text)


def _split_credentials(text: str, form: str) -> tuple[str, str, str]:
    """`user[:password]@rest` → (user, password, rest). The last `@` separates, so a password may hold
    `@`."""
    if "@" not in text:
        raise DsnError(f"the DSN has no user: expected {form}")
    credentials, _, rest = text.rpartition("@")
    user, _, password = credentials.partition(":")
    if not user:
        raise DsnError(f"the DSN has an empty user name: expected {form}")
    return user, password, rest


def _split_database(rest: str, form: str) -> tuple[str, str]:
    if "?" in rest:
        raise DsnError("DSN options after '?' are not supported; remove them")
    if "/" not in rest:
        raise DsnError(f"the DSN names no database: expected {form}")
    where, _, database = rest.rpartition("/")
    if not database:
        raise DsnError(f"the DSN names no database: expected {form}")
    if not _DATABASE.fullmatch(database):
        raise DsnError(
            f"invalid database name {database[:64]!r}: use 1 to 64 letters, digits, '_', '$' or '-'"
        )
    return where, database


def _parse_port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise DsnError(f"invalid port {text[:16]!r} in the DSN: must be 1 to 65535")
    return int(text)


def _parse_host_port(where: str) -> tuple[str, int]:
    if not where:
        raise DsnError("the DSN has no host")
    if where.startswith("["):
        host, bracket, tail = where[1:].partition("]")
        if not bracket or not host:
            raise DsnError("unbalanced '[' around an IPv6 address in the DSN")
        if not tail:
            return host, DEFAULT_PORT
        if not tail.startswith(":"):
            raise DsnError("expected ':port' after ']' in the DSN")
        return host, _parse_port(tail[1:])
    if where.count(":") > 1:
        raise DsnError("an IPv6 address in the DSN must be written in brackets: [::1]:3306")
    host, colon, port = where.partition(":")
    if not host:
        raise DsnError("the DSN has no host")
    if any(c in host for c in "/()@ "):
        raise DsnError(f"invalid host {host[:64]!r} in the DSN")
    return host, _parse_port(port) if colon else DEFAULT_PORT


_URL_FORM = "mysql://user:password@host:port/database"
_GO_FORM = "user:password@tcp(host:port)/database"


def _parse_url(body: str) -> MysqlDsn:
    user, password, rest = _split_credentials(body, _URL_FORM)
    where, database = _split_database(rest, _URL_FORM)
    host, port = _parse_host_port(where)
    try:
        user, password = unquote(user, errors="strict"), unquote(password, errors="strict")
    except UnicodeDecodeError:
        raise DsnError("the DSN's user or password has an invalid %-escape") from None
    return MysqlDsn(user, password, host, port, database)


def _parse_go(text: str) -> MysqlDsn:
    user, password, rest = _split_credentials(text, _GO_FORM)
    where, database = _split_database(rest, _GO_FORM)
    if not where:
        # the Go driver's default address
        return MysqlDsn(user, password, "127.0.0.1", DEFAULT_PORT, database)
    match = _GO_ADDRESS.match(where)
    if match is None:
        raise DsnError(f"cannot read the address of the DSN: expected {_GO_FORM} or unix(/path)")
    address = match.group("addr")
    if match.group("net") == "unix":
        if not address.startswith("/"):
            raise DsnError("unix(...) in the DSN needs an absolute socket path")
        return MysqlDsn(user, password, "localhost", DEFAULT_PORT, database, unix_socket=address)
    host, port = _parse_host_port(address)
    return MysqlDsn(user, password, host, port, database)
