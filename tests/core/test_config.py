"""Configuration: defaults, the JSON file, KARL_* variables, and the messages an operator sees."""

from __future__ import annotations

import json
import pickle
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from karl_core.config import (
    CONFIG_PATH_ENV,
    ConfigError,
    KarlConfig,
    build_config,
    describe_env,
    load_config,
    resolve_config_path,
    unknown_env_vars,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"

# What docs/reference/karl-interfaces.md promised users.
PROMISED_ENV = {
    "KARL_CONFIG_PATH": None,
    "KARL_NG_PORT": "ng_protocol.udp_port",
    "KARL_RTP_MIN_PORT": "sessions.min_port",
    "KARL_RTP_MAX_PORT": "sessions.max_port",
    "KARL_MEDIA_IP": "media.ip",
    "KARL_PUBLIC_IP": "media.public_ip",
    "KARL_MAX_SESSIONS": "sessions.max_sessions",
    "KARL_API_PORT": "api.port",
    "KARL_HEALTH_PORT": "health.port",
    "KARL_METRICS_PORT": "metrics.port",
    "KARL_RECORDING_PATH": "recording.base_path",
    "KARL_RECORDING_ENABLED": "recording.enabled",
    "KARL_JITTER_BUFFER_ENABLED": "jitter_buffer.enabled",
    "KARL_JITTER_BUFFER_MIN_DELAY": "jitter_buffer.min_delay",
    "KARL_JITTER_BUFFER_MAX_DELAY": "jitter_buffer.max_delay",
    "KARL_JITTER_BUFFER_ADAPTIVE": "jitter_buffer.adaptive_mode",
    "KARL_MYSQL_DSN": "database.mysql_dsn",
    "KARL_REDIS_ENABLED": "database.redis_enabled",
    "KARL_REDIS_ADDR": "database.redis_addr",
    "KARL_REDIS_PASSWORD": "database.redis_password",
    "KARL_REDIS_SENTINELS": "database.redis_sentinels",
    "KARL_REDIS_SENTINEL_MASTER": "database.redis_sentinel_master",
    "KARL_REDIS_PREFIX": "database.redis_prefix",
    "KARL_REDIS_LEASE_TTL": "database.redis_lease_ttl",
    "KARL_FAILOVER_RESTART_GRACE": "database.failover_restart_grace",
    "KARL_FAILOVER_WEBHOOK_URL": "database.failover_webhook_url",
    "KARL_LOG_LEVEL": "log.level",
}
PROMISED_SECTIONS = {
    "ng_protocol": {"enabled", "udp_port", "timeout"},
    "sessions": {"max_sessions", "session_ttl", "min_port", "max_port"},
    "jitter_buffer": {"enabled", "min_delay", "max_delay", "adaptive_mode"},
    "fec": {"enabled", "redundancy", "adaptive_mode"},
    "recording": {"enabled", "base_path", "format", "mode", "retention_days"},
    "api": {"enabled", "address", "auth_enabled"},
    "webrtc": {"enabled", "stun_servers"},
    "database": {"mysql_dsn", "redis_enabled", "redis_addr"},
}


def write(tmp_path: Path, content: Any, name: str = "config.json") -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def load(tmp_path: Path, file: Any = None, **env: str) -> KarlConfig:
    """Load with exactly ``env`` as the environment and ``file`` (if any) as the config file."""
    path = write(tmp_path, file) if file is not None else str(tmp_path / "absent.json")
    return load_config(environ=env, path=path)


def problem(tmp_path: Path, file: Any = None, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, file, **env)
    return str(info.value)


def get(cfg: KarlConfig, path: str) -> Any:
    section, key = path.split(".")
    return getattr(getattr(cfg, section), key)


def field_paths() -> list[str]:
    return [
        f"{section}.{key}"
        for section, info in KarlConfig.model_fields.items()
        for key in info.annotation.model_fields  # type: ignore[union-attr]
    ]


# ---------------------------------------------------------------------------------------------- defaults


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    ng = cfg.ng_protocol
    assert (ng.enabled, ng.address, ng.udp_port) == (True, "0.0.0.0", 22222)
    assert (cfg.sessions.min_port, cfg.sessions.max_port, cfg.sessions.max_sessions) == (30000, 40000, 10000)
    assert cfg.media.ip is None and cfg.media.public_ip is None
    timers = cfg.timers
    assert (timers.timeout, timers.silent_timeout, timers.final_timeout) == (60, 3600, 0)
    assert (timers.offer_timeout, timers.delete_delay) == (3600, 30)
    api = cfg.api
    assert (api.enabled, api.address, api.port, api.auth_enabled) == (True, "127.0.0.1", 8080, False)
    assert (cfg.health.port, cfg.metrics.port) == (8086, 9091)
    assert (cfg.recording.enabled, cfg.recording.base_path) == (True, "/var/lib/karl/recordings")
    assert (cfg.database.mysql_dsn, cfg.database.redis_enabled, cfg.database.redis_addr) == ("", False, "")
    assert (cfg.log.level, cfg.log.format) == ("info", "json")
    assert (cfg.node.id, cfg.node.shutdown_grace) == (socket.gethostname(), 10)
    assert not cfg.jitter_buffer.enabled and not cfg.fec.enabled and not cfg.webrtc.enabled
    assert cfg.unimplemented_sections() == []
    assert cfg == KarlConfig()


def test_default_file_is_config_json_below_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", {"sessions": {"max_sessions": 5}})
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path({}) == "config/config.json"
    assert load_config(environ={}).sessions.max_sessions == 5


def test_KARL_CONFIG_PATH_names_the_file_and_the_path_argument_wins(tmp_path: Path) -> None:
    by_env = write(tmp_path, {"sessions": {"max_sessions": 1}}, "env.json")
    by_arg = write(tmp_path, {"sessions": {"max_sessions": 2}}, "arg.json")
    assert load_config(environ={CONFIG_PATH_ENV: by_env}).sessions.max_sessions == 1
    assert load_config(environ={CONFIG_PATH_ENV: by_env}, path=by_arg).sessions.max_sessions == 2


def test_environ_defaults_to_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_PATH_ENV, str(tmp_path / "absent.json"))
    monkeypatch.setenv("KARL_MAX_SESSIONS", "7")
    assert load_config().sessions.max_sessions == 7


