"""Karl's configuration: a JSON file (``KARL_CONFIG_PATH``) overridden by ``KARL_*`` environment variables.

Use ``load_config()`` at start-up; it returns a frozen ``KarlConfig`` or raises ``ConfigError`` whose
message names every invalid setting. ``describe_env()`` lists the environment variables (the
operator's reference is docs/configuration.md).
"""

from karl_core.config.env import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    EnvVar,
    describe_env,
    unknown_env_vars,
)
from karl_core.config.errors import ConfigError
from karl_core.config.loader import build_config, load_config, resolve_config_path
from karl_core.config.model import KarlConfig
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

__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "ApiSection",
    "CdrSection",
    "ConfigError",
    "DatabaseSection",
    "EnvVar",
    "FecSection",
    "HealthSection",
    "JitterBufferSection",
    "KarlConfig",
    "LogSection",
    "MediaSection",
    "MetricsSection",
    "NgProtocolSection",
    "NodeSection",
    "RecordingSection",
    "SecuritySection",
    "SessionsSection",
    "StateSection",
    "TimersSection",
    "WebrtcSection",
    "build_config",
    "describe_env",
    "load_config",
    "resolve_config_path",
    "unknown_env_vars",
]
