"""The findings of issue 11's black-box probe, each reproduced against real gunicorn.

One 2-worker gunicorn (the probe's shape) with the shipped ``gunicorn.conf.py`` serves every test
here; a test that needs other settings starts its own. Each test is named for what it pins, and
each failed before its fix: the finding's number is in its docstring. The dashboard's security
headers (finding 8) are proven in a browser in ``tests/web/test_dashboard.py``.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator

import jwt
import pytest
import redis
from conftest import SECRET, Gunicorn, gunicorn_env, make_token, spawn_gunicorn
from raw_http import Answer, exchange, request
from sse_client import SocketStream
from ws_client import Client

from realtime.core.auth import MAX_TOKEN_LENGTH
from realtime.storage.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration

TOKEN = make_token(subject="tester")
METRICS_TOKEN = "metrics-" + "m" * 24
ENV = {
    "REALTIME_PUBLIC_TOPICS": "public:*",
    "REALTIME_METRICS_TOKEN": METRICS_TOKEN,
    "REALTIME_WS_AUTH_TIMEOUT_S": "2",
}


@pytest.fixture(scope="module")
def server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    tmp = tmp_path_factory.mktemp("security")
    port = free_port()
    started = spawn_gunicorn(
        port, gunicorn_env(redis_server.url, port, 2, tmp / "var", ENV), tmp / "gunicorn.log"
    )
    yield started
    started.stop()


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def form_publish(port: int, topic: str, headers: dict[str, str], query: str = "") -> Answer:
    return request(
        port, "POST", "/publish" + query, {**FORM, **headers}, f"topic={topic}&data=x".encode()
    )


# -- 1. cross-site publish through the cookie ----------------------------------------------------


def test_1_a_cookie_or_query_token_publishes_only_from_an_allowed_origin(
    server: Gunicorn, store: redis.Redis
) -> None:
    """Finding 1: a <form> on any site published as the victim through the cookie."""
    port = server.port
    cookie = {"Cookie": f"realtime_token={TOKEN}"}
    evil = {"Origin": "https://evil.example"}
    ours = {"Origin": f"http://127.0.0.1:{port}"}
    refused = [
        form_publish(port, "csrf:a", {**cookie, **evil}),
        form_publish(port, "csrf:b", cookie),  # a cookie with no Origin at all
        form_publish(port, "csrf:c", {**cookie, "Origin": "null"}),  # a sandboxed page
        form_publish(port, "csrf:d", {**cookie, "Origin": f"https://127.0.0.1:{port}"}),
        form_publish(port, "csrf:e", evil, query=f"?access_token={TOKEN}"),
    ]
    boundary = "x-boundary"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="topic"\r\n\r\ncsrf:f\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="data"\r\n\r\nforged\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    refused.append(
        request(
            port,
            "POST",
            "/publish",
            {**cookie, **evil, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            multipart,
        )
    )
    for answer in refused:
        assert answer.error() == (403, "origin_not_allowed")
    assert not store.keys("{rt}:t:csrf:*"), "a refused cross-site publish stored an event"

    # The same origin with the cookie, a query token without a browser's Origin (curl, cron),
    # and the Authorization header from anywhere (a page could only send it after a CORS
    # preflight, which this server never grants) still publish.
    assert form_publish(port, "csrf:ok", {**cookie, **ours}).status == 201
    assert form_publish(port, "csrf:ok", {}, query=f"?access_token={TOKEN}").status == 201
    assert form_publish(port, "csrf:ok", {**evil, "Authorization": f"Bearer {TOKEN}"}).status == 201


# -- 2. presence lists token subjects to anyone --------------------------------------------------


def test_2_who_is_present_needs_a_token_granting_the_topic(server: Gunicorn) -> None:
    """Finding 2: an anonymous caller read the subjects following a public topic."""
    alice = make_token(subject="alice@example.com")
    stream = SocketStream(server.port, f"/events?topic=public:lobby&access_token={alice}")
    stream.read_events(time.monotonic() + 5)
    try:
        deadline = time.monotonic() + 10
        while True:
            answer = request(
                server.port,
                "GET",
                "/presence?topic=public:lobby",
                {"Authorization": f"Bearer {TOKEN}"},
            )
            seen = answer.json()
            if seen["present"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert answer.status == 200
        assert seen == {
            "topic": "public:lobby",
            "present": ["alice@example.com"],
            "connections": 1,
            "hidden": False,
        }
        anonymous_answer = request(server.port, "GET", "/presence?topic=public:lobby")
        assert anonymous_answer.status == 200
        assert anonymous_answer.json() == {
            "topic": "public:lobby",
            "present": [],
            "connections": 1,
            "hidden": True,
        }
        anonymous = Client(server)
        assert anonymous.recv()["type"] == "welcome"
        anonymous.send(type="presence", topic="public:lobby", req=1)
        ack, _ = anonymous.until("ack")
        assert (ack["present"], ack["connections"], ack["hidden"]) == ([], 1, True)
        anonymous.close()
    finally:
        stream.close()


# -- 3. a huge numeric exp, nbf or iat -----------------------------------------------------------


def huge_token(claim: str) -> str:
    claims = {"sub": "huge", "realtime": {"publish": ["*"], "subscribe": ["*"]}, claim: 10**400}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_3_a_huge_numeric_date_is_an_invalid_token_everywhere(server: Gunicorn, claim: str) -> None:
    """Finding 3: exp: 10**400 raised OverflowError: a 500, or internal_error and 1011."""
    token = huge_token(claim)
    answer = request(
        server.port,
        "POST",
        "/publish",
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        b'{"topic": "huge", "data": "x"}',
    )
    assert answer.error() == (401, "invalid_token")
    by_message = Client(server)
    by_message.recv()
    by_message.send(type="auth", token=token, req=1)
    assert by_message.recv()["error"] == "invalid_token"
    assert by_message.closed_with() == 1008
    on_upgrade = Client(server, f"?access_token={token}")
    assert on_upgrade.recv()["error"] == "invalid_token"
    assert on_upgrade.closed_with() == 1008


# -- 4. tokens reach the access log --------------------------------------------------------------


def test_4_percent_encoded_token_names_and_referers_are_redacted_in_the_access_log(
    server: Gunicorn,
) -> None:
    """Finding 4: ``access%5Ftoken=`` is the access_token Flask reads, and was logged raw; a
    Referer carrying ``?token=`` was logged whole."""
    marker = "log-probe-" + str(time.monotonic_ns())
    secrets = [make_token(subject=f"{marker}-{n}") for n in range(3)]
    for name, secret in (("access%5Ftoken", secrets[0]), ("%61ccess_token", secrets[1])):
        request(server.port, "GET", f"/healthz?{name}={secret}")
    stream = SocketStream(server.port, f"/events?topic=x&access%5Ftoken={secrets[0]}")
    stream.read_events(time.monotonic() + 5)
    assert stream.status == 200  # Flask did read it as the access_token
    stream.close()
    request(
        server.port, "GET", "/healthz", {"Referer": f"http://127.0.0.1/?topic=a&token={secrets[2]}"}
    )
    deadline = time.monotonic() + 10
    while '[redacted]"' not in server.log() or "%61ccess_token=[redacted]" not in server.log():
        assert time.monotonic() < deadline, "the access log never showed the requests"
        time.sleep(0.1)
    log = server.log()
    for secret in secrets:
        assert secret.split(".")[2] not in log
    assert "%61ccess_token=[redacted]" in log
    assert '"http://127.0.0.1/?[redacted]"' in log


# -- 5. a broken WebSocket handshake -------------------------------------------------------------


def upgrade(port: int, version: str | None, key: str | None) -> Answer:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
    if version is not None:
        headers["Sec-WebSocket-Version"] = version
    if key is not None:
        headers["Sec-WebSocket-Key"] = key
    return request(port, "GET", f"/ws?access_token={TOKEN}", headers)


KEY = base64.b64encode(b"0123456789abcdef").decode()


@pytest.mark.parametrize(
    ("version", "key", "status", "code"),
    [
        ("8", KEY, 426, "unsupported_websocket_version"),
        ("13, 8", KEY, 426, "unsupported_websocket_version"),
        (None, KEY, 400, "invalid_handshake"),
        ("13", None, 400, "invalid_handshake"),
        ("13", "not base64!", 400, "invalid_handshake"),
        ("13", base64.b64encode(b"short").decode(), 400, "invalid_handshake"),
    ],
)
def test_5_a_broken_websocket_handshake_gets_a_json_400_or_426(
    server: Gunicorn, version: str | None, key: str | None, status: int, code: str
) -> None:
    """Finding 5: wsproto's error on a missing or foreign version or key was a 500."""
    answer = upgrade(server.port, version, key)
    assert answer.error() == (status, code)
    if status == 426:
        assert answer.headers["sec-websocket-version"] == "13"
    assert upgrade(server.port, "13", KEY).status == 101