def test_an_absent_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(environ={CONFIG_PATH_ENV: str(tmp_path / "nope" / "config.json")}) == KarlConfig()


# ------------------------------------------------------------------------------------ file and environment


FULL_FILE: dict[str, dict[str, Any]] = {
    "ng_protocol": {"enabled": True, "address": "127.0.0.1", "udp_port": 2223, "timeout": 5},
    "sessions": {"max_sessions": 20, "max_media": 8, "session_ttl": 60, "min_port": 20000, "max_port": 20099},
    "media": {"ip": "127.0.0.2", "public_ip": "192.0.2.1"},
    "timers": {
        "timeout": 10,
        "silent_timeout": 20,
        "final_timeout": 30,
        "offer_timeout": 40,
        "delete_delay": 0,
    },
    "api": {"enabled": False, "address": "::1", "port": 18080, "auth_enabled": False},
    "health": {"address": "127.0.0.1", "port": 18086},
    "metrics": {"address": "127.0.0.1", "port": 19091},
    "log": {"level": "DEBUG", "format": "text"},
    "node": {"id": "node-a.1", "shutdown_grace": 0, "cluster_id": "fleet-1"},
    "jitter_buffer": {"enabled": False, "min_delay": 10, "max_delay": 10, "adaptive_mode": False},
    "fec": {"enabled": False, "redundancy": 1, "adaptive_mode": False},
    "recording": {
        "enabled": False,
        "base_path": "/srv/rec",
        "format": "pcm",
        "mode": "mixed",
        "retention_days": 0,
    },
    "webrtc": {
        "enabled": False,
        "stun_servers": ["stun:stun.example.org:3478"],
        "dtls_certificate": "/etc/karl/dtls/tls.crt",
        "dtls_private_key": "/etc/karl/dtls/tls.key",
    },
    "database": {
        "mysql_dsn": "",
        "redis_enabled": False,
        "redis_addr": "redis://127.0.0.1:6379/0",
        "redis_password": "s3cret",
        "redis_sentinels": "10.0.0.1:26379,10.0.0.2:26379",
        "redis_sentinel_master": "karl-main",
        "redis_prefix": "fleet-a",
        "redis_lease_ttl": 5,
        "failover_restart_grace": 4,
        "failover_webhook_url": "https://b2bua.example/hook",
    },
    "cdr": {"enabled": False, "path": "/srv/cdr.jsonl", "spool_dir": "/srv/cdr-spool"},
    "security": {
        "api_keys": "read:r1,admin:a1",
        "api_keys_file": "/etc/karl/keys",
        "tls_cert": "/etc/karl/cert.pem",
        "tls_key": "/etc/karl/key.pem",
        "ng_allow": "127.0.0.0/8,::1",
        "ng_rate_limit": 10,
        "ng_burst": 20,
        "api_rate_limit": 0,
        "api_burst": 5,
        "block_seconds": 30,
    },
    "state": {"dir": "/var/lib/karl/calls"},
}


def test_every_file_value_is_used(tmp_path: Path) -> None:
    cfg = load(tmp_path, FULL_FILE)
    for section, values in FULL_FILE.items():
        for key, value in values.items():
            expected = value.lower() if isinstance(value, str) and key in ("level", "format") else value
            got = get(cfg, f"{section}.{key}")
            assert (list(got) if isinstance(got, tuple) else got) == expected, f"{section}.{key}"
    assert set(FULL_FILE) == set(KarlConfig.model_fields)
    assert {f"{s}.{k}" for s, v in FULL_FILE.items() for k in v} == set(field_paths())
    assert cfg.fec.redundancy == 1.0 and isinstance(cfg.fec.redundancy, float)


