"""The lean publish door's judgement (when it may answer) and its bytes (what jsonify writes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import make_token
from flask import Flask, jsonify, request_started
from werkzeug.middleware.proxy_fix import ProxyFix

from realtime.extension import Realtime
from realtime.web.lean import LeanDoors, LeanRequest, forwarded_for, ids_json, query_args
from realtime.worker import parse_head, wants_close

TOKEN = make_token()
BODY = b'{"topic": "a", "data": "x"}'


def head(*lines: str, request_line: str = "POST /publish HTTP/1.1") -> bytes:
    return "\r\n".join([request_line, *lines]).encode()


PLAIN = head(
    "Host: 127.0.0.1:8000",
    "Content-Type: application/json",
    f"Authorization: Bearer {TOKEN}",
    f"Content-Length: {len(BODY)}",
)


def lean_request(**headers: str) -> LeanRequest:
    request = parse_head(PLAIN)
    assert request is not None
    for name, value in headers.items():
        key = name.replace("_", "-").lower()
        if value == "":
            request.headers.pop(key, None)
        else:
            request.headers[key] = value
    return request


# -- reading a request head ---------------------------------------------------------------------


def test_a_plain_head_is_read_with_lowercase_names_and_values_as_sent() -> None:
    request = parse_head(head("Host: h", "X-Thing:  a  b ", "Idempotency-Key: K-1"))
    assert request is not None
    assert (request.method, request.target) == ("POST", "/publish")
    assert request.headers == {"host": "h", "x-thing": "a  b", "idempotency-key": "K-1"}


@pytest.mark.parametrize(
    "raw",
    [
        head("Host: h", request_line="POST /publish HTTP/1.0"),
        head("Host: h", request_line="POST /publish"),
        head("Host: h", request_line="POST  /publish HTTP/1.1"),
        head("Host: h", " folded: line"),
        head("Host: h", "no colon"),
        head("Host: h", "Bad Name: x"),
        head("Host: h", ": no name"),
        head("Host: h", "Host: twice"),
        head("Host: h", "N\xe4me: x"),
        head("Host: h", "Idempotency-Key: a\x7fb"),
        head("Host: h", "X: a\nb"),
        head("Host: h", *(f"X-{n}: x" for n in range(100))),
        head("Host: h", f"X-Pad: {'h' * 8190}"),
        head("Host: h", request_line=f"GET /events?pad={'a' * 4094} HTTP/1.1"),
    ],
    ids=[
        "http/1.0",
        "no version",
        "double space",
        "folded",
        "no colon",
        "space in name",
        "empty name",
        "twice",
        "non-token name",
        "control character",
        "bare LF",
        "101 fields",
        "a field over 8,190",
        "a line over 4,094",
    ],
)
def test_anything_but_the_plainest_head_is_left_to_gunicorn(raw: bytes) -> None:
    assert parse_head(raw) is None


def test_connection_close_is_read_as_gunicorn_reads_it() -> None:
    assert wants_close(lean_request(connection=" Close "))
    assert not wants_close(lean_request(connection="keep-alive"))
    assert not wants_close(lean_request())


# -- when the door may answer -------------------------------------------------------------------


@pytest.fixture
def door(app: Any) -> LeanDoors:
    found = LeanDoors.of(app)
    assert found is not None
    return found


def test_the_service_takes_a_plain_publish(door: LeanDoors) -> None:
    assert door.takes_publish(lean_request())


@pytest.mark.parametrize(
    "change",
    [
        {"origin": "http://a.example"},
        {"cookie": "realtime_token=x"},
        {"transfer_encoding": "chunked"},
        {"expect": "100-continue"},
        {"upgrade": "h2c"},
        {"authorization": ""},
        {"content_length": ""},
        {"content_length": "-1"},
        {"content_length": "1048577"},
        {"content_type": "application/x-www-form-urlencoded"},
        {"content_type": ""},
    ],
    ids=lambda change: ",".join(f"{k}={v or 'absent'}" for k, v in change.items()),
)
def test_a_request_the_view_treats_otherwise_takes_the_flask_path(
    door: LeanDoors, change: dict[str, str]
) -> None:
    assert not door.takes_publish(lean_request(**change))


def test_a_charset_in_the_content_type_is_still_json(door: LeanDoors) -> None:
    assert door.takes_publish(lean_request(content_type="Application/JSON; charset=utf-8"))


@pytest.mark.parametrize(
    ("method", "target"), [("GET", "/publish"), ("POST", "/publish?x=1"), ("POST", "/events")]
)
def test_other_routes_methods_and_queries_take_the_flask_path(
    door: LeanDoors, method: str, target: str
) -> None:
    request = lean_request()
    request.method, request.target = method, target
    assert not door.takes_publish(request)


def fresh_door(app: Flask) -> LeanDoors:
    found = LeanDoors.of(app)
    assert found is not None
    return found


def test_any_code_of_the_app_around_the_route_closes_the_lean_path(
    app_factory: Any,
) -> None:
    """Each of the app's own ways to run code around a request: the door stays shut."""

    def hook() -> None:
        return None

    def after(response: Any) -> Any:
        return response

    cases: dict[str, Callable[[Flask], object]] = {
        "before_request": lambda app: app.before_request(hook),
        "after_request": lambda app: app.after_request(after),
        "teardown_request": lambda app: app.teardown_request(lambda exc: None),
        "url_value_preprocessor": lambda app: app.url_value_preprocessor(lambda e, v: None),
        "debug": lambda app: setattr(app, "debug", True),
        "middleware": lambda app: setattr(app, "wsgi_app", ProxyFix(app.wsgi_app)),
    }
    for name, add in cases.items():
        app = app_factory()
        assert fresh_door(app).open(), name
        add(app)
        assert not fresh_door(app).open(), name
    app = app_factory()
    receiver_called: list[Any] = []

    def receiver(sender: Any, **extra: Any) -> None:
        receiver_called.append(sender)

    request_started.connect(receiver, app)
    try:
        assert not fresh_door(app).open()
    finally:
        request_started.disconnect(receiver, app)
    assert fresh_door(app).open()
    assert not fresh_door(app_factory(REALTIME_CORS_ORIGINS="https://a.example")).open()


