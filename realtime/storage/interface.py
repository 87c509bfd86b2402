"""The storage interface: what the fan-out and the front doors may ask of where events live.

:class:`Storage` is a :class:`typing.Protocol`; :class:`realtime.storage.broker.Broker` (one
Redis, Lua scripts) is today's only implementation. A second one (for instance on Redis Cluster,
with topics spread over shards: a later issue) must provide, exactly:

1. **Atomic publish of a batch to topic and feed.** :meth:`Storage.publish` stores every draft
   of a batch in its topic's history *and* in the live feed, or none of them anywhere. Every
   refusal (idempotency conflict, rate limit) is decided before the first write, so a refused
   publish writes nothing, rate buckets included. The answer is a
   :class:`~realtime.core.events.Published`: the epoch and one seq per draft, in order.
2. **Contiguous seqs per feed.** Within an epoch, a feed's seqs rise by exactly one per event,
   so a reader tells a gap by arithmetic. An id ``<epoch>-<seq>`` is never handed out twice: a
   store that comes back without events it already handed out (restored from an older
   snapshot) must start a new epoch, at the latest when a worker that saw a higher seq (its high
   water) next talks to it.
3. **Replay since a position, with exact loss detection.** :meth:`Storage.check_replay` answers
   ``ok`` only if every event after the position on those topics is still held, and
   :meth:`Storage.replay` up to the checked head then yields exactly those, merged in seq order.
   Otherwise it says why: ``epoch`` (the position is of another epoch: the store lost its data
   or is another store), ``unknown_id`` (the position is ahead of the head), ``trimmed`` (an
   event after it is gone: over ``maxlen``, past the TTL, or its topic expired as a whole).
   ``fresh`` is a client with no position. A doubt answers ``trimmed`` or ``epoch``, never
   ``ok``: the client then refetches instead of silently missing events. History lost while a
   replay runs raises :class:`~realtime.core.errors.HistoryLost` instead of being skipped.
4. **A live feed.** :meth:`Storage.reader` gives a :class:`Feed` of every event of every topic,
   in seq order, each carrying its epoch, read with a blocking timeout; it keeps at least
   :attr:`Retention.firehose_maxlen` recent events, so a reader away for a moment resumes
   where it was. :meth:`Feed.position` reads the epoch and head together.
5. **Idempotency.** A publish repeated with the same (publisher-scoped) idempotency key within
   :attr:`Retention.idempotency_ttl_s` returns the first publish's ids with ``duplicate=True``
   and writes nothing; with other content it raises
   :class:`~realtime.core.errors.IdempotencyConflict`.
6. **Rate limits.** Per publisher (``rate_scope``), a token bucket of events (``rate`` a second,
   ``burst`` at most) and one of new topics (``new_topics_per_minute``; a topic is new while it
   has no history), shared by every worker and host; over either,
   :class:`~realtime.core.errors.RateLimited`, and nothing is written.
7. **Presence.** ``(topic, member)`` entries added or refreshed with an expiry and removed in
   one call; the unexpired members of a topic read back; a topic nobody refreshes leaves nothing.
8. **Errors.** The store failing underneath raises :class:`~realtime.core.errors.BrokerError`
   (the web layer answers 503); nothing else leaks a driver's exceptions.

Positions are shaped for shards without building them: see :class:`Position`.

Deliberately not here: any implementation, any Redis name, subscriptions (the hub owns them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from realtime.core.events import Draft, Published, StoredEvent

ReplayStatus = Literal["fresh", "ok", "epoch", "unknown_id", "trimmed"]


class Position(NamedTuple):
    """Where a feed stands, or a client in it: today one part, ``(epoch, seq)``.

    The epoch names one lifetime of one counter; the seq is the last event reached in it. A
    sharded implementation carries one part per shard: each shard has its own counter, hence its
    own epoch, its own contiguous seqs and its own feed, and a shard that loses its data changes
    only its own part's epoch (its clients replay the other shards exactly and are told ``epoch``
    for that one). The wire id ``<epoch>-<seq>`` is the one-part form of a position. Until
    then the methods below take a position's two fields, ``epoch`` and a seq, as they are.
    """

    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class ReplayCheck:
    """Whether a client at ``after`` can be replayed exactly, and where history stands now.

    ``(epoch, head)`` is the current :class:`Position`: replay up to ``head``, then go live.
    """

    status: ReplayStatus
    epoch: str
    head: int


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history is kept (from ``REALTIME_HISTORY_*`` and friends)."""

    #: Events kept per topic.
    maxlen: int
    #: Seconds an event is kept (0: no age limit); a topic idle past it (and a margin) expires
    #: as a whole.
    ttl_s: int
    #: Events kept in the live feed, for readers that were away a moment.
    firehose_maxlen: int
    #: Seconds an idempotency key is remembered.
    idempotency_ttl_s: int