def test_environment_wins_over_the_file_setting_by_setting(tmp_path: Path) -> None:
    file = {"sessions": {"min_port": 20000, "max_port": 20999, "max_sessions": 3}}
    cfg = load(tmp_path, file, KARL_RTP_MIN_PORT="20500", KARL_LOG_LEVEL="error")
    assert (cfg.sessions.min_port, cfg.sessions.max_port, cfg.sessions.max_sessions) == (20500, 20999, 3)
    assert cfg.log.level == "error"


def test_an_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"media": {"public_ip": "192.0.2.9"}}, KARL_PUBLIC_IP="", KARL_NG_PORT="  ")
    assert cfg.media.public_ip == "192.0.2.9" and cfg.ng_protocol.udp_port == 22222


MIN_PORT = "KARL_RTP_MIN_PORT (sessions.min_port)"
MAX_PORT = "KARL_RTP_MAX_PORT (sessions.max_port)"

# One non-default value per variable: raw text -> expected value of its field.
ENV_SAMPLES: dict[str, tuple[str, Any]] = {
    "KARL_NG_ADDRESS": ("127.0.0.1", "127.0.0.1"),
    "KARL_NG_PORT": (" 2223 ", 2223),
    "KARL_RTP_MIN_PORT": ("31000", 31000),
    "KARL_RTP_MAX_PORT": ("+39001", 39001),
    "KARL_MEDIA_IP": ("127.0.0.3", "127.0.0.3"),
    "KARL_PUBLIC_IP": ("2001:db8::0001", "2001:db8::1"),
    "KARL_MAX_SESSIONS": ("-1", -1),
    "KARL_MAX_MEDIA": ("200", 200),
    "KARL_TIMEOUT": ("61", 61),
    "KARL_SILENT_TIMEOUT": ("62", 62),
    "KARL_FINAL_TIMEOUT": ("63", 63),
    "KARL_OFFER_TIMEOUT": ("64", 64),
    "KARL_DELETE_DELAY": ("0", 0),
    "KARL_API_ADDRESS": ("0.0.0.0", "0.0.0.0"),
    "KARL_API_PORT": ("18080", 18080),
    "KARL_HEALTH_PORT": ("18086", 18086),
    "KARL_METRICS_PORT": ("0", 0),
    "KARL_RECORDING_ENABLED": ("off", False),
    "KARL_JITTER_BUFFER_ENABLED": ("on", True),
    "KARL_JITTER_BUFFER_MIN_DELAY": ("40", 40),
    "KARL_JITTER_BUFFER_MAX_DELAY": ("400", 400),
    "KARL_JITTER_BUFFER_ADAPTIVE": ("false", False),
    "KARL_RECORDING_PATH": ("/srv/recordings", "/srv/recordings"),
    "KARL_MYSQL_DSN": ("karl:pw@tcp(127.0.0.1:3306)/karl", "karl:pw@tcp(127.0.0.1:3306)/karl"),
    "KARL_REDIS_ENABLED": ("Yes", True),
    "KARL_REDIS_ADDR": ("127.0.0.1:6379", "127.0.0.1:6379"),
    "KARL_REDIS_PASSWORD": ("pw", "pw"),
    "KARL_REDIS_SENTINELS": ("s1:26379,s2:26379", "s1:26379,s2:26379"),
    "KARL_REDIS_SENTINEL_MASTER": ("main", "main"),
    "KARL_REDIS_PREFIX": ("fleet-b", "fleet-b"),
    "KARL_REDIS_LEASE_TTL": ("4", 4),
    "KARL_FAILOVER_RESTART_GRACE": ("5", 5),
    "KARL_FAILOVER_WEBHOOK_URL": ("http://sbc.example:8080/karl", "http://sbc.example:8080/karl"),
    "KARL_LOG_LEVEL": ("WARN", "warning"),
    "KARL_LOG_FORMAT": ("Text", "text"),
    "KARL_NODE_ID": ("karl-medianode-0", "karl-medianode-0"),
    "KARL_CLUSTER_ID": ("eu-west", "eu-west"),
    "KARL_STATE_DIR": ("/var/lib/karl/calls", "/var/lib/karl/calls"),
    "KARL_DTLS_CERTIFICATE": ("/etc/karl/dtls/tls.crt", "/etc/karl/dtls/tls.crt"),
    "KARL_DTLS_PRIVATE_KEY": ("/etc/karl/dtls/tls.key", "/etc/karl/dtls/tls.key"),
    "KARL_SHUTDOWN_GRACE": ("25", 25),
    "KARL_CDR_ENABLED": ("false", False),
    "KARL_CDR_PATH": ("/srv/cdr.jsonl", "/srv/cdr.jsonl"),
    "KARL_CDR_SPOOL_DIR": ("/srv/spool", "/srv/spool"),
    "KARL_API_KEYS": ("operate:k1", "operate:k1"),
    "KARL_API_KEYS_FILE": ("/etc/karl/keys", "/etc/karl/keys"),
    "KARL_TLS_CERT": ("/etc/karl/cert.pem", "/etc/karl/cert.pem"),
    "KARL_TLS_KEY": ("/etc/karl/key.pem", "/etc/karl/key.pem"),
    "KARL_NG_ALLOW": ("10.0.0.0/8", "10.0.0.0/8"),
    "KARL_NG_RATE_LIMIT": ("0", 0),
    "KARL_NG_BURST": ("7", 7),
    "KARL_API_RATE_LIMIT": ("9", 9),
    "KARL_API_BURST": ("11", 11),
    "KARL_BLOCK_SECONDS": ("5", 5),
}
# Variables that are only valid together with another one.
ENV_COMPANIONS = {
    "KARL_REDIS_ENABLED": {"KARL_REDIS_ADDR": "127.0.0.1:6379"},
    "KARL_TLS_CERT": {"KARL_TLS_KEY": "/etc/karl/key.pem"},
    "KARL_TLS_KEY": {"KARL_TLS_CERT": "/etc/karl/cert.pem"},
}


