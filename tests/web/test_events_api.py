"""GET /events in process (Flask test client, real Redis, the hub's real reader greenlet)."""

from __future__ import annotations

import json
from typing import Any

import gevent
import pytest
import redis
from conftest import make_token
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sse_client import InProcessStream

from realtime.core.sse import EventStreamParser
from realtime.storage.keys import TRIMMED_KEY
from realtime.web.state import state

TOKEN = make_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def publish(client: Any, topic: str, data: Any, type: str | None = None) -> str:
    body: dict[str, Any] = {"topic": topic, "data": data}
    if type:
        body["type"] = type
    response = client.post("/publish", json=body, headers=AUTH)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def open_stream(client: Any, query: str, headers: dict[str, str] | None = None) -> InProcessStream:
    response = client.get(f"/events?{query}", headers={**AUTH, **(headers or {})}, buffered=False)
    assert response.status_code == 200, response.get_data()
    return InProcessStream(response)


def test_stream_headers_and_preamble(client: Any) -> None:
    stream = open_stream(client, "topic=demo")
    response = stream.response
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Connection" not in response.headers
    first = next(stream._chunks)
    assert first.startswith(b"retry: 3000\n\n: ok\n\n")
    stream.parser.feed(first)
    assert stream.parser.retry_ms == 3000
    # A fresh client is told the head id without an event, so its first reconnect is exact.
    assert stream.parser.last_event_id.endswith("-0")
    stream.close()


