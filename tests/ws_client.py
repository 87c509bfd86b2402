"""WebSocket clients for the tests: a JSON layer over simple-websocket, and a bare upgrade."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from typing import Any

import simple_websocket
from conftest import Gunicorn
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request


class Client:
    """A thin JSON layer over simple_websocket.Client for the tests."""

    def __init__(self, server: Gunicorn, query: str = "", headers: dict[str, str] | None = None):
        url = f"ws://127.0.0.1:{server.port}/ws{query}"
        self.ws = simple_websocket.Client.connect(url, headers=headers)
        # simple-websocket's client leaves frames that arrived in the same read as the 101
        # response (our welcome, often) in wsproto's buffer until more bytes come: process them.
        self.ws._handle_events()

    def send(self, **message: Any) -> None:
        self.ws.send(json.dumps(message))

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        raw = self.ws.receive(timeout=timeout)
        assert raw is not None, "nothing received in time"
        return dict(json.loads(raw))

    def until(
        self, kind: str, timeout: float = 10.0
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The next frame of ``kind`` and the frames received before it."""
        before: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind:
                return frame, before
            before.append(frame)

    def events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] == "event":
                got.append(frame)
        return got

    def closed_with(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.ws.receive(timeout=0.2)
            except simple_websocket.ConnectionClosed as closed:
                return int(closed.reason)
        raise AssertionError("the server did not close the socket")

    def close(self) -> None:
        with contextlib.suppress(simple_websocket.ConnectionClosed):
            self.ws.close()


def handshake_status(port: int, path: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """The HTTP status and body a WebSocket upgrade gets (simple-websocket's client would leak
    its socket when the upgrade is refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        ws = WSConnection(ConnectionType.CLIENT)
        extra = [(name.encode(), value.encode()) for name, value in headers]
        sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target=path, extra_headers=extra)))
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(4096)
        head, _, body = reply.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        while length and len(body) < int(length.group(1)):
            body += sock.recv(4096)
        return int(head.split()[1]), body
