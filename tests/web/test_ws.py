"""GET /ws against real gunicorn (gevent worker) with a real client library (simple-websocket)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import gevent
import pytest
import simple_websocket
from conftest import Gunicorn, make_token
from ws_client import Client, handshake_status
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

pytestmark = pytest.mark.integration

TOKEN = make_token(subject="alice")


def post(url: str, topic: str, data: str) -> str:
    body = json.dumps({"topic": topic, "data": data}).encode()
    request = urllib.request.Request(
        url + "/publish",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["id"])


def readyz(url: str) -> Any:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


@pytest.fixture
def server(gunicorn_factory: Callable[..., Gunicorn], redis_url: str) -> Gunicorn:
    return gunicorn_factory(
        redis_url,
        workers=2,
        env={"REALTIME_WS_AUTH_TIMEOUT_S": "0.5", "REALTIME_MAX_BODY": "70000"},
    )


def test_subscribe_publish_ack_receive_unsubscribe(server: Gunicorn) -> None:
    client = Client(server, f"?access_token={TOKEN}")
    welcome = client.recv()
    assert welcome["type"] == "welcome"
    assert welcome["authenticated"] is True
    client.send(type="subscribe", topics=["news", "chat"], req=1)
    ack, _ = client.until("ack")
    assert ack["req"] == 1
    assert ack["topics"] == ["news", "chat"]
    assert "last_id" in ack
    client.send(type="publish", topic="news", data={"headline": "hi"}, event="story", req="p1")
    frames = [client.recv(), client.recv()]
    event = next(f for f in frames if f["type"] == "event")
    published = next(f for f in frames if f["type"] == "ack")
    assert published["req"] == "p1"
    assert event["id"] == published["id"]
    assert (event["topic"], event["event"], event["data"]) == ("news", "story", '{"headline":"hi"}')
    # An event published over HTTP on another worker arrives too.
    sent = post(server.url, "chat", "from http")
    [event] = client.events(1)
    assert (event["id"], event["data"]) == (sent, "from http")
    client.send(type="unsubscribe", topics=["chat"], req=2)
    ack, _ = client.until("ack")
    assert ack == {"type": "ack", "req": 2, "topics": ["chat"]}
    post(server.url, "chat", "not for us")
    news = post(server.url, "news", "still for us")
    [event] = client.events(1)
    assert event["id"] == news  # the chat event in between was not delivered
    client.close()


def test_resume_after_a_drop_loses_and_repeats_nothing(server: Gunicorn) -> None:
    client = Client(server, f"?access_token={TOKEN}")
    client.recv()
    client.send(type="subscribe", topics=["feed"], req=1)
    client.until("ack")
    first = [post(server.url, "feed", str(n)) for n in range(5)]
    got = client.events(5)
    assert [e["id"] for e in got] == first
    client.ws.sock.shutdown(socket.SHUT_RDWR)  # an abrupt drop, no close handshake
    client.ws.thread.join(5)  # its reader sees the end and closes the socket
    missed = [post(server.url, "feed", f"missed {n}") for n in range(7)]
    again = Client(server, f"?access_token={TOKEN}")
    again.recv()
    again.send(type="subscribe", topics=["feed"], last_id=got[-1]["id"], req=1)
    ack, replayed = again.until("ack")
    assert [e["id"] for e in replayed] == missed
    assert ack["last_id"] == missed[-1]
    live = post(server.url, "feed", "live")
    assert [e["id"] for e in again.events(1)] == [live]
    again.close()


def test_resume_from_a_trimmed_or_foreign_id_gets_reset_first(server: Gunicorn) -> None:
    post(server.url, "x", "one")
    client = Client(server, f"?access_token={TOKEN}")
    client.recv()
    client.send(type="subscribe", topics=["x"], last_id="zzzz-1", req=7)
    reset, _ = client.until("reset")
    assert reset["reason"] == "epoch"
    assert reset["topics"] == ["x"]
    assert reset["req"] == 7
    ack, _ = client.until("ack")
    assert ack["last_id"] == reset["last_id"]
    client.close()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('{"type": "dance", "req": 5}', "unknown_type"),
        ('{"type": "subscribe", "topics": ["bad topic"], "req": 6}', "invalid_topic"),
        (
            '{"type": "publish", "topic": "a", "data": "x", "event": "reset", "req": 7}',
            "reserved_type",
        ),
    ],
    ids=["bad json", "not an object", "unknown type", "bad topic", "reserved type"],
)
def test_bad_messages_get_an_error_and_the_socket_stays_open(
    server: Gunicorn, raw: str, code: str
) -> None:
    client = Client(server, f"?access_token={TOKEN}")
    client.recv()
    client.ws.send(raw)
    error = client.recv()
    assert error["type"] == "error"
    assert error["error"] == code
    assert error["message"]
    client.send(type="ping", req="still-there")
    assert client.recv() == {"type": "ack", "req": "still-there"}
    client.close()


def test_forbidden_topic_is_an_error_not_a_close(server: Gunicorn) -> None:
    limited = make_token(subscribe=("mine:*",), publish=())
    client = Client(server, f"?access_token={limited}")
    client.recv()
    client.send(type="subscribe", topics=["other"], req=1)
    error = client.recv()
    assert (error["error"], error["req"]) == ("forbidden_topic", 1)
    client.send(type="publish", topic="mine:1", data="x", req=2)
    assert client.recv()["error"] == "forbidden_topic"
    client.close()


def test_oversize_frame_is_closed_with_1009(server: Gunicorn) -> None:
    client = Client(server, f"?access_token={TOKEN}")
    client.recv()
    client.send(type="publish", topic="a", data="x" * 80_000)
    assert client.closed_with() == 1009


def test_wrong_origin_is_refused_before_the_handshake(server: Gunicorn) -> None:
    path = f"/ws?access_token={TOKEN}"
    status, body = handshake_status(server.port, path, [("Origin", "https://evil.example")])
    assert status == 403
    assert b"origin_not_allowed" in body
    status, _ = handshake_status(server.port, path, [("Origin", f"http://127.0.0.1:{server.port}")])
    assert status == 101
    # simple-websocket sends "Host: 127.0.0.1" (no port), so that is this server's origin here.
    same = Client(server, f"?access_token={TOKEN}", headers={"Origin": "http://127.0.0.1"})
    assert same.recv()["type"] == "welcome"
    same.close()


def test_no_token_is_closed_1008_after_the_auth_timeout(server: Gunicorn) -> None:
    client = Client(server)
    assert client.recv()["authenticated"] is False
    assert client.closed_with() == 1008


def test_auth_message_authenticates_a_token_less_connection(server: Gunicorn) -> None:
    client = Client(server)
    client.recv()
    client.send(type="auth", token=TOKEN, req="a")
    assert client.recv() == {"type": "ack", "req": "a", "sub": "alice"}
    gevent.sleep(1.0)  # past the auth timeout: still open
    client.send(type="ping", req=1)
    assert client.recv()["type"] == "ack"
    client.close()


@pytest.mark.parametrize("how", ["query", "auth message"])
def test_invalid_token_is_closed_1008(server: Gunicorn, how: str) -> None:
    if how == "query":
        client = Client(server, "?access_token=nope")
    else:
        client = Client(server)
        client.recv()
        client.send(type="auth", token="nope", req=1)
    error = client.recv()
    assert error["type"] == "error"
    assert error["error"] == "invalid_token"
    assert client.closed_with() == 1008


def test_sustained_flooding_is_rate_limited_then_closed_1008(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server = gunicorn_factory(
        redis_url, workers=1, env={"REALTIME_WS_RATE": "5", "REALTIME_WS_BURST": "5"}
    )
    client = Client(server, f"?access_token={TOKEN}")
    client.recv()
    for n in range(30):
        try:
            client.send(type="ping", req=n)
        except simple_websocket.ConnectionClosed:
            break
    kinds: list[str] = []

    def read_until_closed() -> None:
        while True:
            frame = client.recv(timeout=2)
            kinds.append(frame.get("error") or frame["type"])

    with pytest.raises(simple_websocket.ConnectionClosed) as closed:
        read_until_closed()
    assert closed.value.reason == 1008
    assert kinds[:5] == ["ack"] * 5
    assert "rate_limited" in kinds


def raw_websocket(port: int, path: str) -> tuple[socket.socket, WSConnection]:
    """A client that completes the handshake and can then stop reading (a dead peer)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target=path)))
    while True:
        ws.receive_data(sock.recv(4096))
        if any(isinstance(e, AcceptConnection) for e in ws.events()):
            return sock, ws


