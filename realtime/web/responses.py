"""The JSON error contract, rendered in one place for every front door.

Every refusal is a :class:`~realtime.core.errors.ClientError` raised anywhere below a view;
these handlers turn it, a Redis failure or one of Flask's own HTTP errors into
``{"error": code, "message": ...}`` with its status (DESIGN.md, "Errors").

They are registered on realtime's blueprints, so they answer for realtime's routes only: an app
embedding realtime keeps its own error pages. The service (``create_app``) registers them on
the whole app too, so an unknown path or a wrong method gets the JSON contract there.
"""

from __future__ import annotations

from flask import Response, jsonify, request
from flask.sansio.scaffold import Scaffold
from werkzeug.exceptions import HTTPException

from realtime.core.errors import INTERNAL_ERROR, BrokerError, ClientError
from realtime.web.request import body_too_large
from realtime.web.service import redis_unavailable
from realtime.web.slowrequest import close_after_response


def error_response(err: ClientError) -> Response:
    """``err`` as its JSON body and status, with ``Retry-After`` when it has one."""
    response = jsonify(error=err.code, message=err.message)
    response.status_code = err.status
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(err.retry_after)
    return response


def client_error(err: ClientError) -> Response:
    if err.close_connection:
        close_after_response(request.environ)
    return error_response(err)


def broker_error(err: BrokerError) -> Response:
    return error_response(redis_unavailable(err, "request"))


def http_error(err: HTTPException) -> Response:
    status = err.code or 500
    if status == 413:
        return error_response(body_too_large())
    # A failure of the server's own has one code whichever door or layer answers it (the
    # registry's, as the WebSocket door and gunicorn's own 500 say it); the others are named
    # after werkzeug's reason.
    code = INTERNAL_ERROR if status == 500 else (err.name or "error").lower().replace(" ", "_")
    response = error_response(ClientError(err.description or err.name, code=code, status=status))
    allow = dict(err.get_headers()).get("Allow")
    if allow:
        response.headers["Allow"] = allow  # a 405 must say what is allowed (RFC 9110)
    return response


def register_error_handlers(scope: Scaffold) -> None:
    """Answer errors with the JSON contract within ``scope``: a blueprint (its routes) or an
    app (every route, and the routing errors, 404 and 405, that no blueprint sees)."""
    scope.register_error_handler(ClientError, client_error)
    scope.register_error_handler(BrokerError, broker_error)
    scope.register_error_handler(HTTPException, http_error)
