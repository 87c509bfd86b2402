"""sse-starlette on uvicorn with an in-process broadcast: the asyncio peer of bench/suite.py.

The usual shape of an sse-starlette service: one ``asyncio.Queue`` per stream, registered in a
dict of topics, fed by a publish endpoint and drained by an ``EventSourceResponse``. Events carry
a process-wide counter as ``id:``; there is no history, so ``Last-Event-ID`` resumes nothing (the
suite marks the reconnect storm n/a). A batch publish is a loop over the same broadcast.

Run: ``uvicorn --app-dir bench/peers starlette_app:app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

MAX_QUEUE = 1000
topics: dict[str, set[asyncio.Queue[ServerSentEvent]]] = {}
ids = itertools.count(1)


async def events(request: Request) -> Response:
    topic = request.query_params.get("topic")
    if not topic:
        return JSONResponse({"error": "missing_topic"}, status_code=400)
    queue: asyncio.Queue[ServerSentEvent] = asyncio.Queue(MAX_QUEUE)
    topics.setdefault(topic, set()).add(queue)  # subscribed before the headers go out

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            while True:
                yield await queue.get()
        finally:
            subscribers = topics.get(topic)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del topics[topic]

    return EventSourceResponse(stream(), ping=15)


def broadcast(topic: str, data: str, event: str = "message") -> str:
    event_id = str(next(ids))
    message = ServerSentEvent(data, event=event, id=event_id)
    for queue in tuple(topics.get(topic, ())):
        # QueueFull: a stream this far behind loses events; there is no history to resume from.
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(message)
    return event_id


async def publish(request: Request) -> Response:
    body = await request.json()
    if "events" in body:
        published = [
            broadcast(e["topic"], e["data"], e.get("type", "message")) for e in body["events"]
        ]
        return JSONResponse({"ids": published}, status_code=201)
    return JSONResponse(
        {"id": broadcast(body["topic"], body["data"], body.get("type", "message"))},
        status_code=201,
    )


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/events", events),
        Route("/publish", publish, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)
