"""Publishing from Python (``rt.publish``, ``realtime.Publisher``) against a real Redis: the same
ids, checks and refusal codes as ``POST /publish``, and nothing written when refused."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import host_config, make_token, stored_entries
from flask import Flask

import realtime
from realtime import Publisher, Realtime
from realtime.core.errors import ClientError, ConfigError
from realtime.storage.keys import FIREHOSE_KEY, topic_key
from realtime.storage.redis_server import free_port
from realtime.web.state import state

HTTP_SUBJECT = "http-publisher"
TOKEN = make_token(publish=("*",), subscribe=(), subject=HTTP_SUBJECT)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def stored(client: redis.Redis, topic: str) -> list[tuple[bytes, bytes]]:
    return [(f[b"y"], f[b"d"]) for _, f in stored_entries(client, topic_key(topic))]


def test_a_view_publishes_and_gets_the_stored_id(
    host_factory: Callable[..., tuple[Flask, Realtime]], redis_client: redis.Redis
) -> None:
    app, rt = host_factory()

    @app.post("/orders")
    def create_order() -> dict[str, str]:
        return {"event": rt.publish("orders", {"id": 7}, type="created")}

    answer = app.test_client().post("/orders")
    event_id = answer.get_json()["event"]
    assert event_id.endswith("-1")
    assert stored(redis_client, "orders") == [(b"created", b'{"id":7}')]


def test_publish_many_is_atomic_and_in_order(
    host_factory: Callable[..., tuple[Flask, Realtime]], redis_client: redis.Redis
) -> None:
    app, rt = host_factory()
    with app.app_context():
        ids = rt.publish_many(
            [{"topic": "a", "data": "one"}, {"topic": "b", "data": [2], "type": "n"}]
        )
    assert [i.rsplit("-", 1)[1] for i in ids] == ["1", "2"]
    assert stored(redis_client, "a") == [(b"message", b"one")]
    assert stored(redis_client, "b") == [(b"n", b"[2]")]


def test_outside_an_app_context_the_extension_uses_its_own_app(
    host_factory: Callable[..., tuple[Flask, Realtime]], redis_client: redis.Redis
) -> None:
    _, rt = host_factory()
    assert rt.publish("demo", "x").endswith("-1")


def test_an_unbound_extension_outside_an_app_context_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="app_context"):
        Realtime().publish("demo", "x")


def test_one_extension_serves_several_apps(
    redis_url: str, tmp_path: Path, redis_server: Any
) -> None:
    """The app-factory pattern: one ``Realtime()``, ``init_app`` per app, each app its own
    settings; ``rt.publish`` follows the app of the context it runs in."""
    rt = Realtime()
    apps = []
    for db in (1, 2):
        app = Flask(f"app{db}")
        app.config.update(host_config(f"{redis_server.url}/{db}", tmp_path / str(db)))
        rt.init_app(app)
        apps.append(app)
    try:
        for app in apps:
            with app.app_context():
                rt.publish("demo", app.name)
        for db, app in zip((1, 2), apps, strict=True):
            client = redis.Redis.from_url(f"{redis_server.url}/{db}")
            assert stored(client, "demo") == [(b"message", app.name.encode())]
            client.flushdb()
            client.close()
    finally:
        for app in apps:
            state(app).hub.stop()
            state(app).broker.close()


def test_an_idempotent_retry_returns_the_first_id(
    host_factory: Callable[..., tuple[Flask, Realtime]], redis_client: redis.Redis
) -> None:
    _, rt = host_factory()
    first = rt.publish("demo", "x", idempotency_key="job-1")
    assert rt.publish("demo", "x", idempotency_key="job-1") == first
    assert len(stored(redis_client, "demo")) == 1


def test_app_keys_and_token_keys_never_collide(
    host_factory: Callable[..., tuple[Flask, Realtime]],
) -> None:
    """The app's own idempotency keys are its own; a named publisher shares its token's."""
    app, rt = host_factory()
    over_http = app.test_client().post(
        "/publish", json={"topic": "demo", "data": "x"}, headers={**AUTH, "Idempotency-Key": "k"}
    )
    http_id = over_http.get_json()["id"]
    assert rt.publish("demo", "x", idempotency_key="k") != http_id
    assert rt.publish("demo", "x", idempotency_key="k", publisher=HTTP_SUBJECT) == http_id


def test_publisher_outside_flask_with_only_the_redis_url(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a Celery task or a cron script does: no app, only ``REALTIME_REDIS_URL``."""
    monkeypatch.setenv("REALTIME_REDIS_URL", redis_url)
    monkeypatch.setenv("REALTIME_DATA_DIR", str(tmp_path))
    with Publisher() as publisher:
        first = publisher.publish("jobs", "started")
        [second] = publisher.publish_many([{"topic": "jobs", "data": "done"}])
    assert [first[-2:], second[-2:]] == ["-1", "-2"]
    assert stored(redis_client, "jobs") == [(b"message", b"started"), (b"message", b"done")]


