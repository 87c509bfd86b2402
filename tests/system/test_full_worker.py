"""A full worker still answers: streams stop at their limit while the worker's other connections
serve publishes, health checks and metrics, and nothing else may hold a connection for long
(issue 10). Real gunicorn with the shipped ``gunicorn.conf.py``, scaled down by settings.

A gevent worker accepts at most ``worker_connections`` connections; the shipped configuration
makes that ``REALTIME_MAX_CONNECTIONS + REALTIME_CONNECTION_HEADROOM`` (10,000 + 1,000). The
stream-limit test keeps that ratio (200 streams, 20 connections of headroom); the slow-client
test uses the shipped headroom itself, against a few hundred slow clients of every kind.

Times are asserted only as bounds (an answer within 1 s, a slow connection closed by its
documented bound plus a margin); the figures are printed, run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import pytest
from conftest import ROOT, Gunicorn, gunicorn_env, make_token
from raw_http import Answer, request
from sse_client import SocketStream
from ws_client import Client
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request

from realtime.storage.redis_server import free_port

pytestmark = pytest.mark.integration

TOKEN = make_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WITHIN_S = 1.0  # what the issue asks of every answer from a full or besieged worker
# The shipped ratio of streams to headroom (10,000 : 1,000), at a size a test can hold.
STREAMS = 200
HEADROOM = 20


def ask(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    within: float = WITHIN_S,
) -> Answer:
    """One request on a new connection; the whole answer must come ``within`` seconds."""
    answer = request(port, method, path, headers, body, timeout=within)
    assert answer.seconds < within, f"{method} {path} took {answer.seconds:.2f} s"
    return answer


def publish(port: int, data: str) -> Answer:
    body = json.dumps({"topic": "full", "data": data}).encode()
    return ask(
        port, "POST", "/publish", headers={**AUTH, "Content-Type": "application/json"}, body=body
    )


def open_stream(port: int, topic: str = "full") -> tuple[SocketStream, float]:
    """A stream whose response headers arrived; how long they took."""
    started = time.monotonic()
    stream = SocketStream(port, f"/events?topic={topic}", headers=AUTH, timeout=WITHIN_S)
    stream.read_events(time.monotonic() + WITHIN_S)
    assert stream.status == 200
    return stream, time.monotonic() - started


def refused_count(port: int, transport: str) -> float:
    """``realtime_connections_refused_total`` for a full worker (multiprocess mode sorts labels)."""
    text = ask(port, "GET", "/metrics").body.decode()
    labels = f'reason="worker_full",transport="{transport}"'
    found = re.search(rf"realtime_connections_refused_total{{{labels}}} (\S+)", text)
    assert found is not None, "realtime_connections_refused_total is missing"
    return float(found.group(1))


def message_ids(stream: SocketStream, count: int, timeout: float = 10.0) -> list[str]:
    ids: list[str] = []
    deadline = time.monotonic() + timeout
    while len(ids) < count and time.monotonic() < deadline:
        ids += [e.last_event_id for e in stream.read_events(deadline) if e.type == "message"]
    return ids


def test_a_worker_at_its_stream_limit_answers_everything_else_and_refuses_stream_n_plus_1(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(
        redis_url,
        workers=1,
        env={
            "REALTIME_MAX_CONNECTIONS": str(STREAMS),
            "REALTIME_CONNECTION_HEADROOM": str(HEADROOM),
            "REALTIME_HEARTBEAT_S": "1",  # closed streams are noticed at the next write
        },
    )
    openers = [gevent.spawn(open_stream, server.port) for _ in range(STREAMS)]
    gevent.joinall(openers, raise_error=True)
    streams = [g.value[0] for g in openers]

    # Line 3: a full worker is not ready, so a load balancer sends new streams elsewhere.
    ready = ask(server.port, "GET", "/readyz")
    assert ready.status == 503
    assert ready.headers["retry-after"] == "1"
    assert ready.json()["full"] is True
    assert ready.json()["streams"] == ready.json()["max_streams"] == STREAMS

    # Line 1: fifty publishes at once, the health check and a metrics scrape, each within 1 s.
    publishers = [gevent.spawn(publish, server.port, str(i)) for i in range(50)]
    gevent.joinall(publishers, raise_error=True)
    answers = [g.value for g in publishers]
    assert all(a.status == 201 for a in answers)
    ids = [a.json()["id"] for a in answers]
    health = ask(server.port, "GET", "/healthz")
    assert health.status == 200
    metrics = ask(server.port, "GET", "/metrics")
    assert metrics.status == 200
    assert b"realtime_connections_open" in metrics.body

    # Stream N+1: 429 with Retry-After, and the connection is given back at once.
    refused = ask(server.port, "GET", "/events?topic=full", headers=AUTH)
    assert refused.status == 429
    assert refused.json()["error"] == "too_many_connections"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.closed_after, "a refused stream should not keep its connection"
    # WebSocket N+1: refused with close 1013 (try again later).
    started = time.monotonic()
    ws = Client(server, f"?access_token={TOKEN}")
    error = ws.recv(timeout=WITHIN_S)
    assert error["type"] == "error"
    assert error["error"] == "too_many_connections"
    assert ws.closed_with(timeout=WITHIN_S) == 1013
    ws_seconds = time.monotonic() - started
    assert ws_seconds < WITHIN_S
    assert refused_count(server.port, "sse") == 1
    assert refused_count(server.port, "ws") == 1

    # Nothing was lost on the streams meanwhile: every one got the fifty events, in order.
    order = sorted(ids, key=lambda i: int(i.rsplit("-", 1)[1]))
    for stream in streams:
        assert message_ids(stream, 50) == order

    # Line 3, back: once streams leave, the worker is ready again.
    for stream in streams[:10]:
        stream.close()
    deadline = time.monotonic() + 10
    while ask(server.port, "GET", "/readyz").status != 200:
        assert time.monotonic() < deadline, "/readyz stayed 503 after streams left"
        gevent.sleep(0.1)
    assert ask(server.port, "GET", "/readyz").json()["full"] is False
    again, _ = open_stream(server.port)
    slowest = max(a.seconds for a in answers)
    print(
        f"\nat {STREAMS} streams (+{HEADROOM} headroom): 50 concurrent publishes, slowest "
        f"{slowest * 1000:.1f} ms; /healthz {health.seconds * 1000:.1f} ms; /metrics "
        f"{metrics.seconds * 1000:.1f} ms; stream N+1 429 in {refused.seconds * 1000:.1f} ms; "
        f"WebSocket N+1 closed 1013 in {ws_seconds * 1000:.1f} ms"
    )
    for stream in [*streams[10:], again]:
        stream.close()


# -- slow clients --------------------------------------------------------------------------------

BODY_TIMEOUT_S = 3.0  # REALTIME_BODY_TIMEOUT_S for the test (shipped: 20)
KEEPALIVE_S = 5.0  # gunicorn.conf.py's keepalive: the bound on a request head and on idling
MARGIN_S = 2.5  # how late past its bound a slow connection may be closed, on a loaded machine
# How much earlier than its bound a slow connection may seem to be closed: the server starts its
# clock at accept, the test when its connect returns, later on a loaded machine.
EARLY_S = 0.5


class Trickler:
    """A connection that sends ``head`` at once, then ``trickle`` one byte every ``every`` s,
    and notes when (and with what) the server answered or hung up."""

    def __init__(self, port: int, head: bytes, trickle: bytes, every: float = 1.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.started = time.monotonic()
        self.sock.sendall(head)
        self.trickle = trickle
        self.every = every
        self.answer = b""
        self.ended_after: float | None = None
        self._greenlets = [gevent.spawn(self._send), gevent.spawn(self._read)]

    def _send(self) -> None:
        for byte in self.trickle:
            gevent.sleep(self.every)
            try:
                self.sock.send(bytes([byte]))
            except OSError:
                return

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.answer += chunk
        except OSError:
            pass
        self.ended_after = time.monotonic() - self.started

    def close(self) -> None:
        gevent.killall(self._greenlets)
        self.sock.close()


def trickled_head(port: int) -> bytes:
    """A request whose head will never be complete (sent a byte a second)."""
    return f"POST /publish HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()


def trickled_body(port: int, length: int = 500) -> bytes:
    head = [
        "POST /publish HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Authorization: Bearer {TOKEN}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + b'{"topic": "slow", "data": "'


def idle_after_one_request(port: int) -> socket.socket:
    """A keep-alive connection that made one request and then says nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    data = b""
    while b'"ok"}' not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed before its one answer"
        data += chunk
    return sock


