"""Issue 13, acceptance 4: a dashboard on another origin, in Chromium, with credentials.

Origin A and origin C are static pages served on their own ports (``python -m http.server``);
realtime runs under real gunicorn on a third, with ``REALTIME_CORS_ORIGINS`` listing A only. The
browser holds the ``realtime_token`` cookie for the host. A's page follows ``/events`` with
``EventSource(url, {withCredentials: true})`` and publishes with a preflighted ``fetch``; the
server is stopped and started again while events are published, and the page's stream resumes
with every event exactly once. C's page gets no CORS answer, and the browser refuses it both.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium_page
from conftest import Gunicorn, make_token, wait_http

from realtime import Publisher
from realtime.core.access import TOKEN_COOKIE
from realtime.storage.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = make_token(publish=("cors",), subscribe=("cors",))

PAGE = """<!doctype html>
<title>a dashboard elsewhere</title>
<script>
  const server = new URLSearchParams(location.search).get("server");
  window.received = [];
  window.states = [];
  const source = new EventSource(server + "/events?topic=cors", {withCredentials: true});
  source.onopen = () => window.states.push("open");
  source.onerror = () => window.states.push("error");
  source.onmessage = (e) => window.received.push({id: e.lastEventId, data: e.data});
  window.publish = async (data) => {
    try {
      const answer = await fetch(server + "/publish", {
        method: "POST",
        credentials: "include",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({topic: "cors", data}),
      });
      return [answer.status, (await answer.json()).id || null];
    } catch (refused) {
      return ["refused", String(refused)];
    }
  };
</script>
"""


@pytest.fixture
def page_origins(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two static origins serving the dashboard page: (A, C)."""
    root = tmp_path / "pages"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    servers = []
    origins = []
    for _ in range(2):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        servers.append(process)
        origin = f"http://127.0.0.1:{port}"
        wait_http(origin + "/index.html", process=process)
        origins.append(origin)
    yield origins[0], origins[1]
    for process in servers:
        process.terminate()
        process.wait(10)


def origin_header_answer(server: Gunicorn, origin: str) -> str | None:
    """The ``Access-Control-Allow-Origin`` a preflight of a publish from ``origin`` gets."""
    request = urllib.request.Request(
        server.url + "/publish",
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        allowed: str | None = response.headers.get("Access-Control-Allow-Origin")
        return allowed


def test_a_page_on_another_origin_follows_and_publishes_with_credentials_across_a_restart(
    gunicorn_factory: Callable[..., Gunicorn],
    restart: Callable[[Gunicorn], Gunicorn],
    redis_url: str,
    page_origins: tuple[str, str],
    tmp_path: Path,
) -> None:
    allowed, other = page_origins
    server = gunicorn_factory(
        redis_url,
        workers=1,
        env={
            "REALTIME_CORS_ORIGINS": allowed,
            "REALTIME_HEARTBEAT_S": "1",
            "REALTIME_RETRY_MS": "300",
            "REALTIME_GRACEFUL_TIMEOUT": "5",
        },
    )
    assert origin_header_answer(server, allowed) == allowed
    assert origin_header_answer(server, other) is None

    with chromium_page(tmp_path / "chromium-profile") as page:
        page.context.add_cookies(
            [{"name": TOKEN_COOKIE, "value": TOKEN, "domain": "127.0.0.1", "path": "/"}]
        )
        page.goto(f"{allowed}/index.html?server={server.url}")
        page.wait_for_function("() => window.states.includes('open')")

        published: list[str] = []
        status, event_id = page.evaluate("data => window.publish(data)", "from the page")
        assert status == 201  # the preflighted POST, authenticated by the cookie
        published.append(event_id)
        with Publisher(redis_url) as publisher:
            published.append(publisher.publish("cors", "before the restart"))
            wait_for(page, len(published))

            server.stop()  # SIGTERM: the stream ends with shutdown; the page keeps retrying
            published += [publisher.publish("cors", f"while down {n}") for n in range(2)]
            server = restart(server)
            published.append(publisher.publish("cors", "after the restart"))
            wait_for(page, len(published))
        time.sleep(1.5)  # more than a heartbeat: a duplicate would have arrived by now
        received: list[dict[str, Any]] = page.evaluate("() => window.received")
        assert [r["id"] for r in received] == published
        assert page.evaluate("() => window.states").count("open") >= 2

        # The origin not listed: no CORS answer, so the browser refuses the page both.
        page.goto(f"{other}/index.html?server={server.url}")
        page.wait_for_function("() => window.states.includes('error')")
        status, reason = page.evaluate("data => window.publish(data)", "from elsewhere")
        assert status == "refused", reason
        time.sleep(0.5)
        assert "open" not in page.evaluate("() => window.states")


def wait_for(page: Any, count: int) -> None:
    page.wait_for_function("n => window.received.length >= n", arg=count)