def test_publisher_without_redis_says_which_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REALTIME_REDIS_URL", raising=False)
    monkeypatch.setenv("REALTIME_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="REALTIME_REDIS_URL"):
        Publisher()


def test_publisher_finds_the_embedded_redis_of_a_development_server(
    redis_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make run`` starts an embedded Redis on a socket under REALTIME_DATA_DIR: a script next
    to it publishes with no URL."""
    from realtime.storage.redis_server import RedisServer

    binary = redis_server.binary
    embedded = RedisServer(binary, tmp_path, unix_socket=tmp_path / "redis.sock").start()
    try:
        monkeypatch.delenv("REALTIME_REDIS_URL", raising=False)
        monkeypatch.setenv("REALTIME_DATA_DIR", str(tmp_path))
        with Publisher() as publisher:
            event_id = publisher.publish("dev", "hello")
        client = redis.Redis.from_url(embedded.url)
        assert stored(client, "dev") == [(b"message", b"hello")]
        assert event_id.endswith("-1")
        client.close()
    finally:
        embedded.stop()


def test_threads_publish_concurrently_exactly_once_each(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Many threads sharing one Publisher (the storage's pool and publish lanes), as a sync or
    gthread worker's threads would: every event stored once, ids distinct and contiguous."""
    ids: list[str] = []
    lock = threading.Lock()
    with Publisher(redis_url, config={"REALTIME_DATA_DIR": str(tmp_path)}) as publisher:

        def work(n: int) -> None:
            for i in range(25):
                event_id = publisher.publish("threads", f"{n}:{i}")
                with lock:
                    ids.append(event_id)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seqs = sorted(int(i.rsplit("-", 1)[1]) for i in ids)
    assert seqs == list(range(1, 201))
    data = [d for _, d in stored(redis_client, "threads")]
    assert sorted(data) == sorted(f"{n}:{i}".encode() for n in range(8) for i in range(25))


def test_the_server_extension_exports_what_a_publisher_needs() -> None:
    assert realtime.Publisher is Publisher
    assert realtime.ClientError is ClientError


# -- refusals: the same codes as POST /publish, and nothing written ------------------------------

#: Every refusal a publish can meet that does not depend on how a token reached the server
#: (missing/invalid tokens, forbidden topics and origins are the doors' own, as are the
#: HTTP body's framing: invalid_json, bad_form, unsupported_media_type).
PUBLISH_REFUSALS = {
    "missing_topic",
    "invalid_topic",
    "invalid_type",
    "reserved_type",
    "missing_data",
    "invalid_data",
    "unknown_field",
    "invalid_batch",
    "batch_too_large",
    "payload_too_large",
    "invalid_idempotency_key",
    "idempotency_key_reused",
    "rate_limited",
    "topic_rate_limited",
    "redis_unavailable",
}

Http = Callable[[Any], Any]  # (test client) -> response
Python = Callable[[Realtime], Any]


def single(topic: Any, data: Any, **extra: Any) -> tuple[Http, Python]:
    body = {"topic": topic, "data": data, **extra}
    return (
        lambda c: c.post("/publish", json=body, headers=AUTH),
        lambda rt: rt.publish(topic, data, **extra),
    )


def batch(events: Any) -> tuple[Http, Python]:
    return (
        lambda c: c.post("/publish", json={"events": events}, headers=AUTH),
        lambda rt: rt.publish_many(events),
    )


def keyed(key: str, data: str = "x") -> tuple[Http, Python]:
    return (
        lambda c: c.post(
            "/publish",
            json={"topic": "demo", "data": data},
            headers={**AUTH, "Idempotency-Key": key},
        ),
        lambda rt: rt.publish("demo", data, idempotency_key=key),
    )


# (name, expected code, (HTTP request, Python call), settings)
REFUSALS: list[tuple[str, str, tuple[Http, Python], dict[str, str]]] = [
    ("empty topic", "missing_topic", single("", "x"), {}),
    ("batch without topic", "missing_topic", batch([{"data": "x"}]), {}),
    ("topic with a space", "invalid_topic", single("has space", "x"), {}),
    ("topic not a string", "invalid_topic", single(7, "x"), {}),
    ("bad type", "invalid_type", single("demo", "x", type="a b"), {}),
    ("reserved type", "reserved_type", single("demo", "x", type="reset"), {}),
    ("batch event without data", "missing_data", batch([{"topic": "demo"}]), {}),
    ("carriage return", "invalid_data", single("demo", "a\r\nb"), {}),
    ("unknown field", "unknown_field", batch([{"topic": "demo", "data": "x", "tpye": "a"}]), {}),
    ("empty batch", "invalid_batch", batch([]), {}),
    ("batch item not an object", "invalid_batch", batch(["demo"]), {}),
    (
        "batch over REALTIME_MAX_BATCH",
        "batch_too_large",
        batch([{"topic": "demo", "data": str(i)} for i in range(4)]),
        {"REALTIME_MAX_BATCH": "3"},
    ),
    (
        "data over REALTIME_MAX_PAYLOAD",
        "payload_too_large",
        single("demo", "x" * 1025),
        {"REALTIME_MAX_PAYLOAD": "1024"},
    ),
    ("bad idempotency key", "invalid_idempotency_key", keyed("\x01"), {}),
    ("idempotency key reused", "idempotency_key_reused", keyed("used", "other"), {}),
]


@pytest.mark.parametrize(
    ("code", "calls", "settings"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_refused_publish_raises_the_http_code_and_writes_nothing(
    host_factory: Callable[..., tuple[Flask, Realtime]],
    redis_client: redis.Redis,
    code: str,
    calls: tuple[Http, Python],
    settings: dict[str, str],
) -> None:
    app, rt = host_factory(**settings)
    http, python = calls
    rt.publish("demo", "x", idempotency_key="used")  # what the reuse cases collide with
    rt.publish("demo", "x", idempotency_key="used", publisher=HTTP_SUBJECT)
    before = stored_entries(redis_client, FIREHOSE_KEY)

    answer = http(app.test_client())
    assert answer.get_json()["error"] == code, answer.get_json()
    with pytest.raises(ClientError) as raised:
        python(rt)
    assert raised.value.error == code
    assert raised.value.status == answer.status_code
    assert raised.value.message.endswith(".")
    assert stored_entries(redis_client, FIREHOSE_KEY) == before


def test_a_named_publisher_is_rate_limited_as_its_token_would_be(
    host_factory: Callable[..., tuple[Flask, Realtime]], redis_client: redis.Redis
) -> None:
    """``rate_limited`` and ``topic_rate_limited``: in code only for a publisher that names
    itself; the app's own code is not limited (it is not a client the server defends from)."""
    app, rt = host_factory(
        REALTIME_PUBLISH_RATE="0.01",
        REALTIME_PUBLISH_BURST="2",
        REALTIME_MAX_BATCH="2",
        REALTIME_NEW_TOPICS_PER_MINUTE="1",
    )
    client = app.test_client()
    assert (
        client.post("/publish", json={"topic": "t", "data": "1"}, headers=AUTH).status_code == 201
    )
    rt.publish("py-t", "1", publisher="py")  # each creates its one topic of the minute

    # A new topic: over one a minute, for both.
    answer = client.post("/publish", json={"topic": "other", "data": "x"}, headers=AUTH)
    assert answer.get_json()["error"] == "topic_rate_limited"
    with pytest.raises(ClientError) as topics:
        rt.publish("other", "x", publisher="py")
    assert topics.value.error == "topic_rate_limited"
    assert topics.value.retry_after is not None
    assert abs(topics.value.retry_after - int(answer.headers["Retry-After"])) <= 1

    # The same topic: over two events at 0.01/s, for both.
    assert (
        client.post("/publish", json={"topic": "t", "data": "2"}, headers=AUTH).status_code == 201
    )
    rt.publish("t", "2", publisher="py")
    answer = client.post("/publish", json={"topic": "t", "data": "3"}, headers=AUTH)
    assert answer.get_json()["error"] == "rate_limited"
    with pytest.raises(ClientError) as events:
        rt.publish("t", "3", publisher="py")
    assert events.value.error == "rate_limited"
    assert events.value.status == 429
    before = stored_entries(redis_client, FIREHOSE_KEY)

    for n in range(5):  # unnamed: the app's own code is trusted
        rt.publish(f"fresh-{n}", "x")
    assert len(stored_entries(redis_client, FIREHOSE_KEY)) == len(before) + 5


def test_redis_down_raises_redis_unavailable_as_http_answers_503(
    host_factory: Callable[..., tuple[Flask, Realtime]],
) -> None:
    app, rt = host_factory(REALTIME_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    answer = app.test_client().post("/publish", json={"topic": "demo", "data": "x"}, headers=AUTH)
    assert (answer.status_code, answer.get_json()["error"]) == (503, "redis_unavailable")
    with pytest.raises(ClientError) as raised:
        rt.publish("demo", "x")
    assert (raised.value.status, raised.value.error) == (503, "redis_unavailable")
    assert raised.value.retry_after == 1


def test_the_table_covers_every_publish_refusal() -> None:
    covered = {r[1] for r in REFUSALS} | {"rate_limited", "topic_rate_limited", "redis_unavailable"}
    assert covered == PUBLISH_REFUSALS


def test_data_that_is_not_json_is_invalid_data(
    host_factory: Callable[..., tuple[Flask, Realtime]],
) -> None:
    """Python can pass what JSON cannot carry; it is refused as data, not a crash."""
    _, rt = host_factory()
    with pytest.raises(ClientError) as raised:
        rt.publish("demo", {"when": object()})
    assert raised.value.error == "invalid_data"
