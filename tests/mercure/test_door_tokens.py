"""Tokens of both drafts' shapes, from the header, the query and the cookies, at the hub's door.

One table: each row a token, where it travels, and what the hub answers a publish with (200, or
the refusal and its Bearer challenge), as draft 07 (a ``mercure`` claim; header, ``authorization``
query, ``mercureAuthorization`` cookie) and draft 08 (an ``at+jwt`` access token with
``authorization_details``; header or ``__Secure-mercure_access_token`` / ``mercure_access_token``
cookie, never the query) say. Then the same sources on a subscription, by whether a private
update arrives, and the configured ``aud`` / ``iss`` checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mercure_tokens import PUBLISHER, access_token, bearer, draft07, draft08
from test_door import HUB, publish, subscribe

from realtime.core.auth import mint_token
from realtime.mercure.tokens import DETAIL_TYPE

ALL = [{"match": "*"}]
D08 = draft08(publish=ALL)
SAME_ORIGIN = {"Origin": "http://localhost"}

ACCEPTED = (200, None, None)


def refused(status: int, code: str, challenge: str) -> tuple[int, str, str]:
    return (status, code, challenge)


INVALID = refused(401, "invalid_token", 'Bearer error="invalid_token"')

CASES: list[tuple[str, str, str, tuple[int, str | None, str | None]]] = [
    # (name, token, where, answer)
    ("07 header", PUBLISHER, "header", ACCEPTED),
    ("07 query", PUBLISHER, "query", ACCEPTED),
    ("07 cookie mercureAuthorization", PUBLISHER, "cookie:mercureAuthorization", ACCEPTED),
    ("07 cookie mercure_access_token", PUBLISHER, "cookie:mercure_access_token", ACCEPTED),
    ("08 header", D08, "header", ACCEPTED),
    ("08 secure cookie", D08, "cookie:__Secure-mercure_access_token", ACCEPTED),
    ("08 cookie", D08, "cookie:mercure_access_token", ACCEPTED),
    ("08 query: forbidden by draft 08", D08, "query", INVALID),
    ("07 expired", draft07(publish=["*"], exp=time.time() - 60), "header", INVALID),
    ("08 expired", draft08(publish=ALL, ttl_s=-60), "header", INVALID),
    (
        "08 without exp",
        access_token([{"type": DETAIL_TYPE, "actions": ["publish"], "topics": ALL}], exp=None),
        "header",
        INVALID,
    ),
    (
        "07 signed with another key",
        draft07(publish=["*"]).rsplit(".", 1)[0] + ".AAAA",
        "header",
        INVALID,
    ),
    (
        "07 alg none",
        jwt.encode({"mercure": {"publish": ["*"]}}, "", algorithm="none"),
        "header",
        INVALID,
    ),
    ("not a JWT", "garbage", "header", INVALID),
    (
        "08 malformed detail",
        access_token(
            [{"type": DETAIL_TYPE, "actions": "publish", "topics": ALL}],
            exp=int(time.time()) + 60,
        ),
        "header",
        INVALID,
    ),
    (
        "07 no publish claim",
        draft07(subscribe=["*"]),
        "header",
        refused(403, "insufficient_scope", 'Bearer error="insufficient_scope"'),
    ),
    (
        "08 unknown action only",
        draft08(),
        "header",
        refused(403, "insufficient_scope", 'Bearer error="insufficient_scope"'),
    ),
    (
        "Basic scheme",
        "dXNlcjpwYXNz",
        "basic",
        refused(400, "invalid_request", 'Bearer error="invalid_request"'),
    ),
    ("no token at all", "", "none", refused(401, "missing_token", "Bearer")),
]


def send(client: Any, token: str, where: str, data: dict[str, str]) -> Any:
    headers = dict(SAME_ORIGIN)
    path = HUB
    if where == "header":
        headers.update(bearer(token))
    elif where == "basic":
        headers["Authorization"] = f"Basic {token}"
    elif where == "query":
        path = f"{HUB}?authorization={token}"
    elif where.startswith("cookie:"):
        client.set_cookie(where.split(":", 1)[1], token)
    return client.post(path, data=data, headers=headers)


@pytest.mark.parametrize(
    ("token", "where", "answer"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_publish_token_is_accepted_or_refused_as_its_draft_says(
    mercure: Any, token: str, where: str, answer: tuple[int, str | None, str | None]
) -> None:
    response = send(mercure, token, where, {"topic": "https://example.com/t", "data": "x"})
    status, code, challenge = answer
    assert response.status_code == status, response.get_data(as_text=True)
    if code is None:
        assert response.get_data(as_text=True).startswith("urn:uuid:")
    else:
        assert response.get_json()["error"] == code
        assert response.headers["WWW-Authenticate"] == challenge


def test_the_header_wins_and_a_cookie_beside_it_is_ignored(mercure: Any) -> None:
    mercure.set_cookie("mercureAuthorization", "garbage")
    assert mercure.post(HUB, data={"topic": "a"}, headers=bearer(PUBLISHER)).status_code == 200
    mercure.set_cookie("mercureAuthorization", PUBLISHER)
    assert (
        mercure.post(
            HUB, data={"topic": "a"}, headers={**bearer("garbage"), **SAME_ORIGIN}
        ).status_code
        == 401
    )


SUBSCRIBE_SOURCES = [
    ("07 header", draft07(subscribe=["https://example.com/p"]), "header"),
    ("07 query", draft07(subscribe=["https://example.com/p"]), "query"),
    ("07 cookie", draft07(subscribe=["https://example.com/p"]), "cookie:mercureAuthorization"),
    ("08 header", draft08(subscribe=[{"match": "https://example.com/p"}]), "header"),
    (
        "08 cookie",
        draft08(subscribe=[{"match": "https://example.com/p"}]),
        "cookie:__Secure-mercure_access_token",
    ),
]


@pytest.mark.parametrize(
    ("token", "where"), [c[1:] for c in SUBSCRIBE_SOURCES], ids=[c[0] for c in SUBSCRIBE_SOURCES]
)
def test_a_subscribers_token_from_any_of_its_drafts_sources_reads_private_updates(
    mercure: Any, token: str, where: str
) -> None:
    query = "match=https://example.com/p"
    headers: dict[str, str] = {}
    if where == "header":
        headers = bearer(token)
    elif where == "query":
        query += f"&authorization={token}"
    else:
        mercure.set_cookie(where.split(":", 1)[1], token)
    stream = subscribe(mercure, query, headers)
    mercure.delete_cookie("mercureAuthorization")
    mercure.delete_cookie("__Secure-mercure_access_token")
    sent = publish(mercure, topic="https://example.com/p", data="private", private="on")
    assert [e.last_event_id for e in stream.next_events()] == [sent]
    stream.close()


@pytest.mark.parametrize(
    ("setting", "claims", "status"),
    [
        (
            {"REALTIME_MERCURE_AUDIENCE": "https://mercure.example"},
            {"aud": "https://mercure.example"},
            200,
        ),
        (
            {"REALTIME_MERCURE_AUDIENCE": "https://mercure.example"},
            {"aud": ["x", "https://mercure.example"]},
            200,
        ),
        (
            {"REALTIME_MERCURE_AUDIENCE": "https://mercure.example"},
            {"aud": "https://other.example"},
            401,
        ),
        ({"REALTIME_MERCURE_AUDIENCE": "https://mercure.example"}, {}, 401),
        ({"REALTIME_MERCURE_ISSUER": "https://auth.example"}, {"iss": "https://auth.example"}, 200),
        ({"REALTIME_MERCURE_ISSUER": "https://auth.example"}, {"iss": "https://evil.example"}, 401),
        ({}, {"aud": "anything", "iss": "anyone"}, 200),  # unset: not checked
    ],
)
def test_aud_and_iss_are_checked_only_when_configured(
    app_factory: Callable[..., Any], setting: dict[str, str], claims: dict[str, Any], status: int
) -> None:
    client = app_factory(**setting).test_client()
    for token in (draft07(publish=["*"], **claims), draft08(publish=ALL, **claims)):
        response = client.post(HUB, data={"topic": "a"}, headers=bearer(token))
        assert response.status_code == status, response.get_data(as_text=True)


def test_one_key_verifies_both_doors_tokens(mercure: Any) -> None:
    from conftest import make_token

    own = make_token(publish=("news",))
    assert (
        mercure.post(
            "/publish", json={"topic": "news", "data": "x"}, headers=bearer(own)
        ).status_code
        == 201
    )
    assert mercure.post(HUB, data={"topic": "a"}, headers=bearer(PUBLISHER)).status_code == 200


def test_with_a_public_key_both_doors_verify_tokens_signed_by_its_private_key(
    app_factory: Callable[..., Any],
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    client = app_factory(REALTIME_JWT_SECRET="", REALTIME_JWT_PUBLIC_KEY=public_pem).test_client()
    mercure_token = jwt.encode({"mercure": {"publish": ["*"]}}, private_pem, algorithm="ES256")
    published = client.post(HUB, data={"topic": "a"}, headers=bearer(mercure_token))
    assert published.status_code == 200
    own = mint_token(private_key=private_pem, publish=["news"])
    assert (
        client.post(
            "/publish", json={"topic": "news", "data": "x"}, headers=bearer(own)
        ).status_code
        == 201
    )
    # The shared HS256 secret of the other tests is no key here.
    assert client.post(HUB, data={"topic": "a"}, headers=bearer(PUBLISHER)).status_code == 401
