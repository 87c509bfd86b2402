"""Mercure active subscriptions across two real gunicorn instances sharing one real redis-server.

Proves the acceptance line "the subscriptions API lists subscribers on two gunicorn instances and
emits subscription events", against draft 08 ("Active Subscriptions", "Subscription Events",
"Subscription API") and draft 07 ("Active Subscriptions"):

- every subscription made on either instance (draft 07 ``topic=``, draft 08 ``match=`` and
  ``match_urlpattern=``, with and without a token ``payload``) is announced once, as a private
  ``event: mercure`` update whose JSON document has the draft's shape, ``id`` equal to its
  topic (the RFC 6570 expansion, each variable percent-encoded once), the hub-made subscriber
  id and the payload of the first matching ``subscribe`` grant; its end is announced with
  ``active: false`` under the same id;
- the subscriptions API of *either* instance lists the subscriptions of both (root collection,
  per-selector collections in both drafts' path shapes, single subscriptions, 404 for unknown
  ones) with the ``rel="mercure"`` Link and its ``last-event-id`` cursor, which resumes the
  event stream with nothing lost; a closed subscriber leaves the listing;
- the API wants a token granting ``subscribe`` on the requested path (401 with a Bearer
  challenge, 403 ``insufficient_scope``), and subscribers without such a grant (anonymous, or
  granted other topics) never receive subscription events, live or replayed;
- draft 07's root collection (``Accept: application/ld+json``) is a JSON-LD ``Subscriptions``
  document carrying ``lastEventID``.
- draft 07's single-subscription document carries ``lastEventID`` too, and its paths for a
  selector starting with ``/`` (a relative one) are served, not redirected away.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import jwt
import pytest
from conftest import SECRET, Gunicorn
from mercure_tokens import PUBLISHER, bearer, draft07, draft08
from raw_http import Answer, request
from sse_client import SocketStream

from realtime.core.sse import MessageEvent
from realtime.mercure.tokens import DETAIL_TYPE

pytestmark = pytest.mark.integration

T = TypeVar("T")
Document = dict[str, Any]
Factory = Callable[..., Gunicorn]

HUB = "/.well-known/mercure"
SUBS = HUB + "/subscriptions"
CONTEXT = "https://mercure.rocks/"
BOOKS = "https://example.com/books/{id}"  # a draft 07 URI Template selector
A_TOPIC = "https://example.com/a-topic"
SHELVES = "https://example.com/shelves/:id"  # a draft 08 URL Pattern
#: Draft 08 watcher: a relative URL Pattern, resolved against each hub's own URL.
EVENTS_08 = SUBS + "/*"
#: Draft 07 watcher: the URI Template of draft 07's subscription topics (two segments).
EVENTS_07 = SUBS + "{/topic}{/subscriber}"

#: Subscribe on every subscription event and on every API resource, root collection included.
ADMIN = draft08(subscribe=[{"match": SUBS}, {"match": EVENTS_08, "match_type": "urlpattern"}])
ADMIN_07 = draft07(subscribe=[EVENTS_07])

SETTLE_S = 10.0  # the bound of every wait for something asynchronous to happen


def servers_env(**extra: str) -> dict[str, str]:
    return {
        "REALTIME_MERCURE_SUBSCRIPTIONS": "1",
        "REALTIME_MERCURE_ANONYMOUS": "1",
        "REALTIME_PRESENCE_TTL_S": "6",
        # A closed client is noticed at the next write: heartbeats make that prompt.
        "REALTIME_HEARTBEAT_S": "0.3",
        **extra,
    }


def two_instances(gunicorn_factory: Factory, redis_url: str) -> tuple[Gunicorn, Gunicorn]:
    env = servers_env()
    return (
        gunicorn_factory(redis_url, workers=2, env=env),
        gunicorn_factory(redis_url, workers=2, env=env),
    )


def access_token(*details: tuple[list[dict[str, str]], dict[str, Any] | None]) -> str:
    """A draft 08 access token of ``subscribe`` details, each (topics, payload or None)."""
    body: list[dict[str, Any]] = []
    for topics, payload in details:
        detail: dict[str, Any] = {"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": topics}
        if payload is not None:
            detail["payload"] = payload
        body.append(detail)
    claims = {"authorization_details": body, "exp": int(time.time() + 3600)}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


# -- the documents the drafts define, written from the spec (not from the hub's code) -----------


def expand(value: str) -> str:
    """RFC 6570 simple expansion of one variable: everything but unreserved percent-encoded."""
    return quote(value, safe="")


def doc07(topic: str, subscriber: str, *, active: bool, payload: Any = None) -> Document:
    document: Document = {
        "@context": CONTEXT,
        "id": f"{SUBS}/{expand(topic)}/{expand(subscriber)}",
        "type": "Subscription",
        "topic": topic,
        "subscriber": subscriber,
        "active": active,
    }
    if payload is not None:
        document["payload"] = payload
    return document


def doc08(
    match_type: str, match: str, subscriber: str, *, active: bool, payload: Any = None
) -> Document:
    document: Document = {
        "id": f"{SUBS}/{match_type}/{expand(match)}/{expand(subscriber)}",
        "type": "subscription",
        "match_type": match_type,
        "match": match,
        "subscriber": subscriber,
        "active": active,
    }
    if payload is not None:
        document["payload"] = payload
    return document


def key(document: Document) -> str:
    """A document as a comparable value (the draft 07 ``@context`` may be left to the parent)."""
    return json.dumps({k: v for k, v in document.items() if k != "@context"}, sort_keys=True)


def keys(documents: list[Document]) -> Counter[str]:
    return Counter(key(d) for d in documents)


# -- streams and the API -------------------------------------------------------------------------


class Stream:
    """One Mercure subscriber connection on a real server, every event it got kept."""

    def __init__(
        self,
        server: Gunicorn,
        query: list[tuple[str, str]],
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.stream = SocketStream(
            server.port,
            f"{HUB}?{urlencode(query)}",
            {**(bearer(token) if token else {}), **(headers or {})},
        )
        self.events: list[MessageEvent] = []
        self.events += self.stream.read_events(time.monotonic() + SETTLE_S)
        assert self.stream.status == 200, (self.stream.status, server.log()[-2000:])

    @property
    def headers(self) -> dict[str, str]:
        return self.stream.headers

    def read_until(self, done: Callable[[], bool], seconds: float = SETTLE_S) -> bool:
        """Read until ``done()``, the stream's end, or ``seconds``; whether ``done()`` holds."""
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() >= deadline or self.stream.closed:
                return False
            self.events += self.stream.read_events(deadline)
        return True

    def read_for(self, seconds: float) -> None:
        self.read_until(lambda: False, seconds)

    def mercure_events(self) -> list[MessageEvent]:
        return [e for e in self.events if e.type == "mercure"]

    def documents(self) -> list[Document]:
        return [json.loads(e.data) for e in self.mercure_events()]

    def wait_documents(self, count: int, seconds: float = SETTLE_S) -> list[Document]:
        got = self.read_until(lambda: len(self.mercure_events()) >= count, seconds)
        assert got, (
            f"{len(self.mercure_events())} of {count} subscription events: {self.documents()}"
        )
        return self.documents()

    def close(self) -> None:
        self.stream.close()


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    """The streams a test opens, closed at its end whatever happened."""
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def api(
    server: Gunicorn, path: str, token: str | None = ADMIN, accept: str | None = None
) -> Answer:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if accept is not None:
        headers["Accept"] = accept
    return request(server.port, "GET", path, headers)