def test_the_samples_cover_every_variable() -> None:
    assert set(ENV_SAMPLES) == {var.name for var in describe_env() if var.field}


@pytest.mark.parametrize("name", sorted(ENV_SAMPLES))
def test_every_variable_overrides_its_field(tmp_path: Path, name: str) -> None:
    (var,) = [var for var in describe_env() if var.name == name]
    assert var.field is not None
    raw, expected = ENV_SAMPLES[name]
    cfg = load(tmp_path, **{name: raw}, **ENV_COMPANIONS.get(name, {}))
    assert get(cfg, var.field) == expected
    assert get(cfg, var.field) != get(KarlConfig(), var.field)


@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", "On", " on "])
def test_true_spellings(tmp_path: Path, raw: str) -> None:
    cfg = load(tmp_path, KARL_REDIS_ENABLED=raw, KARL_REDIS_ADDR="h:1")
    assert cfg.database.redis_enabled


@pytest.mark.parametrize("raw", ["false", "False", "0", "no", "OFF"])
def test_false_spellings(tmp_path: Path, raw: str) -> None:
    assert not load(tmp_path, KARL_RECORDING_ENABLED=raw).recording.enabled


# ------------------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KARL_RTP_MIN_PORT": "abc"}, f"{MIN_PORT}: must be an integer, got 'abc'"),
        ({"KARL_RTP_MIN_PORT": "1.5"}, f"{MIN_PORT}: must be an integer, got '1.5'"),
        ({"KARL_NG_PORT": "0x10"}, "KARL_NG_PORT (ng_protocol.udp_port): must be an integer, got '0x10'"),
        ({"KARL_NG_PORT": "1_000"}, "KARL_NG_PORT (ng_protocol.udp_port): must be an integer, got '1_000'"),
        (
            {"KARL_REDIS_ENABLED": "maybe"},
            "KARL_REDIS_ENABLED (database.redis_enabled): "
            "must be a boolean (true/false, yes/no, on/off, 1/0), got 'maybe'",
        ),
        ({"KARL_RTP_MAX_PORT": "70000"}, f"{MAX_PORT}: must be at most 65535, got 70000"),
        (
            {"KARL_RTP_MIN_PORT": "45000"},
            f"{MIN_PORT}: must be lower than sessions.max_port (40000), got 45000",
        ),
        (
            {"KARL_RTP_MAX_PORT": "30000"},
            f"{MAX_PORT}: must be greater than sessions.min_port (30000), got 30000",
        ),
        (
            {"KARL_RTP_MIN_PORT": "30001"},
            f"{MIN_PORT}: must be even (RTP takes the even port, RTCP the odd one after it), got 30001",
        ),
        (
            {"KARL_NG_PORT": "35000"},
            "KARL_NG_PORT (ng_protocol.udp_port): 35000 lies inside the media port range "
            "sessions.min_port..sessions.max_port (30000-40000)",
        ),
        (
            {"KARL_RTP_MIN_PORT": "20000"},
            f"{MIN_PORT}: the media port range 20000-40000 includes ng_protocol.udp_port (22222)",
        ),
        (
            {"KARL_HEALTH_PORT": "9091"},
            "KARL_HEALTH_PORT (health.port): 9091 is already used by metrics.port",
        ),
        ({"KARL_METRICS_PORT": "8080"}, "KARL_METRICS_PORT (metrics.port): 8080 is already used by api.port"),
        (
            {"KARL_MEDIA_IP": "eth0"},
            "KARL_MEDIA_IP (media.ip): must be an IP address such as '192.0.2.10' or '::', got 'eth0'",
        ),
        (
            {"KARL_MEDIA_IP": "0.0.0.0"},
            "KARL_MEDIA_IP (media.ip): '0.0.0.0' binds every local address and cannot be written into SDP; "
            "also set media.public_ip (KARL_PUBLIC_IP) to the address peers should use",
        ),
        (
            {"KARL_LOG_LEVEL": "verbose"},
            "KARL_LOG_LEVEL (log.level): must be 'debug', 'info', 'warning', 'error' or 'critical', "
            "got 'verbose'",
        ),
        ({"KARL_TIMEOUT": "0"}, "KARL_TIMEOUT (timers.timeout): must be at least 1, got 0"),
        ({"KARL_DELETE_DELAY": "-5"}, "KARL_DELETE_DELAY (timers.delete_delay): must be at least 0, got -5"),
        (
            {"KARL_MAX_SESSIONS": "-2"},
            "KARL_MAX_SESSIONS (sessions.max_sessions): must be at least -1, got -2",
        ),
        (
            {"KARL_NODE_ID": "a b"},
            "KARL_NODE_ID (node.id): must be 1 to 253 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, got 'a b'",
        ),
        (
            {"KARL_REDIS_ENABLED": "1"},
            "database.redis_addr: must be set (KARL_REDIS_ADDR), e.g. '127.0.0.1:6379', "
            "or KARL_REDIS_SENTINELS, when database.redis_enabled is true",
        ),
        (
            {"KARL_REDIS_PREFIX": "a b"},
            "KARL_REDIS_PREFIX (database.redis_prefix): must be 1 to 64 letters, digits, '.', '_' or '-'",
        ),
        (
            {"KARL_REDIS_SENTINELS": "s1:26379,nope"},
            "KARL_REDIS_SENTINELS (database.redis_sentinels): entries must be 'host:port', got 'nope'",
        ),
        (
            {"KARL_REDIS_ADDR": "redis-host"},
            "KARL_REDIS_ADDR (database.redis_addr): "
            "must be 'host:port' or a redis://, rediss:// or unix:// URL",
        ),
        (
            {"KARL_SHUTDOWN_GRACE": "9" * 5000},
            "KARL_SHUTDOWN_GRACE (node.shutdown_grace): is far too large, got '",
        ),
    ],
)
def test_bad_environment_values_name_variable_and_field(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    got = problem(tmp_path, **env)
    assert got == message or (message.endswith("got '") and got.startswith(message))


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ({"sessions": {"min_port": "abc"}}, "sessions.min_port: must be an integer, got 'abc'"),
        ({"sessions": {"min_port": "30000"}}, "sessions.min_port: must be an integer, got '30000'"),
        ({"sessions": {"min_port": 30000.0}}, "sessions.min_port: must be an integer, got 30000.0"),
        ({"sessions": {"min_port": True}}, "sessions.min_port: must be an integer, got true"),
        ({"sessions": {"min_port": 0}}, "sessions.min_port: must be at least 1, got 0"),
        ({"recording": {"enabled": "yes"}}, "recording.enabled: must be true or false, got 'yes'"),
        ({"recording": {"enabled": 1}}, "recording.enabled: must be true or false, got 1"),
        ({"recording": {"format": "mp3"}}, "recording.format: must be 'wav' or 'pcm', got 'mp3'"),
        ({"recording": {"base_path": ""}}, "recording.base_path: must not be empty"),
        (
            {"sessions": {"min_port": 40000, "max_port": 30000}},
            "sessions.max_port: must be greater than sessions.min_port (40000), got 30000",
        ),
        ({"api": {"port": 80800}}, "api.port: must be at most 65535, got 80800"),
        ({"api": {"address": "1.2.3.4:x"}}, "api.address: has an invalid port after ':', got '1.2.3.4:x'"),
        (
            {"ng_protocol": {"address": "localhost"}},
            "ng_protocol.address: must be an IP address such as '192.0.2.10' or '::', got 'localhost'",
        ),
        ({"ng_protocol": {"udp_port": None}}, "ng_protocol.udp_port: must be an integer, got null"),
        (
            {"media": {"public_ip": "::"}},
            "media.public_ip: must be an address peers can send media to, not the wildcard '::'",
        ),
        ({"log": {"format": "xml"}}, "log.format: must be 'json' or 'text', got 'xml'"),
        ({"fec": {"redundancy": 1.5}}, "fec.redundancy: must be at most 1.0, got 1.5"),
        ({"fec": {"redundancy": "0.3"}}, "fec.redundancy: must be a number, got '0.3'"),
        ({"webrtc": {"stun_servers": "stun:a"}}, "webrtc.stun_servers: must be a JSON array, got 'stun:a'"),
        ({"webrtc": {"stun_servers": ["stun:a", 7]}}, "webrtc.stun_servers[1]: must be a string, got 7"),
        (
            {"webrtc": {"stun_servers": ["turn:a"]}},
            "webrtc.stun_servers: entries must be 'stun:host[:port]' URIs, got 'turn:a'",
        ),
        (
            {"jitter_buffer": {"min_delay": 300}},
            "jitter_buffer.min_delay: must not exceed jitter_buffer.max_delay (200), got 300",
        ),
        ({"sessions": []}, "sessions: must be a JSON object, got []"),
        ({"sessions": {"max_sesions": 5}}, "sessions.max_sesions: unknown key"),
        ({"session": {}}, "session: unknown key"),
        ({"api": {"enabled": False}, "metrics": {"port": 8080}}, None),
        ({"media": {"ip": "0.0.0.0", "public_ip": "192.0.2.1"}}, None),
        ({"ng_protocol": {"address": "127.0.0.1", "udp_port": 30000}, "media": {"ip": "127.0.0.2"}}, None),
        ({"health": {"address": "127.0.0.1"}, "metrics": {"address": "127.0.0.2", "port": 8086}}, None),
    ],
)
def test_bad_file_values_name_the_field(tmp_path: Path, file: dict[str, Any], message: str | None) -> None:
    if message is None:
        load(tmp_path, file)  # the counterpart that is fine
    else:
        assert problem(tmp_path, file) == message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    file = {"sessions": {"max_sesions": 5, "min_port": "x"}, "bogus": 1, "log": {"level": "loud"}}
    with pytest.raises(ConfigError) as info:
        load(tmp_path, file, KARL_NG_PORT="high", KARL_MAX_SESSIONS="-9")
    assert set(info.value.problems) == {
        "KARL_NG_PORT (ng_protocol.udp_port): must be an integer, got 'high'",
        "KARL_MAX_SESSIONS (sessions.max_sessions): must be at least -1, got -9",
        "sessions.min_port: must be an integer, got 'x'",
        "sessions.max_sesions: unknown key",
        "log.level: must be 'debug', 'info', 'warning', 'error' or 'critical', got 'loud'",
        "bogus: unknown key",
    }
    assert str(info.value) == "\n".join(info.value.problems)
    assert info.value.path == str(tmp_path / "config.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"sessions": {"min_port": 30000,}}', "invalid JSON at line 1 column 33: Expecting property name"),
        ("", "invalid JSON at line 1 column 1: Expecting value"),
        ("[1, 2]", "must contain a JSON object {...} at the top level"),
        ('{"fec": {"redundancy": NaN}}', "invalid JSON: NaN is not a number JSON allows"),
        ('{"sessions": {"min_port": 1, "min_port": 2}}', "key 'min_port' appears twice in the same object"),
        ("[" * 100_000 + "]" * 100_000, "invalid JSON: nested too deeply"),
        ('{"x": ' + "1" * 5000 + "}", "invalid JSON: "),
    ],
)
def test_an_invalid_file_is_an_error_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, path=path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_an_unreadable_or_non_text_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(environ={CONFIG_PATH_ENV: str(tmp_path / "dir.json")})
    assert str(info.value) == f"{tmp_path / 'dir.json'}: cannot read the configuration file: Is a directory"
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"node": {"id": "bücher"}}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.json: not UTF-8 text \(invalid byte at offset 18\)$"):
        load_config(environ={}, path=str(latin1))


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"sessions": {"max_sessions": 9}}')
    assert load_config(environ={}, path=str(path)).sessions.max_sessions == 9


