"""Prometheus metrics, correct under several gunicorn workers.

Metrics are process-global, the prometheus-client way. Under gunicorn, ``gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, so every worker writes its values to files
there and one scrape of ``/metrics`` on any worker adds them all up; the gauge of open
connections counts live workers only (``livesum``), and a dead worker's files are marked so.

Costs are kept off the per-delivery path: deliveries are counted and the delivery lag observed
once per write of a stream (a coalesced chunk or a WebSocket batch, with the lag of its oldest
event), and once per event for what the reader writes straight to waiting streams' sockets
(counted once per batch, the lag taken when its last such write is done).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

TRANSPORTS = ("sse", "ws")

CONNECTIONS = Gauge(
    "realtime_connections_open",
    "Open SSE streams and WebSockets.",
    ["transport"],
    multiprocess_mode="livesum",
)
STREAMS_HELD = Gauge(
    "realtime_streams_held",
    "Open SSE streams the worker holds without a greenlet of their own (idle between writes; "
    "included in realtime_connections_open).",
    multiprocess_mode="livesum",
)
PUBLISHED = Counter("realtime_events_published", "Events stored (retried duplicates excluded).")
DELIVERED = Counter("realtime_events_delivered", "Live events written to clients.", ["transport"])
WRITTEN_DIRECT = Counter(
    "realtime_events_written_direct",
    "Live SSE deliveries the reader wrote straight to a waiting stream's socket "
    "(included in realtime_events_delivered_total).",
)
REPLAYED = Counter("realtime_events_replayed", "Events sent from history on resume.", ["transport"])
RESETS = Counter("realtime_resets", "Resumes that could not be exact and got a reset.", ["reason"])
STREAM_STARTS = Counter(
    "realtime_stream_starts",
    "Where a new SSE stream's start (and its replay) came from: the worker's memory of recent "
    "events (memory) or Redis (storage).",
    ["source"],
)
OVERFLOWS = Counter(
    "realtime_overflow_disconnects",
    "Connections cut because they fell REALTIME_MAX_QUEUE events behind.",
    ["transport"],
)
REFUSED = Counter(
    "realtime_connections_refused",
    "Streams and WebSockets refused at a limit (429 / close 1013): the worker's "
    "REALTIME_MAX_CONNECTIONS (worker_full) or REALTIME_MAX_CONNECTIONS_PER_IP (address_full).",
    ["transport", "reason"],
)
READER_RECONNECTS = Counter(
    "realtime_reader_reconnects", "Times a worker's firehose reader reconnected to Redis."
)
READER_RESYNCS = Counter(
    "realtime_reader_resyncs",
    "Times a reader lost continuity (gap or new epoch) and sent its streams to resume.",
)
REDIS_ERRORS = Counter("realtime_redis_errors", "Redis failures seen.", ["where"])
PUBLISH_LATENCY = Histogram(
    "realtime_publish_latency_seconds",
    "Time to store a publish in Redis (the wait for the round trip in flight, then its own).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
DELIVERY_LAG = Histogram(
    "realtime_delivery_lag_seconds",
    "From publish to the write to the client's socket (oldest event of each write).",
    ["transport"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_OPEN_CONNECTIONS: dict[str, Any] = {}


def open_connections(transport: str) -> Any:
    """The open-connections gauge of ``transport``, resolved once per transport: every stream's
    start and end touch it (``labels`` takes a lock and builds a key each time)."""
    gauge = _OPEN_CONNECTIONS.get(transport)
    if gauge is None:
        gauge = _OPEN_CONNECTIONS[transport] = CONNECTIONS.labels(transport)
    return gauge


STARTS_FROM_MEMORY = STREAM_STARTS.labels("memory")  # resolved once: a storm looks them up
STARTS_FROM_STORAGE = STREAM_STARTS.labels("storage")  # a thousand times a second

for _transport in TRANSPORTS:  # present at zero from the first scrape
    CONNECTIONS.labels(_transport)
    DELIVERED.labels(_transport)
    REPLAYED.labels(_transport)
    OVERFLOWS.labels(_transport)
    for _reason in ("worker_full", "address_full"):
        REFUSED.labels(_transport, _reason)


def render() -> tuple[bytes, str]:
    """The text exposition of every worker's metrics (or this process's, outside gunicorn)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
