"""The Redis key layout: every key the storage reads or writes is named here, and only here.

Every key shares the hash tag ``{rt}``, so all of them live in one slot and the scripts are
valid on Redis Cluster (a script may only touch keys of one slot):

``{rt}:epoch``          random token created with the counter; a new one means Redis lost its data.
``{rt}:seq``            the global counter; event ``<epoch>-<seq>`` has stream id ``<seq>-0``.
``{rt}:firehose``       every event of every topic, in seq order, with its topic and epoch: the
                        live feed each worker's hub reads.
``{rt}:t:<topic>``      one stream per topic, trimmed by ``REALTIME_HISTORY_MAXLEN`` and ``_TTL_S``
                        (a publish lets it run 1/16 over the length before cutting it back; a
                        replay check cuts it exactly); with a TTL it expires as a whole once its
                        newest event is past it.
``{rt}:trim:<topic>``   the highest seq ever trimmed from that topic (exact detection of lost
                        history on Redis 6.2, which lacks ``max-deleted-entry-id``); it expires
                        with its stream.
``{rt}:trimmed``        hash topic -> marker, as written before markers became keys: still read,
                        never written.
``{rt}:clock``          sorted set: the counter as a publish began, by its time, a point every
                        :data:`CLOCK_EVERY_MS`, kept for the TTL: which seqs are older than the TTL
                        (see "Expiry" in :mod:`realtime.storage.broker`).
``{rt}:idem:<digest>``  the ids a publish with ``Idempotency-Key`` got, for its retries
                        (``REALTIME_IDEMPOTENCY_TTL_S``); the digest is of the publisher-scoped key.
``{rt}:rate:<digest>``  one publisher's token bucket of events (``REALTIME_PUBLISH_RATE``).
``{rt}:topics:<digest>`` one publisher's token bucket of new topics
                        (``REALTIME_NEW_TOPICS_PER_MINUTE``).
``{rt}:presence:<topic>`` sorted set of who follows a topic, by expiry time; the set expires
                        as a whole when nobody refreshes it.
``{rt}:aliases``        sorted set: a publisher's own id for an event (its alias, the Mercure
                        hub's ``id``) -> the event's seq, the earliest event of a reused alias
                        kept; pruned with the firehose, so it never outlives what it points to.

The publish script always takes the idempotency and both bucket keys; a publish that uses none
of them passes the placeholders :data:`NO_IDEMPOTENCY_KEY`, :data:`NO_RATE_KEY` and
:data:`NO_TOPICS_KEY` (``<kind>:-``, never a digest), which the script then never touches.

Pure: no Redis here, only names. Deliberately not here: what the values mean to a script (the
Lua files say) or when they are written (:mod:`realtime.storage.broker`).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

PREFIX = "{rt}"
EPOCH_KEY = f"{PREFIX}:epoch"
SEQ_KEY = f"{PREFIX}:seq"
FIREHOSE_KEY = f"{PREFIX}:firehose"
TRIMMED_KEY = f"{PREFIX}:trimmed"
CLOCK_KEY = f"{PREFIX}:clock"
ALIASES_KEY = f"{PREFIX}:aliases"
#: How often the clock takes a point (seq, time): the bound it gives is late by at most this.
CLOCK_EVERY_MS = 1000

#: Placeholders for the publish script's optional keys (see the module docstring).
NO_IDEMPOTENCY_KEY = f"{PREFIX}:idem:-"
NO_RATE_KEY = f"{PREFIX}:rate:-"
NO_TOPICS_KEY = f"{PREFIX}:topics:-"


def topic_key(topic: str) -> str:
    """The stream holding ``topic``'s retained events."""
    return f"{PREFIX}:t:{topic}"


def marker_key(topic: str) -> str:
    """The highest seq trimmed from ``topic`` (it expires with the topic's stream)."""
    return f"{PREFIX}:trim:{topic}"


def presence_key(topic: str) -> str:
    """Who follows ``topic``: members scored by when they expire."""
    return f"{PREFIX}:presence:{topic}"


def idempotency_key(scoped_key: str) -> str:
    """The Redis key remembering one ``Idempotency-Key`` (already scoped to its publisher)."""
    digest = hashlib.sha256(scoped_key.encode()).hexdigest()[:32]
    return f"{PREFIX}:idem:{digest}"


def rate_key(scope: str) -> str:
    """One publisher's budget of events (REALTIME_PUBLISH_RATE)."""
    return _publisher_key("rate", scope)


def new_topics_key(scope: str) -> str:
    """One publisher's budget of new topics (REALTIME_NEW_TOPICS_PER_MINUTE)."""
    return _publisher_key("topics", scope)


@lru_cache(maxsize=4096)
def _publisher_key(kind: str, scope: str) -> str:
    """A key of one publisher's, named by a digest: a scope may be long or hold anything."""
    return f"{PREFIX}:{kind}:{hashlib.sha256(scope.encode()).hexdigest()[:32]}"


def expiry_margin_ms(ttl_ms: int) -> int:
    """How long past the TTL a topic's stream is kept before Redis expires it: long enough that
    no replay the check let through can lose it midway (a replay takes seconds)."""
    return min(ttl_ms, 60_000)
