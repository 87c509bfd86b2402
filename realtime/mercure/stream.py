"""One Mercure subscriber's stream: where it resumes, the replay, then live, all filtered.

The same seam as ``/events`` (:mod:`realtime.fanout.stream`): the subscription is made on the
hub *before* the feed's head is read, so an update is either at or below the head (replayed
from the live feed) or above it (queued live); live updates at or below the cursor are
skipped. What differs is the selection: a Mercure subscriber does not name storage topics but
selectors, so every update (all kept on :data:`~realtime.mercure.store.UPDATES_TOPIC`) is
tested by :meth:`Reader.wants`, in the hub's reader for live ones (what it refuses never
takes a place in the subscriber's bounded queue) and here for replayed ones.

Where a reconnecting subscriber resumes (draft 08, "Reconciliation"), by the id it sends:

- none: live from now; the response still names the cursor (the id of the newest update so
  far, or ``earliest``), so a client that reads headers resumes exactly even before its first
  event;
- ``earliest``: every update the live feed still holds, then live;
- a known id: every update after the *earliest* update that carried it (ids may be reused),
  including later ones that carry it again;
- an unknown id, or one whose update the feed no longer holds: live from now, and the
  response's ``Mercure-Last-Event-ID`` is ``earliest``, which tells the client it may have
  missed updates (the spec's data-loss signal) rather than flooding it with all history.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import gevent

from realtime.core.config import Settings
from realtime.core.errors import HistoryLost
from realtime.core.events import StoredEvent
from realtime.core.sse import encode_comment, encode_retry
from realtime.fanout.hub import Hub, Subscription
from realtime.fanout.slowclient import cut_on_overflow, server_socket
from realtime.fanout.stream import StreamBody, ending_on_storage_failure, stream_deadline
from realtime.mercure.selectors import SelectorSet
from realtime.mercure.store import UPDATES_TOPIC, attributes, frame, is_update
from realtime.mercure.tokens import MercureGrant
from realtime.mercure.updates import EARLIEST
from realtime.ops import metrics
from realtime.storage.interface import Storage

log = logging.getLogger(__name__)

TRANSPORT = "mercure"
REPLAY_CHUNK_UPDATES = 64
HEARTBEAT_COMMENT = "heartbeat"


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: the updates it selected, and what its token lets it read privately."""

    selectors: SelectorSet
    grant: MercureGrant

    def wants(self, event: StoredEvent) -> bool:
        """A Mercure update one of whose topics a selector matches, and, when it is private,
        one of whose topics the token grants (draft 08, "Subscribers"): re-evaluated for every
        update, replayed or live, against the token of this connection."""
        if not is_update(event):
            return False
        attrs = attributes(event.attrs)
        if not self.selectors.matches_any(attrs.topics):
            return False
        return not attrs.private or self.grant.can_read(attrs.topics)


@dataclass(frozen=True, slots=True)
class Start:
    """Where a stream starts: the seq it replays after, the head it replays up to, and the
    cursor it reports (``Mercure-Last-Event-ID``)."""

    epoch: str
    after: int
    head: int
    cursor: str


def latest_cursor(broker: Storage, head: int) -> str:
    """The id a client that has seen every update up to ``head`` resumes from."""
    return broker.latest_alias(head) or EARLIEST


def current_cursor(broker: Storage) -> str:
    """The id a client that has seen every update so far resumes from (discovery, the
    subscriptions API)."""
    return latest_cursor(broker, broker.position().seq)


def find_start(broker: Storage, requested: str | None) -> tuple[Start, Iterator[StoredEvent]]:
    """Where a subscriber that sent ``requested`` starts, and the replay up to the head.

    The replay's first page is read here, before the response starts, so a cursor whose
    update the feed no longer holds is known in time to say so in the response's header.
    """
    epoch, head = broker.position()
    if requested is None:
        return Start(epoch, head, head, latest_cursor(broker, head)), iter(())
    if requested == EARLIEST:
        after: int | None = 0
    else:
        after = broker.alias_seq(requested)
    if after is None:
        return Start(epoch, head, head, EARLIEST), iter(())
    events = broker.feed_replay(epoch, after, head)
    try:
        first = next(events, None)
    except HistoryLost:
        return Start(epoch, head, head, EARLIEST), iter(())
    start = Start(epoch, after, head, requested)
    return start, (chain([first], events) if first is not None else iter(()))


