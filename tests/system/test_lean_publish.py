"""realtime's gunicorn worker answers plain publishes itself, exactly as gunicorn and Flask would.

Two servers on one Redis: the shipped configuration (``realtime.worker.RealtimeWorker``, the
lean path) and the same with gunicorn's stock ``-k gevent`` (every request through Flask). Every
publish of a table, good and refused, gets the same answer from both, byte for byte but for the
ids and the date; mixing lean and other requests on one connection, pipelining, a trickled body
and the access log all behave as gunicorn's own.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, SECRET, Gunicorn, make_token
from raw_http import Answer, exchange
from sse_client import SocketStream

from realtime.core.auth import mint_token

pytestmark = pytest.mark.integration

STOCK_ARGV = ("-c", str(ROOT / "gunicorn.conf.py"), "-k", "gevent", "app:app")
ENV = {
    "REALTIME_PUBLISH_RATE": "1",
    "REALTIME_PUBLISH_BURST": "4",
    "REALTIME_MAX_PAYLOAD": "64",
    "REALTIME_MAX_BATCH": "3",
    "REALTIME_BODY_TIMEOUT_S": "1",
}
ID = re.compile(rb'"[0-9a-z]{1,32}-[0-9]+"')


@pytest.fixture
def servers(gunicorn_factory: Callable[..., Gunicorn], redis_url: str) -> tuple[Gunicorn, Gunicorn]:
    # At debug level gunicorn's default pre_request hook logs "POST /publish" for each request
    # it handles: the lean path, which answers without it, shows by that line's absence.
    env = {**ENV, "GUNICORN_CMD_ARGS": "--log-level debug"}
    lean = gunicorn_factory(redis_url, workers=1, env=env)
    stock = gunicorn_factory(redis_url, workers=1, env=env, argv=STOCK_ARGV)
    return lean, stock


def handled_by_gunicorn(server: Gunicorn) -> int:
    """Publishes that went through gunicorn's request handling (its pre_request debug line)."""
    return server.log().count("POST /publish\n")


def publish_bytes(
    port: int, body: bytes, *, token: str | None, ctype: str = "application/json", extra: str = ""
) -> bytes:
    auth = f"Authorization: {token}\r\n" if token is not None else ""
    return (
        f"POST /publish HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n{auth}"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def shape(answer: Answer) -> tuple[int, list[tuple[str, str]], bytes]:
    """What must be equal on both paths: status, headers in order (not the date, nor a length
    that follows the ids), body (not the ids)."""
    assert int(answer.headers["content-length"]) == len(answer.body)
    headers = [(k, v) for k, v in answer.headers.items() if k not in ("date", "content-length")]
    return answer.status, headers, ID.sub(b'"ID"', answer.body)


def cases(server: str) -> list[tuple[str, bytes, str | None, str]]:
    """(name, body, Authorization, extra headers): each server publishes as its own ``sub`` so
    their rate buckets and idempotency keys stay apart."""
    token = f"Bearer {make_token(subject=f'lean-{server}')}"
    narrow = f"Bearer {make_token(subject=f'narrow-{server}', publish=('only:*',))}"
    old = time.time() - 100
    expired = mint_token(secret=SECRET, subject=server, publish=["*"], ttl_s=10, now=old)
    expired = f"Bearer {expired}"
    one = json.dumps({"topic": "lean", "data": "x"}).encode()
    return [
        ("single", one, token, ""),
        ("batch", json.dumps({"events": [{"topic": "lean", "data": "y"}] * 2}).encode(), token, ""),
        ("idempotent", one, token, "Idempotency-Key: k-1\r\n"),
        # The bucket of 4 is spent by now. It refills at one a second from "single" on, so this
        # comes right after the spending, not after a dozen more exchanges.
        ("rate limited", one, token, ""),
        ("replayed", one, token, "Idempotency-Key: k-1\r\n"),
        ("key reused", b'{"topic": "lean", "data": "other"}', token, "Idempotency-Key: k-1\r\n"),
        ("bad key", one, token, "Idempotency-Key: \x7f\r\n"),
        ("no bearer", one, "Basic eDp5", ""),
        ("bad token", one, "Bearer not-a-token", ""),
        ("expired", one, expired, ""),
        ("forbidden topic", one, narrow, ""),
        ("bad json", b"{", token, ""),
        ("bad topic", b'{"topic": "a b", "data": "x"}', token, ""),
        ("too much data", json.dumps({"topic": "lean", "data": "z" * 65}).encode(), token, ""),
        (
            "batch too large",
            json.dumps({"events": [{"topic": "t", "data": "d"}] * 4}).encode(),
            token,
            "",
        ),
        ("reserved type", b'{"topic": "lean", "data": "x", "type": "reset"}', token, ""),
        (
            "closing",
            one,
            f"Bearer {make_token(subject=f'close-{server}')}",
            "Connection: close\r\n",
        ),
    ]


def test_every_publish_is_answered_alike_by_the_lean_path_and_by_flask(
    servers: tuple[Gunicorn, Gunicorn],
) -> None:
    lean, stock = servers
    lean_cases, stock_cases = cases("lean"), cases("stock")
    for (name, body, auth, extra), (_, stock_body, stock_auth, stock_extra) in zip(
        lean_cases, stock_cases, strict=True
    ):
        mine = exchange(lean.port, publish_bytes(lean.port, body, token=auth, extra=extra))
        theirs = exchange(
            stock.port, publish_bytes(stock.port, stock_body, token=stock_auth, extra=stock_extra)
        )
        assert shape(mine) == shape(theirs), name
        assert mine.closed_after == theirs.closed_after, name
        if name == "rate limited":  # alike, and what the case is named for
            assert mine.status == 429, mine.body
    # The lean server answered every one itself; the stock one through gunicorn and Flask.
    assert handled_by_gunicorn(lean) == 0
    # All but "bad key", whose control character gunicorn's parser refuses before any hook, on
    # both servers alike (the lean path hands such a head to gunicorn).
    assert handled_by_gunicorn(stock) == len(stock_cases) - 1
    assert "Traceback" not in lean.log()


def test_the_lean_path_stores_exactly_what_it_answers(
    servers: tuple[Gunicorn, Gunicorn], redis_url: str
) -> None:
    import redis

    lean, _ = servers
    token = f"Bearer {make_token(subject='stored')}"
    ids = []
    for n in range(3):
        body = json.dumps({"topic": "stored", "data": f"event {n}", "type": "note"}).encode()
        ids.append(exchange(lean.port, publish_bytes(lean.port, body, token=token)).json()["id"])
    with redis.Redis.from_url(redis_url) as client:
        entries = client.xrange("{rt}:t:stored")
    assert [f"{ids[0].split('-')[0]}-{e[0].decode().split('-')[0]}" for e in entries] == ids
    assert [e[1][b"d"] for e in entries] == [b"event 0", b"event 1", b"event 2"]
    assert {e[1][b"y"] for e in entries} == {b"note"}


def answers(sock: socket.socket, count: int, timeout: float = 10) -> list[tuple[int, bytes]]:
    """``count`` answers read off one connection (by their Content-Length)."""
    sock.settimeout(timeout)
    data = b""
    found: list[tuple[int, bytes]] = []
    while len(found) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(found)} answers"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk
            rest += chunk
        found.append((int(head.split(b" ", 2)[1]), rest[:length]))
        data = rest[length:]
    return found