# --------------------------------------------------------------------------------------- model behaviour


def test_the_config_is_frozen(tmp_path: Path) -> None:
    cfg = load(tmp_path, FULL_FILE)
    with pytest.raises(ValidationError):
        cfg.sessions.min_port = 1
    with pytest.raises(ValidationError):
        cfg.sessions = cfg.sessions
    assert isinstance(cfg.webrtc.stun_servers, tuple)
    hash(cfg.sessions)  # usable as a key, i.e. really immutable


def test_api_address_accepts_the_original_host_port_form(tmp_path: Path) -> None:
    assert load(tmp_path, {"api": {"address": ":8081"}}).api.model_dump() == {
        "enabled": True,
        "address": "0.0.0.0",
        "port": 8081,
        "auth_enabled": False,
    }
    cfg = load(tmp_path, {"api": {"address": "[::1]:8082"}})
    assert (cfg.api.address, cfg.api.port) == ("::1", 8082)
    cfg = load(tmp_path, {"api": {"address": "127.0.0.1:8083", "port": 8084}})
    assert (cfg.api.address, cfg.api.port) == ("127.0.0.1", 8084)
    cfg = load(tmp_path, {"api": {"address": "127.0.0.1:8083"}}, KARL_API_PORT="8085")
    assert (cfg.api.address, cfg.api.port) == ("127.0.0.1", 8085)


