"""HTTP surface: ``/events``, ``/publish``, ``/healthz``, ``/readyz``, and the JSON errors.

The only module that reads Flask's request globals. Each view resolves the request into plain
values (topics, grant, drafts) and hands them to the broker, hub and stream modules; errors are
raised as :class:`~realtime.core.errors.ClientError` and rendered in one place.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from realtime.core.access import (
    TOKEN_COOKIE,
    TOKEN_QUERY,
    authorize_browser_publish,
    authorize_metrics,
    authorize_publish,
    authorize_subscribe,
    idempotency_scope,
    presence_visible,
    publish_rate_limited,
    publisher_scope,
)
from realtime.core.auth import Grant, find_token
from realtime.core.errors import (
    AuthError,
    BadRequest,
    BrokerError,
    ClientError,
    IdempotencyConflict,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
)
from realtime.core.publishing import parse_publish, validate_idempotency_key
from realtime.core.sse import encode_retry
from realtime.core.topics import validate_topic
from realtime.fanout.directwrite import DirectWriter
from realtime.fanout.slowclient import cut_on_overflow, server_socket
from realtime.fanout.stream import StreamBody, StreamPlan, control_event, event_stream, topics_of
from realtime.ops import metrics
from realtime.web import openapi
from realtime.web.slowrequest import close_after_response
from realtime.web.state import RealtimeState, state

log = logging.getLogger(__name__)

blueprint = Blueprint("realtime", __name__)

MAX_LAST_EVENT_ID = 256
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _rt() -> RealtimeState:
    return state(current_app)


def error_response(err: ClientError) -> Response:
    response = jsonify(error=err.code, message=err.message)
    response.status_code = err.status
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(err.retry_after)
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ClientError)
    def _client_error(err: ClientError) -> Response:
        if err.close_connection:
            close_after_response(request.environ)
        return error_response(err)

    @app.errorhandler(BrokerError)
    def _broker_error(err: BrokerError) -> Response:
        log.warning("Redis unavailable: %s", err)
        metrics.REDIS_ERRORS.labels("request").inc()
        return error_response(
            Unavailable(
                "Redis is unavailable (unreachable or refusing writes); retry shortly.",
                code="redis_unavailable",
            )
        )

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        if status == 413:
            return error_response(body_too_large())
        code = (err.name or "error").lower().replace(" ", "_")
        response = error_response(
            ClientError(err.description or err.name, code=code, status=status)
        )
        allow = dict(err.get_headers()).get("Allow")
        if allow:
            response.headers["Allow"] = allow  # a 405 must say what is allowed (RFC 9110)
        return response


def body_too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is over {_rt().settings.max_body} bytes (REALTIME_MAX_BODY)."
    )


# -- auth ----------------------------------------------------------------------------------------


def client_address() -> str:
    """The client's address (behind REALTIME_PROXY_HOPS trusted proxies, from X-Forwarded-For)."""
    return request.remote_addr or "unknown"


def request_token() -> tuple[str, str] | None:
    """The request's token and where it came from (DESIGN.md order). The cookie and the query
    string are not even parsed when an ``Authorization`` header is there: the header wins."""
    authorization = request.headers.get("Authorization")
    if authorization:
        return find_token(authorization=authorization, cookie=None, query=None)
    return find_token(
        authorization=None,
        cookie=request.cookies.get(TOKEN_COOKIE),
        query=request.args.get(TOKEN_QUERY),
    )


def request_auth() -> tuple[str, Grant, str] | tuple[None, None, None]:
    """The caller's token, its grant and where it came from, all ``None`` when no token was
    given; a bad token raises 401. A publish needs the token itself too (an unnamed publisher's
    scope is its digest), so it is read once with its grant rather than looked up again."""
    found = request_token()
    if found is None:
        return None, None, None
    token, source = found
    return token, _rt().verifier.verify(token), source


def request_grant() -> Grant | None:
    """The caller's grant, ``None`` when no token was given; a bad token raises 401."""
    return request_auth()[1]


# -- /events -------------------------------------------------------------------------------------


def requested_topics() -> tuple[str, ...]:
    raw = request.args.getlist("topic")
    if not raw:
        raise BadRequest("Name at least one topic: /events?topic=NAME.", code="missing_topic")
    topics = topics_of([validate_topic(t) for t in raw])
    limit = _rt().settings.max_topics
    if len(topics) > limit:
        raise BadRequest(
            f"A stream may follow at most {limit} topics (REALTIME_MAX_TOPICS), not {len(topics)}.",
            code="too_many_topics",
        )
    return topics


