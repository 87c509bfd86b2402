"""Published Mercure clients against the hub: real gunicorn (two gevent workers), real redis-server.

Proves the acceptance line "a publish from the ``mercure-publisher`` package reaches an
``/events``-style check and a Mercure subscriber; a subscription made with
``flask-mercure-sse``'s or another published Mercure client works". The clients, all from PyPI,
none of them ours:

- **mercure-publisher** publishes, minting its publisher JWT with its own ``JwtProvider`` from
  a ``MercureConfig`` holding the tests' key, and sending the multi-topic form itself;
- **pymercure**'s ``Consumer`` is a published Mercure *subscriber* client: it subscribes by
  ``topic=`` and reads the stream (through sseclient-py), but sends no token and no
  ``Last-Event-ID``, so it reads public updates from a hub open to anonymous subscribers;
- **flask-mercure-sse** is a Flask extension with a hub of its own, and no client that reads a
  stream: what it has for an external hub is how a Flask app *makes* a subscription (the hub
  URL with its ``topic`` parameters, a subscriber JWT it signs itself, carried in draft 07's
  ``authorization`` query parameter or its ``mercureAuthorization`` cookie), for a browser's
  ``EventSource`` to open. Here the stream is opened by **requests-sse**, a generic client
  that follows the EventSource model: it reconnects by itself after the stream ends, sending
  the last id it saw as ``Last-Event-ID``.

What each test shows:

- a mercure-publisher update (two topics, JSON data, its own id, type and retry) is stored once
  in realtime's storage, as realtime's own code reads it back, and reaches a pymercure
  subscriber connected before it, by its alternate topic, with the same id, type and data;
- a subscription made by flask-mercure-sse (URI Template selector; its token, by query or by
  cookie, granting one topic) gets the public updates and the private updates its token
  grants, in order, with their ids, and not those of other topics; when the hub ends the stream
  (its maximum connection age), requests-sse reconnects with ``Last-Event-ID`` and gets exactly
  what was published while it was away, then live updates again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import gevent
import pytest
import requests
from conftest import SECRET, Gunicorn
from flask import Flask, Response
from flask_mercure_sse import MercureSSE  # type: ignore[import-untyped]
from mercure_publisher import MercureConfig, MercurePublisher  # type: ignore[import-untyped]
from pymercure.consumer import Consumer  # type: ignore[import-untyped]
from requests_sse import EventSource, MessageEvent

from realtime.mercure.store import StoredUpdate, from_event
from realtime.storage.broker import Broker
from realtime.storage.interface import Retention

pytestmark = pytest.mark.integration

Factory = Callable[..., Gunicorn]

HUB = "/.well-known/mercure"
BOOKS = "https://example.com/books/{id}"
USER_BOOKS = "https://example.com/users/{user}/books/{id}"
#: What realtime keeps by default; reading the feed back does not depend on it.
RETENTION = Retention(maxlen=1000, ttl_s=0, firehose_maxlen=100_000, idempotency_ttl_s=60)
#: The hub ends every stream this old: a clean end, which the subscribers then act on.
MAX_AGE_S = 3
SETTLE_S = 10.0  # the bound of every wait for something asynchronous to happen


def book(n: int | str) -> str:
    return f"https://example.com/books/{n}"


def hub_env(**extra: str) -> dict[str, str]:
    return {
        "REALTIME_MAX_CONNECTION_AGE_S": str(MAX_AGE_S),
        "REALTIME_HEARTBEAT_S": "1",
        # What the stream's first ``retry:`` tells the clients to wait before reconnecting.
        "REALTIME_RETRY_MS": "100",
        **extra,
    }


@pytest.fixture
def publisher_for() -> Iterator[Callable[[str], Any]]:
    """mercure-publisher's synchronous publisher for a hub URL, its token minted by the
    package from the tests' key (granting every book topic, direct or under a user); closed
    at the end."""
    made: list[Any] = []

    def make(hub_url: str) -> Any:
        config = MercureConfig(
            hub_url=hub_url,
            publisher_jwt_key=SECRET,
            publish_topics=[BOOKS, USER_BOOKS],
            jwt_ttl_seconds=300,
            request_timeout=SETTLE_S,
        )
        publisher = MercurePublisher(config)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


def stored_updates(redis_url: str) -> list[StoredUpdate]:
    """Every Mercure update in realtime's live feed, read with realtime's own storage code."""
    broker = Broker(redis_url, retention=RETENTION, pool_size=2)
    try:
        epoch, head = broker.position()
        events = broker.feed_replay(epoch, 0, head)
        return [update for event in events if (update := from_event(event)) is not None]
    finally:
        broker.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    with gevent.Timeout(SETTLE_S, AssertionError(f"{what} within {SETTLE_S} s")):
        while not condition():
            gevent.sleep(0.02)


def test_mercure_publisher_update_is_stored_once_and_reaches_a_pymercure_subscriber(
    gunicorn_factory: Factory, redis_url: str, publisher_for: Callable[[str], Any]
) -> None:
    server = gunicorn_factory(redis_url, workers=2, env=hub_env(REALTIME_MERCURE_ANONYMOUS="1"))
    hub_url = server.url + HUB
    canonical, alternate = book(1), "https://example.com/users/7/books/1"
    received: list[Any] = []  # pymercure Message objects, as its callback gets them
    consumer = Consumer(hub_url, [alternate], received.append)
    with gevent.Timeout(SETTLE_S):
        consumer.start_consumption()  # returns once the hub has answered: subscribed

    data = {"title": "Dune", "status": "published"}
    returned = publisher_for(hub_url).publish(
        [canonical, alternate], data, id="urn:example:book-1-v2", type="book.updated", retry=2500
    )

    assert returned == "urn:example:book-1-v2"
    # The /events-style check: stored exactly once, everything the form said kept as it said.
    assert [
        (u.id, u.topics, u.data, u.private, u.type, u.retry) for u in stored_updates(redis_url)
    ] == [
        (
            "urn:example:book-1-v2",
            (canonical, alternate),
            json.dumps(data),
            False,
            "book.updated",
            2500,
        )
    ]
    wait_for(lambda: len(received) >= 1, "the pymercure subscriber got the update")
    (message,) = received
    assert (message.message_id, message.event_type, json.loads(message.data)) == (
        "urn:example:book-1-v2",
        "book.updated",
        data,
    )
    # The hub ends the stream at its age, cleanly: pymercure's reading thread ends with it,
    # having got nothing more.
    consumer.join(MAX_AGE_S + SETTLE_S)
    assert not consumer.is_alive()
    assert len(received) == 1


def flask_mercure_sse_subscription(
    hub_url: str, token_via: str, granted: list[str], selectors: list[str]
) -> tuple[str, requests.Session]:
    """The subscription URL and HTTP session a Flask app using flask-mercure-sse with this hub
    as its external hub gives a subscriber: its token granting ``granted``, signed by
    flask-mercure-sse with the hub's key, in the URL's ``authorization`` parameter or in the
    cookie its ``set_authz_cookie`` sets."""
    app = Flask("flask_mercure_sse_host")
    mercure = MercureSSE(
        app, hub_url=hub_url, subscriber_secret_key=SECRET, publisher_secret_key=SECRET, hub=False
    )
    session = requests.Session()
    if token_via == "query":
        url: str = mercure.hub_url(
            selectors, subscriber_jwt=mercure.create_subscription_jwt(granted)
        )
        assert "&authorization=" in url
        return url, session
    response = Response()
    mercure.set_authz_cookie(response, topics=granted)
    cookie = SimpleCookie()
    cookie.load(response.headers["Set-Cookie"])
    for name, morsel in cookie.items():
        session.cookies.set(name, morsel.value, domain=morsel["domain"], path=morsel["path"])
    assert list(session.cookies.keys()) == ["mercureAuthorization"]
    url = mercure.hub_url(selectors)
    assert "authorization=" not in url
    return url, session


@pytest.mark.parametrize("token_via", ["query", "cookie"])
def test_flask_mercure_sse_subscription_gets_its_updates_in_order_and_resumes_by_last_event_id(
    gunicorn_factory: Factory,
    redis_url: str,
    publisher_for: Callable[[str], Any],
    token_via: str,
) -> None:
    # No anonymous subscribers: the stream opens only if the hub takes flask-mercure-sse's token.
    server = gunicorn_factory(redis_url, workers=2, env=hub_env())
    hub_url = server.url + HUB
    publisher = publisher_for(hub_url)
    url, session = flask_mercure_sse_subscription(
        hub_url, token_via, granted=[book(1)], selectors=[BOOKS]
    )

    def publish(topic: str, data: str, update_id: str, *, private: bool = False) -> None:
        assert publisher.publish(topic, data, id=update_id, private=private) == update_id

    opened: list[str] = []
    away: list[str] = []

    def while_away() -> None:
        """requests-sse's error handler, called when a stream ends, before it reconnects: what
        is published here is published while the subscriber is disconnected."""
        if opened and not away:
            away.append("published")
            publish(book(8), "public, while away", "pub-2")
            publish(book(2), "private, another topic, while away", "other-2", private=True)
            publish(book(1), "private, granted, while away", "priv-2", private=True)

    source = EventSource(
        url,
        session=session,
        timeout=SETTLE_S,
        reconnection_time=timedelta(milliseconds=100),
        max_connect_retry=0,
        on_open=lambda: opened.append("open"),
        on_error=while_away,
    )

    def next_events(count: int) -> list[tuple[str | None, str, str | None]]:
        events: list[MessageEvent] = [next(source) for _ in range(count)]
        return [(e.type, e.last_event_id, e.data) for e in events]

    try:
        with gevent.Timeout(MAX_AGE_S + 2 * SETTLE_S):
            source.connect(0)  # subscribed once it returns: the hub has answered 200
            publish(book(7), "public", "pub-1")
            publish(book(2), "private, another topic", "other-1", private=True)
            publish(book(1), "private, granted", "priv-1", private=True)
            assert next_events(2) == [
                ("message", "pub-1", "public"),
                ("message", "priv-1", "private, granted"),
            ]
            # The hub ends this stream at its age; requests-sse reconnects with Last-Event-ID:
            # priv-1 and gets what was published meanwhile, then live updates.
            first_after_reconnect = next_events(2)
            assert away == ["published"]
            assert opened == ["open", "open"]
            assert first_after_reconnect == [
                ("message", "pub-2", "public, while away"),
                ("message", "priv-2", "private, granted, while away"),
            ]
            publish(book(3), "public, live again", "pub-3")
            assert next_events(1) == [("message", "pub-3", "public, live again")]
    finally:
        source.close()
        session.close()
