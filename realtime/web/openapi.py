"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``. Pure data.

It describes the API as the front doors of :mod:`realtime.web` implement it, and
``tests/web/test_openapi.py`` holds it to that: the document is valid OpenAPI 3.1, every route of
the Flask URL map is in it and nothing else, and generated requests thrown at the server get only
the statuses, headers, error codes and bodies documented here. The grammars come from
:mod:`realtime.core.topics` and the error codes from the core's registry
(:data:`realtime.core.errors.HTTP_ERRORS`), so neither can drift alone.

Intentional choices, so nobody "fixes" them:

- **No ``/ws``.** A WebSocket's messages are not HTTP operations; the README describes them. The
  upgrade's own refusal (403 ``origin_not_allowed``) and ``draining`` (503, which only a
  WebSocket gets: a draining ``/events`` answers 200 with ``event: shutdown``) are in the error
  catalogue but under no operation.
- **404 and 405 are the router's**, not any operation's: OpenAPI has no place for responses
  outside operations, so they are in ``components.responses`` and listed under the root extension
  ``x-router-responses``.
- **Each operation enumerates exactly the error codes it can answer**, a subset of
  :data:`ERRORS`; ``components.responses`` holds the whole catalogue per status.
- **Limits that are settings** (``REALTIME_MAX_PAYLOAD``, ``_MAX_BODY``, ``_MAX_BATCH``,
  ``_MAX_TOPICS``) are stated with their defaults in descriptions, not as ``maxItems`` or
  ``maxLength``, which would be wrong for a server configured otherwise.
- **HEAD and OPTIONS**, which Flask answers on every route by itself, are not listed.
- **The Mercure hub** (``/.well-known/mercure``, on unless REALTIME_MERCURE=0) is documented as
  its door (:mod:`realtime.mercure.views`) answers: refusals keep the JSON contract and token
  refusals add the Bearer challenge (``WWW-Authenticate``) its drafts ask for. Its
  ``Authorization`` header is the ``bearer`` security scheme, not a parameter: OpenAPI ignores a
  header parameter of that name.
