"""HTTP/1.1 chunked transfer coding, decoded incrementally: the one decoder of the project.

The Python client reads every streamed response with it, and the test and benchmark clients
that need the raw bytes of a response (to see exactly what the server framed) share it, so all
of them agree on what a well-formed chunked body is. Pure: bytes in, payload out.
"""

from __future__ import annotations

import re


class ProtocolError(ValueError):
    """The server's bytes are not the HTTP/1.1 we expect; the connection is dropped and retried."""


_CHUNK_SIZE_RE = re.compile(rb"\A[0-9A-Fa-f]{1,16}\Z")


class ChunkedDecoder:
    """An incremental decoder of HTTP/1.1 chunked transfer coding (RFC 9112, section 7.1).

    Pure: :meth:`feed` takes bytes split anywhere and returns the payload they complete;
    :attr:`done` turns true after the last chunk and the trailer section. Chunk extensions and
    trailer fields are read and ignored.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "size"
        self._left = 0
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while not self.done:
            if self._state == "data":
                take = min(self._left, len(self._buffer))
                out += self._buffer[:take]
                del self._buffer[:take]
                self._left -= take
                if self._left:
                    break
                self._state = "data-end"
                continue
            line = self._line()
            if line is None:
                break
            if self._state == "size":
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _CHUNK_SIZE_RE.match(size):
                    raise ProtocolError(f"Bad chunk size line {line[:40]!r}.")
                self._left = int(size, 16)
                self._state = "data" if self._left else "trailer"
            elif self._state == "data-end":
                if line:
                    raise ProtocolError("A chunk is longer than its size line says.")
                self._state = "size"
            elif not line:  # trailer: an empty line ends the message
                self.done = True
        return bytes(out)

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 4096:
                raise ProtocolError("A chunk size or trailer line is too long.")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line
