"""What the HTTP front doors read from Flask's request: the caller, its token, its body.

Each helper resolves one part of the request into plain values (an address, a grant, bytes, a
form) so the views stay a sequence of decisions, and a refusal is a
:class:`~realtime.core.errors.ClientError` raised here with its code.
"""

from __future__ import annotations

from flask import current_app, request

from realtime.core.access import TOKEN_COOKIE, TOKEN_QUERY
from realtime.core.auth import FROM_APP, Access, Grant, find_token
from realtime.core.errors import BadRequest, PayloadTooLarge
from realtime.web.state import RealtimeState, state


def rt() -> RealtimeState:
    """This app's realtime state (see :mod:`realtime.web.state`)."""
    return state(current_app)


def client_address() -> str:
    """The client's address (behind REALTIME_PROXY_HOPS trusted proxies, from X-Forwarded-For)."""
    return request.remote_addr or "unknown"


def request_token() -> tuple[str, str] | None:
    """The request's token and where it came from (DESIGN.md order). The cookie and the query
    string are not even parsed when an ``Authorization`` header is there: the header wins."""
    authorization = request.headers.get("Authorization")
    if authorization:
        return find_token(authorization=authorization, cookie=None, query=None)
    return find_token(
        authorization=None,
        cookie=request.cookies.get(TOKEN_COOKIE),
        query=request.args.get(TOKEN_QUERY),
    )


def request_auth() -> tuple[str | None, Grant, str] | tuple[None, None, None]:
    """The caller's token, its grant and where it came from; a bad token raises 401.

    Without a token, the grant of the app's authorize hook (:func:`app_grant`), with no token
    and :data:`~realtime.core.auth.FROM_APP`; all ``None`` when that grants nothing either. A
    publish needs the token itself too (an unnamed publisher's scope is its digest), so it is
    read once with its grant rather than looked up again."""
    found = request_token()
    if found is None:
        grant = app_grant()
        return (None, grant, FROM_APP) if grant is not None else (None, None, None)
    token, source = found
    return token, rt().verifier.verify(token), source


def request_grant() -> Grant | None:
    """The caller's grant, ``None`` when it has none (no token, nothing from the app's hook);
    a bad token raises 401."""
    return request_auth()[1]


def app_grant() -> Grant | None:
    """What the app's ``@rt.authorize`` hook grants this request (which brought no token), or
    ``None`` without a hook or when the hook says ``None`` (not signed in, say)."""
    hook = rt().hooks.authorize
    if hook is None:
        return None
    access = hook(request._get_current_object())  # type: ignore[attr-defined]
    if access is None:
        return None
    if not isinstance(access, Access):
        raise TypeError(
            f"The @rt.authorize hook returned {type(access).__name__}: return a "
            "realtime.Access(subscribe=[...], publish=[...], subject=...) or None."
        )
    return access.grant()


def limit_body() -> None:
    """Bodies sent to realtime's routes are limited to ``REALTIME_MAX_BODY``, per request: the
    app's own ``MAX_CONTENT_LENGTH`` stays the host's, for its own routes."""
    request.max_content_length = rt().settings.max_body


def body_too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is over {rt().settings.max_body} bytes (REALTIME_MAX_BODY)."
    )


def request_body(limit: int, *, keep: bool) -> bytes:
    """The whole body, refused (413) over ``limit``; ``keep`` it for a form to be parsed from.

    A body with a ``Content-Length`` over the limit is refused before it is read (werkzeug,
    through the request's ``max_content_length``, see :func:`limit_body`); a chunked one is read
    up to the limit and then cut without a word, so a chunked body that fills it is looked past:
    one more byte means it was over.
    """
    data = request.get_data(cache=keep, parse_form_data=False)
    if (
        request.content_length is None
        and len(data) >= limit
        and request.environ["wsgi.input"].read(1)
    ):
        raise body_too_large()
    return data


def request_form() -> dict[str, list[str]]:
    """A form's fields; a multipart body without a boundary, or with a file in it, is refused
    as the malformed form it is rather than read as a form without fields."""
    if request.mimetype == "multipart/form-data" and not request.mimetype_params.get("boundary"):
        raise BadRequest(
            "A multipart/form-data body needs a boundary in its Content-Type.", code="bad_form"
        )
    form = request.form.to_dict(flat=False)
    if request.files:
        raise BadRequest(
            "A publish takes no file parts: send topic, data and type as plain form fields.",
            code="bad_form",
        )
    return form
