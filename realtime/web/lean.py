"""``POST /publish`` and ``GET /events`` without Flask: what realtime's worker answers itself.

Why: a single-event publish through gunicorn's request handling and Flask cost 550 µs of a
worker's CPU before and after the publish itself (about 90 µs): one worker topped out near
1,500 publishes a second, where a bare gunicorn gevent worker answering a constant tops out near
4,500. The lean path (:mod:`realtime.worker` reads the request and writes the answer) costs a
publish about a quarter of that.

What it may skip, and so when it is allowed (:meth:`LeanPublish.takes`): Flask's request
handling runs the app's hooks, and nothing of the app's may be skipped. So the lean path is
open only while the app runs no code of its own around realtime's routes: no
``before_request``/``after_request``/``teardown_request`` functions or URL value preprocessors
but realtime's own (the body limit, which the worker applies itself), no receivers of Flask's
request or app-context signals, no WSGI middleware around the app but realtime's own, no debug
mode, Flask's own JSON provider, and no CORS (flask-cors answers with headers of its own). And
only for the one request shape whose every answer this module gives exactly as the view would:
``POST`` to the publish path, HTTP/1.1, no query, a ``Content-Length`` body within
``REALTIME_MAX_BODY`` (no chunked body, no ``Expect``), ``application/json``, the token in
``Authorization`` (no cookie, no authorize hook), and no ``Origin`` (a browser's request takes
the Flask path with its checks). Every other request goes through gunicorn and Flask as before.

A stream (``GET /events``) is opened the same way when the app is plain, for HTTP/1.1 ``GET``
with its token in ``Authorization`` or ``?access_token=`` (or none, for public topics, when the
app has no authorize hook), no cookie and no body: 10,000 streams through gunicorn and Flask
took a worker 6.9 s to open, one every 450 µs of CPU.

The decisions are the views' own (:func:`realtime.web.publish.store_publish`,
:func:`realtime.web.events.start_stream`); only the reading of the request and the writing of
the answer's head are this module's. No sockets are read or written here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" error handler
from flask import Flask, signals
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import InternalServerError
from werkzeug.http import HTTP_STATUS_CODES, parse_list_header

from realtime.core.access import TOKEN_QUERY
from realtime.core.auth import Grant, find_token
from realtime.core.errors import INTERNAL_ERROR, BrokerError, ClientError
from realtime.fanout.stream import StreamBody
from realtime.web.events import SSE_CONTENT_TYPE, SSE_HEADERS, start_stream
from realtime.web.publish import REPLAYED_HEADER, store_publish
from realtime.web.request import limit_body
from realtime.web.service import redis_unavailable
from realtime.web.state import EXTENSION_KEY, RealtimeState

T = TypeVar("T")

#: Flask's signals sent around a request: a receiver is the app's own code, run by Flask.
REQUEST_SIGNALS = (
    signals.request_started,
    signals.request_finished,
    signals.request_tearing_down,
    signals.got_request_exception,
    signals.appcontext_pushed,
    signals.appcontext_tearing_down,
    signals.appcontext_popped,
)
#: The blueprint of the publish route (:mod:`realtime.web.blueprint`).
BLUEPRINT = "realtime"
#: The request headers whose presence sends a publish to the Flask path (see the docstring).
NOT_LEAN_HEADERS = frozenset({"origin", "transfer-encoding", "expect", "upgrade", "cookie"})
#: ... and a stream: a body, a cookie (a token, or the session of the authorize hook).
NOT_LEAN_STREAM_HEADERS = frozenset(
    {"transfer-encoding", "content-length", "expect", "upgrade", "cookie"}
)
#: What a stream's answer says beside gunicorn's own headers, in werkzeug's order.
STREAM_HEADERS = [*SSE_HEADERS.items(), ("Content-Type", SSE_CONTENT_TYPE)]


@dataclass(slots=True)
class LeanRequest:
    """A request head as the worker read it: header names lowercase, values as sent."""

    method: str
    target: str
    headers: dict[str, str]


@dataclass(slots=True)
class LeanAnswer:
    """An answer to write: the status, the headers beside gunicorn's own, the body, and whether
    the connection is closed after it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    close: bool = False
    status_line: str = field(init=False)

    def __post_init__(self) -> None:
        # As werkzeug names a status (what gunicorn writes for a Flask answer).
        self.status_line = f"{self.status} {HTTP_STATUS_CODES.get(self.status, 'UNKNOWN').upper()}"


