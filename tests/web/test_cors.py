"""``REALTIME_CORS_ORIGINS``: exact origins get CORS with credentials on /events, /publish and
/presence, preflights included; any other origin, and the host app's own routes, get none.

In process; ``tests/system/test_cors_browser.py`` proves it in Chromium across two origins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import HostApp, make_token
from flask import Flask

from realtime.core.access import TOKEN_COOKIE
from realtime.core.config import load_settings
from realtime.core.errors import ConfigError

DASHBOARD = "https://dashboard.example.com"
OTHER = "https://evil.example"
TOKEN = make_token()


def upload_route(app: Flask) -> None:
    @app.post("/upload")
    def upload() -> str:
        return "ok"


@pytest.fixture
def host(host_factory: Callable[..., HostApp]) -> Callable[..., Flask]:
    """A host app with a route of its own and realtime under /rt, CORS for ``cors``."""

    def build(cors: str = DASHBOARD) -> Flask:
        app, _ = host_factory(url_prefix="/rt", routes=upload_route, REALTIME_CORS_ORIGINS=cors)
        return app

    return build


def preflight(client: Any, path: str, origin: str, method: str, headers: str) -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def test_a_listed_origin_gets_its_preflights_answered_with_credentials(
    host: Callable[..., Flask],
) -> None:
    client = host().test_client()
    answer = preflight(client, "/rt/publish", DASHBOARD, "POST", "content-type,idempotency-key")
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    allowed = answer.headers["Access-Control-Allow-Headers"].lower()
    assert {"content-type", "idempotency-key"} <= set(allowed.replace(" ", "").split(","))
    resume = preflight(client, "/rt/events", DASHBOARD, "GET", "last-event-id")
    assert "last-event-id" in resume.headers["Access-Control-Allow-Headers"].lower()


def test_the_mercure_hub_answers_cors_and_lets_a_page_read_its_cursors(
    host: Callable[..., Flask],
) -> None:
    client = host().test_client()
    hub = "/rt/.well-known/mercure"
    answer = preflight(client, hub, DASHBOARD, "GET", "last-event-id,cache-control,authorization")
    assert answer.headers["Access-Control-Allow-Origin"] == DASHBOARD
    allowed = set(
        answer.headers["Access-Control-Allow-Headers"].lower().replace(" ", "").split(",")
    )
    assert {"last-event-id", "cache-control", "authorization"} <= allowed
    refused = client.get(f"{hub}?topic=*", headers={"Origin": DASHBOARD})  # no token: 401
    assert refused.headers["Access-Control-Allow-Origin"] == DASHBOARD
    exposed = refused.headers["Access-Control-Expose-Headers"].lower()
    assert {"link", "mercure-last-event-id", "www-authenticate"} <= set(
        exposed.replace(" ", "").split(",")
    )
    api = preflight(client, f"{hub}/subscriptions/exact/x", DASHBOARD, "GET", "authorization")
    assert api.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert (
        preflight(client, hub, OTHER, "GET", "last-event-id").headers.get(
            "Access-Control-Allow-Origin"
        )
        is None
    )


def test_a_listed_origin_reads_answers_and_errors_alike(host: Callable[..., Flask]) -> None:
    client = host().test_client()
    refused = client.get("/rt/events?topic=secret", headers={"Origin": DASHBOARD})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == DASHBOARD  # the page reads why
    published = client.post(
        "/rt/publish",
        json={"topic": "t", "data": "x"},
        headers={"Origin": DASHBOARD, "Authorization": f"Bearer {TOKEN}"},
    )
    assert published.status_code == 201
    assert "Retry-After" in published.headers["Access-Control-Expose-Headers"]


def test_an_origin_not_listed_gets_no_cors_header(host: Callable[..., Flask]) -> None:
    client = host().test_client()
    for answer in (
        preflight(client, "/rt/publish", OTHER, "POST", "content-type"),
        client.get("/rt/events?topic=t", headers={"Origin": OTHER}),
    ):
        assert "Access-Control-Allow-Origin" not in answer.headers


def test_the_host_apps_own_routes_get_no_cors_header(host: Callable[..., Flask]) -> None:
    answer = host().test_client().post("/upload", headers={"Origin": DASHBOARD})
    assert answer.status_code == 200
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_without_the_setting_nothing_answers_cors(host: Callable[..., Flask]) -> None:
    answer = preflight(host(cors="").test_client(), "/rt/publish", DASHBOARD, "POST", "x")
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_a_cors_origin_may_publish_with_the_cookie(host: Callable[..., Flask]) -> None:
    """Allowing a page to read streams with credentials trusts it: its cookie publishes pass
    the Origin rule as REALTIME_ALLOWED_ORIGINS' do; another origin's do not."""
    client = host().test_client()
    client.set_cookie(TOKEN_COOKIE, TOKEN)
    body = {"topic": "t", "data": "x"}
    assert client.post("/rt/publish", json=body, headers={"Origin": DASHBOARD}).status_code == 201
    other = client.post("/rt/publish", json=body, headers={"Origin": OTHER})
    assert (other.status_code, other.get_json()["error"]) == (403, "origin_not_allowed")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://App.Example.com/", ("https://app.example.com",)),
        (
            "https://a.example:443, http://localhost:3000",
            ("https://a.example", "http://localhost:3000"),
        ),
        ("http://a.example:80,http://a.example", ("http://a.example",)),
    ],
)
def test_origins_are_read_as_a_browser_writes_them(raw: str, expected: tuple[str, ...]) -> None:
    assert load_settings(environ={"REALTIME_CORS_ORIGINS": raw}).cors_origins == expected


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("*", "wildcard"),
        ("https://*.example.com", "wildcard"),
        ("app.example.com", "look like"),
        ("https://app.example.com/path", "look like"),
        ("ftp://files.example.com", "look like"),
    ],
)
def test_origins_that_are_not_exact_are_refused_with_a_sentence(raw: str, says: str) -> None:
    with pytest.raises(ConfigError, match=f"REALTIME_CORS_ORIGINS.*{says}"):
        load_settings(environ={"REALTIME_CORS_ORIGINS": raw})
