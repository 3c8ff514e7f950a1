"""Turn pydantic's validation errors into one line per problem that an operator can act on."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic_core import ErrorDetails

from karl_core.config.errors import RULE_ERROR_TYPE, show


def error_path(error: ErrorDetails) -> tuple[str | int, ...]:
    """The location of the offending setting, including the field a cross-field rule blames."""
    loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == RULE_ERROR_TYPE and "field" in ctx:
        loc += tuple(str(ctx["field"]).split("."))
    return loc


def dotted(loc: tuple[str | int, ...]) -> str:
    """``("webrtc", "stun_servers", 0)`` -> ``webrtc.stun_servers[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def label(loc: tuple[str | int, ...], env_origin: Mapping[str, str]) -> str:
    """``sessions.min_port``, or ``KARL_RTP_MIN_PORT (sessions.min_port)`` when the value came from there."""
    path = dotted(loc)
    setting = ".".join(str(part) for part in loc[:2])
    env = env_origin.get(setting)
    return f"{env} ({path})" if env else path


def reason(error: ErrorDetails) -> str:
    """What is wrong with the value, without naming the setting."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = f", got {show(error['input'])}"
    if kind == RULE_ERROR_TYPE:
        return str(ctx.get("text", error["msg"]))
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer" + got
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false" + got
    if kind in ("float_type", "float_parsing"):
        return "must be a number" + got
    if kind == "finite_number":
        return "must be a finite number" + got
    if kind == "string_type":
        return "must be a string" + got
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a JSON object" + got
    if kind in ("tuple_type", "list_type"):
        return "must be a JSON array" + got
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}" + got
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}" + got
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}" + got
    if kind == "string_too_short":
        return "must not be empty"
    return error["msg"] + got