class LeanDoors:
    """The lean doors of one app (``None`` from :meth:`of` for an app without realtime)."""

    def __init__(self, app: Flask, state: RealtimeState) -> None:
        self.app = app
        self.state = state
        prefix = state.url_prefix or ""
        self.path = prefix + "/publish"
        self.events_path = prefix + "/events"
        self._routes: tuple[bool, bool] | None = None  # the URL map cannot change once serving
        self._open = False
        self._open_until = 0.0  # monotonic time until which _open holds

    @classmethod
    def of(cls, app: Any) -> LeanDoors | None:
        if not isinstance(app, Flask) or EXTENSION_KEY not in app.extensions:
            return None
        return cls(app, app.extensions[EXTENSION_KEY])

    # -- when ------------------------------------------------------------------------------------

    def open(self) -> bool:
        """Whether the app runs none of its own code around realtime's routes: looked at once a
        second at most (hooks and signal receivers are set up at start, not per request)."""
        now = time.monotonic()
        if now >= self._open_until:
            self._open = self._plain_app()
            self._open_until = now + 1.0
        return self._open

    def _plain_app(self) -> bool:
        app, state = self.app, self.state
        if app.debug or state.settings.cors_origins or not state.plain_wsgi:
            return False
        if app.wsgi_app is not state.wsgi_app:  # middleware added after realtime's own
            return False
        if type(app.json) is not DefaultJSONProvider or app.json.compact is False:
            return False
        # Flask runs the app's hooks (scope None) and those of the route's blueprint.
        for hooks in (app.after_request_funcs, app.teardown_request_funcs):
            if hooks.get(None) or hooks.get(BLUEPRINT):
                return False
        if app.url_value_preprocessors.get(None) or app.url_value_preprocessors.get(BLUEPRINT):
            return False
        before = app.before_request_funcs
        if before.get(None) or before.get(BLUEPRINT, [limit_body]) != [limit_body]:
            return False
        # receivers_for, not has_receivers_for: blinker keeps a sender's entry, empty, once its
        # last receiver is disconnected.
        return not any(next(signal.receivers_for(app), None) for signal in REQUEST_SIGNALS)

    def routes(self) -> tuple[bool, bool]:
        """Whether the publish and the events paths are realtime's views (not an app's own)."""
        if self._routes is None:
            publish = self._match(self.path, "POST") == f"{BLUEPRINT}.publish"
            events = self._match(self.events_path, "GET") == f"{BLUEPRINT}.events"
            self._routes = (publish, events)
        return self._routes

    def _match(self, path: str, method: str) -> str | None:
        try:
            endpoint, _ = app_adapter(self.app).match(path, method=method)
        except Exception:
            return None
        return str(endpoint)

    def takes_publish(self, request: LeanRequest) -> bool:
        """Whether ``request`` is a publish this door answers exactly as the view would."""
        if request.method != "POST" or request.target != self.path or not self.routes()[0]:
            return False
        headers = request.headers
        if not NOT_LEAN_HEADERS.isdisjoint(headers) or not headers.get("authorization"):
            return False
        length = headers.get("content-length", "")
        if not length.isdigit() or int(length) > self.state.settings.max_body:
            return False
        mimetype = headers.get("content-type", "").partition(";")[0].strip().lower()
        return mimetype == "application/json" and self.open()

    def takes_stream(self, request: LeanRequest) -> bool:
        """Whether ``request`` is a stream this door opens exactly as the view would."""
        path, _, _ = request.target.partition("?")
        if request.method != "GET" or path != self.events_path or not self.routes()[1]:
            return False
        headers = request.headers
        if not NOT_LEAN_STREAM_HEADERS.isdisjoint(headers) or self.state.hub.draining:
            return False
        if "authorization" in headers and not headers["authorization"]:
            return False  # an empty header: the view looks for the cookie and the app's hook
        # Without a token, the app's hook decides, and it takes Flask's request.
        hooked = self.state.hooks.authorize is not None and not headers.get("authorization")
        if hooked and not query_args(request.target).get(TOKEN_QUERY, [""])[0]:
            return False
        return self.open()

    # -- the answer ------------------------------------------------------------------------------

    def publish(self, request: LeanRequest, body: bytes) -> LeanAnswer:
        """Store the publish in ``request`` (with its ``body``) and say what the view would."""
        state = self.state
        headers = request.headers

        def store() -> LeanAnswer:
            found = find_token(authorization=headers["authorization"], cookie=None, query=None)
            token, source = found if found is not None else (None, None)
            grant = state.verifier.verify(token) if token is not None else None
            published, batch = store_publish(
                state,
                token=token,
                grant=grant,
                source=source,
                origin=None,
                scheme="http",
                host=headers.get("host"),
                idempotency_key=headers.get("idempotency-key"),
                mimetype="application/json",
                read_body=lambda: body,
                read_form=dict,
            )
            extra = [(REPLAYED_HEADER, "true")] if published.duplicate else []
            return self._answer(201, ids_json(published.ids, batch), extra)

        return self._refusing(store, "POST", self.path)

    def stream(
        self, request: LeanRequest, peer: str, environ: dict[str, Any]
    ) -> LeanAnswer | StreamBody:
        """Open the stream ``request`` asks for (its body to write after :data:`STREAM_HEADERS`),
        or the refusal. ``environ`` holds what the stream writes to (the worker's socket and
        response, as gunicorn's environ would); ``peer`` is the connection's address."""
        state = self.state
        path = request.target.partition("?")[0]
        headers = request.headers  # names in lower case, as werkzeug's Headers looks them up
        address = forwarded_for(peer, headers.get("x-forwarded-for"), state.settings.proxy_hops)
        args = query_args(request.target)
        authorization = headers.get("authorization")

        def first(name: str) -> str | None:
            values = args.get(name)
            return values[0] if values else None

        def grant_of() -> Grant | None:
            found = find_token(
                authorization=authorization,
                cookie=None,
                query=None if authorization else first(TOKEN_QUERY),
            )
            return state.verifier.verify(found[0]) if found is not None else None

        def start() -> StreamBody:
            return start_stream(
                state,
                topics=args.get("topic", []),
                grant_of=grant_of,
                last_id_header=headers.get("last-event-id"),
                last_id_query=first("lastEventId"),
                envelope=first("envelope") or "",
                address=address,
                environ=environ,
            )

        return self._refusing(start, "GET", path)

    def _refusing(self, work: Callable[[], T], method: str, path: str) -> T | LeanAnswer:
        """``work()``, or the answer the Flask path gives what it raised: a refusal its own, a
        Redis failure 503, anything else a 500 with the traceback in the app's log."""
        try:
            return work()
        except ClientError as err:
            return self.refusal(err)
        except BrokerError as err:
            return self.refusal(redis_unavailable(err, "request"))
        except Exception:
            self.app.logger.exception("Exception on %s [%s]", path, method)
            failure = InternalServerError()
            return self.refusal(ClientError(failure.description, code=INTERNAL_ERROR, status=500))

    def refusal(self, err: ClientError) -> LeanAnswer:
        """``err`` in the JSON error contract, as :func:`realtime.web.responses.error_response`."""
        extra = [("Retry-After", str(err.retry_after))] if err.retry_after is not None else []
        answer = self._json(err.status, {"error": err.code, "message": err.message}, extra)
        answer.close = err.close_connection
        return answer

    def _json(self, status: int, obj: dict[str, Any], extra: list[tuple[str, str]]) -> LeanAnswer:
        """As ``jsonify`` writes it (compact, the app's key order and escaping, a newline)."""
        body = (self.app.json.dumps(obj, separators=(",", ":")) + "\n").encode()
        return self._answer(status, body, extra)

    def _answer(self, status: int, body: bytes, extra: list[tuple[str, str]]) -> LeanAnswer:
        mimetype = getattr(self.app.json, "mimetype", DefaultJSONProvider.mimetype)
        headers = [("Content-Type", mimetype), ("Content-Length", str(len(body)))]
        return LeanAnswer(status, headers + extra, body)


