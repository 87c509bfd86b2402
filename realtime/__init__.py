"""realtime: SSE-first notifications for Flask, on gevent and Redis Streams.

``create_app()`` builds the service; :class:`Realtime` is the extension for an existing app.
Both are imported lazily, so ``realtime.client`` and the CLI start without loading Flask,
gevent and redis-py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from realtime.extension import Realtime

__all__ = ["Realtime", "create_app"]
__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The realtime service as a Flask app; ``config`` overrides the ``REALTIME_*`` environment."""
    from flask import Flask

    from realtime.extension import Realtime

    # The dashboard and realtime.js live with the front door that serves them.
    app = Flask(__name__, static_folder="web/static")
    if config:
        app.config.update(config)
    Realtime(app)
    return app


def __getattr__(name: str) -> Any:
    if name == "Realtime":
        from realtime.extension import Realtime

        return Realtime
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
