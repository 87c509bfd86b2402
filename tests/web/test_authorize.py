"""``@rt.authorize``: the host app says what a request without a token may do, from its own
session or headers; tokens keep working beside it, and refusals keep the JSON contract.

In process against a real Redis, with a hook that reads a header standing in for the app's
login; ``tests/system/test_dashboard_app.py`` runs the example app's flask-login hook in Chromium.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import HostApp, make_token
from flask import Flask, Request
from sse_client import InProcessStream

from realtime import Access, Realtime

HOST = "http://localhost"  # the test client's own origin


def whoever(request: Request) -> Access | None:
    """The app's login, reduced to a header: a signed-in user follows and publishes to their
    own topic; anyone else gets nothing."""
    user = request.headers.get("X-User")
    if not user:
        return None
    return Access(subscribe=[f"user:{user}"], publish=[f"user:{user}"], subject=user)


@pytest.fixture
def host(host_factory: Callable[..., HostApp]) -> Callable[..., HostApp]:
    def build(hook: Callable[[Request], Any] | None = whoever) -> HostApp:
        app, rt = host_factory(REALTIME_HEARTBEAT_S=5)
        if hook is not None:
            rt.authorize(hook)  # after init_app, as a module-level decorator often runs
        return app, rt

    return build


def test_a_signed_in_user_follows_their_own_topic(
    host: Callable[..., tuple[Flask, Realtime]],
) -> None:
    app, rt = host()
    response = app.test_client().get(
        "/events?topic=user:alice", headers={"X-User": "alice"}, buffered=False
    )
    assert response.status_code == 200
    stream = InProcessStream(response)
    try:
        rt.publish("user:alice", "hello")
        [event] = stream.collect(1)
        assert event.data == "hello"
    finally:
        stream.close()


def test_nobody_signed_in_is_401_and_another_users_topic_403(
    host: Callable[..., tuple[Flask, Realtime]],
) -> None:
    client = host()[0].test_client()
    anonymous = client.get("/events?topic=user:alice")
    assert (anonymous.status_code, anonymous.get_json()["error"]) == (401, "missing_token")
    other = client.get("/events?topic=user:bob", headers={"X-User": "alice"})
    assert (other.status_code, other.get_json()["error"]) == (403, "forbidden_topic")


def test_a_token_is_used_as_ever_and_the_hook_is_not_asked(
    host: Callable[..., tuple[Flask, Realtime]],
) -> None:
    def refuse(_request: Request) -> Access | None:
        raise AssertionError("the hook was asked although a token came")

    client = host(refuse)[0].test_client()
    token = make_token(publish=("user:bob",), subscribe=("user:bob",))
    answer = client.post(
        "/publish",
        json={"topic": "user:bob", "data": "x"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201


def test_the_hooks_grant_publishes_from_the_apps_own_pages_only(
    host: Callable[..., tuple[Flask, Realtime]],
) -> None:
    """Its grant rests on the app's session cookie, which a browser sends to any site's
    request: as with the token cookie, a publish needs an allowed Origin."""
    client = host()[0].test_client()
    own = {"X-User": "alice", "Origin": HOST}
    ok = client.post("/publish", json={"topic": "user:alice", "data": "x"}, headers=own)
    assert ok.status_code == 201
    foreign = client.post(
        "/publish",
        json={"topic": "user:alice", "data": "x"},
        headers={"X-User": "alice", "Origin": "https://evil.example"},
    )
    assert (foreign.status_code, foreign.get_json()["error"]) == (403, "origin_not_allowed")
    no_origin = client.post(
        "/publish", json={"topic": "user:alice", "data": "x"}, headers={"X-User": "alice"}
    )
    assert (no_origin.status_code, no_origin.get_json()["error"]) == (403, "origin_not_allowed")
    elsewhere = client.post("/publish", json={"topic": "user:bob", "data": "x"}, headers=own)
    assert (elsewhere.status_code, elsewhere.get_json()["error"]) == (403, "forbidden_topic")
    anonymous = client.post(
        "/publish", json={"topic": "user:alice", "data": "x"}, headers={"Origin": HOST}
    )
    assert (anonymous.status_code, anonymous.get_json()["error"]) == (401, "missing_token")


def test_the_hooks_subject_keys_its_publishes_like_a_tokens_sub(
    host: Callable[..., tuple[Flask, Realtime]],
) -> None:
    """An idempotency key sent by alice's session is alice's, as if her token had sub alice."""
    app, rt = host()
    answer = app.test_client().post(
        "/publish",
        json={"topic": "user:alice", "data": "x"},
        headers={"X-User": "alice", "Origin": HOST, "Idempotency-Key": "k"},
    )
    assert (
        rt.publish("user:alice", "x", idempotency_key="k", publisher="alice")
        == (answer.get_json()["id"])
    )


def test_presence_asks_the_hook_too(host: Callable[..., tuple[Flask, Realtime]]) -> None:
    client = host()[0].test_client()
    mine = client.get("/presence?topic=user:alice", headers={"X-User": "alice"})
    assert mine.status_code == 200
    assert mine.get_json()["topic"] == "user:alice"
    theirs = client.get("/presence?topic=user:bob", headers={"X-User": "alice"})
    assert theirs.status_code == 403


def test_a_hook_returning_something_else_is_a_bug_with_a_sentence(
    host: Callable[..., tuple[Flask, Realtime]],
) -> None:
    app, _ = host(lambda _request: ["user:alice"])
    app.testing = True  # let the bug surface as the exception it is
    with pytest.raises(TypeError, match=r"realtime\.Access"):
        app.test_client().get("/events?topic=user:alice")