def test_a_head_request_answers_the_headers_and_holds_no_stream(client: Any, app: Any) -> None:
    response = client.head("/events?topic=demo", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert state(app).hub.subscription_count == 0


def test_live_events_arrive_with_id_type_topic_and_exact_data(client: Any) -> None:
    stream = open_stream(client, "topic=demo")
    next(stream._chunks)
    sent = publish(client, "demo", "line 1\nline 2\n\n data: injected?", type="note")
    [event] = stream.next_events()
    assert (event.last_event_id, event.type, event.fields["topic"]) == (sent, "note", "demo")
    assert event.data == "line 1\nline 2\n\n data: injected?"
    stream.close()


def test_replay_after_last_event_id_then_live_without_gap_or_duplicate(client: Any) -> None:
    ids = [publish(client, "a" if n % 2 else "b", str(n)) for n in range(10)]
    stream = open_stream(client, "topic=a&topic=b", {"Last-Event-ID": ids[3]})
    replayed = stream.collect(6)
    assert [e.last_event_id for e in replayed] == ids[4:]
    more = [publish(client, "a", f"live {n}") for n in range(3)]
    live = stream.collect(3)
    assert [e.last_event_id for e in live] == more
    stream.close()


def test_replay_only_includes_the_requested_topics(client: Any) -> None:
    ids = [publish(client, topic, topic) for topic in ("a", "x", "a", "y")]
    epoch = ids[0].split("-")[0]
    stream = open_stream(client, "topic=a", {"Last-Event-ID": f"{epoch}-0"})
    assert [e.last_event_id for e in stream.collect(2)] == [ids[0], ids[2]]
    stream.close()


def test_a_resume_within_the_workers_memory_is_exact_and_asks_no_redis(
    client: Any, app: Any
) -> None:
    from realtime.ops import metrics

    follower = open_stream(client, "topic=a")  # the hub's reader runs from here on
    ids = [publish(client, "a" if n % 2 else "b", str(n)) for n in range(10)]
    assert [e.last_event_id for e in follower.collect(5)] == ids[1::2]
    hub = state(app).hub
    with gevent.Timeout(5):
        while hub.position < int(ids[-1].split("-")[1]):
            gevent.sleep(0.01)
    from_memory = metrics.STARTS_FROM_MEMORY._value.get()
    from_storage = metrics.STARTS_FROM_STORAGE._value.get()
    stream = open_stream(client, "topic=a&topic=b", {"Last-Event-ID": ids[3]})
    assert [e.last_event_id for e in stream.collect(6)] == ids[4:]
    more = [publish(client, "b", f"live {n}") for n in range(3)]
    assert [e.last_event_id for e in stream.collect(3)] == more
    assert metrics.STARTS_FROM_MEMORY._value.get() == from_memory + 1
    assert metrics.STARTS_FROM_STORAGE._value.get() == from_storage
    stream.close()
    follower.close()


def test_last_event_id_header_wins_over_query(client: Any) -> None:
    ids = [publish(client, "a", str(n)) for n in range(4)]
    stream = open_stream(client, f"topic=a&lastEventId={ids[0]}", {"Last-Event-ID": ids[2]})
    assert [e.last_event_id for e in stream.collect(1)] == [ids[3]]
    stream.close()
    stream = open_stream(client, f"topic=a&lastEventId={ids[1]}")
    assert [e.last_event_id for e in stream.collect(2)] == ids[2:]
    stream.close()


def test_seam_publishes_racing_the_replay_are_delivered_once(client: Any) -> None:
    first = publish(client, "a", "0")
    publisher = gevent.spawn(lambda: [publish(client, "a", str(n)) for n in range(1, 200)])
    stream = open_stream(client, "topic=a", {"Last-Event-ID": first})
    publisher.join()
    events = stream.collect(199, timeout=10)
    assert [e.data for e in events] == [str(n) for n in range(1, 200)]
    stream.close()


def test_reset_when_history_was_trimmed(app_factory: Any) -> None:
    app = app_factory(REALTIME_HISTORY_MAXLEN=3)
    client = app.test_client()
    ids = [publish(client, "a", str(n)) for n in range(6)]
    stream = open_stream(client, "topic=a", {"Last-Event-ID": ids[0]})
    [reset] = stream.next_events()
    assert reset.type == "reset"
    assert json.loads(reset.data) == {"reason": "trimmed", "last_id": ids[-1]}
    assert reset.last_event_id == ids[-1]
    # After a reset: live events only, no partial replay.
    live = publish(client, "a", "after")
    [event] = stream.next_events()
    assert (event.last_event_id, event.data) == (live, "after")
    stream.close()
    # Resuming from the newest trimmed id (the live publish trimmed ids[3]) is still exact.
    stream = open_stream(client, "topic=a", {"Last-Event-ID": ids[3]})
    assert [e.last_event_id for e in stream.collect(3)] == [*ids[4:], live]
    stream.close()


def test_reset_when_epoch_changed_because_redis_lost_its_data(
    client: Any, redis_client: redis.Redis
) -> None:
    old = publish(client, "a", "before")
    redis_client.flushall()
    stream = open_stream(client, "topic=a", {"Last-Event-ID": old})
    [reset] = stream.next_events()
    data = json.loads(reset.data)
    assert reset.type == "reset"
    assert data["reason"] == "epoch"
    assert data["last_id"].split("-")[0] != old.split("-")[0]
    stream.close()


@pytest.mark.parametrize(
    "last_id", ["garbage", "abc-", "ABC-1", "-5", "deadbeef-12-3"], ids=lambda v: repr(v)
)
def test_reset_unknown_id_for_ids_that_are_not_ours(client: Any, last_id: str) -> None:
    publish(client, "a", "x")
    stream = open_stream(client, "topic=a", {"Last-Event-ID": last_id})
    [reset] = stream.next_events()
    assert (reset.type, json.loads(reset.data)["reason"]) == ("reset", "unknown_id")
    stream.close()


def test_reset_unknown_id_for_an_id_from_the_future(client: Any) -> None:
    sent = publish(client, "a", "x")
    future = sent.split("-")[0] + "-999"
    stream = open_stream(client, "topic=a", {"Last-Event-ID": future})
    [reset] = stream.next_events()
    assert json.loads(reset.data)["reason"] == "unknown_id"
    stream.close()


def test_trim_marker_is_per_topic(client: Any, redis_client: redis.Redis) -> None:
    ids = [publish(client, "a", "x") for _ in range(2)]
    redis_client.hset(TRIMMED_KEY, "b", 2)
    stream = open_stream(client, "topic=a", {"Last-Event-ID": ids[0]})
    assert [e.last_event_id for e in stream.collect(1)] == [ids[1]]
    stream.close()


def test_envelope_gives_browsers_topic_type_and_their_start_position(client: Any) -> None:
    head = publish(client, "a", "before")
    stream = open_stream(client, "topic=a&topic=b&envelope=1")
    [ready] = stream.next_events()  # readable by a script, unlike the bare id line
    assert (ready.type, ready.last_event_id) == ("ready", head)
    assert json.loads(ready.data) == {"last_id": head}
    publish(client, "b", "hi\nthere", type="created")
    [event] = stream.next_events()
    assert event.type == "message"  # one onmessage handler gets every type
    assert json.loads(event.data) == {"topic": "b", "type": "created", "data": "hi\nthere"}
    stream.close()


def test_heartbeat_comment_when_idle(app_factory: Any) -> None:
    client = app_factory(REALTIME_HEARTBEAT_S="0.1").test_client()
    stream = open_stream(client, "topic=a")
    next(stream._chunks)
    with gevent.Timeout(2):
        assert next(stream._chunks) == b": heartbeat\n\n"
    stream.close()


def test_closing_the_stream_releases_the_subscription(app: Any) -> None:
    client = app.test_client()
    hub = state(app).hub
    streams = [open_stream(client, f"topic=t{n}&topic=shared") for n in range(5)]
    for stream in streams:
        next(stream._chunks)
    assert hub.subscription_count == 5
    assert hub.topic_count == 6
    for stream in streams:
        stream.close()
    assert hub.subscription_count == 0
    assert hub.topic_count == 0


def test_unstarted_stream_still_releases_its_subscription(app: Any) -> None:
    client = app.test_client()
    response = client.get("/events?topic=a", headers=AUTH, buffered=False)
    assert state(app).hub.subscription_count == 1
    response.close()
    assert state(app).hub.subscription_count == 0


def test_slow_consumer_gets_overflow_and_resumes_losslessly(app_factory: Any) -> None:
    app = app_factory(REALTIME_MAX_QUEUE=5)
    client = app.test_client()
    stream = open_stream(client, "topic=a")
    next(stream._chunks)
    sent = [publish(client, "a", str(n)) for n in range(20)]  # we read nothing meanwhile
    gevent.sleep(0.2)
    events = stream.collect(1)
    while events[-1].type != "overflow":
        events += stream.next_events()
    delivered = [e for e in events if e.type == "message"]
    assert [e.last_event_id for e in delivered] == sent[: len(delivered)]
    assert len(delivered) <= 5
    overflow = events[-1]
    assert json.loads(overflow.data)["reason"] == "slow_consumer"
    assert overflow.last_event_id == delivered[-1].last_event_id  # overflow carries no id
    assert state(app).hub.subscription_count == 0
    with pytest.raises(StopIteration):
        stream.next_events()
    resumed = open_stream(client, "topic=a", {"Last-Event-ID": overflow.last_event_id})
    rest = resumed.collect(len(sent) - len(delivered))
    assert [e.last_event_id for e in rest] == sent[len(delivered) :]
    resumed.close()


EVENTS_ERRORS = [
    ("no topic", "", {}, 400, "missing_topic"),
    ("bad topic", "topic=a%20b", {}, 400, "invalid_topic"),
    ("no token", "topic=private", {"Authorization": ""}, 401, "missing_token"),
    ("invalid token", "topic=a", {"Authorization": "Bearer nope"}, 401, "invalid_token"),
    (
        "invalid query token",
        "topic=a&access_token=nope",
        {"Authorization": ""},
        401,
        "invalid_token",
    ),
    (
        "forbidden",
        "topic=other",
        {"Authorization": "Bearer " + make_token(subscribe=("mine:*",))},
        403,
        "forbidden_topic",
    ),
    (
        "one forbidden of two",
        "topic=mine:1&topic=other",
        {"Authorization": "Bearer " + make_token(subscribe=("mine:*",))},
        403,
        "forbidden_topic",
    ),
    ("overlong id", "topic=a", {"Last-Event-ID": "x" * 300}, 400, "invalid_last_event_id"),
]


@pytest.mark.parametrize(
    ("query", "headers", "status", "code"),
    [e[1:] for e in EVENTS_ERRORS],
    ids=[e[0] for e in EVENTS_ERRORS],
)
def test_events_refusals_use_the_json_error_contract(
    app: Any, query: str, headers: dict[str, str], status: int, code: str
) -> None:
    sent = {k: v for k, v in {**AUTH, **headers}.items() if v}
    response = app.test_client().get(f"/events?{query}", headers=sent)
    assert response.status_code == status
    assert response.get_json()["error"] == code
    assert state(app).hub.subscription_count == 0


def test_too_many_topics_is_refused(app_factory: Any) -> None:
    client = app_factory(REALTIME_MAX_TOPICS=3).test_client()
    response = client.get("/events?topic=a&topic=b&topic=c&topic=d", headers=AUTH)
    assert (response.status_code, response.get_json()["error"]) == (400, "too_many_topics")


def test_public_topics_need_no_token_but_others_still_do(app_factory: Any) -> None:
    client = app_factory(REALTIME_PUBLIC_TOPICS="news:*,status").test_client()
    ok = client.get("/events?topic=news:today&topic=status", buffered=False)
    assert ok.status_code == 200
    ok.close()
    mixed = client.get("/events?topic=news:today&topic=private")
    assert (mixed.status_code, mixed.get_json()["error"]) == (401, "missing_token")


def test_token_by_cookie_and_by_query_string(client: Any) -> None:
    by_query = client.get(f"/events?topic=a&access_token={TOKEN}", buffered=False)
    assert by_query.status_code == 200
    by_query.close()
    client.set_cookie("realtime_token", TOKEN)
    by_cookie = client.get("/events?topic=a", buffered=False)
    assert by_cookie.status_code == 200
    by_cookie.close()


def test_expired_token_is_refused_with_token_expired(client: Any) -> None:
    from test_publish_api import expired_token

    response = client.get("/events?topic=a", headers={"Authorization": f"Bearer {expired_token()}"})
    assert (response.status_code, response.get_json()["error"]) == (401, "token_expired")


def test_max_connections_per_worker_is_429_with_retry_after(app_factory: Any) -> None:
    client = app_factory(REALTIME_MAX_CONNECTIONS=2).test_client()
    open_ = [client.get("/events?topic=a", headers=AUTH, buffered=False) for _ in range(2)]
    refused = client.get("/events?topic=a", headers=AUTH)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.get_json()["error"] == "too_many_connections"
    for response in open_:
        response.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.text(max_size=300).filter(lambda s: "\r" not in s))
