"""realtime: SSE-first notifications for Flask, on gevent and Redis Streams.

``create_app()`` builds the service; :class:`Realtime` is the extension for an existing app;
:class:`Publisher` publishes from a process with no app (a worker, a script).
All three are imported lazily, so ``realtime.client`` and the CLI start without loading Flask,
gevent and redis-py, and work in a client-only install (``pip install 'flask-realtime[client]'``)
that has none of them; there, asking for the server says which extra brings it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from flask import Flask

    from realtime.core.auth import Access
    from realtime.extension import Realtime
    from realtime.publisher import Publisher

from realtime.core.errors import ClientError, RealtimeError
from realtime.core.version import __version__

__all__ = [
    "Access",
    "ClientError",
    "Publisher",
    "Realtime",
    "RealtimeError",
    "__version__",
    "create_app",
]


_SERVER_EXTRA = "flask-realtime[server]"


def _server_missing(exc: ModuleNotFoundError) -> NoReturn:
    """Raise ``exc`` again with the sentence a client-only install needs: which extra to install.

    A module of this package that is missing is a broken install, not a missing extra, and is
    raised unchanged.
    """
    if exc.name is None or exc.name.partition(".")[0] == "realtime":
        raise exc
    raise ModuleNotFoundError(
        f"The realtime server needs {exc.name!r}, which is not installed: this looks like a "
        f"client-only install; install the server extra with pip install '{_SERVER_EXTRA}'.",
        name=exc.name,
    ) from exc


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The realtime service as a Flask app; ``config`` overrides the ``REALTIME_*`` environment."""
    try:
        from flask import Flask

        from realtime.extension import Realtime
    except ModuleNotFoundError as exc:
        _server_missing(exc)

    # No static folder of the app's own: realtime's blueprint serves /static (realtime.js and
    # the dashboard's files), as it does under a prefix in an app that embeds it.
    app = Flask(__name__, static_folder=None)
    if config:
        app.config.update(config)
    Realtime.service(app)
    return app


def __getattr__(name: str) -> Any:
    if name == "Access":  # PyJWT and cryptography load with it: not for every import of realtime
        from realtime.core.auth import Access

        return Access
    try:
        if name == "Realtime":
            from realtime.extension import Realtime

            return Realtime
        if name == "Publisher":
            from realtime.publisher import Publisher

            return Publisher
    except ModuleNotFoundError as exc:
        _server_missing(exc)
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
