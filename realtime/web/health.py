"""``/healthz``, ``/readyz`` and ``/metrics``: what a load balancer and Prometheus ask."""

from __future__ import annotations

from flask import Response, jsonify, request

from realtime.core.access import authorize_metrics
from realtime.ops import metrics
from realtime.web.blueprint import blueprint
from realtime.web.request import rt


@blueprint.get("/healthz")
def healthz() -> Response:
    """Live: the worker answers. It says nothing of Redis (``/readyz`` does)."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    state = rt()
    hub = state.hub
    redis_ok = state.broker.ping()
    reader_ok = hub.ready if hub.running else redis_ok
    # A worker at its stream limit is not ready, so a load balancer sends new streams elsewhere
    # before clients are refused; it is live all the same, and still answers everything else.
    full = hub.full
    ready = redis_ok and reader_ok and not hub.draining and not full
    body = jsonify(
        ready=ready,
        draining=hub.draining,
        redis=redis_ok,
        reader=reader_ok,
        full=full,
        streams=hub.subscription_count,
        max_streams=hub.max_connections,
        reader_reconnects=hub.reconnects,
    )
    if not ready:
        body.headers["Retry-After"] = "1"
    return body, (200 if ready else 503)


@blueprint.get("/metrics")
def metrics_text() -> Response:
    """Prometheus text format, summed over every worker (see :mod:`realtime.ops.metrics`); behind
    ``REALTIME_METRICS_TOKEN`` when one is set (Prometheus sends it as its bearer token)."""
    expected = rt().settings.metrics_token
    if expected is not None:
        authorize_metrics(request.headers.get("Authorization"), expected)
    body, content_type = metrics.render()
    return Response(body, status=200, content_type=content_type)
