"""``KarlConfig``: the whole configuration, and the rules that span sections."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from karl_core.config.errors import rule_error
from karl_core.config.sections import (
    ApiSection,
    CdrSection,
    DatabaseSection,
    FecSection,
    HealthSection,
    JitterBufferSection,
    LogSection,
    MediaSection,
    MetricsSection,
    NgProtocolSection,
    NodeSection,
    RecordingSection,
    SecuritySection,
    SessionsSection,
    StateSection,
    TimersSection,
    WebrtcSection,
)
from karl_core.config.values import addresses_overlap


class KarlConfig(BaseModel):
    """Karl's configuration (frozen). Build it with ``load_config()``; ``KarlConfig()`` is all defaults."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    ng_protocol: NgProtocolSection = Field(default_factory=NgProtocolSection)
    sessions: SessionsSection = Field(default_factory=SessionsSection)
    media: MediaSection = Field(default_factory=MediaSection)
    timers: TimersSection = Field(default_factory=TimersSection)
    api: ApiSection = Field(default_factory=ApiSection)
    health: HealthSection = Field(default_factory=HealthSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    log: LogSection = Field(default_factory=LogSection)
    node: NodeSection = Field(default_factory=NodeSection)
    jitter_buffer: JitterBufferSection = Field(default_factory=JitterBufferSection)
    fec: FecSection = Field(default_factory=FecSection)
    recording: RecordingSection = Field(default_factory=RecordingSection)
    webrtc: WebrtcSection = Field(default_factory=WebrtcSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    cdr: CdrSection = Field(default_factory=CdrSection)
    security: SecuritySection = Field(default_factory=SecuritySection)
    state: StateSection = Field(default_factory=StateSection)

    @model_validator(mode="after")
    def _ports_do_not_collide(self, info: ValidationInfo) -> KarlConfig:
        # The NG router and the failover controller (context roles "router", "controller") have no
        # media ports and no REST API of their own.
        router = isinstance(info.context, dict) and info.context.get("role") in ("router", "controller")
        ng, sessions = self.ng_protocol, self.sessions
        media_ip = self.media.ip
        shares_address = media_ip is None or addresses_overlap(ng.address, media_ip)
        in_range = sessions.min_port <= ng.udp_port <= sessions.max_port
        if not router and ng.enabled and shares_address and in_range:
            # Blame what the operator changed: the NG port, or else the range bound they set.
            range_keys = [key for key in ("min_port", "max_port") if key in sessions.model_fields_set]
            if "udp_port" in ng.model_fields_set or not range_keys:
                raise rule_error(
                    f"{ng.udp_port} lies inside the media port range "
                    f"sessions.min_port..sessions.max_port ({sessions.min_port}-{sessions.max_port})",
                    "ng_protocol.udp_port",
                )
            raise rule_error(
                f"the media port range {sessions.min_port}-{sessions.max_port} includes "
                f"ng_protocol.udp_port ({ng.udp_port})",
                f"sessions.{range_keys[0]}",
            )
        servers: list[tuple[ApiSection | HealthSection | MetricsSection, str]] = [
            (self.health, "health.port"),
            (self.metrics, "metrics.port"),
        ]
        if self.api.enabled and not router:
            servers.insert(0, (self.api, "api.port"))
        for i, (server, name) in enumerate(servers):
            for other, other_name in servers[:i]:
                same_socket = server.port == other.port and addresses_overlap(server.address, other.address)
                if server.port and same_socket:
                    if "port" in other.model_fields_set and "port" not in server.model_fields_set:
                        name, other_name = other_name, name
                    raise rule_error(f"{server.port} is already used by {other_name}", name)
        return self

    def unimplemented_sections(self) -> list[str]:
        """Settings the operator asked for that Karl accepts but does not implement yet.

        A feature is listed when its section was set in the file or environment and the feature
        ends up switched on; legacy keys are listed whenever they were set. Meant for a start-up
        warning, so that nobody believes e.g. recording works when it does not.
        """
        return [name for name, asked in _UNIMPLEMENTED if asked(self)]


def _enabled_by_user(section: str) -> Callable[[KarlConfig], bool]:
    def asked(cfg: KarlConfig) -> bool:
        return section in cfg.model_fields_set and bool(getattr(cfg, section).enabled)

    return asked


def _set_by_user(section: str, key: str) -> Callable[[KarlConfig], bool]:
    def asked(cfg: KarlConfig) -> bool:
        return section in cfg.model_fields_set and key in getattr(cfg, section).model_fields_set

    return asked


# Remove an entry here when the feature lands.
_UNIMPLEMENTED: tuple[tuple[str, Callable[[KarlConfig], bool]], ...] = (
    ("ng_protocol.timeout", _set_by_user("ng_protocol", "timeout")),
    ("sessions.session_ttl", _set_by_user("sessions", "session_ttl")),
    ("fec", _enabled_by_user("fec")),
    ("recording", _enabled_by_user("recording")),
    ("webrtc.stun_servers", _set_by_user("webrtc", "stun_servers")),
)
