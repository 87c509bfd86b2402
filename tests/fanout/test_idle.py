"""A held stream's place in gevent's pool of handlers (realtime/fanout/idle.py), on a real pool.

The stream's behaviour itself is proven on gunicorn (tests/system/test_held_streams.py): holding
a stream takes gunicorn's own response and socket.
"""

from __future__ import annotations

from functools import partial

import gevent
import pytest
from gevent.pool import Pool, PoolFull

from realtime.fanout.idle import StreamSlot


def test_a_slot_takes_a_place_in_the_pool_until_vacated() -> None:
    pool = Pool(2)
    slot = StreamSlot(lambda: None)
    pool.add(slot, blocking=False)
    assert pool.free_count() == 1
    slot.vacate()
    assert pool.free_count() == 2
    assert slot.ready()


def test_a_full_pool_refuses_a_slot_as_it_refuses_a_connection() -> None:
    pool = Pool(1)
    pool.add(StreamSlot(lambda: None), blocking=False)
    with pytest.raises(PoolFull):
        pool.add(StreamSlot(lambda: None), blocking=False)


def test_a_pool_that_stops_waiting_ends_the_stream_and_is_empty() -> None:
    """gunicorn's forced shutdown: server.stop kills what is left in the pool."""
    ended: list[str] = []
    pool = Pool(3)
    slots = [StreamSlot(partial(ended.append, f"stream {n}")) for n in range(2)]
    for slot in slots:
        pool.add(slot, blocking=False)
    pool.kill(timeout=1)
    assert sorted(ended) == ["stream 0", "stream 1"]
    assert pool.free_count() == 3
    assert pool.join(timeout=1)


def test_waiting_on_a_slot_returns_when_it_is_vacated() -> None:
    """gevent's wait protocol (rawlink/unlink), which the pool's join uses."""
    pool = Pool(2)
    slot = StreamSlot(lambda: None)
    pool.add(slot, blocking=False)
    gevent.spawn_later(0.05, slot.vacate)
    assert pool.join(timeout=2)
    assert gevent.wait([slot], timeout=0) == [slot]
