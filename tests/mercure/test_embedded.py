"""The hub in an app embedding realtime: under its prefix, discovered from the app's own views,
and off when the app says so."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, jsonify
from mercure_tokens import PUBLISHER, bearer
from sse_client import InProcessStream

from realtime import Realtime


def with_books(rt_holder: dict[str, Realtime]) -> Callable[[Flask], None]:
    def routes(app: Flask) -> None:
        @app.get("/books/<int:number>")
        def book(number: int) -> Any:
            return rt_holder["rt"].mercure_link(
                jsonify({"@id": f"/books/{number}"}), content_type="application/ld+json"
            )

    return routes


def test_a_view_of_the_app_advertises_the_hub_with_a_cursor_that_misses_nothing(
    host_factory: Callable[..., Any],
) -> None:
    holder: dict[str, Realtime] = {}
    app, rt = host_factory(
        url_prefix="/rt", routes=with_books(holder), REALTIME_MERCURE_ANONYMOUS="1"
    )
    holder["rt"] = rt
    client = app.test_client()
    hub = "/rt/.well-known/mercure"
    before = client.post(
        hub, data={"topic": "https://example.com/books/1"}, headers=bearer(PUBLISHER)
    )
    assert before.status_code == 200

    page = client.get("/books/1")
    link = page.headers["Link"]
    match = re.fullmatch(
        r'<http://localhost/rt/\.well-known/mercure>; rel="mercure"; '
        r'last-event-id="([^"]+)"; content-type="application/ld\+json"',
        link,
    )
    assert match, link
    assert match.group(1) == before.get_data(as_text=True)

    after = client.post(
        hub, data={"topic": "https://example.com/books/1", "data": "new"}, headers=bearer(PUBLISHER)
    )
    response = client.get(
        f"{hub}?topic=https://example.com/books/1&last_event_id={match.group(1)}", buffered=False
    )
    stream = InProcessStream(response)
    assert [e.last_event_id for e in stream.collect(1)] == [after.get_data(as_text=True)]
    stream.close()


def test_the_hub_is_not_served_when_turned_off(host_factory: Callable[..., Any]) -> None:
    app, _rt = host_factory(REALTIME_MERCURE="0")
    client = app.test_client()
    assert client.get("/.well-known/mercure?topic=*").status_code == 404
    assert client.post("/.well-known/mercure", data={"topic": "a"}).status_code == 404


def test_an_id_with_quotes_is_escaped_in_the_discovery_link(
    host_factory: Callable[..., Any],
) -> None:
    holder: dict[str, Realtime] = {}
    app, rt = host_factory(routes=with_books(holder))
    holder["rt"] = rt
    client = app.test_client()
    odd = 'rev "7" \\ of book 1'
    sent = client.post(
        "/.well-known/mercure",
        data={"topic": "https://example.com/books/1", "id": odd},
        headers=bearer(PUBLISHER),
    )
    assert sent.status_code == 200
    link = client.get("/books/1").headers["Link"]
    assert 'last-event-id="rev \\"7\\" \\\\ of book 1"' in link


def test_advertising_a_hub_that_is_off_says_so(host_factory: Callable[..., Any]) -> None:
    holder: dict[str, Realtime] = {}
    app, rt = host_factory(routes=with_books(holder), REALTIME_MERCURE="0")
    holder["rt"] = rt
    app.testing = True
    with pytest.raises(RuntimeError, match="REALTIME_MERCURE=0"):
        app.test_client().get("/books/1")
