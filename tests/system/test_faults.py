"""Faults survived with nothing lost: a worker SIGKILLed, Redis restarted with and without data.

Issue 6, faults 1-3. Each test runs real gunicorn (gevent workers) on a real ``redis-server``
started here on a free port (never the machine's own Redis), with clients that behave like a
browser's ``EventSource``: after a dropped stream they wait the stream's ``retry:`` and reconnect
with ``Last-Event-ID``; after a 503 they wait its ``Retry-After``. The publisher is a careful one:
each event carries an ``Idempotency-Key`` and a request that got no answer, or a 503, is retried
with the same key, so the events stored are exactly the events that got a 201.

Exactness is asserted per client against the ids of those 201 answers, and the storage itself is
read back with XRANGE. Every count and time is bounded; everything targets 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
import redis
from conftest import Gunicorn, main_redis_binary, make_token, require_binary, stored_entries
from sse_client import SocketStream

from realtime.core.sse import MessageEvent
from realtime.storage.keys import FIREHOSE_KEY, SEQ_KEY, topic_key
from realtime.storage.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOKEN = make_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Short reconnection delays keep the file fast; clients still wait whatever the server says.
SERVER_ENV = {"REALTIME_RETRY_MS": "200", "REALTIME_HEARTBEAT_S": "2"}


# -- HTTP ----------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def call(
    url: str,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One HTTP request; an HTTP error is an :class:`Answer` too, a dropped connection raises."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status, head = response.read(), response.status, response.headers
    except urllib.error.HTTPError as exc:
        try:
            raw, status, head = exc.read(), exc.code, exc.headers
        finally:
            exc.close()
    return Answer(status, {k.lower(): v for k, v in head.items()}, json.loads(raw or b"null"))


def assert_unavailable(answer: Answer, code: str = "redis_unavailable") -> None:
    """A 503 in the JSON error contract, with a Retry-After a client can honour."""
    assert answer.status == 503, answer
    assert int(answer.headers["retry-after"]) >= 1, answer
    assert answer.headers["content-type"].startswith("application/json"), answer
    assert answer.body["error"] == code, answer
    assert answer.body["message"].endswith("."), answer


@dataclass
class Publisher:
    """Publishes with an ``Idempotency-Key`` per request and retries a request that got no
    answer, or a 503 (after its ``Retry-After``), with the same key until it gets a 201: what
    Redis stores is then exactly what was answered 201, whatever failed on the way."""

    url: str
    published: list[tuple[str, str, str]] = field(default_factory=list)  # (topic, id, data)
    refusals: list[Answer] = field(default_factory=list)  # every 503 met on the way
    dropped: int = 0  # requests whose connection died without an answer (a killed worker)
    # Retries answered Idempotent-Replayed, by what the failed attempt had said: that attempt
    # had stored its event after all (a 503 here: Redis ran the script, then the reply was lost).
    stored_despite: dict[str, int] = field(default_factory=lambda: {"503": 0, "no answer": 0})

    def publish(self, topic: str, data: str, deadline: float) -> str:
        return self.publish_batch([(topic, data)], deadline)[0]

    def publish_batch(self, drafts: list[tuple[str, str]], deadline: float) -> list[str]:
        """Store ``drafts`` (one request; a batch if more than one) and return their ids."""
        events = [{"topic": topic, "data": data} for topic, data in drafts]
        body = events[0] if len(events) == 1 else {"events": events}
        headers = {**AUTH, "Idempotency-Key": uuid.uuid4().hex}
        failed: str | None = None
        while True:
            assert time.monotonic() < deadline, f"could not publish {drafts[0]!r} in time"
            try:
                answer = call(self.url + "/publish", "POST", body, headers)
            except (OSError, http.client.HTTPException):
                self.dropped += 1
                failed = "no answer"
                gevent.sleep(0.05)
                continue
            if answer.status == 201:
                if failed and answer.headers.get("idempotent-replayed") == "true":
                    self.stored_despite[failed] += 1
                ids = [answer.body["id"]] if len(events) == 1 else answer.body["ids"]
                self.published += [(t, i, d) for (t, d), i in zip(drafts, ids, strict=True)]
                return [str(i) for i in ids]
            assert_unavailable(answer)
            self.refusals.append(answer)
            failed = "503"
            gevent.sleep(int(answer.headers["retry-after"]))

    def ids(self, topics: list[str] | None = None, epoch: str | None = None) -> list[str]:
        """Answered ids, in order, of ``topics`` (all if None) and ``epoch`` (any if None)."""
        return [
            i
            for t, i, _ in self.published
            if (topics is None or t in topics) and (epoch is None or epoch_of(i) == epoch)
        ]


class ReadyzProbe:
    """Polls ``/readyz`` every 50 ms and keeps (monotonic time, status) for the figures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, int]] = []
        self.without_retry_after = 0  # 503s that did not say when to retry: must stay 0

    def run(self) -> None:
        while True:
            try:
                answer = call(self.url + "/readyz")
            except (OSError, http.client.HTTPException):
                answer = Answer(0, {}, None)
            if answer.status == 503 and "retry-after" not in answer.headers:
                self.without_retry_after += 1
            self.seen.append((time.monotonic(), answer.status))
            gevent.sleep(0.05)

    def not_ready_window(self, since: float) -> tuple[float, float]:
        """First 503 after ``since`` and the first 200 after the last 503 (both monotonic)."""
        after = [(t, s) for t, s in self.seen if t >= since]
        failing = [t for t, s in after if s != 200]
        assert failing, "readyz never answered 503"
        recovered = [t for t, s in after if s == 200 and t > failing[-1]]
        assert recovered, "readyz never came back to 200"
        assert self.without_retry_after == 0
        return failing[0], recovered[0]