def test_any_publishable_text_arrives_identical_over_http(client: Any, data: str) -> None:
    stream = open_stream(client, "topic=prop")
    next(stream._chunks)
    sent = publish(client, "prop", data)
    [event] = stream.next_events()
    assert (event.last_event_id, event.data) == (sent, data)
    stream.close()


def test_streams_older_than_max_connection_age_end_with_a_short_retry(app_factory: Any) -> None:
    client = app_factory(REALTIME_MAX_CONNECTION_AGE_S="1").test_client()
    stream = open_stream(client, "topic=a")
    chunks = []
    with gevent.Timeout(5):
        for chunk in stream._chunks:
            chunks.append(chunk)
            stream.parser.feed(chunk)
    assert chunks[-1].endswith(b": max_age\n\n")
    assert stream.parser.retry_ms is not None
    assert stream.parser.retry_ms <= 1500


def test_a_draining_worker_answers_200_with_shutdown_so_eventsource_reconnects(app: Any) -> None:
    state(app).hub.stop(draining=True)
    response = app.test_client().get("/events?topic=a", headers=AUTH)
    assert response.status_code == 200  # a 503 would end a browser's EventSource for good
    parser = EventStreamParser()
    [event] = parser.feed(response.get_data())
    assert event.type == "shutdown"
    assert parser.retry_ms is not None
    assert parser.retry_ms <= 1500
    assert ready_status(app) == 503


def ready_status(app: Any) -> int:
    return int(app.test_client().get("/readyz").status_code)
