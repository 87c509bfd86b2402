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

# The Mercure hub's limits and reserved words, stated here because the front doors' layer may
# not import the hub above it; tests/web/test_openapi.py holds them equal to realtime.mercure's.
MAX_SELECTORS = 100
MAX_SELECTOR_LENGTH = 2048
JSON_LD_CONTEXT = "https://mercure.rocks/"
EARLIEST = "earliest"
HUB_EVENT_TYPE = "mercure"
MAX_ID_LENGTH = 1024
MAX_RETRY_DIGITS = 10
MAX_TYPE_LENGTH = 256

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
    400: "The request is malformed (a malformed Authorization header included: `invalid_request`).",
    401: "No token, or one that cannot be trusted; which, the hub does not say (draft 08): an "
    "expired token is `invalid_token` too.",
    404: "No such subscriptions resource or active subscription, or the subscriptions API is "
    "off (REALTIME_MERCURE_SUBSCRIPTIONS=0).",
    413: "The body is over REALTIME_MAX_BODY (default 1048576 bytes), the data over "
    "REALTIME_MAX_PAYLOAD (default 65536 UTF-8 bytes), the topic fields more than "
    f"REALTIME_MAX_TOPICS (default 50), the id over {MAX_ID_LENGTH} or the type over "
    f"{MAX_TYPE_LENGTH} characters.",
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

_MERCURE_WIRE_FORMAT = """\
A `text/event-stream` (WHATWG Server-Sent Events), UTF-8, as both Mercure drafts define it.

The stream opens with `retry: <ms>` (REALTIME_RETRY_MS, default 3000) and the comment `: ok`.
With a Last-Event-ID (header, `last_event_id` or `lastEventID`), the updates the hub still holds
after the earliest one that carried that id come first (`earliest`: every update it holds), then
live ones. `Mercure-Last-Event-ID` (draft 08) and `Last-Event-ID` (draft 07) say where the
stream starts: for a fresh stream the newest update's id (`earliest` while there is none), for
an exact resume the id sent, and `earliest` for an id the hub no longer holds or never had
(updates may have been missed; the stream is live from now).

Each update a selector matches (a private one only when the token grants one of its topics):

```
retry: <ms, when the publisher gave one>
id: <the publisher's id verbatim, else the hub's urn:uuid:...>
event: <the publisher's type, default message>
data: <first line of the data>
data: <next line ...>
```

With REALTIME_MERCURE_SUBSCRIPTIONS=1 the subscription events are private updates of type
`mercure` whose data is the subscription's JSON document. A `: heartbeat` comment comes after
every REALTIME_HEARTBEAT_S (default 15) seconds of silence. The stream ends at the token's `exp`
or at REALTIME_MAX_CONNECTION_AGE_S (`: expired`), or with a short `retry:` and `: overflow`,
`: shutdown` or `: resync`: reconnect with the last id. A draining worker answers 200 with a
short `retry:` and `: draining`, without the cursor and Link headers."""


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
        **_mercure_schemas(),
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


