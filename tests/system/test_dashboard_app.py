"""Issue 13, acceptance 3: ``examples/dashboard_app`` (flask-login, ``@rt.authorize``) in Chromium.

The example runs under real gunicorn with realtime's shipped config on a real Redis. Alice signs
in; her page follows her own topic with no token (the session cookie is her credential) and
shows the notes her form publishes through ``rt.publish``, and nothing published to Bob; asking
for Bob's topic is 403, over SSE and WebSocket; a page nobody signed in to gets 401; and tokens
still work beside the session, for any topic they grant.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser import chromium_page
from conftest import ROOT, Gunicorn, make_token
from sse_client import SocketStream

from realtime import Publisher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = make_token(publish=("user:*",), subscribe=("user:*",), subject="ops")


@pytest.fixture
def dashboard(gunicorn_factory: Callable[..., Gunicorn], redis_url: str) -> Gunicorn:
    return gunicorn_factory(
        redis_url,
        env={"DASHBOARD_SECRET_KEY": "test-" + "k" * 40, "REALTIME_HEARTBEAT_S": "1"},
        argv=(
            "-c",
            "python:realtime.gunicorn_conf",
            "--pythonpath",
            str(ROOT / "examples"),
            "dashboard_app:create_app()",
        ),
        health="/rt/healthz",
    )


def sign_in(page: Any, server: Gunicorn, name: str, password: str) -> None:
    page.goto(server.url + "/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button")
    page.wait_for_function("() => window.states && window.states.includes('open')")


FETCH_STATUS = """async (path) => {
  const response = await fetch(path);
  const body = await response.json();
  return [response.status, body.error];
}"""

WEBSOCKET_SUBSCRIBE = """(topic) => new Promise((resolve) => {
  const ws = new WebSocket(location.origin.replace("http", "ws") + "/rt/ws");
  ws.onopen = () => ws.send(JSON.stringify({type: "subscribe", req: 1, topics: [topic]}));
  ws.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    if (frame.req === 1) { ws.close(); resolve([frame.type, frame.error || null]); }
  };
})"""


def test_a_signed_in_user_sees_only_their_own_topic_and_tokens_still_work(
    dashboard: Gunicorn, redis_url: str, tmp_path: Path
) -> None:
    with chromium_page(tmp_path / "chromium-profile") as page:
        sign_in(page, dashboard, "alice", "ecila")
        with Publisher(redis_url) as publisher:
            publisher.publish("user:bob", {"text": "for bob only"}, type="note")
        for text in ("first", "second"):
            page.fill("#text", text)
            page.click("#send")
            page.wait_for_function("text => window.notes.some((n) => n.text === text)", arg=text)
            # The note can come down the stream before the POST's answer, after which the page
            # resets the form: wait for that, or the reset empties the next note as it is typed.
            page.wait_for_function("() => document.getElementById('text').value === ''")
        notes = page.evaluate("() => window.notes")
        assert [(n["topic"], n["text"]) for n in notes] == [
            ("user:alice", "first"),
            ("user:alice", "second"),
        ]
        assert page.inner_text("#notes") == "first\nsecond"

        # Bob's topic: 403 over SSE and over the WebSocket, with the session as credential.
        assert page.evaluate(FETCH_STATUS, "/rt/events?topic=user:bob") == [403, "forbidden_topic"]
        assert page.evaluate(WEBSOCKET_SUBSCRIBE, "user:alice") == ["ack", None]
        assert page.evaluate(WEBSOCKET_SUBSCRIBE, "user:bob") == ["error", "forbidden_topic"]

        # Signed out (the session cookie gone), the same page's request is 401.
        page.context.clear_cookies()
        assert page.evaluate(FETCH_STATUS, "/rt/events?topic=user:alice") == [
            401,
            "missing_token",
        ]

    # A token works beside the sessions, for any topic it grants.
    stream = SocketStream(dashboard.port, f"/rt/events?topic=user:bob&access_token={TOKEN}")
    try:
        stream.read_events(_deadline(5))
        assert stream.status == 200
        request = urllib.request.Request(
            dashboard.url + "/rt/publish",
            data=json.dumps({"topic": "user:bob", "data": "by token"}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
        events: list[Any] = []
        deadline = _deadline(5)
        while not any(e.data == "by token" for e in events) and time.monotonic() < deadline:
            events += stream.read_events(deadline)
        assert [e.data for e in events if e.type == "message"] == ["by token"]
    finally:
        stream.close()


def _deadline(seconds: float) -> float:
    return time.monotonic() + seconds
