"""``POST /publish``: the HTTP publish front door (JSON, a batch, or a form).

Reading the body is this door's own business (limits, content types, browser origins); what a
publish means is :func:`realtime.web.service.publish`, shared with the WebSocket door.
"""

from __future__ import annotations

from flask import Response, jsonify, request

from realtime.core.access import authorize_browser_publish
from realtime.core.errors import AuthError
from realtime.core.publishing import parse_publish, validate_idempotency_key
from realtime.web import service
from realtime.web.blueprint import blueprint
from realtime.web.request import request_auth, request_body, request_form, rt


@blueprint.post("/publish")
def publish() -> tuple[Response, int]:
    state = rt()
    token, grant, source = request_auth()
    if grant is None or source is None:
        raise AuthError("Publishing needs a token with publish rights.", code="missing_token")
    settings = state.settings
    authorize_browser_publish(
        source,
        request.headers.get("Origin"),
        scheme=request.scheme,
        host=request.host,
        allowed=settings.trusted_origins,
    )
    idempotency = validate_idempotency_key(request.headers.get("Idempotency-Key"))
    json_body = request.mimetype == "application/json"
    raw = request_body(settings.max_body, keep=not json_body)
    drafts, batch = parse_publish(
        request.mimetype,
        body=raw if json_body else None,
        form=None if json_body else request_form(),
        max_payload=settings.max_payload,
        max_batch=settings.max_batch,
    )
    published = service.publish(
        state, drafts, grant=grant, token=token, idempotency_key=idempotency
    )
    body = jsonify(ids=published.ids) if batch else jsonify(id=published.ids[0])
    if published.duplicate:
        body.headers["Idempotent-Replayed"] = "true"
    return body, 201
