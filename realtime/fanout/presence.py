"""Presence: who follows a topic, across every worker and host.

Each worker keeps its own connections' entries in memory and mirrors them into Redis (one sorted
set per topic, member ``<connection id>|<who>``, score = expiry time) from one greenlet: changes
are flushed as they happen, and every entry is refreshed every third of the TTL. A worker that
dies (SIGKILL, lost host) stops refreshing, so its entries expire within the TTL; nobody has to
clean up after it. Changes are batched so a mass disconnect costs one pipeline, not a Redis call
per connection, and never blocks the hub's reader.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

import gevent
import gevent.event
from gevent import Greenlet

from realtime.core.errors import BrokerError
from realtime.ops import metrics
from realtime.storage.interface import Storage

log = logging.getLogger(__name__)

SEPARATOR = "|"


def member(connection_id: str, who: str) -> str:
    return f"{connection_id}{SEPARATOR}{who}"


def who_of(entry: str) -> str:
    return entry.split(SEPARATOR, 1)[1] if SEPARATOR in entry else entry


# Entries per Redis pipeline when flushing (see Presence._flush).
FLUSH_CHUNK = 64


class Presence:
    """This worker's presence entries and the greenlet that keeps them alive in Redis."""

    def __init__(self, broker: Storage, ttl_s: float) -> None:
        self.broker = broker
        self.ttl_s = ttl_s
        self._entries: set[tuple[str, str]] = set()
        self._pending_add: set[tuple[str, str]] = set()
        self._pending_remove: set[tuple[str, str]] = set()
        self._wake = gevent.event.Event()
        self._greenlet: Greenlet | None = None

    def add(self, topics: Iterable[str], connection_id: str, who: str) -> None:
        for topic in topics:
            entry = (topic, member(connection_id, who))
            self._entries.add(entry)
            self._pending_remove.discard(entry)
            self._pending_add.add(entry)
        self._wake.set()

    def remove(self, topics: Iterable[str], connection_id: str, who: str) -> None:
        for topic in topics:
            entry = (topic, member(connection_id, who))
            self._entries.discard(entry)
            self._pending_add.discard(entry)
            self._pending_remove.add(entry)
        self._wake.set()

    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop refreshing and remove what this worker still holds (a graceful exit)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)
            self._greenlet = None
        with contextlib.suppress(BrokerError):  # Redis down: the entries expire by themselves
            self._flush()

    def present(self, topic: str) -> tuple[list[str], int]:
        """Who follows ``topic`` now (distinct, sorted) and over how many connections."""
        entries = self.broker.presence_members(topic, now_ms=int(time.time() * 1000))
        return sorted({who_of(e) for e in entries}), len(entries)

    def _flush(self, refresh_all: bool = False) -> None:
        """Send pending changes (and, with ``refresh_all``, every entry) in bounded pipelines.

        A worker's entries are one per stream and topic: refreshing 10,000 in one pipeline kept
        the worker busy building commands for tens of milliseconds, a stall in every stream's
        delivery every refresh. Chunks of :data:`FLUSH_CHUNK` with a yield between them let
        deliveries and publishes run meanwhile.
        """
        adds = list(self._entries if refresh_all else self._pending_add)
        removes = list(self._pending_remove)
        if not adds and not removes:
            return
        expires_ms = int((time.time() + self.ttl_s) * 1000)
        total = max(len(adds), len(removes))
        for start in range(0, total, FLUSH_CHUNK):
            add_chunk = adds[start : start + FLUSH_CHUNK]
            remove_chunk = removes[start : start + FLUSH_CHUNK]
            self.broker.presence_update(
                add_chunk, remove_chunk, expires_ms=expires_ms, ttl_s=self.ttl_s
            )
            self._pending_add.difference_update(add_chunk)
            self._pending_remove.difference_update(remove_chunk)
            if start + FLUSH_CHUNK < total:
                gevent.sleep(0)

    def _run(self) -> None:
        interval = self.ttl_s / 3
        next_refresh = time.monotonic() + interval
        while True:
            self._wake.wait(max(0.0, next_refresh - time.monotonic()))
            self._wake.clear()
            refresh_all = time.monotonic() >= next_refresh
            try:
                self._flush(refresh_all)
            except BrokerError as exc:
                log.warning("presence update failed (%s); retrying", exc)
                metrics.REDIS_ERRORS.labels("presence").inc()
                gevent.sleep(min(1.0, interval))
                continue
            if refresh_all:
                next_refresh = time.monotonic() + interval
