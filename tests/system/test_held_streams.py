"""Idle streams the worker holds without greenlets (realtime/fanout/idle.py), on gunicorn.

A held stream must be indistinguishable from one on its greenlet: every event once and in
order (written by the reader, or through a greenlet it borrows when its socket is full), its
heartbeats on time, its end (max age, shutdown) with its closing frame and the end of the
chunked body, and its place counted by gunicorn until it is over.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Gunicorn, make_token
from raw_http import request
from sse_client import SocketStream

pytestmark = pytest.mark.integration

TOKEN = make_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def metric(server: Gunicorn, name: str) -> float:
    text = request(server.port, "GET", "/metrics").body.decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def publish(server: Gunicorn, topic: str, data: str) -> str:
    body = json.dumps({"topic": topic, "data": data}).encode()
    headers = {**AUTH, "Content-Type": "application/json"}
    answer = request(server.port, "POST", "/publish", headers, body)
    assert answer.status == 201, answer.body
    return str(answer.json()["id"])


@pytest.fixture(autouse=True)
def opened() -> Iterator[list[SocketStream]]:
    """Every client stream a test opens, closed when it ends."""
    streams: list[SocketStream] = []
    yield streams
    for stream in streams:
        stream.close()


def open_streams(
    opened: list[SocketStream], server: Gunicorn, topic: str, count: int, **options: Any
) -> list[SocketStream]:
    streams = [
        SocketStream(server.port, f"/events?topic={topic}", AUTH, **options) for _ in range(count)
    ]
    opened += streams
    for stream in streams:
        stream.read_events(time.monotonic() + 5)  # the head and the preamble
        assert stream.status == 200
    return streams


def test_held_streams_get_every_event_their_heartbeats_and_their_end(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, opened: list[SocketStream]
) -> None:
    server = gunicorn_factory(
        redis_url,
        workers=1,
        env={"REALTIME_HEARTBEAT_S": "0.5", "REALTIME_MAX_CONNECTION_AGE_S": "8"},
    )
    streams = open_streams(opened, server, "held", 20)
    wait_for(lambda: metric(server, "realtime_streams_held") == 20, 5, "20 held streams")
    assert metric(server, 'realtime_connections_open{transport="sse"}') == 20
    ids = [publish(server, "held", f"event {n}") for n in range(30)]
    for stream in streams:
        got: list[str] = []
        deadline = time.monotonic() + 10
        while len(got) < 30 and time.monotonic() < deadline:
            got += [e.last_event_id for e in stream.read_events(deadline)]
        assert got == ids
    # Heartbeats while idle (comments: the raw body shows them), from the worker's timer.
    # Two each, waited for (they are 0.5 s apart) well inside the max age.
    before = [stream.raw.count(b": heartbeat\n") for stream in streams]
    deadline = time.monotonic() + 3
    for stream, seen in zip(streams, before, strict=True):
        while stream.raw.count(b": heartbeat\n") - seen < 2 and time.monotonic() < deadline:
            stream.read_events(deadline)
        assert stream.raw.count(b": heartbeat\n") - seen >= 2
    # The max age ends each one: its closing frame, then the end of the chunked body.
    for stream in streams:
        stream.until_closed(10)
        assert stream.closed
        assert stream.raw.endswith(b": max_age\n\n")
    wait_for(lambda: metric(server, "realtime_streams_held") == 0, 5, "no held stream left")
    assert metric(server, 'realtime_connections_open{transport="sse"}') == 0


def test_a_held_stream_whose_socket_fills_loses_nothing_and_is_held_again(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, opened: list[SocketStream]
) -> None:
    """A client that does not read for a while: the reader's sends are refused, the events
    queue, a greenlet is borrowed to write them once the client reads again, and the stream is
    held again afterwards."""
    server = gunicorn_factory(redis_url, workers=1)
    [slow] = open_streams(opened, server, "full", 1, rcvbuf=4096)
    wait_for(lambda: metric(server, "realtime_streams_held") == 1, 5, "the stream held")
    data = "x" * 2000
    ids = [publish(server, "full", data) for _ in range(200)]  # 400 KB: far over the window
    got: list[str] = []
    deadline = time.monotonic() + 20
    while len(got) < len(ids) and time.monotonic() < deadline:
        got += [e.last_event_id for e in slow.read_events(deadline)]
    assert got == ids
    # Some of them went through the queue (and the greenlet it borrowed), not the reader's send.
    delivered = metric(server, 'realtime_events_delivered_total{transport="sse"}')
    assert delivered - metric(server, "realtime_events_written_direct_total") > 0
    wait_for(lambda: metric(server, "realtime_streams_held") == 1, 5, "the stream held again")
    later = publish(server, "full", "after")
    assert [e.last_event_id for e in slow.read_events(time.monotonic() + 5)] == [later]


def test_sigterm_gives_every_held_stream_its_goodbye_and_gunicorn_waits_for_them(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, opened: list[SocketStream]
) -> None:
    server = gunicorn_factory(redis_url, workers=1)
    streams = open_streams(opened, server, "bye", 10)
    wait_for(lambda: metric(server, "realtime_streams_held") == 10, 5, "10 held streams")
    server.process.send_signal(signal.SIGTERM)
    for stream in streams:
        events = stream.until_closed(10)
        assert stream.closed, "the body never ended"
        assert [e.type for e in events] == ["shutdown"]
    server.process.wait(15)
    assert server.process.returncode == 0
    assert "Traceback" not in server.log()


def test_a_client_gone_while_held_is_forgotten_at_its_next_heartbeat(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, opened: list[SocketStream]
) -> None:
    server = gunicorn_factory(redis_url, workers=1, env={"REALTIME_HEARTBEAT_S": "0.3"})
    [stream] = open_streams(opened, server, "gone", 1)
    wait_for(lambda: metric(server, "realtime_streams_held") == 1, 5, "the stream held")
    stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    stream.close()  # a reset, as a vanished client's next write meets
    wait_for(lambda: metric(server, "realtime_streams_held") == 0, 5, "the stream forgotten")
    wait_for(
        lambda: metric(server, 'realtime_connections_open{transport="sse"}') == 0,
        5,
        "its subscription released",
    )


def test_streams_opened_long_after_the_worker_started_are_held_too(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, opened: list[SocketStream]
) -> None:
    """Regression: the worker's pool of handlers was found by a scan that cannot see objects
    the garbage-collector policy froze (every second), so a worker whose first stream came
    after that held none."""
    server = gunicorn_factory(redis_url, workers=1)
    time.sleep(2.5)  # the policy froze the worker's pool meanwhile
    open_streams(opened, server, "late", 3)
    wait_for(lambda: metric(server, "realtime_streams_held") == 3, 5, "3 held streams")