def cursor_of(answer: Answer, server: Gunicorn) -> str:
    """The reconciliation cursor of the ``rel="mercure"`` Link (draft 08, "Subscription API")."""
    link = answer.headers.get("link", "")
    assert f'<{server.url}{HUB}>; rel="mercure"' in link, link
    found = re.search(r'; last-event-id="([^"]+)"', link)
    assert found is not None, link
    assert '; type="mercure"' in link, link
    return found.group(1)


def eventually(check: Callable[[], T | None], what: str, seconds: float = SETTLE_S) -> T:
    """``check()``'s first value that is not ``None``, polled until ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def listing(server: Gunicorn, path: str, expected: list[Document]) -> Answer | None:
    """The API's answer at ``path`` once it lists exactly ``expected``, else ``None``."""
    answer = api(server, path)
    assert answer.status == 200, answer.body[:300]
    return answer if keys(answer.json()["subscriptions"]) == keys(expected) else None


def found(server: Gunicorn, path: str, token: str) -> Answer | None:
    """The API's answer at ``path`` once it is 200 (presence is flushed asynchronously)."""
    answer = api(server, path, token)
    return answer if answer.status == 200 else None


def subscriber_of(documents: list[Document], **properties: Any) -> list[str]:
    return [
        d["subscriber"]
        for d in documents
        if all(d.get(name) == value for name, value in properties.items())
    ]