def test_a_dead_peer_is_closed_and_released_within_ping_plus_timeout(
    gunicorn_factory: Any, redis_url: str
) -> None:
    ping_s = 0.5
    server = gunicorn_factory(redis_url, workers=1, env={"REALTIME_WS_PING_S": str(ping_s)})
    sock, ws = raw_websocket(server.port, f"/ws?access_token={TOKEN}")
    sock.sendall(ws.send(TextMessage(json.dumps({"type": "subscribe", "topics": ["a"]}))))
    deadline = time.monotonic() + 5
    while readyz(server.url)["streams"] != 1 and time.monotonic() < deadline:
        gevent.sleep(0.02)
    assert readyz(server.url)["streams"] == 1
    paused_at = time.monotonic()  # from here the peer reads nothing and answers no ping
    while readyz(server.url)["streams"] != 0 and time.monotonic() - paused_at < 10:
        gevent.sleep(0.05)
    released_after = time.monotonic() - paused_at
    print(f"\ndead peer released {released_after:.2f} s after it went silent (ping {ping_s} s)")
    assert readyz(server.url)["streams"] == 0
    assert released_after <= 2 * ping_s + 0.5  # one interval to ping, one to wait for the pong
    sock.close()


def test_a_websocket_that_falls_behind_is_closed_1013_and_resumes(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server = gunicorn_factory(
        redis_url,
        workers=1,
        env={"REALTIME_MAX_QUEUE": "20", "REALTIME_OVERFLOW_GRACE_S": "0.5"},
    )
    sock, ws = raw_websocket(server.port, f"/ws?access_token={TOKEN}")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(ws.send(TextMessage(json.dumps({"type": "subscribe", "topics": ["flood"]}))))
    gevent.sleep(0.3)
    body = json.dumps({"events": [{"topic": "flood", "data": "x" * 8000}] * 50}).encode()
    for _ in range(20):
        request = urllib.request.Request(
            server.url + "/publish",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()
    deadline = time.monotonic() + 10
    while readyz(server.url)["streams"] != 0 and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert readyz(server.url)["streams"] == 0
    sock.close()
