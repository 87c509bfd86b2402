"""The Mercure hub in a real browser: anonymous EventSource in, fetch form publishes out.

Headless Debian Chromium (``/usr/bin/chromium``, driven by Playwright; no browser is ever
downloaded) loads a page of the hub's own origin (the dashboard at ``/``, served by real
gunicorn with the gevent worker on a real redis-server, ``REALTIME_MERCURE_ANONYMOUS=1``). The
page opens one anonymous ``EventSource`` on ``/.well-known/mercure`` per selector: draft 07's
``topic=`` URI Template, draft 08's ``match=`` (exact) and ``match_urlpattern=``, and publishes
form updates with ``fetch`` (``URLSearchParams`` body, ``Authorization: Bearer``), as a
browser application does. What it proves:

- an update reaches every subscriber whose selector matches it, with the publisher's ``id``
  verbatim as ``lastEventId`` and its ``data`` exactly (several lines, a blank one, leading
  spaces), or, without an ``id``, with the hub's ``urn:uuid:`` id that the POST answered; each
  within 2 s of the page starting the ``fetch``, as the page's clock measures it;
- a URI Template variable and a URL Pattern group match one path segment, not two; an exact
  selector matches its topic only; a private update is never sent to an anonymous subscriber.

Absence is proved by order, not by waiting: the updates nobody anonymous may get are
published first, then a sentinel each stream does want; once every sentinel has arrived, each
stream must hold exactly its expected updates, in publish order. A control stream (a token
granting ``*``, in the ``authorization`` query parameter) receives every update, the private
ones included: the updates the anonymous streams missed were published and delivered, just
not to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from browser import chromium_page
from conftest import Gunicorn
from mercure_tokens import PUBLISHER, draft07

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = "https://example.com"
WITHIN_MS = 2000
ENV = {"REALTIME_MERCURE_ANONYMOUS": "1"}
#: Several lines, an empty one among them, each but the empty one with leading spaces.
MULTILINE = "  first line\n  second line\n\n  after a blank"

#: The page's anonymous streams: a name, and the query of its EventSource.
TEMPLATE = ("template", urlencode({"topic": f"{ROOT}/books/{{id}}"}))
EXACT = ("exact", urlencode({"match": f"{ROOT}/exact"}))
URLPATTERN = ("urlpattern", urlencode({"match_urlpattern": f"{ROOT}/books/:id"}))
ANONYMOUS = (TEMPLATE, EXACT, URLPATTERN)
BOOKS = frozenset({"template", "urlpattern"})
#: Sees everything, private updates too: its token rides in draft 07's query parameter.
CONTROL = ("control", urlencode({"topic": "*", "authorization": draft07(subscribe=["*"])}))


@dataclass(frozen=True)
class Update:
    """One form update the page publishes, and the anonymous streams that must receive it."""

    fields: list[tuple[str, str]]
    to: frozenset[str]

    @property
    def id(self) -> str | None:
        return next((value for name, value in self.fields if name == "id"), None)

    @property
    def data(self) -> str:
        return next((value for name, value in self.fields if name == "data"), "")


SCENARIO = """async ({streams, updates, token}) => {
  const hub = "/.well-known/mercure";
  const test = (window.mercureTest = {received: {}, states: {}, published: []});
  await Promise.all(streams.map(([name, query]) => new Promise((resolve) => {
    test.received[name] = [];
    test.states[name] = [];
    const source = new EventSource(`${hub}?${query}`);
    source.onopen = () => { test.states[name].push("open"); resolve(); };
    source.onerror = () => test.states[name].push(`error:${source.readyState}`);
    source.onmessage = (event) => test.received[name].push(
      {id: event.lastEventId, data: event.data, at: performance.now()});
  })));
  // One at a time: each POST is answered once the update is stored, so the feed holds them in
  // this order. URLSearchParams makes the body application/x-www-form-urlencoded.
  for (const fields of updates) {
    const sent = performance.now();
    const answer = await fetch(hub, {
      method: "POST",
      headers: {Authorization: `Bearer ${token}`},
      body: new URLSearchParams(fields),
    });
    const answered = performance.now();
    const type = answer.headers.get("Content-Type");
    test.published.push({status: answer.status, type, id: await answer.text(), sent, answered});
  }
  return test.published;
}"""


@pytest.fixture
def hub(gunicorn_factory: Callable[..., Gunicorn], redis_url: str) -> Gunicorn:
    """The service under gunicorn (two gevent workers), its Mercure hub open to anonymous
    subscribers."""
    return gunicorn_factory(redis_url, env=ENV)


@pytest.fixture
def browser_page(tmp_path: Path, hub: Gunicorn) -> Iterator[Any]:
    """A page of the hub's own origin in a fresh headless Chromium."""
    with chromium_page(tmp_path / "chromium-profile") as page:
        page.goto(f"{hub.url}/")
        yield page


