"""The worker's memory of recent events: its bounds, and resumes it answers exactly as Redis."""

from __future__ import annotations

import random
from collections.abc import Iterator

import gevent
import pytest

from realtime.core.config import load_settings
from realtime.core.events import Draft, StoredEvent
from realtime.core.ids import format_id
from realtime.fanout.hub import Hub
from realtime.fanout.window import TTL_MARGIN_MS, RecentEvents, event_cost
from realtime.storage.broker import Broker
from realtime.storage.interface import Retention

NOW_MS = 1_700_000_000_000


def event(seq: int, topic: str = "a", data: str = "x", published_ms: int = NOW_MS) -> StoredEvent:
    return StoredEvent(
        epoch="e", seq=seq, topic=topic, type="message", data=data, published_ms=published_ms
    )


def window(max_events: int = 100, *, maxlen: int = 1000, ttl_s: int = 0) -> RecentEvents:
    return RecentEvents(max_events, 1 << 30, maxlen=maxlen, ttl_s=ttl_s)


def seqs(events: list[StoredEvent] | None) -> list[int] | None:
    return None if events is None else [e.seq for e in events]


def test_after_answers_only_when_every_later_event_is_held() -> None:
    recent = window()
    recent.extend(event(s) for s in range(5, 10))
    assert seqs(recent.after(4)) == [5, 6, 7, 8, 9]  # the client had everything up to 4
    assert seqs(recent.after(7)) == [8, 9]
    assert seqs(recent.after(9)) == []
    assert recent.after(3) is None  # event 4 is not held: it may have been missed
    assert recent.after(10) is None  # ahead of the window


def test_an_event_that_does_not_follow_starts_the_window_again() -> None:
    recent = window()
    recent.extend(event(s) for s in (1, 2, 3))
    recent.extend([event(7), event(8)])
    assert (recent.first_seq, recent.last_seq) == (7, 8)
    assert recent.after(5) is None
    assert seqs(recent.after(6)) == [7, 8]


def test_the_shipped_count_bound_holds_and_the_list_is_compacted() -> None:
    settings = load_settings({})
    assert settings.recent_events == 10_000
    recent = RecentEvents(settings.recent_events, settings.recent_bytes, maxlen=10**6, ttl_s=0)
    for start in range(1, 25_001, 500):
        recent.extend(event(s) for s in range(start, start + 500))
    assert len(recent) == 10_000
    assert (recent.first_seq, recent.last_seq) == (15_001, 25_000)
    assert len(recent._events) <= 2 * 10_000 + 1024  # old entries do not pile up
    assert seqs(recent.after(24_997)) == [24_998, 24_999, 25_000]


def test_the_shipped_byte_bound_holds_with_events_of_the_largest_payload() -> None:
    settings = load_settings({})
    recent = RecentEvents(settings.recent_events, settings.recent_bytes, maxlen=10**6, ttl_s=0)
    big = "x" * settings.max_payload
    recent.extend(event(s, data=big) for s in range(1, 501))
    fits = settings.recent_bytes // event_cost(event(0, data=big))
    assert len(recent) == fits  # about 85 events of 64 KiB in 16 MiB
    assert recent.held_bytes <= settings.recent_bytes
    assert recent.last_seq == 500


def test_one_event_over_the_byte_bound_is_still_held() -> None:
    recent = RecentEvents(10, 65536, maxlen=1000, ttl_s=0)
    recent.extend([event(1, data="x" * 100_000)])
    assert seqs(recent.after(0)) == [1]  # the newest is always held: the hub's position


def test_a_disabled_window_holds_nothing() -> None:
    recent = RecentEvents(0, 65536, maxlen=1000, ttl_s=0)
    recent.extend(event(s) for s in range(1, 4))
    assert len(recent) == 0
    assert recent.resume(["a"], 1, now_ms=NOW_MS) is None


def test_resume_selects_the_topics_asked_for() -> None:
    recent = window()
    recent.extend(event(s, topic="ab"[s % 2]) for s in range(1, 11))
    assert seqs(recent.resume(["a"], 4, now_ms=NOW_MS)) == [6, 8, 10]
    assert seqs(recent.resume(["a", "b"], 8, now_ms=NOW_MS)) == [9, 10]
    assert seqs(recent.resume(["c"], 0, now_ms=NOW_MS)) == []


def test_more_than_maxlen_events_of_one_topic_is_for_redis_to_judge() -> None:
    recent = window(maxlen=3)
    recent.extend(event(s, topic="a" if s <= 4 else "b") for s in range(1, 9))
    assert recent.resume(["a"], 0, now_ms=NOW_MS) is None  # 4 of "a": Redis trimmed one
    assert seqs(recent.resume(["a"], 1, now_ms=NOW_MS)) == [2, 3, 4]
    assert recent.resume(["a", "b"], 4, now_ms=NOW_MS) is None  # 4 of "b"
    assert seqs(recent.resume(["a", "b"], 5, now_ms=NOW_MS)) == [6, 7, 8]


