"""POST /publish over HTTP (in process, real Redis): success shapes and the error contract."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import redis
from conftest import SECRET, make_token, stored_entries, stored_keys

from realtime.storage.keys import FIREHOSE_KEY, SEQ_KEY, topic_key

TOKEN = make_token(publish=("demo", "orders:*"), subscribe=())
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def snapshot(r: redis.Redis) -> dict[bytes, Any]:
    """Everything stored, to prove a refused request changed nothing."""
    out: dict[bytes, Any] = {}
    for key in stored_keys(r, "*"):
        kind = r.type(key)
        if kind == b"stream":
            out[key] = r.xrange(key)
        elif kind == b"string":
            out[key] = r.get(key)
        elif kind == b"hash":
            out[key] = r.hgetall(key)
        else:
            out[key] = kind
    return out


def test_form_publish_like_curl_dash_d(client: Any, redis_client: redis.Redis) -> None:
    response = client.post("/publish", data={"topic": "demo", "data": "hello"}, headers=AUTH)
    assert response.status_code == 201
    event_id = response.get_json()["id"]
    assert event_id.endswith("-1")
    [(_, fields)] = stored_entries(redis_client, topic_key("demo"))
    assert fields[b"d"] == b"hello"
    assert fields[b"y"] == b"message"


def test_json_publish_single_and_batch(client: Any, redis_client: redis.Redis) -> None:
    one = client.post(
        "/publish", json={"topic": "demo", "data": {"n": 1}, "type": "tick"}, headers=AUTH
    )
    assert one.status_code == 201
    assert list(one.get_json()) == ["id"]
    batch = client.post(
        "/publish",
        json={"events": [{"topic": "orders:1", "data": "a"}, {"topic": "demo", "data": [1, 2]}]},
        headers=AUTH,
    )
    assert batch.status_code == 201
    ids = batch.get_json()["ids"]
    assert [i.split("-")[1] for i in ids] == ["2", "3"]
    assert stored_entries(redis_client, topic_key("demo"))[-1][1][b"d"] == b"[1,2]"


def test_idempotency_key_makes_a_retry_return_the_first_id(
    client: Any, redis_client: redis.Redis
) -> None:
    headers = {**AUTH, "Idempotency-Key": "cron-2026-11-22"}
    first = client.post("/publish", json={"topic": "demo", "data": "x"}, headers=headers)
    retry = client.post("/publish", json={"topic": "demo", "data": "x"}, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert first.get_json() == retry.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert redis_client.xlen(FIREHOSE_KEY) == 1


def test_idempotency_keys_are_scoped_per_token_subject(client: Any) -> None:
    other = make_token(publish=("demo",), subject="someone-else")
    a = client.post(
        "/publish", json={"topic": "demo", "data": "x"}, headers={**AUTH, "Idempotency-Key": "k"}
    )
    b = client.post(
        "/publish",
        json={"topic": "demo", "data": "x"},
        headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "k"},
    )
    assert a.get_json()["id"] != b.get_json()["id"]


def expired_token() -> str:
    now = int(time.time())
    claims = {"sub": "x", "exp": now - 10, "iat": now - 100, "realtime": {"publish": ["*"]}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing topic", {"json": {"data": "x"}}, 400, "missing_topic"),
    ("bad topic", {"json": {"topic": "has space", "data": "x"}}, 400, "invalid_topic"),
    ("topic with newline", {"json": {"topic": "a\nb", "data": "x"}}, 400, "invalid_topic"),
    ("bad type", {"json": {"topic": "demo", "data": "x", "type": "a b"}}, 400, "invalid_type"),
    (
        "type injection",
        {"json": {"topic": "demo", "data": "x", "type": "m\ndata: evil"}},
        400,
        "invalid_type",
    ),
    (
        "reserved type",
        {"json": {"topic": "demo", "data": "x", "type": "reset"}},
        400,
        "reserved_type",
    ),
    ("missing data", {"json": {"topic": "demo"}}, 400, "missing_data"),
    ("unknown field", {"json": {"topic": "demo", "data": "x", "tpye": "a"}}, 400, "unknown_field"),
    ("carriage return", {"json": {"topic": "demo", "data": "a\r\nb"}}, 400, "invalid_data"),
    ("oversize", {"json": {"topic": "demo", "data": "x" * 65537}}, 413, "payload_too_large"),
    (
        "oversize body",
        {"data": b"x" * 2_000_000, "content_type": "application/json"},
        413,
        "payload_too_large",
    ),
    (
        "wrong content type",
        {"data": b"hello", "content_type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    ("no content type", {"data": b"topic=demo&data=x"}, 415, "unsupported_media_type"),
    ("bad json", {"data": b"{not json", "content_type": "application/json"}, 400, "invalid_json"),
    ("json not an object", {"json": [1, 2]}, 400, "invalid_json"),
    (
        "batch with a bad event",
        {
            "json": {
                "events": [
                    {"topic": "demo", "data": "ok"},
                    {"topic": "demo", "data": "x", "type": "!"},
                ]
            }
        },
        400,
        "invalid_type",
    ),
    ("empty batch", {"json": {"events": []}}, 400, "invalid_batch"),
    (
        "bad idempotency key",
        {"json": {"topic": "demo", "data": "x"}, "headers": {"Idempotency-Key": "\x01"}},
        400,
        "invalid_idempotency_key",
    ),
    (
        "missing token",
        {"json": {"topic": "demo", "data": "x"}, "headers": {"Authorization": ""}},
        401,
        "missing_token",
    ),
    (
        "invalid token",
        {"json": {"topic": "demo", "data": "x"}, "headers": {"Authorization": "Bearer not.a.jwt"}},
        401,
        "invalid_token",
    ),
    (
        "wrongly signed token",
        {
            "json": {"topic": "demo", "data": "x"},
            "headers": {
                "Authorization": "Bearer " + make_token(secret="another-secret-" + "y" * 40)
            },
        },
        401,
        "invalid_token",
    ),
    (
        "malformed authorization",
        {"json": {"topic": "demo", "data": "x"}, "headers": {"Authorization": "Basic abc"}},
        401,
        "invalid_authorization",
    ),
    ("forbidden topic", {"json": {"topic": "secret", "data": "x"}}, 403, "forbidden_topic"),
    (
        "batch with one forbidden topic",
        {"json": {"events": [{"topic": "demo", "data": "x"}, {"topic": "secret", "data": "x"}]}},
        403,
        "forbidden_topic",
    ),
    (
        "subscribe-only token",
        {
            "json": {"topic": "demo", "data": "x"},
            "headers": {"Authorization": "Bearer " + make_token(publish=(), subscribe=("*",))},
        },
        403,
        "forbidden_topic",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"), [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_input_gets_json_error_and_writes_nothing(
    client: Any, redis_client: redis.Redis, kwargs: dict[str, Any], status: int, code: str
) -> None:
    client.post("/publish", json={"topic": "demo", "data": "before"}, headers=AUTH)
    before = snapshot(redis_client)
    headers = {**AUTH, **kwargs.pop("headers", {})}
    headers = {k: v for k, v in headers.items() if v}
    response = client.post("/publish", headers=headers, **kwargs)
    assert response.status_code == status, response.get_data()
    body = response.get_json()
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"].endswith(".")
    assert snapshot(redis_client) == before


def test_expired_token_is_401_token_expired(client: Any, redis_client: redis.Redis) -> None:
    response = client.post(
        "/publish",
        json={"topic": "demo", "data": "x"},
        headers={"Authorization": f"Bearer {expired_token()}"},
    )
    assert response.status_code == 401
    assert response.get_json()["error"] == "token_expired"
    assert redis_client.get(SEQ_KEY) is None


def test_redis_down_is_503_with_retry_after(app_factory: Any) -> None:
    from realtime.storage.redis_server import free_port

    app = app_factory(REALTIME_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().post("/publish", json={"topic": "demo", "data": "x"}, headers=AUTH)
    assert response.status_code == 503
    assert response.get_json()["error"] == "redis_unavailable"
    assert response.headers["Retry-After"] == "1"


def test_unknown_route_and_method_use_the_error_contract(client: Any) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.get_json()["error"] == "not_found"
    wrong = client.get("/publish")
    assert wrong.status_code == 405
    assert wrong.get_json()["error"] == "method_not_allowed"


def test_405_says_which_methods_are_allowed(client: Any) -> None:
    response = client.get("/publish")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