# -- 6. a chunked body over REALTIME_MAX_BODY ----------------------------------------------------


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def chunked_publish(port: int, body: bytes, content_type: str) -> Answer:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": content_type,
        "Transfer-Encoding": "chunked",
    }
    return request(port, "POST", "/publish", headers, chunked(body))


def test_6_a_chunked_body_over_the_limit_is_413_and_stores_nothing(
    server: Gunicorn, store: redis.Redis
) -> None:
    """Finding 6: a 1.08 MB chunked JSON body was cut at REALTIME_MAX_BODY and read as
    invalid JSON (400); a cut form could even have been stored."""
    limit = 1_048_576
    big_json = json.dumps({"topic": "chunky", "data": "x" * 1_080_000}).encode()
    assert chunked_publish(server.port, big_json, "application/json").error() == (
        413,
        "payload_too_large",
    )
    padding = "p" * (limit + 1000)
    big_form = f"topic=chunky&data=x&type=t{padding}".encode()
    assert (
        chunked_publish(server.port, big_form, "application/x-www-form-urlencoded")
    ).error() == (413, "payload_too_large")
    assert not store.exists("{rt}:t:chunky")
    # A chunked body within the limit, and one of exactly the limit, are read whole.
    small = json.dumps({"topic": "chunky", "data": "fits"}).encode()
    assert chunked_publish(server.port, small, "application/json").status == 201
    exact = json.dumps({"topic": "chunky", "data": "e"}).encode()
    exact = exact[:-1] + b" " * (limit - len(exact)) + b"}"
    assert len(exact) == limit
    assert chunked_publish(server.port, exact, "application/json").status == 201


