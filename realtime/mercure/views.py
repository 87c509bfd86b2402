"""``/.well-known/mercure``: the Mercure hub, one more front door on the same storage and fan-out.

- ``GET``: subscribe (:mod:`realtime.mercure.stream`), selectors from the query, the cursor from
  ``Last-Event-ID`` (header, then ``last_event_id``, then draft 07's ``lastEventID``);
- ``POST``: publish a form update, answered ``200 text/plain`` with its id;
- ``GET /subscriptions…``: the active subscriptions of every worker and host, from presence.

Refusals keep the JSON error contract of every door (``error``, ``message``) and add what the
spec asks of a Mercure hub: a ``WWW-Authenticate: Bearer`` challenge on token failures, with
``invalid_token`` or ``insufficient_scope`` (draft 08, "Error Responses").
"""

from __future__ import annotations

import logging
import random
from urllib.parse import parse_qsl, quote, urlsplit

import gevent
from flask import Blueprint, Flask, Response, jsonify, request, url_for
from werkzeug.routing import PathConverter

from realtime.core.access import authorize_browser_publish, publisher_scope
from realtime.core.errors import (
    AuthError,
    BadRequest,
    BrokerError,
    ClientError,
    Forbidden,
    UnsupportedMediaType,
)
from realtime.core.sse import encode_comment, encode_retry
from realtime.mercure.active import (
    ActiveSubscription,
    document,
    new_subscriber,
    parse_presence_name,
    presence_name,
    select,
    subscription_updates,
)
from realtime.mercure.selectors import parse_selectors
from realtime.mercure.store import UPDATES_TOPIC, to_draft
from realtime.mercure.stream import Reader, current_cursor, open_subscription
from realtime.mercure.subscriptions import DRAFT_07, collection_document, parse_api_path
from realtime.mercure.tokens import (
    ANONYMOUS,
    QUERY_PARAMETER,
    MercureGrant,
    find_token,
    verify,
)
from realtime.mercure.updates import MAX_ID_LENGTH, parse_update
from realtime.publisher import Publisher
from realtime.web.events import SSE_CONTENT_TYPE, SSE_HEADERS
from realtime.web.request import client_address, limit_body, request_body, rt
from realtime.web.responses import client_error, register_error_handlers

log = logging.getLogger(__name__)

HUB_PATH = "/.well-known/mercure"
FORM = "application/x-www-form-urlencoded"
JSON_LD = "application/ld+json"
#: The publisher scope (rate, idempotency) of the hub's own subscription events.
HUB_SCOPE = "mercure:hub"

mercure = Blueprint("mercure", __name__)
mercure.before_request(limit_body)


# -- the hub's address and the request's token ---------------------------------------------------


def hub_path() -> str:
    """The hub's path on this server (under the prefix, if any): subscription topics are
    relative to it."""
    return url_for("mercure.subscribe")


def hub_url() -> str:
    """The hub's absolute URL, as the client reached it: relative topics and URL Patterns
    resolve against it."""
    return url_for("mercure.subscribe", _external=True)


def link_header(last_event_id: str | None = None, **attributes: str) -> str:
    """The discovery ``Link`` (draft 08, "Discovery"), with the reconciliation cursor and any
    other target attributes (``type``, ``content-type``)."""
    value = f'<{hub_url()}>; rel="mercure"'
    if last_event_id is not None:
        value += f"; last-event-id={quoted(last_event_id)}"
    for name, text in attributes.items():
        value += f"; {name.replace('_', '-')}={quoted(text)}"
    return header_value(value)


def header_value(text: str) -> str:
    """``text`` as a WSGI header value: its UTF-8 bytes, carried one per character (WSGI's
    Latin-1 convention), as the reference hub sends a non-ASCII id."""
    return text.encode("utf-8").decode("latin-1")


