"""Writing a live SSE event straight to a ready client socket, from the hub's reader.

Why: waking a stream's greenlet for every event (set its event, switch to it, resume the
generator, let gunicorn frame and send, switch back) cost 20-50 µs of CPU per delivery, which is
most of a broadcast to thousands of streams. When the stream's greenlet is parked and has nothing
queued, the reader can instead hand the event's bytes, encoded once per worker and shared, to a
non-blocking ``send``: one system call per delivery, the way a C server fans out.

When it may (:meth:`DirectWriter.offer_run` refuses otherwise, and the events take the queue
path):

* the stream's greenlet is parked in its wait, not in the middle of a write of its own;
* nothing is queued for the stream, so order holds;
* the response is gunicorn's plain HTTP/1.x response over TCP, whose headers are out, so we know
  exactly how it frames a body write (HTTP/1.1 chunks, or raw bytes) and can frame the same way.
  Any other server, TLS, or a middleware that hides gunicorn's ``start_response`` gets the queue
  path: correct everywhere, fast where we can prove the framing.

What it keeps: one cursor (``last_seq``) for both paths, so an event is written once; a partial
send leaves the rest for the stream's greenlet to finish before anything else; the send never
waits, and the kernel refuses bytes once ``TCP_NOTSENT_LOWAT`` unsent are queued
(:mod:`realtime.fanout.slowclient`), after which events wait in the bounded queue as before,
so a client that stops reading is still cut at ``REALTIME_MAX_QUEUE``.

A stream may also leave gunicorn's request altogether (:meth:`DirectWriter.leave_server`, for
the worker to hold it idle without a greenlet: :mod:`realtime.fanout.idle`): the writer then
keeps a duplicate of the connection's descriptor and frames as the response did. The same
writer serves a response realtime's own worker writes (:class:`OwnResponse`, the lean path).
"""

from __future__ import annotations

import _socket
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

from gevent.socket import wait_write

from realtime.core.events import EventRun

# Where :func:`expose_server_response` leaves the server's response object in the environ.
SERVER_RESPONSE_KEY = "realtime.server_response"