# -- 7. the WebSocket Origin check ignores the scheme --------------------------------------------


def upgrade_from(port: int, origin: str, extra: dict[str, str] | None = None) -> int:
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": KEY,
        "Origin": origin,
        **(extra or {}),
    }
    return request(port, "GET", f"/ws?access_token={TOKEN}", headers).status


def test_7_the_websocket_origin_must_match_scheme_host_and_port(
    server: Gunicorn, gunicorn_factory: Callable[..., Gunicorn], redis_url: str
) -> None:
    """Finding 7: ``https://host:port`` passed on an http server, ``http://`` on a TLS one."""
    port = server.port
    assert upgrade_from(port, f"http://127.0.0.1:{port}") == 101
    assert upgrade_from(port, f"HTTP://127.0.0.1:{port}/") == 101
    for origin in (
        f"https://127.0.0.1:{port}",
        f"ws://127.0.0.1:{port}",
        f"http://127.0.0.1:{port + 1}",
        "http://127.0.0.1",
        f"http://localhost:{port}",
        "null",
    ):
        assert upgrade_from(port, origin) == 403, origin
    # Behind a proxy that ends TLS (REALTIME_PROXY_HOPS=1, X-Forwarded-Proto: https), the
    # server's own origin is https: the http one is refused, and the default port is implied.
    behind: Gunicorn = gunicorn_factory(redis_url, workers=1, env={"REALTIME_PROXY_HOPS": "1"})
    tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    assert upgrade_from(behind.port, f"https://127.0.0.1:{behind.port}", tls) == 101
    assert upgrade_from(behind.port, f"http://127.0.0.1:{behind.port}", tls) == 403
    with_host = {**tls, "Host": "rt.example"}
    assert upgrade_from(behind.port, "https://rt.example", with_host) == 101
    assert upgrade_from(behind.port, "https://rt.example:443", with_host) == 101
    assert upgrade_from(behind.port, "http://rt.example", with_host) == 403


# -- 9. /metrics is open to anyone ---------------------------------------------------------------