@dataclass(frozen=True, slots=True)
class Plan:
    reader: Reader
    start: Start
    retry_ms: int
    heartbeat_s: float
    #: When (monotonic) the stream ends, and why: the token's exp or the connection's age.
    deadline: float | None


def replay(plan: Plan, events: Iterator[StoredEvent]) -> Iterator[bytes]:
    """The held updates the subscriber wants, in order, a chunk at a time; the scan yields to
    the worker's other greenlets every page, wanted or not (most of the feed may be other
    doors' events)."""
    chunk: list[bytes] = []
    for scanned, event in enumerate(events, 1):
        if plan.reader.wants(event):
            chunk.append(frame(event))
        if len(chunk) >= REPLAY_CHUNK_UPDATES or (scanned % 500 == 0):
            if chunk:
                yield b"".join(chunk)
                metrics.REPLAYED.labels(TRANSPORT).inc(len(chunk))
                chunk = []
            gevent.sleep(0)
    if chunk:
        yield b"".join(chunk)
        metrics.REPLAYED.labels(TRANSPORT).inc(len(chunk))


def live(sub: Subscription, plan: Plan) -> Iterator[bytes]:
    """Updates as the hub's reader queues them (already selected), with keep-alive comments;
    the stream ends at the token's ``exp``, at its maximum age, or when the hub closes it."""
    # An id published between the head's read and its own lookup stands above the head.
    last_seq = max(plan.start.head, plan.start.after)
    wrote_at = time.monotonic()
    while True:
        now = time.monotonic()
        timeout = max(0.0, wrote_at + plan.heartbeat_s - now)
        if plan.deadline is not None:
            timeout = max(0.0, min(timeout, plan.deadline - now))
        sub.wait(timeout)
        events = [e for e in sub.drain() if e.seq > last_seq]
        if events:
            last_seq = events[-1].seq
            yield b"".join(frame(e) for e in events)
            wrote_at = time.monotonic()
            metrics.DELIVERED.labels(TRANSPORT).inc(len(events))
            metrics.DELIVERY_LAG.labels(TRANSPORT).observe(events[0].lag_s(time.time()))
        if sub.closed_reason is not None:
            # Overflow, shutdown, resync: come back soon; the id the client last got resumes it.
            yield encode_retry(random.randint(250, 1500)) + encode_comment(sub.closed_reason)  # noqa: S311
            return
        if plan.deadline is not None and time.monotonic() >= plan.deadline:
            yield encode_comment("expired")
            return
        if not events and time.monotonic() >= wrote_at + plan.heartbeat_s:
            yield encode_comment(HEARTBEAT_COMMENT)
            wrote_at = time.monotonic()


def body(sub: Subscription, plan: Plan, events: Iterator[StoredEvent]) -> Iterator[bytes]:
    # The opening comment goes out at once, so the headers are flushed through any proxy.
    yield encode_retry(plan.retry_ms) + encode_comment("ok")
    yield from ending_on_storage_failure(chain(replay(plan, events), live(sub, plan)))


def open_subscription(
    hub: Hub,
    broker: Storage,
    settings: Settings,
    reader: Reader,
    requested: str | None,
    *,
    who: str,
    address: str,
    environ: dict[str, Any],
    on_end: Callable[[], None] | None = None,
) -> tuple[StreamBody, Start]:
    """The stream of one subscriber, and where it starts (for the response's headers).

    Refusals (limits, draining, Redis down) raise before anything is held; ``on_end`` runs
    once however the stream ends (the subscription's inactive event).
    """
    sub = hub.subscribe([UPDATES_TOPIC], who=who, transport=TRANSPORT, address=address)
    sub.select = reader.wants
    try:
        start, events = find_start(broker, requested)
    except BaseException:
        hub.unsubscribe(sub)
        raise
    plan = Plan(
        reader,
        start,
        settings.retry_ms,
        settings.heartbeat_s,
        stream_deadline(settings.max_connection_age_s, reader.grant.expires_at)[0],
    )
    disarm = cut_on_overflow(sub, server_socket(environ), settings.overflow_grace_s).disarm
    ended = False

    def release() -> None:  # idempotent: the body's end and the server's close both call it
        nonlocal ended
        hub.unsubscribe(sub)
        disarm()
        if not ended:
            ended = True
            if on_end is not None:
                on_end()

    def stream() -> Iterator[bytes]:
        try:
            yield from body(sub, plan, events)
        finally:
            release()

    return StreamBody(stream(), release), start
