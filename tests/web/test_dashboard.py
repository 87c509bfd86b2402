"""The dashboard at ``/`` in a real browser, and the Grafana dashboard against the real /metrics.

The browser tests drive headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright;
nothing is downloaded) against real gunicorn on a real Redis, and read what the page *shows*:
the event list in the DOM, the counts, the publish form's answer. The restart proof is issue 4's
acceptance 4: the page sees an event appear, the server is stopped with SIGTERM, events are
published while it is down (through a second instance on the same Redis) and after it is
started again on the same port, and the ids the page lists are exactly the published ids.

The Grafana test keeps ``deploy/grafana-dashboard.json`` true to the code: every metric it
queries must be in the server's /metrics output.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium_page
from conftest import ROOT, Gunicorn, make_token
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(180)

TOKEN = make_token(publish=("dash:*",), subscribe=("dash:*",))
TOPICS = ("dash:a", "dash:b")
ENV = {
    "REALTIME_HEARTBEAT_S": "1",
    "REALTIME_RETRY_MS": "300",
    "REALTIME_GRACEFUL_TIMEOUT": "5",
    "REALTIME_PUBLIC_TOPICS": "public:*",
}
GRAFANA_JSON = ROOT / "deploy" / "grafana-dashboard.json"


# Before any script of a page runs: keep every Content-Security-Policy violation it reports.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A page in a fresh headless Chromium (its own profile under tmp_path), laptop-sized,
    that records the Content-Security-Policy violations of every document it loads."""
    with chromium_page(
        tmp_path / "chromium-profile", viewport={"width": 1280, "height": 860}
    ) as page:
        page.add_init_script(RECORD_VIOLATIONS)
        yield page


