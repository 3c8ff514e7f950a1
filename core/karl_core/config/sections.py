"""One pydantic model per section of the JSON configuration file.

All sections are frozen, reject unknown keys and validate strictly (a JSON string is not an integer);
environment variables are converted to typed values before they reach these models.
"""

from __future__ import annotations

import hashlib
import re
import socket
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from karl_core.config.errors import rule_error, show
from karl_core.config.values import (
    ListenPort,
    Port,
    PositiveSeconds,
    Seconds,
    ip_literal,
    is_wildcard,
    lower_word,
)

__all__ = [
    "ApiSection",
    "CdrSection",
    "DatabaseSection",
    "FecSection",
    "HealthSection",
    "JitterBufferSection",
    "LogSection",
    "MediaSection",
    "MetricsSection",
    "NgProtocolSection",
    "NodeSection",
    "RecordingSection",
    "SecuritySection",
    "SessionsSection",
    "TimersSection",
    "WebrtcSection",
]

Milliseconds = Annotated[int, Field(ge=0)]


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class NgProtocolSection(Section):
    """The NG control socket Kamailio/OpenSIPS talk to."""

    enabled: bool = True
    address: str = "0.0.0.0"
    udp_port: ListenPort = 22222
    #: Kept from the original configuration; Karl does not use it yet.
    timeout: PositiveSeconds = 30

    _address = field_validator("address")(ip_literal)


class SessionsSection(Section):
    """Call capacity and the UDP port range media sockets are taken from."""

    #: Calls at once before new offers are refused; 0 refuses every new call, -1 means no limit.
    max_sessions: int = Field(default=10000, ge=-1)
    #: Media (``m=`` lines) one SDP may carry; an offer or answer with more is refused with a clear
    #: error and changes nothing (each medium holds up to four ports until the call ends).
    max_media: int = Field(default=64, ge=1, le=1024)
    #: Kept from the original configuration; Karl does not use it yet (see ``timers``).
    session_ttl: Seconds = 3600
    min_port: Port = 30000
    max_port: Port = 40000

    @model_validator(mode="after")
    def _port_range(self) -> SessionsSection:
        if self.min_port % 2:
            raise rule_error(
                f"must be even (RTP takes the even port, RTCP the odd one after it), got {self.min_port}",
                "min_port",
            )
        if self.min_port >= self.max_port:
            # Blame the bound the operator actually set, so the message points at their change.
            if "max_port" in self.model_fields_set:
                raise rule_error(
                    f"must be greater than sessions.min_port ({self.min_port}), got {self.max_port}",
                    "max_port",
                )
            raise rule_error(
                f"must be lower than sessions.max_port ({self.max_port}), got {self.min_port}", "min_port"
            )
        return self


