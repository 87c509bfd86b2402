"""flask-sse on gunicorn + gevent: the Flask incumbent, as its README sets it up.

The ``sse`` blueprint streams ``/stream?channel=NAME``: each stream holds its own Redis pub/sub
connection and sends its response headers with its first event (gunicorn writes headers with the
first body chunk), so the suite asks ``POST /subscribers`` (``PUBSUB NUMSUB``) when its streams
are subscribed instead of waiting for headers. ``sse.publish`` is one Redis ``PUBLISH`` (on a
new client each call, as flask-sse does); a batch is a loop of them. Ids are a per-process
counter: one worker. Redis pub/sub keeps no history, so nothing resumes (the storm is n/a).

Run: ``gunicorn -k gevent --chdir bench/peers flasksse_app:app`` with ``REDIS_URL`` set.
"""

from __future__ import annotations

import itertools
import os

from flask import Flask, Response, jsonify, request
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")
ids = itertools.count(1)


def _publish(event: dict[str, str]) -> str:
    event_id = str(next(ids))
    sse.publish(
        event["data"], type=event.get("type", "message"), id=event_id, channel=event["topic"]
    )
    return event_id


@app.post("/publish")
def publish() -> tuple[Response, int]:
    body = request.get_json()
    if "events" in body:
        return jsonify(ids=[_publish(e) for e in body["events"]]), 201
    return jsonify(id=_publish(body)), 201


@app.post("/subscribers")
def subscribers() -> Response:
    """How many streams are subscribed to these channels (for the suite's readiness check)."""
    topics = request.get_json()["topics"]
    counts = sse.redis.pubsub_numsub(*topics) if topics else []
    return jsonify(subscribers=sum(n for _, n in counts))


@app.get("/healthz")
def healthz() -> str:
    return "ok"