# -- 1. events and listings across two instances -------------------------------------------------


def test_subscriptions_of_two_instances_are_announced_and_listed_by_either(
    gunicorn_factory: Factory, redis_url: str, streams: list[Stream]
) -> None:
    a, b = two_instances(gunicorn_factory, redis_url)

    watcher = Stream(a, [("match_urlpattern", EVENTS_08)], ADMIN)
    streams.append(watcher)
    (own,) = watcher.wait_documents(1)  # its own subscription is announced, to itself too
    w = own["subscriber"]
    assert own == doc08("urlpattern", EVENTS_08, w, active=True)

    watcher07 = Stream(b, [("topic", EVENTS_07)], ADMIN_07)
    streams.append(watcher07)
    (own07,) = watcher07.wait_documents(1)
    w07 = own07["subscriber"]
    assert own07 == doc07(EVENTS_07, w07, active=True)

    # S1 (A): draft 07, a token with a payload. S2 (B): two draft 08 selectors on one connection,
    # the payload of the first grant matching each selector. S3 (B) and S4 (A): anonymous.
    s1_token = draft07(subscribe=[BOOKS], payload={"reader": "alice"})
    s2_token = access_token(
        ([{"match": SHELVES, "match_type": "urlpattern"}], {"shelf": "own"}),
        ([{"match": "*"}], {"default": True}),
    )
    s1 = Stream(a, [("topic", BOOKS)], s1_token)
    s2 = Stream(b, [("match", A_TOPIC), ("match_urlpattern", SHELVES)], s2_token)
    s3 = Stream(b, [("topic", A_TOPIC)])
    s4 = Stream(a, [("match_urlpattern", SHELVES)])
    streams += [s1, s2, s3, s4]

    docs = watcher.wait_documents(7)
    (s1_id,) = subscriber_of(docs, topic=BOOKS)
    (s2_id,) = subscriber_of(docs, match_type="exact", match=A_TOPIC)
    (s3_id,) = subscriber_of(docs, topic=A_TOPIC)
    (s4_id,) = [s for s in subscriber_of(docs, match=SHELVES) if s != s2_id]
    ids = [w, w07, s1_id, s2_id, s3_id, s4_id]
    assert len(set(ids)) == len(ids), ids  # one subscriber id per connection
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", s) for s in ids), ids  # made by the hub

    active = [
        doc08("urlpattern", EVENTS_08, w, active=True),
        doc07(EVENTS_07, w07, active=True),
        doc07(BOOKS, s1_id, active=True, payload={"reader": "alice"}),
        doc08("exact", A_TOPIC, s2_id, active=True, payload={"default": True}),
        doc08("urlpattern", SHELVES, s2_id, active=True, payload={"shelf": "own"}),
        doc07(A_TOPIC, s3_id, active=True),
        doc08("urlpattern", SHELVES, s4_id, active=True),
    ]
    # A draft 07 event is a document of its own: no parent node defines its @context.
    assert all(d["@context"] == CONTEXT for d in docs if "topic" in d)
    assert keys(docs) == keys(active)  # one event per selector, each in its draft's shape
    assert all(d["active"] is True for d in docs)
    sse_ids = [e.last_event_id for e in watcher.mercure_events()]
    assert all(sse_ids), sse_ids
    assert len(set(sse_ids)) == len(sse_ids), sse_ids
    # The draft 07 watcher's template selects draft 07's topics only: its own, S1's and S3's.
    docs07 = watcher07.wait_documents(3)
    assert keys(docs07) == keys([active[1], active[2], active[5]])

    # The API of either instance lists both instances' subscriptions (presence is flushed
    # asynchronously: poll). Its cursor is the id of the last event dispatched.
    for server in (b, a):
        answer = eventually(partial(listing, server, SUBS, active), f"root on {server.url}")
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert (body["id"], body["type"]) == (SUBS, "subscriptions")
        assert cursor_of(answer, server) == sse_ids[-1]

    shelves = f"{SUBS}/urlpattern/{expand(SHELVES)}"
    answer = eventually(lambda: listing(a, shelves, [active[4], active[6]]), "shelves on A")
    assert (answer.json()["id"], answer.json()["type"]) == (shelves, "subscriptions")
    exact = f"{SUBS}/exact/{expand(A_TOPIC)}"
    assert eventually(lambda: listing(b, exact, [active[3]]), "exact a-topic on B")
    topic07 = f"{SUBS}/{expand(A_TOPIC)}"  # draft 07's {topic}: S3, not S2's exact match
    answer = eventually(lambda: listing(a, topic07, [active[5]]), "draft 07 a-topic on A")
    assert answer.headers["content-type"] == "application/ld+json"
    assert answer.json()["type"] == "Subscriptions"

    for server, document in ((a, active[4]), (b, active[2]), (b, active[6])):
        one = api(server, document["id"])
        assert one.status == 200, one.body[:300]
        # Draft 07 adds lastEventID at the root (test_draft07_single_subscription_...).
        assert {k: v for k, v in one.json().items() if k != "lastEventID"} == document
        draft07_shape = "topic" in document
        content_type = "application/ld+json" if draft07_shape else "application/json"
        assert one.headers["content-type"] == content_type
        assert cursor_of(one, server) == sse_ids[-1]
    # A relative selector (the watcher's own) has its draft 08 resources too.
    own_collection = f"{SUBS}/urlpattern/{expand(EVENTS_08)}"
    assert eventually(partial(listing, b, own_collection, [active[0]]), "the watcher's selector")
    assert api(a, active[0]["id"]).json() == active[0]
    for missing in (
        f"{shelves}/{expand(f'urn:uuid:{uuid.uuid4()}')}",  # nobody
        f"{exact}/{expand(s4_id)}",  # a subscriber, but not of this selector
        f"{topic07}/{expand(s2_id)}",  # S2's exact match is not a draft 07 topic subscription
    ):
        assert api(b, missing).status == 404, missing

    # S2 (on B) and S1 (on A) go: each of their subscriptions ends with active=false, same id.
    cursor = cursor_of(api(b, SUBS), b)
    s2.close()
    s1.close()
    ended = [
        {**active[2], "active": False},
        {**active[3], "active": False},
        {**active[4], "active": False},
    ]
    docs = watcher.wait_documents(10)
    assert keys(docs) == keys(active + ended)  # exactly once each, nothing else
    assert keys(watcher07.wait_documents(4)) == keys([active[1], active[2], active[5], ended[0]])
    remaining = [active[0], active[1], active[5], active[6]]
    for server in (a, b):
        eventually(partial(listing, server, SUBS, remaining), f"S1, S2 gone on {server.url}")
    assert eventually(lambda: listing(b, shelves, [active[6]]), "shelves without S2")
    assert api(a, active[4]["id"]).status == 404
    assert api(b, active[2]["id"]).status == 404

    # The API's cursor, taken before they went, resumes the events with nothing lost.
    late = Stream(b, [("match_urlpattern", EVENTS_08), ("last_event_id", cursor)], ADMIN)
    streams.append(late)
    assert late.headers["mercure-last-event-id"] == cursor
    late_docs = late.wait_documents(4)
    (late_id,) = subscriber_of(late_docs, active=True)
    assert keys(late_docs) == keys([*ended, doc08("urlpattern", EVENTS_08, late_id, active=True)])