def test_one_connection_mixes_lean_and_other_requests_in_order_even_pipelined(
    servers: tuple[Gunicorn, Gunicorn],
) -> None:
    lean, _ = servers
    token = f"Bearer {make_token(subject='mixed')}"
    one = publish_bytes(lean.port, b'{"topic": "mixed", "data": "x"}', token=token)
    health = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{lean.port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", lean.port)) as sock:
        sock.sendall(one + one)  # two publishes in one write
        first = answers(sock, 2)
        sock.sendall(health)  # the connection goes to gunicorn with what was read
        second = answers(sock, 1)
        sock.sendall(one + health + one)
        third = answers(sock, 3)
    assert [s for s, _ in first] == [201, 201]
    assert second[0][0] == 200
    assert [s for s, _ in third] == [201, 200, 201]
    assert handled_by_gunicorn(lean) == 2  # once handed over, the connection stays gunicorn's
    seqs = [int(json.loads(b)["id"].split("-")[1]) for s, b in first + third if s == 201]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 4


def test_a_body_that_does_not_arrive_in_time_is_408_and_closed_on_both_paths(
    servers: tuple[Gunicorn, Gunicorn],
) -> None:
    token = f"Bearer {make_token(subject='slow')}"
    found = []
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            whole = publish_bytes(server.port, b'{"topic": "slow", "data": "x"}', token=token)
            sock.sendall(whole[:-5])  # the head and most of the body; the rest never comes
            started = time.monotonic()
            [(status, body)] = answers(sock, 1, timeout=10)
            waited = time.monotonic() - started
            sock.settimeout(5)
            closed = sock.recv(1) == b""
        found.append((status, json.loads(body)["error"], closed))
        assert waited >= 0.9  # REALTIME_BODY_TIMEOUT_S is 1
    assert found[0] == found[1] == (408, "request_timeout", True)


def test_the_access_log_has_a_lean_publishes_line_as_gunicorn_writes_it(
    servers: tuple[Gunicorn, Gunicorn],
) -> None:
    lines = []
    for server in servers:
        token = f"Bearer {make_token(subject='logged')}"
        extra = "User-Agent: lean-test/1\r\nReferer: http://page.example/a?access_token=secret\r\n"
        body = b'{"topic": "logged", "data": "x"}'
        assert exchange(server.port, publish_bytes(server.port, body, token=token, extra=extra))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = [x for x in server.log().splitlines() if "lean-test/1" in x]
            if found:
                break
            time.sleep(0.05)
        lines.append(found[-1])
    masked = [re.sub(r"\[[^]]+\]", "[time]", line) for line in lines]
    assert masked[0] == masked[1]
    assert '"POST /publish HTTP/1.1" 201' in masked[0]
    assert "secret" not in masked[0]


HOOKED_APP = """
from flask import Flask
from realtime import Realtime

app = Flask(__name__)
Realtime(app)


@app.after_request
def seen(response):
    response.headers["X-Seen-By-Host"] = "yes"
    return response
"""


def test_a_host_apps_own_hook_still_runs_for_every_publish(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "hooked_app.py").write_text(HOOKED_APP)
    server = gunicorn_factory(
        redis_url,
        workers=1,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}"},
        argv=("-c", str(ROOT / "gunicorn.conf.py"), "hooked_app:app"),
    )
    token = f"Bearer {make_token(subject='hooked')}"
    for _ in range(3):
        answer = exchange(
            server.port,
            publish_bytes(server.port, b'{"topic": "h", "data": "x"}', token=token),
        )
        assert answer.status == 201
        assert answer.headers["x-seen-by-host"] == "yes"


