"""realtime.client: pure retry and framing rules as tables, then publish and subscribe against
real gunicorn and a real redis-server, with faults injected by a real HTTP proxy or a fake server
on 127.0.0.1 (never a mock of the client's own code)."""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import gevent
import gevent.server
import pytest
import redis
from conftest import Gunicorn, gunicorn_env, make_token, spawn_gunicorn

from realtime.client import (
    AuthFailed,
    Backoff,
    BadInput,
    Event,
    Refused,
    RequestError,
    ServerUnavailable,
    parse_head,
    parse_retry_after,
    parse_url,
    publish,
    publish_batch,
    refusal,
    subscribe,
)
from realtime.core.chunked import ChunkedDecoder, ProtocolError
from realtime.storage.keys import topic_key
from realtime.storage.redis_server import RedisServer, free_port

TOKEN = make_token()
FAST = Backoff(base=0.01, cap=0.2)  # retries in tests wait milliseconds, not seconds


# -- servers -------------------------------------------------------------------------------------


def launch_gunicorn(
    redis_url: str,
    data_dir: Path,
    *,
    port: int | None = None,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Gunicorn:
    """Real gunicorn as conftest's ``gunicorn_factory`` starts it, but without flushing Redis
    (tests here share a server and use their own topics)."""
    port = port or free_port()
    full_env = gunicorn_env(redis_url, port, workers, data_dir / "var", env)
    return spawn_gunicorn(port, full_env, data_dir / f"gunicorn-{port}-{time.monotonic_ns()}.log")


@pytest.fixture
def launcher(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Starts gunicorn on the suite's Redis (unflushed: tests use their own topics); stops every
    server it started, quickly (SIGQUIT), when the test ends."""
    started: list[Gunicorn] = []

    def launch(**kwargs: Any) -> Gunicorn:
        server = launch_gunicorn(redis_server.url, tmp_path, **kwargs)
        started.append(server)
        return server

    yield launch
    for server in started:
        server.stop(signal.SIGQUIT)


@pytest.fixture(scope="module")
def shared(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """One gunicorn for the tests that need nothing special of it: each uses its own topics, so
    they stay independent while the module avoids a start and a stop per test."""
    server = launch_gunicorn(redis_server.url, tmp_path_factory.mktemp("shared"), workers=2)
    yield server
    server.stop(signal.SIGQUIT)


@pytest.fixture(scope="module")
def redis_conn(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A connection that, unlike conftest's ``redis_client``, does not flush the database under
    the module's running server."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def stored(redis_conn: redis.Redis, topic: str) -> int:
    """How many events the server stored on ``topic``."""
    return int(redis_conn.xlen(topic_key(topic)))


# -- fault injection -----------------------------------------------------------------------------


@dataclass
class Post:
    """One POST /publish as the proxy received it."""

    headers: dict[str, str]
    body: bytes


@dataclass
class FaultyProxy:
    """A real HTTP proxy on 127.0.0.1 in front of gunicorn that plays ``script`` on the first
    POSTs, one action each, then forwards every request unchanged.

    Actions: ``"503"`` answers 503 with our JSON error and ``Retry-After: 0`` without forwarding;
    ``"429:N"`` answers 429 with ``Retry-After: N``; ``"drop"`` forwards (so the server stores the
    event) and then closes the connection without answering, as a lost response does.
    """

    upstream_port: int
    script: list[str] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    #: The bodies the upstream answered, including answers the client never got.
    upstream_answers: list[bytes] = field(default_factory=list)
    port: int = 0

    def start(self) -> FaultyProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy.posts.append(Post(dict(self.headers.items()), body))
                action = proxy.script.pop(0) if proxy.script else "forward"
                if action == "503":
                    self.answer(503, {"error": "redis_unavailable", "message": UNAVAILABLE}, "0")
                elif action.startswith("429:"):
                    message = {"error": "too_many_requests", "message": "Slow down."}
                    self.answer(429, message, action[4:])
                else:
                    status, headers, answer = proxy.forward(self.path, dict(self.headers), body)
                    proxy.upstream_answers.append(answer)
                    if action == "drop":
                        self.close_connection = True
                        return
                    self.send_response(status)
                    for name, value in headers:
                        if name.lower() in ("content-type", "idempotent-replayed", "retry-after"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            def answer(self, status: int, body: dict[str, str], retry_after: str) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()
        return self

    def forward(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=10)
        try:
            upstream.request("POST", path, body=body, headers=headers)
            response = upstream.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            upstream.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keys(self) -> set[str]:
        return {post.headers["Idempotency-Key"] for post in self.posts}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


UNAVAILABLE = "Redis is unreachable; retry shortly."


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., FaultyProxy]]:
    """Starts a :class:`FaultyProxy` in front of a server; stops it when the test ends."""
    started: list[FaultyProxy] = []

    def start(server: Gunicorn, script: list[str]) -> FaultyProxy:
        proxy = FaultyProxy(server.port, list(script)).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


# -- pure rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(12))
def test_backoff_waits_within_full_jitter_bounds_and_never_past_the_cap(attempt: int) -> None:
    backoff = Backoff(base=0.5, cap=10.0)
    ceiling = min(10.0, 0.5 * 2**attempt)
    assert backoff.ceiling(attempt) == ceiling
    assert backoff.delay(attempt, uniform=lambda low, high: low) == 0.0
    assert backoff.delay(attempt, uniform=lambda low, high: high) == ceiling
    for _ in range(50):
        assert 0.0 <= backoff.delay(attempt) <= ceiling


def test_backoff_survives_absurd_attempt_counts() -> None:
    assert Backoff(base=0.5, cap=30.0).ceiling(10_000) == 30.0


def test_backoff_never_retries_sooner_than_retry_after() -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    assert backoff.delay(0, retry_after=3.0, uniform=lambda low, high: high) == 3.0
    assert backoff.delay(5, retry_after=3.0, uniform=lambda low, high: high) == 16.0
    assert backoff.delay(0, retry_after=0.0, uniform=lambda low, high: 0.2) == 0.2


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("120", 120.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
    ids=["seconds", "zero", "minutes", "date", "past date", "negative", "fraction", "word", "empty",
         "absent"],
)  # fmt: skip
def test_retry_after_is_read_as_seconds_or_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "body", "kind", "code", "message"),
    [
        (401, b'{"error": "invalid_token", "message": "Bad."}', AuthFailed, "invalid_token",
         "Bad."),
        (403, b'{"error": "forbidden_topic", "message": "No."}', AuthFailed, "forbidden_topic",
         "No."),
        (400, b'{"error": "invalid_topic", "message": "T."}', BadInput, "invalid_topic", "T."),
        (413, b'{"error": "payload_too_large", "message": "Big."}', BadInput, "payload_too_large",
         "Big."),
        (415, b"{}", BadInput, None, "The server answered 415 Reason."),
        (404, b'{"error": "not_found", "message": "Where?"}', Refused, "not_found", "Where?"),
        (429, b'{"error": "too_many_connections", "message": "Wait."}', ServerUnavailable,
         "too_many_connections", "Wait."),
        (503, b'{"error": "draining", "message": "Later."}', ServerUnavailable, "draining",
         "Later."),
        (408, b'{"error": "request_timeout", "message": "Slow."}', ServerUnavailable,
         "request_timeout", "Slow."),
        (502, b"<html>Bad Gateway</html>", ServerUnavailable, None,
         "The server answered 502 Reason."),
    ],
)  # fmt: skip
def test_refusals_map_to_exceptions_carrying_the_servers_code_and_message(
    status: int, body: bytes, kind: type[RequestError], code: str | None, message: str
) -> None:
    exc = refusal(status, "Reason", body, "2")
    assert type(exc) is kind
    assert (exc.status, exc.code, exc.message, exc.retry_after) == (status, code, message, 2.0)


@pytest.mark.parametrize(
    ("url", "origin", "path"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000", "/publish"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000", "/publish"),
        ("https://example.com/realtime/", "https://example.com:443", "/realtime/publish"),
        ("http://[::1]:81", "http://[::1]:81", "/publish"),
    ],
)
def test_base_urls_keep_their_mount_path(url: str, origin: str, path: str) -> None:
    target = parse_url(url)
    assert (target.origin, target.path("/publish")) == (origin, path)


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8000", "ftp://host", "http://", "http://h:99999", "http://h/?x=1"]
)
def test_a_url_that_is_not_a_server_base_url_is_refused_with_a_sentence(url: str) -> None:
    with pytest.raises(ValueError, match=r"\.$|\)\.$"):
        parse_url(url)


CHUNKED = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n"


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(CHUNKED)])
def test_chunked_body_decodes_the_same_however_it_is_split(step: int) -> None:
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(CHUNKED[i : i + step]) for i in range(0, len(CHUNKED), step))
    assert out == b"hello, world"
    assert decoder.done


@pytest.mark.parametrize(
    "raw", [b"zz\r\n", b"0x5\r\nhello\r\n", b"-1\r\n", b"3\r\nabcd\r\n", b"1" * 5000]
)
def test_malformed_chunking_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        ChunkedDecoder().feed(raw)


def test_response_head_is_parsed_with_lower_case_header_names() -> None:
    head = parse_head(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nX-A:  b ")
    assert (head.status, head.reason, head.headers) == (
        503,
        "Service Unavailable",
        {"retry-after": "1", "x-a": "b"},
    )
    with pytest.raises(ProtocolError):
        parse_head(b"SSH-2.0-OpenSSH")


@pytest.mark.parametrize("token", ["a\r\nX-Evil: 1", "a\nb", "a\0b"])
def test_a_token_with_a_line_break_is_refused_before_anything_is_sent(token: str) -> None:
    with pytest.raises(ValueError, match="token"):
        publish("http://127.0.0.1:9", "t", "x", token=token, retries=0)
    with pytest.raises(ValueError, match="token"):
        subscribe("http://127.0.0.1:9", "t", token=token)


def test_notices_are_the_servers_reserved_types() -> None:
    assert Event("1-1", "reset", "{}").is_notice
    assert not Event("1-2", "created", "{}", "orders").is_notice


# -- publish against real gunicorn ---------------------------------------------------------------


def test_publish_stores_one_event_and_returns_its_id(
    shared: Gunicorn, redis_conn: redis.Redis
) -> None:
    start = publish(shared.url, "p1:start", "", token=TOKEN)
    first = publish(shared.url, "p1:orders", {"id": 7}, type="created", token=TOKEN)
    second = publish(shared.url, "p1:orders", "plain\ntext", token=TOKEN)
    ids = publish_batch(
        shared.url,
        [{"topic": "p1:a", "data": [1, 2]}, {"topic": "p1:b", "data": "x", "type": "t"}],
        token=TOKEN,
    )
    assert len({start, first, second, *ids}) == 5
    assert [stored(redis_conn, t) for t in ("p1:orders", "p1:a", "p1:b")] == [2, 1, 1]
    events = collect(shared.url, ["p1:orders", "p1:a", "p1:b"], count=4, last_id=start)
    assert [(e.id, e.topic, e.type, e.data) for e in events] == [
        (first, "p1:orders", "created", '{"id":7}'),
        (second, "p1:orders", "message", "plain\ntext"),
        (ids[0], "p1:a", "message", "[1,2]"),
        (ids[1], "p1:b", "t", "x"),
    ]


def test_publish_retried_after_two_503s_stores_exactly_one_event_under_one_key(
    shared: Gunicorn, redis_conn: redis.Redis, proxy_factory: Callable[..., FaultyProxy]
) -> None:
    proxy = proxy_factory(shared, ["503", "503"])
    event_id = publish(proxy.url, "p2", "once", token=TOKEN, backoff=FAST)
    assert len(proxy.posts) == 3
    assert len(proxy.keys()) == 1
    assert stored(redis_conn, "p2") == 1
    assert json.loads(proxy.upstream_answers[0]) == {"id": event_id}


def test_a_lost_response_is_retried_without_storing_a_duplicate(
    shared: Gunicorn, redis_conn: redis.Redis, proxy_factory: Callable[..., FaultyProxy]
) -> None:
    proxy = proxy_factory(shared, ["drop"])
    event_id = publish(proxy.url, "p3", "once", token=TOKEN, backoff=FAST)
    assert len(proxy.posts) == 2
    assert len(proxy.keys()) == 1
    assert stored(redis_conn, "p3") == 1
    # The answer the client never saw named the same event the retry was given.
    assert [json.loads(a) for a in proxy.upstream_answers] == [{"id": event_id}] * 2


def test_each_publish_gets_its_own_key_unless_the_caller_gives_one(
    shared: Gunicorn, redis_conn: redis.Redis, proxy_factory: Callable[..., FaultyProxy]
) -> None:
    proxy = proxy_factory(shared, [])
    publish(proxy.url, "p4", "1", token=TOKEN)
    publish(proxy.url, "p4", "1", token=TOKEN)
    assert len(proxy.keys()) == 2
    assert stored(redis_conn, "p4") == 2
    again = [publish(proxy.url, "p4", "2", token=TOKEN, idempotency_key="run-42") for _ in "ab"]
    assert again[0] == again[1]
    assert stored(redis_conn, "p4") == 3


def test_429_is_retried_no_sooner_than_its_retry_after(
    shared: Gunicorn, proxy_factory: Callable[..., FaultyProxy]
) -> None:
    proxy = proxy_factory(shared, ["429:1"])
    started = time.monotonic()
    publish(proxy.url, "p5", "x", token=TOKEN, backoff=Backoff(base=0.01, cap=5.0))
    assert time.monotonic() - started >= 1.0
    assert len(proxy.posts) == 2


def test_retry_after_beyond_the_backoff_cap_gives_up_at_once(
    shared: Gunicorn, proxy_factory: Callable[..., FaultyProxy]
) -> None:
    proxy = proxy_factory(shared, ["429:60"])
    with pytest.raises(ServerUnavailable) as failed:
        publish(proxy.url, "p6", "x", token=TOKEN, backoff=FAST)
    assert (failed.value.status, failed.value.retry_after, failed.value.attempts) == (429, 60, 1)


def test_spent_retries_raise_server_unavailable_with_the_servers_answer(
    shared: Gunicorn, redis_conn: redis.Redis, proxy_factory: Callable[..., FaultyProxy]
) -> None:
    proxy = proxy_factory(shared, ["503"] * 3)
    with pytest.raises(ServerUnavailable) as failed:
        publish(proxy.url, "p7", "x", token=TOKEN, retries=2, backoff=FAST)
    exc = failed.value
    assert (exc.status, exc.code, exc.message, exc.attempts) == (
        503,
        "redis_unavailable",
        UNAVAILABLE,
        3,
    )
    assert len(proxy.posts) == 3
    assert stored(redis_conn, "p7") == 0


def test_an_unreachable_server_is_retried_then_reported_without_secrets() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as failed:
        publish(f"http://127.0.0.1:{port}", "a", "x", token=TOKEN, retries=2, backoff=FAST)
    assert time.monotonic() - started < 5
    assert failed.value.status is None
    assert failed.value.attempts == 3
    assert failed.value.message == (
        f"Could not reach http://127.0.0.1:{port} (connection refused) after 3 attempts."
    )
    assert TOKEN not in repr(failed.value.args)


@pytest.mark.parametrize(
    ("kwargs", "kind", "code", "status"),
    [
        ({"topic": "no spaces"}, BadInput, "invalid_topic", 400),
        ({"type": "reset"}, BadInput, "reserved_type", 400),
        ({"data": "a\rb"}, BadInput, "invalid_data", 400),
        ({"data": "x" * 70_000}, BadInput, "payload_too_large", 413),
        ({"token": "not-a-jwt"}, AuthFailed, "invalid_token", 401),
        ({"token": None}, AuthFailed, "missing_token", 401),
        ({"token": make_token(publish=("other",))}, AuthFailed, "forbidden_topic", 403),
    ],
    ids=["topic", "reserved type", "carriage return", "too large", "bad token", "no token",
         "no rights"],
)  # fmt: skip
def test_refused_publishes_are_not_retried_and_carry_the_servers_code(
    shared: Gunicorn,
    redis_conn: redis.Redis,
    proxy_factory: Callable[..., FaultyProxy],
    kwargs: dict[str, Any],
    kind: type[RequestError],
    code: str,
    status: int,
) -> None:
    proxy = proxy_factory(shared, [])
    call = {"topic": "p8", "data": "x", "token": TOKEN, **kwargs}
    with pytest.raises(kind) as failed:
        publish(proxy.url, call.pop("topic"), call.pop("data"), backoff=FAST, **call)
    assert (failed.value.code, failed.value.status) == (code, status)
    assert failed.value.message.endswith(".")
    assert len(proxy.posts) == 1
    assert stored(redis_conn, "p8") == 0


# -- subscribe -----------------------------------------------------------------------------------


def collect(
    url: str, topics: list[str], *, count: int, last_id: str | None, timeout: float = 10.0
) -> list[Event]:
    """The first ``count`` events of a subscription that resumes after ``last_id``."""
    events: list[Event] = []
    stream = subscribe(url, topics, token=TOKEN, last_id=last_id)
    with gevent.Timeout(timeout):
        for event in stream:
            events.append(event)
            if len(events) == count:
                break
    stream.close()
    return events


def test_subscribe_resumes_exactly_across_repeated_server_side_drops(
    launcher: Callable[..., Gunicorn], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="realtime.client")
    # The server closes every stream after a second (with a short jittered retry:), on either
    # of two workers: the client must resume each time exactly where it left off.
    server = launcher(workers=2, env={"REALTIME_MAX_CONNECTION_AGE_S": "1"})
    start = publish(server.url, "s1:x", "before", token=TOKEN)
    received: list[Event] = []
    done = threading.Event()

    def follow() -> None:
        topics = ["s1:x", "s1:y"]
        for event in subscribe(server.url, topics, token=TOKEN, last_id=start, stop=done):
            received.append(event)

    def reconnects() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "reconnecting" in r.getMessage()]

    follower = gevent.spawn(follow)
    published = []
    # Publish until the stream was dropped twice (a drop every second, each followed by a
    # reconnect up to 1.5 s later): 40 events at first, at most 120.
    for n in range(120):
        if n >= 40 and len(reconnects()) >= 2:
            break
        published.append(publish(server.url, ("s1:x", "s1:y")[n % 2], str(n), token=TOKEN))
        gevent.sleep(0.08)
    with gevent.Timeout(15):
        while len(received) < len(published):
            gevent.sleep(0.05)
    done.set()
    follower.join(5)
    assert follower.dead
    assert [e.id for e in received] == published
    assert [e.data for e in received] == [str(n) for n in range(len(published))]
    assert len(reconnects()) >= 2, "the server never dropped the stream"


def test_subscribe_yields_reset_when_the_server_cannot_resume(shared: Gunicorn) -> None:
    publish(shared.url, "s2", "old", token=TOKEN)
    stream = subscribe(shared.url, "s2", token=TOKEN, last_id="bogus")
    with gevent.Timeout(10):
        reset = next(stream)
        later = publish(shared.url, "s2", "new", token=TOKEN)
        event = next(stream)
    stream.close()
    assert (reset.type, reset.topic, reset.is_notice) == ("reset", None, True)
    assert json.loads(reset.data) == {"reason": "unknown_id", "last_id": reset.id}
    assert (event.id, event.data) == (later, "new")


@pytest.mark.parametrize(
    ("token", "topic", "kind", "code"),
    [
        ("not-a-jwt", "s3", AuthFailed, "invalid_token"),
        (make_token(subscribe=("other",)), "s3", AuthFailed, "forbidden_topic"),
        (TOKEN, "bad topic", BadInput, "invalid_topic"),
    ],
    ids=["bad token", "no rights", "bad topic"],
)
def test_subscribe_raises_refusals_instead_of_reconnecting(
    shared: Gunicorn, token: str, topic: str, kind: type[Refused], code: str
) -> None:
    started = time.monotonic()
    with pytest.raises(kind) as failed, gevent.Timeout(5):
        next(subscribe(shared.url, topic, token=token))
    assert failed.value.code == code
    assert time.monotonic() - started < 2


def test_setting_stop_ends_a_quiet_subscription_promptly(shared: Gunicorn) -> None:
    stop = threading.Event()
    gevent.spawn_later(0.3, stop.set)
    started = time.monotonic()
    with gevent.Timeout(5):
        assert list(subscribe(shared.url, "s4", token=TOKEN, stop=stop)) == []
    assert time.monotonic() - started < 0.3 + 1.5


class ScriptedServer:
    """A fake SSE server for faults gunicorn will not produce on demand: it answers connection
    ``n`` with ``answers[n]`` (raw bytes), then keeps the socket open and silent."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[str] = []
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self.handle)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def handle(self, sock: socket.socket, _address: Any) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = sock.recv(4096)
            if not data:
                return
            request += data
        index = len(self.requests)
        self.requests.append(request.decode("latin-1"))
        sock.sendall(self.answers[min(index, len(self.answers) - 1)])
        while sock.recv(4096):  # then silent, until the client gives up and closes
            pass

    def stop(self) -> None:
        self.server.stop(timeout=1)


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_silent_stream_is_reopened_after_timeout_with_last_event_id() -> None:
    first = SSE_HEAD + chunk(b"retry: 10\n\nid: e-1\n\n") + chunk(b"id: e-2\ndata: hi\n\n")
    fake = ScriptedServer([first, SSE_HEAD + chunk(b"id: e-3\ndata: again\n\n")])
    try:
        stream = subscribe(fake.url, "x", timeout=0.5)
        with gevent.Timeout(5):
            events = [next(stream), next(stream)]
        stream.close()
    finally:
        fake.stop()
    assert [(e.id, e.data) for e in events] == [("e-2", "hi"), ("e-3", "again")]
    assert len(fake.requests) == 2
    assert "Last-Event-ID" not in fake.requests[0]
    assert "\r\nLast-Event-ID: e-2\r\n" in fake.requests[1]


def test_a_503_on_connect_is_retried_with_retry_after_and_the_position_kept() -> None:
    unavailable = b'{"error": "draining", "message": "Draining."}'
    refused = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: 0\r\nContent-Length: %d\r\n\r\n%s" % (len(unavailable), unavailable)
    )
    ok = SSE_HEAD + chunk(b"retry: 10\n\nid: e-9\ndata: back\n\n")
    fake = ScriptedServer([refused, refused, ok])
    try:
        stream = subscribe(fake.url, ["a", "b"], last_id="e-8", timeout=5, max_backoff=0.2)
        with gevent.Timeout(10):
            event = next(stream)
        stream.close()
    finally:
        fake.stop()
    assert (event.id, event.data) == ("e-9", "back")
    assert len(fake.requests) == 3
    assert all("\r\nLast-Event-ID: e-8\r\n" in r for r in fake.requests)
    assert all(r.startswith("GET /events?topic=a&topic=b HTTP/1.1") for r in fake.requests)


def test_a_page_that_is_not_an_event_stream_is_refused_not_retried() -> None:
    page = b"<html>hello</html>"
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (
        len(page),
        page,
    )
    fake = ScriptedServer([answer])
    try:
        with pytest.raises(Refused, match="text/html, not an event stream"), gevent.Timeout(5):
            next(subscribe(fake.url, "x"))
    finally:
        fake.stop()
    assert len(fake.requests) == 1