def header_text(value: str) -> str:
    """A request header's text: WSGI hands its bytes over as Latin-1 characters, and a
    browser's ``Last-Event-ID`` is UTF-8 (an id as the client got it)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def quoted(text: str) -> str:
    """An RFC 9110 quoted-string: a publisher's id may hold ``"`` or ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def discovery_link(*, cursor: bool = True, **attributes: str) -> str:
    """The ``Link`` a host view adds to a resource it serves, so a Mercure client finds the hub
    and, with ``cursor``, every update published after the resource was generated (it passes
    the ``last-event-id`` back as ``last_event_id``)."""
    return link_header(current_cursor(rt().broker) if cursor else None, **attributes)


def request_grant(*, required: bool) -> tuple[MercureGrant, str | None, str | None]:
    """The caller's grant, its token and where that came from; without a token, the anonymous
    grant when ``required`` is false, else 401 (a challenge without an error code)."""
    state = rt()
    found = find_token(
        authorization=request.headers.get("Authorization"),
        query=request.args.get(QUERY_PARAMETER),
        cookies=request.cookies,
    )
    if found is None:
        if required:
            raise AuthError("This needs a Mercure token.", code="missing_token")
        return ANONYMOUS, None, None
    token, source = found
    settings = state.settings
    grant = verify(
        state.verifier,
        token,
        base=hub_url(),
        audience=settings.mercure_audience,
        issuer=settings.mercure_issuer,
        source=source,
    )
    return grant, token, source


def insufficient(message: str) -> Forbidden:
    return Forbidden(message, code="insufficient_scope")


# -- errors --------------------------------------------------------------------------------------

#: The Bearer challenge each token refusal carries (RFC 6750, section 3).
CHALLENGES = {
    "missing_token": "Bearer",
    "invalid_token": 'Bearer error="invalid_token"',
    "token_too_large": 'Bearer error="invalid_token"',
    "invalid_request": 'Bearer error="invalid_request"',
    "insufficient_scope": 'Bearer error="insufficient_scope"',
}


def mercure_error(err: ClientError) -> Response:
    response = client_error(err)
    challenge = CHALLENGES.get(err.code)
    if challenge is not None:
        response.headers["WWW-Authenticate"] = challenge
    return response


register_error_handlers(mercure)
mercure.register_error_handler(ClientError, mercure_error)


# -- subscribe -----------------------------------------------------------------------------------


def requested_cursor() -> str | None:
    """The id to resume after: the ``Last-Event-ID`` header wins, then draft 08's
    ``last_event_id``, then draft 07's ``lastEventID``. Any id a publisher may give
    (:data:`~realtime.mercure.updates.MAX_ID_LENGTH`) may come back."""
    header = request.headers.get("Last-Event-ID")
    for value in (
        header_text(header) if header is not None else None,
        request.args.get("last_event_id"),
        request.args.get("lastEventID"),
    ):
        if value is not None and value.strip():
            if len(value) > MAX_ID_LENGTH:
                raise BadRequest(
                    f"Last-Event-ID is longer than {MAX_ID_LENGTH} characters.",
                    code="invalid_last_event_id",
                )
            return value
    return None


def draining() -> Response:
    """A stopping worker's answer: 200 with a short ``retry:``, so the client reconnects
    elsewhere with the id it had (a 503 would end a browser's EventSource for good)."""
    body = encode_retry(random.randint(250, 1500)) + encode_comment("draining")  # noqa: S311
    return Response(body, 200, content_type=SSE_CONTENT_TYPE, headers=SSE_HEADERS)


