"""The decisions every front door shares: publish, presence and the Redis-failure answer.

HTTP and WebSocket differ in how a request arrives and how an answer leaves; what a publish
means (who may, which limits, which refusal) must not differ, so both call these with plain
values and map nothing themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from realtime.core import errors as core_errors
from realtime.core.access import (
    authorize_publish,
    authorize_subscribe,
    presence_visible,
    publisher_scope,
)
from realtime.core.auth import Grant
from realtime.core.errors import BadRequest, BrokerError, Unavailable
from realtime.core.events import Draft, Published
from realtime.ops import metrics
from realtime.web.state import RealtimeState

log = logging.getLogger(__name__)


def publish(
    rt: RealtimeState,
    drafts: Sequence[Draft],
    *,
    grant: Grant | None,
    token: str | None,
    idempotency_key: str | None,
) -> Published:
    """Store ``drafts`` atomically for a caller holding ``grant`` (from ``token``, or from the
    app's authorize hook when ``token`` is ``None``).

    Refusals are the API's own: 403 for a topic the grant lacks, then those of
    :meth:`realtime.publisher.Publisher.store` (the rate limits, a reused idempotency key),
    which ``rt.publish`` meets too; a refused publish writes nothing.
    """
    granted = authorize_publish([d.topic for d in drafts], grant)
    return rt.publisher.store(
        list(drafts),
        scope=publisher_scope(granted.subject, token),
        limited=True,
        idempotency_key=idempotency_key,
    )


def presence_answer(rt: RealtimeState, topic: str, grant: Grant | None) -> dict[str, Any]:
    """Who follows ``topic`` across every worker and host, for a caller who may subscribe to it;
    the names only when the grant may see them (:func:`~realtime.core.access.presence_visible`)."""
    authorize_subscribe([topic], grant, rt.settings.public_topics)
    if rt.hub.presence is None:
        raise BadRequest("Presence is off (REALTIME_PRESENCE_TTL_S=0).", code="presence_off")
    present, connections = rt.hub.presence.present(topic)
    hidden = not presence_visible(topic, grant)
    return {
        "topic": topic,
        "present": [] if hidden else present,
        "connections": connections,
        "hidden": hidden,
    }


def redis_unavailable(err: BrokerError, where: str) -> Unavailable:
    """The 503 a request gets when Redis failed under it, logged and counted once here."""
    log.warning("Redis unavailable during a %s: %s", where, err)
    metrics.REDIS_ERRORS.labels("request").inc()
    return core_errors.redis_unavailable()
