"""``GET /events``: the SSE front door, a browser ``EventSource``'s stream.

The view resolves the request (topics, grant, last id) and hands them to
:func:`realtime.fanout.stream.open_stream`, which holds the seam argument of DESIGN.md and
gives back everything the stream took when it ends.
"""

from __future__ import annotations

import random
from typing import Any

from flask import Response, request

from realtime.core.access import authorize_subscribe
from realtime.core.errors import BadRequest
from realtime.core.sse import encode_control, encode_retry
from realtime.core.topics import check_topic_count, distinct, validate_topic
from realtime.fanout.stream import StreamBody, open_stream
from realtime.web.blueprint import blueprint
from realtime.web.request import client_address, request_grant, rt

MAX_LAST_EVENT_ID = 256
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def requested_topics() -> tuple[str, ...]:
    raw = request.args.getlist("topic")
    if not raw:
        raise BadRequest("Name at least one topic: /events?topic=NAME.", code="missing_topic")
    topics = distinct([validate_topic(t) for t in raw])
    check_topic_count(len(topics), rt().settings.max_topics)
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
    body = encode_retry(random.randint(250, 1500)) + encode_control(  # noqa: S311 - jitter
        "shutdown", {"reason": "draining"}
    )
    return sse_response(body)


@blueprint.get("/events")
def events() -> Response:
    state = rt()
    if request.method == "HEAD":
        # Headers only: a HEAD's body is never sent, so a stream behind it would never notice
        # its client leave (no write reaches the socket) and would hold a slot for ever.
        return sse_response(b"")
    if state.hub.draining:
        return draining_stream()
    topics = requested_topics()
    grant = request_grant()
    authorize_subscribe(topics, grant, state.settings.public_topics)
    last_id = requested_last_id()
    # ?envelope=1: each event's data is a JSON object carrying its topic, type and id too.
    envelope = request.args.get("envelope", "") in ("1", "true", "json")

    return sse_response(
        open_stream(
            state.hub,
            state.broker,
            state.settings,
            topics,
            last_id,
            envelope=envelope,
            expires_at=grant.expires_at if grant is not None else None,
            who=grant.subject if grant is not None else None,
            address=client_address(),
            environ=request.environ,
            parking=state.idle,
        )
    )
