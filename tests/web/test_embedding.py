"""Embedding realtime in an existing Flask app: the host keeps its pages, errors, limits, static
files and proxy handling; realtime's routes, errors and ``realtime.js`` work under its prefix.

In process against a real Redis; ``tests/system/test_embedding_gunicorn.py`` serves the same kind
of host app under the host's own gunicorn config and a browser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET, make_token
from flask import Flask, request

from realtime import Realtime, create_app
from realtime.core.errors import ConfigError
from realtime.web.state import state

TOKEN = make_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOST_LIMIT = 1000  # the host's own MAX_CONTENT_LENGTH, below realtime's REALTIME_MAX_BODY


def host_app(tmp_path: Path, redis_url: str) -> Flask:
    """A shop with its own home page, 404 page, body limit and static files."""
    static = tmp_path / "static"
    static.mkdir(exist_ok=True)
    (static / "logo.txt").write_text("the shop's logo")
    app = Flask("shop", static_folder=str(static))
    app.config.update(
        MAX_CONTENT_LENGTH=HOST_LIMIT,
        REALTIME_REDIS_URL=redis_url,
        REALTIME_JWT_SECRET=SECRET,
        REALTIME_DATA_DIR=str(tmp_path / "var"),
        REALTIME_REDIS_POOL_SIZE=4,
    )

    @app.get("/")
    def home() -> str:
        return "the shop's home"

    @app.post("/upload")
    def upload() -> str:
        return f"{len(request.get_data())} bytes"

    @app.errorhandler(404)
    def not_found(_err: Exception) -> tuple[str, int]:
        return "<h1>The shop has no such page</h1>", 404

    return app


def fetch(client: Any, path: str) -> Any:
    """GET ``path``, its file (if any) closed: a static file's answer holds it open until then."""
    response = client.get(path)
    response.get_data()
    response.close()
    return response


@pytest.fixture
def embed(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def build(url_prefix: str | None = "/rt", **config: Any) -> Flask:
        app = host_app(tmp_path, redis_url)
        app.config.update(config)
        Realtime(app, url_prefix=url_prefix)
        apps.append(app)
        return app

    yield build
    for app in apps:
        state(app).hub.stop()
        state(app).broker.close()


def test_the_hosts_pages_errors_limits_and_static_files_are_unchanged(
    embed: Callable[..., Flask],
) -> None:
    app = embed()
    client = app.test_client()
    assert client.get("/").get_data(as_text=True) == "the shop's home"
    missing = client.get("/no-such-page")
    assert (missing.status_code, missing.mimetype) == (404, "text/html")
    assert "no such page" in missing.get_data(as_text=True)
    assert app.config["MAX_CONTENT_LENGTH"] == HOST_LIMIT
    too_big = client.post("/upload", data=b"x" * (HOST_LIMIT + 1))
    assert (too_big.status_code, too_big.mimetype) == (413, "text/html")  # werkzeug's, not ours
    assert client.post("/upload", data=b"x" * HOST_LIMIT).get_data(as_text=True) == "1000 bytes"
    assert fetch(client, "/static/logo.txt").get_data(as_text=True) == "the shop's logo"
    assert "SOCK_SERVER_OPTIONS" not in app.config
    assert client.get("/healthz").status_code == 404  # realtime's routes are under /rt only


def test_realtimes_routes_and_files_work_under_the_prefix(embed: Callable[..., Flask]) -> None:
    client = embed().test_client()
    assert client.get("/rt/healthz").get_json() == {"status": "ok"}
    script = fetch(client, "/rt/static/realtime.js")
    assert script.status_code == 200
    assert "export function subscribe" in script.get_data(as_text=True)
    page = fetch(client, "/rt/")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    assert 'src="static/dashboard.js"' in page.get_data(as_text=True)  # relative: under /rt
    assert client.get("/rt/openapi.json").get_json()["openapi"].startswith("3.")


def test_realtimes_errors_are_json_on_its_own_routes(embed: Callable[..., Flask]) -> None:
    client = embed().test_client()
    no_token = client.post("/rt/publish", json={"topic": "t", "data": "x"})
    assert (no_token.status_code, no_token.get_json()["error"]) == (401, "missing_token")
    bad_topic = client.get("/rt/events?topic=has%20space", headers=AUTH)
    assert (bad_topic.status_code, bad_topic.get_json()["error"]) == (400, "invalid_topic")


def test_realtimes_body_limit_is_its_own_per_route(embed: Callable[..., Flask]) -> None:
    """A publish over the host's MAX_CONTENT_LENGTH but within REALTIME_MAX_BODY is stored; one
    over REALTIME_MAX_BODY gets realtime's JSON 413."""
    app = embed(REALTIME_MAX_BODY=4096, REALTIME_MAX_PAYLOAD=2048)
    client = app.test_client()
    event = {"topic": "t", "data": "x" * 2000}
    assert client.post("/rt/publish", json=event, headers=AUTH).status_code == 201
    over = client.post(
        "/rt/publish", data=b"x" * 5000, content_type="application/json", headers=AUTH
    )
    assert (over.status_code, over.get_json()["error"]) == (413, "payload_too_large")


def test_without_a_prefix_the_hosts_home_page_stays_and_no_dashboard_is_mounted(
    embed: Callable[..., Flask],
) -> None:
    app = embed(url_prefix=None)
    client = app.test_client()
    assert client.get("/").get_data(as_text=True) == "the shop's home"
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert not any(r.endpoint.startswith("realtime_dashboard") for r in app.url_map.iter_rules())


def test_an_embedded_app_refuses_proxy_hops_and_says_what_to_do_instead(
    embed: Callable[..., Flask],
) -> None:
    with pytest.raises(ConfigError, match="ProxyFix"):
        embed(REALTIME_PROXY_HOPS=1)


def test_settings_in_app_config_are_validated_like_environment_ones(
    embed: Callable[..., Flask],
) -> None:
    with pytest.raises(ConfigError, match="REALTIME_MAX_QUEUE must be"):
        embed(REALTIME_MAX_QUEUE="lots")
    app = embed(REALTIME_MAX_QUEUE=64, REALTIME_PUBLIC_TOPICS=["news", "sport:*"])
    settings = state(app).settings
    assert settings.max_queue == 64
    assert settings.public_topics.matches("sport:golf")
    assert not settings.public_topics.matches("secret")


@pytest.mark.parametrize("prefix", ["rt", "/a//b", "/<name>"])
def test_a_url_prefix_that_is_not_a_plain_path_is_refused(prefix: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="url_prefix"):
        Realtime(Flask("x"), url_prefix=prefix)


def test_setting_up_one_app_twice_says_so(embed: Callable[..., Flask]) -> None:
    app = embed()
    with pytest.raises(RuntimeError, match="already set up"):
        Realtime(app)


def test_the_service_still_answers_every_path_with_the_json_contract(
    redis_url: str, tmp_path: Path
) -> None:
    """``create_app`` owns its whole app: JSON 404 and 405 everywhere, ``/static`` served."""
    app = create_app(
        {
            "REALTIME_REDIS_URL": redis_url,
            "REALTIME_JWT_SECRET": SECRET,
            "REALTIME_DATA_DIR": str(tmp_path / "var"),
        }
    )
    try:
        client = app.test_client()
        assert client.get("/nope").get_json()["error"] == "not_found"
        assert client.get("/publish").get_json()["error"] == "method_not_allowed"
        assert fetch(client, "/static/realtime.js").status_code == 200
        assert fetch(client, "/").status_code == 200
    finally:
        state(app).hub.stop()
        state(app).broker.close()
