"""What a team's own test of its app looks like: post a note, assert what was published."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask

from realtime.testing import Recording


def sign_in(client: Any, name: str, password: str) -> None:
    answer = client.post("/login", data={"name": name, "password": password})
    assert answer.status_code == 302


def test_a_note_is_published_to_its_authors_topic_only(
    app: Flask, realtime_events: Callable[[Flask], Recording]
) -> None:
    client = app.test_client()
    sign_in(client, "alice", "ecila")
    events = realtime_events(app)

    client.post("/notes", data={"text": "tea at four"})

    [event] = events.events
    assert (event.topic, event.type) == ("user:alice", "note")
    assert json.loads(event.data) == {"text": "tea at four"}
    assert events.on("user:bob") == []


def test_an_empty_note_publishes_nothing(
    app: Flask, realtime_events: Callable[[Flask], Recording]
) -> None:
    client = app.test_client()
    sign_in(client, "bob", "bob")
    events = realtime_events(app)
    client.post("/notes", data={"text": "   "})
    assert events.events == []


def test_a_signed_out_visitor_cannot_follow_a_users_topic(app: Flask) -> None:
    answer = app.test_client().get("/rt/events?topic=user:alice")
    assert (answer.status_code, answer.get_json()["error"]) == (401, "missing_token")
