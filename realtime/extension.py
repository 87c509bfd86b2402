"""Wiring: the :class:`Realtime` Flask extension, the one place that joins the layers.

``init_app`` validates the settings, builds the storage (broker), the fan-out (hub, presence)
and the token verifier, keeps them in ``app.extensions["realtime"]``
(:class:`~realtime.web.state.RealtimeState`) and registers the front doors, which find that
state through the app. The broker and hub open no connection until the first request that
needs one, so importing the app in gunicorn's master touches no Redis socket; only with no
``REALTIME_REDIS_URL`` does it start the embedded Redis (the shipped gunicorn config starts it
in the master instead, so every worker shares one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, current_app, has_app_context
from werkzeug.middleware.proxy_fix import ProxyFix

from realtime import flask_cli
from realtime.core.auth import TokenVerifier
from realtime.core.config import load_settings
from realtime.core.errors import ConfigError
from realtime.fanout.directwrite import expose_server_response
from realtime.fanout.hub import Hub
from realtime.fanout.presence import Presence
from realtime.fanout.window import RecentEvents
from realtime.mercure import views as mercure_views
from realtime.ops.devsecret import load_or_create_dev_secret
from realtime.publisher import Publisher
from realtime.storage.broker import Broker
from realtime.storage.redis_server import embedded_redis
from realtime.web import routes
from realtime.web.cors import enable_cors
from realtime.web.slowrequest import bound_requests
from realtime.web.state import EXTENSION_KEY, AuthorizeHook, Hooks, RealtimeState, state

log = logging.getLogger(__name__)


def normal_prefix(url_prefix: str | None) -> str | None:
    """``"/rt"`` from ``"/rt"`` or ``"/rt/"``; ``None`` for none (``None``, ``""``, ``"/"``)."""
    if url_prefix is None or url_prefix.strip("/") == "":
        return None
    if not url_prefix.startswith("/") or "//" in url_prefix or "<" in url_prefix:
        raise ValueError(
            f"url_prefix must be a path such as '/rt' (no variables), not {url_prefix!r}."
        )
    return url_prefix.rstrip("/")


class Realtime:
    """The Flask extension: ``Realtime(app)``, or ``rt = Realtime()`` and ``rt.init_app(app)``
    for each app of an app factory (each with its own settings and storage).

    ``rt.publish`` and ``rt.publish_many`` store events from the app's own code (a view, a
    ``flask`` command, a task run inside ``app.app_context()``), through the same checks and
    script as ``POST /publish`` (see :class:`~realtime.publisher.Publisher`).
    """

    def __init__(self, app: Flask | None = None, *, url_prefix: str | None = None) -> None:
        self.app = app
        self.hooks = Hooks()
        if app is not None:
            self.init_app(app, url_prefix=url_prefix)

    def authorize(self, hook: AuthorizeHook) -> AuthorizeHook:
        """Decorate the function that says what a request without a token may do.

        It is called with the request (so Flask's ``session``, flask-login's ``current_user``
        and every header are at hand) for ``/events``, ``/ws``, ``/presence`` and ``/publish``
        when no token came with it, and returns a :class:`realtime.Access` (the topic patterns
        it may follow and publish to, and who it is) or ``None`` (nothing: 401 unless the
        topics are public). Tokens keep working beside it. Its grants rest on the app's session
        cookie, so a publish through them needs an allowed ``Origin`` as the token cookie does.
        """
        self.hooks.authorize = hook
        return hook

    @classmethod
    def service(cls, app: Flask) -> Realtime:
        """realtime as the whole app (``create_app``): it answers every path with the JSON error
        contract, limits every body, and trusts ``REALTIME_PROXY_HOPS`` proxies."""
        rt = cls()
        rt.app = app
        rt._setup(app, url_prefix=None, standalone=True)
        return rt

    def publish(
        self,
        topic: str,
        data: Any,
        *,
        type: str | None = None,
        idempotency_key: str | None = None,
        publisher: str | None = None,
    ) -> str:
        """Store one event on the current app (or this extension's own) and return its id.

        See :meth:`realtime.publisher.Publisher.publish`; a refusal raises
        :class:`~realtime.core.errors.ClientError` with the HTTP API's ``error`` code.
        """
        return self._publisher().publish(
            topic, data, type=type, idempotency_key=idempotency_key, publisher=publisher
        )

    def publish_many(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        publisher: str | None = None,
    ) -> list[str]:
        """Store ``events`` atomically, in order, and return their ids (see
        :meth:`realtime.publisher.Publisher.publish_many`)."""
        return self._publisher().publish_many(
            events, idempotency_key=idempotency_key, publisher=publisher
        )

    def mercure_link(
        self, response: Response, *, cursor: bool = True, **attributes: str
    ) -> Response:
        """Add the Mercure discovery header to a response of the app's own (draft 08,
        "Discovery"): ``Link: <hub>; rel="mercure"; last-event-id="..."``. A Mercure client
        reading the resource finds the hub there and, passing ``last-event-id`` back as
        ``last_event_id``, misses no update published after the resource was generated.
        ``attributes`` add target attributes: ``type="book"``,
        ``content_type="application/merge-patch+json"``."""
        if not state(self._app()).settings.mercure:
            raise RuntimeError(
                "rt.mercure_link: the Mercure hub is off (REALTIME_MERCURE=0), so there is no "
                "hub to advertise."
            )
        response.headers.add("Link", mercure_views.discovery_link(cursor=cursor, **attributes))
        return response

    def _publisher(self) -> Publisher:
        return state(self._app()).publisher

    def _app(self) -> Flask:
        """The app of the current context if realtime is on it, else the one given to
        ``Realtime(app)``; code outside any app context of an app factory must enter one."""
        if has_app_context() and EXTENSION_KEY in current_app.extensions:
            app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
            return app
        if self.app is not None:
            return self.app
        raise RuntimeError(
            "realtime does not know which app to publish on: call this inside a request or "
            "`with app.app_context():` of an app given to init_app, or create the extension "
            "with Realtime(app)."
        )

    def init_app(self, app: Flask, *, url_prefix: str | None = None) -> None:
        """Add realtime to ``app``, its routes under ``url_prefix`` (say ``"/rt"``).

        Embedded, realtime keeps to its own routes: its JSON errors, body limits and time
        bounds apply to them only, and the app's error pages, ``MAX_CONTENT_LENGTH``, static
        files and proxy handling stay its own. Settings come from ``app.config`` over the
        environment (``REALTIME_*``), validated alike.
        """
        self._setup(app, url_prefix=url_prefix, standalone=False)

    def _setup(self, app: Flask, *, url_prefix: str | None, standalone: bool) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(f"realtime is already set up on the app {app.name!r}.")
        plain_wsgi = flask_handles_requests(app)
        prefix = normal_prefix(url_prefix)
        settings = load_settings(app.config)
        if settings.proxy_hops and not standalone:
            raise ConfigError(
                "REALTIME_PROXY_HOPS applies to the realtime service (create_app) only: an app "
                "embedding realtime decides which proxies it trusts for all its routes. Unset "
                "it and wrap app.wsgi_app in werkzeug's ProxyFix yourself."
            )
        embedded = None
        redis_url = settings.redis_url
        if not redis_url:
            redis_url, embedded = embedded_redis(settings.data_dir)
        secret = settings.jwt_secret
        if not settings.has_jwt_key:
            secret = load_or_create_dev_secret(settings.data_dir)
        verifier = TokenVerifier(secret=secret, public_key=settings.jwt_public_key)
        broker = Broker.from_settings(redis_url, settings)
        presence = Presence(broker, settings.presence_ttl_s) if settings.presence_ttl_s else None
        hub = Hub(
            broker,
            max_queue=settings.max_queue,
            max_connections=settings.max_connections,
            presence=presence,
            max_per_address=settings.max_connections_per_ip,
            recent=RecentEvents(
                settings.recent_events,
                settings.recent_bytes,
                maxlen=settings.history_maxlen,
                ttl_s=settings.history_ttl_s,
            ),
        )
        app.extensions[EXTENSION_KEY] = RealtimeState(
            settings,
            broker,
            hub,
            verifier,
            Publisher.over(broker, settings, stored=hub.offer_published),
            embedded,
            self.hooks,
            prefix,
        )
        app.cli.add_command(flask_cli.group)  # flask --app ... realtime token|publish|listen
        if settings.cors_origins:
            enable_cors(app, settings.cors_origins, prefix, mercure=settings.mercure)
        paths = routes.register(app, url_prefix=prefix, standalone=standalone)
        if settings.mercure:
            paths |= mercure_views.register(app, url_prefix=prefix)
        # Lets an SSE stream find gunicorn's response, to write live events straight to its
        # socket (it only adds a key to the environ of each request).
        app.wsgi_app = expose_server_response(app.wsgi_app)  # type: ignore[method-assign,assignment]
        # Bodies get REALTIME_BODY_TIMEOUT_S to arrive: every body in the service, the bodies
        # sent to realtime's own routes in a host app.
        app.wsgi_app = bound_requests(  # type: ignore[method-assign,assignment]
            app.wsgi_app, settings.body_timeout_s, None if standalone else paths
        )
        if standalone and settings.proxy_hops:
            # Behind nginx: the client's address is in X-Forwarded-For, set by a proxy we trust.
            app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
                app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops
            )
        realtime_state = app.extensions[EXTENSION_KEY]
        realtime_state.wsgi_app = app.wsgi_app
        realtime_state.plain_wsgi = plain_wsgi


#: Flask's request handling, method by method: an app class that overrides any of them handles
#: requests its own way, and the lean path (realtime.web.lean) must not go round it.
FLASK_REQUEST_METHODS = (
    "__call__",
    "wsgi_app",
    "request_context",
    "app_context",
    "full_dispatch_request",
    "preprocess_request",
    "dispatch_request",
    "make_response",
    "process_response",
    "finalize_request",
    "handle_user_exception",
    "handle_exception",
    "do_teardown_request",
)


def flask_handles_requests(app: Flask) -> bool:
    """Whether ``app`` handles a request as Flask itself does: its class overrides none of
    Flask's request methods, and nothing wraps its ``wsgi_app`` yet (realtime's own wrappers
    come next)."""
    wsgi_app = app.wsgi_app
    own = getattr(wsgi_app, "__func__", None) is Flask.wsgi_app
    own = own and getattr(wsgi_app, "__self__", None) is app
    return own and all(
        getattr(type(app), name) is getattr(Flask, name) for name in FLASK_REQUEST_METHODS
    )
