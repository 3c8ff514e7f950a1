"""The OpenAPI 3.0 document of the REST API, as data (served at /api/v1/openapi.json).

It is the contract the API is tested against (schemathesis), so it states every status an operation can
answer and every constraint the server enforces.
"""

from __future__ import annotations

import copy
from typing import Any

from karl_core import __version__

MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
DEFAULT_LIMIT = 100
MAX_REASON = 200
EXAMPLE_CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"

_ERROR_CODES = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "internal_error",
    "unavailable",
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    schema.update(extra)
    return schema


_INT = {"type": "integer", "minimum": 0}
_NUM = {"type": "number", "minimum": 0}
_NULL_NUM = {"type": "number", "nullable": True}
_STR = {"type": "string"}
_NULL_STR = {"type": "string", "nullable": True}
_BOOL = {"type": "boolean"}


def _ints(*names: str) -> dict[str, Any]:
    return _obj(dict.fromkeys(names, _INT))


_COUNTS = _ints("packets", "bytes", "errors")

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "code": {"type": "string", "enum": _ERROR_CODES},
                    "message": {"type": "string", "description": "What went wrong, for a human."},
                }
            )
        }
    ),
    "Address": {
        **_obj({"address": _STR, "port": {"type": "integer", "minimum": 0, "maximum": 65535}}),
        "nullable": True,
    },
    "Codec": _obj(
        {
            "payload_type": {"type": "integer", "minimum": 0, "maximum": 127},
            "name": _STR,
            "clock_rate": _INT,
            "channels": {"type": "integer", "nullable": True},
            "fmtp": _NULL_STR,
        }
    ),
    "Stream": _obj(
        {
            "kind": {"type": "string", "enum": ["rtp", "rtcp"]},
            "local_address": _STR,
            "local_port": {"type": "integer", "minimum": 0, "maximum": 65535},
            "advertised": {**_ref("Address"), "description": "The party's address from its SDP."},
            "endpoint": {**_ref("Address"), "description": "Where Karl sends this party's media."},
            "learned": {**_ref("Address"), "description": "The source address learned from its media."},
            "confirmed": _BOOL,
            "packets": _INT,
            "bytes": _INT,
            "errors": _INT,
            "rtcp_packets": _INT,
            "malformed": _INT,
            "dropped": _obj(
                {"blocked": _INT, "no_destination": _INT, "source": _INT, "malformed": _INT, "srtp": _INT}
            ),
            "lost": {
                **_INT,
                "description": "RTP packets missing from the sequence numbers of what the party sent "
                "(loss between the party and Karl).",
            },
            "late": {**_INT, "description": "RTP packets that arrived out of order or twice."},
            "last_packet": {**_NULL_NUM, "description": "Unix time of the last datagram received."},
        }
    ),
    "Media": _obj(
        {
            "index": _INT,
            "type": _STR,
            "protocol": _STR,
            "direction": {"type": "string", "enum": ["sendrecv", "sendonly", "recvonly", "inactive"]},
            "rejected": _BOOL,
            "rtcp_mux": _BOOL,
            "sdp_address": _NULL_STR,
            "sdp_port": _INT,
            "codecs": {"type": "array", "items": _ref("Codec")},
            "streams": {"type": "array", "items": _ref("Stream")},
            "security": _ref("LegSecurity"),
        }
    ),
    "LegSecurity": _obj(
        {
            "srtp": {
                **_NULL_STR,
                "description": "Suite of the SRTP Karl terminates on this leg (never a key).",
            },
            "keying": {
                "type": ["string", "null"],
                "enum": ["sdes", "dtls", None],
                "description": "How that SRTP is keyed; null: plain, or SRTP relayed end to end.",
            },
            "dtls_role": {
                "type": ["string", "null"],
                "enum": ["active", "passive", "actpass", None],
                "description": "Karl's a=setup towards the party (actpass: offered, not answered yet).",
            },
            "dtls": {
                "type": ["string", "null"],
                "enum": ["new", "connecting", "connected", "failed", None],
                "description": "The DTLS handshake on this leg (connected also when its keys were "
                "restored with the call).",
            },
            "ice": {
                "type": ["string", "null"],
                "enum": ["new", "checking", "connected", "failed", None],
                "description": "Karl's ICE agent towards the party; null: no ICE on this leg.",
            },
        }
    ),
    "Party": _obj(
        {
            "tag": {"type": "string", "description": "SIP tag; empty while the party is not known."},
            "label": _NULL_STR,
            "created": _NUM,
            "role": {"type": "string", "enum": ["offerer", "answerer"]},
            "partner_tag": _NULL_STR,
            "removed": _BOOL,
            "blocked": _BOOL,
            "silenced": _BOOL,
            "medias": {"type": "array", "items": _ref("Media")},
        }
    ),
    "Totals": _obj({"rtp": _COUNTS, "rtcp": _COUNTS, "dropped": _INT}),
    "QualitySource": _obj(
        {
            "ssrc": {"type": "integer", "minimum": 0, "description": "The reporting party's SSRC."},
            "party": {**_NULL_STR, "description": "Tag of the reporting party, once known."},
            "about_ssrc": {
                "type": "integer",
                "nullable": True,
                "description": "The source its last report was about.",
            },
            "mos": {**_NULL_NUM, "description": "Average MOS (1 to 5) of its reports, as rtpengine has it."},
            "mos_min": _NULL_NUM,
            "mos_max": _NULL_NUM,
            "mos_samples": _INT,
            "packet_loss_ratio": {**_NULL_NUM, "description": "Fraction lost in its last report (0..1)."},
            "cumulative_lost": {"type": "integer", "nullable": True},
            "jitter_seconds": {**_NULL_NUM, "description": "Interarrival jitter in its last report."},
            "rtt_seconds": {**_NULL_NUM, "description": "End-to-end round-trip time (both legs)."},
            "rtt_leg_seconds": {**_NULL_NUM, "description": "Round-trip time between Karl and the party."},
        }
    ),
    "Quality": _obj(
        {
            "available": {
                "type": "boolean",
                "description": "True once a party sent an RTCP report Karl could evaluate.",
            },
            "mos": {**_NULL_NUM, "description": "The lowest average MOS of the reporting parties."},
            "mos_min": {**_NULL_NUM, "description": "The lowest MOS of any report."},
            "packet_loss_ratio": {**_NULL_NUM, "description": "The highest fraction lost last reported."},
            "jitter_seconds": {**_NULL_NUM, "description": "The highest jitter in the last reports."},
            "rtt_seconds": {**_NULL_NUM, "description": "The highest end-to-end round-trip time."},
            "rtcp_reports": {**_INT, "description": "RTCP sender and receiver reports parsed."},
            "lost": {**_INT, "description": "RTP packets missing between parties and Karl (all streams)."},
            "sources": {"type": "array", "items": _ref("QualitySource")},
        }
    ),
    "SessionState": {
        "type": "string",
        "enum": ["offered", "answered", "deleting"],
        "description": "offered: waiting for the answer; answered: media both ways; deleting: deleted "
        "and kept for the delete delay.",
    },
    "Ownership": {
        **_obj({"owner": _STR, "epoch": _INT}),
        "nullable": True,
        "description": "In a fleet: the node holding the call and the epoch of its ownership (a call "
        "that moves to another node gets a higher epoch); null on a single node.",
    },
    "SessionSummary": _obj(
        {
            "call_id": _STR,
            "ownership": _ref("Ownership"),
            "state": _ref("SessionState"),
            "created": {**_NUM, "description": "Unix time."},
            "age_seconds": _NUM,
            "last_signal": _NUM,
            "tags": {"type": "array", "items": _STR},
            "medias": _INT,
            "streams": _INT,
            "packets": _INT,
            "bytes": _INT,
        }
    ),
    "SessionPage": _obj(
        {
            "sessions": {"type": "array", "items": _ref("SessionSummary")},
            "total": {**_INT, "description": "Sessions matching the filters (all pages)."},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "offset": _INT,
            "next_cursor": {
                **_NULL_STR,
                "description": "Pass as `cursor` (without `offset`) for the next page; null on the last.",
            },
        }
    ),
    "SessionDetail": _obj(
        {
            "call_id": _STR,
            "ownership": _ref("Ownership"),
            "state": _ref("SessionState"),
            "created": _NUM,
            "age_seconds": _NUM,
            "last_signal": _NUM,
            "last_media": _NULL_NUM,
            "delete_at": {**_NULL_NUM, "description": "When a deleted call is finally removed."},
            "blocked": _BOOL,
            "silenced": _BOOL,
            "dtmf_blocked": _BOOL,
            "parties": {"type": "array", "items": _ref("Party")},
            "totals": _ref("Totals"),
            "quality": _ref("Quality"),
        }
    ),
    "Deleted": _obj({"call_id": _STR, "state": {"type": "string", "enum": ["deleted"]}}),
    "Stats": _obj(
        {
            "active_sessions": _INT,
            "total_sessions": _INT,
            "packets_processed": _INT,
            "packets_dropped": _INT,
            "uptime_seconds": _NUM,
            "bytes_processed": _INT,
            "packet_errors": _INT,
            "node_id": _STR,
            "draining": _BOOL,
            "accepting_calls": _BOOL,
            "sessions": _ints("active", "deleting", "total", "rejected", "ended", "max"),
            "ports": _ints("min", "max", "capacity", "in_use", "free", "exhausted_total"),
            "ng": _obj(
                {
                    "datagrams": _INT,
                    "refused": _INT,
                    "errors": _INT,
                    "commands": {"type": "object", "additionalProperties": _INT},
                }
            ),
            "admission": {
                **_obj(
                    {
                        "ng_not_allowed": _INT,
                        "ng_rate_limited": _INT,
                        "api_rate_limited": _INT,
                        "api_auth_failures": _INT,
                        "blocks": _INT,
                        "blocked_sources": _INT,
                    }
                ),
                "nullable": True,
            },
        }
    ),
    "DrainRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {
                "type": "string",
                "maxLength": MAX_REASON,
                "description": "Written to the log (e.g. 'maintenance').",
            }
        },
    },
    "DrainState": _obj({"draining": _BOOL, "accepting_calls": _BOOL, "active_sessions": _INT}),
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, Any] = {
    "BadRequest": _error("A query parameter or the body is malformed; the message names it."),
    "Unauthorized": _error(
        "No API key, or an unknown one.",
        {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="karl"'}},
    ),
    "Forbidden": _error("The key's role does not allow this operation."),
    "NotFound": _error("No such session (or path)."),
    "MethodNotAllowed": _error(
        "The path does not take this method.",
        {"Allow": {"schema": {"type": "string"}, "description": "The methods it takes."}},
    ),
    "PayloadTooLarge": _error("The request body is larger than 64 KiB."),
    "UnsupportedMediaType": _error("A request body must be application/json."),
    "RateLimited": _error(
        "Too many requests from this address, or the address is blocked for a while.",
        {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Seconds to wait."}},
    ),
    "Unavailable": _error("The node is still starting."),
}


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _responses(ok: dict[str, Any], *statuses: str) -> dict[str, Any]:
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "403": "Forbidden",
        "404": "NotFound",
        "405": "MethodNotAllowed",
        "413": "PayloadTooLarge",
        "415": "UnsupportedMediaType",
        "429": "RateLimited",
        "503": "Unavailable",
    }
    result = {"200": ok}
    for status in statuses:
        result[status] = {"$ref": f"#/components/responses/{names[status]}"}
    return result


_COMMON = ("401", "403", "405", "429", "503")
_BODY_ERRORS = ("400", "413", "415")

_CALL_ID = {
    "name": "call_id",
    "in": "path",
    "required": True,
    "description": "The SIP Call-ID (percent-encoded).",
    "schema": {"type": "string", "minLength": 1},
    "example": EXAMPLE_CALL_ID,
}

_DRAIN_BODY = {
    "required": False,
    "content": {"application/json": {"schema": _ref("DrainRequest")}},
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


PATHS: dict[str, Any] = {
    "/api/v1/sessions": {
        "get": {
            "operationId": "listSessions",
            "summary": "List sessions (calls), filtered and paged, in call-id order.",
            "x-karl-role": "read",
            "parameters": [
                _query(
                    "limit",
                    "Sessions per page.",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                ),
                _query(
                    "offset",
                    "Sessions to skip (after `cursor`, if given).",
                    {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
                ),
                _query(
                    "cursor",
                    "Only sessions whose call-id sorts after this one (`next_cursor` of the previous page).",
                    {"type": "string"},
                ),
                _query("state", "Only sessions in this state.", _ref("SessionState")),
                _query("min_age", "Only sessions at least this many seconds old.", _NUM),
                _query("max_age", "Only sessions at most this many seconds old.", _NUM),
                _query(
                    "address",
                    "Only sessions with a party at this IP address (from its SDP or learned from its media).",
                    {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]},
                ),
            ],
            "responses": _responses(_json("SessionPage", "One page of sessions."), "400", *_COMMON),
        }
    },
    "/api/v1/sessions/{call_id}": {
        "parameters": [_CALL_ID],
        "get": {
            "operationId": "getSession",
            "summary": "One session: parties (tags), medias, streams, addresses, codecs, counters, quality.",
            "x-karl-role": "read",
            "responses": _responses(_json("SessionDetail", "The session."), "400", "404", *_COMMON),
        },
        "delete": {
            "operationId": "deleteSession",
            "summary": "End the call now (as an NG delete with delete-delay 0): its ports are released.",
            "x-karl-role": "operate",
            "responses": _responses(_json("Deleted", "The call has ended."), "400", "404", *_COMMON),
        },
    },
    "/api/v1/stats": {
        "get": {
            "operationId": "getStats",
            "summary": "Node-wide counters.",
            "x-karl-role": "read",
            "responses": _responses(_json("Stats", "The node's figures."), "400", *_COMMON),
        }
    },
    "/api/v1/admin/drain": {
        "post": {
            "operationId": "drain",
            "summary": "Stop taking new calls; calls in progress keep relaying. /ready then fails.",
            "x-karl-role": "operate",
            "requestBody": _DRAIN_BODY,
            "responses": _responses(_json("DrainState", "The new state."), *_BODY_ERRORS, *_COMMON),
        }
    },
    "/api/v1/admin/undrain": {
        "post": {
            "operationId": "undrain",
            "summary": "Take new calls again.",
            "x-karl-role": "operate",
            "requestBody": _DRAIN_BODY,
            "responses": _responses(_json("DrainState", "The new state."), *_BODY_ERRORS, *_COMMON),
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document (no key needed).",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "405": {"$ref": "#/components/responses/MethodNotAllowed"},
                "429": {"$ref": "#/components/responses/RateLimited"},
            },
        }
    },
}

SECURITY_SCHEMES = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
    "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def openapi_document(auth_enabled: bool = True) -> dict[str, Any]:
    """The document; without keys configured the API is open and the document says so."""
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Karl media node REST API",
            "version": __version__,
            "description": "Sessions, statistics and drain control of one Karl media node. Roles: "
            "read (GET), operate (DELETE a session, drain/undrain), admin (everything). Errors are "
            '{"error": {"code", "message"}}. Health probes and /metrics are served on their own ports '
            "and are not part of this document.",
        },
        "servers": [{"url": "/"}],
        "paths": copy.deepcopy(PATHS),
        "components": {"schemas": copy.deepcopy(SCHEMAS), "responses": copy.deepcopy(RESPONSES)},
    }
    if auth_enabled:
        doc["components"]["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
        doc["security"] = [{"bearerKey": []}, {"headerKey": []}]
    else:
        for item in doc["paths"].values():
            for operation in item.values():
                if isinstance(operation, dict):
                    operation.pop("security", None)
                    operation["responses"].pop("401", None)
                    operation["responses"].pop("403", None)
    return doc
