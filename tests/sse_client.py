"""Test helpers that read SSE the way a browser would (via realtime.core.sse.EventStreamParser)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import gevent

from realtime.core.chunked import ChunkedDecoder
from realtime.core.sse import EventStreamParser, MessageEvent


class InProcessStream:
    """Reads a streamed Flask test-client response with a WHATWG parser."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.parser = EventStreamParser()
        self._chunks: Iterator[bytes] = iter(response.response)
        self.raw = b""

    def next_events(self, timeout: float = 5.0) -> list[MessageEvent]:
        """Events from the next chunks until at least one event arrives (or ``timeout``)."""
        with gevent.Timeout(timeout):
            while True:
                chunk = next(self._chunks)
                self.raw += chunk
                events = self.parser.feed(chunk)
                if events:
                    return events

    def collect(self, count: int, timeout: float = 5.0) -> list[MessageEvent]:
        got: list[MessageEvent] = []
        with gevent.Timeout(timeout):
            while len(got) < count:
                got += self.next_events(timeout)
        return got

    def close(self) -> None:
        self.response.close()


class SocketStream:
    """A raw-socket SSE client for real servers: full control over reading and closing."""

    def __init__(
        self,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        rcvbuf: int | None = None,
        http_version: str = "1.1",
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(("127.0.0.1", port))
        except BaseException:  # refused, timed out or killed: no socket left to the collector
            self.sock.close()
            raise
        lines = [
            f"GET {path} HTTP/{http_version}",
            f"Host: 127.0.0.1:{port}",
            "Accept: text/event-stream",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.parser = EventStreamParser()
        self.status: int | None = None
        self._head = b""
        self._decoder: ChunkedDecoder | None = None
        self._remaining: int | None = None
        self._body = b""
        self.raw = b""  # the decoded body so far (comments included)
        self.closed = False

    def _read_head(self) -> None:
        while b"\r\n\r\n" not in self._head:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before headers")
            self._head += data
        head, _, rest = self._head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        chunked = self.headers.get("transfer-encoding", "") == "chunked"
        self._decoder = ChunkedDecoder() if chunked else None
        length = self.headers.get("content-length")
        self._remaining = int(length) if length is not None and not chunked else None
        self._body = rest

    def _dechunk(self) -> bytes:
        out, self._body = self._body, b""
        if self._decoder is None:
            if self._remaining is not None:  # a fixed-length body ends after its length
                self._remaining -= len(out)
                if self._remaining <= 0:
                    self.closed = True
            return out
        payload = self._decoder.feed(out)  # strict: malformed framing raises ProtocolError
        if self._decoder.done:
            self.closed = True
        self.raw += payload
        return payload

    def read_events(self, deadline: float) -> list[MessageEvent]:
        """Read until some bytes arrive, the stream ends, or ``deadline`` (monotonic); return the
        events completed so far (possibly none: an id-only preamble dispatches nothing)."""
        if self.status is None:
            self._read_head()
            return self.parser.feed(self._dechunk())
        while not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return []
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            self._body += data
            return self.parser.feed(self._dechunk())
        return []

    def until_closed(self, seconds: float) -> list[MessageEvent]:
        """Every event until the server ends the stream (or ``seconds`` pass: check
        :attr:`closed`)."""
        events: list[MessageEvent] = []
        deadline = time.monotonic() + seconds
        while not self.closed and time.monotonic() < deadline:
            events += self.read_events(deadline)
        return events

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
