"""Mercure updates kept in realtime's storage (a real Redis) and read back from the live feed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from realtime.core.errors import BadRequest
from realtime.core.events import StoredEvent
from realtime.core.topics import validate_topic
from realtime.mercure.store import UPDATES_TOPIC, from_event, new_id, to_draft
from realtime.mercure.updates import Update
from realtime.storage.broker import Broker
from realtime.storage.interface import Retention
from realtime.storage.redis_server import RedisServer

RETENTION = Retention(maxlen=100, ttl_s=0, firehose_maxlen=1000, idempotency_ttl_s=60)


@pytest.fixture
def broker(any_redis_server: RedisServer, raw: redis.Redis) -> Iterator[Broker]:
    b = Broker(any_redis_server.url, retention=RETENTION, pool_size=2)
    yield b
    b.close()


def test_no_other_door_can_name_the_updates_topic() -> None:
    with pytest.raises(BadRequest):
        validate_topic(UPDATES_TOPIC)


def test_an_update_is_stored_and_read_back_from_the_feed_exactly(broker: Broker) -> None:
    updates = [
        Update(
            ("https://example.com/books/1", "https://example.com/users/1/books/1"),
            "line one\n  two",
            True,
            "urn:uuid:given",
            "book",
            2500,
        ),
        Update(("https://example.com/books/2",), "", False, None, None, None),
    ]
    published = broker.publish([to_draft(u) for u in updates])
    epoch, head = broker.position()
    read = [from_event(e) for e in broker.feed_replay(epoch, 0, head)]
    first, second = read
    assert first is not None
    assert second is not None
    assert (first.id, first.topics, first.data, first.private, first.type, first.retry) == (
        "urn:uuid:given",
        ("https://example.com/books/1", "https://example.com/users/1/books/1"),
        "line one\n  two",
        True,
        "book",
        2500,
    )
    assert second.id.startswith("urn:uuid:")
    assert second.id != first.id
    assert (second.private, second.type, second.retry) == (False, "message", None)
    assert [first.seq, second.seq] == list(published.seqs)
    assert broker.alias_seq("urn:uuid:given") == first.seq
    assert broker.alias_seq(second.id) == second.seq


def test_events_of_other_doors_are_not_updates() -> None:
    plain = StoredEvent(epoch="e", seq=1, topic="orders", type="message", data="x")
    assert from_event(plain) is None


def test_hub_ids_are_random_urns() -> None:
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("urn:uuid:") for i in ids)
