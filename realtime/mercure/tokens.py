"""What a Mercure token grants, in both drafts' shapes, and where a request carries it. Pure.

The signature is checked elsewhere, with the key both front doors share
(:class:`~realtime.core.auth.TokenVerifier`); here the verified header and claims become a
:class:`MercureGrant`, or a 401 ``invalid_token``:

- **Draft 07**: a ``mercure`` claim whose ``publish`` and ``subscribe`` are lists of topic
  selectors (``*``, exact, URI Template) and whose ``payload`` is attached to subscriptions;
  ``exp`` is optional (the connection ends at it when present).
- **Draft 08**: a JWT access token (header ``typ`` ``at+jwt`` or ``application/at+jwt``) whose
  ``authorization_details`` hold Mercure details (``type``
  ``https://mercure.rocks/authorization-detail``, ``actions``, ``topics`` of
  ``{"match", "match_type"}``, an optional ``payload``); ``exp`` is required; ``aud`` and
  ``iss`` are checked against the configured audience and issuer when they are set (a hub is
  often reached under another name than its tokens' audience). A detail that fails to parse
  rejects the whole token, never part of it; unknown actions grant nothing; details of other
  types are someone else's and are skipped.

Where the token travels (:func:`find_token`): the ``Authorization`` header wins and the rest is
ignored; then draft 07's ``authorization`` query parameter; then a cookie, draft 08's
``__Secure-mercure_access_token`` (or ``mercure_access_token``) or draft 07's
``mercureAuthorization``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from realtime.core.auth import FROM_COOKIE, FROM_HEADER, FROM_QUERY, TokenVerifier
from realtime.core.errors import AuthError, BadRequest
from realtime.mercure.selectors import TOPIC, WILDCARD, Selector, SelectorSet, compile_selector

DETAIL_TYPE = "https://mercure.rocks/authorization-detail"
PUBLISH = "publish"
SUBSCRIBE = "subscribe"
MATCH_PARAMETER = {"exact": "match", "urlpattern": "match_urlpattern"}
COOKIES = ("__Secure-mercure_access_token", "mercure_access_token", "mercureAuthorization")
QUERY_PARAMETER = "authorization"
MAX_DETAILS = 50
MAX_MATCHERS = 200


def _invalid(why: str) -> AuthError:
    return AuthError(f"The Mercure token is invalid: {why}.", code="invalid_token")


@dataclass(frozen=True)
class MercureGrant:
    """What one Mercure token allows: the topics it may publish to and read privately."""

    subject: str | None
    publish: SelectorSet | None
    subscribe: SelectorSet | None
    expires_at: float | None
    #: (the selector, its payload) of the subscribe grants that carry one, in order: the first
    #: whose selector matches a subscription's own selector gives that subscription's payload.
    payloads: tuple[tuple[Selector, Any], ...] = field(default=(), compare=False)

    def can_publish(self, topics: Sequence[str]) -> bool:
        """Every topic of an update, canonical and alternate, must be granted."""
        return self.publish is not None and all(self.publish.matches(t) for t in topics)

    def can_read(self, topics: Sequence[str]) -> bool:
        """A private update is readable when one of its topics is granted."""
        return self.subscribe is not None and self.subscribe.matches_any(topics)

    def payload_for(self, selector_text: str, base: str) -> Any:
        """The payload of the first subscribe grant matching a subscription's own selector
        (draft 08: the selector string is matched as if it were a topic); ``None`` if none."""
        for selector, payload in self.payloads:
            if selector.matches(selector_text, base=base):
                return payload
        return None


#: The selector draft 07's payload is given by: it goes with every subscription.
EVERY = Selector(TOPIC, WILDCARD)

ANONYMOUS = MercureGrant(subject=None, publish=None, subscribe=None, expires_at=None)


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"its {name} claim is not a number")
    return float(value)


def _subject(claims: Mapping[str, Any]) -> str | None:
    subject = claims.get("sub")
    if subject is not None and not isinstance(subject, str):
        raise _invalid("its sub claim is not a string")
    return subject or None


def _selector(name: str, value: object, base: str) -> Selector:
    if not isinstance(value, str) or not value:
        raise _invalid("a topic selector is not a non-empty string")
    try:
        return compile_selector(name, value, base=base)
    except BadRequest as exc:
        raise _invalid(exc.message.rstrip(".")) from None


def _draft07(claim: object, base: str) -> tuple[SelectorSet | None, SelectorSet | None, Any]:
    if not isinstance(claim, Mapping):
        raise _invalid("its mercure claim is not an object")
    sets: list[SelectorSet | None] = []
    for action in (PUBLISH, SUBSCRIBE):
        values = claim.get(action)
        if values is None:
            sets.append(None)
            continue
        if not isinstance(values, list) or len(values) > MAX_MATCHERS:
            raise _invalid(f"mercure.{action} is not a list of at most {MAX_MATCHERS} selectors")
        selectors = tuple(_selector("topic", v, base) for v in values)
        sets.append(SelectorSet(selectors, base) if selectors else None)
    return sets[0], sets[1], claim.get("payload")


def _matchers(topics: object, base: str) -> tuple[Selector, ...]:
    if not isinstance(topics, list) or not topics or len(topics) > MAX_MATCHERS:
        raise _invalid(f"a detail's topics is not a list of 1 to {MAX_MATCHERS} matchers")
    selectors = []
    for entry in topics:
        if not isinstance(entry, Mapping) or "match" not in entry:
            raise _invalid('a topics entry is not an object with a "match"')
        match_type = entry.get("match_type", "exact")
        parameter = MATCH_PARAMETER.get(match_type) if isinstance(match_type, str) else None
        if parameter is None:
            raise _invalid(f"match_type {match_type!r} is not one this hub supports")
        selectors.append(_selector(parameter, entry["match"], base))
    return tuple(selectors)


def _draft08(
    claims: Mapping[str, Any], base: str
) -> tuple[SelectorSet | None, SelectorSet | None, tuple[tuple[Selector, Any], ...]]:
    details = claims.get("authorization_details", [])
    if not isinstance(details, list) or len(details) > MAX_DETAILS:
        raise _invalid(f"authorization_details is not a list of at most {MAX_DETAILS} details")
    granted: dict[str, list[Selector]] = {PUBLISH: [], SUBSCRIBE: []}
    payloads: list[tuple[Selector, Any]] = []
    for detail in details:
        if not isinstance(detail, Mapping):
            raise _invalid("an authorization detail is not an object")
        if detail.get("type") != DETAIL_TYPE:
            continue  # another API's detail: not ours to judge
        actions = detail.get("actions")
        if not isinstance(actions, list) or not actions:
            raise _invalid("a detail's actions is not a non-empty list")
        if not all(isinstance(a, str) for a in actions):
            raise _invalid("a detail's actions holds something other than strings")
        matchers = _matchers(detail.get("topics"), base)
        payload = detail.get("payload")
        if payload is not None and not isinstance(payload, Mapping):
            raise _invalid("a detail's payload is not an object")
        for action in (PUBLISH, SUBSCRIBE):
            if action in actions:
                granted[action] += matchers
        if SUBSCRIBE in actions and payload is not None:
            payloads += [(matcher, payload) for matcher in matchers]
    sets = [
        SelectorSet(tuple(granted[a]), base) if granted[a] else None for a in (PUBLISH, SUBSCRIBE)
    ]
    return sets[0], sets[1], tuple(payloads)


def _audience_has(claims: Mapping[str, Any], audience: str) -> bool:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return aud == audience
    return isinstance(aud, list) and audience in aud


def is_access_token(header: Mapping[str, Any]) -> bool:
    """Draft 08's JWT access token: ``typ`` ``at+jwt`` (``application/`` omitted, any case)."""
    typ = header.get("typ")
    if not isinstance(typ, str):
        return False
    typ = typ.lower()
    return typ.removeprefix("application/") == "at+jwt"


