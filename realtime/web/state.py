"""What every front door needs from the extension, found through the app, not by importing it.

:class:`realtime.extension.Realtime` builds one :class:`RealtimeState` per app and keeps it in
``app.extensions``; the views look it up with :func:`state`. So the extension imports the views
to register them, and nothing imports the extension back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Request

from realtime.core.auth import Access, TokenVerifier
from realtime.core.config import Settings
from realtime.fanout.hub import Hub
from realtime.fanout.idle import IdleStreams
from realtime.publisher import Publisher
from realtime.storage.broker import Broker
from realtime.storage.redis_server import RedisServer

EXTENSION_KEY = "realtime"

#: The host app's authorize hook: a request without a token in, what it may do out (``None``:
#: nothing, as without a token).
AuthorizeHook = Callable[[Request], Access | None]


@dataclass
class Hooks:
    """What the host app plugs into realtime (``@rt.authorize``). One per extension, shared by
    every app it was given, and read at each request, so a hook registered after ``init_app``
    applies all the same."""

    authorize: AuthorizeHook | None = None


@dataclass
class RealtimeState:
    settings: Settings
    broker: Broker
    hub: Hub
    verifier: TokenVerifier
    #: What ``rt.publish`` and every publishing door store through, on :attr:`broker`.
    publisher: Publisher
    embedded: RedisServer | None = None
    hooks: Hooks = field(default_factory=Hooks)
    #: Where realtime's routes are mounted (``"/rt"``), ``None`` at the root.
    url_prefix: str | None = None
    #: ``app.wsgi_app`` as realtime left it, and whether under realtime's wrappers it was
    #: Flask's own (no middleware of the app's, no override of Flask's request handling): the
    #: lean path (:mod:`realtime.web.lean`) is open only while both still hold.
    wsgi_app: Any = None
    plain_wsgi: bool = False
    #: Where the app's idle SSE streams wait without greenlets (one per worker process).
    idle: IdleStreams = field(default_factory=IdleStreams)


def state(app: Any) -> RealtimeState:
    """The realtime state of ``app`` (``current_app`` in a view)."""
    result: RealtimeState = app.extensions[EXTENSION_KEY]
    return result