def test_media_addresses(tmp_path: Path) -> None:
    assert load(tmp_path, {"media": {"ip": "auto"}}).media.ip is None
    assert load(tmp_path, {"media": {"ip": None}}).media.ip is None
    media = load(tmp_path, KARL_MEDIA_IP="10.0.0.5").media
    assert (media.ip, media.public_ip, media.advertised_ip("10.0.0.5")) == ("10.0.0.5", None, "10.0.0.5")
    media = load(tmp_path, KARL_MEDIA_IP="0.0.0.0", KARL_PUBLIC_IP="203.0.113.7").media
    assert media.advertised_ip("0.0.0.0") == "203.0.113.7"


@pytest.mark.parametrize(
    ("file", "env", "expected"),
    [
        ({}, {}, []),
        ({"recording": {"enabled": False}, "jitter_buffer": {"min_delay": 10}}, {}, []),
        ({"webrtc": {"enabled": False}, "fec": {"enabled": False}}, {}, []),
        ({"jitter_buffer": {"enabled": True}, "fec": {"enabled": True}}, {}, ["fec"]),
        ({"recording": {"format": "pcm"}}, {}, ["recording"]),
        ({}, {"KARL_RECORDING_PATH": "/srv/rec"}, ["recording"]),
        ({}, {"KARL_RECORDING_ENABLED": "true"}, ["recording"]),
        ({"webrtc": {"enabled": True}}, {}, []),  # ICE and DTLS are built (always on)
        ({"webrtc": {"stun_servers": ["stun:a"]}}, {}, ["webrtc.stun_servers"]),
        ({}, {"KARL_MYSQL_DSN": "u:p@tcp(h:3306)/db"}, []),  # CDRs in MySQL are built
        ({}, {"KARL_REDIS_ENABLED": "on", "KARL_REDIS_ADDR": "h:6379"}, []),  # the fleet is built
        ({"database": {"redis_addr": "h:6379"}}, {}, []),
        ({"api": {"auth_enabled": True}}, {}, []),  # API keys are built
        ({"api": {"auth_enabled": True, "enabled": False}}, {}, []),
        (
            {"ng_protocol": {"timeout": 30}, "sessions": {"session_ttl": 3600}},
            {},
            ["ng_protocol.timeout", "sessions.session_ttl"],
        ),
    ],
)
def test_unimplemented_sections_lists_what_the_operator_asked_for(
    tmp_path: Path, file: dict[str, Any], env: dict[str, str], expected: list[str]
) -> None:
    assert load(tmp_path, file, **env).unimplemented_sections() == expected


