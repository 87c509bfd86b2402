"""The hub's reader greenlet against a real Redis: dispatch, overflow, reconnect, resync."""

from __future__ import annotations

import gc
import socket
import warnings
from collections.abc import Iterator

import gevent
import pytest
import redis

from realtime.core.errors import Unavailable
from realtime.core.events import Draft, Published, StoredEvent
from realtime.fanout.hub import OVERFLOW, RESYNC, Hub, Subscription
from realtime.storage.broker import Broker
from realtime.storage.interface import Feed, Position, Retention
from realtime.storage.keys import SEQ_KEY

RETENTION = Retention(1000, 0, 1000, 60)


@pytest.fixture
def broker(redis_url: str) -> Iterator[Broker]:
    b = Broker(redis_url, retention=RETENTION, pool_size=2)
    yield b
    b.close()


@pytest.fixture
def hub(broker: Broker) -> Iterator[Hub]:
    h = Hub(broker, max_queue=100, max_connections=1000, block_ms=100)
    yield h
    h.stop()


def publish(broker: Broker, topic: str, n: int = 1) -> list[int]:
    return list(broker.publish([Draft(topic, "message", str(i)) for i in range(n)]).seqs)


def received(sub: Subscription, count: int, timeout: float = 5.0) -> list[int]:
    seqs: list[int] = []
    with gevent.Timeout(timeout):
        while len(seqs) < count:
            sub.wait(1.0)
            seqs += [e.seq for e in sub.drain()]
    return seqs


def caught_up(hub: Hub, broker: Broker, topic: str) -> Subscription:
    """A subscription to ``topic`` that received one event: the reader's position is the head."""
    sub = hub.subscribe([topic])
    first = publish(broker, topic, 1)
    assert received(sub, 1) == first
    return sub


def test_dispatch_by_topic_in_seq_order(hub: Hub, broker: Broker) -> None:
    both = hub.subscribe(["a", "b"])
    only_b = hub.subscribe(["b"])
    a = publish(broker, "a", 3)
    b = publish(broker, "b", 2)
    c = publish(broker, "c", 2)
    assert received(both, 5) == a + b
    assert received(only_b, 2) == b
    assert c  # published, delivered to nobody


def test_a_select_keeps_out_of_the_queue_what_it_refuses(hub: Hub, broker: Broker) -> None:
    picky = hub.subscribe(["a"])
    picky.select = lambda event: int(event.data) % 2 == 0
    everything = hub.subscribe(["a"])
    seqs = publish(broker, "a", 6)
    assert received(everything, 6) == seqs
    assert received(picky, 3) == seqs[0::2]
    assert picky.queue == []


def test_a_select_that_fails_closes_only_its_own_subscription(hub: Hub, broker: Broker) -> None:
    def broken(event: object) -> bool:
        raise ValueError("a bug in a door")

    failing = hub.subscribe(["a"])
    failing.select = broken
    healthy = hub.subscribe(["a"])
    first = publish(broker, "a", 2)
    assert received(healthy, 2) == first
    failing.wait(5)
    assert failing.closed_reason == RESYNC
    later = publish(broker, "a", 1)
    assert received(healthy, 1) == later  # the reader lost nothing and went on


def test_subscription_queue_is_bounded_and_overflow_unsubscribes(
    broker: Broker, redis_url: str
) -> None:
    hub = Hub(broker, max_queue=3, max_connections=10, block_ms=100)
    try:
        sub = hub.subscribe(["a"])
        closed: list[str] = []
        sub.on_close = closed.append
        publish(broker, "a", 10)
        with gevent.Timeout(5):
            while sub.closed_reason is None:
                gevent.sleep(0.01)
        assert closed == [OVERFLOW]
        assert len(sub.queue) == 3
        assert hub.subscription_count == 0
    finally:
        hub.stop()


def test_reader_reconnects_after_its_connection_is_killed_and_loses_nothing(
    hub: Hub, broker: Broker, redis_client: redis.Redis
) -> None:
    sub = hub.subscribe(["a"])
    first = publish(broker, "a", 3)
    assert received(sub, 3) == first
    killed = redis_client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1  # the reader and the pool
    later = publish(broker, "a", 5)  # published while the reader is reconnecting
    assert received(sub, 5) == later
    assert hub.reconnects >= 1
    assert sub.closed_reason is None


def test_a_new_epoch_closes_every_subscription_for_resync(
    hub: Hub, broker: Broker, redis_client: redis.Redis
) -> None:
    sub = hub.subscribe(["a"])
    publish(broker, "a", 2)
    received(sub, 2)
    redis_client.flushall()
    publish(broker, "a", 1)
    with gevent.Timeout(5):
        while sub.closed_reason is None:
            gevent.sleep(0.01)
    assert sub.closed_reason == RESYNC
    assert hub.subscription_count == 0
    fresh = hub.subscribe(["a"])
    after = publish(broker, "a", 2)
    assert received(fresh, 2) == after


