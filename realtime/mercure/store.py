"""How a Mercure update is kept in realtime's storage, and read back. Pure.

Every Mercure update is one event on one storage topic, :data:`UPDATES_TOPIC`, whose name no
realtime topic can take (:data:`~realtime.core.topics.TOPIC_RE` refuses ``!``): ``/events``,
``/ws`` and ``/publish`` can never name it, so a private Mercure update cannot reach a client of
another door through a public topic or a broad token. The Mercure door finds updates by its
selectors in the live feed (:meth:`~realtime.storage.broker.Broker.feed_replay`), not by topic.

The event carries:

- ``type`` and ``data``: the update's (``message`` when it has no type);
- ``alias``: the update's id, the publisher's own or one the hub made (``urn:uuid:<uuid4>``,
  random, so ids reveal nothing of the order of private updates), by which a client resumes;
- ``attrs``: compact JSON of what else Mercure needs: ``t`` the topics (canonical first), ``p``
  private (present only when true), ``r`` the retry (present only when given).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from realtime.core.events import Draft, StoredEvent
from realtime.mercure.updates import Update

#: Not a realtime topic: the isolation from every other door rests on that (tested).
UPDATES_TOPIC = "mercure!updates"
DEFAULT_TYPE = "message"


def new_id() -> str:
    """An id for an update its publisher gave none: a random URN (draft 08 recommends opaque
    ids, so a cursor says nothing of the private updates around it)."""
    return f"urn:uuid:{uuid.uuid4()}"


def to_draft(update: Update, *, generated_id: str | None = None) -> Draft:
    """The event that keeps ``update``; its id is the publisher's, else ``generated_id``
    (else a new one)."""
    attrs: dict[str, object] = {"t": list(update.topics)}
    if update.private:
        attrs["p"] = True
    if update.retry is not None:
        attrs["r"] = update.retry
    return Draft(
        topic=UPDATES_TOPIC,
        type=update.type or DEFAULT_TYPE,
        data=update.data,
        attrs=json.dumps(attrs, ensure_ascii=False, separators=(",", ":")),
        alias=update.id or generated_id or new_id(),
    )


@dataclass(frozen=True)
class StoredUpdate:
    """A Mercure update as read back: what a subscriber's stream needs to select and send it."""

    id: str
    topics: tuple[str, ...]
    data: str
    private: bool
    type: str
    retry: int | None
    seq: int


def from_event(event: StoredEvent) -> StoredUpdate | None:
    """The update an event keeps; ``None`` for an event that is not a Mercure update (every
    other door's events share the feed)."""
    if event.topic != UPDATES_TOPIC or not event.attrs:
        return None
    attrs = json.loads(event.attrs)
    retry = attrs.get("r")
    return StoredUpdate(
        id=event.alias,
        topics=tuple(attrs["t"]),
        data=event.data,
        private=bool(attrs.get("p", False)),
        type=event.type,
        retry=int(retry) if retry is not None else None,
        seq=event.seq,
    )
