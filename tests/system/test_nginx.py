"""The shipped nginx.conf, on real nginx in front of two real gunicorn instances sharing one Redis.

The config is rendered with only the lines its header says differ per machine (the listen port and
the upstream ports); everything else runs as shipped, except in the one test that puts nginx's
buffering defaults back to show that the unbuffered check can fail. Counts and times are bounded;
everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
import simple_websocket
from conftest import ROOT, Gunicorn, make_token, require_binary, wait_http
from mercure_tokens import PUBLISHER
from sse_client import SocketStream

from realtime.core.sse import MessageEvent
from realtime.storage.redis_server import free_port

pytestmark = pytest.mark.integration

CONF = ROOT / "nginx.conf"
TOKEN = make_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1048576  # REALTIME_MAX_BODY's default, which client_max_body_size must equal


# -- nginx ---------------------------------------------------------------------------------------


def nginx_binary() -> str:
    return require_binary("nginx", shutil.which("nginx") or "/usr/sbin/nginx")


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"nginx.conf should contain {old!r} exactly once"
    return text.replace(old, new)


def render(listen_port: int, upstream_ports: tuple[int, int]) -> str:
    """nginx.conf with the per-machine lines its header names set for this test."""
    text = replace_once(CONF.read_text(), "listen 80;", f"listen 127.0.0.1:{listen_port};")
    for shipped, port in zip((8001, 8002), upstream_ports, strict=True):
        text = replace_once(text, f"server 127.0.0.1:{shipped} ", f"server 127.0.0.1:{port} ")
    return text


def prefix_with_logs(path: Path) -> Path:
    """An nginx prefix as the config's header says to make one: a directory with logs/."""
    (path / "logs").mkdir(parents=True)
    return path


def global_directives() -> str:
    # In the foreground, so the test owns the master. As root, the workers run as root too: the
    # default, nobody, could not write a large request body under pytest's 0700 directories.
    return "daemon off;" + (" user root;" if os.geteuid() == 0 else "")