def test_an_app_whose_own_hooks_or_middleware_came_first_is_never_lean(
    redis_url: str, tmp_path: Any
) -> None:
    """A host that wrapped its wsgi_app, or subclassed Flask's request handling, before
    realtime: realtime's wrappers go round theirs, so only the Flask path may run them."""
    wrapped = Flask("wrapped")
    wrapped.config.update(REALTIME_REDIS_URL=redis_url, REALTIME_DATA_DIR=str(tmp_path))
    wrapped.wsgi_app = ProxyFix(wrapped.wsgi_app)  # type: ignore[method-assign]
    Realtime(wrapped)
    assert not fresh_door(wrapped).open()

    class OwnDispatch(Flask):
        def full_dispatch_request(self) -> Any:
            return super().full_dispatch_request()

    subclassed = OwnDispatch("subclassed")
    subclassed.config.update(REALTIME_REDIS_URL=redis_url, REALTIME_DATA_DIR=str(tmp_path))
    Realtime(subclassed)
    assert not fresh_door(subclassed).open()

    hooked = Flask("hooked")
    hooked.config.update(REALTIME_REDIS_URL=redis_url, REALTIME_DATA_DIR=str(tmp_path))
    hooked.before_request(lambda: None)
    Realtime(hooked)
    assert not fresh_door(hooked).open()


def test_an_app_without_realtime_has_no_door() -> None:
    assert LeanDoors.of(Flask("bare")) is None
    assert LeanDoors.of(object()) is None


# -- its bytes ----------------------------------------------------------------------------------


@pytest.fixture
def app_context(app: Any) -> Iterator[None]:
    with app.app_context():
        yield


