"""Mercure tokens of both drafts: what each grants, what is refused, where each is found."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.core.auth import FROM_COOKIE, FROM_HEADER, FROM_QUERY, TokenVerifier
from realtime.core.errors import AuthError, BadRequest
from realtime.mercure.tokens import (
    DETAIL_TYPE,
    find_token,
    grant_from_claims,
    verify,
)

HUB = "https://hub.example/.well-known/mercure"
JWT = {"alg": "HS256", "typ": "JWT"}
AT = {"alg": "HS256", "typ": "at+jwt"}


def detail(actions: list[Any], topics: list[Any], **extra: Any) -> dict[str, Any]:
    return {"type": DETAIL_TYPE, "actions": actions, "topics": topics, **extra}


def test_a_draft_07_claim_grants_its_selectors() -> None:
    grant = grant_from_claims(
        JWT,
        {
            "sub": "alice",
            "mercure": {
                "publish": ["https://example.com/books/{id}"],
                "subscribe": ["https://example.com/users/alice/{?topic}"],
                "payload": {"name": "Alice"},
            },
        },
        base=HUB,
    )
    assert grant.subject == "alice"
    assert grant.expires_at is None  # optional in draft 07
    assert grant.can_publish(["https://example.com/books/1"])
    assert not grant.can_publish(["https://example.com/books/1", "https://example.com/other"])
    alternate = "https://example.com/users/alice/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"
    assert grant.can_read(["https://example.com/books/1", alternate])
    assert not grant.can_read(["https://example.com/books/1"])
    assert grant.payload_for("https://example.com/users/alice/{?topic}", HUB) == {"name": "Alice"}


def test_a_draft_08_access_token_grants_its_details() -> None:
    grant = grant_from_claims(
        AT,
        {
            "sub": "urn:uuid:1",
            "exp": 2_000_000_000,
            "authorization_details": [
                detail(
                    ["subscribe"],
                    [{"match": "https://example.com/users/42/*", "match_type": "urlpattern"}],
                    payload={"t": 1},
                ),
                detail(["publish", "a-future-action"], [{"match": "https://example.com/b"}]),
                {"type": "https://another.example/detail", "anything": True},
            ],
        },
        base=HUB,
    )
    assert grant.can_read(["https://example.com/books/1", "https://example.com/users/42/books/1"])
    assert not grant.can_read(["https://example.com/users/43/books/1"])
    assert grant.can_publish(["https://example.com/b"])
    assert not grant.can_publish(["https://example.com/c"])
    assert grant.expires_at == 2_000_000_000
    assert grant.payload_for("https://example.com/users/42/x", HUB) == {"t": 1}


def test_a_wildcard_grants_every_topic_in_either_draft() -> None:
    for header, claims in (
        (JWT, {"mercure": {"subscribe": ["*"]}}),
        (AT, {"exp": 1, "authorization_details": [detail(["subscribe"], [{"match": "*"}])]}),
    ):
        assert grant_from_claims(header, claims, base=HUB).can_read(["anything"])


def test_a_token_without_mercure_rights_grants_nothing() -> None:
    for header, claims in ((JWT, {"sub": "x"}), (AT, {"exp": 1}), (JWT, {"mercure": {}})):
        grant = grant_from_claims(header, claims, base=HUB)
        assert not grant.can_read(["t"])
        assert not grant.can_publish(["t"])


INVALID: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, str]]] = [
    ("mercure not an object", JWT, {"mercure": ["*"]}, {}),
    ("publish not a list", JWT, {"mercure": {"publish": "*"}}, {}),
    ("a selector not a string", JWT, {"mercure": {"subscribe": [7]}}, {}),
    ("a selector with a control character", JWT, {"mercure": {"subscribe": ["a\x00"]}}, {}),
    ("access token without exp", AT, {"authorization_details": []}, {}),
    ("details not a list", AT, {"exp": 1, "authorization_details": {}}, {}),
    ("a detail not an object", AT, {"exp": 1, "authorization_details": ["x"]}, {}),
    ("empty actions", AT, {"exp": 1, "authorization_details": [detail([], [{"match": "*"}])]}, {}),
    (
        "a non-string action",
        AT,
        {"exp": 1, "authorization_details": [detail(["subscribe", 1], [{"match": "*"}])]},
        {},
    ),
    ("empty topics", AT, {"exp": 1, "authorization_details": [detail(["subscribe"], [])]}, {}),
    (
        "a matcher not an object",
        AT,
        {"exp": 1, "authorization_details": [detail(["subscribe"], ["*"])]},
        {},
    ),
    (
        "an unknown match_type",
        AT,
        {
            "exp": 1,
            "authorization_details": [
                detail(["subscribe"], [{"match": "a", "match_type": "regex"}])
            ],
        },
        {},
    ),
    (
        "a bad URL pattern",
        AT,
        {
            "exp": 1,
            "authorization_details": [
                detail(["subscribe"], [{"match": "https://x/(", "match_type": "urlpattern"}])
            ],
        },
        {},
    ),
    ("exp not a number", JWT, {"exp": "soon", "mercure": {}}, {}),
    ("aud elsewhere", JWT, {"aud": "https://other.example", "mercure": {}}, {"audience": HUB}),
    ("no aud", JWT, {"mercure": {}}, {"audience": HUB}),
    ("iss elsewhere", AT, {"exp": 1, "iss": "https://evil"}, {"issuer": "https://app.example"}),
]


@pytest.mark.parametrize(
    ("header", "claims", "checks"), [r[1:] for r in INVALID], ids=[r[0] for r in INVALID]
)
def test_a_malformed_token_is_401_invalid_token_and_never_partly_accepted(
    header: dict[str, Any], claims: dict[str, Any], checks: dict[str, str]
) -> None:
    with pytest.raises(AuthError) as raised:
        grant_from_claims(header, claims, base=HUB, **checks)
    assert (raised.value.status, raised.value.code) == (401, "invalid_token")


def test_aud_may_be_a_list_and_typ_is_read_without_case_or_prefix() -> None:
    claims = {"exp": 1, "aud": ["https://x", HUB], "iss": "https://app.example"}
    for typ in ("at+jwt", "AT+JWT", "application/at+jwt"):
        grant_from_claims(
            {"typ": typ}, claims, base=HUB, audience=HUB, issuer="https://app.example"
        )


@pytest.mark.parametrize(
    ("authorization", "query", "cookies", "expected"),
    [
        ("Bearer h", "q", {"mercureAuthorization": "c"}, ("h", FROM_HEADER)),
        ("bearer h", None, {}, ("h", FROM_HEADER)),
        (None, "q", {"mercureAuthorization": "c"}, ("q", FROM_QUERY)),
        (None, None, {"mercureAuthorization": "c07"}, ("c07", FROM_COOKIE)),
        (None, None, {"__Secure-mercure_access_token": "c08"}, ("c08", FROM_COOKIE)),
        (None, None, {"mercure_access_token": "c"}, ("c", FROM_COOKIE)),
        (None, None, {"other": "x"}, None),
        (None, "", {}, None),
    ],
)
def test_the_header_wins_then_the_query_then_a_cookie(
    authorization: str | None,
    query: str | None,
    cookies: dict[str, str],
    expected: tuple[str, str] | None,
) -> None:
    assert find_token(authorization=authorization, query=query, cookies=cookies) == expected


def test_a_malformed_authorization_header_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as raised:
        find_token(authorization="Basic abc", query="q", cookies={})
    assert (raised.value.status, raised.value.code) == (400, "invalid_request")


SEGMENTS = st.sampled_from(["a", "b", "c"])
TOPICS = st.builds(lambda p: "https://example.com/" + "/".join(p), st.lists(SEGMENTS, max_size=3))
SELECTOR_07 = st.one_of(
    TOPICS,
    st.just("*"),
    st.builds(lambda t: t + "/{x}", TOPICS),
    st.builds(lambda t: t + "{/x}", TOPICS),
)


@settings(max_examples=300, deadline=None)
@given(
    granted=st.lists(SELECTOR_07, max_size=3),
    update_topics=st.lists(TOPICS, min_size=1, max_size=3),
)
def test_a_private_update_is_readable_only_through_a_granted_topic(
    granted: list[str], update_topics: list[str]
) -> None:
    """Private updates never leak: a grant reads one exactly when one of the update's topics
    matches one of its own selectors, checked here by a plain re-statement of draft 07's rule."""
    grant = grant_from_claims(JWT, {"mercure": {"subscribe": granted}}, base=HUB)

    def plain_match(selector: str, topic: str) -> bool:
        if selector in ("*", topic):
            return True
        if selector.endswith("/{x}"):
            rest = topic.removeprefix(selector[: -len("{x}")])
            return rest != topic and "/" not in rest
        if selector.endswith("{/x}"):  # no segment, or exactly one more
            stem = selector[: -len("{/x}")]
            rest = topic.removeprefix(stem + "/")
            return topic == stem or (rest != topic and "/" not in rest)
        return False

    expected = any(plain_match(s, t) for s in granted for t in update_topics)
    assert grant.can_read(update_topics) is expected