# -- 2. authorization ----------------------------------------------------------------------------


def test_subscriptions_api_and_events_need_a_subscribe_grant_on_their_topics(
    gunicorn_factory: Factory, redis_url: str, streams: list[Stream]
) -> None:
    a, b = two_instances(gunicorn_factory, redis_url)

    missing = api(a, SUBS, token=None)
    assert missing.status == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    invalid = api(a, SUBS, token="not-a-jwt")
    assert invalid.status == 401
    assert invalid.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    exact_only = access_token(([{"match": SUBS + "/exact/*", "match_type": "urlpattern"}], None))
    for token, path in (
        (PUBLISHER, SUBS),  # publish rights only
        (draft08(subscribe=[{"match": "https://example.com/*", "match_type": "urlpattern"}]), SUBS),
        (exact_only, SUBS),  # the root is a topic of its own
        (exact_only, f"{SUBS}/urlpattern/{expand(SHELVES)}"),
        # Draft 07's template grants two segments under subscriptions, not draft 08's three.
        (ADMIN_07, f"{SUBS}/exact/{expand(A_TOPIC)}/{expand('urn:uuid:1')}"),
    ):
        refused = api(b, path, token=token)
        assert refused.status == 403, (path, refused.body[:300])
        assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        assert refused.json()["error"] == "insufficient_scope"
    granted = api(b, f"{SUBS}/exact/{expand(A_TOPIC)}", token=exact_only)
    assert granted.status == 200, granted.body[:300]
    assert api(b, f"{SUBS}/{expand(A_TOPIC)}", token=ADMIN_07).status == 200

    # Watchers without a grant on the events' topics: anonymous, and a token for other topics.
    anonymous = Stream(a, [("match_urlpattern", EVENTS_08)])
    other = draft08(subscribe=[{"match": "https://example.com/*", "match_type": "urlpattern"}])
    unrelated = Stream(b, [("match_urlpattern", EVENTS_08), ("topic", EVENTS_07)], other)
    watcher = Stream(a, [("match_urlpattern", EVENTS_08)], ADMIN)
    streams += [anonymous, unrelated, watcher]
    own = watcher.wait_documents(1)
    subscriber = Stream(b, [("match", A_TOPIC)])
    streams.append(subscriber)
    started = watcher.wait_documents(2)
    (s,) = subscriber_of(started, match=A_TOPIC)
    subscriber.close()
    docs = watcher.wait_documents(3)
    assert keys(docs) == keys(
        [
            *own,
            doc08("exact", A_TOPIC, s, active=True),
            doc08("exact", A_TOPIC, s, active=False),
        ]
    )
    # The authorized watcher got both events, so they were fanned out: the others had them too.
    anonymous.read_for(0.5)
    unrelated.read_for(0.5)
    assert anonymous.events == []
    assert unrelated.events == []

    # Nor from the replay: every event of this hub so far is a subscription event.
    replayed_anonymous = Stream(b, [("match_urlpattern", EVENTS_08), ("last_event_id", "earliest")])
    replayed = Stream(a, [("match_urlpattern", EVENTS_08), ("last_event_id", "earliest")], ADMIN)
    streams += [replayed_anonymous, replayed]
    # The subscriber's two events, and the six announcing every watcher so far (its own too).
    replay = replayed.wait_documents(8)
    assert keys(docs[1:]) <= keys(replay)
    replayed.read_for(0.3)
    assert len(replayed.documents()) == 8, replayed.documents()
    replayed_anonymous.read_for(0.5)
    assert replayed_anonymous.events == []