- :func:`document` builds a new dict on every call, so a caller may change what it gets.
"""

from __future__ import annotations

import re
from typing import Any

from realtime.core.errors import HTTP_ERRORS, RETRY_AFTER_STATUSES
from realtime.core.topics import RESERVED_TYPES, TOPIC_RE, TYPE_RE
from realtime.core.version import __version__
from realtime.mercure.selectors import MAX_SELECTOR_LENGTH, MAX_SELECTORS
from realtime.mercure.updates import (
    EARLIEST,
    HUB_EVENT_TYPE,
    MAX_ID_LENGTH,
    MAX_RETRY_DIGITS,
    MAX_TYPE_LENGTH,
)

__all__ = ["ERRORS", "RETRY_AFTER_STATUSES", "document"]

JSON = "application/json"
SSE = "text/event-stream"
FORM = "application/x-www-form-urlencoded"
JSON_LD = "application/ld+json"
MERCURE = "/.well-known/mercure"
SCHEMAS = "#/components/schemas/"
HEADERS = "#/components/headers/"
PARAMETERS = "#/components/parameters/"
RESPONSES = "#/components/responses/"

AUTH_ERRORS = HTTP_ERRORS[401]

#: Every ``error`` code of the HTTP API by status: the core's registry, as the README lists it.
ERRORS: dict[int, tuple[str, ...]] = dict(HTTP_ERRORS)

_STATUS_NAMES = {
    400: ("BadRequest", "The request is malformed."),
    401: ("Unauthorized", "No token, or a token that cannot be trusted or has expired."),
    403: (
        "Forbidden",
        "The token does not grant the topic (`forbidden_topic`; on the Mercure hub "
        "`insufficient_scope`), or the Origin may not use the browser's credentials "
        "(`origin_not_allowed`).",
    ),
    404: ("NotFound", "No such path."),
    405: ("MethodNotAllowed", "The path exists but not with this method."),
    408: (
        "RequestTimeout",
        "The request body did not arrive within REALTIME_BODY_TIMEOUT_S (default 20 s) of its "
        "headers; nothing was stored and the connection is closed.",
    ),
    413: (
        "PayloadTooLarge",
        "One event's data is over REALTIME_MAX_PAYLOAD (default 65536 "
        "UTF-8 bytes), or the body is over REALTIME_MAX_BODY (default 1048576 bytes).",
    ),
    415: (
        "UnsupportedMediaType",
        "Send application/json or a form (application/x-www-form-urlencoded, multipart/form-data).",
    ),
    426: (
        "UpgradeRequired",
        "A WebSocket upgrade of a version other than 13 (`/ws` only); the answer says "
        "Sec-WebSocket-Version: 13.",
    ),
    429: ("TooManyRequests", "A limit was reached: wait the Retry-After seconds."),
    503: (
        "ServiceUnavailable",
        "Redis is unreachable or refuses writes (`redis_unavailable`), or the worker is "
        "stopping (`draining`, WebSocket only): retry after Retry-After seconds.",
    ),
}

# A draining worker answers /events with 200 and `event: shutdown` (a 503 would end a browser's
# EventSource for good), so `draining` is only ever the WebSocket's.
_EVENTS_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("missing_topic", "invalid_topic", "too_many_topics", "invalid_last_event_id"),
    401: AUTH_ERRORS,
    403: ("forbidden_topic",),
    429: ("too_many_connections",),
    503: ("redis_unavailable",),
}

_PUBLISH_ERRORS: dict[int, tuple[str, ...]] = {
    400: (
        "missing_topic",
        "invalid_topic",
        "invalid_type",
        "reserved_type",
        "missing_data",
        "invalid_data",
        "unknown_field",
        "invalid_json",
        "invalid_batch",
        "batch_too_large",
        "bad_form",
        "invalid_idempotency_key",
        "idempotency_key_reused",
    ),
    401: AUTH_ERRORS,
    403: ("forbidden_topic", "origin_not_allowed"),
    408: ("request_timeout",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    429: ("rate_limited", "topic_rate_limited"),
    503: ("redis_unavailable",),
}

_PRESENCE_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("missing_topic", "invalid_topic", "presence_off"),
    401: AUTH_ERRORS,
    403: ("forbidden_topic",),
    503: ("redis_unavailable",),
}

#: The Mercure hub's 401 codes: every token failure but an oversized token is `invalid_token`
#: (draft 08 asks not to say why), and a malformed Authorization is 400 `invalid_request`.
_MERCURE_AUTH_ERRORS = ("missing_token", "invalid_token", "token_too_large")

# The hub checks the selectors, then the token, then Last-Event-ID; a draining worker answers
# 200 with a short `retry:` (see _EVENTS_ERRORS), and private updates are filtered, not refused.
_MERCURE_SUBSCRIBE_ERRORS: dict[int, tuple[str, ...]] = {
    400: (
        "invalid_selector",
        "missing_topic",
        "too_many_topics",
        "invalid_last_event_id",
        "invalid_request",
    ),
    401: _MERCURE_AUTH_ERRORS,
    429: ("too_many_connections",),
    503: ("redis_unavailable",),
}

# Too many topics, an id or a type over its length are 413 (a limit), not 400.
_MERCURE_PUBLISH_ERRORS: dict[int, tuple[str, ...]] = {
    400: (
        "missing_topic",
        "invalid_topic",
        "invalid_id",
        "invalid_type",
        "reserved_type",
        "invalid_retry",
        "bad_form",
        "invalid_request",
    ),
    401: _MERCURE_AUTH_ERRORS,
    403: ("insufficient_scope", "origin_not_allowed"),
    408: ("request_timeout",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    429: ("rate_limited", "topic_rate_limited"),
    503: ("redis_unavailable",),
}

_MERCURE_SUBSCRIPTIONS_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("invalid_request",),
    401: _MERCURE_AUTH_ERRORS,
    403: ("insufficient_scope",),
    404: ("not_found",),
    503: ("redis_unavailable",),
}

#: The Bearer challenge (RFC 6750 section 3) each Mercure refusal of a token carries.
_CHALLENGES = {
    "missing_token": "Bearer",
    "invalid_token": 'Bearer error="invalid_token"',
    "token_too_large": 'Bearer error="invalid_token"',
    "invalid_request": 'Bearer error="invalid_request"',
    "insufficient_scope": 'Bearer error="insufficient_scope"',
}

#: What a Mercure operation's error says, where the catalogue's sentence is another door's.
_MERCURE_STATUS_TEXT = {
    400: "The request is malformed (a malformed Authorization header included: "
    "`invalid_request`).",
    401: "No token, or one that cannot be trusted; which, the hub does not say (draft 08): an "
    "expired token is `invalid_token` too.",
    404: "No such subscriptions resource or active subscription, or the subscriptions API is "
    "off (REALTIME_MERCURE_SUBSCRIPTIONS=0).",
    413: "The body is over REALTIME_MAX_BODY (default 1048576 bytes), the data over "
    f"REALTIME_MAX_PAYLOAD (default 65536 UTF-8 bytes), the topics more than REALTIME_MAX_TOPICS "
    f"(default 50), the id over {MAX_ID_LENGTH} or the type over {MAX_TYPE_LENGTH} characters.",
    415: f"A Mercure publish is a form: send Content-Type: {FORM}.",
}

_WIRE_FORMAT = """\
A `text/event-stream` (WHATWG Server-Sent Events), UTF-8. Every block ends with a blank line;
a field is `name: value` with exactly one space after the colon.

