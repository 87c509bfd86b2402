"""HTTP surface: ``/events``, ``/publish``, ``/healthz``, ``/readyz``, and the JSON errors.

The only module that reads Flask's request globals. Each view resolves the request into plain
values (topics, grant, drafts) and hands them to the broker, hub and stream modules; errors are
raised as :class:`~realtime.errors.ClientError` and rendered in one place.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import metrics, openapi
from .access import (
    TOKEN_COOKIE,
    TOKEN_QUERY,
    authorize_publish,
    authorize_subscribe,
    idempotency_scope,
    publish_rate_limited,
    publisher_scope,
)
from .auth import Grant, extract_token
from .broker import IdempotencyConflict, RateLimited
from .directwrite import DirectWriter
from .errors import (
    AuthError,
    BadRequest,
    BrokerError,
    ClientError,
    PayloadTooLarge,
    Unavailable,
)
from .extension import RealtimeState, state
from .publishing import parse_publish, validate_idempotency_key
from .slowclient import cut_on_overflow, server_socket
from .slowrequest import close_after_response
from .sse import encode_retry
from .stream import StreamBody, StreamPlan, control_event, event_stream, topics_of
from .topics import validate_topic

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
            return error_response(
                PayloadTooLarge(
                    f"The request body is over {_rt().settings.max_body} bytes (REALTIME_MAX_BODY)."
                )
            )
        code = (err.name or "error").lower().replace(" ", "_")
        response = error_response(
            ClientError(err.description or err.name, code=code, status=status)
        )
        allow = dict(err.get_headers()).get("Allow")
        if allow:
            response.headers["Allow"] = allow  # a 405 must say what is allowed (RFC 9110)
        return response


# -- auth ----------------------------------------------------------------------------------------


def client_address() -> str:
    """The client's address (behind REALTIME_PROXY_HOPS trusted proxies, from X-Forwarded-For)."""
    return request.remote_addr or "unknown"


def request_token() -> str | None:
    """The request's token (DESIGN.md order). The cookie and the query string are not even parsed
    when an ``Authorization`` header is there, since the header wins anyway."""
    authorization = request.headers.get("Authorization")
    if authorization:
        return extract_token(authorization=authorization, cookie=None, query=None)
    return extract_token(
        authorization=None,
        cookie=request.cookies.get(TOKEN_COOKIE),
        query=request.args.get(TOKEN_QUERY),
    )


def request_auth() -> tuple[str, Grant] | tuple[None, None]:
    """The caller's token and its grant, ``(None, None)`` when no token was given; a bad token
    raises 401. A publish needs the token itself too (an unnamed publisher's scope is its digest),
    so it is read once with its grant rather than looked up again."""
    token = request_token()
    if token is None:
        return None, None
    return token, _rt().verifier.verify(token)


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
    token, grant = request_auth()
    if token is None or grant is None:
        raise AuthError("Publishing needs a token with publish rights.", code="missing_token")
    idempotency = validate_idempotency_key(request.headers.get("Idempotency-Key"))
    settings = rt.settings
    mimetype = request.mimetype
    form = request.form.to_dict(flat=False) if mimetype != "application/json" else None
    drafts, batch = parse_publish(
        mimetype,
        body=request.get_data(cache=False) if mimetype == "application/json" else None,
        form=form,
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
        )
    except RateLimited as exc:
        raise publish_rate_limited(exc, settings.publish_rate) from None
    except IdempotencyConflict:
        raise BadRequest(
            "This Idempotency-Key was already used for a different request.",
            code="idempotency_key_reused",
        ) from None
    body = jsonify(ids=published.ids) if batch else jsonify(id=published.ids[0])
    if published.duplicate:
        body.headers["Idempotent-Replayed"] = "true"
    return body, 201


# -- /presence -----------------------------------------------------------------------------------


@blueprint.get("/presence")
def presence() -> Response:
    """Who follows a topic across every worker and host; needs the right to subscribe to it."""
    rt = _rt()
    topic = validate_topic(request.args.get("topic"))
    authorize_subscribe([topic], request_grant(), rt.settings.public_topics)
    if rt.hub.presence is None:
        raise BadRequest("Presence is off (REALTIME_PRESENCE_TTL_S=0).", code="presence_off")
    present, connections = rt.hub.presence.present(topic)
    return jsonify(topic=topic, present=present, connections=connections)


# -- pages ---------------------------------------------------------------------------------------


@blueprint.get("/")
def index() -> Response:
    """The demo page (``realtime/static/index.html``), built on ``/static/realtime.js``."""
    return current_app.send_static_file("index.html")


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI document of this HTTP API (see :mod:`realtime.openapi`)."""
    return jsonify(openapi.document())


# -- metrics -------------------------------------------------------------------------------------


@blueprint.get("/metrics")
def metrics_text() -> Response:
    """Prometheus text format, summed over every worker (see :mod:`realtime.metrics`)."""
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