# -- streams ------------------------------------------------------------------------------------

HEAD_ID = re.compile(rb"id: [0-9a-z]{1,32}-[0-9]+")


def stream_bytes(port: int, query: str, extra: str = "") -> bytes:
    return (
        f"GET /events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Accept: text/event-stream\r\n{extra}\r\n"
    ).encode()


def stream_answer(port: int, raw: bytes, wait_s: float = 0.3) -> tuple[int, list[str], bytes]:
    """The status, the header lines (not the date) and what came of the body within
    ``wait_s`` (ids normalised): a stream's start, or a refusal."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    kept = [line for line in lines if not line.lower().startswith(("date:", "content-length:"))]
    body = ID.sub(b'"ID"', HEAD_ID.sub(b"id: ID", body))
    return int(status_line.split()[1]), kept, re.sub(rb"\r\n[0-9a-f]+\r\n", b"|", body)


def test_every_stream_request_is_answered_alike_by_the_lean_path_and_by_flask(
    servers: tuple[Gunicorn, Gunicorn],
) -> None:
    lean, stock = servers
    token = make_token(subject="streams")
    narrow = make_token(subject="narrow", subscribe=("only:*",))
    bearer = f"Authorization: Bearer {token}\r\n"
    cases = [
        ("fresh", "topic=s", bearer),
        ("two topics, envelope", "topic=s&topic=t&envelope=1", bearer),
        ("query token", f"topic=s&access_token={token}", ""),
        ("unknown last id", "topic=s", bearer + "Last-Event-ID: nope-1\r\n"),
        ("last id by query", "topic=s&lastEventId=zz-3", bearer),
        ("no topic", "x=1", bearer),
        ("bad topic", "topic=a%20b", bearer),
        ("too long last id", "topic=s", bearer + f"Last-Event-ID: {'x' * 300}\r\n"),
        ("no token", "topic=s", ""),
        ("bad token", "topic=s&access_token=nope", ""),
        ("bad scheme", "topic=s", "Authorization: Basic eDp5\r\n"),
        ("forbidden topic", "topic=s", f"Authorization: Bearer {narrow}\r\n"),
        (
            "forbidden before bad last id",
            "topic=s",
            f"Authorization: Bearer {narrow}\r\nLast-Event-ID: {'x' * 300}\r\n",
        ),
    ]
    for name, query, extra in cases:
        mine = stream_answer(lean.port, stream_bytes(lean.port, query, extra))
        theirs = stream_answer(stock.port, stream_bytes(stock.port, query, extra))
        assert mine == theirs, name
    assert lean.log().count("GET /events\n") == 0  # none went through gunicorn's handling
    assert stock.log().count("GET /events\n") == len(cases)


def test_a_stream_resumed_on_the_lean_path_gets_exactly_what_it_missed(
    servers: tuple[Gunicorn, Gunicorn],
) -> None:
    lean, _ = servers
    token = f"Bearer {make_token(subject='resumer')}"
    follower = SocketStream(lean.port, "/events?topic=resume", {"Authorization": token})
    try:
        follower.read_events(time.monotonic() + 5)  # the worker's reader runs from here on
        bodies = [json.dumps({"topic": "resume", "data": f"n{n}"}).encode() for n in range(4)]
        ids = [
            exchange(lean.port, publish_bytes(lean.port, body, token=token)).json()["id"]
            for body in bodies
        ]
        got: list[str] = []
        deadline = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < deadline:
            got += [e.last_event_id for e in follower.read_events(deadline)]
        assert got == ids
    finally:
        follower.close()
    stream = SocketStream(
        lean.port, "/events?topic=resume", {"Authorization": token, "Last-Event-ID": ids[1]}
    )
    try:
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            got += [e.last_event_id for e in stream.read_events(deadline)]
        assert got == ids[2:]
    finally:
        stream.close()
    assert lean.log().count("GET /events\n") == 0