def test_9_metrics_need_the_metrics_token_when_one_is_set(server: Gunicorn) -> None:
    """Finding 9: /metrics answered anyone who reached gunicorn directly."""
    assert request(server.port, "GET", "/metrics").error() == (401, "missing_token")
    wrong = {"Authorization": f"Bearer {METRICS_TOKEN}x"}
    assert request(server.port, "GET", "/metrics", wrong).error() == (401, "invalid_token")
    user = {"Authorization": f"Bearer {TOKEN}"}  # a user's token is not the metrics token
    assert request(server.port, "GET", "/metrics", user).error() == (401, "invalid_token")
    answer = request(server.port, "GET", "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status == 200
    assert b"realtime_connections_open" in answer.body


# -- 10. gunicorn's own refusals are HTML --------------------------------------------------------


def test_10_gunicorns_own_refusals_answer_in_the_json_contract(server: Gunicorn) -> None:
    """Finding 10: gunicorn answered 414, 431 and 400 with HTML pages."""
    long_line = "/healthz?pad=" + "a" * 5000
    assert request(server.port, "GET", long_line).error() == (414, "uri_too_long")
    huge_header = {"X-Pad": "h" * 9000}
    assert request(server.port, "GET", "/healthz", huge_header).error() == (
        431,
        "header_fields_too_large",
    )
    many = {f"X-Pad-{n}": "x" for n in range(120)}
    assert request(server.port, "GET", "/healthz", many).error() == (
        431,
        "header_fields_too_large",
    )
    assert exchange(server.port, b"GARBAGE\r\n\r\n").error() == (400, "bad_request")
    # A token too long to be ours, below gunicorn's header limit, has its own answer.
    long_token = "a" * (MAX_TOKEN_LENGTH + 1)
    answer = request(
        server.port, "GET", "/events?topic=x", {"Authorization": f"Bearer {long_token}"}
    )
    assert answer.error() == (401, "token_too_large")
    # And a query token gunicorn's request-line limit refuses is 414 in the contract too.
    answer = request(server.port, "GET", f"/events?topic=x&access_token={long_token}")
    assert answer.error() == (414, "uri_too_long")
    assert "a" * 100 not in server.log()  # no line quoted the long token


# -- 11. retention enforced only when a topic is touched --------------------------------------


def test_11_a_quiet_topic_leaves_redis_by_itself_and_new_topics_are_bounded(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, store: redis.Redis
) -> None:
    """Finding 11: a quiet topic's stream outlived the TTL until touched again, and a
    publisher with ``*`` could create topic keys without bound. (The memory of 100,000 one-off
    topics before and after the TTL is in ``tests/storage/test_retention.py``.)"""
    server: Gunicorn = gunicorn_factory(
        redis_url,
        workers=1,
        env={"REALTIME_HISTORY_TTL_S": "1", "REALTIME_NEW_TOPICS_PER_MINUTE": "3"},
    )
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def publish(topic: str) -> Answer:
        body = json.dumps({"topic": topic, "data": "x"}).encode()
        return request(server.port, "POST", "/publish", auth, body)

    for topic in ("quiet:1", "quiet:2", "quiet:3"):
        assert publish(topic).status == 201
    refused = publish("quiet:4")  # a fourth new topic within the minute
    assert refused.error() == (429, "topic_rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert not store.exists("{rt}:t:quiet:4")
    assert publish("quiet:1").status == 201  # an existing topic takes events all the same
    started = time.monotonic()
    while store.exists("{rt}:t:quiet:1", "{rt}:t:quiet:2", "{rt}:t:quiet:3"):
        assert time.monotonic() - started < 10, "a quiet topic outlived its TTL in Redis"
        time.sleep(0.2)


# -- 12. small contract gaps ---------------------------------------------------------------------


def test_12_unknown_fields_file_parts_and_missing_boundaries_are_refused_as_such(
    server: Gunicorn, store: redis.Redis
) -> None:
    """Finding 12: the WebSocket publish ignored unknown fields, a multipart file part gave
    missing_data, and multipart without a boundary gave missing_topic."""
    client = Client(server, f"?access_token={TOKEN}")
    client.recv()
    client.send(type="publish", topic="gaps", data="x", colour="red", req=1)
    error = client.recv()
    assert (error["type"], error["error"], error["req"]) == ("error", "unknown_field", 1)
    client.send(type="ping", req=2)
    assert client.recv() == {"type": "ack", "req": 2}  # the socket stays open
    client.close()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    boundary = "b0undary"
    with_file = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="topic"\r\n\r\ngaps\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="data"; filename="d.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nfile content\r\n--{boundary}--\r\n"
    ).encode()
    multipart = {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert request(server.port, "POST", "/publish", multipart, with_file).error() == (
        400,
        "bad_form",
    )
    no_boundary = {**auth, "Content-Type": "multipart/form-data"}
    assert request(server.port, "POST", "/publish", no_boundary, with_file).error() == (
        400,
        "bad_form",
    )
    assert not store.exists("{rt}:t:gaps")


def test_the_module_server_log_holds_no_traceback(server: Gunicorn) -> None:
    """None of the probes above made the server fail: no 500 was logged."""
    assert "Traceback" not in server.log()
    assert not re.search(r'" 500 ', server.log())
