"""The dashboard at ``/`` in a real browser.

The browser tests drive headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright;
nothing is downloaded) against real gunicorn on a real Redis, and read what the page *shows*:
the event list in the DOM, the counts, the publish form's answer. The restart proof is issue 4's
acceptance 4: the page sees an event appear, the server is stopped with SIGTERM, events are
published while it is down (through a second instance on the same Redis) and after it is
started again on the same port, and the ids the page lists are exactly the published ids.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Gunicorn, make_token, require_binary
from test_browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright

pytestmark = pytest.mark.timeout(180)

TOKEN = make_token(publish=("dash:*",), subscribe=("dash:*",))
TOPICS = ("dash:a", "dash:b")
ENV = {
    "REALTIME_HEARTBEAT_S": "1",
    "REALTIME_RETRY_MS": "300",
    "REALTIME_GRACEFUL_TIMEOUT": "5",
    "REALTIME_PUBLIC_TOPICS": "public:*",
}
WAIT_MS = 30_000


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A page in a fresh headless Chromium (its own profile under tmp_path), laptop-sized."""
    executable = require_binary("chromium", CHROMIUM)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=WAIT_MS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            context.close()


@pytest.fixture
def console(page: Any) -> list[str]:
    """What the page writes to its console, and its uncaught errors (``error: …``)."""
    lines: list[str] = []
    page.on("console", lambda message: lines.append(message.text))
    page.on("pageerror", lambda error: lines.append(f"error: {error}"))
    return lines


@pytest.fixture
def restart() -> Iterator[Callable[[Gunicorn], Gunicorn]]:
    """Start a stopped server again on its port (the browser resumes only on the origin it loaded
    the page from); stops what it started when the test ends."""
    started: list[Gunicorn] = []

    def start(old: Gunicorn) -> Gunicorn:
        server = old.restarted()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGQUIT)


def post_publish(server: Gunicorn, body: dict[str, Any], token: str = TOKEN) -> tuple[int, Any]:
    """POST /publish as JSON: (status, decoded JSON answer), refusals included."""
    request = urllib.request.Request(
        server.url + "/publish",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read())


def publish(server: Gunicorn, first: int, count: int) -> list[str]:
    """``count`` events, alternating the topics; their ids in publish order."""
    ids = []
    for n in range(first, first + count):
        status, answer = post_publish(server, {"topic": TOPICS[n % 2], "data": {"n": n}})
        assert status == 201, answer
        ids.append(answer["id"])
    return ids


def open_dashboard(page: Any, server: Gunicorn, query: str) -> None:
    """Load ``/?<query>`` and return once the page's SSE stream is open."""
    page.goto(f"{server.url}/?{query}")
    page.wait_for_function("() => document.getElementById('sse-state')?.textContent === 'open'")


def followed(topics: tuple[str, ...] = TOPICS, token: str | None = TOKEN) -> str:
    query = "&".join(f"topic={t}" for t in topics)
    return query + (f"&token={token}" if token else "")


def wait_listed(page: Any, count: int) -> None:
    """Until the page's event list holds ``count`` items (or more: the checks say which)."""
    page.wait_for_function("n => document.querySelectorAll('#events li').length >= n", arg=count)


def listed_ids(page: Any) -> list[str]:
    """The ids the event list shows, oldest first (the page lists newest first)."""
    shown: list[str] = page.locator("#events li .id").all_inner_texts()
    return shown[::-1]


def assert_token_kept_private(page: Any, token: str, console: list[str]) -> None:
    """Not in the address bar, the page's HTML or text, nor its console; and no script failed."""
    assert token not in page.url
    assert token not in page.content()
    assert token not in page.evaluate("() => document.body.innerText")
    assert not [line for line in console if token in line or line.startswith("error: ")]


@pytest.mark.integration
def test_dashboard_lists_events_and_resumes_without_a_gap_across_a_server_restart(
    gunicorn_factory: Callable[..., Gunicorn],
    restart: Callable[[Gunicorn], Gunicorn],
    redis_url: str,
    page: Any,
    console: list[str],
    tmp_path: Path,
) -> None:
    server = gunicorn_factory(redis_url, workers=1, env=ENV)
    # A second instance on the same Redis publishes while the page's server is down.
    other = gunicorn_factory(redis_url, workers=1, env=ENV)
    open_dashboard(page, server, followed())
    assert_token_kept_private(page, TOKEN, console)

    published = publish(server, 0, 1)
    wait_listed(page, 1)
    first = page.locator("#events li").first
    assert first.locator(".topic").inner_text() == "dash:a"
    assert first.locator("pre").inner_text() == '{"n":0}'
    published += publish(server, 1, 9)
    wait_listed(page, len(published))

    server.stop()  # SIGTERM: the stream ends with `shutdown`; gunicorn exits
    published += publish(other, 10, 10)  # missed by the page: it must list them on resume
    server = restart(server)
    wait_listed(page, len(published))
    published += publish(server, 20, 10)
    wait_listed(page, len(published))

    screenshot = tmp_path / "dashboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nscreenshot: {screenshot}")
    assert listed_ids(page) == published  # every event once, in order: no gap, no duplicate
    assert page.locator("#count-sse").inner_text() == str(len(published))
    assert page.locator("#last-id").inner_text() == published[-1]
    assert page.locator("#events li pre").first.inner_text() == '{"n":29}'
    assert page.locator("#reset").is_hidden()
    assert page.locator("#sse-state").inner_text() == "open"
    states = page.evaluate("window.realtimeTest.states")
    assert states.count("sse:open") >= 2, states  # it really reconnected


