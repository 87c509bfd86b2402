"""Streams between writes, held by the worker without a greenlet each.

Why: an idle SSE stream held a greenlet parked in its wait (a saved C stack and a frame stack,
about 10 KiB), gunicorn's request, parser, environ and response (about 3 KiB) and gevent's
socket: 22-26 KiB of a worker's memory per stream, twice Nchan's. Yet an idle stream only ever
needs three things, and none of them needs a stack of its own: the reader writes its events
straight to its socket (:mod:`realtime.fanout.directwrite`), a heartbeat is due every
``REALTIME_HEARTBEAT_S``, and it may end (shutdown, resync, overflow, its deadline).

How: once a stream has sent its preamble and replay and has nothing to do, its ``live()`` loop
offers it to :meth:`IdleStreams.adopt` and, taken, returns. The stream's connection leaves
gunicorn's request as if the response were complete
(:meth:`~realtime.fanout.directwrite.DirectWriter.leave_server`: gunicorn writes nothing more,
logs the request and closes its descriptor; the stream keeps a duplicate). From then on:

* the reader writes its events as before, one ``send`` each;
* whenever the stream needs its own attention (events its socket could not take at once, a
  partial write to finish, a heartbeat due, its deadline, a close), a greenlet is spawned and
  runs the stream's same ``live()`` loop until it is idle again or over: the rare path borrows a
  greenlet, the common one holds none;
* one timer greenlet per worker keeps the streams' next heartbeats and deadlines in a heap;
* gunicorn still counts it: a :class:`StreamSlot` takes the stream's place in gunicorn's pool
  of connection handlers, so ``worker_connections`` bounds streams as before, a full worker
  still stops accepting, and a graceful shutdown still waits for every stream's goodbye.

Where a stream cannot leave its request (another server than gunicorn, TLS, a full pool), it
keeps its greenlet, as before: this is a fast path, never the only one.

Deliberately not here: framing (the stream's), the reader's writes (directwrite), subscriptions
(the hub).
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent import Greenlet
from gevent.pool import Pool, PoolFull

from realtime.core.events import http_chunk
from realtime.fanout.stream import LiveStream
from realtime.ops import metrics

log = logging.getLogger(__name__)

#: The end of a chunked body.
LAST_CHUNK = b"0\r\n\r\n"
#: The timer looks at its heap at least this often (a stream adopted meanwhile may be due first).
TICK_S = 1.0


class StreamSlot:
    """A held stream's place in gunicorn's pool of connection handlers, where its greenlet was.

    gevent's pool counts its members (``free_count``: what gunicorn's graceful shutdown waits
    on, and what stops its server accepting when full) and, when gunicorn gives up waiting,
    kills them: this object speaks that protocol (``rawlink``, ``unlink``, ``kill``) for a
    stream without a greenlet. :meth:`vacate` gives the place back.
    """

    __slots__ = ("_links", "_on_kill")

    def __init__(self, on_kill: Callable[[], None]) -> None:
        self._links: list[Callable[[Any], None]] | None = []
        self._on_kill = on_kill

    def rawlink(self, callback: Callable[[Any], None]) -> None:
        if self._links is None:
            callback(self)
        else:
            self._links.append(callback)

    def unlink(self, callback: Callable[[Any], None]) -> None:
        if self._links is not None:
            with contextlib.suppress(ValueError):
                self._links.remove(callback)

    def ready(self) -> bool:
        return self._links is None

    def kill(
        self, exception: Any = None, block: bool = False, timeout: float | None = None
    ) -> None:
        """gunicorn stopped waiting for the stream (its graceful timeout): end it now."""
        self._on_kill()
        self.vacate()

    def vacate(self) -> None:
        links, self._links = self._links, None
        for callback in links or ():
            callback(self)


class IdleStreams:
    """The streams one worker holds without greenlets, and the timer that wakes them when due.

    One per worker process (a hub's streams and the pools of the worker's server are all in
    it); held streams end with the hub's subscriptions, and :meth:`join` waits for their
    goodbyes when the worker stops.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Held]] = []
        self._order = itertools.count()
        self._timer: Greenlet | None = None
        self._pools: list[Pool] = []
        self._flushing: set[Greenlet] = set()
        #: Streams held now (or borrowing a greenlet for a moment): for tests and figures.
        self.count = 0

    def adopt(self, stream: LiveStream) -> bool:
        """Take ``stream`` from its greenlet, which returns when this answers True."""
        pool = self._handler_pool()
        writer = stream.writer
        if pool is None or writer is None:
            return False
        held = Held(self, stream)
        slot = StreamSlot(held.kill)
        try:
            pool.add(slot, blocking=False)  # beside the greenlet's own place, a moment
        except PoolFull:
            return False
        if not writer.leave_server():
            slot.vacate()
            return False
        held.slot = slot
        stream.held = True
        stream.cut.retarget(writer.own_socket)
        stream.sub.waker = held.wake
        self.count += 1
        metrics.STREAMS_HELD.inc()
        self._schedule(held)
        return True

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the goodbyes being written (a stopping worker)."""
        gevent.joinall(list(self._flushing), timeout=timeout)

    def _handler_pool(self) -> Pool | None:
        """The gevent pool the current greenlet (a connection's handler) was spawned into.

        gevent's compiled greenlets do not expose their links, and gunicorn keeps its pools in
        the locals of its worker's ``run``: the first stream of each pool finds it among the
        referrers of its greenlet (one scan of the heap, once per pool and worker, a few
        milliseconds); the others by a set lookup.
        """
        current = gevent.getcurrent()
        for pool in self._pools:
            if current in pool.greenlets:
                return pool
        # The scan does not see frozen objects (ops/gcpolicy.py freezes survivors every
        # second): they are thawed for it, and frozen again (what the policy does anyway).
        frozen = gc.get_freeze_count()
        if frozen:
            gc.unfreeze()
        try:
            for holder in gc.get_referrers(current):
                if isinstance(holder, set):
                    for owner in gc.get_referrers(holder):
                        if isinstance(owner, Pool) and owner.greenlets is holder:
                            self._pools.append(owner)
                            return owner
        finally:
            if frozen:
                gc.freeze()
        return None

    # -- the timer ------------------------------------------------------------------------------

    def _schedule(self, held: Held) -> None:
        """Have the timer look at ``held`` when it is due. Once in the heap is enough: a
        stream's due time only moves later (its writes), and the timer looks again when it
        pops it."""
        if held.in_heap:
            return
        held.in_heap = True
        heapq.heappush(self._heap, (held.stream.due(), next(self._order), held))
        if self._timer is None or self._timer.dead:
            self._timer = gevent.spawn(self._run)

    def _run(self) -> None:
        heap = self._heap
        while heap:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                _, _, held = heapq.heappop(heap)
                held.in_heap = False
                if held.over or held.flusher is not None:
                    continue  # over, or on a greenlet: its live() loop keeps its own time
                due = held.stream.due()
                if due > now:  # the reader wrote meanwhile: no heartbeat yet
                    self._schedule(held)
                else:
                    held.wake()
            if heap:
                gevent.sleep(min(TICK_S, max(0.0, heap[0][0] - time.monotonic())))

    # -- a held stream's own moments ------------------------------------------------------------

    def _flush(self, held: Held) -> None:
        """The stream's live() loop on a greenlet of its own, until it is idle again or over."""
        stream = held.stream
        writer = stream.writer
        parked = False
        try:
            if writer is not None:
                frame = http_chunk if writer.chunked else bytes
                for data in stream.loop(held.park, resumed=True):
                    writer.send_all(frame(data))
                parked = held.parked
        except OSError:
            pass  # the client is gone
        except Exception:
            log.exception("a held stream failed; ending it")
        finally:
            held.flusher = None
            self._flushing.discard(gevent.getcurrent())
            if parked and not held.over:
                self._schedule(held)
            else:
                held.end(goodbye=True)


class Held:
    """One stream :class:`IdleStreams` holds: its place in the pool, and its moments on a
    greenlet (:attr:`flusher`)."""

    __slots__ = ("flusher", "in_heap", "over", "owner", "parked", "slot", "stream")

    def __init__(self, owner: IdleStreams, stream: LiveStream) -> None:
        self.owner = owner
        self.stream = stream
        self.slot: StreamSlot | None = None
        self.flusher: Greenlet | None = None
        self.parked = False  # the last live() loop returned to be held again (not to end)
        self.over = False
        self.in_heap = False  # the timer has an entry for it

    def wake(self) -> None:
        """Something needs the stream's attention: its loop runs on a greenlet for a while."""
        self.stream.sub.wakeup.set()
        if self.flusher is None and not self.over:
            self.parked = False
            self.flusher = gevent.spawn(self.owner._flush, self)
            self.owner._flushing.add(self.flusher)

    def park(self) -> bool:
        """The loop found nothing to do: held again (its greenlet ends)."""
        self.parked = True
        return True

    def kill(self) -> None:
        """gunicorn's forced shutdown: end the stream without a goodbye."""
        if self.flusher is not None:
            self.flusher.kill(block=False)
        self.end(goodbye=False)

    def end(self, *, goodbye: bool) -> None:
        """The stream is over: the last chunk (when the loop ended it), the socket closed,
        everything given back, and the place in the pool."""
        if self.over:
            return
        self.over = True
        self.owner.count -= 1
        metrics.STREAMS_HELD.dec()
        writer = self.stream.writer
        if writer is not None:
            if goodbye and writer.chunked:
                with contextlib.suppress(OSError):
                    writer.send_now(LAST_CHUNK)
            writer.close_socket()
        self.stream.release()
        if self.slot is not None:
            self.slot.vacate()