The stream opens with `retry: <ms>` (REALTIME_RETRY_MS, default 3000) and the comment `: ok`,
then tells the client where it stands:

- a fresh stream (no Last-Event-ID): an id-only block `id: <head>`, which sets EventSource's
  last event ID without firing an event (with `envelope=1`: `event: ready`, data
  `{"last_id": "<head>"}`, id `<head>`);
- a resume that cannot be exact: `event: reset` with data `{"reason": "trimmed" | "epoch" |
  "unknown_id", "last_id": "<head>"}` and id `<head>`, then live events only;
- an exact resume: every retained event after the given id, in order, then live events.

Each event:

```
id: <epoch>-<seq>
event: <the publisher's type, default message>
topic: <topic>
data: <first line of the data>
data: <next line ...>
```

Data comes back exactly as published, lines joined by `\\n`. With `envelope=1` every event is
instead `event: message` with `data` the JSON `{"topic", "type", "data"}` (and no `topic:`).
A `: heartbeat` comment comes after every REALTIME_HEARTBEAT_S (default 15) seconds of silence.

The stream ends with one of: `event: overflow` (the client fell behind; no id, so the
reconnect resumes losslessly), `retry: <short>` then `event: shutdown` (the worker is stopping;
a draining worker answers a new request this way too, with 200), `event: auth_expired` (the
token's `exp` passed). Ids are opaque strings, ordered the same on every worker."""


def _ecma(pattern: re.Pattern[str]) -> str:
    """A Python ``\\A...\\Z`` pattern as a JSON Schema (ECMA-262) one."""
    return "^" + pattern.pattern.removeprefix("\\A").removesuffix("\\Z") + "$"


def _ref(where: str, name: str) -> dict[str, Any]:
    return {"$ref": where + name}


def _schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "description": "Every refusal: a stable code and a sentence. A refused request "
            "changes nothing.",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "A stable code."},
                "message": {"type": "string", "description": "A sentence for people."},
            },
            "additionalProperties": False,
        },
        "Topic": {
            "type": "string",
            "pattern": _ecma(TOPIC_RE),
            "examples": ["orders", "user:42"],
        },
        "EventType": {
            "type": "string",
            "pattern": _ecma(TYPE_RE),
            "not": {"enum": sorted(RESERVED_TYPES)},
            "description": "The SSE `event:` of the event. The names the server itself sends "
            "are reserved.",
            "examples": ["created"],
        },
        "EventId": {
            "type": "string",
            "description": "`<epoch>-<seq>`; treat it as opaque.",
            "examples": ["3f9c1e2a7b-1041"],
        },
        "PublishEvent": {
            "type": "object",
            "required": ["topic", "data"],
            "properties": {
                "topic": _ref(SCHEMAS, "Topic"),
                "type": {
                    "description": 'The event type; absent, null or "" mean "message".',
                    "anyOf": [_ref(SCHEMAS, "EventType"), {"enum": ["", None]}],
                },
                "data": {
                    "description": "Any JSON value: a string is delivered as its characters, "
                    "anything else as its compact JSON text. A string may not contain a "
                    "carriage return; the delivered text may be at most REALTIME_MAX_PAYLOAD "
                    "(default 65536) UTF-8 bytes.",
                },
            },
            "additionalProperties": False,
        },
        "PublishBatch": {
            "type": "object",
            "description": "Several events stored atomically: all or none. At most "
            "REALTIME_MAX_BATCH (default 500) events.",
            "required": ["events"],
            "properties": {
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "items": _ref(SCHEMAS, "PublishEvent"),
                },
            },
            "additionalProperties": False,
        },
        "PublishForm": {
            "type": "object",
            "description": "One event as form fields, each given at most once (`curl -d`).",
            "required": ["topic", "data"],
            "properties": {
                "topic": _ref(SCHEMAS, "Topic"),
                "type": {
                    "description": 'The event type; absent or "" mean "message".',
                    "anyOf": [_ref(SCHEMAS, "EventType"), {"const": ""}],
                },
                "data": {
                    "type": "string",
                    "description": "Delivered exactly; no carriage return; at most "
                    "REALTIME_MAX_PAYLOAD (default 65536) UTF-8 bytes.",
                },
            },
            "additionalProperties": False,
        },
        "Published": {
            "type": "object",
            "required": ["id"],
            "properties": {"id": _ref(SCHEMAS, "EventId")},
            "additionalProperties": False,
        },
        "PublishedBatch": {
            "type": "object",
            "required": ["ids"],
            "properties": {"ids": {"type": "array", "items": _ref(SCHEMAS, "EventId")}},
            "additionalProperties": False,
        },
        "Presence": {
            "type": "object",
            "required": ["topic", "present", "connections", "hidden"],
            "properties": {
                "topic": _ref(SCHEMAS, "Topic"),
                "present": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Distinct, sorted: each connection's token `sub`, or its "
                    "connection id when the token has none. Empty when `hidden`.",
                },
                "connections": {"type": "integer", "minimum": 0},
                "hidden": {
                    "type": "boolean",
                    "description": "Who is present is shown only to a caller whose token "
                    "grants the topic; a public topic's anonymous readers get the count alone.",
                },
            },
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": [
                "ready",
                "draining",
                "redis",
                "reader",
                "full",
                "streams",
                "max_streams",
                "reader_reconnects",
            ],
            "properties": {
                "ready": {"type": "boolean"},
                "draining": {"type": "boolean"},
                "redis": {"type": "boolean", "description": "Redis answers PING."},
                "reader": {"type": "boolean", "description": "The event reader is positioned."},
                "full": {
                    "type": "boolean",
                    "description": "This worker holds REALTIME_MAX_CONNECTIONS streams: new "
                    "ones are refused 429 until some leave (everything else is still served).",
                },
                "streams": {"type": "integer", "minimum": 0},
                "max_streams": {"type": "integer", "minimum": 1},
                "reader_reconnects": {"type": "integer", "minimum": 0},
            },
        },
    }


