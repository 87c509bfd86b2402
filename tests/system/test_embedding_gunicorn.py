"""Issue 13, acceptance 7 under real servers: an existing app embeds ``Realtime(app,
url_prefix="/rt")`` and runs under its *own* gunicorn config, which takes realtime's hooks
(``from realtime.gunicorn_conf import ...``) beside its own settings.

The shop's pages, 404 page, body limit and static files are unchanged; its page built on
``/rt/static/realtime.js`` receives what its view publishes, in Chromium; and on SIGTERM every
stream under ``/rt`` ends with ``shutdown`` at once, so the worker exits well inside its
graceful timeout.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import simple_websocket
from browser import chromium_page
from conftest import ROOT, Gunicorn, make_token
from sse_client import SocketStream

from realtime.storage.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = make_token()

# The team's own gunicorn config: its own bind, workers and connection budget, realtime's hooks
# (the configuration check, draining streams on SIGTERM, the embedded Redis when there is no
# URL, token redaction in the logs) taken by name.
HOST_CONFIG = """\
import os

from realtime.gunicorn_conf import (  # noqa: F401 (gunicorn reads them from this module)
    child_exit,
    logger_class,
    on_exit,
    on_starting,
    post_worker_init,
    worker_exit,
)

bind = os.environ["SHOP_BIND"]
workers = 1
worker_class = "gevent"
worker_connections = 1100  # REALTIME_MAX_CONNECTIONS 1000 + REALTIME_CONNECTION_HEADROOM 100
keepalive = 5
graceful_timeout = 10
control_socket_disable = True  # several test servers on one machine
"""
ENV = {
    "REALTIME_MAX_CONNECTIONS": "1000",
    "REALTIME_CONNECTION_HEADROOM": "100",
    "REALTIME_HEARTBEAT_S": "1",
    "SHOP_TOKEN": TOKEN,
}


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get_content_type(), response.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers.get_content_type(), err.read().decode()


def post(url: str, body: bytes, content_type: str = "application/x-www-form-urlencoded") -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code)


@pytest.fixture
def shop(gunicorn_factory: Callable[..., Gunicorn], redis_url: str, tmp_path: Path) -> Gunicorn:
    static = tmp_path / "static"
    static.mkdir()
    (static / "logo.txt").write_text("the shop's logo")
    config = tmp_path / "shop_gunicorn.py"
    config.write_text(HOST_CONFIG)
    port = free_port()
    env = {**ENV, "SHOP_BIND": f"127.0.0.1:{port}", "SHOP_STATIC": str(static)}
    app_dir = str(ROOT / "tests" / "system")
    return gunicorn_factory(
        redis_url,
        env=env,
        port=port,
        argv=("-c", str(config), "--pythonpath", app_dir, "shop_app:app"),
        health="/rt/healthz",
    )


def test_the_shop_keeps_its_pages_errors_limits_and_files(shop: Gunicorn) -> None:
    assert get(shop.url + "/") == (200, "text/html", "the shop's home")
    status, kind, text = get(shop.url + "/no-such-page")
    assert (status, kind) == (404, "text/html")
    assert "no such page" in text
    assert get(shop.url + "/static/logo.txt")[::2] == (200, "the shop's logo")
    assert post(shop.url + "/upload", b"x" * 1001, "application/octet-stream") == 413
    assert get(shop.url + "/rt/healthz")[:2] == (200, "application/json")
    status, kind, script = get(shop.url + "/rt/static/realtime.js")
    assert status == 200
    assert "export function subscribe" in script


def test_the_websocket_answers_and_publishes_under_the_prefix(shop: Gunicorn) -> None:
    ws = simple_websocket.Client.connect(f"ws://127.0.0.1:{shop.port}/rt/ws?access_token={TOKEN}")
    try:
        ws._handle_events()  # frames that came with the 101 answer (see tests/ws_client.py)
        welcome = json.loads(ws.receive(timeout=5))
        assert welcome["type"] == "welcome"
        ws.send(json.dumps({"type": "publish", "req": 1, "topic": "shop", "data": "by socket"}))
        ack = json.loads(ws.receive(timeout=5))
        assert (ack["type"], ack["req"]) == ("ack", 1)
    finally:
        ws.close()


def test_a_page_on_realtime_js_under_the_prefix_receives_the_shops_publishes(
    shop: Gunicorn, tmp_path: Path
) -> None:
    with chromium_page(tmp_path / "chromium-profile") as page:
        page.goto(shop.url + "/live")
        page.wait_for_function("() => window.states.includes('open')")
        for n in range(3):
            assert post(shop.url + "/orders", urllib.parse.urlencode({"order": f"o{n}"}).encode())
        page.wait_for_function("() => window.received.length >= 3")
        received: list[dict[str, Any]] = page.evaluate("() => window.received")
    assert [r["data"] for r in received] == ["o0", "o1", "o2"]


def test_sigterm_drains_the_streams_under_the_hosts_own_gunicorn_config(shop: Gunicorn) -> None:
    streams = [
        SocketStream(shop.port, f"/rt/events?topic=shop&access_token={TOKEN}") for _ in range(4)
    ]
    for stream in streams:
        stream.read_events(time.monotonic() + 5)
        assert stream.status == 200
    started = time.monotonic()
    shop.process.send_signal(15)
    for stream in streams:
        events = stream.until_closed(10)
        assert stream.closed
        assert [e.type for e in events] == ["shutdown"]
        stream.close()
    shop.process.wait(15)
    assert time.monotonic() - started < 8  # not the 10 s graceful timeout: the hub drained them
