"""The WebSocket's JSON messages: parse what a client sends, build what the server sends. Pure.

Every client message is a JSON object with a ``type`` and an optional ``req`` (a string or an
integer the server echoes so the client can match answers to requests). Parsing either returns a
:class:`Message` whose body has been checked for its type, or raises :class:`MessageError`
carrying the stable code and the ``req`` (when one could be read), so the session can answer with
an ``error`` frame and keep the socket open.

A text frame is valid UTF-8, but a JSON ``\\ud800`` escape in it decodes to a lone surrogate,
which cannot be encoded again: strings the session sends back (``req``) or hands to a library
that encodes them (an ``auth`` token) are refused unless they are valid Unicode."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from realtime.core.errors import ERROR_STATUS, ClientError
from realtime.core.topics import check_topic_count, distinct, validate_topic

MAX_REQ_LENGTH = 64
MAX_LAST_ID_LENGTH = 256
CLIENT_TYPES = frozenset({"auth", "subscribe", "unsubscribe", "publish", "presence", "ping"})
PUBLISH_FIELDS = frozenset({"type", "req", "topic", "data", "event", "idempotency_key"})

Req = str | int | None


class MessageError(ClientError):
    """A client message the session refuses; ``req`` is echoed in the ``error`` frame. Its
    status is the code's own (a frame carries none, but a code means one thing everywhere)."""

    def __init__(self, message: str, *, code: str, req: Req = None) -> None:
        super().__init__(message, code=code, status=ERROR_STATUS.get(code, 400))
        self.req = req


@dataclass(frozen=True)
class Message:
    type: str
    req: Req
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def topics(self) -> list[str]:
        topics: list[str] = self.body["topics"]
        return topics


def encode(type: str, **fields: Any) -> str:
    """A server message: compact JSON with ``type`` first; ``None`` fields are left out."""
    payload: dict[str, Any] = {"type": type}
    payload.update({k: v for k, v in fields.items() if v is not None})
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def error_frame(err: ClientError, req: Req = None) -> str:
    return json.dumps(
        {"type": "error", "req": req, "error": err.code, "message": err.message},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _is_unicode(text: str) -> bool:
    """Whether ``text`` can be sent back: a frame's JSON is valid UTF-8, but a ``\\ud800``
    escape in it decodes to a lone surrogate, which no text frame can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _req(doc: dict[str, Any]) -> Req:
    req = doc.get("req")
    if req is None:
        return None
    if isinstance(req, bool) or not isinstance(req, str | int):
        raise MessageError("req must be a string or an integer.", code="invalid_request")
    if isinstance(req, str) and len(req) > MAX_REQ_LENGTH:
        raise MessageError(
            f"req is longer than {MAX_REQ_LENGTH} characters.", code="invalid_request"
        )
    if isinstance(req, str) and not _is_unicode(req):
        raise MessageError("req is not valid Unicode text.", code="invalid_request")
    if isinstance(req, int) and abs(req) > 2**53:
        raise MessageError("req is too large an integer.", code="invalid_request")
    return req


def _topic_list(doc: dict[str, Any], req: Req, max_topics: int) -> list[str]:
    topics = doc.get("topics")
    if isinstance(topics, str):
        topics = [topics]
    if not isinstance(topics, list) or not topics:
        raise MessageError("topics must be a non-empty list.", code="missing_topic", req=req)
    try:
        check_topic_count(len(topics), max_topics)
        return list(distinct(validate_topic(t) for t in topics))
    except ClientError as exc:
        raise MessageError(exc.message, code=exc.code, req=req) from None


def parse_message(raw: str | bytes, *, max_topics: int) -> Message:
    """Check one client message; see the module docstring."""
    if isinstance(raw, bytes):
        raise MessageError("Send JSON text frames, not binary ones.", code="invalid_json")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise MessageError("The message is not valid JSON.", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise MessageError("A message is a JSON object.", code="invalid_json")
    req = _req(doc)
    kind = doc.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        known = ", ".join(sorted(CLIENT_TYPES))
        raise MessageError(
            f"Unknown message type {kind!r}; expected one of {known}.",
            code="unknown_type",
            req=req,
        )
    body: dict[str, Any] = {}
    if kind == "auth":
        token = doc.get("token")
        if not isinstance(token, str) or not token:
            raise MessageError("auth needs a token.", code="missing_token", req=req)
        if not _is_unicode(token):
            raise MessageError(
                "The token is not valid Unicode text.", code="invalid_token", req=req
            )
        body["token"] = token
    elif kind in ("subscribe", "unsubscribe"):
        body["topics"] = _topic_list(doc, req, max_topics)
        last_id = doc.get("last_id")
        if kind == "subscribe" and last_id is not None:
            if not isinstance(last_id, str) or len(last_id) > MAX_LAST_ID_LENGTH:
                raise MessageError(
                    "last_id must be an event id string.", code="invalid_last_event_id", req=req
                )
            body["last_id"] = last_id or None
    elif kind == "publish":
        unknown = sorted(set(doc) - PUBLISH_FIELDS)
        if unknown:  # as the HTTP publish refuses them: a typo must not publish something else
            raise MessageError(
                f"publish has unknown field(s) {', '.join(map(repr, unknown))}; it takes "
                "topic, data, event and idempotency_key.",
                code="unknown_field",
                req=req,
            )
        # The event's type travels as "event" (as in event frames): "type" names the message.
        body.update({k: doc[k] for k in ("topic", "data") if k in doc})
        if doc.get("event") is not None:
            body["type"] = doc["event"]
        if doc.get("idempotency_key") is not None:
            body["idempotency_key"] = doc["idempotency_key"]
    elif kind == "presence":
        try:
            body["topic"] = validate_topic(doc.get("topic"))
        except ClientError as exc:
            raise MessageError(exc.message, code=exc.code, req=req) from None
    return Message(kind, req, body)