# -- signed tokens of both shapes, found where each draft puts them ------------------------------

SECRET = "mercure-test-secret-" + "z" * 40
NOW = 1_700_000_000


def signed(claims: dict[str, Any], typ: str = "JWT", secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": typ})


DRAFT_07 = signed({"mercure": {"publish": ["https://example.com/books/{id}"]}})
DRAFT_08 = signed(
    {
        "iss": "https://app.example",
        "aud": HUB,
        "sub": "pub",
        "exp": NOW + 60,
        "authorization_details": [
            detail(
                ["publish"],
                [{"match": "https://example.com/books/:id", "match_type": "urlpattern"}],
            )
        ],
    },
    typ="at+jwt",
)

SIGNED: list[tuple[str, dict[str, Any], bool]] = [
    ("07 in the header", {"authorization": f"Bearer {DRAFT_07}"}, True),
    ("07 in the query", {"query": DRAFT_07}, True),
    ("07 in its cookie", {"cookies": {"mercureAuthorization": DRAFT_07}}, True),
    ("08 in the header", {"authorization": f"Bearer {DRAFT_08}"}, True),
    ("08 in its cookie", {"cookies": {"__Secure-mercure_access_token": DRAFT_08}}, True),
    (
        "header wins over a bad cookie",
        {"authorization": f"Bearer {DRAFT_07}", "cookies": {"mercureAuthorization": "junk"}},
        True,
    ),
    ("wrong key", {"authorization": "Bearer " + signed({"mercure": {}}, secret="k" * 40)}, False),
    ("expired", {"authorization": "Bearer " + signed({"exp": NOW - 1, "mercure": {}})}, False),
    ("garbage", {"query": "not.a.jwt"}, False),
    (
        "08 for another hub",
        {
            "authorization": "Bearer "
            + signed({"aud": "https://other/.well-known/mercure", "exp": NOW + 60}, typ="at+jwt")
        },
        False,
    ),
]


@pytest.mark.parametrize(("where", "accepted"), [s[1:] for s in SIGNED], ids=[s[0] for s in SIGNED])
def test_signed_tokens_are_accepted_or_refused_as_each_draft_says(
    where: dict[str, Any], accepted: bool
) -> None:
    found = find_token(
        authorization=where.get("authorization"),
        query=where.get("query"),
        cookies=where.get("cookies", {}),
    )
    assert found is not None
    verifier = TokenVerifier(secret=SECRET)
    if not accepted:
        with pytest.raises(AuthError) as raised:
            verify(verifier, found[0], base=HUB, audience=HUB, now=NOW)
        assert raised.value.code == "invalid_token"  # never why: expired looks like forged
        return
    audience = HUB if found[0] == DRAFT_08 else None  # draft 07 tokens name no audience
    grant = verify(verifier, found[0], base=HUB, audience=audience, now=NOW)
    assert grant.can_publish(["https://example.com/books/1"])
    assert not grant.can_publish(["https://example.com/authors/1"])
