"""The SSE stream of one connection: preamble, replay, then live, with heartbeats.

Split the way sse-starlette splits it: :func:`preamble`, :func:`replay`, :func:`live` are small
generators of bytes, joined by :func:`event_stream`. Nothing here reads Flask globals: the view
resolves the request into a :class:`StreamPlan` first (Flask's ``stream_with_context`` warning).

The seam: :func:`open_stream` subscribes to the hub *before* the broker's replay check reads the
head, so an event is either at or below the head (replayed from Redis) or above it (queued
live); live events at or below the last id sent are skipped. No gap, no duplicate (DESIGN.md,
guarantee 2). Everything a stream takes (its subscription, its direct writer, its slow-client
cut) is given back in one place, :meth:`LiveStream.release`, however and wherever it ends.

An idle stream may leave its greenlet (and gunicorn's request) for the worker to hold
(:class:`Parking`, :mod:`realtime.fanout.idle`): its ``live()`` loop then returns, and runs
again, on a greenlet of its own, whenever the stream needs one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any, Protocol

import gevent

from realtime.core.config import Settings
from realtime.core.errors import BrokerError, HistoryLost
from realtime.core.events import READY_EVENT, StoredEvent
from realtime.core.ids import format_id
from realtime.core.sse import encode_comment, encode_control, encode_last_id, encode_retry
from realtime.fanout.directwrite import DirectWriter
from realtime.fanout.hub import OVERFLOW, SHUTDOWN, Hub, Subscription
from realtime.fanout.slowclient import OverflowCut, cut_on_overflow, server_socket
from realtime.ops import metrics
from realtime.storage.interface import ReplayCheck, Storage

log = logging.getLogger(__name__)

REPLAY_CHUNK_EVENTS = 64
AUTH_EXPIRED = "auth_expired"
OPENING_COMMENT = "ok"
HEARTBEAT_COMMENT = "heartbeat"


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Everything a stream needs, resolved from the request before the response starts."""

    topics: tuple[str, ...]
    check: ReplayCheck
    after: int
    retry_ms: int
    heartbeat_s: float
    max_age_s: float
    envelope: bool
    expires_at: float | None = None  # the token's exp (unix seconds): the stream ends there


def preamble(plan: StreamPlan) -> bytes:
    """``retry:``, an opening comment so proxies flush, and where the client stands.

    A fresh client is told the head id (an id-only event dispatches nothing in EventSource but
    sets its last id), so even its first reconnect resumes exactly. A client that cannot be
    replayed exactly gets ``reset`` with the head id, then live events only.
    """
    check = plan.check
    head_id = format_id(check.epoch, check.head)
    out = [encode_retry(plan.retry_ms), encode_comment(OPENING_COMMENT)]
    if check.status == "fresh" and plan.envelope:
        # Script clients (realtime.js) cannot read EventSource's last id before an event comes:
        # tell them in an event they can listen for, so their own reconnects are exact too.
        out.append(encode_control(READY_EVENT, {"last_id": head_id}, id=head_id))
    elif check.status == "fresh":
        out.append(encode_last_id(head_id))
    elif check.status != "ok":
        out.append(
            encode_control("reset", {"reason": check.status, "last_id": head_id}, id=head_id)
        )
    return b"".join(out)


def _frame(event: StoredEvent, envelope: bool) -> bytes:
    return event.envelope_frame() if envelope else event.frame()