def metric(url: str, name: str) -> float:
    """A counter from /metrics, summed over its labels and every worker (dead ones included)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- an EventSource-like client ------------------------------------------------------------------


@dataclass
class Connection:
    """One attempt of a client: what it sent, what it got."""

    sent_id: str | None
    opened: float
    status: int | None = None
    events: list[MessageEvent] = field(default_factory=list)


class Follower:
    """Follows topics like an ``EventSource``: reconnects with its last id after ``retry:``
    (or a 503's ``Retry-After``), whatever ended the stream."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.port = port
        self.topics = topics
        self.last_id: str | None = None
        self.retry_s = 3.0  # the browser default until a stream says otherwise
        self.connections: list[Connection] = []
        self.stream: SocketStream | None = None
        self.live = gevent.event.Event()  # set when a stream has answered 200
        self.present = gevent.event.Event()  # cleared: the client is away, it does not connect
        self.present.set()
        self._drop = False

    def drop(self) -> None:
        """Lose the connection now, as a network failure would; the client reconnects."""
        self._drop = True

    def leave(self) -> None:
        """Close the stream and stay away (keeping the last id) until :meth:`come_back`."""
        self.present.clear()
        self._drop = True

    def come_back(self) -> None:
        self.present.set()

    @property
    def events(self) -> list[MessageEvent]:
        return [e for c in self.connections for e in c.events]

    @property
    def ids(self) -> list[str]:
        return [e.last_event_id for e in self.events if e.type == "message"]

    def path(self) -> str:
        return "/events?" + "&".join(f"topic={t}" for t in self.topics)

    def run(self, stop: gevent.event.Event, deadline: float) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            if not self.present.is_set():
                self.present.wait(0.05)
                continue
            pause = self._follow(stop, deadline)
            stop.wait(min(pause, max(0.0, deadline - time.monotonic())))

    def _follow(self, stop: gevent.event.Event, deadline: float) -> float:
        """One connection, to its end; the seconds to wait before the next."""
        self._drop = False
        conn = Connection(self.last_id, time.monotonic())
        self.connections.append(conn)
        headers = {**AUTH, **({"Last-Event-ID": self.last_id} if self.last_id else {})}
        try:
            stream = SocketStream(self.port, self.path(), headers, timeout=5)
        except OSError:
            return self.retry_s
        self.stream = stream
        try:
            while not (stream.closed or stop.is_set() or self._drop):
                if time.monotonic() >= deadline:
                    break
                events = stream.read_events(min(deadline, time.monotonic() + 0.2))
                conn.status = stream.status
                if stream.status != 200:
                    return float(stream.headers.get("retry-after", self.retry_s))
                self.live.set()
                conn.events += events
                if stream.parser.last_event_id:
                    self.last_id = stream.parser.last_event_id
                if stream.parser.retry_ms is not None:
                    self.retry_s = stream.parser.retry_ms / 1000
        except OSError:
            pass  # the server's end vanished mid-stream (a killed worker): reconnect after retry
        finally:
            self.stream = None
            stream.close()
        return self.retry_s


@dataclass
class Crowd:
    """The test's background greenlets: followers, and helpers such as a publisher or a probe."""

    stop: gevent.event.Event = field(default_factory=gevent.event.Event)
    followers: list[gevent.Greenlet] = field(default_factory=list)
    helpers: list[gevent.Greenlet] = field(default_factory=list)

    def start(self, followers: list[Follower], deadline: float, spacing_s: float = 0.0) -> None:
        """Start ``followers`` (``spacing_s`` apart) and wait until each has a stream open."""
        for follower in followers:
            self.followers.append(gevent.spawn(follower.run, self.stop, deadline))
            gevent.sleep(spacing_s)
        with gevent.Timeout(15, AssertionError("clients did not all connect")):
            for follower in followers:
                follower.live.wait()

    def spawn(self, run: Callable[[], None]) -> gevent.Greenlet:
        helper = gevent.spawn(run)
        self.helpers.append(helper)
        return helper

    def finish(self) -> None:
        """Stop every follower (they close their streams) and helper; raise what they raised."""
        self.stop.set()
        gevent.joinall(self.followers, timeout=10, raise_error=True)
        gevent.killall(self.helpers, timeout=5)


@pytest.fixture
def crowd(gunicorn_factory: Callable[..., Gunicorn]) -> Iterator[Crowd]:
    """Background greenlets, all stopped before the servers go, even when a test fails."""
    crowd = Crowd()
    yield crowd
    crowd.stop.set()
    gevent.killall(crowd.followers + crowd.helpers, timeout=5)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` held; fails naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        gevent.sleep(0.02)
    return time.monotonic() - started


def serving_workers(server: Gunicorn) -> dict[int, int]:
    """Client-side port -> pid of the worker holding the other end, read from /proc."""
    owner: dict[str, int] = {}
    for pid in server.worker_pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[8:-1]] = pid
    ports: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local = int(fields[1].rsplit(":", 1)[1], 16)
                remote = int(fields[2].rsplit(":", 1)[1], 16)
                if local == server.port and fields[3] == "01" and fields[9] in owner:
                    ports[remote] = owner[fields[9]]
    return ports


def epoch_of(event_id: str) -> str:
    return event_id.split("-", 1)[0]


def seq_of(event_id: str) -> int:
    return int(event_id.rsplit("-", 1)[1])


def assert_stored_exactly(client: redis.Redis, published: list[tuple[str, str, str]]) -> None:
    """Redis holds exactly the answered events, each whole in the firehose AND its topic stream
    (same id, time, type and data), and no topic stream holds anything else."""
    firehose = stored_entries(client, FIREHOSE_KEY)
    assert [(f[b"p"].decode(), raw.decode(), f[b"d"].decode()) for raw, f in firehose] == [
        (topic, f"{seq_of(i)}-0", data) for topic, i, data in published
    ], "the firehose is not exactly the events that got a 201"
    topics = sorted({topic for topic, _, _ in published})
    assert sorted(k.decode() for k in client.scan_iter(topic_key("*"))) == [
        topic_key(t) for t in topics
    ]
    for topic in topics:
        in_topic = [(raw, f) for raw, f in stored_entries(client, topic_key(topic))]
        copies = [
            (raw, {k: v for k, v in f.items() if k in (b"t", b"y", b"d")})
            for raw, f in firehose
            if f[b"p"].decode() == topic
        ]
        assert in_topic == copies, f"{topic}: its stream and the firehose disagree"
    assert int(client.get(SEQ_KEY) or 0) == seq_of(published[-1][1])


# -- the servers ---------------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """A private redis-server this test may stop and start again on the same port and dir."""
    binary = require_binary("redis-server", main_redis_binary())
    servers: list[RedisServer] = []

    def start(appendonly: bool) -> RedisServer:
        server = RedisServer(binary, tmp_path / "redis", appendonly=appendonly).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(kill=True)


# -- fault 1: a worker killed --------------------------------------------------------------------

TOPICS = ["orders", "alerts", "chat"]


def some_followers(port: int, count: int, rng: random.Random) -> list[Follower]:
    """``count`` clients, each on one or two of :data:`TOPICS`."""
    return [Follower(port, rng.sample(TOPICS, rng.randint(1, 2))) for _ in range(count)]


def others(follower: Follower) -> list[str]:
    """The types of the non-message events a client received."""
    return [e.type for e in follower.events if e.type != "message"]


def test_clients_of_a_sigkilled_worker_resume_elsewhere_with_every_event_once(
    gunicorn_factory: Callable[..., Gunicorn],
    own_redis: Callable[..., RedisServer],
    crowd: Crowd,
) -> None:
    store = own_redis(appendonly=False)
    server = gunicorn_factory(store.url, workers=2, env=SERVER_ENV)
    rng = random.Random(6001)
    followers = some_followers(server.port, 30, rng)
    deadline = time.monotonic() + 60
    crowd.start(followers, deadline, spacing_s=0.03)  # spaced, so that both workers accept some

    # Which worker serves each client, read from /proc: both must serve some.
    owners = serving_workers(server)
    placed = {id(f): owners[f.stream.sock.getsockname()[1]] for f in followers if f.stream}
    assert len(placed) == len(followers)
    per_worker = {pid: list(placed.values()).count(pid) for pid in server.worker_pids()}
    assert len(per_worker) == 2, per_worker
    assert min(per_worker.values()) > 0, per_worker
    victim = max(per_worker, key=lambda pid: per_worker[pid])

    publisher = Publisher(server.url)

    def publish_paced() -> None:
        for n in range(300):
            publisher.publish(rng.choice(TOPICS), f"event {n}", deadline)
            gevent.sleep(rng.uniform(0, 0.01))

    flow = crowd.spawn(publish_paced)
    wait_until(lambda: len(publisher.published) >= 100, 20, "the first 100 events")
    os.kill(victim, signal.SIGKILL)  # while events flow: a publish may be in flight on it
    killed = time.monotonic()
    at_kill = len(publisher.published)
    replaced_in = wait_until(
        lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(),
        10,
        "gunicorn replacing the killed worker",
    )
    flow.get(timeout=max(1, deadline - time.monotonic()))
    everyone_exact_in = wait_until(
        lambda: all(len(f.ids) >= len(publisher.ids(f.topics)) for f in followers),
        20,
        "clients catching up",
    )
    crowd.finish()

    cut = [f for f in followers if placed[id(f)] == victim]
    kept = [f for f in followers if placed[id(f)] != victim]
    assert all(len(f.connections) >= 2 for f in cut), "a client of the dead worker never resumed"
    assert all(len(f.connections) == 1 for f in kept), "a stream on the surviving worker was cut"
    for f in followers:
        assert others(f) == []
        assert f.ids == publisher.ids(f.topics), f"client on {f.topics}: not exactly its events"
    assert publisher.refusals == []
    with redis.Redis.from_url(store.url) as client:
        assert_stored_exactly(client, publisher.published)
    back_in = max(f.connections[1].opened - killed for f in cut)
    print(
        f"\nworker SIGKILL: 30 clients over 2 workers {per_worker}; worker {victim} killed "
        f"after {at_kill} of 300 events, replaced in {replaced_in:.2f} s; its {len(cut)} "
        f"clients reconnected within {back_in:.2f} s (retry: 200 ms); {publisher.dropped} "
        f"publish requests died unanswered, {publisher.stored_despite['no answer']} of them "
        f"had stored their event (the retry with the same key said so); every client exact "
        f"{everyone_exact_in:.2f} s after the last publish"
    )


# -- fault 2: Redis restarted with its data (AOF) ------------------------------------------------


def test_redis_restart_with_aof_loses_nothing_and_answers_503_while_redis_is_away(
    gunicorn_factory: Callable[..., Gunicorn],
    own_redis: Callable[..., RedisServer],
    crowd: Crowd,
) -> None:
    store = own_redis(appendonly=True)
    server = gunicorn_factory(store.url, workers=2, env=SERVER_ENV)
    rng = random.Random(6002)
    followers = some_followers(server.port, 12, rng)
    droppers = followers[:3]  # these also lose their connection while Redis is away
    deadline = time.monotonic() + 60
    crowd.start(followers, deadline, spacing_s=0.03)
    probe = ReadyzProbe(server.url)
    crowd.spawn(probe.run)
    publisher = Publisher(server.url)

    def publish_paced() -> None:
        for n in range(200):
            publisher.publish(rng.choice(TOPICS), f"event {n}", deadline)
            gevent.sleep(rng.uniform(0.005, 0.015))

    flow = crowd.spawn(publish_paced)
    wait_until(lambda: len(publisher.published) >= 60, 10, "the first 60 events")
    store.stop()  # SIGTERM while events flow: Redis writes its AOF out and exits
    stopped = time.monotonic()
    for f in droppers:
        f.drop()

    # While Redis is away: not ready, and a publish is refused in the JSON error contract.
    probes: list[Answer] = []
    for n in range(5):
        ready = call(server.url + "/readyz")
        assert ready.status == 503, ready
        assert int(ready.headers["retry-after"]) >= 1, ready
        assert ready.body["ready"] is False, ready
        assert ready.body["redis"] is False, ready
        refused = call(server.url + "/publish", "POST", {"topic": "orders", "data": f"x{n}"}, AUTH)
        assert_unavailable(refused)
        probes.append(refused)
        gevent.sleep(0.3)
    assert not store.running
    store.start()  # the same port and directory: the AOF brings every event back
    restarted = time.monotonic()

    flow.get(timeout=max(1, deadline - time.monotonic()))
    everyone_exact_in = wait_until(
        lambda: all(len(f.ids) >= len(publisher.ids(f.topics)) for f in followers),
        20,
        "clients catching up",
    )
    crowd.finish()
    first_503, ready_again = probe.not_ready_window(stopped - 0.5)
    reconnects = metric(server.url, "realtime_reader_reconnects_total")
    resyncs = metric(server.url, "realtime_reader_resyncs_total")
    refused_streams = [c for f in droppers for c in f.connections if c.status == 503]

    for f in followers:
        assert others(f) == []
        assert f.ids == publisher.ids(f.topics), f"client on {f.topics}: not exactly its events"
    # The readers resumed from their firehose position (no resync), so the streams that were
    # not dropped never even had to reconnect.
    assert resyncs == 0
    assert reconnects >= 1
    assert all(len(f.connections) == 1 for f in followers if f not in droppers)
    # A client that lost its stream while Redis was away met 503 on /events, honoured its
    # Retry-After, and resumed exactly once Redis was back.
    assert refused_streams
    assert all(len(f.connections) >= 3 for f in droppers)
    assert len(publisher.published) == 200
    with redis.Redis.from_url(store.url) as client:
        assert_stored_exactly(client, publisher.published)  # the probes' events are not there
    print(
        f"\nRedis AOF restart: away {restarted - stopped:.2f} s; /readyz 503 for "
        f"{ready_again - first_503:.2f} s and 200 again {ready_again - restarted:.2f} s after "
        f"Redis was back; readers reconnected {reconnects:.0f}x, resynced {resyncs:.0f}x; "
        f"{len(probes)} probe publishes and {len(publisher.refusals)} paced ones got 503, "
        f"{publisher.stored_despite['503']} of those had been stored (reply lost as Redis "
        f"stopped; the retry with the same key got the first id); {len(refused_streams)} "
        f"/events 503s; every client exact {everyone_exact_in:.2f} s after the last publish"
    )


# -- fault 3: Redis restarted empty --------------------------------------------------------------


def test_redis_restarted_empty_gives_every_client_an_epoch_reset_never_a_skip(
    gunicorn_factory: Callable[..., Gunicorn],
    own_redis: Callable[..., RedisServer],
    crowd: Crowd,
) -> None:
    store = own_redis(appendonly=False)
    server = gunicorn_factory(store.url, workers=2, env=SERVER_ENV)
    rng = random.Random(6003)
    followers = some_followers(server.port, 12, rng)
    sleepers = some_followers(server.port, 4, rng)  # away across the restart, back much later
    everyone = followers + sleepers
    deadline = time.monotonic() + 60
    crowd.start(everyone, deadline, spacing_s=0.03)
    probe = ReadyzProbe(server.url)
    crowd.spawn(probe.run)
    publisher = Publisher(server.url)

    for n in range(60):
        publisher.publish(rng.choice(TOPICS), f"old {n}", deadline)
        gevent.sleep(rng.uniform(0, 0.01))
    wait_until(lambda: all(f.ids == publisher.ids(f.topics) for f in everyone), 10, "old events")
    old_epoch, old_head = epoch_of(publisher.ids()[0]), seq_of(publisher.ids()[-1])
    for f in sleepers:
        f.leave()
    wait_until(lambda: all(f.stream is None for f in sleepers), 5, "sleepers leaving")

    store.stop(kill=True)  # no persistence: every event and the counter are gone
    killed = time.monotonic()
    for path in store.directory.iterdir():
        if path.name == "redis.log":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    gevent.sleep(1.0)
    assert call(server.url + "/readyz").status == 503
    store.start()  # the same port, an empty dataset
    restarted = time.monotonic()
    with redis.Redis.from_url(store.url) as client:
        assert client.get(SEQ_KEY) is None  # the counter starts again from nothing

    # At once, more events than before the restart: the new counter passes every old id, so a
    # server comparing an old id with it would find it "in range" and resume from it.
    batch = [(rng.choice(TOPICS), f"new {n}") for n in range(old_head + 20)]
    assert seq_of(publisher.publish_batch(batch, deadline)[-1]) > old_head
    for n in range(40):
        publisher.publish(rng.choice(TOPICS), f"newer {n}", deadline)
        if n == 10:
            for f in sleepers:
                f.come_back()
        gevent.sleep(rng.uniform(0, 0.02))
    new_epoch = epoch_of(publisher.ids()[-1])
    assert new_epoch != old_epoch

    def reset_of(f: Follower) -> MessageEvent | None:
        return next((e for e in f.events if e.type == "reset"), None)

    def due_after(f: Follower, reset: MessageEvent) -> list[str]:
        """A reset means live events only: those after the id it carries."""
        since = seq_of(reset.last_event_id)
        return [i for i in publisher.ids(f.topics, new_epoch) if seq_of(i) > since]

    def settled(f: Follower) -> bool:
        reset = reset_of(f)
        new = [i for i in f.ids if epoch_of(i) == new_epoch]
        return reset is not None and len(new) >= len(due_after(f, reset))

    everyone_exact_in = wait_until(lambda: all(settled(f) for f in everyone), 20, "clients")
    crowd.finish()
    first_503, ready_again = probe.not_ready_window(killed - 0.5)
    resets_served = metric(server.url, 'realtime_resets_total{reason="epoch"}')
    resyncs = metric(server.url, "realtime_reader_resyncs_total")

    for f in everyone:
        assert others(f) == ["reset"], f"client on {f.topics}: {others(f)}"
        reset = reset_of(f)
        assert reset is not None
        at = f.events.index(reset)
        before = [e.last_event_id for e in f.events[:at] if e.type == "message"]
        after = [e.last_event_id for e in f.events[at:] if e.type == "message"]
        assert before == publisher.ids(f.topics, old_epoch)
        assert json.loads(reset.data) == {"reason": "epoch", "last_id": reset.last_event_id}
        assert epoch_of(reset.last_event_id) == new_epoch
        # It came back after the new counter had passed its old id, and was not resumed.
        assert seq_of(reset.last_event_id) > old_head
        assert after == due_after(f, reset), f"client on {f.topics}: not exact after its reset"
        # Every connection it made with its old id after the data was lost was either refused
        # (503 while Redis was away) or served, and a served one started with the reset.
        with_old_id = [
            c
            for c in f.connections
            if c.opened > killed and c.sent_id and epoch_of(c.sent_id) == old_epoch
        ]
        assert with_old_id
        assert all(c.status in (200, 503) for c in with_old_id)
        served = [c for c in with_old_id if c.status == 200]
        assert len(served) == 1
        assert served[0].events[0].type == "reset"
    assert resets_served == len(everyone)  # one reset per client, and each client saw its own
    assert resyncs >= 1
    with redis.Redis.from_url(store.url) as client:
        assert_stored_exactly(
            client, [p for p in publisher.published if p[1].startswith(new_epoch)]
        )
    reset_at = [
        c.opened - restarted
        for f in everyone
        for c in f.connections
        if c.events and c.events[0].type == "reset"
    ]
    print(
        f"\nRedis restarted empty: /readyz 503 for {ready_again - first_503:.2f} s and 200 again "
        f"{ready_again - restarted:.2f} s after Redis was back; readers resynced {resyncs:.0f}x; "
        f"old head {old_epoch}-{old_head}, {old_head + 20} events at once then 40 more, new "
        f"head {publisher.ids()[-1]}; {len(everyone)} clients, {len(everyone)} resets seen "
        f"(server served {resets_served:.0f}, all reason epoch, {min(reset_at):.2f}-"
        f"{max(reset_at):.2f} s after the restart, each after the new counter had passed the "
        f"client's old id); clients exact {everyone_exact_in:.2f} s after the last "
        f"publish"
    )