@pytest.mark.parametrize(
    ("ids", "batch"),
    [(["0a1b2c3d4e-1"], False), (["0a1b2c3d4e-7", "0a1b2c3d4e-8"], True), (["e-1"], True)],
)
def test_the_ids_are_written_byte_for_byte_as_jsonify_writes_them(
    app_context: None, ids: list[str], batch: bool
) -> None:
    expected = jsonify(ids=ids) if batch else jsonify(id=ids[0])
    assert ids_json(ids, batch) == expected.get_data()


def test_a_refusal_is_written_as_the_json_error_contract(door: LeanDoors, app: Any) -> None:
    from realtime.core.errors import TooManyRequests
    from realtime.web.responses import error_response

    err = TooManyRequests("Slow down, \u00fcber publisher.", code="rate_limited", retry_after=3)
    answer = door.refusal(err)
    with app.app_context():
        flask_answer = error_response(err)
    assert answer.body == flask_answer.get_data()
    assert answer.status_line == flask_answer.status
    assert answer.headers == list(flask_answer.headers.items())


@pytest.mark.parametrize("hops", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "header", [None, "", "10.0.0.1", "10.0.0.1, 10.0.0.2", " 1.1.1.1 ,2.2.2.2 , 3.3.3.3"]
)
def test_the_client_address_behind_proxies_is_the_one_proxyfix_gives(
    hops: int, header: str | None
) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["remote_addr"] = environ["REMOTE_ADDR"]
        return []

    environ: dict[str, Any] = {"REMOTE_ADDR": "127.0.0.9"}
    if header is not None:
        environ["HTTP_X_FORWARDED_FOR"] = header
    front: Any = ProxyFix(app, x_for=hops) if hops else app  # x_for=0 trusts no hop
    front(environ, None)
    assert forwarded_for("127.0.0.9", header, hops) == seen["remote_addr"]


@pytest.mark.parametrize(
    "query",
    ["topic=a&topic=b&x=", "topic=%E2%82%AC&topic=%ff", "a=1&a=2&a", "", "topic=a+b;c=d"],
)
def test_the_query_is_parsed_as_flasks_request_args(app: Any, query: str) -> None:
    with app.test_request_context(f"/events?{query}"):
        from flask import request

        expected = {name: request.args.getlist(name) for name in request.args}
    assert query_args(f"/events?{query}") == expected


def stream_request(target: str = "/events?topic=a", **headers: str) -> LeanRequest:
    lines = [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    request = parse_head(head("Host: h", *lines, request_line=f"GET {target} HTTP/1.1"))
    assert request is not None
    return request


@pytest.mark.parametrize(
    ("request_", "taken"),
    [
        (stream_request(Authorization=f"Bearer {TOKEN}"), True),
        (stream_request(f"/events?topic=a&access_token={TOKEN}"), True),
        (stream_request(), True),  # public topics or a 401: the view's answer either way
        (stream_request(Cookie="realtime_token=x"), False),
        (stream_request(Authorization=""), False),
        (stream_request(Content_Length="0"), False),
        (stream_request("/events/?topic=a"), False),
        (stream_request("/publish?topic=a"), False),
    ],
    ids=["header", "query", "no token", "cookie", "empty header", "a body", "slash", "publish"],
)
def test_which_streams_the_lean_path_opens(
    door: LeanDoors, request_: LeanRequest, taken: bool
) -> None:
    assert door.takes_stream(request_) is taken


def test_without_a_token_an_app_with_an_authorize_hook_decides_on_the_flask_path(
    app: Any, door: LeanDoors
) -> None:
    from realtime.web.state import state

    state(app).hooks.authorize = lambda request: None
    assert not door.takes_stream(stream_request())
    assert door.takes_stream(stream_request(f"/events?topic=a&access_token={TOKEN}"))
    assert door.takes_stream(stream_request(Authorization=f"Bearer {TOKEN}"))


def test_a_draining_worker_answers_streams_on_the_flask_path(app: Any, door: LeanDoors) -> None:
    from realtime.web.state import state

    state(app).hub.draining = True
    assert not door.takes_stream(stream_request(Authorization=f"Bearer {TOKEN}"))
