"""Cutting off a client that stopped reading.

When a connection's queue overflows, its writer is usually blocked in a send to a client whose
TCP window is closed. The stream is given ``grace_s`` to notice and say goodbye (``overflow``, or
WebSocket close 1013); if it is still stuck, the socket is shut down so the worker frees its
greenlet and buffers now rather than when TCP gives up, minutes later. The client resumes from
its last complete event (a partial SSE event is discarded by every conformant parser).

The queue bound only counts once the kernel stops taking bytes, so arming a stream also bounds
what the kernel may hold unsent for it (``TCP_NOTSENT_LOWAT``, :data:`UNSENT_LIMIT_BYTES`).
Without that, Linux grows a stream socket's send buffer up to ``net.ipv4.tcp_wmem``'s maximum
(4 MiB by default, and at once on loopback, where nginx connects): a client that stopped reading
was thousands of events behind, with megabytes of kernel memory, before its queue started to
fill. Bytes already in flight are not limited, so a fast client far away keeps its throughput.
"""

from __future__ import annotations

import _socket
import contextlib
import socket
from typing import Any

import gevent

from realtime.fanout.hub import OVERFLOW, Subscription

# Unsent bytes the kernel may queue for one stream before a write waits: a few coalesced writes.
UNSENT_LIMIT_BYTES = 64 * 1024


def server_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The client socket gunicorn exposes in the WSGI environ, if this server exposes one."""
    sock = environ.get("gunicorn.socket")
    return sock if isinstance(sock, socket.socket) else None


def bound_unsent(sock: socket.socket | None, limit: int = UNSENT_LIMIT_BYTES) -> None:
    """Make writes to ``sock`` wait once ``limit`` bytes are queued unsent (where supported)."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)  # absent on some platforms: no bound
    if sock is None or option is None:
        return
    # OSError: not TCP (a Unix socket behind a proxy): that kernel buffer is fixed anyway.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, limit)


class OverflowCut:
    """What :func:`cut_on_overflow` arms: one small object per stream (not three closures; a
    worker holds thousands of idle streams)."""

    __slots__ = ("_grace_s", "_sock", "_sub", "_timer")

    def __init__(self, sub: Subscription, sock: _socket.socket | None, grace_s: float) -> None:
        self._sub = sub
        self._sock = sock
        self._grace_s = grace_s
        self._timer: gevent.Greenlet | None = None

    def on_close(self, reason: str) -> None:
        if reason == OVERFLOW and self._timer is None:
            self._timer = gevent.spawn_later(self._grace_s, self._cut)

    def _cut(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> None:
        self._sub.on_close = None
        if self._timer is not None:
            self._timer.kill(block=False)

    def retarget(self, sock: _socket.socket | None) -> None:
        """The stream's connection is ``sock`` now (it left the server's request with a
        duplicate of its descriptor: :mod:`realtime.fanout.idle`)."""
        self._sock = sock


def cut_on_overflow(sub: Subscription, sock: socket.socket | None, grace_s: float) -> OverflowCut:
    """Arm ``sub`` so an overflow shuts ``sock`` down after ``grace_s``; ``.disarm()`` undoes it.

    Also bounds the bytes the kernel holds unsent for ``sock`` (:func:`bound_unsent`), so a
    client that stops reading reaches its queue bound after about ``UNSENT_LIMIT_BYTES``.
    """
    bound_unsent(sock)
    cut = OverflowCut(sub, sock, grace_s)
    sub.on_close = cut.on_close
    return cut
