"""``POST /publish`` without Flask: the requests realtime's gunicorn worker may answer itself.

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

The decisions are the view's own (:func:`realtime.web.publish.store_publish`); only the reading
of the request and the rendering of the answer are this module's. Pure: no sockets here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, signals
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from realtime.core.auth import find_token
from realtime.core.errors import INTERNAL_ERROR, BrokerError, ClientError
from realtime.web.publish import REPLAYED_HEADER, store_publish
from realtime.web.request import limit_body
from realtime.web.service import redis_unavailable
from realtime.web.state import EXTENSION_KEY, RealtimeState

log = logging.getLogger(__name__)

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


class LeanPublish:
    """The lean publish door of one app (``None`` from :meth:`of` for an app without realtime)."""

    def __init__(self, app: Flask, state: RealtimeState) -> None:
        self.app = app
        self.state = state
        self.path = (state.url_prefix or "") + "/publish"
        self._route_is_ours: bool | None = None  # the URL map cannot change once serving
        self._open = False
        self._open_until = 0.0  # monotonic time until which _open holds

    @classmethod
    def of(cls, app: Any) -> LeanPublish | None:
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
        if any(next(signal.receivers_for(app), None) for signal in REQUEST_SIGNALS):
            return False
        if self._route_is_ours is None:
            self._route_is_ours = self._match() == f"{BLUEPRINT}.publish"
        return self._route_is_ours

    def _match(self) -> str | None:
        try:
            endpoint, _ = app_adapter(self.app).match(self.path, method="POST")
        except Exception:
            return None
        return str(endpoint)

    def takes(self, request: LeanRequest) -> bool:
        """Whether ``request`` is a publish this door answers exactly as the view would."""
        if request.method != "POST" or request.target != self.path:
            return False
        headers = request.headers
        if not NOT_LEAN_HEADERS.isdisjoint(headers) or "authorization" not in headers:
            return False
        length = headers.get("content-length", "")
        if not length.isdigit() or int(length) > self.state.settings.max_body:
            return False
        mimetype = headers.get("content-type", "").partition(";")[0].strip().lower()
        return mimetype == "application/json" and self.open()

    # -- the answer ------------------------------------------------------------------------------

    def answer(self, request: LeanRequest, body: bytes) -> LeanAnswer:
        """Store the publish in ``request`` (with its ``body``) and say what the view would."""
        state = self.state
        headers = request.headers
        try:
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
        except ClientError as err:
            return self.refusal(err)
        except BrokerError as err:
            return self.refusal(redis_unavailable(err, "request"))
        except Exception:
            # As Flask: the traceback logged under the app's logger, a 500 in the JSON contract.
            self.app.logger.exception("Exception on %s [POST]", self.path)
            failure = InternalServerError()
            return self.refusal(ClientError(failure.description, code=INTERNAL_ERROR, status=500))
        extra = [(REPLAYED_HEADER, "true")] if published.duplicate else []
        return self._answer(201, ids_json(published.ids, batch), extra)

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


def app_adapter(app: Flask) -> Any:
    """A URL adapter of ``app``'s map for matching paths, bound to no particular host."""
    return app.url_map.bind("localhost")