def ids_json(ids: list[str], batch: bool) -> bytes:
    """:func:`~realtime.web.publish.publish_reply` as ``jsonify`` writes it, without a JSON
    encoder: ids are ``<epoch>-<seq>`` (lowercase letters, digits, one dash), which JSON writes
    as they are. Held to ``jsonify``'s bytes by the tests; the encoder took a tenth of a
    publish's own work."""
    if batch:
        return b'{"ids":[' + ",".join(f'"{i}"' for i in ids).encode() + b"]}\n"
    return b'{"id":"' + ids[0].encode() + b'"}\n'


def query_args(target: str) -> dict[str, list[str]]:
    """The query of a request target as Flask's ``request.args`` holds it, every value of each
    name in order (``args.getlist``; ``args.get`` is the first): parsed exactly as werkzeug
    parses it (its ``sansio.request.Request.args``), into a plain dict, since a werkzeug
    ``MultiDict`` raises (and builds) an HTTP exception for every name it does not hold."""
    query = target.partition("?")[2]
    args: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote"):
        args.setdefault(name, []).append(value)
    return args


def forwarded_for(peer: str, header: str | None, hops: int) -> str:
    """The client's address behind ``hops`` trusted proxies, as werkzeug's ``ProxyFix``
    (``x_for=hops``) makes ``request.remote_addr``: the ``hops``-th address from the end of
    ``X-Forwarded-For``, or the peer itself when there is none that far."""
    if hops and header:
        values = parse_list_header(header)
        if len(values) >= hops:
            return values[-hops]
    return peer


def app_adapter(app: Flask) -> Any:
    """A URL adapter of ``app``'s map for matching paths, bound to no particular host."""
    return app.url_map.bind("localhost")