@dataclass
class Nginx:
    port: int
    prefix: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> str:
        return (self.prefix / "logs" / "access.log").read_text(errors="replace")

    def access_log_with(self, *needles: str, timeout: float = 5.0) -> str:
        """The access log once it holds every needle, or as it is at the deadline: nginx writes
        a request's line when it finalizes the request, which can be after the client has its
        answer (and, for a stream, when nginx notices the client left)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.access_log()
            if all(needle in log for needle in needles) or time.monotonic() >= deadline:
                return log
            gevent.sleep(0.05)

    def log_lines(self, containing: str) -> list[str]:
        return [line for line in self.access_log().splitlines() if containing in line]

    def error_log(self) -> str:
        return (self.prefix / "logs" / "error.log").read_text(errors="replace")

    def stop(self) -> None:
        """Fast shutdown (SIGTERM); the master and its workers are killed if that hangs."""
        if self.process.poll() is not None:
            return
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            workers = [int(p) for p in children.read_text().split()]
        except FileNotFoundError:  # the master has just exited
            workers = []
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """Starts nginx on a rendered nginx.conf in front of the given upstream ports."""
    binary = nginx_binary()
    started: list[Nginx] = []

    def start(upstream_ports: tuple[int, int], edit: Callable[[str], str] = str) -> Nginx:
        port = free_port()
        prefix = prefix_with_logs(tmp_path / f"nginx-{port}")
        conf = prefix / "nginx.conf"
        conf.write_text(edit(render(port, upstream_ports)))
        with open(prefix / "stderr.log", "wb") as stderr:
            process = subprocess.Popen(
                [binary, "-p", f"{prefix}/", "-c", str(conf), "-g", global_directives()],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
            )
        server = Nginx(port, prefix, process)
        started.append(server)
        try:
            wait_http(server.url + "/healthz", timeout=10, process=process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{(prefix / 'stderr.log').read_text()}") from None
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def two_instances(
    gunicorn_factory: Any, redis_url: str
) -> Callable[..., tuple[Gunicorn, Gunicorn]]:
    def start(**env: str) -> tuple[Gunicorn, Gunicorn]:
        a = gunicorn_factory(redis_url, workers=1, env=env)
        b = gunicorn_factory(redis_url, workers=1, env=env)
        return a, b

    return start


# -- HTTP helpers --------------------------------------------------------------------------------


def publish(url: str, topic: str, data: str, key: str | None = None) -> tuple[int, Any]:
    """POST one event; the status and the JSON answer (an error's too)."""
    headers = {**AUTH, "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    request = urllib.request.Request(
        url + "/publish", data=json.dumps({"topic": topic, "data": data}).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def open_stream(port: int, topic: str, headers: dict[str, str] | None = None) -> SocketStream:
    """An SSE stream whose head and opening lines have been read."""
    stream = SocketStream(port, f"/events?topic={topic}&access_token={TOKEN}", headers)
    stream.read_events(time.monotonic() + 5)
    assert stream.status == 200
    while stream.parser.last_event_id == "":  # the id-only line that opens a fresh stream
        stream.read_events(time.monotonic() + 5)
    return stream


def next_message(stream: SocketStream, timeout: float) -> MessageEvent | None:
    """The next ``message`` event within ``timeout`` s, else None (also if no head came)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stream.closed:
        if stream.status is None:
            stream.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            events = stream.read_events(deadline)
        except TimeoutError:
            return None
        for event in events:
            if event.type == "message":
                return event
    return None


# -- the config as shipped -----------------------------------------------------------------------


def test_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    """As shipped, but for the listen port: `nginx -t` binds it, and 80 needs root (and may be
    taken). The upstream addresses are only resolved, not connected to, so they stay."""
    prefix = prefix_with_logs(tmp_path / "prefix")
    conf = prefix / "nginx.conf"
    conf.write_text(
        replace_once(CONF.read_text(), "listen 80;", f"listen 127.0.0.1:{free_port()};")
    )
    checked = subprocess.run(
        [nginx_binary(), "-t", "-p", f"{prefix}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


# -- acceptance 1: no buffering, WebSocket, one Redis behind both instances ----------------------


def test_an_event_published_through_nginx_reaches_an_sse_client_through_nginx_unbuffered(
    two_instances: Any, nginx_factory: Any
) -> None:
    # No heartbeat for a minute: nothing but the event itself can flush a proxy's buffer.
    a, b = two_instances(REALTIME_HEARTBEAT_S="60")
    nginx = nginx_factory((a.port, b.port))
    stream = open_stream(nginx.port, "live")
    assert stream.headers["content-type"].startswith("text/event-stream")
    latencies = []
    for n in range(3):
        started = time.monotonic()
        status, body = publish(nginx.url, "live", f"hello {n}")
        assert status == 201
        event = next_message(stream, timeout=5)
        assert event is not None, "the event was held back: something buffers the stream"
        latencies.append((time.monotonic() - started) * 1000)
        assert (event.last_event_id, event.data) == (body["id"], f"hello {n}")
    stream.close()
    print(f"\npublish -> arrival through nginx: {', '.join(f'{ms:.1f}' for ms in latencies)} ms")


def test_a_mercure_update_reaches_a_mercure_subscriber_through_nginx_unbuffered(
    two_instances: Any, nginx_factory: Any
) -> None:
    a, b = two_instances(REALTIME_HEARTBEAT_S="60", REALTIME_MERCURE_ANONYMOUS="1")
    nginx = nginx_factory((a.port, b.port))
    stream = SocketStream(nginx.port, "/.well-known/mercure?topic=https://example.com/n")
    stream.read_events(time.monotonic() + 5)
    assert stream.status == 200
    for n in range(3):
        request = urllib.request.Request(
            nginx.url + "/.well-known/mercure",
            data=f"topic=https://example.com/n&data=hello+{n}&id=n{n}".encode(),
            headers={"Authorization": f"Bearer {PUBLISHER}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.read() == f"n{n}".encode()
        event = next_message(stream, timeout=5)
        assert event is not None, "the update was held back: something buffers the hub"
        assert (event.last_event_id, event.data) == (f"n{n}", f"hello {n}")
    stream.close()


def test_the_unbuffered_check_fails_behind_a_buffering_proxy(
    two_instances: Any, nginx_factory: Any
) -> None:
    """The check above can tell: behind nginx's own defaults (HTTP/1.0 to the upstream, buffering
    on) with the app's `X-Accel-Buffering: no` ignored, the same event does not come through."""
    a, b = two_instances(REALTIME_HEARTBEAT_S="60")

    def buffering(text: str) -> str:
        return replace_once(
            text,
            "proxy_buffering off;\n            proxy_cache off;",
            "proxy_http_version 1.0;\n            proxy_buffering on;\n"
            "            proxy_ignore_headers X-Accel-Buffering;",
        )

    nginx = nginx_factory((a.port, b.port), edit=buffering)
    stream = SocketStream(nginx.port, f"/events?topic=live&access_token={TOKEN}")
    try:
        status, _ = publish(nginx.url, "live", "held")
        assert status == 201
        assert next_message(stream, timeout=2) is None
    finally:
        stream.close()


def test_a_websocket_works_through_nginx(two_instances: Any, nginx_factory: Any) -> None:
    a, b = two_instances()
    nginx = nginx_factory((a.port, b.port))
    ws = simple_websocket.Client.connect(f"ws://127.0.0.1:{nginx.port}/ws?access_token={TOKEN}")
    ws._handle_events()  # frames that came with the 101 response (see tests/web/test_ws.py)
    try:

        def recv() -> dict[str, Any]:
            raw = ws.receive(timeout=5)
            assert raw is not None, "nothing received in time"
            return dict(json.loads(raw))

        assert recv()["type"] == "welcome"
        ws.send(json.dumps({"type": "subscribe", "topics": ["chat"], "req": 1}))
        assert recv()["type"] == "ack"
        ws.send(json.dumps({"type": "publish", "topic": "chat", "data": "over ws", "req": 2}))
        frames = [recv(), recv()]
        assert sorted(f["type"] for f in frames) == ["ack", "event"]
        status, body = publish(nginx.url, "chat", "over http")
        assert status == 201
        event = recv()
        assert (event["type"], event["id"], event["data"]) == ("event", body["id"], "over http")
    finally:
        ws.close()


def upgrade_status(port: int, origin: str) -> int:
    """The status of a WebSocket upgrade sent as a browser on ``origin`` sends it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(
            "GET",
            f"/ws?access_token={TOKEN}",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
                "Origin": origin,
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_websocket_origin_check_still_works_behind_nginx(
    two_instances: Any, nginx_factory: Any
) -> None:
    """The app compares Origin with Host: nginx must forward the Host the browser sent, port
    included, or every page nginx serves would be refused its own WebSocket."""
    a, b = two_instances()
    nginx = nginx_factory((a.port, b.port))
    assert upgrade_status(nginx.port, nginx.url) == 101
    assert upgrade_status(nginx.port, "http://evil.example") == 403


def test_a_subscriber_on_instance_a_receives_events_published_via_instance_b(
    two_instances: Any, nginx_factory: Any
) -> None:
    a, b = two_instances(REALTIME_HEARTBEAT_S="60")
    nginx = nginx_factory((a.port, b.port))
    on_a = open_stream(a.port, "shared")
    via_nginx = open_stream(nginx.port, "shared")
    for target in (b.url, nginx.url):
        status, body = publish(target, "shared", f"via {target}")
        assert status == 201
        for stream in (on_a, via_nginx):
            event = next_message(stream, timeout=5)
            assert event is not None
            assert event.last_event_id == body["id"]
    on_a.close()
    via_nginx.close()


def test_a_body_over_realtime_max_body_is_refused_by_nginx_with_the_apps_json_error(
    two_instances: Any, nginx_factory: Any
) -> None:
    a, b = two_instances()
    nginx = nginx_factory((a.port, b.port))

    def post(size: int) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"topic": "t", "data": ""}).encode()
        body = body[:-2] + b"x" * (size - len(body)) + body[-2:]  # padding inside "data"
        connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
        headers = {**AUTH, "Content-Type": "application/json", "User-Agent": f"size-{size}"}
        connection.request("POST", "/publish", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.status, json.loads(response.read())
        connection.close()
        return answer

    at_limit, over = post(MAX_BODY), post(MAX_BODY + 1)
    # Both are the JSON contract's 413; the log shows who answered (upstream_status).
    assert at_limit == (413, at_limit[1])
    assert at_limit[1]["error"] == "payload_too_large"
    assert over == (413, over[1])
    assert over[1]["error"] == "payload_too_large"
    # nginx writes a line when it finalizes a request (a refused body once it has discarded
    # it), so the proxied one's can come after the second request's: each line is found by the
    # user agent its request sent.
    nginx.access_log_with(f'"size-{MAX_BODY}"', f'"size-{MAX_BODY + 1}"')
    (reached_app,) = nginx.log_lines(f'"size-{MAX_BODY}"')
    (stopped,) = nginx.log_lines(f'"size-{MAX_BODY + 1}"')
    assert "upstream_status=413" in reached_app  # 1 MiB reached the app (its data is too large)
    assert "upstream_status=-" in stopped  # one byte more was stopped at nginx


def test_with_no_instance_reachable_a_stream_is_told_when_to_retry_instead_of_failing(
    two_instances: Any, nginx_factory: Any
) -> None:
    """A 502 would end a browser's EventSource for good; nginx answers a stream with only a
    `retry:` in it, and no id, so the browser comes back later with the last id it had."""
    a, b = two_instances()
    nginx = nginx_factory((a.port, b.port))
    a.stop(signal.SIGQUIT)
    b.stop(signal.SIGQUIT)
    stream = SocketStream(
        nginx.port, f"/events?topic=a&access_token={TOKEN}", {"Last-Event-ID": "0123456789-7"}
    )
    try:
        events = stream.read_events(time.monotonic() + 5)
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        deadline = time.monotonic() + 5
        while stream.parser.retry_ms is None and time.monotonic() < deadline:
            events += stream.read_events(deadline)
        assert stream.parser.retry_ms == 5000
        assert events == []
        assert stream.parser.last_event_id == ""
    finally:
        stream.close()
    publish_status, _ = publish(nginx.url, "a", "nowhere")
    assert publish_status == 502  # other routes keep nginx's status: clients retry those


# -- tokens and logs -----------------------------------------------------------------------------


def test_the_access_log_never_contains_a_token(two_instances: Any, nginx_factory: Any) -> None:
    a, b = two_instances()
    nginx = nginx_factory((a.port, b.port))
    stream = open_stream(nginx.port, "a")
    stream.close()
    secrets = [f"s3cret{n}x{uuid.uuid4().hex}" for n in range(9)]
    paths = [
        f"/healthz?access_token={secrets[0]}&x=1",
        f"/healthz?access_token={secrets[1]}&access_token={secrets[2]}",
        f"/healthz?ACCESS_TOKEN={secrets[3]}",
        f"/healthz?access%5Ftoken={secrets[4]}",
        f"/?topic=demo&token={secrets[5]}",
        f"/events?topic=a&jwt={secrets[6]}",
        f"/.well-known/mercure?topic=*&authorization={secrets[8]}",  # the Mercure hub's
    ]
    for path in paths:
        connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
        connection.request("GET", path)
        connection.getresponse().read()
        connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
    connection.request("GET", "/healthz", headers={"Referer": f"{nginx.url}/?token={secrets[7]}"})
    connection.getresponse().read()
    connection.close()

    expected = [
        "GET /events?topic=a&access_token=[redacted] HTTP/1.1",
        "GET /healthz?access_token=[redacted]&x=1 HTTP/1.1",
        "GET /healthz?[redacted] HTTP/1.1",  # two tokens, an encoded name: no query
        "GET /healthz?ACCESS_TOKEN=[redacted] HTTP/1.1",
        "GET /?topic=demo&token=[redacted] HTTP/1.1",
        "GET /events?topic=a&jwt=[redacted] HTTP/1.1",
        "GET /.well-known/mercure?topic=*&authorization=[redacted] HTTP/1.1",
        f'"{nginx.url}/?[redacted]"',  # the referring page, without its query
    ]
    log = nginx.access_log_with(*expected)
    for secret in [TOKEN, TOKEN.split(".")[2], *secrets]:
        assert secret not in log
    for line in expected:
        assert line in log


# -- acceptance 2: SIGTERM one instance under 200 streams ----------------------------------------


class Follower:
    """An EventSource through nginx: resumes with Last-Event-ID after `retry:` milliseconds.

    It ends a connection at ``shutdown`` as realtime's clients do: a draining instance answers
    with a short body of known length, whose end SocketStream (which frames chunked bodies
    only) would not see on a connection nginx keeps alive.
    """

    def __init__(self, port: int, topic: str) -> None:
        self.port = port
        self.topic = topic
        self.ids: list[str] = []
        self.notices: list[str] = []  # shutdown is expected; reset or overflow would be a gap
        self.statuses: list[int | None] = []  # an EventSource gives up on any but 200
        self.last_id: str | None = None
        self.retry_ms = 3000
        self.connected = gevent.event.Event()

    def run(self, stop: gevent.event.Event, deadline: float) -> None:
        path = f"/events?topic={self.topic}&access_token={TOKEN}"
        while not stop.is_set() and time.monotonic() < deadline:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            stream = SocketStream(self.port, path, headers)
            try:
                self.follow(stream, stop, deadline)
            finally:
                stream.close()
            if stream.parser.retry_ms is not None:
                self.retry_ms = stream.parser.retry_ms
            stop.wait(self.retry_ms / 1000)

    def follow(self, stream: SocketStream, stop: gevent.event.Event, deadline: float) -> None:
        events = stream.read_events(deadline)  # the head, and whatever came with it
        self.statuses.append(stream.status)
        while stream.status == 200:
            if stream.parser.last_event_id:
                self.last_id = stream.parser.last_event_id
                self.connected.set()
            for event in events:
                if event.type == "message":
                    self.ids.append(event.last_event_id)
                else:
                    self.notices.append(event.type)
            if stream.closed or stop.is_set() or "shutdown" in (e.type for e in events):
                return
            events = stream.read_events(min(deadline, time.monotonic() + 0.2))


def publish_retrying(url: str, topic: str, data: str, retried: list[str]) -> str:
    """Publish as realtime's clients do: one Idempotency-Key for every try of one event."""
    key = str(uuid.uuid4())
    for _ in range(5):
        status, body = publish(url, topic, data, key)
        if status == 201:
            return str(body["id"])
        retried.append(f"{status} {body!r}")
        gevent.sleep(0.2)
    raise AssertionError(f"publishing {data} failed: {retried[-5:]}")


def publish_and_sigterm(
    a: Gunicorn, b: Gunicorn, nginx: Nginx, topics: list[str]
) -> tuple[list[tuple[str, str]], list[str], float]:
    """Publish 100 events at about 50 a second through nginx, SIGTERM A after the 25th, wait
    until A has exited and B holds every stream, then publish one more event per topic."""
    rng = random.Random(4)
    published: list[tuple[str, str]] = []
    retried: list[str] = []
    for n in range(100):
        topic = rng.choice(topics)
        published.append((topic, publish_retrying(nginx.url, topic, str(n), retried)))
        if n == 24:
            sigterm_at = time.monotonic()
            a.process.send_signal(signal.SIGTERM)
        gevent.sleep(0.02)
    a.process.wait(20)
    took = time.monotonic() - sigterm_at
    with gevent.Timeout(20):
        while get_json(b.url + "/readyz")["streams"] != 200:
            gevent.sleep(0.1)
    for topic in topics:
        published.append((topic, publish_retrying(nginx.url, topic, "after", retried)))
    return published, retried, took


def test_sigterm_moves_200_streams_through_nginx_to_the_other_instance_without_gap_or_duplicate(
    two_instances: Any, nginx_factory: Any
) -> None:
    a, b = two_instances()
    nginx = nginx_factory((a.port, b.port))
    topics = [f"room{n}" for n in range(10)]
    followers = [Follower(nginx.port, topics[n % len(topics)]) for n in range(200)]
    stop = gevent.event.Event()
    deadline = time.monotonic() + 60
    runners = [gevent.spawn(f.run, stop, deadline) for f in followers]
    try:
        with gevent.Timeout(20):
            for f in followers:
                f.connected.wait()
        on_a, on_b = (get_json(server.url + "/readyz")["streams"] for server in (a, b))
        assert on_a + on_b == 200, (on_a, on_b)
        assert on_a > 0, (on_a, on_b)
        assert on_b > 0, (on_a, on_b)
        published, retried, took = publish_and_sigterm(a, b, nginx, topics)
        expected = {t: [i for topic, i in published if topic == t] for t in topics}
        with gevent.Timeout(20):
            while any(len(f.ids) < len(expected[f.topic]) for f in followers):
                gevent.sleep(0.1)
    finally:
        stop.set()
        gevent.joinall(runners, timeout=10)
        gevent.killall(runners, timeout=5)
    assert [r.exception for r in runners if r.exception] == []

    moved = sum(1 for f in followers if "shutdown" in f.notices)
    failovers = nginx.access_log().count("upstream_status=502, ")
    print(
        f"\n200 streams ({on_a} on A, {on_b} on B); {moved} told to move by SIGTERM; A exited "
        f"{took:.2f} s after it (graceful_timeout 10 s); {len(published)} events; requests "
        f"nginx moved to B after A refused: {failovers}; publish retries: {retried}"
    )
    assert a.process.returncode == 0
    assert took < 10
    assert moved >= on_a
    for f in followers:
        assert f.ids == expected[f.topic], f"a follower of {f.topic}: gap or duplicate"
        assert set(f.notices) <= {"shutdown"}
        assert set(f.statuses) == {200}  # an EventSource would have given up on anything else
    log = nginx.access_log() + nginx.error_log()
    assert TOKEN not in log
    assert TOKEN.split(".")[2] not in log