@pytest.mark.integration
def test_publish_form_publishes_an_event_the_page_receives_and_shows_refusals(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, page: Any, console: list[str]
) -> None:
    server = gunicorn_factory(redis_url, workers=1, env=ENV)
    open_dashboard(page, server, followed())
    form = page.locator("#publish")
    assert form.is_visible()
    assert page.locator("#publish-topic").input_value() == "dash:a"  # the first followed topic

    page.locator("#publish-type").fill("created")
    page.locator("#publish-data").fill('{"id": 7}\nsecond line')
    page.locator("#publish-button").click()
    result = page.locator("#publish-result")
    page.wait_for_function(
        "() => document.getElementById('publish-result').textContent.startsWith('published ')"
    )
    event_id = result.inner_text().removeprefix("published ")
    wait_listed(page, 1)
    item = page.locator("#events li").first
    assert item.locator(".id").inner_text() == event_id
    assert item.locator(".topic").inner_text() == "dash:a"
    assert item.locator(".type").inner_text() == "created"
    assert item.locator("pre").inner_text() == '{"id": 7}\nsecond line'  # the text, exactly
    # EventSource hears only the types it listens for: the page took "created" on before.
    assert page.locator("#types").inner_text() == "message, created"

    # Refusals show the server's own sentence, whatever it is: ask the server directly first.
    for topic, status, code in (
        ("elsewhere", 403, "forbidden_topic"),
        ("not a topic", 400, "invalid_topic"),
    ):
        got_status, answer = post_publish(server, {"topic": topic, "data": "x"})
        assert (got_status, answer["error"]) == (status, code)
        page.locator("#publish-topic").fill(topic)
        page.locator("#publish-button").click()
        page.wait_for_function(
            "() => document.getElementById('publish-result').className === 'error'"
        )
        shown = result.inner_text()
        assert shown == f"refused ({status} {code}): {answer['message']}"
        page.locator("#publish-topic").fill("dash:a")  # the next refusal starts from a clean slate
        page.locator("#publish-button").click()
        page.wait_for_function("() => document.getElementById('publish-result').className === 'ok'")

    wait_listed(page, 3)
    assert listed_ids(page) == page.evaluate("window.realtimeTest.published")
    assert page.evaluate("window.realtimeTest.published")[0] == event_id
    assert_token_kept_private(page, TOKEN, console)


@pytest.mark.integration
def test_opened_with_no_topic_the_page_shows_a_start_form_that_opens_the_chosen_topics(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, page: Any, console: list[str]
) -> None:
    server = gunicorn_factory(redis_url, workers=1, env=ENV)
    page.goto(server.url + "/")
    assert page.locator("#start-form").is_visible()
    assert page.locator("#dashboard").is_hidden()

    page.locator("#start-topics").fill("dash:a, dash:b")
    page.locator("#start-types").fill("created")
    page.locator("#start-token").fill(TOKEN)
    page.locator("#start-form button").click()
    page.wait_for_url("**/?topic=dash%3Aa&topic=dash%3Ab&type=created")  # the token gone
    page.wait_for_function("() => document.getElementById('sse-state')?.textContent === 'open'")
    assert page.locator("#start").is_hidden()
    assert page.locator("#topics").inner_text() == "dash:a, dash:b"
    assert page.locator("#types").inner_text() == "message, created"
    assert page.locator("#publish").is_visible()  # a token holder may publish
    assert_token_kept_private(page, TOKEN, console)

    status, answer = post_publish(server, {"topic": "dash:b", "type": "created", "data": "x"})
    assert status == 201
    wait_listed(page, 1)
    assert listed_ids(page) == [answer["id"]]


@pytest.mark.integration
def test_without_a_token_the_publish_form_is_hidden_and_a_refused_stream_shows_why(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, page: Any
) -> None:
    server = gunicorn_factory(redis_url, workers=1, env=ENV)
    open_dashboard(page, server, followed(("public:news",), token=None))
    assert page.locator("#publish").is_hidden()
    assert page.locator("#problem").is_hidden()

    # A topic that is not public, no token: EventSource alone would say nothing but "error".
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.url + "/events?topic=dash:a", timeout=10)
    with refused.value:
        status, answer = refused.value.code, json.loads(refused.value.read())
    page.goto(f"{server.url}/?{followed(('dash:a',), token=None)}")
    problem = page.locator("#problem")
    problem.wait_for(state="visible")
    expected = f"The server refused the stream ({status} {answer['error']}): {answer['message']}"
    assert problem.inner_text() == expected
    assert page.locator("#sse-state").inner_text() == "connecting"