class MediaSection(Section):
    """Where media sockets bind and which address goes into the SDP."""

    #: Address media sockets bind to; None ("auto") = the host's primary address, resolved at start-up.
    ip: str | None = None
    #: Address written into SDP; None = the media address.
    public_ip: str | None = None

    @field_validator("ip", mode="before")
    @classmethod
    def _auto_ip(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value

    @field_validator("public_ip", mode="before")
    @classmethod
    def _empty_public_ip(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("ip", "public_ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return None if value is None else ip_literal(value)

    @model_validator(mode="after")
    def _advertisable(self) -> MediaSection:
        if self.public_ip is not None and is_wildcard(self.public_ip):
            raise rule_error(
                f"must be an address peers can send media to, not the wildcard {show(self.public_ip)}",
                "public_ip",
            )
        if self.ip is not None and is_wildcard(self.ip) and self.public_ip is None:
            raise rule_error(
                f"{show(self.ip)} binds every local address and cannot be written into SDP; "
                "also set media.public_ip (KARL_PUBLIC_IP) to the address peers should use",
                "ip",
            )
        return self

    def advertised_ip(self, bind_ip: str) -> str:
        """The address for SDP, given the address the media sockets were actually bound to."""
        return self.public_ip if self.public_ip is not None else bind_ip


class TimersSection(Section):
    """Call lifetime timers, with rtpengine's meanings and defaults (seconds)."""

    #: No media received on any stream of a call for this long ends the call.
    timeout: PositiveSeconds = 60
    #: Like ``timeout`` for muted/inactive (hold) streams.
    silent_timeout: PositiveSeconds = 3600
    #: Maximum call lifetime since creation; 0 = no limit.
    final_timeout: Seconds = 0
    #: A call that had an offer but never an answer ends after this long.
    offer_timeout: PositiveSeconds = 3600
    #: A deleted call stays for this long (late answers/deletes still work); 0 = remove at once.
    delete_delay: Seconds = 30


class ApiSection(Section):
    """The REST API (``/api/v1/...``)."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: ListenPort = 8080
    #: Accepted, not implemented yet: the API has no authentication.
    auth_enabled: bool = False

    @model_validator(mode="before")
    @classmethod
    def _address_with_port(cls, data: Any) -> Any:
        """Accept the original form ``"host:port"`` / ``":8080"``; an explicit ``port`` wins."""
        if not isinstance(data, dict) or not isinstance(data.get("address"), str):
            return data
        host, port = _split_host_port(data["address"])
        result = dict(data, address=host)
        if port is not None and "port" not in data:
            result["port"] = port
        return result

    _address = field_validator("address")(ip_literal)


def _split_host_port(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets); an empty host means every address."""
    text = text.strip()
    host, sep, port_text = text, "", ""
    if text.startswith("[") and "]" in text:
        host, _, rest = text[1:].partition("]")
        sep, port_text = rest[:1], rest[1:]
        if rest and sep != ":":
            raise rule_error(f"must be an IP address, optionally with ':port', got {show(text)}", "address")
    elif text.count(":") == 1:
        host, sep, port_text = text.partition(":")
    if not sep:
        return host or "0.0.0.0", None
    if not port_text.isascii() or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise rule_error(f"has an invalid port after ':', got {show(text)}", "address")
    return host or "0.0.0.0", int(port_text)


class HealthSection(Section):
    """Health probes: ``/health``, ``/live``, ``/ready``, ``/startup``."""

    address: str = "0.0.0.0"
    port: ListenPort = 8086

    _address = field_validator("address")(ip_literal)


class MetricsSection(Section):
    """Prometheus ``/metrics``."""

    address: str = "0.0.0.0"
    port: ListenPort = 9091

    _address = field_validator("address")(ip_literal)


class JitterBufferSection(Section):
    """A jitter buffer on every RTP stream of the node: media leaves in order and evenly paced, delayed by
    `min_delay` (adaptive: 3 times the measured jitter, between `min_delay` and `max_delay`)."""

    enabled: bool = False
    min_delay: Milliseconds = 20
    max_delay: Milliseconds = 200
    adaptive_mode: bool = True

    @model_validator(mode="after")
    def _delays(self) -> JitterBufferSection:
        if self.min_delay > self.max_delay:
            raise rule_error(
                f"must not exceed jitter_buffer.max_delay ({self.max_delay}), got {self.min_delay}",
                "min_delay",
            )
        return self


class FecSection(Section):
    """Forward error correction. Accepted, not implemented yet."""

    enabled: bool = False
    #: Share of redundant data, 0.0 to 1.0.
    redundancy: float = Field(default=0.3, ge=0.0, le=1.0)
    adaptive_mode: bool = True


class RecordingSection(Section):
    """Call recording. Accepted, not implemented yet."""

    enabled: bool = True
    base_path: str = Field(default="/var/lib/karl/recordings", min_length=1)
    format: Literal["wav", "pcm"] = "wav"
    mode: Literal["mixed", "stereo", "separate"] = "stereo"
    #: 0 = keep recordings forever.
    retention_days: int = Field(default=30, ge=0)

    _words = field_validator("format", "mode", mode="before")(lower_word)


class WebrtcSection(Section):
    """ICE and DTLS-SRTP on the legs that use them (always on, as in rtpengine: `enabled` is accepted
    and changes nothing), and the certificate Karl proves itself with in DTLS handshakes."""

    enabled: bool = False
    #: PEM certificate for DTLS, the same file on every node of a fleet (a Secret); empty: the one
    #: Karl makes in `state.dir` (kept), else one per process.
    dtls_certificate: str = ""
    #: Its PEM private key; empty: in the certificate's file.
    dtls_private_key: str = ""
    # A JSON array arrives as a list; stored as a tuple so that the frozen config stays immutable.
    stun_servers: tuple[str, ...] = Field(default=(), strict=False)

    @field_validator("stun_servers")
    @classmethod
    def _stun_uris(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for uri in value:
            if not uri.startswith(("stun:", "stuns:")):
                raise rule_error(f"entries must be 'stun:host[:port]' URIs, got {show(uri)}")
        return value


class DatabaseSection(Section):
    """CDR database and the fleet's shared state in Redis (docs/clustering.md)."""

    #: MySQL/MariaDB DSN for CDRs; empty = off.
    mysql_dsn: str = ""
    #: Keep call state, ownership and this node's lease in Redis: the node joins a fleet.
    redis_enabled: bool = False
    #: ``host:port`` or a ``redis://``, ``rediss://`` or ``unix://`` URL.
    redis_addr: str = ""
    #: Password (Redis AUTH); a password in ``redis_addr`` works too. Never logged.
    redis_password: str = ""
    #: Comma-separated ``host:port`` of Redis Sentinels; then ``redis_addr`` is not needed.
    redis_sentinels: str = ""
    #: Name of the master the Sentinels watch.
    redis_sentinel_master: str = "karl"
    #: Prefix of every key: several fleets can share one Redis.
    redis_prefix: str = "karl"
    #: Seconds a node's lease lives without renewal (renewed every third of it).
    redis_lease_ttl: PositiveSeconds = 3
    #: Seconds the failover controller waits, after a node's lease is gone, for the node to restart
    #: on its host and take its calls back itself, before it moves them to other nodes.
    failover_restart_grace: PositiveSeconds = 2
    #: URL a node POSTs a JSON event to for every call it takes up after a failover (empty = off).
    failover_webhook_url: str = ""

    @field_validator("failover_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise rule_error(f"must be an http:// or https:// URL, got {show(value)}")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: str) -> str:
        for entry in filter(None, (part.strip() for part in value.split(","))):
            host, sep, port = entry.rpartition(":")
            if not (sep and host and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
                raise rule_error(f"entries must be 'host:port', got {show(entry)}")
        return value.strip()

    @field_validator("redis_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise rule_error("must be 1 to 64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("redis_addr")
    @classmethod
    def _redis_addr(cls, value: str) -> str:
        value = value.strip()
        if not value or value.startswith(("redis://", "rediss://", "unix://")):
            return value
        host, sep, port = value.rpartition(":")
        if not (sep and host and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            # The value is not shown: a URL-like address may carry a password.
            raise rule_error("must be 'host:port' or a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _redis_needs_address(self) -> DatabaseSection:
        if self.redis_enabled and not (self.redis_addr or self.redis_sentinels):
            raise rule_error(
                "must be set (KARL_REDIS_ADDR), e.g. '127.0.0.1:6379', or KARL_REDIS_SENTINELS, when "
                "database.redis_enabled is true",
                "redis_addr",
            )
        return self


LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class LogSection(Section):
    """Logging to standard error."""

    level: LogLevel = "info"
    format: Literal["json", "text"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        value = lower_word(value)
        return "warning" if value == "warn" else value

    _format = field_validator("format", mode="before")(lower_word)


def _hostname() -> str:
    return socket.gethostname() or "karl"


class NodeSection(Section):
    """Identity and lifecycle of this process."""

    #: Names the node in Redis, metrics and logs; defaults to the host name (the pod name on Kubernetes).
    id: str = Field(default_factory=_hostname)
    #: Seconds to keep relaying media after SIGTERM while calls finish or move.
    shutdown_grace: Seconds = 10
    #: Names the fleet this node belongs to; None = the node's own id. It gives the marker `loop-protect`
    #: writes into SDPs (`a=rtpengine:<12 hex digits>`): every node of one fleet writes the same one, so
    #: an SDP that already went through any of them is recognised, also for a call restored elsewhere.
    cluster_id: str | None = None

    @field_validator("cluster_id")
    @classmethod
    def _cluster_id(cls, value: str | None) -> str | None:
        if value is not None and not _NODE_ID.fullmatch(value):
            raise rule_error(
                "must be 1 to 253 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                f"got {show(value)}"
            )
        return value

    def loop_marker(self) -> str:
        """The `loop-protect` marker of this node's fleet: 12 hex digits, like rtpengine's."""
        return hashlib.sha256((self.cluster_id or self.id).encode()).hexdigest()[:12]

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        # The id becomes part of Redis keys and metric labels: keep it to host-name characters.
        if not _NODE_ID.fullmatch(value):
            raise rule_error(
                "must be 1 to 253 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                f"got {show(value)}"
            )
        return value


_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


class CdrSection(Section):
    """Call detail records: one JSON line per finished call, and MySQL/MariaDB when a DSN is set."""

    enabled: bool = True
    #: The JSON-lines file CDRs are appended to.
    path: str = Field(default="/var/lib/karl/cdr/cdr.jsonl", min_length=1)
    #: Where records wait while the database is unreachable (kept across restarts).
    spool_dir: str = Field(default="/var/lib/karl/cdr/spool", min_length=1)


class StateSection(Section):
    """Where the node keeps its calls' state between signalling changes."""

    #: A directory for the node's journal of its calls (a line per change), so that a restarted node
    #: (same node id, same host) takes its calls back on the same ports and media resumes without
    #: signalling. Empty = in memory only: a restart ends every call (the embedded default).
    dir: str = ""


class SecuritySection(Section):
    """Who may talk to Karl, and how much."""

    #: API keys as ``role:key`` pairs separated by commas (roles: read, operate, admin). Empty = no
    #: keys: the REST API is then open, which is only sensible on a private address.
    api_keys: str = ""
    #: A file with one ``role:key`` per line (``#`` comments allowed); added to ``api_keys``.
    api_keys_file: str = ""
    #: PEM certificate and key: when both are set, the HTTP ports speak TLS.
    tls_cert: str = ""
    tls_key: str = ""
    #: Addresses/networks allowed to send NG requests, comma-separated CIDRs; empty = anyone.
    ng_allow: str = ""
    #: Per-source NG requests per second (token bucket rate) and burst; 0 = unlimited.
    ng_rate_limit: int = Field(default=5000, ge=0)
    ng_burst: int = Field(default=10000, ge=1)
    #: Per-source REST API requests per second and burst; 0 = unlimited.
    api_rate_limit: int = Field(default=50, ge=0)
    api_burst: int = Field(default=100, ge=1)
    #: How long a source that keeps exceeding its limit is blocked, in seconds.
    block_seconds: int = Field(default=60, ge=1)

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            role, sep, key = item.partition(":")
            if not sep or role not in ("read", "operate", "admin") or not key:
                # never echo the key itself
                raise rule_error("entries must be 'role:key' with role read, operate or admin")
        return value

    @field_validator("ng_allow")
    @classmethod
    def _networks(cls, value: str) -> str:
        import ipaddress

        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise rule_error(f"entries must be addresses or CIDR networks, got {show(item)}") from None
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> SecuritySection:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise rule_error("tls_cert and tls_key must be set together", "tls_cert")
        return self