def test_build_config_validates_a_mapping_without_changing_it() -> None:
    settings = {"sessions": {"min_port": 20000, "max_port": 20099}}
    cfg = build_config(settings, {"KARL_RTP_MAX_PORT": "20199"})
    assert (cfg.sessions.min_port, cfg.sessions.max_port) == (20000, 20199)
    assert settings == {"sessions": {"min_port": 20000, "max_port": 20099}}
    with pytest.raises(ConfigError) as info:
        build_config({"sessions": {"min_port": 1.5}}, {})
    assert info.value.path is None


def test_config_error_survives_pickling() -> None:
    error = ConfigError(["a: must be an integer, got 'x'", "b: unknown key"], "c.json")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.problems, copy.path) == (str(error), error.problems, "c.json")
    assert str(ConfigError("one problem")) == "one problem"


# -------------------------------------------------------------------------------- environment reference


def test_describe_env_keeps_every_promise() -> None:
    variables = describe_env()
    names = [var.name for var in variables]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"KARL_[A-Z0-9_]+", name) for name in names)
    by_name = {var.name: var.field for var in variables}
    for name, field in PROMISED_ENV.items():
        assert by_name.get(name, "missing") == field, name
    paths = set(field_paths())
    assert all(var.field in paths for var in variables if var.field)
    for section, keys in PROMISED_SECTIONS.items():
        assert {f"{section}.{key}" for key in keys} <= paths, section
    assert all(var.help and var.default for var in variables)


def test_describe_env_defaults_are_the_model_defaults() -> None:
    defaults = {var.name: var.default for var in describe_env()}
    assert defaults["KARL_NG_PORT"] == "22222" and defaults["KARL_RECORDING_ENABLED"] == "true"
    cfg = KarlConfig()
    for var in describe_env():
        value = get(cfg, var.field) if var.field else None
        if isinstance(value, bool):
            assert var.default == str(value).lower(), var.name
        elif isinstance(value, int) or value:
            assert var.default == str(value) or var.name == "KARL_NODE_ID", var.name