def _mercure_schemas() -> dict[str, Any]:
    id_ = {
        "type": "string",
        "description": "The subscription's topic and URL, under the hub's path: "
        "`/.well-known/mercure/subscriptions/...`, each variable percent-encoded.",
    }
    subscriber = {
        "type": "string",
        "description": "Made by the hub (`urn:uuid:...`), never taken from the client or its "
        "token.",
    }
    payload = {"description": "The token's payload for this subscription, when it has one."}
    members = {
        "type": "array",
        "items": {
            "oneOf": [_ref(SCHEMAS, "MercureSubscription"), _ref(SCHEMAS, "MercureSubscriptionLd")]
        },
        "description": "Each subscription in the shape of the draft its client speaks.",
    }
    return {
        "MercureUpdateForm": {
            "type": "object",
            "description": 'One update as form fields (both drafts, "Publication"). Unknown '
            "fields are ignored; of `data`, `id`, `type` and `retry` the first occurrence "
            "counts. No topic, id or type may hold a control or Unicode format character.",
            "required": ["topic"],
            "properties": {
                "topic": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "minLength": 1, "not": {"const": "*"}},
                    "description": "Repeat it: the first is the canonical topic, the others "
                    "alternates that match too. None may be `*` or a URL in the hub's own "
                    "namespace (its path and below, once resolved against the hub's URL), "
                    "reserved for its subscription events (`invalid_topic`). The token must "
                    "grant publish on every one.",
                },
                "data": {
                    "type": "string",
                    "description": "Delivered one `data:` line per line (CR and CRLF become LF); "
                    "default empty; at most REALTIME_MAX_PAYLOAD (default 65536) UTF-8 bytes.",
                },
                "private": {
                    "type": "string",
                    "description": "Present, whatever its value: only subscribers whose token "
                    "grants one of the update's topics receive it.",
                },
                "id": {
                    "type": "string",
                    "maxLength": MAX_ID_LENGTH,
                    "not": {"anyOf": [{"pattern": "^#"}, {"const": EARLIEST}]},
                    "description": "The update's id, delivered verbatim as the SSE `id:` and "
                    "resumable from; empty or absent: the hub makes one (`urn:uuid:...`). Not "
                    "starting with `#` (the hub's own ids may) and not `earliest` (`invalid_id`).",
                },
                "type": {
                    "type": "string",
                    "maxLength": MAX_TYPE_LENGTH,
                    "not": {"const": HUB_EVENT_TYPE},
                    "description": "The SSE `event:`; empty or absent: `message`. `mercure` is "
                    "the hub's own (`reserved_type`).",
                },
                "retry": {
                    "type": "string",
                    "pattern": f"^[0-9]{{0,{MAX_RETRY_DIGITS}}}$",
                    "description": "The SSE `retry:` sent before the update, in milliseconds.",
                },
            },
        },
        "MercureSubscription": {
            "type": "object",
            "description": "An active subscription, draft 08's shape.",
            "required": ["id", "type", "match_type", "match", "subscriber", "active"],
            "properties": {
                "id": id_,
                "type": {"const": "subscription"},
                "match_type": {"enum": ["exact", "urlpattern"]},
                "match": {"type": "string"},
                "subscriber": subscriber,
                "active": {"type": "boolean"},
                "payload": payload,
            },
            "additionalProperties": False,
        },
        "MercureSubscriptionLd": {
            "type": "object",
            "description": "An active subscription, draft 07's JSON-LD shape (`@context` is "
            "left out inside a collection).",
            "required": ["id", "type", "topic", "subscriber", "active"],
            "properties": {
                "@context": {"const": JSON_LD_CONTEXT},
                "id": id_,
                "type": {"const": "Subscription"},
                "topic": {"type": "string"},
                "subscriber": subscriber,
                "active": {"type": "boolean"},
                "payload": payload,
                "lastEventID": {
                    "type": "string",
                    "description": "In a single-subscription answer (draft 07 puts the cursor "
                    "at the root of every subscriptions endpoint): the id to subscribe from.",
                },
            },
            "additionalProperties": False,
        },
        "MercureSubscriptions": {
            "type": "object",
            "description": "A collection of active subscriptions, draft 08's shape (its cursor "
            "is in the Link header).",
            "required": ["id", "type", "subscriptions"],
            "properties": {
                "id": {"type": "string", "description": "The path asked for."},
                "type": {"const": "subscriptions"},
                "subscriptions": members,
            },
            "additionalProperties": False,
        },
        "MercureSubscriptionsLd": {
            "type": "object",
            "description": "A collection of active subscriptions, draft 07's JSON-LD shape.",
            "required": ["@context", "id", "type", "lastEventID", "subscriptions"],
            "properties": {
                "@context": {"const": JSON_LD_CONTEXT},
                "id": {"type": "string", "description": "The path asked for."},
                "type": {"const": "Subscriptions"},
                "lastEventID": {
                    "type": "string",
                    "description": "The id to subscribe from to miss no later subscription "
                    "event (`earliest` while there is no update).",
                },
                "subscriptions": members,
            },
            "additionalProperties": False,
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


#: (parameter name, cookie, draft, first) of the Mercure hub's token cookies, in the order it
#: reads them (:data:`realtime.mercure.tokens.COOKIES`).
_MERCURE_COOKIES = (
    ("MercureSecureCookie", "__Secure-mercure_access_token", "draft 08", True),
    ("MercureCookie", "mercure_access_token", "draft 08", False),
    ("MercureAuthorizationCookie", "mercureAuthorization", "draft 07", False),
)


def _mercure_errors(codes: dict[int, tuple[str, ...]]) -> dict[str, Any]:
    """A Mercure operation's errors: those that refuse a token carry its Bearer challenge."""
    responses = {}
    for status, found in codes.items():
        description = _MERCURE_STATUS_TEXT.get(status, _STATUS_NAMES[status][1])
        response = _error_response(status, found, description)
        challenges = sorted({_CHALLENGES[c] for c in found if c in _CHALLENGES})
        if challenges:
            response.setdefault("headers", {})["WWW-Authenticate"] = {
                "description": "The Bearer challenge (RFC 6750) of a token refusal: "
                + ", ".join(f"`{c}`" for c in found if c in _CHALLENGES)
                + ".",
                "required": all(c in _CHALLENGES for c in found),
                "schema": {"enum": challenges},
            }
        responses[str(status)] = response
    return responses


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
            "MercureLink": {
                "description": 'The hub\'s discovery link (draft 08, "Discovery"): '
                '`<hub URL>; rel="mercure"`.',
                "schema": {"type": "string", "pattern": '^<[^>]*>; rel="mercure"$'},
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
            "MercureQueryToken": {
                "name": "authorization",
                "in": "query",
                "description": "The Mercure hub's token in the query string (draft 07), for "
                "EventSource, which cannot set headers (redacted from every log). A draft 08 "
                "access token (`typ: at+jwt`) is refused here (401 `invalid_token`). "
                "Authorization wins over it, and it over the cookies.",
                "schema": {"type": "string"},
            },
            **{
                name: {
                    "name": cookie,
                    "in": "cookie",
                    "description": f"The Mercure hub's token in a cookie ({draft}); used when "
                    "there is no Authorization header and no `authorization` query parameter."
                    + (" The hub reads its cookies in the order listed." if first else ""),
                    "schema": {"type": "string"},
                }
                for name, cookie, draft, first in _MERCURE_COOKIES
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
            "mercureQuery": {
                "type": "apiKey",
                "in": "query",
                "name": "authorization",
                "description": "The Mercure hub's token in the query string (draft 07 tokens "
                "only), when there is no Authorization header.",
            },
            **{
                "mercure" + name.removeprefix("Mercure"): {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": cookie,
                    "description": f"The Mercure hub's token in a cookie ({draft}).",
                }
                for name, cookie, draft, _ in _MERCURE_COOKIES
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


def _mercure_security(*, optional: bool) -> list[dict[str, list[str]]]:
    """Any one of the hub's token sources, in the order it reads them; ``optional`` adds
    ``{}``, no token, which only REALTIME_MERCURE_ANONYMOUS=1 allows (public updates only)."""
    cookies: list[dict[str, list[str]]] = [
        {"mercure" + name.removeprefix("Mercure"): []} for name, _, _, _ in _MERCURE_COOKIES
    ]
    sources: list[dict[str, list[str]]] = [{"bearer": []}, {"mercureQuery": []}, *cookies]
    return [{}, *sources] if optional else sources


def _mercure_token_parameters() -> list[dict[str, Any]]:
    return [
        _ref(PARAMETERS, "MercureQueryToken"),
        *(_ref(PARAMETERS, name) for name, _, _, _ in _MERCURE_COOKIES),
    ]


_MERCURE_AUTH_TEXT = (
    "A token is a draft 07 JWT (a `mercure` claim of `publish` and `subscribe` selectors) or a "
    "draft 08 access token (`typ: at+jwt`, `authorization_details`), signed with the server's "
    "key and checked against REALTIME_MERCURE_AUDIENCE and REALTIME_MERCURE_ISSUER when set. "
    "An Authorization header that is not `Bearer <token>` is 400 `invalid_request`."
)


def _selector_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description + " Repeatable; with the other selector parameters, at "
        f"least one and at most {MAX_SELECTORS} in all, each at most {MAX_SELECTOR_LENGTH} "
        "characters.",
        "style": "form",
        "explode": True,
        "schema": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_SELECTOR_LENGTH},
        },
    }


def _mercure_subscribe() -> dict[str, Any]:
    last_event_id = {"type": "string", "maxLength": MAX_ID_LENGTH, "examples": [EARLIEST]}
    return {
        "operationId": "mercureSubscribe",
        "tags": ["mercure"],
        "summary": "Subscribe to Mercure updates as Server-Sent Events",
        "description": "The updates any selector matches, from a Mercure client of draft 07 "
        "(`topic`) or draft 08 (`match`, `match_urlpattern`); private updates only when the "
        "token's subscribe selectors match one of their topics. Any other query parameter "
        "whose name starts with `match` (in any case) is 400 `invalid_selector`. Without "
        "REALTIME_MERCURE_ANONYMOUS=1 a token is required. " + _MERCURE_AUTH_TEXT,
        "security": _mercure_security(optional=True),
        "parameters": [
            _selector_parameter(
                "topic",
                "A draft 07 selector: `*` (every topic), an exact topic, or an RFC 6570 URI "
                "Template that topics are matched against (`https://example.com/books/{id}`).",
            ),
            _selector_parameter(
                "match",
                "A draft 08 exact matcher: the topic byte for byte (`*`: every topic).",
            ),
            _selector_parameter("match_exact", "The same as `match`."),
            _selector_parameter(
                "match_urlpattern",
                "A draft 08 URL Pattern (WHATWG), relative ones resolved against the hub's URL "
                "(`*`: every topic); a topic that is not a URL matches none.",
            ),
            {
                "name": "last_event_id",
                "in": "query",
                "description": "Draft 08: resume after this id (`earliest`: every update the "
                "hub holds), when no (or a blank) Last-Event-ID header is sent.",
                "schema": last_event_id,
            },
            {
                "name": "lastEventID",
                "in": "query",
                "description": "Draft 07's name for `last_event_id`, which wins over it.",
                "schema": last_event_id,
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "description": "The id of the last update received (the browser's reconnect "
                "sends it); wins over both query parameters.",
                "schema": last_event_id,
            },
            *_mercure_token_parameters(),
        ],
        "responses": {
            "200": {
                "description": "The stream.\n\n" + _MERCURE_WIRE_FORMAT,
                "headers": {
                    "Cache-Control": {"schema": {"const": "no-cache"}},
                    "X-Accel-Buffering": {
                        "description": "Tells nginx not to buffer the stream.",
                        "schema": {"const": "no"},
                    },
                    "Mercure-Last-Event-ID": {
                        "description": "Draft 08: where the stream starts (see above).",
                        "schema": {"type": "string"},
                    },
                    "Last-Event-ID": {
                        "description": "Draft 07's name for Mercure-Last-Event-ID, the same value.",
                        "schema": {"type": "string"},
                    },
                    "Link": _ref(HEADERS, "MercureLink"),
                },
                "content": {
                    SSE: {
                        "schema": {"type": "string"},
                        "examples": {
                            "update": {
                                "value": "id: urn:uuid:5e94c686-2c0b-4f9b-958e-92f471ba5a2d\n"
                                'event: message\ndata: {"status": "out of stock"}\n\n'
                            }
                        },
                    }
                },
            },
            **_mercure_errors(_MERCURE_SUBSCRIBE_ERRORS),
        },
    }


def _mercure_publish() -> dict[str, Any]:
    return {
        "operationId": "mercurePublish",
        "tags": ["mercure"],
        "summary": "Publish a Mercure update",
        "description": "Needs a token whose publish selectors match every topic of the update, "
        "canonical and alternate (else 403 `insufficient_scope`); a token from a cookie (or the "
        "query string, with an Origin) must come from an allowed Origin (403 "
        "`origin_not_allowed`). The update is stored and fanned out like any event, under the "
        "same publish rate (REALTIME_PUBLISH_RATE) as `/publish`. " + _MERCURE_AUTH_TEXT,
        "security": _mercure_security(optional=False),
        "parameters": _mercure_token_parameters(),
        "requestBody": {
            "required": True,
            "content": {
                FORM: {
                    "schema": _ref(SCHEMAS, "MercureUpdateForm"),
                    "encoding": {"topic": {"style": "form", "explode": True}},
                    "examples": {
                        "update": {
                            "value": {
                                "topic": ["https://example.com/books/1"],
                                "data": '{"status": "out of stock"}',
                            }
                        }
                    },
                }
            },
        },
        "responses": {
            "200": {
                "description": "Stored: the body is the update's id, the publisher's or the hub's.",
                "headers": {"Link": _ref(HEADERS, "MercureLink")},
                "content": {
                    "text/plain": {
                        "schema": {
                            "type": "string",
                            "examples": ["urn:uuid:5e94c686-2c0b-4f9b-958e-92f471ba5a2d"],
                        }
                    }
                },
            },
            **_mercure_errors(_MERCURE_PUBLISH_ERRORS),
        },
    }


def _mercure_subscriptions(*, one: bool) -> dict[str, Any]:
    """The subscriptions API (draft 08, "Active Subscriptions"): the collection, or
    (``one``) a selector's subscriptions or one subscription."""
    link = {
        "description": "The hub's link with the cursor: subscribe from `last-event-id` to "
        "miss no later subscription event, "
        '`<hub>; rel="mercure"; last-event-id="<id>"; type="mercure"; '
        'content-type="application/json"`.',
        "required": True,
        "schema": {"type": "string", "pattern": '^<[^>]*>; rel="mercure"; last-event-id="'},
    }
    if one:
        json_schema: dict[str, Any] = {
            "oneOf": [_ref(SCHEMAS, "MercureSubscriptions"), _ref(SCHEMAS, "MercureSubscription")]
        }
        ld_schema: dict[str, Any] = {
            "oneOf": [
                _ref(SCHEMAS, "MercureSubscriptionsLd"),
                _ref(SCHEMAS, "MercureSubscriptionLd"),
            ]
        }
        parameters = [
            {
                "name": "rest",
                "in": "path",
                "required": True,
                "description": "The rest of the path, its segments percent-encoded once (an "
                "encoded `/` stays inside its segment). Draft 08: `{match_type}/{match}` (a "
                "selector's subscriptions) or `{match_type}/{match}/{subscriber}` (one), "
                "`match_type` being `exact` or `urlpattern`; draft 07: `{topic}` or "
                "`{topic}/{subscriber}`. Draft 07's are answered in JSON-LD.",
                "schema": {"type": "string"},
            }
        ]
        summary = "A selector's active Mercure subscriptions, or one subscription"
        description = "A collection, or the one subscription when the path names a subscriber "
        "(404 `not_found` when it is not active)."
    else:
        json_schema = _ref(SCHEMAS, "MercureSubscriptions")
        ld_schema = _ref(SCHEMAS, "MercureSubscriptionsLd")
        parameters = []
        summary = "Every active Mercure subscription, over every worker and host"
        description = "Draft 08's collection, or draft 07's when the request's Accept names "
        f"`{JSON_LD}`."
    return {
        "operationId": "mercureSubscription" if one else "mercureSubscriptions",
        "tags": ["mercure"],
        "summary": summary,
        "description": description + " Only with REALTIME_MERCURE_SUBSCRIPTIONS=1 (else 404 "
        "`not_found`). Needs a token whose subscribe selectors match the request's path itself "
        "(else 403 `insufficient_scope`). " + _MERCURE_AUTH_TEXT,
        "security": _mercure_security(optional=False),
        "parameters": [*parameters, *_mercure_token_parameters()],
        "responses": {
            "200": {
                "description": "Draft 08's JSON, or draft 07's JSON-LD.",
                "headers": {"Link": link},
                "content": {JSON: {"schema": json_schema}, JSON_LD: {"schema": ld_schema}},
            },
            **_mercure_errors(_MERCURE_SUBSCRIPTIONS_ERRORS),
        },
    }


def _mercure_paths() -> dict[str, Any]:
    return {
        MERCURE: {"get": _mercure_subscribe(), "post": _mercure_publish()},
        MERCURE + "/subscriptions": {"get": _mercure_subscriptions(one=False)},
        MERCURE + "/subscriptions/{rest}": {"get": _mercure_subscriptions(one=True)},
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
            "`x-router-responses`). The WebSocket at `GET /ws` is described in the README. A "
            "Mercure hub (drafts 07 and 08) is at `/.well-known/mercure` unless "
            "REALTIME_MERCURE=0.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "streams", "description": "Server-Sent Events."},
            {"name": "publishing", "description": "Storing events."},
            {"name": "presence", "description": "Who is connected."},
            {
                "name": "mercure",
                "description": "The Mercure hub (drafts 07 and 08) at `/.well-known/mercure`.",
            },
            {"name": "operations", "description": "Health, metrics, this document, the page."},
        ],
        "paths": {
            "/events": _events(),
            "/publish": _publish(),
            "/presence": _presence(),
            **_mercure_paths(),
            **_operations_paths(),
        },
        "components": _components(),
        "x-router-responses": {
            "404": _ref(RESPONSES, "NotFound"),
            "405": _ref(RESPONSES, "MethodNotAllowed"),
        },
    }
