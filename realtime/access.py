"""Who may follow or publish to which topic: one rule for SSE, WebSocket and presence. Pure."""

from __future__ import annotations

import math
from collections.abc import Iterable
from hashlib import sha256

from .auth import Grant
from .broker import RateLimited
from .errors import AuthError, Forbidden, TooManyRequests
from .topics import PatternSet

TOKEN_COOKIE = "realtime_token"
TOKEN_QUERY = "access_token"


def authorize_subscribe(topics: Iterable[str], grant: Grant | None, public: PatternSet) -> None:
    """Public topics need no token; any other needs one whose subscribe patterns match (401/403)."""
    for topic in topics:
        if public and public.matches(topic):
            continue
        if grant is None:
            raise AuthError(
                f"Topic {topic!r} is not public: send a token (Authorization: Bearer, the "
                f"{TOKEN_COOKIE} cookie, or ?{TOKEN_QUERY}=).",
                code="missing_token",
            )
        if not grant.can_subscribe(topic):
            raise Forbidden(f"Your token does not allow subscribing to {topic!r}.")


def authorize_publish(topics: Iterable[str], grant: Grant | None) -> Grant:
    """Publishing always needs a token whose publish patterns match every topic."""
    if grant is None:
        raise AuthError("Publishing needs a token with publish rights.", code="missing_token")
    for topic in topics:
        if not grant.can_publish(topic):
            raise Forbidden(f"Your token does not allow publishing to {topic!r}.")
    return grant


def publisher_scope(grant: Grant, token: str) -> str:
    """Who a publisher is, for its idempotency keys and its rate: the token's ``sub``, or for a
    token without one a digest of the token itself (which a retry sends again unchanged)."""
    if grant.subject:
        return f"sub:{grant.subject}"
    return "token:" + sha256(token.encode()).hexdigest()


def idempotency_scope(grant: Grant, token: str, key: str) -> str:
    """The ``Idempotency-Key`` as stored: scoped to its publisher, so two publishers choosing the
    same key (a date, a job name) never collide."""
    return f"{publisher_scope(grant, token)}\n{key}"


def publish_rate_limited(exc: RateLimited, rate: float) -> TooManyRequests:
    """The 429 for a publisher over REALTIME_PUBLISH_RATE, with whole seconds to wait."""
    return TooManyRequests(
        f"This publisher is over its rate of {rate:g} events per second "
        "(REALTIME_PUBLISH_RATE); retry after the time in Retry-After.",
        code="rate_limited",
        retry_after=max(1, math.ceil(exc.retry_after_ms / 1000)),
    )