def requested_last_id() -> str | None:
    """``Last-Event-ID`` wins over ``?lastEventId=``: a browser's automatic reconnect keeps the
    original URL but sends its newest id in the header."""
    value = request.headers.get("Last-Event-ID")
    if value is None or not value.strip():
        value = request.args.get("lastEventId")
    if value is None or not value.strip():
        return None
    if len(value) > MAX_LAST_EVENT_ID:
        raise BadRequest(
            f"Last-Event-ID is longer than {MAX_LAST_EVENT_ID} characters.",
            code="invalid_last_event_id",
        )
    return value


def sse_response(body: Any) -> Response:
    """A 200 ``text/event-stream`` with the headers every stream carries (DESIGN.md).

    A live stream's :class:`StreamBody` goes to the server as it is (``direct_passthrough``).
    """
    return Response(
        body,
        status=200,
        content_type=SSE_CONTENT_TYPE,
        headers=SSE_HEADERS,
        direct_passthrough=isinstance(body, StreamBody),
    )


def draining_stream() -> Response:
    """What a stopping worker answers on ``/events``: 200, a short random ``retry:`` and
    ``event: shutdown``. A 503 would be final for a browser's ``EventSource``, which never
    retries after an HTTP error; this way it reconnects, on a new connection, elsewhere."""
    body = encode_retry(random.randint(250, 1500)) + control_event(
        "shutdown", {"reason": "draining"}
    )
    return sse_response(body)


@blueprint.get("/events")
def events() -> Response:
    rt = _rt()
    if rt.hub.draining:
        return draining_stream()
    topics = requested_topics()
    grant = request_grant()
    authorize_subscribe(topics, grant, rt.settings.public_topics)
    last_id = requested_last_id()
    envelope = request.args.get("envelope", "") in ("1", "true", "json")

    sub = rt.hub.subscribe(
        topics, who=grant.subject if grant is not None else None, address=client_address()
    )
    try:
        check, after = rt.broker.check_last_id(topics, last_id)
    except BaseException:
        rt.hub.unsubscribe(sub)
        raise
    if check.status not in ("ok", "fresh"):
        metrics.RESETS.labels(check.status).inc()
    settings = rt.settings
    plan = StreamPlan(
        topics=topics,
        check=check,
        after=after,
        retry_ms=settings.retry_ms,
        heartbeat_s=settings.heartbeat_s,
        max_age_s=settings.max_connection_age_s,
        envelope=envelope,
        expires_at=grant.expires_at if grant is not None else None,
    )
    disarm = cut_on_overflow(sub, server_socket(request.environ), settings.overflow_grace_s)
    # Under gunicorn the reader writes live events straight to this stream's socket while the
    # stream waits (one send per delivery instead of a greenlet wake-up); elsewhere: the queue.
    sub.writer = DirectWriter.for_environ(request.environ, envelope=envelope, wake=sub.wakeup.set)

    def release() -> None:
        rt.hub.unsubscribe(sub)
        disarm()

    return sse_response(StreamBody(event_stream(rt.hub, rt.broker, sub, plan), release))


# -- /publish ------------------------------------------------------------------------------------


@blueprint.post("/publish")
def publish() -> tuple[Response, int]:
    rt = _rt()
    token, grant, source = request_auth()
    if token is None or grant is None or source is None:
        raise AuthError("Publishing needs a token with publish rights.", code="missing_token")
    authorize_browser_publish(
        source,
        request.headers.get("Origin"),
        scheme=request.scheme,
        host=request.host,
        allowed=rt.settings.allowed_origins,
    )
    idempotency = validate_idempotency_key(request.headers.get("Idempotency-Key"))
    settings = rt.settings
    mimetype = request.mimetype
    json_body = mimetype == "application/json"
    raw = request_body(settings.max_body, keep=not json_body)
    drafts, batch = parse_publish(
        mimetype,
        body=raw if json_body else None,
        form=None if json_body else request_form(),
        max_payload=settings.max_payload,
        max_batch=settings.max_batch,
    )
    authorize_publish([d.topic for d in drafts], grant)
    scoped = idempotency_scope(grant, token, idempotency) if idempotency else None
    try:
        published = rt.broker.publish(
            drafts,
            idempotency=scoped,
            rate_scope=publisher_scope(grant, token),
            rate=settings.publish_rate,
            burst=settings.publish_burst,
            new_topics_per_minute=settings.new_topics_per_minute,
        )
    except RateLimited as exc:
        raise publish_rate_limited(
            exc, settings.publish_rate, settings.new_topics_per_minute
        ) from None
    except IdempotencyConflict:
        raise BadRequest(
            "This Idempotency-Key was already used for a different request.",
            code="idempotency_key_reused",
        ) from None
    body = jsonify(ids=published.ids) if batch else jsonify(id=published.ids[0])
    if published.duplicate:
        body.headers["Idempotent-Replayed"] = "true"
    return body, 201


