"""``load_config``: defaults, then the JSON file, then ``KARL_*`` environment variables."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from karl_core.config.env import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    ENV_FOR_FIELD,
    env_kind,
    parse_env_value,
    split_field,
)
from karl_core.config.errors import ConfigError
from karl_core.config.messages import error_path, label, reason
from karl_core.config.model import KarlConfig


def resolve_config_path(environ: Mapping[str, str] | None = None, path: str | None = None) -> str:
    """The file ``load_config`` reads: ``path``, else ``KARL_CONFIG_PATH``, else ``config/config.json``."""
    if path:
        return path
    env = os.environ if environ is None else environ
    return env.get(CONFIG_PATH_ENV, "").strip() or DEFAULT_CONFIG_PATH


def load_config(
    environ: Mapping[str, str] | None = None, path: str | None = None, *, role: str = "node"
) -> KarlConfig:
    """Build the configuration; raises ConfigError naming every invalid setting.

    ``environ`` defaults to ``os.environ``. ``path`` overrides ``KARL_CONFIG_PATH``. A missing file
    means all defaults; environment variables win over the file; an empty variable counts as unset.
    ``role`` "router" or "controller": the checks of media ports and the REST API, which the NG router
    and the failover controller have not, are left out.
    """
    env = os.environ if environ is None else environ
    file_path = resolve_config_path(env, path)
    return build_config(read_config_file(file_path), env, file_path, role=role)


def build_config(
    settings: Mapping[str, Any], environ: Mapping[str, str], source: str | None = None, *, role: str = "node"
) -> KarlConfig:
    """Validate settings shaped like the JSON file, with ``environ``'s ``KARL_*`` variables on top.

    ``load_config`` uses it after reading the file; other components' tests can use it directly.
    ``source`` (the file) is only recorded in the ConfigError.
    """
    # Copy the sections: environment values are written into them.
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in settings.items()}
    problems: list[str] = []
    env_origin: dict[str, str] = {}
    for field, name in ENV_FOR_FIELD.items():
        raw = environ.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            value = parse_env_value(env_kind(field), raw)
        except ValueError as exc:
            problems.append(f"{name} ({field}): {exc}")
            continue
        section, key = split_field(field)
        target = data.setdefault(section, {})
        if isinstance(target, dict):  # otherwise the file's section is invalid and reported below
            target[key] = value
            env_origin[field] = name

    try:
        config = KarlConfig.model_validate(data, context={"role": role})
    except ValidationError as exc:
        for error in exc.errors():
            loc = error_path(error)
            problems.append(f"{label(loc, env_origin)}: {reason(error)}")
    if problems:
        raise ConfigError(problems, source)
    return config


def read_config_file(path: str) -> dict[str, Any]:
    """The file's top-level JSON object; {} when the file does not exist."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        problem = f"{path}: cannot read the configuration file: {exc.strerror or exc}"
        raise ConfigError([problem], path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (invalid byte at offset {exc.start})"], path) from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"], path
        ) from None
    except _DuplicateKey as exc:
        raise ConfigError([f"{path}: key {exc.args[0]!r} appears twice in the same object"], path) from None
    except ValueError as exc:  # NaN/Infinity, or an integer beyond Python's digit limit
        raise ConfigError([f"{path}: invalid JSON: {exc}"], path) from None
    except RecursionError:
        raise ConfigError([f"{path}: invalid JSON: nested too deeply"], path) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: must contain a JSON object {{...}} at the top level"], path)
    return data


class _DuplicateKey(Exception):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads silently keeps the last of two equal keys; in a config file that hides a mistake.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
