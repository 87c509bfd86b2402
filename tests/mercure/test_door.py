"""The Mercure hub in process (Flask test client, real Redis, the hub's real reader greenlet).

What a Mercure client sees of ``/.well-known/mercure``: a form publish answered with its id, the
update delivered with that id verbatim, resume by id as draft 08 says (reused ids, ``earliest``,
unknown ids), privacy, the end of a stream at the token's ``exp``, the Bearer challenges, and
every refusal writing nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from mercure_tokens import PUBLISHER, bearer, draft07, draft08
from sse_client import InProcessStream

from realtime.core.sse import MessageEvent
from realtime.storage.keys import FIREHOSE_KEY

HUB = "/.well-known/mercure"
BOOKS = "https://example.com/books/{id}"


def publish(client: Any, token: str = PUBLISHER, **fields: Any) -> str:
    response = client.post(HUB, data=fields, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return str(response.get_data(as_text=True))


def subscribe(
    client: Any, query: str, headers: dict[str, str] | None = None, status: int = 200
) -> InProcessStream:
    response = client.get(f"{HUB}?{query}", headers=headers or {}, buffered=False)
    assert response.status_code == status, response.get_data()
    stream = InProcessStream(response)
    stream.parser.feed(next(stream._chunks))  # the opening comment: headers are out
    return stream


def ids(events: list[MessageEvent]) -> list[str]:
    return [e.last_event_id for e in events]


def test_an_update_arrives_with_the_publishers_id_type_retry_and_exact_data(mercure: Any) -> None:
    stream = subscribe(mercure, f"topic={BOOKS}")
    data = "  first line\n  second line\n\n   after a blank "
    sent = publish(
        mercure,
        topic="https://example.com/books/1",
        data=data,
        id="rev-1",
        type="book",
        retry="900",
    )
    assert sent == "rev-1"
    [event] = stream.next_events()
    assert (event.last_event_id, event.type, event.data) == ("rev-1", "book", data)
    assert stream.parser.retry_ms == 900
    stream.close()


def test_an_update_without_id_gets_a_random_urn_returned_and_delivered(mercure: Any) -> None:
    stream = subscribe(mercure, "match=https://example.com/a")
    sent = publish(mercure, topic="https://example.com/a", data="x")
    assert sent.startswith("urn:uuid:")
    assert ids(stream.next_events()) == [sent]
    stream.close()


def test_alternate_topics_match_too(mercure: Any) -> None:
    stream = subscribe(mercure, "match=https://example.com/alt")
    publish(mercure, topic=["https://example.com/canonical", "https://example.com/alt"], data="a")
    [event] = stream.next_events()
    assert event.data == "a"
    stream.close()


@pytest.mark.parametrize(
    ("where", "name"),
    [("header", "Last-Event-ID"), ("query", "last_event_id"), ("query", "lastEventID")],
)
def test_a_subscriber_resumes_exactly_after_the_id_it_sends(
    mercure: Any, where: str, name: str
) -> None:
    sent = [publish(mercure, topic=f"https://example.com/{n % 2}", data=str(n)) for n in range(6)]
    headers = {name: sent[1]} if where == "header" else {}
    query = "match=https://example.com/0&match=https://example.com/1"
    if where == "query":
        query += f"&{name}={sent[1]}"
    stream = subscribe(mercure, query, headers)
    headers_out = stream.response.headers
    assert headers_out["Mercure-Last-Event-ID"] == sent[1]
    assert headers_out["Last-Event-ID"] == sent[1]
    assert ids(stream.collect(4)) == sent[2:]
    live = publish(mercure, topic="https://example.com/0", data="live")
    assert ids(stream.next_events()) == [live]
    stream.close()


def test_the_header_wins_over_the_query_cursor(mercure: Any) -> None:
    sent = [publish(mercure, topic="https://example.com/t", data=str(n)) for n in range(3)]
    stream = subscribe(
        mercure,
        f"match=https://example.com/t&last_event_id={sent[0]}",
        {"Last-Event-ID": sent[1]},
    )
    assert ids(stream.collect(1)) == [sent[2]]
    stream.close()


def test_a_fresh_subscriber_is_told_the_cursor_that_resumes_it_exactly(mercure: Any) -> None:
    empty = subscribe(mercure, "match=https://example.com/t")
    assert empty.response.headers["Mercure-Last-Event-ID"] == "earliest"
    empty.close()
    first = publish(mercure, topic="https://example.com/t", data="before")
    fresh = subscribe(mercure, "match=https://example.com/t")
    cursor = fresh.response.headers["Mercure-Last-Event-ID"]
    assert cursor == first
    fresh.close()
    missed = publish(mercure, topic="https://example.com/t", data="while away")
    again = subscribe(mercure, "match=https://example.com/t", {"Last-Event-ID": cursor})
    assert ids(again.collect(1)) == [missed]
    again.close()


def test_earliest_replays_everything_held(mercure: Any) -> None:
    sent = [publish(mercure, topic="https://example.com/e", data=str(n)) for n in range(3)]
    stream = subscribe(mercure, "match=https://example.com/e&last_event_id=earliest")
    assert stream.response.headers["Mercure-Last-Event-ID"] == "earliest"
    assert ids(stream.collect(3)) == sent
    stream.close()


def test_an_unknown_id_is_reported_as_earliest_and_resumes_live_only(mercure: Any) -> None:
    publish(mercure, topic="https://example.com/u", data="old")
    stream = subscribe(mercure, "match=https://example.com/u", {"Last-Event-ID": "never-sent"})
    assert stream.response.headers["Mercure-Last-Event-ID"] == "earliest"
    live = publish(mercure, topic="https://example.com/u", data="new")
    assert ids(stream.next_events()) == [live]
    stream.close()


def test_a_reused_id_resolves_to_its_earliest_update_and_later_reuses_are_sent(
    mercure: Any,
) -> None:
    topic = "https://example.com/r"
    publish(mercure, topic=topic, data="1", id="same")
    publish(mercure, topic=topic, data="2", id="other")
    publish(mercure, topic=topic, data="3", id="same")
    stream = subscribe(mercure, f"match={topic}", {"Last-Event-ID": "same"})
    assert [e.data for e in stream.collect(2)] == ["2", "3"]
    stream.close()


def test_private_updates_reach_only_subscribers_whose_token_grants_one_of_their_topics(
    mercure: Any,
) -> None:
    query = "match_urlpattern=https://example.com/books/:id"
    anonymous = subscribe(mercure, query)
    reader = draft08(
        subscribe=[{"match": "https://example.com/users/42/*", "match_type": "urlpattern"}]
    )
    granted = subscribe(mercure, query, bearer(reader))
    publish(
        mercure,
        topic=["https://example.com/books/1", "https://example.com/users/42/books/1"],
        data="for 42",
        private="on",
    )
    publish(mercure, topic="https://example.com/books/2", data="secret", private="")
    public = publish(mercure, topic="https://example.com/books/3", data="public")
    assert [e.data for e in granted.collect(2)] == ["for 42", "public"]
    assert ids(anonymous.next_events()) == [public]  # the first it gets is the public one
    anonymous.close()
    granted.close()


def test_the_stream_ends_at_the_tokens_exp(mercure: Any) -> None:
    token = draft07(subscribe=["*"], exp=time.time() + 2)
    stream = subscribe(mercure, "topic=*", bearer(token))
    started = time.monotonic()
    rest = b"".join(stream._chunks)  # until the server ends the stream
    assert rest.endswith(b": expired\n\n")
    assert time.monotonic() - started < 5
    stream.close()


def test_without_anonymous_access_a_subscriber_needs_a_token(
    app_factory: Callable[..., Any],
) -> None:
    client = app_factory().test_client()
    response = client.get(f"{HUB}?topic=*")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"] == "missing_token"
    stream = subscribe(client, "topic=*", bearer(draft07(subscribe=[])))  # any valid token
    stream.close()


def test_a_bad_token_is_refused_with_an_invalid_token_challenge(mercure: Any) -> None:
    response = mercure.get(f"{HUB}?topic=*", headers=bearer("not.a.token"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_mercure_updates_never_reach_the_other_doors(mercure: Any) -> None:
    response = mercure.get("/events?topic=mercure!updates", headers=bearer(PUBLISHER))
    assert response.status_code == 400


# -- refusals: the spec's status, nothing written --------------------------------------------


def feed_length(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(FIREHOSE_KEY))
    finally:
        client.close()


REFUSED_PUBLISHES: list[tuple[str, dict[str, Any], dict[str, str], int, str]] = [
    ("no token", {"topic": "a"}, {}, 401, "missing_token"),
    ("bad token", {"topic": "a"}, bearer("x.y.z"), 401, "invalid_token"),
    (
        "no publish rights",
        {"topic": "a"},
        bearer(draft07(subscribe=["*"])),
        403,
        "insufficient_scope",
    ),
    (
        "a topic not granted",
        {"topic": ["https://example.com/ok", "https://example.com/not"]},
        bearer(draft07(publish=["https://example.com/ok"])),
        403,
        "insufficient_scope",
    ),
    ("no topic", {"data": "x"}, bearer(PUBLISHER), 400, "missing_topic"),
    ("reserved type", {"topic": "a", "type": "mercure"}, bearer(PUBLISHER), 400, "reserved_type"),
    ("id earliest", {"topic": "a", "id": "earliest"}, bearer(PUBLISHER), 400, "invalid_id"),
    ("id with #", {"topic": "a", "id": "#1"}, bearer(PUBLISHER), 400, "invalid_id"),
    ("id with a newline", {"topic": "a", "id": "a\nb"}, bearer(PUBLISHER), 400, "invalid_id"),
    ("type with a newline", {"topic": "a", "type": "a\nb"}, bearer(PUBLISHER), 400, "invalid_type"),
    (
        "retry not a number",
        {"topic": "a", "retry": "soon"},
        bearer(PUBLISHER),
        400,
        "invalid_retry",
    ),
    (
        "a topic in the hub's namespace",
        {"topic": "/.well-known/mercure/subscriptions/x/y"},
        bearer(PUBLISHER),
        400,
        "invalid_topic",
    ),
    (
        "data too large",
        {"topic": "a", "data": "x" * 70_000},
        bearer(PUBLISHER),
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(
    ("fields", "headers", "status", "code"),
    [case[1:] for case in REFUSED_PUBLISHES],
    ids=[case[0] for case in REFUSED_PUBLISHES],
)
def test_a_refused_publish_gets_its_status_and_writes_nothing(
    mercure: Any,
    redis_url: str,
    fields: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    before = feed_length(redis_url)
    response = mercure.post(HUB, data=fields, headers=headers)
    assert (response.status_code, response.get_json()["error"]) == (status, code)
    assert feed_length(redis_url) == before


def test_a_publish_that_is_not_a_form_is_refused_415(mercure: Any, redis_url: str) -> None:
    before = feed_length(redis_url)
    response = mercure.post(HUB, json={"topic": "a"}, headers=bearer(PUBLISHER))
    assert response.status_code == 415
    assert feed_length(redis_url) == before


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "missing_topic"),
        ("match_regex=.*", "invalid_selector"),
        ("Match=x", "invalid_selector"),
        ("match_urlpattern=https://example.com/(", "invalid_selector"),
        ("topic=a%00b", "invalid_selector"),
    ],
)
def test_a_bad_subscription_is_refused_400(mercure: Any, query: str, code: str) -> None:
    response = mercure.get(f"{HUB}?{query}")
    assert (response.status_code, response.get_json()["error"]) == (400, code)


# -- the CSRF guard ----------------------------------------------------------------------------


def test_a_cookie_publish_needs_a_page_of_an_allowed_origin(mercure: Any, redis_url: str) -> None:
    mercure.set_cookie("mercureAuthorization", PUBLISHER)
    before = feed_length(redis_url)
    for origin in (None, "https://evil.example"):
        headers = {"Origin": origin} if origin else {}
        response = mercure.post(HUB, data={"topic": "a"}, headers=headers)
        assert (response.status_code, response.get_json()["error"]) == (403, "origin_not_allowed")
    assert feed_length(redis_url) == before
    same_site = mercure.post(HUB, data={"topic": "a"}, headers={"Origin": "http://localhost"})
    assert same_site.status_code == 200


# -- what the review found: ids that are not ASCII or short, HEAD, forms that are not UTF-8 ----


def test_a_non_ascii_id_travels_as_utf8_in_the_cursor_headers_and_resumes(mercure: Any) -> None:
    odd = "https://example.com/книга/é"
    publish(mercure, topic="https://example.com/k", data="1", id=odd)
    fresh = subscribe(mercure, "match=https://example.com/k")
    raw = fresh.response.headers["Mercure-Last-Event-ID"]
    assert raw.encode("latin-1").decode("utf-8") == odd  # the header's bytes are UTF-8
    fresh.close()
    after = publish(mercure, topic="https://example.com/k", data="2")
    # As a browser sends it back: the UTF-8 bytes, which WSGI hands over as Latin-1.
    again = subscribe(mercure, "match=https://example.com/k", {"Last-Event-ID": raw})
    assert again.response.headers["Mercure-Last-Event-ID"] == raw
    assert ids(again.collect(1)) == [after]
    again.close()


def test_any_id_a_publisher_may_give_may_come_back_as_a_cursor(mercure: Any) -> None:
    long_id = "https://example.com/revisions/" + "7" * 900
    publish(mercure, topic="https://example.com/l", data="1", id=long_id)
    after = publish(mercure, topic="https://example.com/l", data="2")
    stream = subscribe(mercure, "match=https://example.com/l", {"Last-Event-ID": long_id})
    assert ids(stream.collect(1)) == [after]
    stream.close()


def test_a_head_request_answers_the_headers_and_holds_no_subscription(
    mercure: Any, hub_state: Any
) -> None:
    response = mercure.head(f"{HUB}?topic=*")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert hub_state.hub.subscription_count == 0


def test_a_form_that_is_not_utf8_is_refused_and_stores_nothing(
    mercure: Any, redis_url: str
) -> None:
    before = feed_length(redis_url)
    response = mercure.post(
        HUB,
        data=b"topic=a&data=%ff",
        headers={**bearer(PUBLISHER), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (response.status_code, response.get_json()["error"]) == (400, "bad_form")
    assert feed_length(redis_url) == before