def run(page: Any, streams: tuple[tuple[str, str], ...], updates: list[Update]) -> dict[str, Any]:
    """Open ``streams`` in the page, publish ``updates`` from it, wait until every stream has
    its last expected update (its sentinel); what the page saw, and the ids published."""
    published = page.evaluate(
        SCENARIO,
        {"streams": streams, "updates": [u.fields for u in updates], "token": PUBLISHER},
    )
    assert [p["status"] for p in published] == [200] * len(updates), published
    ids = [p["id"] for p in published]
    assert {p["type"] for p in published} == {"text/plain; charset=utf-8"}, published
    for update, event_id in zip(updates, ids, strict=True):
        if update.id is not None:  # else the hub's, checked by the test
            assert event_id == update.id, "the POST must answer with the publisher's id"
    for name, _query in streams:
        sentinel = next(
            i for u, i in zip(reversed(updates), reversed(ids), strict=True) if name in u.to
        )
        page.wait_for_function(
            "([name, id]) => window.mercureTest.received[name].some((e) => e.id === id)",
            arg=[name, sentinel],
        )
    seen: dict[str, Any] = page.evaluate("window.mercureTest")
    seen["ids"] = ids
    return seen


def expected(name: str, updates: list[Update], ids: list[str]) -> list[tuple[str, str]]:
    return [(i, u.data) for u, i in zip(updates, ids, strict=True) if name in u.to]


def check(
    seen: dict[str, Any], streams: tuple[tuple[str, str], ...], updates: list[Update]
) -> list[float]:
    """Each stream got exactly its updates, in order, once, with their ids and data, each
    within :data:`WITHIN_MS` of its fetch starting (so of its fetch resolving too); no stream
    ever reconnected. The delays after each POST's answer, in ms."""
    ids = seen["ids"]
    published = dict(zip(ids, seen["published"], strict=True))
    after_answer = []
    for name, _query in streams:
        got = seen["received"][name]
        assert [(e["id"], e["data"]) for e in got] == expected(name, updates, ids), name
        assert seen["states"][name] == ["open"], name
        for event in got:
            took = event["at"] - published[event["id"]]["sent"]
            assert took < WITHIN_MS, f"{name} got {event['id']} {took:.0f} ms after publishing"
            after_answer.append(round(event["at"] - published[event["id"]]["answered"], 1))
    return after_answer


def test_an_anonymous_page_receives_form_updates_with_the_publishers_id_and_data_within_2_s(
    browser_page: Any,
) -> None:
    updates = [
        Update(
            [
                ("topic", f"{ROOT}/books/1"),
                ("id", "urn:isbn:978-0 book/1?v=1 ü"),
                ("data", MULTILINE),
            ],
            BOOKS,
        ),
        Update(
            [("topic", f"{ROOT}/exact"), ("id", "exact-1"), ("data", MULTILINE)],
            frozenset({"exact"}),
        ),
        Update([("topic", f"{ROOT}/books/2"), ("data", " one leading space")], BOOKS),
        Update([("topic", f"{ROOT}/exact"), ("data", "")], frozenset({"exact"})),
    ]
    seen = run(browser_page, ANONYMOUS, updates)

    delays = check(seen, ANONYMOUS, updates)
    ids = seen["ids"]
    assert ids[:2] == ["urn:isbn:978-0 book/1?v=1 ü", "exact-1"]
    for generated in ids[2:]:  # no id given: the hub's, as the POST answered it
        assert generated.startswith("urn:uuid:"), generated
    assert seen["received"]["template"][0]["data"] == MULTILINE
    print(f"\nreceived after the POST's answer (ms): {delays}")


def test_an_anonymous_page_misses_other_topics_deeper_paths_and_private_updates(
    browser_page: Any,
) -> None:
    nobody: frozenset[str] = frozenset()
    updates = [
        # Two segments where the template's {id} and the pattern's :id take one.
        Update([("topic", f"{ROOT}/books/1/chapters/2"), ("id", "two-segments")], nobody),
        Update([("topic", f"{ROOT}/elsewhere/1"), ("id", "elsewhere")], nobody),
        Update([("topic", f"{ROOT}/exact/1"), ("id", "below-exact")], nobody),
        Update([("topic", f"{ROOT}/exactly"), ("id", "exactly")], nobody),
        # Private, on topics the anonymous selectors match.
        Update([("topic", f"{ROOT}/books/3"), ("private", "on"), ("id", "private-book")], nobody),
        Update([("topic", f"{ROOT}/exact"), ("private", "on"), ("id", "private-exact")], nobody),
        # The sentinels: the last update each stream wants.
        Update([("topic", f"{ROOT}/books/9"), ("id", "sentinel-book"), ("data", MULTILINE)], BOOKS),
        Update([("topic", f"{ROOT}/exact"), ("id", "sentinel-exact")], frozenset({"exact"})),
    ]
    everything = [Update(u.fields, u.to | {"control"}) for u in updates]
    seen = run(browser_page, (*ANONYMOUS, CONTROL), everything)

    check(seen, (*ANONYMOUS, CONTROL), everything)
    assert [e["id"] for e in seen["received"]["urlpattern"]] == ["sentinel-book"]
    assert [e["id"] for e in seen["received"]["exact"]] == ["sentinel-exact"]
