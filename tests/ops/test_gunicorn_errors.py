"""Tests for :mod:`realtime.ops.gunicorn_errors`: gunicorn's refusals as JSON (the end-to-end proof,
against real gunicorn, is ``tests/system/test_security.py``'s finding 10)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime.ops.gunicorn_errors import json_error


def parts(raw: bytes) -> tuple[str, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    assert int(headers["content-length"]) == len(body)
    return status, headers, json.loads(body)


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        (400, "Bad Request", "bad_request"),
        (414, "URI Too Long", "uri_too_long"),
        (431, "Request Header Fields Too Large", "header_fields_too_large"),
        (500, "Internal Server Error", "internal_error"),
        (501, "Bad Request", "not_implemented"),
        (418, "I'm A Teapot", "i'm_a_teapot"),  # an unlisted status keeps gunicorn's reason
    ],
)
def test_a_refusal_is_the_json_error_contract_with_gunicorns_status(
    status: int, reason: str, code: str
) -> None:
    line, headers, body = parts(json_error(status, reason, "what gunicorn said"))
    assert line == f"HTTP/1.1 {status} {reason}"
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body == {"error": code, "message": "what gunicorn said"}


def test_an_empty_message_becomes_the_reason_and_a_quoted_token_is_redacted() -> None:
    assert parts(json_error(500, "Internal Server Error", ""))[2] == {
        "error": "internal_error",
        "message": "Internal Server Error",
    }
    said = "Invalid Request Line 'GET /events?access_token=eyJ.secret x'"
    message = parts(json_error(400, "Bad Request", said))[2]["message"]
    assert "secret" not in message
    assert "access_token=[redacted]" in message
