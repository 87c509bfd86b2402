"""A real browser against real gunicorn: realtime.js over SSE and WebSocket across a restart.

Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; no browser is ever
downloaded) loads the demo page, which follows two topics with ``subscribe()`` (EventSource) and
a ``RealtimeSocket``. The server is stopped with SIGTERM mid-way, events are published (through a
second instance on the same Redis) while it is down, and it is started again on the same port:
the ids each transport received, as the page recorded them, must be exactly the published ids:
in publish order on the one SSE stream, in publish order per topic on the socket (the WebSocket
protocol orders events per topic). Two smaller proofs: ``subscribe()`` resumes by itself when
EventSource gives up after an HTTP error, and the socket's requests resolve with acks and reject
with the server's error codes.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium_page
from conftest import Gunicorn, make_token

from realtime.storage.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = make_token()
TOPICS = ("browser:a", "browser:b")


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page in a fresh headless Chromium (its own profile under tmp_path)."""
    with chromium_page(tmp_path / "chromium-profile") as page:
        yield page


def publish(server: Gunicorn, first: int, count: int) -> list[tuple[str, str]]:
    """``count`` events over POST /publish, alternating the topics: (id, topic) in order."""
    published: list[tuple[str, str]] = []
    for n in range(first, first + count):
        topic = TOPICS[n % 2]
        body = {"topic": topic, "data": {"n": n}}
        request = urllib.request.Request(
            server.url + "/publish",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            published.append((json.loads(response.read())["id"], topic))
    return published


def open_page(page: Any, server: Gunicorn, websocket: bool) -> None:
    """Load the demo page on both topics; return once every transport is subscribed."""
    query = "&".join(f"topic={t}" for t in TOPICS)
    page.goto(f"{server.url}/?{query}&token={TOKEN}" + ("&ws=1" if websocket else ""))
    ready = "window.realtimeTest.states.includes('sse:open')"
    if websocket:  # every topic's subscribe acked: each has a cursor
        ready += (
            f" && Object.values(window.realtimeWs.cursors).filter(Boolean).length === {len(TOPICS)}"
        )
    page.wait_for_function(f"() => window.realtimeTest && {ready}")


def wait_received(page: Any, count: int, transports: tuple[str, ...]) -> None:
    """Until the page holds ``count`` ids from each transport (or more: the checks say which)."""
    done = " && ".join(f"window.realtimeTest.{t}.length >= n" for t in transports)
    page.wait_for_function(f"n => {done}", arg=count)


def reconnected(seen: dict[str, Any], transport: str) -> bool:
    states = [s.split(":")[1] for s in seen["states"] if s.startswith(transport + ":")]
    return states.count("open") >= 2


ENV = {"REALTIME_HEARTBEAT_S": "1", "REALTIME_RETRY_MS": "300", "REALTIME_GRACEFUL_TIMEOUT": "5"}


def test_the_page_resumes_sse_and_websocket_exactly_across_a_server_restart(
    gunicorn_factory: Callable[..., Gunicorn],
    restart: Callable[[Gunicorn], Gunicorn],
    redis_url: str,
    browser_page: Any,
    tmp_path: Path,
) -> None:
    page = browser_page
    both = ("sse", "ws")
    server = gunicorn_factory(redis_url, workers=1, env=ENV)
    # A second instance on the same Redis publishes while the page's server is down.
    other = gunicorn_factory(redis_url, workers=1, env=ENV)
    open_page(page, server, websocket=True)

    published = publish(server, 0, 10)
    wait_received(page, len(published), both)

    server.stop()  # SIGTERM: streams end with `shutdown`, sockets with 1012; gunicorn exits
    published += publish(other, 10, 10)  # missed by the page: it must get them on resume
    server = restart(server)
    wait_received(page, len(published), both)

    published += publish(server, 20, 10)
    wait_received(page, len(published), both)

    seen = page.evaluate("window.realtimeTest")
    page.screenshot(path=str(tmp_path / "browser.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'browser.png'}\nstates: {seen['states']}")
    print(f"errors seen while the server was down: {seen['errors']}")
    ids = [event_id for event_id, _ in published]
    # One SSE stream: every event once, in publish order across both topics.
    assert seen["sse"] == ids
    # The socket: every event once (ids are unique), each topic in publish order. Across topics
    # the order may differ after a resume: the client resubscribes each topic from its own
    # cursor, one subscribe per cursor, and the protocol orders events per topic only.
    assert sorted(seen["ws"]) == sorted(ids)
    topic_of = dict(published)
    for topic in TOPICS:
        got = [i for i in seen["ws"] if topic_of[i] == topic]
        assert got == [i for i, t in published if t == topic], f"ws order on {topic}"
    assert seen["resets"] == []
    assert reconnected(seen, "sse"), seen["states"]
    assert reconnected(seen, "ws"), seen["states"]
    assert page.locator("#last-id").inner_text() in (ids[-1], seen["ws"][-1])


def test_subscribe_reconnects_itself_with_its_last_id_when_eventsource_gives_up(
    gunicorn_factory: Callable[..., Gunicorn],
    restart: Callable[[Gunicorn], Gunicorn],
    redis_url: str,
    browser_page: Any,
) -> None:
    """EventSource stops for good on an HTTP error (a 503 while a server drains, say);
    ``subscribe()`` then opens a new one with ``?lastEventId=`` and misses nothing."""
    page = browser_page
    server = gunicorn_factory(redis_url, workers=1, env=ENV)
    other = gunicorn_factory(redis_url, workers=1, env=ENV)
    open_page(page, server, websocket=False)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events?" in r.url else None)

    published = publish(server, 0, 6)
    wait_received(page, len(published), ("sse",))
    # The fault: EventSource's own reconnect is answered 503, which it never retries.
    page.route(
        "**/events?*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            headers={"Retry-After": "1"},
            body='{"error": "draining", "message": "injected by the test"}',
        ),
        times=1,
    )
    server.stop()
    published += publish(other, 6, 6)
    server = restart(server)
    wait_received(page, len(published), ("sse",))
    published += publish(server, 12, 6)
    wait_received(page, len(published), ("sse",))

    seen = page.evaluate("window.realtimeTest")
    assert seen["sse"] == [event_id for event_id, _ in published]
    assert seen["resets"] == []
    # The stream after the 503 was the client's own, resuming from the last id it had.
    assert any(f"lastEventId={published[5][0]}" in url for url in streams), streams


SOCKET_REQUESTS = """async ({token, deadPort}) => {
  const { RealtimeSocket, version } = await import("/static/realtime.js");
  const codeOf = (promise) => promise.then(() => null, (error) => error.code);
  const events = [];
  const socket = new RealtimeSocket(undefined, { token, onEvent: (e) => events.push(e) });
  const out = { version };
  out.ping = await socket.ping(); // asked while still connecting: it waits for the connection
  out.subscribe = await socket.subscribe(["browser:a"]);
  out.publish = await socket.publish("browser:a", { n: 1 }, "created");
  for (let waited = 0; events.length === 0 && waited < 5000; waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  out.events = events;
  out.presence = await socket.presence("browser:a");
  out.forbidden = await codeOf(socket.subscribe(["elsewhere"]));
  out.invalidTopic = await codeOf(socket.publish("not a topic", "x"));
  out.cursors = socket.cursors;
  out.unsubscribe = await socket.unsubscribe(["browser:a"]);
  socket.close();
  out.afterClose = await codeOf(socket.ping());
  out.state = socket.state;
  // Nothing listens on deadPort: a request waits for a connection that never comes.
  const nowhere = new RealtimeSocket(`http://127.0.0.1:${deadPort}`, { requestTimeoutMs: 300 });
  out.timeout = await codeOf(nowhere.ping());
  nowhere.close();
  return out;
}"""


def test_realtime_socket_requests_resolve_with_acks_and_reject_with_codes(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, browser_page: Any
) -> None:
    server = gunicorn_factory(redis_url, workers=1, env=ENV)
    browser_page.goto(f"{server.url}/")  # no topic: the start form; the test imports the module
    token = make_token(publish=("browser:*",), subscribe=("browser:*",), subject="alice")
    out = browser_page.evaluate(SOCKET_REQUESTS, {"token": token, "deadPort": free_port()})

    assert out["version"]
    assert out["ping"]["type"] == "ack"
    assert out["subscribe"]["topics"] == ["browser:a"]
    assert out["subscribe"]["last_id"]
    [event] = out["events"]
    assert event == {
        "id": out["publish"]["id"],
        "topic": "browser:a",
        "type": "created",
        "data": '{"n":1}',
    }
    assert out["presence"]["present"] == ["alice"]
    assert out["forbidden"] == "forbidden_topic"
    assert out["invalidTopic"] == "invalid_topic"
    assert out["cursors"] == {"browser:a": event["id"]}  # "elsewhere" was dropped, not retried
    assert out["unsubscribe"]["topics"] == ["browser:a"]
    assert out["afterClose"] == "closed"
    assert out["state"] == "closed"
    assert out["timeout"] == "timeout"
