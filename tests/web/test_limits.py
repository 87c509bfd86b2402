"""Abuse and limits: per-address streams, publish rate per token (shared), token expiry, CSWSH."""

from __future__ import annotations

import json
import time
from typing import Any

import gevent
import pytest
from conftest import Gunicorn, make_token
from sse_client import InProcessStream
from ws_client import Client, handshake_status

from realtime.web.state import state

TOKEN = make_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def publish(client: Any, n: int = 1, headers: dict[str, str] | None = None) -> Any:
    body = {"events": [{"topic": "rate", "data": str(i)} for i in range(n)]}
    return client.post("/publish", json=body, headers=headers or AUTH)


def test_streams_per_client_address_are_limited_with_429(app_factory: Any) -> None:
    app = app_factory(REALTIME_MAX_CONNECTIONS_PER_IP=2)
    client = app.test_client()
    held = [client.get("/events?topic=a", headers=AUTH, buffered=False) for _ in range(2)]
    refused = client.get("/events?topic=a", headers=AUTH)
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "too_many_connections"
    assert int(refused.headers["Retry-After"]) >= 1
    other = client.get(
        "/events?topic=a", headers=AUTH, environ_base={"REMOTE_ADDR": "10.9.9.9"}, buffered=False
    )
    assert other.status_code == 200  # another address is not affected
    for response in [*held, other]:
        response.close()
    again = client.get("/events?topic=a", headers=AUTH, buffered=False)
    assert again.status_code == 200  # released on close
    again.close()


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_one_limited(
    app_factory: Any,
) -> None:
    app = app_factory(REALTIME_MAX_CONNECTIONS_PER_IP=1, REALTIME_PROXY_HOPS=1)
    client = app.test_client()
    first = client.get(
        "/events?topic=a", headers={**AUTH, "X-Forwarded-For": "203.0.113.7"}, buffered=False
    )
    assert first.status_code == 200
    same = client.get("/events?topic=a", headers={**AUTH, "X-Forwarded-For": "203.0.113.7"})
    assert same.status_code == 429
    other = client.get(
        "/events?topic=a", headers={**AUTH, "X-Forwarded-For": "203.0.113.8"}, buffered=False
    )
    assert other.status_code == 200
    first.close()
    other.close()


def test_publish_rate_per_token_is_429_with_retry_after_and_stores_nothing(
    app_factory: Any, redis_client: Any
) -> None:
    client = app_factory(
        REALTIME_PUBLISH_RATE=2, REALTIME_PUBLISH_BURST=5, REALTIME_MAX_BATCH=5
    ).test_client()
    assert publish(client, 5).status_code == 201
    refused = publish(client, 1)
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert redis_client.xlen("{rt}:firehose") == 5
    other = make_token(subject="another-publisher")
    assert publish(client, 1, {"Authorization": f"Bearer {other}"}).status_code == 201


def test_publish_rate_is_shared_by_every_worker(app_factory: Any) -> None:
    settings = {"REALTIME_PUBLISH_RATE": 1, "REALTIME_PUBLISH_BURST": 4, "REALTIME_MAX_BATCH": 4}
    worker_a = app_factory(**settings).test_client()
    worker_b = app_factory(**settings).test_client()  # its own hub and pool, the same Redis
    assert publish(worker_a, 3).status_code == 201
    assert publish(worker_b, 2).status_code == 429  # only 1 left in the shared bucket
    assert publish(worker_b, 1).status_code == 201


def test_a_retried_duplicate_costs_no_rate(app_factory: Any) -> None:
    client = app_factory(
        REALTIME_PUBLISH_RATE=1, REALTIME_PUBLISH_BURST=2, REALTIME_MAX_BATCH=2
    ).test_client()
    headers = {**AUTH, "Idempotency-Key": "once"}
    first = publish(client, 2, headers)
    retried = publish(client, 2, headers)
    assert first.status_code == retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true"


def test_an_sse_stream_ends_with_auth_expired_at_the_tokens_exp(app: Any) -> None:
    short = make_token(ttl_s=2)
    response = app.test_client().get(f"/events?topic=a&access_token={short}", buffered=False)
    stream = InProcessStream(response)
    started = time.monotonic()
    chunks = []
    with gevent.Timeout(6):
        for chunk in stream._chunks:
            chunks.append(chunk)
    events = stream.parser.feed(b"".join(chunks))
    assert events[-1].type == "auth_expired"
    assert "last_id" in json.loads(events[-1].data)
    assert 0.5 < time.monotonic() - started < 4
    assert state(app).hub.subscription_count == 0


@pytest.mark.integration
def test_a_websocket_is_closed_1008_when_its_token_expires(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(redis_url, workers=1)
    client = Client(server, f"?access_token={make_token(ttl_s=2)}")
    client.recv()
    error, _ = client.until("error", timeout=6)
    assert error["error"] == "token_expired"
    assert client.closed_with() == 1008


@pytest.mark.integration
def test_a_cookie_authenticated_upgrade_from_a_foreign_origin_is_refused(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(redis_url, workers=1)
    cookie = ("Cookie", f"realtime_token={TOKEN}")
    status, body = handshake_status(
        server.port, "/ws", [cookie, ("Origin", "https://evil.example")]
    )
    assert status == 403
    assert b"origin_not_allowed" in body
    status, _ = handshake_status(server.port, "/ws", [cookie, ("Origin", server.url)])
    assert status == 101


@pytest.mark.integration
def test_a_websocket_over_the_connection_limit_is_closed_1013(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(
        redis_url, workers=1, env={"REALTIME_MAX_CONNECTIONS_PER_IP": "1"}
    )
    first = Client(server, f"?access_token={TOKEN}")
    assert first.recv()["type"] == "welcome"
    second = Client(server, f"?access_token={TOKEN}")
    error = second.recv()
    assert error["type"] == "error"
    assert error["error"] == "too_many_connections"
    assert second.closed_with() == 1013
    first.close()