# -- 3. draft 07 ---------------------------------------------------------------------------------


def test_draft07_root_collection_is_json_ld_with_last_event_id(
    gunicorn_factory: Factory, redis_url: str, streams: list[Stream]
) -> None:
    a, b = two_instances(gunicorn_factory, redis_url)
    watcher = Stream(a, [("topic", EVENTS_07)], ADMIN_07)
    streams.append(watcher)
    (own,) = watcher.wait_documents(1)
    books = Stream(b, [("topic", BOOKS)], draft07(subscribe=["*"], payload={"reader": "bob"}))
    streams.append(books)
    docs = watcher.wait_documents(2)
    (reader,) = subscriber_of(docs, topic=BOOKS)
    expected = [own, doc07(BOOKS, reader, active=True, payload={"reader": "bob"})]
    ld = "application/ld+json"
    for server in (a, b):
        answer = eventually(partial(listing07, server, expected), f"draft 07 root on {server.url}")
        assert answer.headers["content-type"] == ld
        body = answer.json()
        assert body["@context"] == CONTEXT
        assert (body["id"], body["type"]) == (SUBS, "Subscriptions")
        last = watcher.mercure_events()[-1].last_event_id
        assert body["lastEventID"] == last == cursor_of(answer, server)


def listing07(server: Gunicorn, expected: list[Document]) -> Answer | None:
    answer = api(server, SUBS, token=ADMIN_07, accept="application/ld+json")
    assert answer.status == 200, answer.body[:300]
    return answer if keys(answer.json()["subscriptions"]) == keys(expected) else None


