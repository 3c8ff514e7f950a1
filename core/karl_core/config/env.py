"""The ``KARL_*`` environment variables: which setting each one overrides, and how its text is read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from karl_core.config.errors import show
from karl_core.config.model import KarlConfig

CONFIG_PATH_ENV = "KARL_CONFIG_PATH"
DEFAULT_CONFIG_PATH = "config/config.json"
ENV_PREFIX = "KARL_"

EnvKind = Literal["int", "bool", "str"]


@dataclass(frozen=True)
class EnvVar:
    """One environment variable as documented for operators."""

    name: str
    #: Dotted JSON path of the setting it overrides; None for ``KARL_CONFIG_PATH``.
    field: str | None
    #: The default, as written in docs/configuration.md.
    default: str
    help: str


# name, JSON path, help, default text when the model's default is not self-explanatory.
_TABLE: tuple[tuple[str, str | None, str, str | None], ...] = (
    (CONFIG_PATH_ENV, None, "JSON configuration file; absent file = all defaults", DEFAULT_CONFIG_PATH),
    ("KARL_NG_ADDRESS", "ng_protocol.address", "address the NG socket binds to", None),
    ("KARL_NG_PORT", "ng_protocol.udp_port", "UDP port of the NG control protocol", None),
    ("KARL_RTP_MIN_PORT", "sessions.min_port", "lowest UDP port for media (even)", None),
    ("KARL_RTP_MAX_PORT", "sessions.max_port", "highest UDP port for media", None),
    ("KARL_MEDIA_IP", "media.ip", "address media sockets bind to; auto = the host's primary address", "auto"),
    ("KARL_PUBLIC_IP", "media.public_ip", "address written into SDP (the public one behind NAT)", "media.ip"),
    ("KARL_MAX_SESSIONS", "sessions.max_sessions", "concurrent calls before new offers are refused", None),
    ("KARL_MAX_MEDIA", "sessions.max_media", "media (m= lines) one SDP may carry", None),
    ("KARL_TIMEOUT", "timers.timeout", "seconds without media before a call is ended", None),
    ("KARL_SILENT_TIMEOUT", "timers.silent_timeout", "the same for muted/on-hold media", None),
    ("KARL_FINAL_TIMEOUT", "timers.final_timeout", "maximum call duration in seconds; 0 = no limit", None),
    ("KARL_OFFER_TIMEOUT", "timers.offer_timeout", "seconds a call may wait for its answer", None),
    ("KARL_DELETE_DELAY", "timers.delete_delay", "seconds a deleted call is kept for late messages", None),
    ("KARL_API_ADDRESS", "api.address", "address the REST API listens on (loopback unless you set it)", None),
    ("KARL_API_PORT", "api.port", "TCP port of the REST API", None),
    ("KARL_HEALTH_PORT", "health.port", "TCP port of the health probes", None),
    ("KARL_METRICS_PORT", "metrics.port", "TCP port of Prometheus /metrics", None),
    ("KARL_JITTER_BUFFER_ENABLED", "jitter_buffer.enabled", "jitter buffer on every RTP stream", None),
    ("KARL_JITTER_BUFFER_MIN_DELAY", "jitter_buffer.min_delay", "jitter buffer delay (ms)", None),
    ("KARL_JITTER_BUFFER_MAX_DELAY", "jitter_buffer.max_delay", "largest adaptive delay (ms)", None),
    ("KARL_JITTER_BUFFER_ADAPTIVE", "jitter_buffer.adaptive_mode", "adapt the delay to jitter", None),
    ("KARL_RECORDING_ENABLED", "recording.enabled", "allow call recording (not implemented yet)", None),
    ("KARL_RECORDING_PATH", "recording.base_path", "directory for recordings (not implemented yet)", None),
    ("KARL_MYSQL_DSN", "database.mysql_dsn", "CDR database: mysql://user:pw@host:port/db", "empty (off)"),
    ("KARL_REDIS_ENABLED", "database.redis_enabled", "join a fleet: call state and lease in Redis", None),
    ("KARL_REDIS_ADDR", "database.redis_addr", "Redis address, host:port or redis:// URL", "empty"),
    ("KARL_REDIS_PASSWORD", "database.redis_password", "Redis password (AUTH)", "empty"),
    ("KARL_REDIS_SENTINELS", "database.redis_sentinels", "Redis Sentinels as host:port,host:port", "empty"),
    ("KARL_REDIS_SENTINEL_MASTER", "database.redis_sentinel_master", "master name the Sentinels watch", None),
    (
        "KARL_REDIS_PREFIX",
        "database.redis_prefix",
        "prefix of every Redis key (fleets sharing a Redis)",
        None,
    ),
    ("KARL_REDIS_LEASE_TTL", "database.redis_lease_ttl", "seconds a node's lease lives unrenewed", None),
    (
        "KARL_FAILOVER_RESTART_GRACE",
        "database.failover_restart_grace",
        "seconds a dead node's calls wait for it to restart before they move",
        None,
    ),
    (
        "KARL_FAILOVER_WEBHOOK_URL",
        "database.failover_webhook_url",
        "URL a node POSTs a JSON event to for each call it takes up after a failover",
        "empty (off)",
    ),
    ("KARL_LOG_LEVEL", "log.level", "debug, info, warning, error or critical", None),
    ("KARL_LOG_FORMAT", "log.format", "json (one object per line) or text", None),
    ("KARL_NODE_ID", "node.id", "name of this node in Redis, metrics and logs", "host name"),
    ("KARL_CLUSTER_ID", "node.cluster_id", "name of the fleet; gives the loop-protect SDP marker", "node.id"),
    ("KARL_SHUTDOWN_GRACE", "node.shutdown_grace", "seconds to let calls finish after SIGTERM", None),
    ("KARL_STATE_DIR", "state.dir", "directory keeping calls across restarts; empty = in memory", "empty"),
    (
        "KARL_DTLS_CERTIFICATE",
        "webrtc.dtls_certificate",
        "PEM certificate for DTLS-SRTP, the same on every node of a fleet",
        "made in `state.dir`",
    ),
    ("KARL_DTLS_PRIVATE_KEY", "webrtc.dtls_private_key", "its PEM private key", "in the certificate file"),
    ("KARL_CDR_ENABLED", "cdr.enabled", "write a call detail record for every finished call", None),
    ("KARL_CDR_PATH", "cdr.path", "JSON-lines file the CDRs are appended to", None),
    ("KARL_CDR_SPOOL_DIR", "cdr.spool_dir", "where CDRs wait while the database is down", None),
    (
        "KARL_API_KEYS",
        "security.api_keys",
        "API keys as role:key,role:key (roles read, operate, admin)",
        "empty",
    ),
    ("KARL_API_KEYS_FILE", "security.api_keys_file", "file with one role:key per line", "empty"),
    ("KARL_TLS_CERT", "security.tls_cert", "PEM certificate: HTTPS on the HTTP ports", "empty"),
    ("KARL_TLS_KEY", "security.tls_key", "PEM private key for KARL_TLS_CERT", "empty"),
    ("KARL_NG_ALLOW", "security.ng_allow", "comma-separated networks allowed to send NG", "empty (anyone)"),
    ("KARL_NG_RATE_LIMIT", "security.ng_rate_limit", "NG requests/s per source; 0 = unlimited", None),
    ("KARL_NG_BURST", "security.ng_burst", "NG burst per source", None),
    ("KARL_API_RATE_LIMIT", "security.api_rate_limit", "REST requests/s per source; 0 = unlimited", None),
    ("KARL_API_BURST", "security.api_burst", "REST burst per source", None),
    ("KARL_BLOCK_SECONDS", "security.block_seconds", "how long a flooding source stays blocked", None),
)


def split_field(path: str) -> tuple[str, str]:
    section, _, key = path.partition(".")
    return section, key


def _section_model(section: str) -> type[BaseModel]:
    annotation = KarlConfig.model_fields[section].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel), section
    return annotation


def env_kind(path: str) -> EnvKind:
    """How an environment variable for the setting at ``path`` is read."""
    section, key = split_field(path)
    annotation = _section_model(section).model_fields[key].annotation
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    return "str"


def _default_text(path: str) -> str:
    section, key = split_field(path)
    value = _section_model(section).model_fields[key].get_default(call_default_factory=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "empty" if value == "" else str(value)


def describe_env() -> list[EnvVar]:
    """Every environment variable Karl reads, in documentation order."""
    return [
        EnvVar(name, path, default if default is not None else _default_text(path or ""), help_)
        for name, path, help_, default in _TABLE
    ]


#: JSON path -> variable, for the variables that override a setting.
ENV_FOR_FIELD: Mapping[str, str] = {path: name for name, path, _, _ in _TABLE if path is not None}


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """``KARL_*`` names in ``environ`` that Karl does not read (typos, usually), sorted."""
    known = {name for name, _, _, _ in _TABLE}
    return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)


_INT = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_env_value(kind: EnvKind, raw: str) -> bool | int | str:
    """Convert an environment variable's text; raises ValueError with the operator-facing reason."""
    text = raw.strip()
    if kind == "int":
        if not _INT.fullmatch(text):
            raise ValueError(f"must be an integer, got {show(raw)}")
        try:
            return int(text)
        except ValueError:  # beyond Python's digit limit for int(); far outside every range anyway
            raise ValueError(f"is far too large, got {show(raw)}") from None
    if kind == "bool":
        word = text.lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"must be a boolean (true/false, yes/no, on/off, 1/0), got {show(raw)}")
    return text
