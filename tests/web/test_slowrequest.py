"""Tests for :mod:`realtime.web.slowrequest`: a request body has one deadline, however it trickles.

The end-to-end proof (real gunicorn, real sockets trickling a byte a second, 408 and the
connection closed) is ``tests/system/test_full_worker.py``; these pin the mechanism and the view's
answer with an input stream that is slow by construction.
"""

from __future__ import annotations

import io
import time
from typing import Any

import gevent
import pytest
from conftest import make_token

from realtime.core.errors import RequestTimeout
from realtime.fanout.directwrite import SERVER_RESPONSE_KEY
from realtime.web.slowrequest import DeadlineInput, bound_requests, close_after_response, has_body

AUTH = {"Authorization": f"Bearer {make_token()}"}


class Trickle(io.RawIOBase):
    """A body that yields one byte every ``every`` seconds (gevent sleeps), like a slowloris."""

    def __init__(self, data: bytes, every: float) -> None:
        self._data = data
        self._every = every

    def read(self, size: int | None = -1) -> bytes:
        if not self._data:
            return b""
        gevent.sleep(self._every)
        byte, self._data = self._data[:1], self._data[1:]
        return byte

    def readline(self, size: int | None = -1) -> bytes:
        return self.read(1)


def unused_start_response(status: str, headers: list[tuple[str, str]]) -> None:
    """The ``start_response`` of a call whose app never answers (it only records its input)."""
    raise AssertionError("the app under test was not expected to start a response")


def read_all(stream: DeadlineInput) -> bytes:
    out = b""
    while chunk := stream.read(8192):
        out += chunk
    return out


def test_a_body_that_arrives_in_time_is_read_whole() -> None:
    assert read_all(DeadlineInput(Trickle(b"abc", 0.01), timeout_s=1.0)) == b"abc"


def test_many_small_reads_share_one_deadline_instead_of_a_timeout_each() -> None:
    stream = DeadlineInput(Trickle(b"x" * 100, 0.02), timeout_s=0.3)  # 2 s of trickle in all
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        read_all(stream)
    assert time.monotonic() - started < 1.0
    assert info.value.status == 408
    assert info.value.code == "request_timeout"
    assert info.value.close_connection
    assert "REALTIME_BODY_TIMEOUT_S" in info.value.message


def test_every_read_after_the_deadline_is_refused_at_once() -> None:
    stream = DeadlineInput(io.BytesIO(b"data"), timeout_s=0.1)
    gevent.sleep(0.15)
    for read in (stream.read, stream.readline, stream.readlines):
        with pytest.raises(RequestTimeout):
            read()


def test_a_timeout_of_the_caller_passes_through_as_its_own() -> None:
    stream = DeadlineInput(Trickle(b"x" * 100, 0.05), timeout_s=10.0)
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.2):
        read_all(stream)


def test_lines_and_iteration_go_through_the_deadline() -> None:
    stream = DeadlineInput(io.BytesIO(b"one\ntwo\n"), timeout_s=1.0)
    assert stream.readline() == b"one\n"
    assert list(stream) == [b"two\n"]
    assert DeadlineInput(io.BytesIO(b"a\nb\n"), timeout_s=1.0).readlines() == [b"a\n", b"b\n"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"CONTENT_LENGTH": ""}, False),
        ({"CONTENT_LENGTH": "0"}, False),
        ({"CONTENT_LENGTH": "12"}, True),
        ({"HTTP_TRANSFER_ENCODING": "chunked"}, True),
        ({"HTTP_TRANSFER_ENCODING": "gzip, Chunked"}, True),
    ],
)
def test_a_body_is_announced_by_its_length_or_chunked_framing(
    environ: dict[str, str], expected: bool
) -> None:
    assert has_body(environ) is expected


class ServerResponse:
    """Stands for gunicorn's response, which expose_server_response leaves in the environ."""

    def __init__(self) -> None:
        self.closed = False

    def force_close(self) -> None:
        self.closed = True


def test_close_after_response_tells_the_server_to_close_its_connection() -> None:
    server = ServerResponse()
    close_after_response({SERVER_RESPONSE_KEY: server})
    assert server.closed
    close_after_response({})  # another server: the connection is left to it


def test_only_a_request_with_a_body_gets_the_deadline() -> None:
    seen: list[object] = []
    app = bound_requests(lambda environ, start: seen.append(environ["wsgi.input"]), 1.0)
    app({"wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0"}, unused_start_response)
    app({"wsgi.input": io.BytesIO(b"x"), "CONTENT_LENGTH": "1"}, unused_start_response)
    assert type(seen[0]) is io.BytesIO
    assert type(seen[1]) is DeadlineInput


def test_a_publish_whose_body_trickles_gets_408_and_stores_nothing(
    app_factory: Any, redis_client: Any
) -> None:
    client = app_factory(REALTIME_BODY_TIMEOUT_S="0.3").test_client()
    body = b'{"topic": "slow", "data": "never complete"}'
    response = client.post(
        "/publish",
        environ_overrides={"wsgi.input": Trickle(body, 0.05), "CONTENT_LENGTH": str(len(body))},
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 408
    assert response.get_json()["error"] == "request_timeout"
    assert redis_client.exists("{rt}:firehose") == 0
    fast = client.post("/publish", json={"topic": "slow", "data": "in time"}, headers=AUTH)
    assert fast.status_code == 201


def test_an_embedded_app_bounds_only_realtimes_own_paths() -> None:
    """In a host app the deadline wraps bodies sent to realtime's routes, not the host's."""
    seen: dict[str, Any] = {}

    def host(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen[environ["PATH_INFO"]] = environ["wsgi.input"]
        return []

    wrapped = bound_requests(host, 5.0, frozenset({"/rt/publish"}))
    for path in ("/rt/publish", "/upload"):
        body = io.BytesIO(b"x")
        wrapped({"PATH_INFO": path, "CONTENT_LENGTH": "1", "wsgi.input": body}, lambda *_: None)
    assert isinstance(seen["/rt/publish"], DeadlineInput)
    assert not isinstance(seen["/upload"], DeadlineInput)
