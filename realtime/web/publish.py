"""``POST /publish``: the HTTP publish front door (JSON, a batch, or a form).

Reading the body is this door's own business (limits, content types, browser origins); what a
publish means is :func:`realtime.web.service.publish`, shared with the WebSocket door. The
decisions of this door, in their order, are :func:`store_publish`, which the lean path of
realtime's gunicorn worker (:mod:`realtime.web.lean`) calls too, so a publish is refused or
stored alike whichever of the two read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, jsonify, request

from realtime.core.access import authorize_browser_publish
from realtime.core.auth import Grant
from realtime.core.errors import AuthError
from realtime.core.events import Published
from realtime.core.publishing import JSON_TYPES, parse_publish, validate_idempotency_key
from realtime.web import service
from realtime.web.blueprint import blueprint
from realtime.web.request import request_auth, request_body, request_form, rt
from realtime.web.state import RealtimeState

#: What the answer of a stored publish says in the replay header.
REPLAYED_HEADER = "Idempotent-Replayed"


def store_publish(
    state: RealtimeState,
    *,
    token: str | None,
    grant: Grant | None,
    source: str | None,
    origin: str | None,
    scheme: str,
    host: str | None,
    idempotency_key: str | None,
    mimetype: str,
    read_body: Callable[[], bytes],
    read_form: Callable[[], Mapping[str, list[str]]],
) -> tuple[Published, bool]:
    """Decide and store one publish request: the ids, and whether it was a batch.

    The order of the refusals is the API's: no grant (401), a cross-site browser (403), a bad
    ``Idempotency-Key`` (400), then the body, read only now (413, 415, 400), then the publish
    itself (403 for a topic the grant lacks, 429, 503)."""
    if grant is None or source is None:
        raise AuthError("Publishing needs a token with publish rights.", code="missing_token")
    settings = state.settings
    authorize_browser_publish(
        source, origin, scheme=scheme, host=host, allowed=settings.trusted_origins
    )
    idempotency = validate_idempotency_key(idempotency_key)
    body = read_body()
    json_body = mimetype in JSON_TYPES
    drafts, batch = parse_publish(
        mimetype,
        body=body if json_body else None,
        form=None if json_body else read_form(),
        max_payload=settings.max_payload,
        max_batch=settings.max_batch,
    )
    published = service.publish(
        state, drafts, grant=grant, token=token, idempotency_key=idempotency
    )
    return published, batch


def publish_reply(published: Published, batch: bool) -> dict[str, Any]:
    """The JSON answer of a stored publish: ``{"ids": [...]}`` for a batch, else ``{"id"}``."""
    return {"ids": published.ids} if batch else {"id": published.ids[0]}


@blueprint.post("/publish")
def publish() -> tuple[Response, int]:
    state = rt()
    token, grant, source = request_auth()
    json_body = request.mimetype in JSON_TYPES
    max_body = state.settings.max_body
    published, batch = store_publish(
        state,
        token=token,
        grant=grant,
        source=source,
        origin=request.headers.get("Origin"),
        scheme=request.scheme,
        host=request.host,
        idempotency_key=request.headers.get("Idempotency-Key"),
        mimetype=request.mimetype,
        read_body=lambda: request_body(max_body, keep=not json_body),
        read_form=request_form,
    )
    body = jsonify(**publish_reply(published, batch))
    if published.duplicate:
        body.headers[REPLAYED_HEADER] = "true"
    return body, 201
