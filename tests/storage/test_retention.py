"""Retention without a touch: topic history expires in Redis by itself (issue 11, finding 11).

A quiet topic's stream used to outlive ``REALTIME_HISTORY_TTL_S`` until its next publish or
subscribe, and a publisher with ``*`` could create topic keys without bound. These run against
every redis-server binary found (the embedded 6.2 and the system's 7.x), in real time: Redis
expires keys on its own clock, so the TTLs here are a second or two.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TypedDict, cast

import pytest
import redis

from realtime.core.errors import RateLimited
from realtime.core.events import Draft
from realtime.storage.broker import Broker
from realtime.storage.interface import Retention
from realtime.storage.keys import (
    CLOCK_KEY,
    expiry_margin_ms,
    marker_key,
    new_topics_key,
    rate_key,
    topic_key,
)
from realtime.storage.redis_server import RedisServer

TTL_S = 1
GONE_WITHIN_S = TTL_S + expiry_margin_ms(TTL_S * 1000) / 1000 + 3  # + Redis's expiry cycle


def draft(topic: str, data: str = "x") -> Draft:
    return Draft(topic=topic, type="message", data=data)


@pytest.fixture
def broker(any_redis_server: RedisServer, raw: redis.Redis) -> Iterator[Broker]:
    retention = Retention(maxlen=100, ttl_s=TTL_S, firehose_maxlen=1000, idempotency_ttl_s=60)
    b = Broker(any_redis_server.url, retention=retention, pool_size=2)
    yield b
    b.close()


def wait_until_gone(raw: redis.Redis, *keys: str, keep_clock_going: Broker | None = None) -> float:
    """Seconds until none of ``keys`` exists; meanwhile publish elsewhere if asked (so the
    deployment's clock moves on, as it does on a live server)."""
    started = time.monotonic()
    while raw.exists(*keys):
        assert time.monotonic() - started < GONE_WITHIN_S, f"{keys} outlived the TTL"
        if keep_clock_going is not None:
            keep_clock_going.publish([draft("elsewhere")])
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_quiet_topic_expires_from_redis_without_being_touched(
    broker: Broker, raw: redis.Redis
) -> None:
    broker.publish([draft("quiet", "1"), draft("quiet", "2")])
    assert 0 < raw.pttl(topic_key("quiet")) <= TTL_S * 1000 + expiry_margin_ms(TTL_S * 1000)
    gone = wait_until_gone(raw, topic_key("quiet"), marker_key("quiet"))
    print(f"\na quiet topic's stream left Redis {gone:.1f} s after its last event (TTL {TTL_S} s)")


def test_a_client_away_longer_than_the_ttl_is_told_the_expired_history_is_gone(
    broker: Broker, raw: redis.Redis
) -> None:
    missed = broker.publish([draft("quiet", "missed")])
    before_it = missed.seqs[0] - 1  # a client that had not received it yet
    wait_until_gone(raw, topic_key("quiet"), keep_clock_going=broker)
    epoch, head = broker.position()
    # No stream any more: what it held is unknown, but older than the TTL. The client below
    # that bound must refetch; a client at the head has missed nothing and stays exact.
    assert broker.check_replay(["quiet"], epoch, before_it).status == "trimmed"
    assert broker.check_replay(["quiet"], epoch, head).status == "ok"
    # The topic comes back: the old client is still told; a client from before the new event
    # but after the bound gets exactly the new event.
    again = broker.publish([draft("quiet", "again")])
    assert broker.check_replay(["quiet"], epoch, before_it).status == "trimmed"
    assert broker.check_replay(["quiet"], epoch, head).status == "ok"
    assert [e.data for e in broker.history("quiet", epoch, head, again.seqs[0])] == ["again"]


@pytest.mark.parametrize("published_before", [0, 1, 3])
def test_a_client_away_less_than_the_ttl_resumes_exactly_on_a_topic_created_meanwhile(
    broker: Broker, published_before: int
) -> None:
    """Regression: the clock's point was the counter *after* its publish, so on a deployment
    whose whole history is within the TTL, a client that subscribed before a topic's first
    event was told ``trimmed`` when it resumed (found by the nginx restart proof)."""
    for _ in range(published_before):
        broker.publish([draft("elsewhere")])
    epoch, head = broker.position()  # a fresh client's position on "brand:new"
    created = broker.publish([draft("brand:new", "first"), draft("brand:new", "second")])
    assert broker.check_replay(["brand:new"], epoch, head).status == "ok"
    assert broker.check_replay(["brand:new", "never:published"], epoch, head).status == "ok"
    events = list(broker.replay(["brand:new"], epoch, head, created.seqs[-1]))
    assert [e.data for e in events] == ["first", "second"]


def test_the_clock_keeps_a_point_a_second_and_only_for_the_ttl(
    broker: Broker, raw: redis.Redis
) -> None:
    """On the publishes' own clock (``now_ms``), so no sleep can make it flaky."""
    start = int(time.time() * 1000)
    for n in range(10):
        broker.publish([draft("tick")], now_ms=start + n * 10)
    assert raw.zcard(CLOCK_KEY) == 1  # ten publishes within a second: one point
    broker.publish([draft("tick")], now_ms=start + 1100)
    assert raw.zcard(CLOCK_KEY) == 2
    kept_ms = TTL_S * 1000 + expiry_margin_ms(TTL_S * 1000) + 1000
    broker.publish([draft("tick")], now_ms=start + 1100 + kept_ms + 1100)
    assert raw.zcard(CLOCK_KEY) == 1  # the points older than the TTL and margin are gone
    # (member, score) pairs, the member as bytes: the client does not decode replies.
    [(first_seq_bound, _)] = cast(
        list[tuple[bytes, float]], raw.zrange(CLOCK_KEY, 0, -1, withscores=True)
    )
    assert int(first_seq_bound) == 11  # the counter as that publish began: 11 events before it


class Limits(TypedDict):
    """The keyword arguments of :meth:`Broker.publish` that limit a publisher."""

    rate_scope: str
    rate: float
    burst: int
    new_topics_per_minute: int


def test_new_topics_are_limited_per_publisher_and_a_refusal_writes_nothing(
    broker: Broker, raw: redis.Redis
) -> None:
    limits: Limits = {
        "rate_scope": "sub:p",
        "rate": 1000.0,
        "burst": 1000,
        "new_topics_per_minute": 3,
    }
    broker.publish([draft("n1"), draft("n2"), draft("n1")], **limits)  # two new topics
    broker.publish([draft("n3")], **limits)  # the third
    seq = int(raw.get("{rt}:seq") or 0)
    events_bucket = raw.hgetall(rate_key("sub:p"))
    topics_bucket = raw.hgetall(new_topics_key("sub:p"))
    with pytest.raises(RateLimited) as refused:
        broker.publish([draft("n1"), draft("n4")], **limits)
    assert refused.value.topics
    assert 15_000 <= refused.value.retry_after_ms <= 20_000
    assert not raw.exists(topic_key("n4"))
    assert int(raw.get("{rt}:seq") or 0) == seq
    # Neither budget was spent on the refused publish.
    assert raw.hgetall(rate_key("sub:p")) == events_bucket
    assert raw.hgetall(new_topics_key("sub:p")) == topics_bucket
    # Topics that exist still take events; another publisher has its own budget; 0: no limit.
    broker.publish([draft("n1"), draft("n2"), draft("n3")], **limits)
    broker.publish([draft("n4")], **(limits | {"rate_scope": "sub:q"}))
    broker.publish(
        [draft(f"free{i}") for i in range(10)], **(limits | {"new_topics_per_minute": 0})
    )


def used_memory(raw: redis.Redis) -> int:
    return int(raw.info("memory")["used_memory"])


ONE_OFF_TTL_S = 5


def test_100000_one_off_topics_leave_nothing_behind_after_the_ttl(
    redis_server: RedisServer,
) -> None:
    """The figure the issue asks for: Redis's memory with 100,000 one-off topics, and after."""
    raw = redis.Redis.from_url(redis_server.url)
    raw.flushall()
    # A TTL longer than publishing them takes, so the peak holds all of them at once.
    retention = Retention(
        maxlen=100, ttl_s=ONE_OFF_TTL_S, firehose_maxlen=1000, idempotency_ttl_s=60
    )
    broker = Broker(redis_server.url, retention=retention, pool_size=2)
    try:
        broker.publish([draft("warm")])
        baseline_keys, baseline = raw.dbsize(), used_memory(raw)
        started = time.monotonic()
        for batch in range(200):
            broker.publish([draft(f"one-off:{batch}:{i}", "payload " * 8) for i in range(500)])
        published_s = time.monotonic() - started
        peak_keys, peak = raw.dbsize(), used_memory(raw)
        assert peak_keys >= baseline_keys + 100_000
        deadline = time.monotonic() + 2 * ONE_OFF_TTL_S + 30
        while raw.dbsize() > baseline_keys + 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        after_keys, after = raw.dbsize(), used_memory(raw)
        print(
            f"\n100,000 one-off topics (published in {published_s:.1f} s): Redis used "
            f"{baseline / 2**20:.1f} MiB before, {peak / 2**20:.1f} MiB with them "
            f"({peak_keys:,} keys), {after / 2**20:.1f} MiB after the TTL ({after_keys} keys)"
        )
        assert after_keys <= baseline_keys + 1  # the clock's key may have been created meanwhile
        assert after - baseline < (peak - baseline) / 20  # under 5 % of what they took remains
    finally:
        broker.close()
        raw.flushall()
        raw.close()
