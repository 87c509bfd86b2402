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
from functools import lru_cache

from realtime.core.events import Draft, StoredEvent
from realtime.core.sse import encode_event
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


@dataclass(frozen=True, slots=True)
class Attributes:
    """What the event's attributes say: the update's topics, its privacy, its retry."""

    topics: tuple[str, ...]
    private: bool
    retry: int | None


@lru_cache(maxsize=4096)
def attributes(attrs: str) -> Attributes:
    """The attributes of one stored update, parsed once however many subscribers test it (the
    text is the same object for all of them, so its hash is computed once too)."""
    parsed = json.loads(attrs)
    retry = parsed.get("r")
    return Attributes(
        topics=tuple(parsed["t"]),
        private=bool(parsed.get("p", False)),
        retry=int(retry) if retry is not None else None,
    )


def is_update(event: StoredEvent) -> bool:
    """Whether ``event`` keeps a Mercure update (every other door's events share the feed)."""
    return event.topic == UPDATES_TOPIC and bool(event.attrs)


def from_event(event: StoredEvent) -> StoredUpdate | None:
    """The update an event keeps; ``None`` for an event that is not a Mercure update."""
    if not is_update(event):
        return None
    attrs = attributes(event.attrs)
    return StoredUpdate(
        id=event.alias,
        topics=attrs.topics,
        data=event.data,
        private=attrs.private,
        type=event.type,
        retry=attrs.retry,
        seq=event.seq,
    )


def frame(event: StoredEvent) -> bytes:
    """The SSE frame a subscriber gets for a stored update: ``retry:`` when the publisher gave
    one, the update's id verbatim as ``id:``, its type, its data line by line (leading spaces
    kept: each line is written after ``data: ``, whose one space a reader strips)."""
    retry = attributes(event.attrs).retry
    head = f"retry: {retry}\n".encode() if retry is not None else b""
    return head + encode_event(id=event.alias, event=event.type, data=event.data)
