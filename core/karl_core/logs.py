"""Logging set-up: JSON lines or text, and a rate limiter for messages caused by bad input."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, component, event, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        call_id = getattr(record, "call_id", None)
        return f"{text} [call-id={call_id}]" if call_id else text


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class LogThrottle:
    """The one rate limit for log messages caused by input or outages: per kind of message, at most
    `burst` per `interval` seconds; the first one let through after a quiet spell learns how many of
    its kind were left out."""

    def __init__(self, interval: float = 10.0, burst: int = 1) -> None:
        self.interval = interval
        self.burst = burst
        self._windows: dict[str, list[float]] = {}  # kind -> [window end, sent, suppressed]

    def allow(self, kind: str = "", now: float | None = None) -> int | None:
        """None: stay quiet. Otherwise log now; the value is how many were suppressed before."""
        now = time.monotonic() if now is None else now
        window = self._windows.get(kind)
        if window is None or now >= window[0]:
            suppressed = 0 if window is None else int(window[2])
            self._windows[kind] = [now + self.interval, 1, 0]
            return suppressed
        if window[1] < self.burst:
            window[1] += 1
            return 0
        window[2] += 1
        return None

    def reset(self, kind: str = "") -> None:
        """The condition is over (e.g. the database is back): the next message of this kind goes out
        (still told how many were left out before)."""
        window = self._windows.get(kind)
        if window is not None:
            window[0] = -math.inf


class RateLimitedLogger:
    """A logger behind a `LogThrottle`: at most one message per `interval` seconds; the next one says
    how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.throttle = LogThrottle(interval)

    def _emit(self, level: int, msg: str, *args: object) -> None:
        suppressed = self.throttle.allow()
        if suppressed is None:
            return
        if suppressed:
            msg = f"{msg} ({suppressed} similar messages suppressed)"
        self.logger.log(level, msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self._emit(logging.WARNING, msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self._emit(logging.INFO, msg, *args)