def _error_response(status: int, codes: tuple[str, ...], description: str) -> dict[str, Any]:
    """An error response whose ``error`` is one of ``codes``."""
    response: dict[str, Any] = {
        "description": description + " Codes: " + ", ".join(f"`{c}`" for c in codes) + ".",
        "content": {
            JSON: {
                "schema": {
                    "allOf": [
                        _ref(SCHEMAS, "Error"),
                        {"properties": {"error": {"enum": list(codes)}}},
                    ]
                }
            }
        },
    }
    if status in RETRY_AFTER_STATUSES:
        response["headers"] = {"Retry-After": _ref(HEADERS, "RetryAfter")}
    return response


def _errors(codes: dict[int, tuple[str, ...]]) -> dict[str, Any]:
    return {
        str(status): _error_response(status, found, _STATUS_NAMES[status][1])
        for status, found in codes.items()
    }


def _components() -> dict[str, Any]:
    return {
        "schemas": _schemas(),
        "responses": {
            name: _error_response(status, ERRORS[status], description)
            for status, (name, description) in _STATUS_NAMES.items()
        },
        "headers": {
            "RetryAfter": {
                "description": "Whole seconds to wait before retrying.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            },
            "IdempotentReplayed": {
                "description": "Present when an Idempotency-Key retry returned the first "
                "request's ids instead of publishing again.",
                "schema": {"const": "true"},
            },
        },
        "parameters": {
            "AccessToken": {
                "name": "access_token",
                "in": "query",
                "description": "The token, for browsers' EventSource and WebSocket, which "
                "cannot set headers (redacted from every log). Authorization and the "
                "realtime_token cookie win over it.",
                "schema": {"type": "string"},
            },
        },
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "`Authorization: Bearer <JWT>`; the first token source tried. A "
                "header that is not `Bearer <token>` is 401 `invalid_authorization`.",
            },
            "cookie": {
                "type": "apiKey",
                "in": "cookie",
                "name": "realtime_token",
                "description": "The JWT in a cookie; used when there is no Authorization.",
            },
            "query": {
                "type": "apiKey",
                "in": "query",
                "name": "access_token",
                "description": "The JWT in the query string; the last source tried.",
            },
        },
    }