def silent_websocket(port: int) -> socket.socket:
    """A WebSocket upgraded without a token that never sends its ``auth`` message."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target="/ws")))
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 101")
    return sock


def closed_after(sock: socket.socket, started: float) -> float:
    """Read until the server hangs up; seconds since ``started``."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.close()
    return time.monotonic() - started


def test_slow_clients_are_bounded_while_publishes_and_new_streams_are_served(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(
        redis_url,
        workers=1,
        env={"REALTIME_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S), "REALTIME_WS_AUTH_TIMEOUT_S": "3"},
    )
    port = server.port
    # 300 slowloris connections: 150 trickling their headers, 150 their bodies, a byte a second;
    # beside them 100 idle keep-alive connections and 100 WebSockets that never authenticate.
    heads = [Trickler(port, trickled_head(port), b"X-Slow: " + b"a" * 60) for _ in range(150)]
    bodies = [Trickler(port, trickled_body(port), b"b" * 60) for _ in range(150)]
    started = time.monotonic()
    idle = [gevent.spawn(idle_after_one_request, port) for _ in range(100)]
    silent = [gevent.spawn(silent_websocket, port) for _ in range(100)]
    gevent.joinall([*idle, *silent], raise_error=True)
    idle_closed = [gevent.spawn(closed_after, g.value, started) for g in idle]
    silent_closed = [gevent.spawn(closed_after, g.value, started) for g in silent]

    gevent.sleep(1.0)  # every slow client is in place and holding its connection
    stream, stream_s = open_stream(port, "slow-check")
    publishes = [publish(port, f"during {i}") for i in range(20)]
    assert all(a.status == 201 for a in publishes)
    streams = [open_stream(port, "slow-check") for _ in range(5)]
    check = ask(
        port,
        "POST",
        "/publish",
        headers={**AUTH, "Content-Type": "application/json"},
        body=json.dumps({"topic": "slow-check", "data": "seen"}).encode(),
    )
    for each, _ in [(stream, 0.0), *streams]:
        assert message_ids(each, 1, timeout=WITHIN_S) == [check.json()["id"]]

    # Then each kind of slow connection is closed by its bound.
    gevent.joinall([*idle_closed, *silent_closed], timeout=KEEPALIVE_S + MARGIN_S + 5)
    deadline = time.monotonic() + KEEPALIVE_S + MARGIN_S + 5
    while any(t.ended_after is None for t in heads + bodies) and time.monotonic() < deadline:
        gevent.sleep(0.1)
    assert all(t.ended_after is not None for t in heads + bodies), "a slow client outlived"
    head_times = [t.ended_after or 0.0 for t in heads]
    body_times = [t.ended_after or 0.0 for t in bodies]
    assert min(head_times) >= KEEPALIVE_S - EARLY_S, head_times  # none before its bound
    assert min(body_times) >= BODY_TIMEOUT_S - EARLY_S, body_times
    assert max(head_times) < KEEPALIVE_S + MARGIN_S, head_times
    assert max(body_times) < BODY_TIMEOUT_S + MARGIN_S, body_times
    assert all(t.answer == b"" for t in heads)  # a head never completed gets no answer
    for trickler in bodies:
        status, _, rest = trickler.answer.partition(b"\r\n")
        assert status == b"HTTP/1.1 408 REQUEST TIMEOUT", trickler.answer[:200]
        assert b"\r\nConnection: close\r\n" in trickler.answer
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"
    assert all(g.successful() for g in idle_closed + silent_closed), "an idle client outlived"
    idle_times = [g.value for g in idle_closed]
    silent_times = [g.value for g in silent_closed]
    assert max(idle_times) < KEEPALIVE_S + MARGIN_S, idle_times
    assert max(silent_times) < 3 + MARGIN_S, silent_times
    assert ask(port, "GET", "/readyz").json()["streams"] == 6  # the silent WebSockets left

    slowest = max(a.seconds for a in publishes)
    print(
        f"\nbeside 300 slowloris, 100 idle and 100 silent WebSockets: a new stream in "
        f"{stream_s * 1000:.1f} ms, 20 publishes (slowest {slowest * 1000:.1f} ms); closed "
        f"after: heads {min(head_times):.2f}-{max(head_times):.2f} s (keepalive {KEEPALIVE_S:g}), "
        f"bodies {min(body_times):.2f}-{max(body_times):.2f} s with 408 (body timeout "
        f"{BODY_TIMEOUT_S:g}), idle {min(idle_times):.2f}-{max(idle_times):.2f} s, "
        f"WebSockets {min(silent_times):.2f}-{max(silent_times):.2f} s"
    )
    for trickler in heads + bodies:
        trickler.close()
    for each in [stream, *(s for s, _ in streams)]:
        each.close()


# -- start-up ------------------------------------------------------------------------------------


def start_refused(tmp_path: Any, env: dict[str, str], *args: str) -> str:
    """gunicorn with the shipped config must refuse to start; what it said."""
    port = free_port()
    full_env = gunicorn_env(None, port, 1, tmp_path / "var", env)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    done = subprocess.run(
        [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), *args, "app:app"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, "gunicorn started with a configuration it should refuse"
    return done.stderr.decode()


def test_a_worker_connections_override_that_leaves_no_headroom_stops_the_start(
    tmp_path: Any,
) -> None:
    said = start_refused(
        tmp_path, {"REALTIME_MAX_CONNECTIONS": "500"}, "--worker-connections", "500"
    )
    assert "worker_connections (500)" in said
    assert "REALTIME_MAX_CONNECTIONS (500)" in said
    assert "REALTIME_CONNECTION_HEADROOM" in said


def test_the_retired_worker_connections_variable_stops_the_start(tmp_path: Any) -> None:
    said = start_refused(tmp_path, {"REALTIME_WORKER_CONNECTIONS": "10000"})
    assert "REALTIME_WORKER_CONNECTIONS is no longer read" in said