@mercure.get(HUB_PATH)
def subscribe() -> Response:
    state = rt()
    if request.method == "HEAD":
        # Headers only: a HEAD's body is never sent, so a stream behind it would never notice
        # its client leave and would hold its slot for ever.
        return Response(b"", 200, content_type=SSE_CONTENT_TYPE, headers=SSE_HEADERS)
    if state.hub.draining:
        return draining()
    base = hub_url()
    selectors = parse_selectors(request.args.items(multi=True), base=base)
    grant, _token, _source = request_grant(required=not state.settings.mercure_anonymous)
    requested = requested_cursor()
    address = client_address()
    subscriber = new_subscriber()
    announced = None
    on_end = None
    if state.settings.mercure_subscriptions:
        announced = [
            ActiveSubscription(selector, subscriber, grant.payload_for(selector.text, base))
            for selector in selectors.selectors
        ]
        announce = Announcer(state.publisher, hub_path(), announced)
        on_end = announce.ended
    stream, start = open_subscription(
        state.hub,
        state.broker,
        state.settings,
        Reader(selectors, grant),
        requested,
        who=presence_name(subscriber, announced),
        address=address,
        environ=request.environ,
        on_end=on_end,
    )
    try:
        if announced is not None:
            announce.began(address)
        headers = {
            **SSE_HEADERS,
            # Draft 08 names the cursor Mercure-Last-Event-ID, draft 07 Last-Event-ID: both.
            "Mercure-Last-Event-ID": header_value(start.cursor),
            "Last-Event-ID": header_value(start.cursor),
            "Link": link_header(),
        }
        return Response(
            stream, 200, content_type=SSE_CONTENT_TYPE, headers=headers, direct_passthrough=True
        )
    except BaseException:
        stream.close()  # never handed to the server: give back what it holds now
        raise


class Announcer:
    """The subscription events of one connection (the subscriptions feature on): published
    when it opens, and when it ends from a greenlet of their own, since a stream ends in the
    server's close as well as in its own body. The end is best effort: a connection that
    closes while Redis is away leaves presence within its TTL all the same."""

    def __init__(
        self, publisher: Publisher, path: str, subscriptions: list[ActiveSubscription]
    ) -> None:
        self.publisher = publisher
        self.path = path
        self.subscriptions = subscriptions

    def began(self, address: str) -> None:
        """Announce the subscriptions, counted against the client address's publish rate: a
        client reconnecting in a loop must not fill the live feed every door resumes from (a
        429 then refuses the subscription)."""
        try:
            self._publish(active=True, scope=f"{HUB_SCOPE}:{address}", limited=True)
        except BrokerError as exc:
            log.warning("could not announce Mercure subscriptions: %s", exc)

    def ended(self) -> None:
        try:
            gevent.spawn(self._ended)
        except RuntimeError:  # a stream dropped unclosed, finalized with its greenlet
            log.info("a Mercure stream ended unannounced; presence forgets it within its TTL")

    def _ended(self) -> None:
        try:
            self._publish(active=False)
        except BrokerError as exc:
            log.warning("could not announce the end of Mercure subscriptions: %s", exc)

    def _publish(self, *, active: bool, scope: str = HUB_SCOPE, limited: bool = False) -> None:
        # The end is never limited: it is bounded by the beginnings that were let through.
        updates = subscription_updates(self.subscriptions, active=active, hub_path=self.path)
        self.publisher.store(
            [to_draft(u) for u in updates], scope=scope, limited=limited, idempotency_key=None
        )


# -- publish -------------------------------------------------------------------------------------


def request_pairs() -> list[tuple[str, str]]:
    """The publish form's fields in order (``topic`` repeats); 415 for another body type."""
    if request.mimetype != FORM:
        raise UnsupportedMediaType(
            f"A Mercure publish is a form: send Content-Type: {FORM}.",
            code="unsupported_media_type",
        )
    raw = request_body(rt().settings.max_body, keep=False)
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("The form is not valid UTF-8.", code="bad_form") from None


