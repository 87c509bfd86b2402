"""The exception hierarchy of realtime.

Every error a client can cause maps to one stable ``error`` code and one HTTP status, so the web
layer turns any :class:`ClientError` into the JSON error contract of DESIGN.md without a lookup
table of its own; the codes themselves are registered once, in :data:`HTTP_ERRORS` and
:data:`WEBSOCKET_ERRORS`. Exceptions carry data (the code, the status, ``retry_after``) rather than
encoding it in the message, in the manner of simple-websocket's ``ConnectionClosed``.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Every ``error`` code a client can be answered with, by HTTP status: the one registry. Over a
#: WebSocket the same code arrives in an ``error`` frame. The OpenAPI document
#: (:data:`realtime.web.openapi.ERRORS`), the README's "Errors" table, every ``code=`` at a raise
#: site and ``realtime.js`` are held to it by tests (``tests/core/test_errors.py``).
HTTP_ERRORS: Mapping[int, tuple[str, ...]] = {
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
        "too_many_topics",
        "invalid_last_event_id",
        "invalid_idempotency_key",
        "idempotency_key_reused",
        "presence_off",
        "invalid_handshake",
        "invalid_selector",
        "invalid_id",
        "invalid_retry",
        "invalid_request",
    ),
    401: (
        "missing_token",
        "invalid_token",
        "token_expired",
        "invalid_authorization",
        "token_too_large",
    ),
    403: ("forbidden_topic", "origin_not_allowed", "insufficient_scope"),
    404: ("not_found",),
    405: ("method_not_allowed",),
    408: ("request_timeout",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    426: ("unsupported_websocket_version",),
    429: ("too_many_connections", "rate_limited", "topic_rate_limited"),
    503: ("redis_unavailable", "draining"),
}

#: Codes only a WebSocket ``error`` frame carries: a message that is not one, and a bug.
WEBSOCKET_ERRORS: Mapping[int, tuple[str, ...]] = {
    400: ("unknown_type",),
    500: ("internal_error",),
}

#: code -> status, over both tables.
#: The code of a failure of the server's own (a bug), answered 500 by every door.
INTERNAL_ERROR = "internal_error"

ERROR_STATUS: Mapping[str, int] = {
    code: status
    for table in (HTTP_ERRORS, WEBSOCKET_ERRORS)
    for status, codes in table.items()
    for code in codes
}

#: Statuses whose answers carry ``Retry-After``: a client waits that long and tries again.
RETRY_AFTER_STATUSES = frozenset({429, 503})

#: Codes worth retrying after ``Retry-After`` (the same request may succeed then).
RETRYABLE = frozenset(c for c, s in ERROR_STATUS.items() if s in RETRY_AFTER_STATUSES)


class RealtimeError(Exception):
    """Base class of every error realtime raises on purpose."""


class ConfigError(RealtimeError):
    """A ``REALTIME_*`` setting is missing or invalid; the message names the variable."""


class ClientError(RealtimeError):
    """A request the server refuses: becomes ``{"error": code, "message": ...}`` with ``status``."""

    status: int = 400
    code: str = "bad_request"
    #: Close the connection after the answer: the request cannot be followed by another (its
    #: body is half read), or the worker needs the connection's slot back at once.
    close_connection: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
        close_connection: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if close_connection is not None:
            self.close_connection = close_connection
        self.retry_after = retry_after

    @property
    def error(self) -> str:
        """The stable code, by the name the JSON body gives it (``{"error": ...}``)."""
        return self.code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, error={self.code!r}, status={self.status})"


class BadRequest(ClientError):
    status = 400
    code = "bad_request"


class AuthError(ClientError):
    """No token, or one that cannot be trusted (bad signature, expired, malformed): 401."""

    status = 401
    code = "invalid_token"


class Forbidden(ClientError):
    """A valid token that does not grant the topic: 403."""

    status = 403
    code = "forbidden_topic"


class RequestTimeout(ClientError):
    """The request body did not arrive within ``REALTIME_BODY_TIMEOUT_S``: 408, then close."""

    status = 408
    code = "request_timeout"
    close_connection = True


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(ClientError):
    status = 429
    code = "too_many_requests"


class Unavailable(ClientError):
    """Redis cannot be reached or the server is draining: 503 with ``Retry-After``."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code, retry_after=retry_after)


class BrokerError(RealtimeError):
    """Redis failed underneath the broker (connection lost, timeout, script error)."""


def redis_unavailable() -> Unavailable:
    """The refusal for a :class:`BrokerError`, whichever door the request came through."""
    return Unavailable(
        "Redis is unavailable (unreachable or refusing writes); retry shortly.",
        code="redis_unavailable",
    )


# Refusals the storage decides (inside its atomic publish, or during a replay); the front doors
# map each to its ClientError (realtime.web.service), so the storage stays free of HTTP.


class IdempotencyConflict(Exception):
    """The ``Idempotency-Key`` was used before for a different request."""


class RateLimited(Exception):
    """The publisher is over its rate of events (or, ``topics``, of new topics);
    ``retry_after_ms`` until enough budget is back."""

    def __init__(self, retry_after_ms: int, *, topics: bool = False) -> None:
        super().__init__(retry_after_ms)
        self.retry_after_ms = retry_after_ms
        self.topics = topics


class HistoryLost(Exception):
    """History needed by a replay in progress was trimmed or the epoch changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