@pytest.mark.parametrize(
    ("age_ms", "answered"),
    [(0, True), (60_000 - TTL_MARGIN_MS, True), (60_000 - TTL_MARGIN_MS + 1, False)],
)
def test_with_a_ttl_only_a_position_clearly_inside_it_is_answered(
    age_ms: int, answered: bool
) -> None:
    recent = window(ttl_s=60)
    recent.extend(event(s, published_ms=NOW_MS - age_ms) for s in range(1, 4))
    found = recent.resume(["a"], 1, now_ms=NOW_MS)
    assert (seqs(found) == [2, 3]) if answered else found is None
    # The event at the position itself must be held, to know its age.
    assert recent.resume(["a"], 0, now_ms=NOW_MS) is None


# -- the hub's answers against Redis's ----------------------------------------------------------


@pytest.fixture
def small_history_broker(redis_url: str) -> Iterator[Broker]:
    b = Broker(redis_url, retention=Retention(5, 0, 1000, 60), pool_size=2)
    yield b
    b.close()


def caught_up(hub: Hub, head: int) -> None:
    with gevent.Timeout(5):
        while hub.position < head:
            gevent.sleep(0.01)


def test_every_resume_memory_answers_is_the_one_redis_gives(
    small_history_broker: Broker,
) -> None:
    """Random publishes over three topics (history of 5 each); from every position and every
    topic set, what memory answers equals Redis's check (ok) and replay, and with the whole
    window held memory answers exactly when Redis says ok."""
    broker = small_history_broker
    recent = RecentEvents(40, 1 << 30, maxlen=5, ttl_s=0)
    hub = Hub(broker, max_queue=100, max_connections=100, block_ms=100, recent=recent)
    try:
        hub.subscribe(["warm"])  # starts the reader at the head
        rng = random.Random(1501)
        for _ in range(12):
            drafts = [Draft(rng.choice("abc"), "message", str(n)) for n in range(rng.randint(1, 5))]
            broker.publish(drafts)
        head = broker.position().seq
        caught_up(hub, head)
        first = recent.first_seq
        assert first is not None
        answered = 0
        for topics in (["a"], ["b"], ["a", "c"], ["a", "b", "c"]):
            for after in range(0, head + 1):
                last_id = format_id(hub.epoch or "", after)
                memory = hub.resume_from_memory(topics, last_id)
                check, _ = broker.check_last_id(topics, last_id)
                if memory is None:
                    assert check.status != "ok" or after < first - 1, (topics, after)
                    continue
                answered += 1
                assert memory[0] == check, (topics, after)
                stored = broker.replay(topics, check.epoch, after, check.head)
                assert [e.seq for e in memory[2]] == [e.seq for e in stored], (topics, after)
        assert answered > 20
    finally:
        hub.stop()


def test_a_fresh_client_starts_at_the_hub_without_asking_redis(
    small_history_broker: Broker,
) -> None:
    hub = Hub(
        small_history_broker,
        max_queue=100,
        max_connections=100,
        block_ms=100,
        recent=RecentEvents(100, 1 << 20, maxlen=5, ttl_s=0),
    )
    try:
        hub.subscribe(["a"])
        small_history_broker.publish([Draft("a", "message", "1")])
        head = small_history_broker.position().seq
        caught_up(hub, head)
        memory = hub.resume_from_memory(["a"], None)
        assert memory is not None
        check, after, events = memory
        assert (check.status, check.epoch, check.head, after, events) == (
            "fresh",
            hub.epoch,
            head,
            0,
            [],
        )
        # Ids memory cannot judge go to Redis: not ours, of another epoch, ahead of the hub.
        for last_id in ("garbage", f"zz-{head}", f"{hub.epoch}-{head + 1}"):
            assert hub.resume_from_memory(["a"], last_id) is None
        hub.stop()  # a stopped reader: nothing from memory (Redis's answer or its 503)
        assert hub.resume_from_memory(["a"], None) is None
    finally:
        hub.stop()


def test_a_resync_forgets_the_window(small_history_broker: Broker) -> None:
    recent = RecentEvents(100, 1 << 20, maxlen=5, ttl_s=0)
    hub = Hub(small_history_broker, max_queue=100, max_connections=100, recent=recent)
    try:
        hub.subscribe(["a"])
        small_history_broker.publish([Draft("a", "message", "1")])
        caught_up(hub, small_history_broker.position().seq)
        assert len(recent) == 1
        hub._resync("a test")
        assert len(recent) == 0
    finally:
        hub.stop()