def replay(
    broker: Storage, plan: StreamPlan, recent: Sequence[StoredEvent] | None = None
) -> Iterator[bytes]:
    """The retained events after the client's id up to the head, a chunk at a time, from the
    worker's memory (``recent``, when it answered) or from Redis."""
    if plan.check.status != "ok" or plan.after >= plan.check.head:
        return
    chunk: list[bytes] = []
    events: Iterable[StoredEvent] = (
        recent
        if recent is not None
        else broker.replay(plan.topics, plan.check.epoch, plan.after, plan.check.head)
    )
    for event in events:
        chunk.append(_frame(event, plan.envelope))
        if len(chunk) >= REPLAY_CHUNK_EVENTS:
            yield b"".join(chunk)
            metrics.REPLAYED.labels("sse").inc(len(chunk))
            chunk = []
            # Let the other greenlets run: a replay whose writes never block would otherwise
            # release its pooled Redis connection and take it again at once for the next page,
            # while other requests wait for one past the pool's timeout (a new stream's replay
            # check is then refused 503) and live delivery stalls. From memory too: a thousand
            # replays at once must not hold the reader's live events back.
            gevent.sleep(0)
    if chunk:
        yield b"".join(chunk)
        metrics.REPLAYED.labels("sse").inc(len(chunk))


def _closing_frame(reason: str, plan: StreamPlan, last_id: str) -> bytes:
    jitter_ms = random.randint(250, 1500)  # noqa: S311 - jitter, not a secret
    if reason == OVERFLOW:
        return encode_control("overflow", {"reason": "slow_consumer", "last_id": last_id})
    if reason == SHUTDOWN:
        return encode_retry(jitter_ms) + encode_control("shutdown", {"last_id": last_id})
    if reason == AUTH_EXPIRED:
        # No id: a client that renews its token resumes exactly from last_id.
        return encode_control(AUTH_EXPIRED, {"last_id": last_id})
    # RESYNC or max age: reconnect soon, the replay path knows exactly what was missed.
    return encode_retry(jitter_ms) + encode_comment(reason)


def stream_deadline(max_age_s: float, expires_at: float | None) -> tuple[float | None, str]:
    """When (monotonic) a stream must end, and why: its token expires (``expires_at``, unix
    seconds), or it is ``max_age_s`` old (0: never). Every door's streams end by this."""
    ends: list[tuple[float, str]] = []
    if max_age_s:
        ends.append((time.monotonic() + max_age_s, "max_age"))
    if expires_at is not None:
        ends.append((time.monotonic() + (expires_at - time.time()), AUTH_EXPIRED))
    if not ends:
        return None, ""
    return min(ends)


def _heartbeat_due(wrote_at: float, writer: DirectWriter | None, plan: StreamPlan) -> float:
    """When a heartbeat is due: ``heartbeat_s`` after the last write of the stream or its writer."""
    last = wrote_at if writer is None else max(wrote_at, writer.last_write)
    return last + plan.heartbeat_s


def live(
    sub: Subscription,
    plan: StreamPlan,
    last_seq: int,
    ends: tuple[float | None, str] = (None, ""),
    *,
    wrote_at: float | None = None,
    park: Callable[[], bool] | None = None,
) -> Iterator[bytes]:
    """Queued events as they come, coalesced into one write per wake-up, with heartbeats.

    With a :class:`~realtime.fanout.directwrite.DirectWriter` (``sub.writer``), the reader
    writes events itself while this greenlet is parked; they share its cursor, so the queue path
    (taken when the socket is busy or the stream is writing) skips what was already written. A
    heartbeat is due after ``heartbeat_s`` without a write from either (``wrote_at``: the
    stream's last write before this loop; now if not given). ``ends`` is when and why the
    stream must end (:func:`stream_deadline`). With ``park``, whenever the stream has nothing to
    do and nothing is due, the loop offers it to be held without this greenlet and, if it was
    taken, returns (:class:`Parking`).
    """
    epoch = plan.check.epoch
    deadline, why = ends
    writer = sub.writer if isinstance(sub.writer, DirectWriter) else None
    if writer is not None:
        writer.last_seq = last_seq
    if wrote_at is None:
        wrote_at = time.monotonic()  # this loop's last write
    while True:
        now = time.monotonic()
        timeout = max(0.0, _heartbeat_due(wrote_at, writer, plan) - now)
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - now))
        if writer is not None:
            writer.park()
            if park is not None and timeout > 0 and writer.parked and _idle(sub):
                writer.last_write = max(writer.last_write, wrote_at)
                if park():
                    return
        sub.wait(timeout)
        if writer is not None:
            writer.hold()  # finishes a partial direct write before anything else goes out
            last_seq = max(last_seq, writer.last_seq)
        events = [e for e in sub.drain() if e.seq > last_seq]
        if events:
            last_seq = events[-1].seq
            if writer is not None:
                writer.last_seq = last_seq
            yield b"".join(_frame(e, plan.envelope) for e in events)
            # Resumed: the server has written the chunk to the socket.
            wrote_at = time.monotonic()
            metrics.DELIVERED.labels("sse").inc(len(events))
            metrics.DELIVERY_LAG.labels("sse").observe(events[0].lag_s(time.time()))
        if sub.closed_reason is not None:
            yield _closing_frame(sub.closed_reason, plan, format_id(epoch, last_seq))
            return
        if deadline is not None and time.monotonic() >= deadline:
            yield _closing_frame(why, plan, format_id(epoch, last_seq))
            return
        if not events and time.monotonic() >= _heartbeat_due(wrote_at, writer, plan):
            yield encode_comment(HEARTBEAT_COMMENT)
            wrote_at = time.monotonic()


