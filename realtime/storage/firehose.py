"""The live feed: a hub's blocking reads of the firehose, and the high water they leave.

The firehose (``{rt}:firehose``) holds every event of every topic in seq order, each with its
topic and epoch. A :class:`FirehoseReader` is one dedicated connection doing ``XREAD BLOCK`` on
it for one hub; its seqs are contiguous, so the hub tells a gap by arithmetic.

:class:`HighWater` is the newest seq this worker has seen, per epoch, the evidence that a Redis
restarted from an older snapshot lost events we already handed out (``lua/epoch.lua``). The
reader records it as it reads, and every script that reads the epoch sends it along.

Deliberately not here: what the hub does with a gap or an epoch change (it resyncs its
subscribers), or publishing.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from realtime.core.errors import BrokerError
from realtime.core.events import StoredEvent
from realtime.core.ids import new_epoch
from realtime.storage import scripts
from realtime.storage.codec import decode_firehose_entry, text
from realtime.storage.interface import Position
from realtime.storage.keys import EPOCH_KEY, FIREHOSE_KEY, SEQ_KEY


class HighWater:
    """The newest seq this worker has seen, per epoch: evidence a restarted Redis lost events."""

    def __init__(self) -> None:
        self.epoch = "-"
        self.seq = 0

    def observe(self, epoch: str, seq: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.seq = epoch, seq
        elif seq > self.seq:
            self.seq = seq

    def spec(self) -> str:
        """ARGV[1] of the scripts: a candidate epoch, the known epoch and its high water."""
        return f"{new_epoch()} {self.epoch} {self.seq}"


def read_position(script: Any, high_water: HighWater) -> Position:
    """Run the position script: the epoch (created if Redis is new) and the head seq."""
    try:
        epoch, head = script(keys=[EPOCH_KEY, SEQ_KEY], args=[high_water.spec()])
    except RedisError as exc:
        raise BrokerError(f"Redis is unreachable: {exc}") from exc
    position = Position(text(epoch), int(text(head)))
    high_water.observe(*position)
    return position


class FirehoseReader:
    """One dedicated Redis connection doing ``XREAD BLOCK`` on the firehose for a hub.

    Every read records its newest event in ``high_water`` (the broker's, when the broker made
    this reader), so the reader's user never writes storage state itself.
    """

    def __init__(
        self, url: str, high_water: HighWater | None = None, socket_timeout: float = 30.0
    ) -> None:
        self.high_water = high_water or HighWater()
        self._redis = redis.Redis.from_url(
            url,
            single_connection_client=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=5.0,
        )
        self._position = self._redis.register_script(scripts.POSITION)

    def position(self) -> Position:
        return read_position(self._position, self.high_water)

    def read(self, after: int, *, block_ms: int | None, count: int = 1000) -> list[StoredEvent]:
        """Firehose events with seq > ``after`` (waiting up to ``block_ms``; ``None``: not at
        all, what is there now), with their epochs."""
        try:
            reply: Any = self._redis.xread(
                {FIREHOSE_KEY: f"{after}-0"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            raise BrokerError(f"Redis refused XREAD: {exc}") from exc
        except RedisError as exc:
            raise BrokerError(f"Redis connection lost: {exc}") from exc
        events = [
            decode_firehose_entry(raw_id, fields)
            for _stream, entries in reply or ()
            for raw_id, fields in entries
        ]
        if events:
            # The firehose is in seq order, so its last event is the newest seen in its epoch.
            newest = events[-1]
            self.high_water.observe(newest.epoch, newest.seq)
        return events

    def close(self) -> None:
        with contextlib.suppress(RedisError):
            self._redis.close()