def test_the_loop_protect_marker_is_the_fleets_not_the_processes() -> None:
    one = KarlConfig.model_validate({"node": {"id": "node-1", "cluster_id": "fleet"}})
    two = KarlConfig.model_validate({"node": {"id": "node-2", "cluster_id": "fleet"}})
    alone = KarlConfig.model_validate({"node": {"id": "node-1"}})
    assert one.node.loop_marker() == two.node.loop_marker() != alone.node.loop_marker()
    again = KarlConfig.model_validate({"node": {"id": "node-1"}})
    assert alone.node.loop_marker() == again.node.loop_marker()
    assert re.fullmatch(r"[0-9a-f]{12}", one.node.loop_marker())


def test_unknown_env_vars_reports_karl_names_only() -> None:
    env = {"KARL_RTP_MINPORT": "1", "KARL_NG_PORT": "2", "HOME": "/root", "KARL_CONFIG_PATH": "x"}
    assert unknown_env_vars(env) == ["KARL_RTP_MINPORT"]


# ------------------------------------------------------------------------------- docs/configuration.md


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_variable_is_documented_with_its_key_and_default() -> None:
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(KARL_[A-Z0-9_]+)` \|.*$", doc_text(), re.M)}
    for var in describe_env():
        assert var.name in rows, f"{var.name} has no row in docs/configuration.md"
        cells = [cell.strip() for cell in rows[var.name].split("|")[1:-1]]
        assert cells[1] == (f"`{var.field}`" if var.field else "—"), var.name
        assert var.default in cells[2], (var.name, var.default, cells[2])


def test_every_variable_named_in_the_docs_exists() -> None:
    known = {var.name for var in describe_env()}
    assert set(re.findall(r"KARL_[A-Z0-9_]+", doc_text())) <= known


def test_every_json_key_is_documented_with_its_default() -> None:
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_]+\.[a-z_]+)` \|.*$", doc_text(), re.M)}
    cfg = KarlConfig()
    assert set(rows) == set(field_paths())
    for path, row in rows.items():
        value = get(cfg, path)
        if isinstance(value, bool | int) and path != "node.id":
            default_cell = row.split("|")[3]
            assert f"`{json.dumps(value)}`" in default_cell, (path, default_cell)


def test_the_documented_examples_load(tmp_path: Path) -> None:
    text = doc_text()
    (example,) = re.findall(r"```json\n(.*?)```", text, re.S)
    cfg = load(tmp_path, example)
    assert (cfg.media.ip, cfg.media.public_ip, cfg.timers.final_timeout) == ("10.0.0.5", "203.0.113.7", 14400)
    assert cfg.unimplemented_sections() == []
    (shell,) = re.findall(r"```sh\n(.*?)```", text, re.S)
    env = dict(re.findall(r"(KARL_[A-Z_]+)=(\S+)", shell))
    from_env = load(tmp_path, **env)
    for field in ("ng_protocol", "sessions", "media", "timers"):
        assert getattr(from_env, field) == getattr(cfg, field)
    for line in re.findall(r"```text\n(.*?)```", text, re.S)[0].splitlines():
        assert re.match(r"^(KARL_[A-Z_]+ \()?[a-z_]+\.[a-z_]+\)?: ", line), line


# ------------------------------------------------------------------------------ no other exception types

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
SECTION_KEYS = st.sampled_from(sorted({p.split(".")[1] for p in field_paths()} | {"x"}))
FILES = st.dictionaries(
    st.sampled_from([*KarlConfig.model_fields, "x"]),
    st.dictionaries(SECTION_KEYS, JSON_VALUES, max_size=4) | JSON_VALUES,
    max_size=4,
)


@settings(max_examples=300, deadline=None, database=None)
@given(file=FILES)
def test_any_json_file_gives_a_config_or_a_config_error(file: dict[str, Any]) -> None:
    try:
        build_config(file, {})
    except ConfigError as exc:
        assert exc.problems and all(line.strip() for line in exc.problems)


@settings(max_examples=300, deadline=None, database=None)
@given(env=st.dictionaries(st.sampled_from([var.name for var in describe_env()]), st.text(max_size=10)))
def test_any_environment_gives_a_config_or_a_config_error(env: dict[str, str]) -> None:
    try:
        build_config({}, env)
    except ConfigError as exc:
        assert exc.problems


def test_a_routers_configuration_has_no_media_ports_to_collide_with(tmp_path: Path) -> None:
    # the NG router binds no media ports and serves no REST API: an NG port inside the (unused)
    # default media range, or the API's port on the metrics port, is fine for it and not for a node
    env = {
        "KARL_NG_PORT": "30970",
        "KARL_METRICS_PORT": "8080",
        "KARL_CONFIG_PATH": str(tmp_path / "none.json"),
    }
    assert load_config(env, role="router").ng_protocol.udp_port == 30970
    with pytest.raises(ConfigError, match="30970 lies inside the media port range"):
        load_config(env)