def _idle(sub: Subscription) -> bool:
    """Nothing queued and not closed: nothing to do until something comes."""
    return not sub.queue and sub.closed_reason is None


class Parking(Protocol):
    """Where an idle stream can wait without a greenlet of its own (:mod:`realtime.fanout.idle`
    is one): :meth:`adopt` answers whether it took the stream, whose ``live()`` loop then
    returns."""

    def adopt(self, stream: LiveStream) -> bool: ...


class LiveStream:
    """One stream past its start: what its ``live()`` loop needs, wherever it runs, and
    everything it holds, given back by :meth:`release`."""

    __slots__ = ("_hub", "cut", "ends", "held", "plan", "sub")

    def __init__(
        self,
        hub: Hub,
        sub: Subscription,
        plan: StreamPlan,
        ends: tuple[float | None, str],
        cut: OverflowCut,
    ) -> None:
        self._hub = hub
        self.sub = sub
        self.plan = plan
        self.ends = ends  # when (monotonic) and why it must end: stream_deadline
        self.cut = cut
        #: Whether the worker holds the stream (:class:`Parking`): the end of its request at
        #: the server is then not the end of the stream.
        self.held = False

    @property
    def writer(self) -> DirectWriter | None:
        writer = self.sub.writer
        return writer if isinstance(writer, DirectWriter) else None

    def loop(self, park: Callable[[], bool] | None, *, resumed: bool = False) -> Iterator[bytes]:
        """The stream's ``live()`` loop, from the head of its start, or (``resumed``, after the
        worker held it) from its writer's cursor and last write."""
        writer = self.writer
        if resumed and writer is not None:
            return live(
                self.sub,
                self.plan,
                writer.last_seq,
                self.ends,
                wrote_at=writer.last_write,
                park=park,
            )
        return live(self.sub, self.plan, self.plan.check.head, self.ends, park=park)

    def due(self) -> float:
        """When (monotonic) the stream next needs its own attention: a heartbeat, or its end."""
        writer = self.writer
        due = (writer.last_write if writer is not None else 0.0) + self.plan.heartbeat_s
        deadline = self.ends[0]
        return due if deadline is None else min(due, deadline)

    def server_done(self) -> None:
        """The server is done with the stream's request: the stream's end, unless the worker
        holds it now."""
        if not self.held:
            self.release()

    def release(self) -> None:
        """Give back what the stream holds; idempotent (every way a stream ends calls it)."""
        if self.sub.writer is not None:
            self.sub.writer.close()
        self._hub.unsubscribe(self.sub)
        self.cut.disarm()


