"""realtime's gunicorn worker: gunicorn's gevent worker, answering plain publishes and opening
plain streams itself.

``worker_class = "realtime.worker.RealtimeWorker"`` (the shipped :mod:`realtime.gunicorn_conf`).
Every connection starts here: while its requests are plain publishes (or it asks for a plain
stream) of an app that runs no code of its own around them (:class:`realtime.web.lean.LeanDoors`
says which), the worker reads each request and writes its answer itself, with the views' own
decisions; the first request of any other kind hands the connection to gunicorn's own handling
for the rest of its life. A
request is looked at before it is read (``MSG_PEEK``), so a connection handed over is the very
socket gunicorn would have had; only requests pipelined behind a lean publish, already read,
reach gunicorn through a :class:`PrefixedSocket`. So everything but a plain publish is served
exactly as by gunicorn's gevent worker (the stock ``-k gevent`` still runs realtime, without the
lean path).

A stream opened here is written as gunicorn writes one (chunked, the same headers) until it is
idle and leaves for the worker to hold (:mod:`realtime.fanout.idle`), as a stream gunicorn
opened does.

What a lean request keeps of gunicorn's: the keep-alive timeout on every request head, the
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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gevent
from gunicorn import SERVER, util
from gunicorn.config import PostRequest, PreRequest
from gunicorn.http.message import MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.workers.ggevent import GeventWorker

from realtime.core.events import http_chunk
from realtime.fanout.directwrite import SERVER_RESPONSE_KEY, OwnResponse
from realtime.web.lean import STREAM_HEADERS, LeanAnswer, LeanDoors, LeanRequest
from realtime.web.slowrequest import body_timeout

#: The most a look at a new request takes in: a head not complete within it (a long one, or
#: one still arriving) is gunicorn's to read and judge.
RECV_BYTES = 65536
#: A stream's answer, as werkzeug names its status.
STREAM_STATUS = "200 OK"
#: The end of a chunked body.
LAST_CHUNK = b"0\r\n\r\n"
#: What gunicorn refuses in a header value (RFC 9110 5.5), and so anywhere in a lean head once
#: its lines' own CRLFs are taken out: a control character, a bare CR or LF among them.
_FORBIDDEN = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: A header's name: RFC 9110 ``tchar`` characters (an obsolete folded line, starting with a
#: blank, has none: refused).
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """gunicorn's limits on a request head (``limit_request_line``, ``limit_request_fields``,
    ``limit_request_field_size``), as its parser applies them."""

    line: int = 4094
    fields: int = 100
    field_size: int = 8190

    @classmethod
    def of(cls, cfg: Any) -> HeadLimits:
        line = cfg.limit_request_line
        line = MAX_REQUEST_LINE if line < 0 or line >= MAX_REQUEST_LINE else line or 1 << 20
        return cls(
            line=line,
            fields=cfg.limit_request_fields or MAX_HEADERS,
            field_size=cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else 8190,
        )


def parse_head(head: bytes, limits: HeadLimits = HeadLimits()) -> LeanRequest | None:
    """An HTTP/1.1 request head (without its blank line) as a :class:`LeanRequest`, or ``None``
    for anything but the plainest form: another version, a header line that is not a token, a
    colon and a value, an obsolete folded line, a header given twice, a control character
    gunicorn refuses (a bare CR or LF among them), or anything at or near one of gunicorn's
    ``limits``. gunicorn then reads the request itself, and refuses what is malformed in its own
    words (414, 431, 400)."""
    if _FORBIDDEN.search(head.replace(b"\r\n", b"")):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1" or len(lines) - 1 > limits.fields:
        return None
    if len(lines[0]) >= limits.line - 2 or not (parts[0].isascii() and parts[1].isascii()):
        return None
    headers: dict[str, str] = {}
    field_size = limits.field_size - 2
    token = _NAME.fullmatch
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or token(name) is None or len(line) > field_size:
            return None
        key = name.lower()
        if key in headers:
            return None
        headers[key] = value.strip(" \t")
    return LeanRequest(parts[0], parts[1], headers)


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
    """gunicorn's gevent worker with the lean path (see the module docstring)."""

    # gunicorn's own attributes this class reads and sets (gunicorn ships no type hints).
    alive: bool
    nr: int
    max_requests: int
    _lean: LeanDoors | None = None
    _lean_looked_up = False

    def lean_door(self) -> LeanDoors | None:
        """The app's lean doors, if this worker may use them at all."""
        if not self._lean_looked_up:
            door = None
            cfg = self.cfg
            plain_server = (
                not cfg.is_ssl
                and cfg.keepalive > 0
                and getattr(cfg, "proxy_protocol", "off") in ("off", None, False)
                and getattr(cfg, "http2_cleartext", "off") in ("off", None, False)
                and cfg.pre_request is PreRequest.default
                and cfg.post_request is PostRequest.default
            )
            if plain_server:
                door = LeanDoors.of(self.wsgi)
            self._lean, self._lean_looked_up = door, True
        return self._lean

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        door = self.lean_door()
        if door is None:
            super().handle(listener, client, addr)
            return
        client.setblocking(1)
        limit = HeadLimits.of(self.cfg)
        pending = b""  # read from the socket, not yet part of a request handled
        try:
            while True:
                if pending:  # pipelined behind the last publish: already read
                    end = pending.find(b"\r\n\r\n")
                    request = parse_head(pending[:end], limit) if end >= 0 else None
                    if request is None or not door.takes_publish(request):
                        super().handle(listener, PrefixedSocket(client, pending), addr)
                        return
                    pending = pending[end + 4 :]
                    keep, pending = self._publish(door, request, client, addr, pending)
                    if not keep:
                        return
                    continue
                # Looked at, not read: any request but a lean one goes to gunicorn with the
                # connection as it came, its socket unwrapped.
                peeked = self._read(client, socket.MSG_PEEK)
                if not peeked:
                    return
                end = peeked.find(b"\r\n\r\n")
                request = parse_head(peeked[:end], limit) if end >= 0 else None
                if request is not None and door.takes_publish(request):
                    pending = client.recv(len(peeked))[end + 4 :]  # all there: no wait
                    keep, pending = self._publish(door, request, client, addr, pending)
                elif request is not None and end + 4 == len(peeked) and door.takes_stream(request):
                    client.recv(len(peeked))
                    keep = self._stream(door, request, client, addr)
                else:
                    super().handle(listener, client, addr)
                    return
                if not keep:
                    return
        except OSError:
            return  # the client went away: as gunicorn, nothing to log
        finally:
            util.close(client)  # twice for a handed-over connection: closing is idempotent

    def _read(self, client: Any, flags: int = 0) -> bytes:
        """What the client sent so far (left unread with ``MSG_PEEK``), waiting up to the
        keep-alive timeout for it; ``b""`` when it closed or stayed quiet."""
        with gevent.Timeout(self.cfg.keepalive, False):
            data: bytes = client.recv(RECV_BYTES, flags)
            return data
        return b""

    def _publish(
        self, door: LeanDoors, request: LeanRequest, client: Any, addr: Any, pending: bytes
    ) -> tuple[bool, bytes]:
        """Read the body, answer the publish; (keep the connection, bytes after the body)."""
        started = datetime.now() if self.log.access_log_enabled else None
        self._count_request()
        length = int(request.headers["content-length"])
        body, pending = self._read_body(client, pending, length, door.state.settings.body_timeout_s)
        if body is None:
            answer = door.refusal(body_timeout(door.state.settings.body_timeout_s))
        else:
            answer = door.publish(request, body)
        close = answer.close or wants_close(request) or not self.alive
        client.sendall(self._head_of(answer.status_line, answer.headers, close) + answer.body)
        if started is not None:
            self._log_access(
                request, answer.status_line, len(answer.body), answer.headers, addr, started
            )
        return not close and body is not None, pending

    def _stream(self, door: LeanDoors, request: LeanRequest, client: Any, addr: Any) -> bool:
        """Open a stream and write it until it ends or leaves for the worker to hold
        (:mod:`realtime.fanout.idle`); whether the connection stays for another request."""
        started = datetime.now() if self.log.access_log_enabled else None
        self._count_request()
        response = OwnResponse(client)
        environ = {"gunicorn.socket": client, SERVER_RESPONSE_KEY: response}
        peer = addr[0] if isinstance(addr, tuple) else str(addr)
        opened = door.stream(request, peer, environ)
        if isinstance(opened, LeanAnswer):
            close = opened.close or wants_close(request) or not self.alive
            client.sendall(self._head_of(opened.status_line, opened.headers, close) + opened.body)
            if started is not None:
                self._log_access(
                    request, opened.status_line, len(opened.body), opened.headers, addr, started
                )
            return not close
        close = wants_close(request) or not self.alive
        head = self._head_of(STREAM_STATUS, STREAM_HEADERS, close, chunked=True)
        try:
            for data in opened:
                if data:
                    client.sendall(head + http_chunk(data))
                    head = b""
                    response.sent += len(data)
            if head:
                client.sendall(head)
        finally:
            opened.close()  # the stream's end, unless the worker holds it now
        if started is not None:
            self._log_access(request, STREAM_STATUS, response.sent, STREAM_HEADERS, addr, started)
        if response.must_close:  # the stream left: it holds the connection now
            return False
        client.sendall(LAST_CHUNK)
        return not close

    def _count_request(self) -> None:
        """gunicorn's ``max_requests``: this worker restarts after that many."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False

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
    def _head_of(
        status_line: str, headers: list[tuple[str, str]], close: bool, *, chunked: bool = False
    ) -> bytes:
        """The status line and headers, as gunicorn writes a Flask answer's."""
        lines = [
            f"HTTP/1.1 {status_line}\r\n",
            f"Server: {SERVER}\r\n",
            f"Date: {http_date()}\r\n",
            f"Connection: {'close' if close else 'keep-alive'}\r\n",
            "Transfer-Encoding: chunked\r\n" if chunked else "",
            *(f"{name}: {value}\r\n" for name, value in headers),
            "\r\n",
        ]
        return "".join(lines).encode("latin-1")

    def _log_access(
        self,
        request: LeanRequest,
        status_line: str,
        sent: int,
        headers: list[tuple[str, str]],
        addr: Any,
        started: datetime,
    ) -> None:
        """gunicorn's access line for a lean request, from the atoms it would have used."""
        path, _, query = request.target.partition("?")
        environ: dict[str, Any] = {
            "REMOTE_ADDR": addr[0] if isinstance(addr, tuple) else str(addr),
            "REQUEST_METHOD": request.method,
            "RAW_URI": request.target,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for name, value in request.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
            else:
                environ[key[5:]] = value
        req = _AccessRequest([(name.upper(), value) for name, value in request.headers.items()])
        resp = _AccessResponse(status_line, sent, headers)
        self.log.access(resp, req, environ, datetime.now() - started)


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
