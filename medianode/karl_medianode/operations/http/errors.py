"""JSON responses and errors of the REST API: `{"error": {"code": ..., "message": ...}}`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

#: Error codes by HTTP status (the `code` field of every error body).
ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    response = web.Response(body=body.encode("utf-8"), status=status, headers=headers)
    response.content_type = JSON_TYPE
    response.charset = "utf-8"
    return response


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    code = ERROR_CODES.get(status, "error")
    return json_response({"error": {"code": code, "message": message}}, status, headers)


class ApiError(Exception):
    """Raised by handlers; the error middleware turns it into the JSON error response."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.headers)