def open_stream(
    hub: Hub,
    broker: Storage,
    settings: Settings,
    topics: tuple[str, ...],
    last_id: str | None,
    *,
    envelope: bool,
    expires_at: float | None,
    who: str | None,
    address: str,
    environ: dict[str, Any],
    parking: Parking | None = None,
) -> StreamBody:
    """One client's stream on ``topics``, from ``last_id``: the WSGI body to answer with.

    Subscribes first (the seam), then asks where the client stands: the worker's memory of
    recent events when it can tell (:meth:`~realtime.fanout.hub.Hub.resume_from_memory`),
    else the storage; under gunicorn
    the reader may write live events straight to this request's socket while the stream waits
    (:mod:`realtime.fanout.directwrite`), a client that stops reading is cut
    (:mod:`realtime.fanout.slowclient`), and with ``parking`` the stream, once idle, leaves its
    greenlet for the worker to hold. Refusals (limits, Redis down) raise before anything is
    held.
    """
    sub = hub.subscribe(topics, who=who, address=address)
    recent: list[StoredEvent] | None = None
    remembered = hub.resume_from_memory(topics, last_id)
    if remembered is not None:
        check, after, recent = remembered
        metrics.STARTS_FROM_MEMORY.inc()
    else:
        try:
            check, after = broker.check_last_id(topics, last_id)
        except BaseException:
            hub.unsubscribe(sub)
            raise
        metrics.STARTS_FROM_STORAGE.inc()
    if check.status not in ("ok", "fresh"):
        metrics.RESETS.labels(check.status).inc()
    plan = StreamPlan(
        topics=topics,
        check=check,
        after=after,
        retry_ms=settings.retry_ms,
        heartbeat_s=settings.heartbeat_s,
        max_age_s=settings.max_connection_age_s,
        envelope=envelope,
        expires_at=expires_at,
    )
    cut = cut_on_overflow(sub, server_socket(environ), settings.overflow_grace_s)
    sub.writer = DirectWriter.for_environ(environ, envelope=envelope, wake=sub.wake)
    stream = LiveStream(hub, sub, plan, stream_deadline(plan.max_age_s, plan.expires_at), cut)
    park = None
    if parking is not None and sub.writer is not None:
        park = partial(parking.adopt, stream)
    return StreamBody(event_stream(broker, stream, recent, park), stream.server_done)


def event_stream(
    broker: Storage,
    stream: LiveStream,
    recent: Sequence[StoredEvent] | None = None,
    park: Callable[[], bool] | None = None,
) -> Iterator[bytes]:
    """The whole response body; the stream is released however it ends (unless the worker
    holds it: then its own end releases it)."""
    try:
        yield preamble(stream.plan)
        # Replay covered everything up to the head, even on topics that had nothing to send.
        yield from ending_on_storage_failure(
            chain(replay(broker, stream.plan, recent), stream.loop(park))
        )
    finally:
        stream.server_done()


def ending_on_storage_failure(parts: Iterator[bytes]) -> Iterator[bytes]:
    """``parts``, until the storage fails under them: then a short jittered ``retry:`` ends the
    stream, and the client's reconnect resumes it exactly (history that vanished mid-replay is
    told on the reconnect; a Redis failure is retried after it)."""
    try:
        yield from parts
    except HistoryLost as exc:
        log.info("replay interrupted (%s); closing so the client resumes", exc.reason)
        yield encode_retry(random.randint(100, 500))  # noqa: S311 - jitter, not a secret
    except BrokerError as exc:
        log.warning("Redis failed during a stream (%s); closing so the client resumes", exc)
        yield encode_retry(random.randint(500, 2000))  # noqa: S311 - jitter, not a secret


class StreamBody:
    """The WSGI body of a stream: iterating it yields the generator itself, and ``close`` runs
    ``on_close`` even if the server closes the body before it was ever iterated.

    Handed to the server as it is (``direct_passthrough``), so no wrapper iterator sits between
    gunicorn's loop and :func:`event_stream`: each idle stream's greenlet keeps a shallower saved
    stack and no per-response objects (werkzeug's closing iterator, the response it closes).
    """

    __slots__ = ("_body", "_on_close")

    def __init__(self, body: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()
