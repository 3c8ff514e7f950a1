"""The NG commands rtpengine 10.5 knows, and how a request names one."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from .errors import NO_COMMAND, UNRECOGNIZED_COMMAND, NgError


class Command(enum.StrEnum):
    """Command strings exactly as 10.5 matches them (case and spaces matter)."""

    PING = "ping"
    OFFER = "offer"
    ANSWER = "answer"
    DELETE = "delete"
    QUERY = "query"
    LIST = "list"
    START_RECORDING = "start recording"
    STOP_RECORDING = "stop recording"
    START_FORWARDING = "start forwarding"
    STOP_FORWARDING = "stop forwarding"
    BLOCK_DTMF = "block DTMF"
    UNBLOCK_DTMF = "unblock DTMF"
    BLOCK_MEDIA = "block media"
    UNBLOCK_MEDIA = "unblock media"
    PLAY_MEDIA = "play media"
    STOP_MEDIA = "stop media"
    PLAY_DTMF = "play DTMF"
    STATISTICS = "statistics"
    SILENCE_MEDIA = "silence media"
    UNSILENCE_MEDIA = "unsilence media"
    PUBLISH = "publish"
    SUBSCRIBE_REQUEST = "subscribe request"
    SUBSCRIBE_ANSWER = "subscribe answer"
    UNSUBSCRIBE = "unsubscribe"


_BY_NAME: dict[str, Command] = {c.value: c for c in Command}


def parse_command(payload: Mapping[str, Any]) -> Command:
    """Return the request's command.

    Raises `NgError` with `Dictionary contains no key "command"` when the key is missing or not a
    string, and `Unrecognized command` for any other string — including commands of newer
    rtpengine versions such as ``connect`` or ``transform`` (observed with 10.5).
    """
    name = payload.get("command")
    if not isinstance(name, str):
        raise NgError(NO_COMMAND)
    command = _BY_NAME.get(name)
    if command is None:
        raise NgError(UNRECOGNIZED_COMMAND)
    return command


def label_value(text: str) -> str:
    """A command name or result as a metric label: `block DTMF` → `block_dtmf`, `load limit` →
    `load_limit` (the node's and the router's metrics spell them alike)."""
    return text.strip().lower().replace(" ", "_")