def grant_from_claims(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    base: str,
    audience: str | None = None,
    issuer: str | None = None,
) -> MercureGrant:
    """The :class:`MercureGrant` of a token whose signature was verified; 401
    ``invalid_token`` for a token whose claims do not hold. ``base`` is the hub's URL."""
    expires_at = _number(claims, "exp")
    if audience is not None and not _audience_has(claims, audience):
        raise _invalid(f"its aud does not name this hub ({audience})")
    if issuer is not None and claims.get("iss") != issuer:
        raise _invalid("its iss is not this hub's trusted issuer")
    if is_access_token(header):
        if expires_at is None:
            raise _invalid("a JWT access token must carry exp")
        publish, subscribe, payloads = _draft08(claims, base)
    elif "mercure" in claims:
        publish, subscribe, payload = _draft07(claims["mercure"], base)
        # Draft 07 attaches the claim's payload to every subscription the token makes.
        payloads = () if payload is None else ((EVERY, payload),)
    else:
        publish = subscribe = None
        payloads = ()
    return MercureGrant(_subject(claims), publish, subscribe, expires_at, payloads)


def find_token(
    *, authorization: str | None, query: str | None, cookies: Mapping[str, str]
) -> tuple[str, str] | None:
    """The request's token and where it came from: the ``Authorization: Bearer`` header
    (which wins: the others are ignored, cookies being ambient), else draft 07's
    ``authorization`` query parameter, else the first Mercure cookie that is set."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # Draft 08: a malformed presentation is a 400 with an invalid_request challenge.
            raise BadRequest(
                "The Authorization header must be 'Bearer <token>'.",
                code="invalid_request",
            )
        return token.strip(), FROM_HEADER
    if query:
        return query, FROM_QUERY
    for name in COOKIES:
        if cookies.get(name):
            return cookies[name], FROM_COOKIE
    return None


def verify(
    verifier: TokenVerifier,
    token: str,
    *,
    base: str,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
    source: str | None = None,
) -> MercureGrant:
    """The grant of a Mercure ``token``: its signature checked with the key both front doors
    share, then its claims read as above. Every failure is 401 ``invalid_token``, an expired
    token included: draft 08 asks not to say why a token failed. A draft 08 access token is
    refused from the query string (``source`` :data:`FROM_QUERY`), which that draft forbids;
    draft 07's tokens may still come that way."""
    try:
        header, claims = verifier.verified_claims(token, now=now)
    except AuthError as exc:
        if exc.code == "token_too_large":
            raise
        raise _invalid(exc.message.rstrip(".").lower()) from None
    if source == FROM_QUERY and is_access_token(header):
        raise _invalid("a JWT access token is never accepted in the query string")
    return grant_from_claims(header, claims, base=base, audience=audience, issuer=issuer)
