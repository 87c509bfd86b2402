"""The JSON error contract, rendered in one place for every front door.

Every refusal is a :class:`~realtime.core.errors.ClientError` raised anywhere below a view;
these handlers turn it, a Redis failure or one of Flask's own HTTP errors into
``{"error": code, "message": ...}`` with its status (DESIGN.md, "Errors").
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from realtime.core.errors import BrokerError, ClientError
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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ClientError)
    def _client_error(err: ClientError) -> Response:
        if err.close_connection:
            close_after_response(request.environ)
        return error_response(err)

    @app.errorhandler(BrokerError)
    def _broker_error(err: BrokerError) -> Response:
        return error_response(redis_unavailable(err, "request"))

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        if status == 413:
            return error_response(body_too_large())
        code = (err.name or "error").lower().replace(" ", "_")
        response = error_response(
            ClientError(err.description or err.name, code=code, status=status)
        )
        allow = dict(err.get_headers()).get("Allow")
        if allow:
            response.headers["Allow"] = allow  # a 405 must say what is allowed (RFC 9110)
        return response