# What :meth:`DirectWriter.offer_run` answers besides a count of events written.
SKIPPED = 0  # the stream already had them (the replay/live seam)
REFUSED = -1  # not now: queue them for the stream's greenlet

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def expose_server_response(wsgi_app: WsgiApp) -> WsgiApp:
    """Wrap ``wsgi_app`` so a view can find gunicorn's response object for its request.

    gunicorn passes its response's bound ``start_response``; the object behind it knows whether
    the body is chunked and whether the headers are out. Nothing is changed for other servers.
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[SERVER_RESPONSE_KEY] = getattr(start_response, "__self__", None)
        return wsgi_app(environ, start_response)

    return app


class OwnResponse:
    """A response realtime's worker writes itself (:mod:`realtime.worker`, its lean path):
    the part of gunicorn's response a stream uses, with the same framing (HTTP/1.1 chunks), on
    a plain TCP socket whose headers are already out."""

    __slots__ = ("chunked", "must_close", "sent", "sock")

    headers_sent = True

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.sent = 0
        self.chunked = True
        self.must_close = False

    def force_close(self) -> None:
        self.must_close = True


def _plain_gunicorn_response(response: Any) -> bool:
    if type(response) is OwnResponse:
        return True
    try:
        from gunicorn.http.wsgi import Response
    except ImportError:  # pragma: no cover - gunicorn is a dependency
        return False
    if type(response) is not Response or getattr(response.cfg, "is_ssl", True):
        return False
    sock = response.sock
    # gevent's socket wraps the OS socket (``_sock``), which gevent keeps non-blocking.
    return not isinstance(sock, ssl.SSLSocket) and isinstance(
        getattr(sock, "_sock", None), _socket.socket
    )


class DirectWriter:
    """The reader's way to one stream's socket, and the cursor that stream shares with it.

    Owned by the stream (:func:`realtime.fanout.stream.live`): it calls :meth:`park` before it
    waits and :meth:`hold` when it wakes; between the two the hub may call :meth:`offer_run`.
    Cooperative scheduling makes that enough: nothing else runs between a check and its write.
    """

    __slots__ = (
        "_envelope",
        "_response",
        "_send",
        "_sock",
        "_wake",
        "broken",
        "chunked",
        "last_seq",
        "last_write",
        "parked",
        "pending",
    )

    def __init__(self, response: Any, *, envelope: bool, wake: Callable[[], None]) -> None:
        self._response: Any = response  # gunicorn's, until the stream leaves it (leave_server)
        self._sock: _socket.socket | None = None  # the stream's own socket, once it left
        self._send: Callable[[bytes], int] = response.sock._sock.send  # non-blocking
        self.chunked = False  # known once the response has started (see park)
        self._envelope = envelope
        self._wake = wake
        self.last_seq = 0
        self.last_write = 0.0  # monotonic time of the last direct write
        self.pending = b""  # the unsent end of a partial write; the stream sends it first
        self.parked = False
        self.broken = False

    @classmethod
    def for_environ(
        cls, environ: dict[str, Any], *, envelope: bool, wake: Callable[[], None]
    ) -> DirectWriter | None:
        """A writer for this request's stream, or ``None`` where the framing is not known."""
        response = environ.get(SERVER_RESPONSE_KEY)
        if response is None or not _plain_gunicorn_response(response):
            return None
        return cls(response, envelope=envelope, wake=wake)

    def offer_run(self, run: EventRun) -> int:
        """Write a whole run in one send if the stream is parked and had none of it yet.

        Answers how many events were written, or :data:`REFUSED` (queue them all: the stream's
        own cursor then skips what it already had, the rare replay/live seam).
        """
        if not self.parked:
            return REFUSED
        if run.last_seq <= self.last_seq:
            return SKIPPED
        if run.first_seq <= self.last_seq:
            return REFUSED
        data = run.wire(self._envelope, self.chunked)
        try:
            sent = self._send(data)
        except BlockingIOError:
            return REFUSED  # the kernel holds enough unsent: the bounded queue takes over
        except OSError:
            # The peer is gone: let the stream's own write find out and end it.
            self.broken = True
            self.parked = False
            return REFUSED
        self.last_seq = run.last_seq
        self.last_write = time.monotonic()
        if self._response is not None:
            self._response.sent += sent
        if sent < len(data):
            self.pending = data[sent:]
            self.parked = False
            self._wake()
        return len(run.events)

    def park(self) -> None:
        """The stream is about to wait: the reader may write for it (once headers are out)."""
        response = self._response
        if response is None:  # the stream left the server: its headers went out long ago
            self.parked = not self.broken and not self.pending
            return
        self.parked = not self.broken and not self.pending and response.headers_sent
        self.chunked = response.chunked  # decided by gunicorn when the response started

    def hold(self) -> None:
        """The stream woke: no direct writes until it parks again; finish a partial write.

        Called from the stream's own greenlet, so the rest of a partial write (already framed)
        goes out with :meth:`send_all`, which waits cooperatively, like any write of the stream.
        """
        self.parked = False
        if self.pending:
            rest, self.pending = self.pending, b""
            self.send_all(rest)

    def send_all(self, data: bytes) -> None:
        """Write all of ``data`` (framed already) from the stream's own greenlet, waiting
        cooperatively while the socket is full."""
        response = self._response
        if response is not None:
            response.sock.sendall(data)
            response.sent += len(data)
            return
        sock = self._sock
        if sock is None:
            raise BrokenPipeError("the stream's socket is closed")
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                wait_write(sock.fileno())
        self.last_write = time.monotonic()

    def leave_server(self) -> bool:
        """Take the stream's connection from gunicorn, which then ends the request as if the body
        were complete: it writes nothing more (no last chunk), logs the request and closes its
        descriptor; this writer keeps a duplicate of it, non-blocking, for the stream's own
        writes from now on (:mod:`realtime.fanout.idle`). False where it cannot (already
        broken, a write half done, headers not out)."""
        response = self._response
        if response is None:
            return True
        if self.broken or self.pending or not response.headers_sent:
            return False
        try:
            sock = _socket.socket(fileno=os.dup(response.sock.fileno()))
        except OSError:
            return False
        sock.setblocking(False)
        self.chunked = response.chunked
        response.chunked = False  # gunicorn's close() adds no last chunk
        response.force_close()  # and its connection loop reads no next request
        self._response = None
        self._sock = sock
        self._send = sock.send
        return True

    @property
    def own_socket(self) -> _socket.socket | None:
        """The stream's own socket, once it left the server (:meth:`leave_server`)."""
        return self._sock

    def send_now(self, data: bytes) -> None:
        """Send what the stream's own socket takes at once (the last chunk, before closing)."""
        if self._sock is not None:
            self._sock.send(data)

    def close(self) -> None:
        """The stream is ending: never write for it again."""
        self.parked = False
        self.broken = True

    def close_socket(self) -> None:
        """Close the stream's own socket (after :meth:`leave_server`; gunicorn's is its own)."""
        self.close()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
