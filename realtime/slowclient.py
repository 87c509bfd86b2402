"""Cutting off a client that stopped reading.

When a connection's queue overflows, its writer is usually blocked in a send to a client whose
TCP window is closed. The stream is given ``grace_s`` to notice and say goodbye (``overflow``, or
WebSocket close 1013); if it is still stuck, the socket is shut down so the worker frees its
greenlet and buffers now rather than when TCP gives up, minutes later. The client resumes from
its last complete event (a partial SSE event is discarded by every conformant parser).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import gevent

from .hub import OVERFLOW, Subscription


def server_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The client socket gunicorn exposes in the WSGI environ, if this server exposes one."""
    sock = environ.get("gunicorn.socket")
    return sock if isinstance(sock, socket.socket) else None


def cut_on_overflow(
    sub: Subscription, sock: socket.socket | None, grace_s: float
) -> Callable[[], None]:
    """Arm ``sub`` so an overflow shuts ``sock`` down after ``grace_s``; returns a disarm."""
    timers: list[gevent.Greenlet] = []

    def cut() -> None:
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def on_close(reason: str) -> None:
        if reason == OVERFLOW:
            timers.append(gevent.spawn_later(grace_s, cut))

    def disarm() -> None:
        sub.on_close = None
        for timer in timers:
            timer.kill(block=False)

    sub.on_close = on_close
    return disarm
