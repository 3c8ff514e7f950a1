"""The REST API (`/api/v1/...`): sessions, statistics, drain control; JSON only.

Every request passes, in order: the per-source rate limit (429), the API key check (401/403), the body
size limit (413), then routing (404/405) and the handler. Errors are JSON (`errors.py`). Keys are never
logged; actions that change something (ending a call, drain) are logged with the caller's address and role.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from karl_core.ng.commands import Command
from karl_core.ng.options import NgOptions
from karl_core.state import OwnerToken
from karl_medianode.control.engine_driver import EngineDriver
from karl_medianode.node import MediaNode
from karl_medianode.operations.http.auth import ApiKeys, Role, presented_key
from karl_medianode.operations.http.errors import ApiError, error_response, json_response
from karl_medianode.operations.http.openapi import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_REASON,
    PATHS,
    openapi_document,
)
from karl_medianode.operations.http.params import QueryParams
from karl_medianode.operations.http.sessions import (
    STATES,
    SessionFilter,
    page_of,
    session_detail,
    session_summary,
)
from karl_medianode.operations.http.stats import node_stats

log = logging.getLogger("karl.http.api")

#: Largest request body accepted (the API takes only tiny JSON objects).
MAX_BODY = 64 * 1024

NODE = web.AppKey("node", MediaNode)
KEYS = web.AppKey("keys", ApiKeys)
ROLE = web.RequestKey("role", Role)

_METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"})
_UNMATCHED = "unmatched"
#: Status recorded for a request whose client disconnected before the answer (nginx's convention).
CLIENT_CLOSED = 499
_REALM = 'Bearer realm="karl"'
_KEY_NEEDED = "an API key is needed (Authorization: Bearer <key> or X-API-Key)"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _roles() -> dict[tuple[str, str], Role]:
    """Role each operation needs, from the OpenAPI document (`x-karl-role`)."""
    roles = {}
    for path, item in PATHS.items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "x-karl-role" in operation:
                roles[(method.upper(), path)] = Role[operation["x-karl-role"].upper()]
    return roles


ROLES = _roles()
PUBLIC = frozenset({("GET", "/api/v1/openapi.json")})


def _route_of(request: web.Request) -> tuple[str, str]:
    """(method, path template) — bounded values, usable as metric labels."""
    method = request.method if request.method in _METHODS else "OTHER"
    match = request.match_info
    resource = match.route.resource if match.http_exception is None else None
    return method, resource.canonical if resource is not None else _UNMATCHED


def _client(request: web.Request) -> str:
    # The peer of the TCP connection. X-Forwarded-For is not trusted: anyone could set it.
    return request.remote or "unknown"


def _count(node: MediaNode, method: str, template: str, status: int) -> None:
    admission = node.admission
    if admission is None:
        return
    key = (template, method, status)
    admission.api_requests[key] = admission.api_requests.get(key, 0) + 1


def _authorize(request: web.Request, method: str, template: str, now: float) -> Role:
    keys = request.app[KEYS]
    if not keys.enabled:
        return Role.ADMIN  # no keys configured: the API is open (documented; warned at start-up)
    if (method, template) in PUBLIC:
        return Role.READ
    presented = presented_key(request.headers)
    role = keys.role_of(presented)
    if role is None:
        admission = request.app[NODE].admission
        if admission is not None:
            admission.api_auth_failed(_client(request), now)
        has_key = presented is not None
        message = "unknown API key" if has_key else _KEY_NEEDED
        raise ApiError(
            401,
            message,
            {"WWW-Authenticate": _REALM + (', error="invalid_token"' if has_key else "")},
        )
    needed = ROLES.get((method, template), Role.READ)
    if role < needed:
        admission = request.app[NODE].admission
        if admission is not None:
            admission.api_role_refused()
        raise ApiError(403, f"this operation needs the '{needed.label}' role; the key has '{role.label}'")
    return role


async def _guarded(request: web.Request, handler: Handler, method: str, template: str) -> web.StreamResponse:
    node = request.app[NODE]
    now = time.monotonic()
    admission = node.admission
    client = _client(request)
    try:
        if admission is not None and not admission.admit_api(client, now):
            retry = admission.api_retry_after(client, now)
            raise ApiError(
                429,
                f"too many requests from {client}; retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        request[ROLE] = _authorize(request, method, template, now)
        length = request.content_length
        if length is not None and length > MAX_BODY:
            raise ApiError(413, f"request body of {length} bytes is larger than the limit of {MAX_BODY}")
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:  # routing (404/405) and aiohttp's own limits (413)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, _http_message(exc, request), headers)


def _http_message(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"no such path: {request.path[:200]}"
    if exc.status == 405:
        return f"{request.method} is not allowed here; allowed: {exc.headers.get('Allow', '')}"
    if exc.status == 413:
        return f"request body is larger than the limit of {MAX_BODY} bytes"
    return exc.reason


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    method, template = _route_of(request)
    status = 500
    try:
        response = await _guarded(request, handler, method, template)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = CLIENT_CLOSED  # the client went away before the answer
        raise
    except Exception:
        log.exception("REST API %s %s failed", method, template, extra={"event": "api_internal_error"})
        return error_response(500, "internal error (see the node's log)")
    finally:
        _count(request.app[NODE], method, template, status)


# ---------------------------------------------------------------------------------------------- handlers


def _engine(request: web.Request) -> EngineDriver:
    engine = request.app[NODE].engine
    if engine is None:
        raise ApiError(503, "the node is still starting")
    return engine


async def list_sessions(request: web.Request) -> web.Response:
    q = QueryParams(request.query, ("limit", "offset", "cursor", "state", "min_age", "max_age", "address"))
    limit = q.integer("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = q.integer("offset", 0, 0, MAX_OFFSET)
    wanted = SessionFilter(
        state=q.choice("state", STATES),
        min_age=q.seconds("min_age"),
        max_age=q.seconds("max_age"),
        address=q.address("address"),
    )
    cursor = q.text("cursor")
    engine = _engine(request)
    now = time.time()
    page = page_of(engine, engine.all_calls(), wanted, now, limit, offset, cursor)
    return json_response(
        {
            "sessions": [
                session_summary(engine, call, now, _owner(request, call.call_id)) for call in page.calls
            ],
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "next_cursor": page.next_cursor,
        }
    )


def _call_id(request: web.Request) -> str:
    QueryParams(request.query, ())
    return request.match_info["call_id"]


async def get_session(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    engine = _engine(request)
    call = engine.find_call(call_id)
    if call is None:
        raise ApiError(404, f"no session with call-id {call_id[:200]!r}")
    return json_response(session_detail(engine, call, time.time(), _owner(request, call_id)))


def _owner(request: web.Request, call_id: str) -> OwnerToken | None:
    fleet = request.app[NODE].fleet
    return None if fleet is None else fleet.owned.get(call_id)


async def delete_session(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    engine = _engine(request)
    if engine.find_call(call_id) is None:
        raise ApiError(404, f"no session with call-id {call_id[:200]!r}")
    engine.handle(Command.DELETE, NgOptions(command=Command.DELETE, call_id=call_id, delete_delay=0))
    log.info(
        "session ended through the REST API",
        extra={
            "event": "api_session_deleted",
            "call_id": call_id,
            "client": _client(request),
            "role": request[ROLE].label,
        },
    )
    return json_response({"call_id": call_id, "state": "deleted"})


async def stats(request: web.Request) -> web.Response:
    QueryParams(request.query, ())
    _engine(request)
    return json_response(node_stats(request.app[NODE]))


async def _read_reason(request: web.Request) -> str | None:
    """The optional JSON body of drain/undrain: `{"reason": "..."}`."""
    QueryParams(request.query, ())
    body = await request.read()  # larger than client_max_size: aiohttp raises 413
    if not body.strip():
        return None
    if request.content_type != "application/json":
        raise ApiError(415, f"the request body must be application/json, not {request.content_type[:100]!r}")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    for key in data:
        if key != "reason":
            raise ApiError(400, f"unknown field {key[:100]!r} in the request body (known: reason)")
    if "reason" not in data:
        return None
    reason = data["reason"]
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ApiError(400, f"field 'reason' must be a string of at most {MAX_REASON} characters")
    # Printable text only: it goes into the log.
    return "".join(ch if ch.isprintable() else "?" for ch in reason)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _drain_state(node: MediaNode) -> dict[str, Any]:
    engine = node.engine
    return {
        "draining": node.draining,
        "accepting_calls": bool(engine is not None and engine.accepting),
        "active_sessions": engine.active_calls() if engine is not None else 0,
    }


async def drain(request: web.Request) -> web.Response:
    reason = await _read_reason(request)
    _engine(request)
    node = request.app[NODE]
    node.drain()
    log.info(
        "drain requested through the REST API",
        extra={"event": "api_drain", "client": _client(request), "reason": reason},
    )
    return json_response(_drain_state(node))


async def undrain(request: web.Request) -> web.Response:
    reason = await _read_reason(request)
    _engine(request)
    node = request.app[NODE]
    node.undrain()
    log.info(
        "undrain requested through the REST API",
        extra={"event": "api_undrain", "client": _client(request), "reason": reason},
    )
    return json_response(_drain_state(node))


def build_api_app(node: MediaNode, keys: ApiKeys) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[api_middleware])
    app[NODE] = node
    app[KEYS] = keys
    document = json_response(openapi_document(auth_enabled=keys.enabled)).body
    assert isinstance(document, bytes)

    async def openapi(request: web.Request) -> web.Response:
        response = web.Response(body=document)
        response.content_type = "application/json"
        response.charset = "utf-8"
        return response

    r = app.router
    r.add_get("/api/v1/sessions", list_sessions, allow_head=False)
    r.add_get("/api/v1/sessions/{call_id}", get_session, allow_head=False)
    r.add_delete("/api/v1/sessions/{call_id}", delete_session)
    r.add_get("/api/v1/stats", stats, allow_head=False)
    r.add_post("/api/v1/admin/drain", drain)
    r.add_post("/api/v1/admin/undrain", undrain)
    r.add_get("/api/v1/openapi.json", openapi, allow_head=False)
    return app