# -- what the hub does not do yet (strict: each turns into a failure once it is fixed) ----------


def listed(server: Gunicorn, token: str, count: int) -> list[Document] | None:
    """The root collection's members once there are ``count`` of them."""
    members: list[Document] = api(server, SUBS, token).json()["subscriptions"]
    return members if len(members) == count else None


def test_draft07_single_subscription_carries_last_event_id(
    gunicorn_factory: Factory, redis_url: str, streams: list[Stream]
) -> None:
    server = gunicorn_factory(redis_url, workers=1, env=servers_env())
    books = Stream(server, [("topic", BOOKS)])
    streams.append(books)
    (member,) = eventually(partial(listed, server, ADMIN, 1), "the subscription listed")
    one = api(server, member["id"], ADMIN_07)
    assert one.status == 200, one.body[:300]
    assert one.headers["content-type"] == "application/ld+json"
    assert one.json()["lastEventID"] == cursor_of(one, server)


def test_draft07_paths_of_relative_selectors_are_served_by_the_api(
    gunicorn_factory: Factory, redis_url: str, streams: list[Stream]
) -> None:
    server = gunicorn_factory(redis_url, workers=1, env=servers_env())
    watcher = Stream(server, [("topic", EVENTS_07)], ADMIN_07)
    streams.append(watcher)
    (own,) = watcher.wait_documents(1)
    eventually(partial(listed, server, ADMIN_07, 1), "the watcher listed")
    collection = api(server, f"{SUBS}/{expand(EVENTS_07)}", ADMIN_07)
    assert collection.status == 200, collection.headers.get("location")
    assert keys(collection.json()["subscriptions"]) == keys([own])
    one = api(server, own["id"], ADMIN_07)
    assert one.status == 200, one.headers.get("location")
    assert {k: v for k, v in one.json().items() if k != "lastEventID"} == own
