"""The exception hierarchy of realtime.

Every error a client can cause maps to one stable ``error`` code and one HTTP status, so the web
layer turns any :class:`ClientError` into the JSON error contract of DESIGN.md without a lookup
table of its own. Exceptions carry data (the code, the status, ``retry_after``) rather than
encoding it in the message, in the manner of simple-websocket's ``ConnectionClosed``.
"""

from __future__ import annotations


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