class Feed(Protocol):
    """The live feed as one hub reads it: every event of every topic, in seq order."""

    def position(self) -> Position:
        """The epoch and head seq, read together."""
        ...

    def read(self, after: int, *, block_ms: int | None, count: int = 1000) -> list[StoredEvent]:
        """Events with seq > ``after``, each with its epoch, waiting up to ``block_ms`` (``None``:
        only those there now)."""
        ...

    def close(self) -> None: ...


class Storage(Protocol):
    """Where events live, in order: everything the fan-out and the front doors use of it."""

    # -- connections ---------------------------------------------------------------------------

    def warm(self) -> None:
        """Open every connection now, so the count never changes with load."""
        ...

    def ping(self) -> bool:
        """Whether the store answers (``/readyz``)."""
        ...

    def close(self) -> None: ...

    # -- publish -------------------------------------------------------------------------------

    def publish(
        self,
        drafts: Sequence[Draft],
        *,
        idempotency: str | None = None,
        rate_scope: str | None = None,
        rate: float = 0,
        burst: int = 0,
        new_topics_per_minute: int = 0,
    ) -> Published:
        """Store ``drafts`` atomically, in topic and feed, or raise and store nothing."""
        ...

    # -- replay --------------------------------------------------------------------------------

    def position(self) -> Position:
        """The current epoch and head seq, read together."""
        ...

    def check_last_id(self, topics: Sequence[str], last_id: str | None) -> tuple[ReplayCheck, int]:
        """:meth:`check_replay` for the id a client sent (``None``: none), and the seq to replay
        after."""
        ...

    def check_replay(
        self, topics: Sequence[str], claimed_epoch: str | None, after: int
    ) -> ReplayCheck:
        """Can a client at ``claimed_epoch``-``after`` be replayed exactly on ``topics``?"""
        ...

    def replay(
        self, topics: Sequence[str], epoch: str, after: int, upto: int
    ) -> Iterator[StoredEvent]:
        """Every event of ``topics`` in ``(after, upto]``, in seq order, or
        :class:`~realtime.core.errors.HistoryLost` if some went missing meanwhile."""
        ...

    def alias_seq(self, alias: str) -> int | None:
        """The seq of the earliest event the live feed still holds whose publisher named it
        ``alias``; ``None`` if there is none."""
        ...

    def latest_alias(self, upto: int) -> str | None:
        """The alias of the newest event at or below seq ``upto`` that had one, ``None`` if
        none: where a client that saw everything up to ``upto`` resumes (by :meth:`alias_seq`)."""
        ...

    def feed_replay(self, epoch: str, after: int, upto: int) -> Iterator[StoredEvent]:
        """Every event of every topic in ``(after, upto]`` from the live feed, in seq order:
        for readers that select events by something other than a topic list (the Mercure
        hub's selectors). ``after=0`` starts at the oldest event held; otherwise
        :class:`~realtime.core.errors.HistoryLost` (``trimmed``) when the feed no longer holds
        the event after ``after``, and (``epoch``) when the epoch changed."""
        ...

    # -- the live feed -------------------------------------------------------------------------

    def reader(self) -> Feed:
        """A feed reader of its own (its own connection) for one hub."""
        ...

    # -- presence ------------------------------------------------------------------------------

    def presence_update(
        self,
        add: Iterable[tuple[str, str]],
        remove: Iterable[tuple[str, str]],
        *,
        expires_ms: int,
        ttl_s: float,
    ) -> None:
        """Add/refresh (until ``expires_ms``) and remove ``(topic, member)`` entries, in one call.

        A topic nobody refreshes any more leaves nothing behind: its entries are dropped as a
        whole a while after the last refresh (the Redis implementation: ``2 * ttl_s``)."""
        ...

    def presence_members(self, topic: str, *, now_ms: int) -> list[str]:
        """The unexpired members of ``topic``."""
        ...
