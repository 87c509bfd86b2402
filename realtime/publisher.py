"""Publishing from Python: the same script, checks and refusals as ``POST /publish``, no HTTP.

A :class:`Publisher` is what a Flask view (``rt.publish``), a Celery task, a ``flask`` command
or a cron script calls to store events. It is also what the HTTP and WebSocket doors call once
they have authorised a token (:func:`realtime.web.service.publish`), so a publish means one
thing whichever door it came through: the same validation (:mod:`realtime.core.publishing`),
the same atomic Lua script, the same rate limits and idempotency, and the same stable ``error``
codes, raised here as :class:`~realtime.core.errors.ClientError` (``exc.error``, ``exc.status``,
``exc.message``, ``exc.retry_after``). A refused publish writes nothing.

Code running in the app is trusted: it needs no token and may publish to any topic. Limits
that protect the server from a publisher apply only to one that names itself
(``publisher="billing"``): it then shares the rate (``REALTIME_PUBLISH_RATE``, new topics a
minute) and the idempotency keys of a token whose ``sub`` is ``billing``. Without a name, keys
are scoped to the app's own code, apart from every token's.

Safe from many greenlets or threads at once (a gevent worker, a sync or gthread worker, a
Celery prefork child): the storage's pool blocks for a free connection, its publish lanes
use :mod:`threading` primitives, and both make new connections after a fork.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from realtime.core.access import publish_rate_limited
from realtime.core.config import Settings, load_settings
from realtime.core.errors import (
    BadRequest,
    BrokerError,
    ConfigError,
    IdempotencyConflict,
    RateLimited,
    redis_unavailable,
)
from realtime.core.events import Draft, Published
from realtime.core.publishing import draft, drafts_of_batch, validate_idempotency_key
from realtime.ops import metrics
from realtime.storage.broker import Broker
from realtime.storage.redis_server import running_embedded_redis

__all__ = ["Publisher", "app_scope", "named_scope"]

log = logging.getLogger(__name__)

#: The scope of the app's own unnamed publishes: no token's scope looks like it (``sub:`` or
#: ``token:``), so an idempotency key chosen in code never collides with a client's.
APP_SCOPE = "app"


def named_scope(publisher: str) -> str:
    """The scope of a publisher that names itself: that of a token whose ``sub`` it is."""
    return f"sub:{publisher}"


def app_scope(publisher: str | None) -> tuple[str, bool]:
    """(scope, rate limited): a named publisher is limited as its token would be; the app's own
    code is not."""
    if publisher is None:
        return APP_SCOPE, False
    if not isinstance(publisher, str) or not publisher:
        raise TypeError("publisher must be a non-empty string (who is publishing), or None.")
    return named_scope(publisher), True


class Publisher:
    """Store events from Python code, exactly as the HTTP API would.

    ``Publisher()`` reads the ``REALTIME_*`` environment (``config`` overrides it, as
    ``app.config`` does for the extension) and connects to ``REALTIME_REDIS_URL`` (or
    ``redis_url``); with neither, to the embedded Redis of a development server started under
    ``REALTIME_DATA_DIR``. It opens no connection until the first publish. Inside a Flask app,
    use ``rt.publish``: it calls the app's own publisher, which shares the server's storage.
    """

    def __init__(
        self, redis_url: str | None = None, *, config: Mapping[str, Any] | None = None
    ) -> None:
        settings = load_settings(config)
        # A script beside a development server (make run) finds its embedded Redis.
        url = redis_url or settings.redis_url or running_embedded_redis(settings.data_dir)
        if not url:
            raise ConfigError(
                "A Publisher needs Redis: set REALTIME_REDIS_URL (or pass redis_url=), the "
                "same URL the server uses. Only a development server started here with no "
                f"URL is found without one, and none answers under REALTIME_DATA_DIR "
                f"({settings.data_dir!r})."
            )
        self._settings = settings
        self._broker = Broker.from_settings(url, settings)
        self._owns_broker = True
        self._stored: Callable[[Published, list[Draft]], None] | None = None

    @classmethod
    def over(
        cls,
        broker: Broker,
        settings: Settings,
        stored: Callable[[Published, list[Draft]], None] | None = None,
    ) -> Publisher:
        """A publisher on a server's own storage (the extension's), which it does not close.

        ``stored`` is told every publish once it is stored, with its drafts (the server's hub,
        which may deliver them at once rather than when its reader reads them back)."""
        publisher = cls.__new__(cls)
        publisher._settings = settings
        publisher._broker = broker
        publisher._owns_broker = False
        publisher._stored = stored
        return publisher

    @property
    def settings(self) -> Settings:
        return self._settings

    # -- the public API -----------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        data: Any,
        *,
        type: str | None = None,
        idempotency_key: str | None = None,
        publisher: str | None = None,
    ) -> str:
        """Store one event and return its id (``epoch-seq``, what ``Last-Event-ID`` carries).

        ``data`` is any JSON value: a string is delivered as its characters, anything else as
        its compact JSON text. ``type`` is the SSE event name (``message`` when ``None``). A
        repeated ``idempotency_key`` with the same event returns the first publish's id and
        stores nothing; with another event it raises ``idempotency_key_reused``.
        """
        fields: dict[str, Any] = {"topic": topic, "data": data}
        if type is not None:
            fields["type"] = type
        event = draft(fields, self._settings.max_payload)
        return self._publish_public([event], idempotency_key, publisher).ids[0]

    def publish_many(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        publisher: str | None = None,
    ) -> list[str]:
        """Store ``events`` (each ``{"topic", "data"[, "type"]}``) atomically: all or none, with
        consecutive ids in order, as ``POST /publish`` with ``{"events": [...]}``."""
        batch = list(events) if not isinstance(events, list | tuple) else events
        drafts = drafts_of_batch(
            batch, max_payload=self._settings.max_payload, max_batch=self._settings.max_batch
        )
        return self._publish_public(drafts, idempotency_key, publisher).ids

    def close(self) -> None:
        """Close the connections of a publisher made with ``Publisher()`` (not the server's)."""
        if self._owns_broker:
            self._broker.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- shared with the front doors ----------------------------------------------------------

    def store(
        self, drafts: list[Draft], *, scope: str, limited: bool, idempotency_key: str | None
    ) -> Published:
        """Store validated ``drafts`` for the publisher ``scope``; the front doors call this
        once they have authorised a token. ``limited`` applies the publish rate and new-topic
        limits. Refusals are the API's: 429 ``rate_limited`` / ``topic_rate_limited`` with
        ``retry_after``, 400 ``idempotency_key_reused``. A Redis failure is raised as
        :class:`~realtime.core.errors.BrokerError`, for the door to answer."""
        settings = self._settings
        try:
            published = self._broker.publish(
                drafts,
                idempotency=f"{scope}\n{idempotency_key}" if idempotency_key else None,
                rate_scope=scope if limited else None,
                rate=settings.publish_rate if limited else 0,
                burst=settings.publish_burst,
                new_topics_per_minute=settings.new_topics_per_minute if limited else 0,
            )
        except RateLimited as exc:
            raise publish_rate_limited(
                exc, settings.publish_rate, settings.new_topics_per_minute
            ) from None
        except IdempotencyConflict:
            raise BadRequest(
                "This idempotency key was already used for a different request.",
                code="idempotency_key_reused",
            ) from None
        if self._stored is not None and not published.duplicate:
            self._stored(published, drafts)
        return published

    def _publish_public(
        self, drafts: list[Draft], idempotency_key: str | None, publisher: str | None
    ) -> Published:
        key = validate_idempotency_key(idempotency_key)
        scope, limited = app_scope(publisher)
        try:
            return self.store(drafts, scope=scope, limited=limited, idempotency_key=key)
        except BrokerError as exc:
            log.warning("Redis unavailable during an in-process publish: %s", exc)
            metrics.REDIS_ERRORS.labels("publish").inc()
            raise redis_unavailable() from exc
