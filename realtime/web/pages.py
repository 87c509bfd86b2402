"""The pages: the demo dashboard at ``/`` and the OpenAPI document at ``/openapi.json``."""

from __future__ import annotations

from flask import Response, jsonify

from realtime.web import openapi
from realtime.web.blueprint import blueprint, dashboard

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


@dashboard.get("/")
def index() -> Response:
    """The demo page (``realtime/web/static/index.html``, its script ``dashboard.js``), built on
    ``<prefix>/static/realtime.js``, with the security headers of :data:`DASHBOARD_HEADERS`."""
    response = blueprint.send_static_file("index.html")
    response.headers.update(DASHBOARD_HEADERS)
    return response


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI document of this HTTP API (see :mod:`realtime.web.openapi`)."""
    return jsonify(openapi.document())