def test_a_firehose_gap_closes_every_subscription_for_resync(hub: Hub, broker: Broker) -> None:
    sub = hub.subscribe(["a"])
    other = hub.subscribe(["b"])
    assert hub._greenlet is not None
    hub._greenlet.kill()  # drive dispatch by hand: the reader came back after a long absence
    position = hub.position
    behind = StoredEvent(
        epoch=hub.epoch or "", seq=position + 3, topic="a", type="message", data="x"
    )
    hub._dispatch([behind], broker.reader())
    assert sub.closed_reason == other.closed_reason == RESYNC
    assert hub.subscription_count == 0
    assert hub.resyncs == 1
    assert hub.position == position + 3


def test_connections_are_fixed_whatever_the_subscription_count(
    hub: Hub, broker: Broker, redis_client: redis.Redis
) -> None:
    def ours() -> int:
        return len(redis_client.client_list()) - 1  # minus this test's own connection

    subs = [hub.subscribe(["a"])]
    gevent.sleep(0.2)
    with_one = ours()
    subs += [hub.subscribe([f"t{n}", "a"]) for n in range(499)]
    publish(broker, "a", 3)
    for sub in subs:
        assert received(sub, 3)
    assert ours() == with_one == 1 + broker.pool_size


def test_a_publish_of_this_worker_is_delivered_at_once_and_not_again_by_the_reader(
    hub: Hub, broker: Broker
) -> None:
    sub = caught_up(hub, broker, "mine")
    drafts = [Draft("mine", "message", "local")]
    published = broker.publish(drafts)
    hub.offer_published(published, drafts)
    assert [e.seq for e in sub.drain()] == list(published.seqs)  # before the reader read it
    assert hub.position == published.seqs[-1]
    later = publish(broker, "mine", 2)
    assert received(sub, 2) == later  # the reader skipped the offered event: no duplicate
    assert hub.resyncs == 0


class HeadAnsweredBeforeAPublish:
    """The reader's feed, but while its question for the head is on its way, a publish of this
    worker is answered and offered to the hub (the storm's race: the reader's greenlet reads
    Redis's answer only after the publishing greenlet ran)."""

    def __init__(self, feed: Feed, hub: Hub, broker: Broker, drafts: list[Draft]) -> None:
        self.feed, self.hub, self.broker, self.drafts = feed, hub, broker, drafts
        self.offered: Published | None = None

    def position(self) -> Position:
        answer = self.feed.position()
        self.offered = self.broker.publish(self.drafts)
        self.hub.offer_published(self.offered, self.drafts)
        return answer

    def read(self, after: int, *, block_ms: int | None, count: int = 1000) -> list[StoredEvent]:
        return self.feed.read(after, block_ms=block_ms, count=count)

    def close(self) -> None:
        self.feed.close()


def test_a_publish_offered_while_the_reader_asks_for_the_head_is_no_loss(
    hub: Hub, broker: Broker
) -> None:
    sub = caught_up(hub, broker, "race")
    # The reader's check, by hand, with the publish inside it. The running reader may read
    # the publish first instead of the offer: either moves the position while the head is asked.
    racing = HeadAnsweredBeforeAPublish(
        broker.reader(), hub, broker, [Draft("race", "message", "mine")]
    )
    hub._check_epoch(racing)
    assert racing.offered is not None
    assert (sub.closed_reason, hub.resyncs) == (None, 0)
    assert received(sub, 1) == list(racing.offered.seqs)
    assert hub.position == racing.offered.seqs[-1]
    racing.close()


def test_a_head_below_what_was_dispatched_still_resyncs(
    hub: Hub, broker: Broker, redis_client: redis.Redis
) -> None:
    sub = caught_up(hub, broker, "lost")
    assert hub._greenlet is not None
    hub._greenlet.kill()
    redis_client.decr(SEQ_KEY)  # Redis came back without the newest event (a lost write)
    reader = broker.reader()
    hub._check_epoch(reader)
    reader.close()
    assert sub.closed_reason == RESYNC
    assert hub.resyncs == 1


def test_events_offered_out_of_turn_or_of_another_epoch_are_left_to_the_reader(
    hub: Hub, broker: Broker
) -> None:
    sub = caught_up(hub, broker, "turn")
    position = hub.position

    drafts = [Draft("turn", "message", "x")]
    # The one before it is not here yet; another epoch; nothing at all.
    hub.offer_published(Published(hub.epoch or "", (position + 2,)), drafts)
    hub.offer_published(Published("another", (position + 1,)), drafts)
    hub.offer_published(Published(hub.epoch or "", ()), [])
    assert sub.drain() == []
    assert (hub.position, hub.resyncs) == (position, 0)


@pytest.fixture
def unanswered_url() -> Iterator[str]:
    """A Redis URL whose connects hang: its listener's accept queue is full, so SYNs are
    dropped until the connecting side's timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())  # the queue's only place
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    filler.close()
    listener.close()


def test_a_stop_while_the_reader_connects_leaves_no_socket_to_the_garbage_collector(
    unanswered_url: str,
) -> None:
    """redis-py closes the socket of a connect that fails, not of one a kill interrupts: the hub
    lets a connect end (it times out here) before it kills the reader."""
    broker = Broker(unanswered_url, retention=RETENTION, socket_timeout=0.3)
    hub = Hub(broker, max_queue=100, max_connections=1000, start_timeout=0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(Unavailable):
            hub.subscribe(["t"])  # the reader is inside its first connect now
        hub.stop()
        broker.close()
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
    assert not hub.running
