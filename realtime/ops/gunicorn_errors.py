"""gunicorn's own refusals, in the JSON error contract.

gunicorn refuses some requests before the app sees them: a request line longer than
``limit_request_line`` (414), a header longer than ``limit_request_field_size`` or more headers
than ``limit_request_fields`` (431), a malformed request line or header (400), a transfer coding
it does not speak (501). It writes those answers with one function, ``gunicorn.util.write_error``,
as an HTML page. :func:`install` (called by ``gunicorn.conf.py`` in every worker) puts
:func:`write_json_error` in its place: the same status, reason and message, as
``{"error": <code>, "message": <sentence>}``, so a client of this API parses every refusal the
same way. gunicorn's message may quote the request line, which can hold a query-string token:
it is redacted, as in the logs.

Deliberately the one function and nothing else: which requests gunicorn refuses, and when, stays
gunicorn's. Under another gunicorn configuration (an app embedding realtime) these answers stay
HTML unless that configuration calls :func:`install` too.
"""

from __future__ import annotations

import json
from typing import Any

from realtime.ops.redact import redact_url

# gunicorn's statuses (gunicorn/workers/base.py, handle_error) -> our stable codes.
CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def json_error(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP/1.1 answer: status line, headers, a JSON body; the connection closes."""
    code = CODES.get(status, reason.lower().replace(" ", "_") or "error")
    body = json.dumps({"error": code, "message": redact_url(message) or reason}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error``'s signature, writing :func:`json_error` instead of HTML."""
    from gunicorn import util

    util.write_nonblock(sock, json_error(status_int, reason, mesg))


def install() -> None:
    """Make this process's gunicorn write its refusals as JSON."""
    from gunicorn import util

    util.write_error = write_json_error