def _security(*, optional: bool) -> list[dict[str, list[str]]]:
    """Any one token source; ``optional`` adds ``{}``, no token at all, for public topics
    (REALTIME_PUBLIC_TOPICS)."""
    sources: list[dict[str, list[str]]] = [{"bearer": []}, {"cookie": []}, {"query": []}]
    return [{}, *sources] if optional else sources


def _events() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "subscribe",
            "tags": ["streams"],
            "summary": "Follow one or more topics as Server-Sent Events",
            "description": "One stream for several topics, resumed exactly with Last-Event-ID. "
            "Topics matching REALTIME_PUBLIC_TOPICS need no token; any other needs a token "
            "whose `subscribe` patterns match it.",
            "security": _security(optional=True),
            "parameters": [
                {
                    "name": "topic",
                    "in": "query",
                    "required": True,
                    "description": "A topic to follow; repeat it for several (at most "
                    "REALTIME_MAX_TOPICS, default 50, once duplicates are merged).",
                    "style": "form",
                    "explode": True,
                    "schema": {"type": "array", "minItems": 1, "items": _ref(SCHEMAS, "Topic")},
                },
                {
                    "name": "lastEventId",
                    "in": "query",
                    "description": "Resume after this id, when no (or a blank) Last-Event-ID "
                    "header is sent: a browser's reconnect keeps the URL but sends the newest id "
                    "in the header, so the header wins.",
                    "schema": {"type": "string", "maxLength": 256},
                },
                {
                    "name": "envelope",
                    "in": "query",
                    "description": "`1`, `true` or `json`: every event as `event: message` with "
                    "JSON data `{topic, type, data}`, and `event: ready` first on a fresh "
                    "stream. Any other value leaves it off.",
                    "schema": {"type": "string"},
                    "examples": {"on": {"value": "1"}},
                },
                _ref(PARAMETERS, "AccessToken"),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "description": "The id of the last event received. An id that is not ours "
                    "(or from another epoch, or trimmed) starts the stream with `event: reset`.",
                    "schema": {"type": "string", "maxLength": 256},
                },
            ],
            "responses": {
                "200": {
                    "description": "The stream.\n\n" + _WIRE_FORMAT,
                    "headers": {
                        "Cache-Control": {"schema": {"const": "no-cache"}},
                        "X-Accel-Buffering": {
                            "description": "Tells nginx not to buffer the stream.",
                            "schema": {"const": "no"},
                        },
                    },
                    "content": {
                        SSE: {
                            "schema": {"type": "string"},
                            "examples": {
                                "event": {
                                    "value": "id: 3f9c1e2a7b-1\nevent: message\ntopic: demo\n"
                                    "data: hello\n\n"
                                }
                            },
                        }
                    },
                },
                **_errors(_EVENTS_ERRORS),
            },
        }
    }


def _publish() -> dict[str, Any]:
    form = {"schema": _ref(SCHEMAS, "PublishForm")}
    return {
        "post": {
            "operationId": "publish",
            "tags": ["publishing"],
            "summary": "Publish one event or an atomic batch",
            "description": "Needs a token whose `publish` patterns match every topic. The body "
            "may be at most REALTIME_MAX_BODY (default 1048576) bytes.",
            "security": _security(optional=False),
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "description": "A retry with the same key (per publisher) and the same "
                    "content returns the first request's ids with `Idempotent-Replayed: true` "
                    "instead of publishing again; the same key with other content is 400 "
                    "`idempotency_key_reused`.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": "^[ -~]+$",
                    },
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "oneOf": [_ref(SCHEMAS, "PublishEvent"), _ref(SCHEMAS, "PublishBatch")]
                        },
                        "examples": {
                            "event": {
                                "value": {"topic": "orders", "type": "created", "data": {"id": 7}}
                            },
                            "batch": {
                                "value": {
                                    "events": [
                                        {"topic": "a", "data": "1"},
                                        {"topic": "b", "data": "2"},
                                    ]
                                }
                            },
                        },
                    },
                    "application/x-www-form-urlencoded": form,
                    "multipart/form-data": form,
                },
            },
            "responses": {
                "201": {
                    "description": "Stored: the new id, or the ids of a batch in order.",
                    "headers": {"Idempotent-Replayed": _ref(HEADERS, "IdempotentReplayed")},
                    "content": {
                        JSON: {
                            "schema": {
                                "oneOf": [
                                    _ref(SCHEMAS, "Published"),
                                    _ref(SCHEMAS, "PublishedBatch"),
                                ]
                            }
                        }
                    },
                },
                **_errors(_PUBLISH_ERRORS),
            },
        }
    }


