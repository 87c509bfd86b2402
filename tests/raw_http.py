"""HTTP/1.1 by hand for tests that must control every byte: what is sent (a header too long,
a body trickled, chunked framing, no Host at all) and what comes back (status, headers, body,
how long it took, whether the server hung up after it)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    seconds: float  # from connecting to the last byte of the answer
    closed_after: bool  # the server hung up once the answer was sent ("Connection: close")

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> tuple[int, str]:
        """The status and the JSON error contract's code (the body must be JSON)."""
        assert self.headers.get("content-type", "").startswith("application/json"), (
            self.status,
            self.body[:200],
        )
        return self.status, str(self.json()["error"])


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> Answer:
    """Send ``raw`` as it is on a new connection and read one answer (by its Content-Length)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed before an answer"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed inside the answer"
            body += chunk
        seconds = time.monotonic() - started
        closed_after = headers.get("connection") == "close" and sock.recv(1) == b""
    return Answer(int(status_line.split()[1]), headers, body, seconds, closed_after)


def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 10.0,
) -> Answer:
    """One request on a new connection (``Host`` is the server's unless given; a POST gets a
    ``Content-Length`` unless it is chunked)."""
    headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    if (body or method == "POST") and "Transfer-Encoding" not in headers:
        headers["Content-Length"] = str(len(body))
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body, timeout)
