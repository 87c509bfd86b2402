"""The newest events this worker's reader has seen, kept in memory to serve resumes without Redis.

Why: a reconnect storm (1,000 clients back at once, each a few events behind) cost one replay
check and one page read in Redis per client, through a pool of a few connections, while live
events waited behind them (live p99 1.6 s during the bench's storm). Every event a resuming
client missed passed through this worker's reader moments ago; kept here, the resume is a slice
of a list.

What it holds: every firehose event the reader dispatched, of every topic (a resuming client may
follow a topic nobody on this worker follows now), in seq order and contiguous, ending at the
hub's position; at most ``max_events`` of them and about ``max_bytes`` (:func:`event_cost`), the
oldest dropped first. A gap or a new epoch empties it (the hub's resync).

When it answers (:meth:`RecentEvents.resume`), and only then, a resume skips Redis: the client's
position is of the hub's epoch, not ahead of the hub, and every event after it is held here, so
the events it missed are known exactly. Retention is kept as Redis keeps it: more than
``REALTIME_HISTORY_MAXLEN`` events of one topic after the position, or (with
``REALTIME_HISTORY_TTL_S``) a position not clearly younger than the TTL, goes to Redis, which
decides as it always did (``trimmed`` included). So the window never answers ``ok`` where Redis
would not, except where it knows better: events Redis trimmed for newer ones the hub has not read
yet are still here, and the client gets them too.

Deliberately not here: reading Redis or writing to clients (the hub feeds this; the stream
replays what it answers).
"""

from __future__ import annotations

from collections.abc import Iterable

from realtime.core.events import StoredEvent

#: What an event costs the window beyond its text: the event object, its strings and the frames
#: it caches once encoded (measured with tracemalloc at about 0.9 KiB for a small event).
EVENT_OVERHEAD_BYTES = 1024
#: A TTL'd position must be this much younger than the TTL to be served from memory: the margin
#: covers the clock points Redis bounds expired seqs with (one a second).
TTL_MARGIN_MS = 5_000


def event_cost(event: StoredEvent) -> int:
    """The memory one held event is counted for: its text three times (the text, its SSE frame
    and that frame as an HTTP chunk) and the fixed overhead."""
    return 3 * (len(event.data) + len(event.attrs)) + EVENT_OVERHEAD_BYTES


class RecentEvents:
    """The newest events of the live feed, contiguous by seq, bounded by count and by bytes.

    A list with a moving start rather than a deque: a resume takes a slice from an index, which
    a deque would reach by walking from one end.
    """

    __slots__ = ("_bytes", "_events", "_start", "max_bytes", "max_events", "maxlen", "ttl_ms")

    def __init__(self, max_events: int, max_bytes: int, *, maxlen: int, ttl_s: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        #: Retention of a topic's history (``REALTIME_HISTORY_MAXLEN`` / ``_TTL_S``), kept here
        #: as Redis keeps it.
        self.maxlen = maxlen
        self.ttl_ms = ttl_s * 1000
        self._events: list[StoredEvent] = []
        self._start = 0  # index of the oldest held event in _events
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._events) - self._start

    @property
    def held_bytes(self) -> int:
        return self._bytes

    @property
    def first_seq(self) -> int | None:
        """The seq of the oldest event held, ``None`` when empty."""
        return self._events[self._start].seq if len(self) else None

    @property
    def last_seq(self) -> int | None:
        return self._events[-1].seq if len(self) else None

    def clear(self) -> None:
        self._events = []
        self._start = 0
        self._bytes = 0

    def extend(self, events: Iterable[StoredEvent]) -> None:
        """Hold ``events`` (the reader's, in seq order); one that does not follow the newest
        held starts the window again from itself."""
        if self.max_events == 0:
            return
        for event in events:
            last = self.last_seq
            if last is not None and event.seq != last + 1:
                self.clear()
            self._events.append(event)
            self._bytes += event_cost(event)
        self._bound()

    def _bound(self) -> None:
        events = self._events
        start = self._start
        while len(events) - start > self.max_events or (
            self._bytes > self.max_bytes and len(events) - start > 1
        ):
            self._bytes -= event_cost(events[start])
            start += 1
        if start > 1024 and start * 2 > len(events):
            del events[:start]  # compact now and then: amortised O(1) per event
            start = 0
        self._start = start

    def after(self, seq: int) -> list[StoredEvent] | None:
        """Every event with a seq above ``seq``, in order, if the window holds all of them."""
        first = self.first_seq
        if first is None or seq < first - 1 or seq > self._events[-1].seq:
            return None
        return self._events[self._start + seq + 1 - first :]

    def resume(self, topics: Iterable[str], after: int, *, now_ms: int) -> list[StoredEvent] | None:
        """The events of ``topics`` after seq ``after``, in order, when memory can answer a
        resume from there exactly as Redis would (see the module docstring); ``None``: ask
        Redis. The caller checks the epoch and that ``after`` is not ahead of the hub."""
        missed = self.after(after)
        if missed is None:
            return None
        if self.ttl_ms:
            # The event at `after` must be held, and clearly within the TTL: every event after
            # it is younger still, so none of them can have expired in Redis.
            held = len(self._events) - len(missed) - 1  # its index, if held
            if held < self._start:
                return None
            if now_ms - self._events[held].published_ms > self.ttl_ms - TTL_MARGIN_MS:
                return None
        wanted = set(topics)
        selected = [event for event in missed if event.topic in wanted]
        if len(selected) > self.maxlen:
            counts: dict[str, int] = {}
            for event in selected:
                counts[event.topic] = counts.get(event.topic, 0) + 1
            if max(counts.values()) > self.maxlen:
                return None  # Redis may have trimmed some: it tells
        return selected