@mercure.post(HUB_PATH)
def publish() -> Response:
    state = rt()
    grant, token, source = request_grant(required=True)
    if token is None or source is None or grant.publish is None:
        raise insufficient("This token grants no publish rights on this hub.")
    settings = state.settings
    # The CSRF guard: a cookie (or query) token publishes only from a page of an allowed Origin.
    authorize_browser_publish(
        source,
        request.headers.get("Origin"),
        scheme=request.scheme,
        host=request.host,
        allowed=settings.trusted_origins,
        cookie="Mercure",
    )
    update = parse_update(
        request_pairs(),
        hub_url=hub_url(),
        max_topics=settings.max_topics,
        max_payload=settings.max_payload,
    )
    if not grant.can_publish(update.topics):
        raise insufficient("This token may not publish to every topic of this update.")
    draft = to_draft(update)
    state.publisher.store(
        [draft], scope=publisher_scope(grant.subject, token), limited=True, idempotency_key=None
    )
    return Response(
        draft.alias, 200, content_type="text/plain; charset=utf-8", headers={"Link": link_header()}
    )


# -- the subscriptions API -----------------------------------------------------------------------


def raw_path() -> str:
    """The request's path as sent, still percent-encoded (a ``%2F`` inside a selector stays
    inside it), without the query."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        path = urlsplit(raw).path
        if path.startswith("/"):
            return path
    return quote(request.script_root + request.path)


class SubscriptionsRest(PathConverter):
    """What follows ``/subscriptions/``, empty segments included: a draft 07 ``{topic}`` that
    starts with ``/`` (``%2F``: a relative selector) arrives decoded as ``subscriptions//...``,
    which ``<path:>`` refuses and werkzeug would "fix" with a 308 to another resource. The view
    reads the raw path anyway (:func:`raw_path`)."""

    regex = ".+"
    part_isolating = False


@mercure.get(HUB_PATH + "/subscriptions")
@mercure.get(HUB_PATH + "/subscriptions/<mercure_rest:rest>", merge_slashes=False)
def subscriptions(rest: str | None = None) -> Response:
    state = rt()
    if not state.settings.mercure_subscriptions:
        raise ClientError(
            "The subscriptions API is off (REALTIME_MERCURE_SUBSCRIPTIONS=0).",
            code="not_found",
            status=404,
        )
    path = raw_path()
    api = parse_api_path(path, hub_path())
    if api is None:
        raise ClientError(f"No subscriptions resource at {path}.", code="not_found", status=404)
    grant, _token, _source = request_grant(required=True)
    # The topic to authorize is the path itself (draft 08, "Subscription API").
    if grant.subscribe is None or not grant.subscribe.matches(path):
        raise insufficient("This token does not grant subscribe on this subscriptions resource.")
    presence = state.hub.presence
    if presence is None:  # the settings refuse the feature without presence
        raise ClientError("Presence is off.", code="not_found", status=404)
    names, _connections = presence.present(UPDATES_TOPIC)
    every = [a for name in names for a in parse_presence_name(name)]
    chosen = select(every, api)
    if api.subscriber is not None and not chosen:
        raise ClientError("No such active subscription.", code="not_found", status=404)
    cursor = current_cursor(state.broker)
    base_path = hub_path()
    if api.subscriber is not None:
        body = document(chosen[0], active_now=True, hub_path=base_path)
        if api.draft == DRAFT_07:  # draft 07: every endpoint carries the cursor at its root
            body["lastEventID"] = cursor
        content_type = JSON_LD if api.draft == DRAFT_07 else "application/json"
    else:
        draft = api.draft or (DRAFT_07 if JSON_LD in request.headers.get("Accept", "") else None)
        body = collection_document(
            path,
            [document(a, active_now=True, hub_path=base_path) for a in chosen],
            draft=draft or "08",
            last_event_id=cursor,
        )
        content_type = JSON_LD if draft == DRAFT_07 else "application/json"
    response = jsonify(body)
    response.content_type = content_type
    response.headers["Link"] = link_header(cursor, type="mercure", content_type="application/json")
    return response


def register(app: Flask, *, url_prefix: str | None) -> frozenset[str]:
    """Mount the hub on ``app`` at ``<url_prefix>/.well-known/mercure``; the paths that take a
    body (for the body deadline)."""
    app.url_map.converters.setdefault("mercure_rest", SubscriptionsRest)
    app.register_blueprint(mercure, url_prefix=url_prefix)
    return frozenset({(url_prefix or "") + HUB_PATH})
