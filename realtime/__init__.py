"""realtime: SSE-first notifications for Flask, on gevent and Redis Streams.

``create_app()`` builds the service; :class:`Realtime` is the extension for an existing app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from .extension import Realtime

__all__ = ["Realtime", "create_app"]
__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The realtime service as a Flask app; ``config`` overrides the ``REALTIME_*`` environment."""
    app = Flask(__name__)
    if config:
        app.config.update(config)
    Realtime(app)
    return app
