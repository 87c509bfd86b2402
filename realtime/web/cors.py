"""CORS for dashboards on other origins: ``REALTIME_CORS_ORIGINS``, through flask-cors.

A page on ``https://app.example.com`` that follows ``/events`` here with
``new EventSource(url, {withCredentials: true})``, or posts to ``/publish`` with
``fetch(..., {credentials: "include"})``, needs the browser's permission: the exact origin
echoed back with ``Access-Control-Allow-Credentials: true``, and a preflight answered for the
headers it sends (``Content-Type: application/json``, ``Authorization``, ``Idempotency-Key``,
and ``Last-Event-ID``, which EventSource adds when it resumes). An origin not listed gets no
CORS header at all, so the browser refuses the page the answer.

Only ``/events``, ``/publish``, ``/presence`` and the Mercure hub (under the prefix) get
headers: an app embedding realtime keeps its own CORS policy for its own routes. flask-cors
adds its headers in an ``after_request``, before a stream's body starts, so it holds for SSE
under gevent too.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask_cors import CORS

#: What a cross-origin page may send: its body's type, a token header, a retry's key, and the
#: id a resuming EventSource sends (not CORS-safelisted, so it is preflighted).
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"]
#: What it may read of an answer besides the safelisted headers.
EXPOSED_HEADERS = ["Retry-After", "Idempotent-Replayed"]
CORS_ROUTES = ("events", "publish", "presence")
#: The Mercure hub and its subscriptions API: a page reads the cursor of a subscription
#: (``Mercure-Last-Event-ID``, draft 07's ``Last-Event-ID``) and of the API (``Link``).
MERCURE_ROUTES = r"\.well-known/mercure(?:/subscriptions(?:/.*)?)?"
MERCURE_EXPOSED_HEADERS = ["Link", "Mercure-Last-Event-ID", "Last-Event-ID", "WWW-Authenticate"]
PREFLIGHT_MAX_AGE_S = 600


def enable_cors(
    app: Flask, origins: tuple[str, ...], url_prefix: str | None, *, mercure: bool = False
) -> None:
    """Answer CORS for realtime's browser routes on ``app``, for exactly ``origins``; with
    ``mercure``, the Mercure hub's too."""
    prefix = re.escape(url_prefix or "")
    routes = "|".join(CORS_ROUTES)
    resources: dict[str | re.Pattern[str], dict[str, Any]] = {
        re.compile(rf"^{prefix}/({routes})$"): {}
    }
    if mercure:
        resources[re.compile(rf"^{prefix}/{MERCURE_ROUTES}$")] = {
            "expose_headers": EXPOSED_HEADERS + MERCURE_EXPOSED_HEADERS,
            # Draft 07 has query-token clients send Cache-Control; EventSource polyfills do.
            "allow_headers": [*ALLOWED_HEADERS, "Cache-Control"],
        }
    CORS(
        app,
        resources=resources,
        origins=list(origins),
        supports_credentials=True,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        methods=["GET", "POST", "OPTIONS"],
        max_age=PREFLIGHT_MAX_AGE_S,
        vary_header=True,
    )
