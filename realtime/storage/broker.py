"""The Redis implementation of :class:`~realtime.storage.interface.Storage`: one Redis, Lua.

Only the storage imports ``redis``: this module and its two helpers, the live feed
(:mod:`~realtime.storage.firehose`) and the pipelining of script calls
(:mod:`~realtime.storage.batcher`). The keys are laid out in :mod:`realtime.storage.keys`, the
scripts are ``lua/*.lua`` (:mod:`realtime.storage.scripts`), entries are decoded by
:mod:`realtime.storage.codec`.

Publishing is one Lua script, so an event is in its topic stream and the firehose or in neither.
Every check (idempotency, rate limits) happens before the first write, so a refused publish
writes nothing. Seqs in the firehose are contiguous, which lets the hub detect a gap by
arithmetic.

Expiry: with ``REALTIME_HISTORY_TTL_S``, a topic's stream and marker expire in Redis
:func:`~realtime.storage.keys.expiry_margin_ms` after its newest event passes the TTL, so a
topic nobody publishes to any more leaves nothing behind, however many one-off topics were
created (a quiet topic's events were otherwise kept until the topic was next touched). What an
expired stream held is then unknown, but it was all published before ``now - TTL``: the clock
bounds those seqs, and a client whose position is below that bound is told ``trimmed`` (for a
topic with no stream, or one created again since: its marker is set to the bound when it is
created). A client away for less than the TTL is never affected, and the margin keeps a stream
from expiring under a replay that the check let through.

Publishes that arrive together share a round trip
(:class:`~realtime.storage.batcher.ScriptBatcher`): each is still its own script call with its
own answer, pipelined on one connection, so a worker under load pays one write and one read for
many publishes instead of a connection checkout and a round trip each.

What this module deliberately does not do: know about subscriptions (the hub does), or HTTP (the
web layer turns :class:`~realtime.core.errors.BrokerError` into 503).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import cast

import redis
from redis.exceptions import RedisError

from realtime.core.config import Settings
from realtime.core.errors import BrokerError, HistoryLost, IdempotencyConflict, RateLimited
from realtime.core.events import Draft, Published, StoredEvent
from realtime.core.ids import parse_id
from realtime.ops import metrics
from realtime.storage import scripts
from realtime.storage.batcher import PUBLISH_LANES, ScriptBatcher
from realtime.storage.codec import (
    decode_event,
    decode_firehose_entry,
    entry_seq,
    fields_of,
    text,
)
from realtime.storage.firehose import FirehoseReader, HighWater, read_position
from realtime.storage.interface import Position, ReplayCheck, Retention
from realtime.storage.keys import (
    ALIASES_KEY,
    CLOCK_KEY,
    EPOCH_KEY,
    FIREHOSE_KEY,
    NO_IDEMPOTENCY_KEY,
    NO_RATE_KEY,
    NO_TOPICS_KEY,
    SEQ_KEY,
    TRIMMED_KEY,
    expiry_margin_ms,
    idempotency_key,
    marker_key,
    new_topics_key,
    presence_key,
    rate_key,
    topic_key,
)


def fingerprint(drafts: Sequence[Draft]) -> str:
    """A digest of a publish request: a reused ``Idempotency-Key`` with other content is caught.
    Attributes count only when there are some, so a key stored before they existed still
    recognises its retry."""
    payload = json.dumps(
        [
            [d.topic, d.type, d.data, *([d.attrs, d.alias] if d.attrs or d.alias else [])]
            for d in drafts
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Broker:
    """Publish into and read from Redis Streams over a fixed-size, blocking connection pool.

    The Redis :class:`~realtime.storage.interface.Storage`.

    The pool is a :class:`redis.BlockingConnectionPool` of ``pool_size`` connections opened up
    front: callers wait for a free connection instead of failing (redis-py's default pool raises
    when full), and a worker holds the same connections whatever its client count. Publishing
    keeps :data:`PUBLISH_LANES` of the ``pool_size`` for itself (at most ``pool_size - 1``; a pool
    of one is shared).
    """

    def __init__(
        self,
        url: str,
        *,
        retention: Retention,
        pool_size: int = 8,
        socket_timeout: float = 5.0,
        pool_timeout: float = 20.0,
    ) -> None:
        self.url = url
        self.retention = retention
        self.pool_size = pool_size
        # Publishing keeps up to PUBLISH_LANES of the pool_size connections for itself, one per
        # lane (see ScriptBatcher); with a pool of one it borrows that one for each busy spell.
        dedicated = pool_size > 1
        lanes = min(PUBLISH_LANES, pool_size - 1) if dedicated else 1
        self._pooled = pool_size - lanes if dedicated else pool_size
        self._pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=self._pooled,
            timeout=pool_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
        )
        self._redis = redis.Redis(connection_pool=self._pool)
        self._lanes = [
            ScriptBatcher(
                self._pool,
                scripts.PUBLISH,
                wait_timeout=pool_timeout + 2 * socket_timeout,
                dedicated=dedicated,
            )
            for _ in range(lanes)
        ]
        self._check = self._redis.register_script(scripts.CHECK)
        self._page = self._redis.register_script(scripts.PAGE)
        self._position = self._redis.register_script(scripts.POSITION)
        self._presence = self._redis.register_script(scripts.PRESENCE)
        self._presence_update = self._redis.register_script(scripts.PRESENCE_UPDATE)
        self.high_water = HighWater()

    @classmethod
    def from_settings(cls, url: str, settings: Settings) -> Broker:
        """The broker the ``REALTIME_*`` settings describe, on ``url``: the server's, and that of
        a :class:`~realtime.publisher.Publisher` in another process, alike."""
        return cls(
            url,
            retention=Retention(
                maxlen=settings.history_maxlen,
                ttl_s=settings.history_ttl_s,
                firehose_maxlen=settings.firehose_maxlen,
                idempotency_ttl_s=settings.idempotency_ttl_s,
            ),
            pool_size=settings.redis_pool_size,
        )

    # -- connections ------------------------------------------------------------------------

    def warm(self) -> None:
        """Open every pooled connection now, so the count never changes with load."""
        held = []
        try:
            for _ in range(self._pooled):
                conn = self._pool.get_connection()  # type: ignore[no-untyped-call]
                held.append(conn)
                conn.connect()
            for lane in self._lanes:
                lane.connect()
        except RedisError as exc:
            raise BrokerError(f"Redis is unreachable: {exc}") from exc
        finally:
            for conn in held:
                self._pool.release(conn)  # type: ignore[no-untyped-call]

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except RedisError:
            return False

    def close(self) -> None:
        self._pool.disconnect()
        for lane in self._lanes:
            lane.close()

    def _publish_lane(self, single: bool) -> ScriptBatcher:
        """The first lane for a publish of one event; for a batch, the idle one of the others if
        there is one, else the one with the shortest queue.

        Batches spread: one lane alone sends the next round trip only when the last one is
        answered, and Redis sat idle between them (wrk -c16, one worker, batches of 100: 1 lane
        84,000 events/s, 2 lanes 105,000, 3 lanes 111,000). Single events share one lane: they
        cost Redis little and the worker much, so the fewer round trips carry them the better
        (1 lane 5,300/s, spread over 3 lanes 4,650/s); and no batch's round trip is ever in
        flight ahead of them on it. Publishes on different lanes are concurrent requests
        anyway: a client's own publishes are ordered by waiting for each answer.
        """
        lanes = self._lanes
        if single:
            return lanes[0]
        return min(lanes[1:] or lanes, key=lambda lane: lane.load)

    def reader(self) -> FirehoseReader:
        """A dedicated connection for one hub's blocking reads of the firehose."""
        return FirehoseReader(self.url, self.high_water)

    # -- publish ------------------------------------------------------------------------------

    def publish(
        self,
        drafts: Sequence[Draft],
        *,
        idempotency: str | None = None,
        rate_scope: str | None = None,
        rate: float = 0,
        burst: int = 0,
        new_topics_per_minute: int = 0,
        now_ms: int | None = None,
    ) -> Published:
        """Store ``drafts`` atomically (all or none) and return their ids.

        ``idempotency`` is the already-scoped key: a repeat with the same content returns the
        first publish's ids with ``duplicate=True``; with other content it raises
        :class:`IdempotencyConflict` and writes nothing. With ``rate`` > 0 the publisher named
        by ``rate_scope`` may store ``rate`` events a second in bursts of ``burst``, counted in
        Redis so the limit holds across workers and hosts; over it, :class:`RateLimited` is
        raised and nothing is written. With ``new_topics_per_minute`` > 0 the same publisher may
        create that many topics a minute (a topic is new while it has no stream: never published
        to, or expired), or :class:`RateLimited` with ``topics=True``. A retried duplicate costs
        nothing.
        """
        if not drafts:
            raise ValueError("publish needs at least one event")
        r = self.retention
        digest = fingerprint(drafts) if idempotency else ""
        keys = [EPOCH_KEY, SEQ_KEY, FIREHOSE_KEY, TRIMMED_KEY]
        keys.append(idempotency_key(idempotency) if idempotency else NO_IDEMPOTENCY_KEY)
        keys.append(rate_key(rate_scope) if rate_scope and rate > 0 else NO_RATE_KEY)
        topics_key = None
        if rate_scope is not None and new_topics_per_minute > 0:
            topics_key = new_topics_key(rate_scope)
        keys.append(topics_key or NO_TOPICS_KEY)
        keys += [CLOCK_KEY, ALIASES_KEY]
        for d in drafts:
            keys += [topic_key(d.topic), marker_key(d.topic)]
        ttl_ms = r.ttl_s * 1000
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        args: list[str | int] = [
            self.high_water.spec(),
            now_ms,
            r.maxlen,
            r.ttl_s * 1000,
            r.firehose_maxlen,
            r.idempotency_ttl_s,
            1 if idempotency else 0,
            digest,
            str(rate if rate_scope else 0),
            burst,
            new_topics_per_minute if topics_key else 0,
            expiry_margin_ms(ttl_ms),
            len(drafts),
        ]
        for d in drafts:
            args += [d.topic, d.type, d.data, d.attrs, d.alias]
        started = time.perf_counter()
        lane = self._publish_lane(len(drafts) == 1)
        result = lane(keys, args)
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
        status, epoch = text(result[0]), text(result[1])
        if status in ("limited", "topics_limited"):
            raise RateLimited(int(text(result[2])), topics=status == "topics_limited")
        if status == "dup":
            stored_digest, first, count = text(result[2]).split("|")
            if stored_digest != digest:
                raise IdempotencyConflict(idempotency)
            start = int(first)
            return Published(epoch, tuple(range(start, start + int(count))), duplicate=True)
        first_seq = int(text(result[2]))
        self.high_water.observe(epoch, first_seq + len(drafts) - 1)
        metrics.PUBLISHED.inc(len(drafts))
        return Published(epoch, tuple(range(first_seq, first_seq + len(drafts))), False, now_ms)

    # -- replay -------------------------------------------------------------------------------

    def feed_replay(
        self, epoch: str, after: int, upto: int, page_size: int = 500
    ) -> Iterator[StoredEvent]:
        """Every event of the firehose in ``(after, upto]``, in seq order, a page at a time.

        The firehose's seqs are contiguous within an epoch, so a page that does not start
        exactly after the cursor, or an entry of another epoch, means history was lost under
        the replay: :class:`HistoryLost` is raised rather than anything skipped. Only a replay
        from the very start (``after=0``: everything held) may begin wherever the feed does.
        """
        cursor = after
        while cursor < upto:
            try:
                entries = cast(
                    list[tuple[bytes, dict[bytes, bytes]]],
                    self._redis.xrange(
                        FIREHOSE_KEY, min=f"{cursor + 1}-0", max=f"{upto}-0", count=page_size
                    ),
                )
            except RedisError as exc:
                raise BrokerError(f"Redis failed during replay: {exc}") from exc
            if not entries:
                raise HistoryLost("trimmed")  # (cursor, upto] was published and is gone
            for raw_id, fields in entries:
                event = decode_firehose_entry(raw_id, fields)
                if event.epoch != epoch:
                    raise HistoryLost("epoch")
                if event.seq != cursor + 1 and not (cursor == after == 0):
                    raise HistoryLost("trimmed")
                cursor = event.seq
                yield event
            if len(entries) < page_size:
                if cursor < upto:
                    raise HistoryLost("trimmed")
                return

    def alias_seq(self, alias: str) -> int | None:
        """The seq of the earliest event still in the live feed that its publisher named
        ``alias`` (:attr:`~realtime.core.events.Draft.alias`), or ``None``: never used, or its
        event is no longer held."""
        try:
            score = self._redis.zscore(ALIASES_KEY, alias)
        except RedisError as exc:
            raise BrokerError(f"Redis is unreachable: {exc}") from exc
        return None if score is None else int(score)

    def latest_alias(self, upto: int) -> str | None:
        """The alias of the newest event at or below seq ``upto`` that had one, by the seq the
        index keeps for it (a reused alias keeps its first), or ``None``: the cursor a client
        that has seen everything up to ``upto`` resumes from."""
        try:
            found = cast(
                list[bytes],
                self._redis.zrevrangebyscore(ALIASES_KEY, upto, "-inf", start=0, num=1),
            )
        except RedisError as exc:
            raise BrokerError(f"Redis is unreachable: {exc}") from exc
        return found[0].decode() if found else None

    def position(self) -> Position:
        """The current epoch and head seq, read together (creating the epoch if Redis is new)."""
        return read_position(self._position, self.high_water)

    def check_last_id(self, topics: Sequence[str], last_id: str | None) -> tuple[ReplayCheck, int]:
        """:meth:`check_replay` for the id a client sent (``None``: a fresh client), and the seq
        to replay after. An id that is not ours answers ``unknown_id`` with the current head."""
        if last_id is None:
            return self.check_replay(topics, None, 0), 0
        parsed = parse_id(last_id)
        if parsed is None:
            fresh = self.check_replay(topics, None, 0)
            return ReplayCheck("unknown_id", fresh.epoch, fresh.head), 0
        return self.check_replay(topics, parsed.epoch, parsed.seq), parsed.seq

    def check_replay(
        self,
        topics: Sequence[str],
        claimed_epoch: str | None,
        after: int,
        now_ms: int | None = None,
    ) -> ReplayCheck:
        """Can a client at ``claimed_epoch-after`` be replayed exactly on ``topics``?

        ``claimed_epoch=None`` means a fresh client (no ``Last-Event-ID``); the answer then only
        carries the position to start from. TTL trimming is applied to the topics first so a
        quiet topic cannot replay events older than the TTL.
        """
        r = self.retention
        keys = [EPOCH_KEY, SEQ_KEY, TRIMMED_KEY, CLOCK_KEY]
        for topic in topics:
            keys += [topic_key(topic), marker_key(topic)]
        args: list[str | int] = [
            self.high_water.spec(),
            claimed_epoch or "",
            after,
            now_ms if now_ms is not None else int(time.time() * 1000),
            r.maxlen,
            r.ttl_s * 1000,
            *topics,
        ]
        try:
            status, epoch, head = self._check(keys=keys, args=args)
        except RedisError as exc:
            raise BrokerError(f"Redis is unreachable: {exc}") from exc
        self.high_water.observe(text(epoch), int(text(head)))
        return ReplayCheck(text(status), text(epoch), int(text(head)))  # type: ignore[arg-type]

    def history(
        self, topic: str, epoch: str, after: int, upto: int, page_size: int = 200
    ) -> Iterator[StoredEvent]:
        """Events of ``topic`` with ``after < seq <= upto``, in order, fetched a page at a time.

        Each page re-checks the epoch and the trim marker, so history lost while a long replay
        is in progress raises :class:`HistoryLost` instead of being skipped silently.
        """
        cursor = after
        while cursor < upto:
            try:
                status, entries = self._page(
                    keys=[EPOCH_KEY, TRIMMED_KEY, topic_key(topic), marker_key(topic)],
                    args=[epoch, topic, cursor, upto, page_size],
                )
            except RedisError as exc:
                raise BrokerError(f"Redis failed during replay: {exc}") from exc
            if text(status) != "ok":
                raise HistoryLost(text(status))
            for raw_id, fields in entries:
                seq = entry_seq(raw_id)
                yield decode_event(epoch, seq, topic, fields_of(fields))
                cursor = seq
            if len(entries) < page_size:
                return

    def replay(
        self, topics: Sequence[str], epoch: str, after: int, upto: int
    ) -> Iterator[StoredEvent]:
        """All events of ``topics`` in ``(after, upto]``, merged into one seq-ordered stream."""
        streams = [self.history(t, epoch, after, upto) for t in topics]
        return heapq.merge(*streams, key=lambda e: e.seq)

    # -- presence -----------------------------------------------------------------------------

    def presence_update(
        self,
        add: Iterable[tuple[str, str]],
        remove: Iterable[tuple[str, str]],
        *,
        expires_ms: int,
        ttl_s: float,
    ) -> None:
        """Add/refresh and remove ``(topic, member)`` entries in one round trip.

        A topic's set expires as a whole twice ``ttl_s`` after its last refresh, so topics nobody
        follows any more leave nothing behind.
        """
        adds, removes = list(add), list(remove)
        keys = [presence_key(topic) for topic, _ in adds + removes]
        members = [entry for _, entry in adds + removes]
        if not keys:
            return
        try:
            self._presence_update(
                keys=keys, args=[expires_ms, int(ttl_s * 2000), len(adds), *members]
            )
        except RedisError as exc:
            raise BrokerError(f"Redis failed to update presence: {exc}") from exc

    def presence_members(self, topic: str, *, now_ms: int) -> list[str]:
        """The unexpired members of ``topic``'s presence set (expired ones are dropped)."""
        try:
            members = self._presence(keys=[presence_key(topic)], args=[now_ms])
        except RedisError as exc:
            raise BrokerError(f"Redis is unreachable: {exc}") from exc
        return [text(m) for m in members]
