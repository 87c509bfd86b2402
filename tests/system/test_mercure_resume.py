"""Exact resume by Mercure id, against real gunicorn (two gevent workers) and a real redis-server.

200 subscribers, each with random selectors of every kind (exact, URI Template, URL Pattern, in
both drafts' parameters), drop their connections at random moments and reconnect with the last
Mercure id they saw, in the ``Last-Event-ID`` header or the ``last_event_id`` / ``lastEventID``
query, while 1,000 updates (half with the publisher's own ids, half with the hub's) are
published through the same two workers. Each subscriber must end with exactly the updates its
selectors match, in publish order, once; and every reconnect must be told it lost nothing.
"""

from __future__ import annotations

import random
import time
import urllib.parse
import urllib.request

import gevent
import gevent.event
import pytest
from conftest import Gunicorn
from mercure_tokens import PUBLISHER
from sse_client import SocketStream

from realtime.core.sse import MessageEvent

pytestmark = pytest.mark.integration

HUB = "/.well-known/mercure"
ROOT = "https://example.com"
SECTIONS = [f"s{n}" for n in range(8)]
ITEMS = [str(n) for n in range(5)]


def post_update(url: str, fields: list[tuple[str, str]]) -> str:
    request = urllib.request.Request(
        url + HUB,
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Authorization": f"Bearer {PUBLISHER}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


#: (query parameter, selector, the topics it means): one segment for a variable.
Selector = tuple[str, str, frozenset[str]]


def random_selector(rng: random.Random) -> Selector:
    section = rng.choice(SECTIONS)
    item = rng.choice(ITEMS)
    every_item = frozenset(f"{ROOT}/{section}/{i}" for i in ITEMS)
    kind = rng.randrange(4)
    if kind == 0:
        return ("topic", f"{ROOT}/{section}/{item}", frozenset({f"{ROOT}/{section}/{item}"}))
    if kind == 1:
        return ("match", f"{ROOT}/{section}/{item}", frozenset({f"{ROOT}/{section}/{item}"}))
    if kind == 2:
        return ("topic", f"{ROOT}/{section}/{{item}}", every_item)
    return ("match_urlpattern", f"{ROOT}/{section}/:item", every_item)


class Subscriber:
    """Follows its selectors, drops its connection at random moments, resumes by Mercure id."""

    def __init__(self, port: int, selectors: list[Selector], rng: random.Random) -> None:
        self.port = port
        self.selectors = selectors
        self.rng = rng
        self.ids: list[str] = []
        self.cursor: str | None = None
        self.connections = 0
        self.lost: list[tuple[str, str]] = []  # (sent, reported): must stay empty
        self.connected = gevent.event.Event()
        self.expected: list[str] = []

    def matches(self, topics: list[str]) -> bool:
        return any(t in meaning for _, _, meaning in self.selectors for t in topics)

    def path(self) -> tuple[str, dict[str, str]]:
        query = [(name, value) for name, value, _ in self.selectors]
        headers = {}
        if self.cursor is not None:
            where = self.rng.choice(["header", "last_event_id", "lastEventID"])
            if where == "header":
                headers["Last-Event-ID"] = self.cursor
            else:
                query.append((where, self.cursor))
        return f"{HUB}?{urllib.parse.urlencode(query)}", headers

    def run(self, done: gevent.event.Event, deadline: float) -> None:
        while time.monotonic() < deadline:
            path, headers = self.path()
            sent = self.cursor
            stream = SocketStream(self.port, path, headers)
            self.connections += 1
            lifetime = time.monotonic() + self.rng.uniform(0.05, 0.5)
            try:
                while time.monotonic() < min(lifetime, deadline):
                    events = stream.read_events(min(lifetime, deadline))
                    assert stream.status == 200
                    reported = stream.headers["mercure-last-event-id"]
                    if self.cursor is None:
                        self.cursor = reported  # a fresh subscriber's exact cursor
                    elif sent is not None and reported != sent:
                        self.lost.append((sent, reported))
                    self.connected.set()
                    for event in events:
                        self.ids.append(event.last_event_id)
                        self.cursor = event.last_event_id
                    if stream.closed or (done.is_set() and self.rng.random() < 0.3):
                        break
            finally:
                stream.close()  # an abrupt drop, wherever the stream was
            if done.is_set() and len(self.ids) >= len(self.expected):
                return
            gevent.sleep(self.rng.uniform(0, 0.05))


def test_two_hundred_subscribers_resume_exactly_by_mercure_id_across_two_workers(
    gunicorn_factory: object, redis_url: str
) -> None:
    # All 200 clients come from 127.0.0.1, as from behind one NAT, and drop abruptly: a dropped
    # stream is only known dead at its next write, so the per-address limit (500 a worker) is
    # raised above what the dead ones can reach, and a 1 s heartbeat finds them soon.
    env = {
        "REALTIME_MERCURE_ANONYMOUS": "1",
        "REALTIME_MAX_CONNECTIONS_PER_IP": "5000",
        "REALTIME_HEARTBEAT_S": "1",
    }
    server: Gunicorn = gunicorn_factory(redis_url, workers=2, env=env)  # type: ignore[operator]
    rng = random.Random(14)
    subscribers = [
        Subscriber(server.port, [random_selector(rng) for _ in range(rng.randint(1, 3))], rng)
        for _ in range(200)
    ]
    done = gevent.event.Event()
    deadline = time.monotonic() + 150
    runners = [gevent.spawn(s.run, done, deadline) for s in subscribers]
    with gevent.Timeout(30):
        for s in subscribers:
            s.connected.wait()

    published: list[tuple[list[str], str]] = []
    for n in range(1000):
        topics = [f"{ROOT}/{rng.choice(SECTIONS)}/{rng.choice(ITEMS)}"]
        if rng.random() < 0.2:  # an alternate topic, which matches too
            topics.append(f"{ROOT}/{rng.choice(SECTIONS)}/{rng.choice(ITEMS)}")
        fields = [("topic", t) for t in topics] + [("data", f"update {n}\n  line two")]
        if n % 2:
            fields.append(("id", f"https://example.com/revisions/{n}"))
        published.append((topics, post_update(server.url, fields)))
        if n % 50 == 0:
            gevent.sleep(rng.uniform(0, 0.05))
    for s in subscribers:
        s.expected = [update_id for topics, update_id in published if s.matches(topics)]
    done.set()
    gevent.joinall(runners, timeout=max(1, deadline - time.monotonic()), raise_error=True)

    resumes = sum(s.connections for s in subscribers) - len(subscribers)
    delivered = sum(len(s.ids) for s in subscribers)
    print(f"\n200 subscribers, 1000 updates, {resumes} resumes, {delivered} deliveries")
    assert resumes >= 1000  # every subscriber really dropped and resumed, many times
    assert sum(1 for s in subscribers if s.expected) >= 150
    for s in subscribers:
        assert s.lost == [], f"subscriber on {s.selectors}: told it lost updates"
        assert s.ids == s.expected, f"subscriber on {s.selectors}: wrong updates"


def test_a_non_ascii_id_is_a_cursor_through_gunicorn_both_ways(
    gunicorn_factory: object, redis_url: str
) -> None:
    """gunicorn refuses header values beyond Latin-1: the hub sends an id's UTF-8 bytes, as the
    reference hub does, and reads a resuming client's UTF-8 ``Last-Event-ID`` back."""
    server: Gunicorn = gunicorn_factory(  # type: ignore[operator]
        redis_url, workers=1, env={"REALTIME_MERCURE_ANONYMOUS": "1"}
    )
    odd = "https://example.com/книга/é"
    topic = f"{ROOT}/k/1"
    assert post_update(server.url, [("topic", topic), ("data", "1"), ("id", odd)]) == odd
    query = f"{HUB}?{urllib.parse.urlencode([('topic', topic)])}"
    fresh = SocketStream(server.port, query)
    fresh.read_events(time.monotonic() + 5)
    assert fresh.status == 200
    assert fresh.headers["mercure-last-event-id"].encode("latin-1").decode() == odd
    fresh.close()
    after = post_update(server.url, [("topic", topic), ("data", "2")])
    again = SocketStream(server.port, query, {"Last-Event-ID": odd})  # sent as UTF-8
    events: list[MessageEvent] = []
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        events += again.read_events(deadline)
    assert again.headers["mercure-last-event-id"].encode("latin-1").decode() == odd
    assert [e.last_event_id for e in events] == [after]
    again.close()
