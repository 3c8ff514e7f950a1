"""API keys and roles: loading them from the configuration, and checking a presented key.

Keys are kept only as SHA-256 digests and compared with `hmac.compare_digest` against every configured
key (no early exit), so neither the comparison time nor the process memory hands out a key. Keys never
appear in logs or error messages; a bad entry is named by its position.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from karl_core.config.sections import SecuritySection

log = logging.getLogger("karl.http.auth")

#: Keys shorter than this are accepted but reported at start-up (they can be guessed).
MIN_RECOMMENDED_KEY_LENGTH = 24


class Role(IntEnum):
    """Each role includes the ones below it."""

    READ = 1
    OPERATE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class ApiKeyError(Exception):
    """The keys cannot be loaded; the message names the source and line, never a key."""


@dataclass(frozen=True)
class KeyEntry:
    role: Role
    digest: bytes
    length: int
    origin: str  # "KARL_API_KEYS entry 2", "/etc/karl/keys line 7"


@dataclass(frozen=True)
class ApiKeys:
    entries: tuple[KeyEntry, ...] = ()

    @property
    def enabled(self) -> bool:
        """False: no keys configured, the API is open."""
        return bool(self.entries)

    def role_of(self, presented: str | None) -> Role | None:
        """The highest role of the configured keys equal to `presented`; None if it matches none."""
        if presented is None or not self.entries:
            return None
        digest = _digest(presented)
        best: Role | None = None
        for entry in self.entries:  # always all of them: the time taken does not depend on the match
            if hmac.compare_digest(entry.digest, digest) and (best is None or entry.role > best):
                best = entry.role
        return best

    def weak_entries(self) -> list[str]:
        return [entry.origin for entry in self.entries if entry.length < MIN_RECOMMENDED_KEY_LENGTH]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _parse_entry(text: str, origin: str) -> KeyEntry:
    role_text, sep, key = text.partition(":")
    role_text, key = role_text.strip().lower(), key.strip()
    if not sep or not key or role_text not in ("read", "operate", "admin"):
        raise ApiKeyError(f"{origin}: must be 'role:key' with role read, operate or admin")
    return KeyEntry(Role[role_text.upper()], _digest(key), len(key), origin)


def parse_keys(entries: str, source: str = "KARL_API_KEYS") -> list[KeyEntry]:
    """`role:key,role:key` (the form of `security.api_keys`)."""
    parts = [part.strip() for part in entries.split(",")]
    return [_parse_entry(part, f"{source} entry {i}") for i, part in enumerate(parts, 1) if part]


def parse_key_file(lines: Iterable[str], path: str) -> list[KeyEntry]:
    """One `role:key` per line; blank lines and `#` comments are skipped."""
    result = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if text and not text.startswith("#"):
            result.append(_parse_entry(text, f"{path} line {number}"))
    return result


def load_api_keys(security: SecuritySection) -> ApiKeys:
    """The keys of `security.api_keys` plus those of `security.api_keys_file`."""
    entries = parse_keys(security.api_keys)
    path = security.api_keys_file
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                entries += parse_key_file(handle, path)
        except OSError as exc:
            raise ApiKeyError(
                f"cannot read the API keys file {path} (KARL_API_KEYS_FILE): {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ApiKeyError(f"the API keys file {path} (KARL_API_KEYS_FILE) is not UTF-8 text") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "the API keys file %s can be read by other users; restrict it (chmod 600)",
                path,
                extra={"event": "api_keys_file_permissions"},
            )
    return ApiKeys(tuple(entries))


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>`, else `X-API-Key: <key>`."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("X-API-Key")
    if key is not None and key.strip():
        return key.strip()
    return None