def _presence() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "presence",
            "tags": ["presence"],
            "summary": "Who follows a topic now, over every worker and host",
            "description": "Needs the right to subscribe to the topic (none for a public one). "
            "SSE and WebSocket connections both count.",
            "security": _security(optional=True),
            "parameters": [
                {
                    "name": "topic",
                    "in": "query",
                    "required": True,
                    "schema": _ref(SCHEMAS, "Topic"),
                },
                _ref(PARAMETERS, "AccessToken"),
            ],
            "responses": {
                "200": {
                    "description": "The topic's followers.",
                    "content": {JSON: {"schema": _ref(SCHEMAS, "Presence")}},
                },
                **_errors(_PRESENCE_ERRORS),
            },
        }
    }


def _simple_get(
    operation_id: str, summary: str, tag: str, response: dict[str, Any]
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "tags": [tag],
            "summary": summary,
            "security": [],
            "responses": response,
        }
    }


def _operations_paths() -> dict[str, Any]:
    return {
        "/healthz": _simple_get(
            "healthz",
            "Liveness: the process answers",
            "operations",
            {
                "200": {
                    "description": "Alive.",
                    "content": {JSON: {"schema": _ref(SCHEMAS, "Health")}},
                }
            },
        ),
        "/readyz": _simple_get(
            "readyz",
            "Readiness: Redis reachable, the event reader positioned, not draining, not full",
            "operations",
            {
                "200": {
                    "description": "Ready.",
                    "content": {JSON: {"schema": _ref(SCHEMAS, "Readiness")}},
                },
                "503": {
                    "description": "Not ready (the same body, with `ready: false`).",
                    "headers": {"Retry-After": _ref(HEADERS, "RetryAfter")},
                    "content": {JSON: {"schema": _ref(SCHEMAS, "Readiness")}},
                },
            },
        ),
        "/metrics": _simple_get(
            "metrics",
            "Prometheus metrics, summed over every worker (behind REALTIME_METRICS_TOKEN when "
            "it is set: send it as `Authorization: Bearer`)",
            "operations",
            {
                "200": {
                    "description": "The Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors({401: ("missing_token", "invalid_token")}),
            },
        ),
        "/openapi.json": _simple_get(
            "openapi",
            "This document",
            "operations",
            {
                "200": {
                    "description": "The OpenAPI 3.1 document.",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        ),
        "/": _simple_get(
            "dashboard",
            "The live dashboard for people (HTML, on /static/realtime.js)",
            "operations",
            {
                "200": {
                    "description": "The page; its query parameters are read by its script.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        ),
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, as a new dict."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "realtime",
            "version": __version__,
            "summary": "SSE-first realtime notifications on Redis Streams.",
            "description": "Subscribe with `GET /events` (Server-Sent Events), publish with "
            '`POST /publish`. Every refusal is JSON `{"error": "<stable code>", '
            '"message": "<a sentence>"}` and changes nothing; any unknown path is 404 '
            "`not_found` and any method a path lacks is 405 `method_not_allowed` (see "
            "`x-router-responses`). The WebSocket at `GET /ws` is described in the README.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "streams", "description": "Server-Sent Events."},
            {"name": "publishing", "description": "Storing events."},
            {"name": "presence", "description": "Who is connected."},
            {"name": "operations", "description": "Health, metrics, this document, the page."},
        ],
        "paths": {
            "/events": _events(),
            "/publish": _publish(),
            "/presence": _presence(),
            **_operations_paths(),
        },
        "components": _components(),
        "x-router-responses": {
            "404": _ref(RESPONSES, "NotFound"),
            "405": _ref(RESPONSES, "MethodNotAllowed"),
        },
    }
