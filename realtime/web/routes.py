"""Every front door, registered on an app: the one import of the view modules.

Importing a door module attaches its routes to :data:`~realtime.web.blueprint.blueprint`;
:func:`register` then mounts the blueprint, the WebSocket endpoint and the error handlers.
"""

from __future__ import annotations

from flask import Flask

from realtime.web import events, health, pages, presence, publish  # noqa: F401 (their routes)
from realtime.web.blueprint import blueprint
from realtime.web.responses import register_error_handlers
from realtime.web.ws import register_websocket


def register(app: Flask, *, ws_ping_s: float, max_message: int) -> None:
    app.register_blueprint(blueprint)
    register_websocket(app, ws_ping_s, max_message)
    register_error_handlers(app)
