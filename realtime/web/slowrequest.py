"""Requests that arrive slowly, and connections a worker should not keep.

Every connection a gunicorn gevent worker holds takes one of its ``worker_connections`` slots, and
a worker with no slot free accepts nothing at all: not a publish, not a health check. Streams
are capped below that number (:attr:`realtime.core.config.Settings.worker_connections`); this module
bounds the other ways a client can hold a slot for long:

* **a slow request head**: gunicorn's gevent worker reads every head under its ``keepalive``
  timeout (5 s in the shipped ``gunicorn.conf.py``, which refuses 0), so nothing is needed here;
* **a slow request body**: the body is read by the view, under no timer at all. A client
  trickling a byte a second would hold its slot for as long as it liked. :func:`bound_requests`
  gives every body ``REALTIME_BODY_TIMEOUT_S`` from the moment its head was complete; a body
  still incomplete then is answered ``408 request_timeout`` and the connection is closed;
* **a refusal kept alive**: a stream refused because the worker is full should give its slot back
  at once rather than idle for ``keepalive`` seconds. Any
  :class:`~realtime.core.errors.ClientError` with ``close_connection`` set has the web layer call
  :func:`close_after_response`.

gunicorn only closes a connection after a response when its own response object is told to
(``force_close``; a ``Connection: close`` header from the app is dropped as hop-by-hop, PEP 3333),
so that is what :func:`close_after_response` does, through the object
:func:`~realtime.fanout.directwrite.expose_server_response` leaves in the environ; gunicorn decides
``Connection: close`` when it sends the headers, after the view has returned. Under any other
server the request is answered the same and the connection left to that server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator
from typing import Any, Protocol

import gevent

from realtime.core.errors import RequestTimeout
from realtime.fanout.directwrite import SERVER_RESPONSE_KEY

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


class InputStream(Protocol):
    """What PEP 3333 promises of ``wsgi.input`` (a server's own object, not a file)."""

    def read(self, size: int = ..., /) -> bytes: ...

    def readline(self, size: int = ..., /) -> bytes: ...

    def readlines(self, hint: int = ..., /) -> list[bytes]: ...


class DeadlineInput:
    """``wsgi.input`` whose reads must all be done by one deadline.

    Each read runs under a gevent timer for the time left, so a body that arrives a byte at a time
    cannot stretch it (a socket timeout would restart at every byte). The timer is this object's
    own: a timeout of the caller's passing through is not mistaken for it.
    """

    __slots__ = ("_deadline", "_input", "_timeout_s")

    def __init__(self, stream: InputStream, timeout_s: float) -> None:
        self._input = stream
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._within(self._input.read, size)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        line: bytes = self._within(self._input.readline, size)
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = self._within(self._input.readlines, hint)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _within(self, read: Callable[[Any], Any], argument: Any) -> Any:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise self._expired()
        timer = gevent.Timeout.start_new(remaining)
        try:
            return read(argument)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise self._expired() from None
        finally:
            timer.close()

    def _expired(self) -> RequestTimeout:
        return body_timeout(self._timeout_s)


def body_timeout(timeout_s: float) -> RequestTimeout:
    """The refusal of a body that did not arrive within ``timeout_s``: its ``close_connection``
    ends the connection, since the rest of the body is still coming."""
    return RequestTimeout(
        f"The request body did not arrive within {timeout_s:g} s "
        "(REALTIME_BODY_TIMEOUT_S); the connection is closed."
    )


def has_body(environ: dict[str, Any]) -> bool:
    """A request announces a body with a non-zero ``Content-Length`` or chunked framing."""
    length = environ.get("CONTENT_LENGTH")
    if length and length != "0":
        return True
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def close_after_response(environ: dict[str, Any]) -> None:
    """Have gunicorn close this request's connection once its response is sent."""
    force_close = getattr(environ.get(SERVER_RESPONSE_KEY), "force_close", None)
    if force_close is not None:
        force_close()


def bound_requests(
    wsgi_app: WsgiApp, body_timeout_s: float, paths: Container[str] | None = None
) -> WsgiApp:
    """Wrap ``wsgi_app``: request bodies get ``body_timeout_s`` to arrive; with ``paths``, only
    those sent to one of them (an app embedding realtime bounds its own routes as it sees fit)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if has_body(environ) and (paths is None or environ.get("PATH_INFO") in paths):
            environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], body_timeout_s)
        return wsgi_app(environ, start_response)

    return app
