"""realtime's gunicorn worker: gunicorn's gevent worker, answering single publishes itself.

``worker_class = "realtime.worker.RealtimeWorker"`` (the shipped :mod:`realtime.gunicorn_conf`).
Every connection starts here: while its requests are plain publishes of an app that runs no code
of its own around them (:class:`realtime.web.lean.LeanPublish` says which), the worker reads
each request and writes its answer itself, with the view's own decisions; the first request of
any other kind hands the connection to gunicorn's own handling for the rest of its life. A
request is looked at before it is read (``MSG_PEEK``), so a connection handed over is the very
socket gunicorn would have had; only requests pipelined behind a lean publish, already read,
reach gunicorn through a :class:`PrefixedSocket`. So everything but a plain publish is served
exactly as by gunicorn's gevent worker (the stock ``-k gevent`` still runs realtime, without the
lean path).

What a lean publish keeps of gunicorn's: the keep-alive timeout on every request head, the
``Server``/``Date``/``Connection`` headers, ``max_requests``, draining on shutdown (the
connection closes after its answer), and the access log line, built from the same atoms
(:meth:`RealtimeWorker._log_access`). It is taken only while gunicorn's ``pre_request`` and
``post_request`` hooks are the defaults, which do nothing but a debug line. Why the path exists,
with figures: :mod:`realtime.web.lean`.

This is a wiring module, an entry point like :mod:`realtime.gunicorn_conf`: it may import every
layer, and it reads sockets, which the web layer does not.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import gevent
from gunicorn import SERVER, util
from gunicorn.config import PostRequest, PreRequest
from gunicorn.workers.ggevent import GeventWorker

from realtime.core.errors import RequestTimeout
from realtime.web.lean import LeanAnswer, LeanPublish, LeanRequest

#: The most a look at a new request takes in: a head not complete within it (a long one, or
#: one still arriving) is gunicorn's to read and judge.
RECV_BYTES = 65536
#: What gunicorn refuses in a header value (RFC 9110 5.5), and so anywhere in a lean head.
_FORBIDDEN = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: The characters of a header name (RFC 9110 ``tchar``): deleting them leaves nothing of one.
_TCHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def parse_head(head: bytes, max_fields: int = 100) -> LeanRequest | None:
    """An HTTP/1.1 request head (without its blank line) as a :class:`LeanRequest`, or ``None``
    for anything but the plainest form: another version, a header line that is not a token, a
    colon and a value, an obsolete folded line, a header given twice, a control character
    gunicorn refuses (a bare CR or LF among them), more than ``max_fields`` headers (gunicorn's
    ``limit_request_fields``). gunicorn then reads the request itself, and refuses what is
    malformed in its own words."""
    if _FORBIDDEN.search(head.replace(b"\r\n", b"")):
        return None
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1" or len(lines) - 1 > max_fields:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TCHARS):
            return None
        key = name.decode("ascii").lower()
        if key in headers:
            return None
        try:
            headers[key] = value.strip(b" \t").decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            return None
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    return LeanRequest(method, target, headers)


def wants_close(request: LeanRequest) -> bool:
    """``Connection: close`` (gunicorn's test: the whole value, any case)."""
    return request.headers.get("connection", "").strip(" \t").lower() == "close"


class PrefixedSocket:
    """A client socket whose first reads give back ``prefix``, bytes already read from it.

    Handing a connection to gunicorn mid-way: its parser reads the request head the lean path
    read first. Everything else is the socket's own (``_sock`` included, the OS socket under
    gevent's, which :mod:`realtime.fanout.directwrite` writes to).
    """

    def __init__(self, sock: Any, prefix: bytes) -> None:
        self._wrapped = sock
        self._prefix = prefix

    def recv(self, size: int, *flags: int) -> bytes:
        if self._prefix:
            given, self._prefix = self._prefix[:size], self._prefix[size:]
            return given
        data: bytes = self._wrapped.recv(size, *flags)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class RealtimeWorker(GeventWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's gevent worker with the lean publish path (see the module docstring)."""

    # gunicorn's own attributes this class reads and sets (gunicorn ships no type hints).
    alive: bool
    nr: int
    max_requests: int
    _lean: LeanPublish | None = None
    _lean_looked_up = False

    def lean_door(self) -> LeanPublish | None:
        """The app's lean publish door, if this worker may use one at all."""
        if not self._lean_looked_up:
            door = None
            cfg = self.cfg
            plain_server = (
                not cfg.is_ssl
                and cfg.keepalive > 0
                and getattr(cfg, "http2_cleartext", "off") in ("off", None, False)
                and cfg.pre_request is PreRequest.default
                and cfg.post_request is PostRequest.default
            )
            if plain_server:
                door = LeanPublish.of(self.wsgi)
            self._lean, self._lean_looked_up = door, True
        return self._lean

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        door = self.lean_door()
        if door is None:
            super().handle(listener, client, addr)
            return
        client.setblocking(1)
        limit = self.cfg.limit_request_fields or 1 << 30
        pending = b""  # read from the socket, not yet part of a request handled
        try:
            while True:
                if pending:  # pipelined behind the last publish: already read
                    end = pending.find(b"\r\n\r\n")
                    request = parse_head(pending[:end], limit) if end >= 0 else None
                    if request is None or not door.takes(request):
                        super().handle(listener, PrefixedSocket(client, pending), addr)
                        return
                    pending = pending[end + 4 :]
                else:
                    # Looked at, not read: any request but a lean publish goes to gunicorn with
                    # the connection as it came, its socket unwrapped.
                    peeked = self._peek(client)
                    if not peeked:
                        return
                    end = peeked.find(b"\r\n\r\n")
                    request = parse_head(peeked[:end], limit) if end >= 0 else None
                    if request is None or not door.takes(request):
                        super().handle(listener, client, addr)
                        return
                    pending = client.recv(len(peeked))[end + 4 :]  # all there: no wait
                keep, pending = self._publish(door, request, client, addr, pending)
                if not keep:
                    return
        except OSError:
            return  # the client went away: as gunicorn, nothing to log
        finally:
            util.close(client)  # twice for a handed-over connection: closing is idempotent

    def _peek(self, client: Any) -> bytes:
        """What the client sent so far, left unread, waiting up to the keep-alive timeout for
        it; ``b""`` when it closed or stayed quiet."""
        with gevent.Timeout(self.cfg.keepalive, False):
            data: bytes = client.recv(RECV_BYTES, socket.MSG_PEEK)
            return data
        return b""

    def _publish(
        self, door: LeanPublish, request: LeanRequest, client: Any, addr: Any, pending: bytes
    ) -> tuple[bool, bytes]:
        """Read the body, answer the publish; (keep the connection, bytes after the body)."""
        logged = self.log.access_log_enabled
        started = datetime.now() if logged else None
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        length = int(request.headers["content-length"])
        body, pending = self._read_body(client, pending, length, door.state.settings.body_timeout_s)
        if body is None:
            answer = door.refusal(
                RequestTimeout(
                    f"The request body did not arrive within "
                    f"{door.state.settings.body_timeout_s:g} s (REALTIME_BODY_TIMEOUT_S); "
                    "the connection is closed."
                )
            )
        else:
            answer = door.answer(request, body)
        close = answer.close or wants_close(request) or not self.alive
        client.sendall(self._head_of(answer, close) + answer.body)
        if started is not None:
            self._log_access(request, answer, addr, datetime.now() - started)
        return not close and body is not None, pending

    @staticmethod
    def _read_body(
        client: Any, pending: bytes, length: int, timeout_s: float
    ) -> tuple[bytes | None, bytes]:
        """``length`` bytes of body (``None`` if they do not come within ``timeout_s``)."""
        if len(pending) < length:
            chunks = [pending]
            have = len(pending)
            with gevent.Timeout(timeout_s, False):
                while have < length:
                    data = client.recv(max(RECV_BYTES, length - have))
                    if not data:
                        raise ConnectionResetError("the client closed mid-body")
                    chunks.append(data)
                    have += len(data)
            if have < length:
                return None, b""
            pending = b"".join(chunks)
        return pending[:length], pending[length:]

    @staticmethod
    def _head_of(answer: LeanAnswer, close: bool) -> bytes:
        """The status line and headers, as gunicorn writes a Flask answer's."""
        lines = [
            f"HTTP/1.1 {answer.status_line}\r\n",
            f"Server: {SERVER}\r\n",
            f"Date: {http_date()}\r\n",
            f"Connection: {'close' if close else 'keep-alive'}\r\n",
            *(f"{name}: {value}\r\n" for name, value in answer.headers),
            "\r\n",
        ]
        return "".join(lines).encode("latin-1")

    def _log_access(
        self, request: LeanRequest, answer: LeanAnswer, addr: Any, took: timedelta
    ) -> None:
        """gunicorn's access line for a lean publish, from the atoms it would have used."""
        environ: dict[str, Any] = {
            "REMOTE_ADDR": addr[0] if isinstance(addr, tuple) else str(addr),
            "REQUEST_METHOD": request.method,
            "RAW_URI": request.target,
            "PATH_INFO": request.target,
            "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for name, value in request.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
            else:
                environ[key[5:]] = value
        req = _AccessRequest([(name.upper(), value) for name, value in request.headers.items()])
        resp = _AccessResponse(answer.status_line, len(answer.body), answer.headers)
        self.log.access(resp, req, environ, took)


class _AccessRequest:
    """What gunicorn's access log reads of a request: its headers."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.headers = headers


class _AccessResponse:
    """What gunicorn's access log reads of a response: status, bytes sent, headers."""

    __slots__ = ("headers", "sent", "status")

    def __init__(self, status: str, sent: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.sent = sent
        self.headers = headers


class _HttpDate:
    """The ``Date`` header, formatted once a second (gunicorn formats it at every answer)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        second = int(self._now())
        if second != self._second:
            self._second, self._text = second, util.http_date(second)
        return self._text


http_date = _HttpDate()