def request_body(limit: int, *, keep: bool) -> bytes:
    """The whole body, refused (413) over ``limit``; ``keep`` it for a form to be parsed from.

    A body with a ``Content-Length`` over the limit is refused before it is read (werkzeug,
    through ``MAX_CONTENT_LENGTH``); a chunked one is read up to the limit and then cut without a
    word, so a chunked body that fills it is looked past: one more byte means it was over.
    """
    data = request.get_data(cache=keep, parse_form_data=False)
    if request.content_length is None and len(data) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise body_too_large()
    return data


def request_form() -> dict[str, list[str]]:
    """A form's fields; a multipart body without a boundary, or with a file in it, is refused
    as the malformed form it is rather than read as a form without fields."""
    if request.mimetype == "multipart/form-data" and not request.mimetype_params.get("boundary"):
        raise BadRequest(
            "A multipart/form-data body needs a boundary in its Content-Type.", code="bad_form"
        )
    form = request.form.to_dict(flat=False)
    if request.files:
        raise BadRequest(
            "A publish takes no file parts: send topic, data and type as plain form fields.",
            code="bad_form",
        )
    return form


# -- /presence -----------------------------------------------------------------------------------


@blueprint.get("/presence")
def presence() -> Response:
    """Who follows a topic across every worker and host; needs the right to subscribe to it,
    and a token granting it to see who (:func:`~realtime.core.access.presence_visible`)."""
    rt = _rt()
    topic = validate_topic(request.args.get("topic"))
    grant = request_grant()
    authorize_subscribe([topic], grant, rt.settings.public_topics)
    if rt.hub.presence is None:
        raise BadRequest("Presence is off (REALTIME_PRESENCE_TTL_S=0).", code="presence_off")
    present, connections = rt.hub.presence.present(topic)
    hidden = not presence_visible(topic, grant)
    return jsonify(
        topic=topic, present=[] if hidden else present, connections=connections, hidden=hidden
    )


# -- pages ---------------------------------------------------------------------------------------


# The dashboard's page carries a token in its address and shows other people's events: no
# script, style or connection but its own origin's, no inline script or style at all (its
# script and style are files), never framed (clickjacking its publish form), never sniffed,
# and its address never sent on as a Referer.
DASHBOARD_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@blueprint.get("/")
def index() -> Response:
    """The demo page (``realtime/static/index.html``, its script ``dashboard.js``), built on
    ``/static/realtime.js``, with the security headers of :data:`DASHBOARD_HEADERS`."""
    response = current_app.send_static_file("index.html")
    response.headers.update(DASHBOARD_HEADERS)
    return response


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI document of this HTTP API (see :mod:`realtime.web.openapi`)."""
    return jsonify(openapi.document())


# -- metrics -------------------------------------------------------------------------------------


@blueprint.get("/metrics")
def metrics_text() -> Response:
    """Prometheus text format, summed over every worker (see :mod:`realtime.ops.metrics`); behind
    ``REALTIME_METRICS_TOKEN`` when one is set (Prometheus sends it as its bearer token)."""
    expected = _rt().settings.metrics_token
    if expected is not None:
        authorize_metrics(request.headers.get("Authorization"), expected)
    body, content_type = metrics.render()
    return Response(body, status=200, content_type=content_type)


# -- health --------------------------------------------------------------------------------------


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    rt = _rt()
    redis_ok = rt.broker.ping()
    reader_ok = rt.hub.ready if rt.hub.running else redis_ok
    # A worker at its stream limit is not ready, so a load balancer sends new streams elsewhere
    # before clients are refused; it is live all the same, and still answers everything else.
    full = rt.hub.full
    ready = redis_ok and reader_ok and not rt.hub.draining and not full
    body = jsonify(
        ready=ready,
        draining=rt.hub.draining,
        redis=redis_ok,
        reader=reader_ok,
        full=full,
        streams=rt.hub.subscription_count,
        max_streams=rt.hub.max_connections,
        reader_reconnects=rt.hub.reconnects,
    )
    if not ready:
        body.headers["Retry-After"] = "1"
    return body, (200 if ready else 503)
