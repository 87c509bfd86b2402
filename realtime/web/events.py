"""``GET /events``: the SSE front door, a browser ``EventSource``'s stream.

The view resolves the request (topics, grant, last id) and hands them to
:func:`realtime.fanout.stream.open_stream`, which holds the seam argument of DESIGN.md and
gives back everything the stream took when it ends. The decisions take plain values
(:func:`stream_topics`, :func:`last_event_id`, :func:`wants_envelope`, :func:`start_stream`),
so the lean path of realtime's worker (:mod:`realtime.web.lean`) opens a stream exactly as
this view does.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from flask import Response, request

from realtime.core.access import authorize_subscribe
from realtime.core.auth import Grant
from realtime.core.errors import BadRequest
from realtime.core.sse import encode_control, encode_retry
from realtime.core.topics import check_topic_count, distinct, validate_topic
from realtime.fanout.stream import StreamBody, open_stream
from realtime.web.blueprint import blueprint
from realtime.web.request import client_address, request_grant, rt
from realtime.web.state import RealtimeState

MAX_LAST_EVENT_ID = 256
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def stream_topics(raw: list[str], max_topics: int) -> tuple[str, ...]:
    """The ``topic`` parameters, validated, each once, in their order."""
    if not raw:
        raise BadRequest("Name at least one topic: /events?topic=NAME.", code="missing_topic")
    topics = distinct([validate_topic(t) for t in raw])
    check_topic_count(len(topics), max_topics)
    return topics


def last_event_id(header: str | None, query: str | None) -> str | None:
    """``Last-Event-ID`` wins over ``?lastEventId=``: a browser's automatic reconnect keeps the
    original URL but sends its newest id in the header."""
    value = header
    if value is None or not value.strip():
        value = query
    if value is None or not value.strip():
        return None
    if len(value) > MAX_LAST_EVENT_ID:
        raise BadRequest(
            f"Last-Event-ID is longer than {MAX_LAST_EVENT_ID} characters.",
            code="invalid_last_event_id",
        )
    return value


def wants_envelope(value: str) -> bool:
    """``?envelope=1``: each event's data is a JSON object carrying its topic, type and id."""
    return value in ("1", "true", "json")


def start_stream(
    state: RealtimeState,
    *,
    topics: list[str],
    grant_of: Callable[[], Grant | None],
    last_id_header: str | None,
    last_id_query: str | None,
    envelope: str,
    address: str,
    environ: dict[str, Any],
) -> StreamBody:
    """Decide and open one stream request, the refusals in the API's order: the topics (400),
    the caller (``grant_of``, 401), its right to them (403), the last id (400), the limits
    (429, 503). The stream ends when the token expires."""
    stream_of = stream_topics(topics, state.settings.max_topics)
    grant = grant_of()
    authorize_subscribe(stream_of, grant, state.settings.public_topics)
    last_id = last_event_id(last_id_header, last_id_query)
    return open_stream(
        state.hub,
        state.broker,
        state.settings,
        stream_of,
        last_id,
        envelope=wants_envelope(envelope),
        expires_at=grant.expires_at if grant is not None else None,
        who=grant.subject if grant is not None else None,
        address=address,
        environ=environ,
        parking=state.idle,
    )


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
    return sse_response(
        start_stream(
            state,
            topics=request.args.getlist("topic"),
            grant_of=request_grant,
            last_id_header=request.headers.get("Last-Event-ID"),
            last_id_query=request.args.get("lastEventId"),
            envelope=request.args.get("envelope", ""),
            address=client_address(),
            environ=request.environ,
        )
    )
