"""Who may follow or publish to which topic: one rule for SSE, WebSocket and presence. Pure.

Also which browser pages may act with a user's credentials: a browser attaches the
``realtime_token`` cookie to any request to this server, whichever site made it send it, and a
``<form method=post>`` needs no CORS preflight. So a WebSocket upgrade and a publish whose token
came from the cookie or the query string must come from an allowed ``Origin``
(:func:`origin_allowed`); a token in the ``Authorization`` header is safe, since no page of
another site can set it without a preflight that this server does not grant.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable
from hashlib import sha256
from urllib.parse import urlsplit

from realtime.core.auth import FROM_APP, FROM_COOKIE, FROM_QUERY, Grant
from realtime.core.errors import AuthError, Forbidden, RateLimited, TooManyRequests
from realtime.core.topics import PatternSet

TOKEN_COOKIE = "realtime_token"  # noqa: S105 - the cookie's name, not a secret
TOKEN_QUERY = "access_token"  # noqa: S105 - the query parameter's name, not a secret


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


def presence_visible(topic: str, grant: Grant | None) -> bool:
    """Whether the caller may see *who* follows ``topic``, not only how many connections do.

    Reading a public topic needs no token, and the subjects present are other people's
    identities (often e-mail addresses): they are shown only to a caller whose own token grants
    the topic. Everyone else allowed to ask (a public topic's anonymous readers) gets the count.
    """
    return grant is not None and grant.can_subscribe(topic)


def authorize_publish(topics: Iterable[str], grant: Grant | None) -> Grant:
    """Publishing always needs a token whose publish patterns match every topic."""
    if grant is None:
        raise AuthError("Publishing needs a token with publish rights.", code="missing_token")
    for topic in topics:
        if not grant.can_publish(topic):
            raise Forbidden(f"Your token does not allow publishing to {topic!r}.")
    return grant


#: The scope of publishers the app's authorize hook let in without naming them (no subject).
UNNAMED_SESSION_SCOPE = "session"


def publisher_scope(subject: str | None, token: str | None) -> str:
    """Who a publisher is, for its idempotency keys and its rate: the token's (or the authorize
    hook's) ``sub``, or for a token without one a digest of the token itself (which a retry
    sends again unchanged); the hook's unnamed grants share one scope. Every door's tokens go
    by the same rule, so one ``sub`` has one rate whichever door it publishes through."""
    if subject:
        return f"sub:{subject}"
    if token is None:
        return UNNAMED_SESSION_SCOPE
    return "token:" + sha256(token.encode()).hexdigest()


def publish_rate_limited(exc: RateLimited, rate: float, new_topics: int) -> TooManyRequests:
    """The 429 for a publisher over REALTIME_PUBLISH_RATE (``rate_limited``) or over
    REALTIME_NEW_TOPICS_PER_MINUTE (``topic_rate_limited``), with whole seconds to wait."""
    retry_after = max(1, math.ceil(exc.retry_after_ms / 1000))
    if exc.topics:
        return TooManyRequests(
            f"This publisher is over its {new_topics} new topics a minute "
            "(REALTIME_NEW_TOPICS_PER_MINUTE); publish to existing topics, or retry after the "
            "time in Retry-After.",
            code="topic_rate_limited",
            retry_after=retry_after,
        )
    return TooManyRequests(
        f"This publisher is over its rate of {rate:g} events per second "
        "(REALTIME_PUBLISH_RATE); retry after the time in Retry-After.",
        code="rate_limited",
        retry_after=retry_after,
    )


_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _authority(scheme: str, netloc: str) -> str:
    """``host:port`` in lower case, with the scheme's default port written out."""
    netloc = netloc.lower()
    host, colon, port = netloc.rpartition(":")
    if not colon or "]" in port:  # no port (an IPv6 literal's last colon is inside brackets)
        return f"{netloc}:{_DEFAULT_PORTS.get(scheme, '')}"
    return f"{host}:{port or _DEFAULT_PORTS.get(scheme, '')}"


def origin_allowed(
    origin: str | None, *, scheme: str, host: str | None, allowed: tuple[str, ...]
) -> bool:
    """A browser's ``Origin`` must be listed in ``allowed`` (REALTIME_ALLOWED_ORIGINS), or, with
    no list, be this server itself: the same scheme, host and port as the request (``scheme``
    is the request's own, ``https`` behind a TLS proxy with REALTIME_PROXY_HOPS). A client that
    sends no ``Origin`` is no browser page and is let through: it could forge one anyway, and
    its token is what authenticates it. ``Origin: null`` (a sandboxed page) is never allowed."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if allowed:
        return "*" in allowed or origin in {a.lower() for a in allowed}
    page = urlsplit(origin)
    if not host or page.scheme != scheme.lower() or not page.netloc:
        return False
    return _authority(page.scheme, page.netloc) == _authority(page.scheme, host)


def authorize_browser_publish(
    source: str,
    origin: str | None,
    *,
    scheme: str,
    host: str | None,
    allowed: tuple[str, ...],
    cookie: str = TOKEN_COOKIE,
) -> None:
    """Refuse a cross-site publish (403 ``origin_not_allowed``).

    A token from the cookie (or a grant of the app's authorize hook, which rests on its session
    cookie) publishes only with an allowed ``Origin``: every browser sends one
    with a POST, and a request carrying the cookie without one is treated as a forgery (a
    non-browser client sends its token in the ``Authorization`` header). A token from the query
    string is not sent by the browser on its own, but a page holding one could still publish
    with a plain form, so when an ``Origin`` comes with it, it must be allowed too. ``cookie``
    names the door's token cookie in the refusal (the Mercure hub has its own).
    """
    if source in (FROM_COOKIE, FROM_APP) and origin is None:
        credential = f"the {cookie} cookie" if source == FROM_COOKIE else "the app's session"
        raise Forbidden(
            f"A publish authenticated by {credential} must come from a page of an allowed "
            "Origin; other clients send their token as Authorization: Bearer.",
            code="origin_not_allowed",
        )
    if source in (FROM_COOKIE, FROM_APP, FROM_QUERY) and not origin_allowed(
        origin, scheme=scheme, host=host, allowed=allowed
    ):
        raise Forbidden(
            "This Origin may not publish with the browser's credentials "
            "(REALTIME_ALLOWED_ORIGINS); send the token as Authorization: Bearer.",
            code="origin_not_allowed",
        )


def authorize_metrics(authorization: str | None, expected: str) -> None:
    """``/metrics`` behind REALTIME_METRICS_TOKEN: ``Authorization: Bearer <it>`` or 401. The
    comparison takes the same time however much of a guess is right."""
    if not authorization:
        raise AuthError(
            "/metrics needs the REALTIME_METRICS_TOKEN as Authorization: Bearer.",
            code="missing_token",
        )
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise AuthError("That is not this server's REALTIME_METRICS_TOKEN.", code="invalid_token")