@pytest.fixture
def console(page: Any) -> list[str]:
    """What the page writes to its console, and its uncaught errors (``error: …``)."""
    lines: list[str] = []
    page.on("console", lambda message: lines.append(message.text))
    page.on("pageerror", lambda error: lines.append(f"error: {error}"))
    return lines


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
    """Not in the address bar, the page's HTML or text, nor its console; no script failed, and
    the page's Content-Security-Policy refused nothing it does."""
    assert token not in page.url
    assert token not in page.content()
    assert token not in page.evaluate("() => document.body.innerText")
    assert not [line for line in console if token in line or line.startswith("error: ")]
    assert page.evaluate("window.cspViolations") == []
    assert not [line for line in console if "Content Security Policy" in line]


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
def test_the_page_works_under_its_security_headers_which_refuse_inline_script(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, page: Any, console: list[str]
) -> None:
    """Issue 11, finding 8: the page is served with a CSP without 'unsafe-inline', is never
    framed, sniffed or sent on as a Referer, and still does everything it did."""
    server = gunicorn_factory(redis_url, workers=1, env=ENV)
    response = page.goto(f"{server.url}/?{followed()}&ws=1")
    headers = response.headers
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    page.wait_for_function("() => document.getElementById('sse-state')?.textContent === 'open'")
    page.wait_for_function("() => document.getElementById('ws-state')?.textContent === 'open'")
    # Open is the socket's welcome; its topics are followed from their subscribe's ack on (each
    # has a cursor then): an event published in between is before the subscription's start.
    page.wait_for_function(
        "n => Object.values(window.realtimeWs.cursors).filter(Boolean).length === n",
        arg=len(TOPICS),
    )
    ids = publish(server, 0, 4)
    page.wait_for_function("n => window.realtimeTest.ws.length >= n", arg=4)
    wait_listed(page, 8)  # each event twice: over SSE and over the WebSocket
    assert page.evaluate("window.realtimeTest.sse") == ids
    assert page.evaluate("window.realtimeTest.ws") == ids
    # The style sheet applied (a file, allowed by style-src 'self').
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"
    assert_token_kept_private(page, TOKEN, console)

    # And the policy is enforced, not only sent: inline script and style are refused.
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.inlineRan = true";
          document.body.append(script);
          const style = document.createElement("style");
          style.textContent = "body { margin: 7px }";
          document.head.append(style);
        }"""
    )
    page.wait_for_function("() => window.cspViolations.length >= 2")
    assert page.evaluate("window.inlineRan") is None
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"
    assert sorted(page.evaluate("window.cspViolations")) == [
        "script-src-elem inline",
        "style-src-elem inline",
    ]


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


# -- Grafana -------------------------------------------------------------------------------------

README = (ROOT / "README.md").read_text()
METRIC = re.compile(r"\brealtime_[a-z_]+")
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
LABEL = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")
# Added by Prometheus when it scrapes.
SCRAPE_LABELS = {"job", "instance"}


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets (rows included), variables."""
    exprs = []
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        exprs += [t["expr"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        exprs.append(variable["definition"])
    return exprs


def exposed_series(text: str) -> dict[str, set[str]]:
    """The series names a /metrics text offers (``_total``, ``_bucket``…), with the label names
    seen on each; a family with no samples yet still names its series."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, ("",)):
            series.setdefault(family.name + suffix, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def documented_labels() -> dict[str, set[str]]:
    """``realtime_x{a,b}`` rows of the README's metrics table: each family's label names."""
    labels = {}
    for name, names in re.findall(r"^\| `(realtime_[a-z_]+)(?:\{([a-z_, ]+)\})?` \|", README, re.M):
        labels[name.removesuffix("_total")] = {n.strip() for n in names.split(",") if n.strip()}
    return labels


def family_of(series: str) -> str:
    return re.sub(r"_(total|bucket|sum|count)$", "", series)


def test_grafana_dashboard_queries_only_metrics_and_labels_the_server_exposes(client: Any) -> None:
    dashboard = json.loads(GRAFANA_JSON.read_text())
    text = client.get("/metrics").get_data(as_text=True)
    exposed = exposed_series(text)
    documented = documented_labels()
    used: set[str] = set()
    for expr in queries(dashboard):
        names = set(METRIC.findall(expr))
        assert names, f"a query names no realtime metric: {expr}"
        unknown = names - exposed.keys()
        assert not unknown, f"{expr} queries {unknown}, which /metrics does not expose"
        used |= {family_of(n) for n in names}
        labels = {
            label.strip()
            for group in GROUPING.findall(expr)
            for label in group.split(",")
            if label.strip()
        }
        for matchers in MATCHERS.findall(expr):
            labels |= {m.group(1) for m in map(LABEL.match, matchers.split(",")) if m}
        for name in names:
            known = exposed[name] | documented.get(family_of(name), set()) | SCRAPE_LABELS
            if name.endswith("_bucket"):
                known.add("le")
            assert labels <= known, f"{expr} uses labels {labels - known} of {name}"
    # And the other way round: a metric added to the code gets a panel.
    ours = {
        family.name
        for family in text_string_to_metric_families(text)
        # prometheus-client also exposes each counter's and histogram's creation time as a
        # gauge `<name>_created` outside multiprocess mode: not a metric to chart.
        if family.name.startswith("realtime_") and not family.name.endswith("_created")
    }
    assert ours - used == set(), f"metrics with no panel: {sorted(ours - used)}"


def test_grafana_dashboard_imports_anywhere_and_its_panels_do_not_overlap() -> None:
    dashboard = json.loads(GRAFANA_JSON.read_text())
    [source] = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["id"] is None
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        if panel["type"] != "row":  # no panel is tied to one Grafana's data source
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    quantiles = [e for e in queries(dashboard) if e.startswith("histogram_quantile")]
    for histogram in ("realtime_publish_latency_seconds", "realtime_delivery_lag_seconds"):
        for q in ("0.5", "0.99"):
            assert any(
                e.startswith(f"histogram_quantile({q},") and f"rate({histogram}_bucket" in e
                for e in quantiles
            ), f"no p{q} of {histogram}"
