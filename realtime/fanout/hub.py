"""The per-worker fan-out: one reader greenlet on the firehose, dispatch by topic.

The hub is the only owner of subscriptions. It holds exactly one Redis connection of its own (the
reader), however many clients the worker serves; publish and replay go through the broker's
fixed pool. Each subscription has a bounded queue: a consumer that falls behind is closed with
reason ``overflow`` and resumes losslessly from its last id (DESIGN.md, guarantee 5).

Continuity: the reader expects firehose seqs to be contiguous and of one epoch. If it sees a gap
(it was away longer than the firehose retains) or a new epoch (Redis lost its data), it cannot
know what its subscribers missed, so it closes them all with reason ``resync``: they reconnect
with their ``Last-Event-ID`` and the replay path, which can tell exactly, takes over.

Events this worker published itself need not wait for the reader: when the storage answers a
publish whose first seq is the next one the hub expects, :meth:`Hub.offer_published` dispatches
them at once (the same continuity rule; the reader then skips them when it reads them back).

Deliberately not here: SSE or WebSocket framing (the stream modules), HTTP errors, Redis commands.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import gevent
import gevent.event
import gevent.monkey
from gevent import Greenlet

from realtime.core.errors import BrokerError, TooManyRequests, Unavailable
from realtime.core.events import Draft, EventRun, Published, StoredEvent
from realtime.core.ids import parse_id
from realtime.fanout.presence import Presence
from realtime.fanout.window import RecentEvents
from realtime.ops import metrics
from realtime.storage.interface import Feed, ReplayCheck, Storage

log = logging.getLogger(__name__)

#: The OS thread's own id (not the greenlet's, which gevent's patching gives threading).
_os_thread_id = gevent.monkey.get_original("_thread", "get_ident")

OVERFLOW = "overflow"
RESYNC = "resync"
SHUTDOWN = "shutdown"

#: How long :meth:`Hub.stop` lets the reader finish a connect it is in before killing it.
#: redis-py closes the socket of a connect that fails, not of one a kill interrupts: that socket
#: would be left to the garbage collector. A refused connect (Redis down) ends in milliseconds;
#: one to an unanswering host is killed after this, rather than hold up a worker's exit.
CONNECT_GRACE_S = 1.0


class DirectOffer(Protocol):
    """A stream's way to take an event straight from the reader
    (:mod:`realtime.fanout.directwrite`).

    ``offer_run`` answers the number of events of a run written, 0 (the stream already had
    them) or -1 (refused: queue them).
    """

    def offer_run(self, run: EventRun) -> int: ...

    def close(self) -> None: ...


class Subscription:
    """One connection's interest in some topics, with a bounded queue of events to deliver.

    ``who`` names the connection in presence: the token's subject, else its connection id.
    ``writer``, when the stream has one, lets the reader write an event itself while the queue
    is empty, instead of queueing it and waking the stream's greenlet. ``select``, when set,
    keeps only the events of its topics it answers true for (a door that picks events by more
    than their topic: the Mercure hub's selectors and privacy); what it refuses never takes a
    place in the queue.
    """

    __slots__ = (
        "address",
        "closed_reason",
        "connection_id",
        "max_queue",
        "on_close",
        "queue",
        "select",
        "topics",
        "transport",
        "waker",
        "wakeup",
        "who",
        "writer",
    )

    def __init__(
        self,
        topics: Iterable[str],
        max_queue: int,
        who: str | None = None,
        transport: str = "sse",
        address: str = "",
    ) -> None:
        self.topics: set[str] = set(topics)
        self.transport = transport
        self.address = address
        self.connection_id = secrets.token_urlsafe(9)
        self.who = who or self.connection_id
        self.max_queue = max_queue
        # A list, not a deque: an empty deque allocates a 64-slot block (about 0.5 KiB) and
        # most of a worker's thousands of subscriptions are idle with nothing queued.
        self.queue: list[StoredEvent] = []
        self.wakeup = gevent.event.Event()
        self.closed_reason: str | None = None
        self.on_close: Callable[[str], None] | None = None
        self.writer: DirectOffer | None = None
        self.select: Callable[[StoredEvent], bool] | None = None
        #: How to get the consumer's attention when no greenlet of its own waits on
        #: :attr:`wakeup` (a stream the worker holds idle, :mod:`realtime.fanout.idle`).
        self.waker: Callable[[], None] | None = None

    def wake(self) -> None:
        """Have the consumer look at its queue (and at :attr:`closed_reason`)."""
        if self.waker is not None:
            self.waker()
        else:
            self.wakeup.set()

    def push(self, event: StoredEvent) -> bool:
        """Queue ``event``; True if the consumer must be woken for it."""
        if self.closed_reason is not None:
            return False
        if len(self.queue) >= self.max_queue:
            self.close(OVERFLOW)
            return True
        self.queue.append(event)
        return True

    def close(self, reason: str) -> None:
        """Stop queueing and wake the consumer; the first reason given wins."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        if self.writer is not None:
            self.writer.close()  # from now on only the stream writes: its goodbye
        self.wake()
        if self.on_close is not None:
            self.on_close(reason)

    def wait(self, timeout: float | None) -> bool:
        """Block until there is something to do (events or close) or ``timeout``; True if woken."""
        woken = self.wakeup.wait(timeout)
        self.wakeup.clear()
        return bool(woken)

    def drain(self) -> list[StoredEvent]:
        events, self.queue = self.queue, []
        return events


class Hub:
    """Fan-out of firehose events to this worker's subscriptions.

    Started lazily by the first :meth:`subscribe` so nothing runs in a pre-fork master.
    """

    def __init__(
        self,
        broker: Storage,
        *,
        max_queue: int,
        max_connections: int,
        block_ms: int = 1000,
        start_timeout: float = 5.0,
        presence: Presence | None = None,
        max_per_address: int = 1_000_000,
        recent: RecentEvents | None = None,
    ) -> None:
        self.broker = broker
        #: The newest events the reader saw, to answer resumes from memory (see
        #: :meth:`resume_from_memory`).
        self.recent = recent
        self.max_per_address = max_per_address
        self._per_address: dict[str, int] = {}
        self.presence = presence
        self.max_queue = max_queue
        self.max_connections = max_connections
        self.block_ms = block_ms
        self.start_timeout = start_timeout
        self._by_topic: dict[str, set[Subscription]] = {}
        self._subscriptions: set[Subscription] = set()
        self._greenlet: Greenlet | None = None
        self._positioned = gevent.event.Event()
        self._not_connecting = gevent.event.Event()
        self._not_connecting.set()
        self._stopping = False
        self.epoch: str | None = None
        self.position = 0
        self._thread: int | None = None  # the OS thread of this hub's gevent loop
        self.ready = False
        self.draining = False
        self.reconnects = 0
        self.resyncs = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            # Spawned before any I/O, so concurrent first requests start one reader, not many.
            self._stopping = False
            self._thread = _os_thread_id()
            self._greenlet = gevent.spawn(self._run)
            if self.presence is not None:
                self.presence.start()
        if not self._positioned.wait(self.start_timeout):
            raise Unavailable("The event reader cannot reach Redis yet.", code="redis_unavailable")

    def stop(self, *, draining: bool = False) -> None:
        """Stop the reader and close every subscription with ``shutdown``.

        ``draining=True`` is the worker's shutdown: new subscriptions are refused with 503 from
        then on and ``/readyz`` reports not ready.
        """
        self.draining = self.draining or draining
        self._stopping = True
        for sub in list(self._subscriptions):
            sub.close(SHUTDOWN)
            self.unsubscribe(sub)
        if self._greenlet is not None:
            self._not_connecting.wait(CONNECT_GRACE_S)  # see CONNECT_GRACE_S
            self._greenlet.kill(block=True, timeout=2)
            self._greenlet = None
        if self.presence is not None:
            self.presence.stop()
        self._positioned.clear()
        self.ready = False

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe(
        self,
        topics: Iterable[str],
        *,
        who: str | None = None,
        transport: str = "sse",
        address: str = "",
    ) -> Subscription:
        """Register interest; from now on every event of ``topics`` the reader sees is queued.

        The reader is positioned before the first subscription exists, so an event committed after
        this call returns is always delivered live (the replay-then-live seam relies on it).
        """
        if self.draining:
            raise Unavailable("This server is shutting down; reconnect.", code="draining")
        # Both refusals hang up after the answer: the worker wants the connection's slot back.
        if self.full:
            metrics.REFUSED.labels(transport, "worker_full").inc()
            raise TooManyRequests(
                "This worker serves its maximum number of streams (REALTIME_MAX_CONNECTIONS); "
                "retry shortly.",
                code="too_many_connections",
                retry_after=1,
                close_connection=True,
            )
        if address and self._per_address.get(address, 0) >= self.max_per_address:
            metrics.REFUSED.labels(transport, "address_full").inc()
            raise TooManyRequests(
                "This address holds its maximum number of streams on this worker "
                "(REALTIME_MAX_CONNECTIONS_PER_IP); close some or retry shortly.",
                code="too_many_connections",
                retry_after=5,
                close_connection=True,
            )
        self.start()
        sub = Subscription((), self.max_queue, who, transport, address)
        self._subscriptions.add(sub)
        if address:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        metrics.open_connections(transport).inc()
        self.add_topics(sub, topics)
        return sub

    def add_topics(self, sub: Subscription, topics: Iterable[str]) -> None:
        """Queue events of ``topics`` for ``sub`` from now on (a WebSocket's later subscribe)."""
        if sub not in self._subscriptions:
            return
        added = [t for t in topics if t not in sub.topics]
        for topic in added:
            sub.topics.add(topic)
            self._by_topic.setdefault(topic, set()).add(sub)
        if self.presence is not None and added:
            self.presence.add(added, sub.connection_id, sub.who)

    def remove_topics(self, sub: Subscription, topics: Iterable[str]) -> None:
        removed = [t for t in topics if t in sub.topics]
        for topic in removed:
            sub.topics.discard(topic)
            subs = self._by_topic.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_topic[topic]
        if self.presence is not None and removed:
            self.presence.remove(removed, sub.connection_id, sub.who)

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub``; safe to call twice (from a generator's finally and a close hook)."""
        if sub not in self._subscriptions:
            return
        self._subscriptions.discard(sub)
        if sub.address:
            left = self._per_address.get(sub.address, 1) - 1
            if left > 0:
                self._per_address[sub.address] = left
            else:
                self._per_address.pop(sub.address, None)
        metrics.open_connections(sub.transport).dec()
        if sub.closed_reason == OVERFLOW:
            metrics.OVERFLOWS.labels(sub.transport).inc()
        self.remove_topics(sub, list(sub.topics))

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    @property
    def full(self) -> bool:
        """At ``max_connections``: new streams are refused, and ``/readyz`` says not ready."""
        return len(self._subscriptions) >= self.max_connections

    @property
    def topic_count(self) -> int:
        return len(self._by_topic)

    # -- resuming from memory -----------------------------------------------------------------

    def resume_from_memory(
        self, topics: Sequence[str], last_id: str | None
    ) -> tuple[ReplayCheck, int, list[StoredEvent]] | None:
        """Where a client at ``last_id`` (``None``: a fresh one) stands, answered without Redis:
        the check, the seq to replay after, and the events of ``topics`` to replay; ``None``
        when only the storage can tell.

        The head is this worker's position, not Redis's: every event up to it was dispatched
        (and is replayed from :attr:`recent`), and every later one reaches a subscription made
        before this call live, so the seam holds as with the storage's check. A fresh client
        starts there too. Only while the reader is up: with Redis away the storage's check
        answers 503, as before.
        """
        epoch = self.epoch
        if self.recent is None or epoch is None or not (self.ready and self.running):
            return None
        head = self.position
        if last_id is None:
            return ReplayCheck("fresh", epoch, head), 0, []
        parsed = parse_id(last_id)
        if parsed is None or parsed.epoch != epoch or parsed.seq > head:
            return None  # not ours, another epoch, or ahead of this reader: Redis tells
        missed = self.recent.resume(topics, parsed.seq, now_ms=int(time.time() * 1000))
        if missed is None:
            return None
        return ReplayCheck("ok", epoch, head), parsed.seq, missed

    # -- the reader ---------------------------------------------------------------------------

    def _run(self) -> None:
        reader: Feed | None = None
        backoff = 0.05
        while not self._stopping:
            try:
                if reader is None:
                    reader = self._connect()
                    self._take_position(reader)
                events = reader.read(self.position, block_ms=self.block_ms)
                self.ready = True
                backoff = 0.05
                if events:
                    self._dispatch(events, reader)
                    # Give the worker's other greenlets a turn: when the firehose already holds
                    # the next read, XREAD answers without blocking and the reader would go on
                    # fanning out, while publishes whose Redis replies are in wait behind it.
                    gevent.sleep(0)
                else:
                    self._check_epoch(reader)
            except BrokerError as exc:
                if reader is not None:
                    reader.close()
                    reader = None
                    self.reconnects += 1
                    metrics.READER_RECONNECTS.inc()
                metrics.REDIS_ERRORS.labels("reader").inc()
                self.ready = False
                log.warning("event reader lost Redis (%s); retrying in %.2f s", exc, backoff)
                gevent.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter, not a secret
                backoff = min(backoff * 2, 5.0)
            except gevent.GreenletExit:
                break
            except Exception:  # a bug must not silently stop every stream of the worker
                log.exception("event reader failed; restarting it")
                if reader is not None:
                    reader.close()
                    reader = None
                self.ready = False
                gevent.sleep(1.0)
        if reader is not None:
            reader.close()

    def _connect(self) -> Feed:
        """Open the broker's pool and a reader; :meth:`stop` waits for this to end (up to
        :data:`CONNECT_GRACE_S`) before it kills the reader."""
        self._not_connecting.clear()
        try:
            self.broker.warm()  # the pool opens with the reader: a fixed count from here
            return self.broker.reader()
        finally:
            self._not_connecting.set()

    def _take_position(self, reader: Feed) -> None:
        """(Re)connect: first start reads from the head; a resume keeps its place if it can."""
        if self.epoch is None:
            self.epoch, self.position = reader.position()
        else:
            self._check_epoch(reader)
        self.ready = True
        self._positioned.set()

    def _check_epoch(self, reader: Feed) -> None:
        """Resync if Redis lost what this reader dispatched: a new epoch, or a head below it.

        The head is compared with the position as it was when the question was sent: a publish
        of this worker answered meanwhile (:meth:`offer_published`) moves the position past the
        head Redis answered with, and is no loss. Compared with the position after the answer,
        that race closed every stream of a worker under a reconnect storm.
        """
        asked_at = self.position
        epoch, head = reader.position()
        if epoch != self.epoch or head < asked_at:
            self._resync(
                f"epoch changed from {self.epoch} to {epoch}"
                if epoch != self.epoch
                else f"the head went back from {asked_at} to {head}"
            )
            self.epoch, self.position = epoch, head

    def offer_published(self, published: Published, drafts: list[Draft]) -> None:
        """A publish of this worker's own, just stored: its events dispatched now if they are
        exactly the next ones (same epoch, first seq the next), else left to the reader (and
        not even built). Only from this hub's own thread (a publish from another OS thread
        leaves them to the reader too)."""
        if (
            not published.seqs
            or not (self.ready and self.running)
            or published.epoch != self.epoch
            or published.seqs[0] != self.position + 1
            or _os_thread_id() != self._thread
        ):
            return
        self._dispatch(published.events(drafts), None)

    def _dispatch(self, events: list[StoredEvent], reader: Feed | None) -> None:
        """Check continuity, then hand these events to the subscriptions of their topics and
        keep them all in :attr:`recent`. A read's events at or below the position were
        dispatched already (:meth:`offer_published`): skipped."""
        batch: list[StoredEvent] = []
        held: list[StoredEvent] = []
        for event in events:
            if event.epoch == self.epoch and event.seq <= self.position:
                continue
            if event.epoch != self.epoch:
                self._resync(f"firehose carries epoch {event.epoch}, expected {self.epoch}")
                if reader is not None:  # (offered events are of the hub's epoch)
                    self.epoch, self.position = reader.position()
                held.clear()  # of the old epoch: the window starts again in the new one
                break
            if event.seq != self.position + 1:
                self._resync(f"firehose gap: expected seq {self.position + 1}, got {event.seq}")
                batch.clear()  # every subscription was closed: nobody is left to deliver to
                held.clear()
            self.position = event.seq
            held.append(event)
            if event.topic in self._by_topic:
                batch.append(event)
        if self.recent is not None:
            self.recent.extend(held)
        if batch:
            self._deliver(batch)

    def _deliver(self, batch: list[StoredEvent]) -> None:
        """Write what can be written now; queue the rest and wake those streams.

        A stream of one topic takes that topic's events of the batch as one run (one write);
        a stream of several topics takes them one by one, in seq order across its topics.
        """
        woken: set[Subscription] = set()
        direct = 0  # deliveries written by the reader itself, counted once per batch
        written: list[StoredEvent] = []
        runs: dict[str, list[StoredEvent]] = {}
        for event in batch:
            runs.setdefault(event.topic, []).append(event)
        several_topics = False
        for topic, topic_events in runs.items():
            run = EventRun(topic_events)
            before = direct
            for sub in self._by_topic[topic]:
                if len(sub.topics) > 1:
                    several_topics = True
                else:
                    direct += self._hand(sub, run, woken)
            if direct != before:
                written += topic_events
        if several_topics:
            for event in batch:
                run = EventRun([event])
                before = direct
                for sub in self._by_topic.get(event.topic, ()):
                    if len(sub.topics) > 1:
                        direct += self._hand(sub, run, woken)
                if direct != before and event not in written:
                    written.append(event)
        if direct:
            metrics.DELIVERED.labels("sse").inc(direct)  # only SSE streams write directly
            metrics.WRITTEN_DIRECT.inc(direct)
            now = time.time()
            lag = metrics.DELIVERY_LAG.labels("sse")
            for event in written:  # once per event: when its last direct write was done
                lag.observe(event.lag_s(now))
        for sub in woken:
            sub.wake()
            if sub.closed_reason is not None:
                self.unsubscribe(sub)  # free an overflowed queue now, not when its stream ends

    @staticmethod
    def _hand(sub: Subscription, run: EventRun, woken: set[Subscription]) -> int:
        """Give ``run`` to ``sub``: written now by its writer if it can (the count written),
        else queued, with ``sub`` added to ``woken`` (0)."""
        events = run.events
        if sub.select is not None:
            try:
                events = [e for e in events if sub.select(e)]
            except Exception:  # a bug in one door's selection must not cost every stream
                log.exception("a subscription's select failed; closing it so it resumes")
                sub.close(RESYNC)
                woken.add(sub)
                return 0
            if not events:
                return 0
            if len(events) != len(run.events):
                run = EventRun(events)
        writer = sub.writer
        if writer is not None and not sub.queue:
            outcome = writer.offer_run(run)
            if outcome >= 0:
                return outcome
        for event in events:
            if sub.push(event):
                woken.add(sub)
        return 0

    def _resync(self, why: str) -> None:
        if self.recent is not None:
            self.recent.clear()
        self.resyncs += 1
        metrics.READER_RESYNCS.inc()
        log.warning(
            "event reader lost continuity (%s): closing %d streams so they resume",
            why,
            len(self._subscriptions),
        )
        for sub in list(self._subscriptions):
            sub.close(RESYNC)
            self.unsubscribe(sub)
