"""The one error type configuration problems surface as, and the helper validators use to raise them."""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic_core import PydanticCustomError

#: The pydantic error type used by Karl's own validation rules; its context names the field to blame.
RULE_ERROR_TYPE = "karl_rule"


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` is a message for the operator, one problem per line.

    Each problem names the setting by its JSON path (``sessions.min_port``), preceded by the
    environment variable when the value came from there (``KARL_RTP_MIN_PORT (sessions.min_port)``).
    """

    def __init__(self, problems: str | Sequence[str], path: str | None = None) -> None:
        self.problems: tuple[str, ...] = (problems,) if isinstance(problems, str) else tuple(problems)
        #: The configuration file involved, if any.
        self.path = path
        super().__init__(list(self.problems), path)

    def __str__(self) -> str:
        return "\n".join(self.problems)


def rule_error(text: str, field: str | None = None) -> PydanticCustomError:
    """An error for a rule a validator enforces.

    ``field`` is the key (or dotted path below the validated model) to blame, so that the message
    names the setting the operator has to change rather than the whole section.
    """
    ctx: dict[str, str] = {"text": text}
    if field is not None:
        ctx["field"] = field
    return PydanticCustomError(RULE_ERROR_TYPE, "{text}", ctx)


def show(value: object) -> str:
    """A value as the operator wrote it: strings in single quotes, everything else as JSON."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
