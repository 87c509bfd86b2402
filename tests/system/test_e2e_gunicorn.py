"""End to end against real gunicorn (gevent workers) and a real redis-server.

These are the acceptance proofs of the core: exact resume across workers under random
disconnects, a fixed number of Redis connections per worker, and a stalled client cut off with
bounded memory and a lossless resume. Counts and times are bounded; everything targets 127.0.0.1.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from typing import Any

import gevent
import pytest
import redis
from conftest import Gunicorn, make_token
from procfs import established_per_worker
from sse_client import SocketStream

from realtime.core.sse import MessageEvent

pytestmark = pytest.mark.integration

TOKEN = make_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url + "/publish",
        data=json.dumps(body).encode(),
        headers={**AUTH, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.loads(response.read())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class ResumingClient:
    """Follows some topics, drops its connection at random moments, resumes with Last-Event-ID."""

    def __init__(self, port: int, topics: list[str], rng: random.Random) -> None:
        self.port = port
        self.topics = topics
        self.rng = rng
        self.ids: list[str] = []
        self.other: list[str] = []  # any non-message event (reset, overflow): must stay empty
        self.last_id: str | None = None
        self.connections = 0
        self.connected = gevent.event.Event()
        self.expected: list[str] = []  # the test sets it once it has published

    def path(self) -> str:
        query = "&".join(f"topic={t}" for t in self.topics)
        return f"/events?{query}&access_token={TOKEN}"

    def run(self, done: gevent.event.Event, deadline: float) -> None:
        while time.monotonic() < deadline:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            stream = SocketStream(self.port, self.path(), headers)
            self.connections += 1
            lifetime = time.monotonic() + self.rng.uniform(0.05, 0.5)
            try:
                while time.monotonic() < min(lifetime, deadline):
                    events = stream.read_events(min(lifetime, deadline))
                    assert stream.status == 200
                    if stream.parser.last_event_id:
                        self.last_id = stream.parser.last_event_id
                        self.connected.set()
                    for event in events:
                        if event.type == "message":
                            self.ids.append(event.last_event_id)
                        else:
                            self.other.append(event.type)
                    if stream.closed or (done.is_set() and self.rng.random() < 0.3):
                        break
            finally:
                stream.close()  # an abrupt drop, wherever the stream was
            if done.is_set() and self.finished:
                return
            gevent.sleep(self.rng.uniform(0, 0.05))

    @property
    def finished(self) -> bool:
        return len(self.ids) >= len(self.expected)


def test_fifty_clients_resume_exactly_across_two_workers(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(redis_url, workers=2)
    rng = random.Random(2026)
    topics = [f"topic{n}" for n in range(5)]
    clients = [
        ResumingClient(server.port, rng.sample(topics, rng.randint(1, 3)), rng) for _ in range(50)
    ]
    done = gevent.event.Event()
    deadline = time.monotonic() + 120
    runners = [gevent.spawn(c.run, done, deadline) for c in clients]
    with gevent.Timeout(20):
        for c in clients:
            c.connected.wait()

    published: list[tuple[str, str]] = []
    served: dict[int, int] = dict.fromkeys(server.worker_pids(), 0)
    for batch in range(100):  # 1,000 events: 100 requests of 10, paced over a few seconds
        events = [{"topic": rng.choice(topics), "data": f"{batch}.{n}"} for n in range(10)]
        ids = post_json(server.url, {"events": events})["ids"]
        published += [(e["topic"], i) for e, i in zip(events, ids, strict=True)]
        gevent.sleep(rng.uniform(0, 0.03))
        if batch % 10 == 0:
            for pid, count in established_per_worker(list(served), server.port).items():
                served[pid] += count
    for c in clients:
        c.expected = [i for topic, i in published if topic in c.topics]
    done.set()
    gevent.joinall(runners, timeout=max(1, deadline - time.monotonic()), raise_error=True)

    reconnects = sum(c.connections for c in clients) - len(clients)
    print(f"\n50 clients, 1000 events, {reconnects} resumes; streams seen per worker: {served}")
    assert reconnects >= 200  # every client really dropped and resumed many times
    # Both workers served streams.
    assert len(served) == 2
    assert all(served.values())
    for c in clients:
        assert c.other == []
        assert c.ids == c.expected, f"client on {c.topics}: wrong ids"


def redis_clients(r: redis.Redis) -> int:
    return len(r.client_list()) - 1  # minus this test's own connection


def test_a_worker_keeps_the_same_redis_connections_with_1_and_500_clients(
    gunicorn_factory: Any, redis_url: str, redis_client: redis.Redis
) -> None:
    others = redis_clients(redis_client)  # connections that are not the worker's
    server: Gunicorn = gunicorn_factory(redis_url, workers=1)
    path = f"/events?topic=load&access_token={TOKEN}"

    def open_stream() -> SocketStream:
        stream = SocketStream(server.port, path)
        stream.read_events(time.monotonic() + 10)
        assert stream.status == 200
        return stream

    first = open_stream()
    post_json(server.url, {"topic": "load", "data": "warm"})
    with_one = redis_clients(redis_client) - others
    openers = [gevent.spawn(open_stream) for _ in range(499)]
    gevent.joinall(openers, raise_error=True)
    streams = [first] + [g.value for g in openers]
    assert get_json(server.url + "/readyz")["streams"] == 500
    post_json(server.url, {"topic": "load", "data": "to all"})
    with_500 = redis_clients(redis_client) - others
    print(f"\nRedis connections: {with_one} with 1 client, {with_500} with 500")
    assert with_one == with_500 == 1 + 8  # the reader + REALTIME_REDIS_POOL_SIZE
    for stream in streams:
        stream.close()


def test_a_stalled_client_is_cut_at_its_queue_bound_and_resumes_losslessly(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(
        redis_url,
        workers=1,
        env={
            "REALTIME_MAX_QUEUE": "50",
            "REALTIME_OVERFLOW_GRACE_S": "0.5",
            "REALTIME_HISTORY_MAXLEN": "5000",
        },
    )
    [worker] = server.worker_pids()
    stalled = SocketStream(server.port, f"/events?topic=flood&access_token={TOKEN}", rcvbuf=4096)
    stalled.read_events(time.monotonic() + 5)
    assert get_json(server.url + "/readyz")["streams"] == 1
    baseline = rss_kib(worker)

    payload = "x" * 8000
    ids: list[str] = []
    for _ in range(40):  # 40 x 50 events x 8 kB = 16 MB pushed at a client that reads nothing
        ids += post_json(server.url, {"events": [{"topic": "flood", "data": payload}] * 50})["ids"]
    with gevent.Timeout(10):
        while get_json(server.url + "/readyz")["streams"] != 0:
            gevent.sleep(0.05)
    grown = rss_kib(worker) - baseline
    print(f"\nworker RSS grew {grown} KiB while 16 MB flowed past a stalled client")
    assert grown < 32 * 1024

    # The client wakes up: it finds what the kernel had buffered, then the end of the stream.
    got: list[str] = []
    deadline = time.monotonic() + 10
    while not stalled.closed and time.monotonic() < deadline:
        got += [e.last_event_id for e in stalled.read_events(deadline) if e.type == "message"]
    assert stalled.closed, "the server never closed the stalled stream"
    assert len(got) < len(ids)
    assert got == ids[: len(got)]
    resume_from = stalled.parser.last_event_id
    stalled.close()

    resumed = SocketStream(
        server.port, f"/events?topic=flood&access_token={TOKEN}", {"Last-Event-ID": resume_from}
    )
    rest: list[str] = []
    deadline = time.monotonic() + 20
    while len(got) + len(rest) < len(ids) and time.monotonic() < deadline:
        rest += [e.last_event_id for e in resumed.read_events(deadline) if e.type == "message"]
    resumed.close()
    assert got + rest == ids


def test_sigterm_ends_every_stream_with_shutdown_and_a_short_retry(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(redis_url, workers=2)
    streams = [SocketStream(server.port, f"/events?topic=a&access_token={TOKEN}") for _ in range(6)]
    for stream in streams:
        stream.read_events(time.monotonic() + 5)
    started = time.monotonic()
    server.process.send_signal(15)
    for stream in streams:
        events = stream.until_closed(10)
        assert stream.closed
        assert [e.type for e in events] == ["shutdown"]
        assert stream.parser.retry_ms is not None
        assert stream.parser.retry_ms <= 1500
        stream.close()
    server.process.wait(15)
    elapsed = time.monotonic() - started
    print(f"\nSIGTERM: 6 streams closed and gunicorn exited in {elapsed:.2f} s")
    assert elapsed < 10  # graceful_timeout: the worker did not wait for streams to time out


def test_query_string_tokens_never_reach_the_access_log(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(redis_url, workers=1)
    stream = SocketStream(server.port, f"/events?topic=a&access_token={TOKEN}")
    stream.read_events(time.monotonic() + 5)
    stream.close()
    with urllib.request.urlopen(f"{server.url}/healthz?access_token={TOKEN}", timeout=5):
        pass
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.url}/events?topic=a&access_token=not-a-real-token")
    assert refused.value.code == 401
    refused.value.close()  # its response, whose socket pytest.raises would keep open
    server.stop()
    log = server.log()
    assert "/healthz?access_token=[redacted]" in log
    assert TOKEN not in log
    assert "not-a-real-token" not in log
    assert TOKEN.split(".")[2] not in log


def test_clients_that_vanish_are_released_by_the_next_heartbeat(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server: Gunicorn = gunicorn_factory(redis_url, workers=1, env={"REALTIME_HEARTBEAT_S": "0.2"})
    streams = [
        SocketStream(server.port, f"/events?topic=t{n % 3}&access_token={TOKEN}") for n in range(20)
    ]
    for stream in streams:
        stream.read_events(time.monotonic() + 5)
    assert get_json(server.url + "/readyz")["streams"] == 20
    for stream in streams:
        stream.close()
    with gevent.Timeout(10):
        while get_json(server.url + "/readyz")["streams"] != 0:
            gevent.sleep(0.1)


def test_an_invalid_setting_stops_gunicorn_with_a_sentence_naming_it(
    gunicorn_factory: Any, redis_url: str
) -> None:
    with pytest.raises(RuntimeError) as failed:
        gunicorn_factory(redis_url, workers=1, env={"REALTIME_HEARTBEAT_S": "soon"})
    assert "REALTIME_HEARTBEAT_S must be a number of seconds, not 'soon'." in str(failed.value)


def written_direct(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("realtime_events_written_direct_total "):
                return float(line.split()[1])
    raise AssertionError("realtime_events_written_direct_total is not exposed")


def test_events_the_reader_writes_straight_to_sockets_arrive_exact_in_every_framing(
    gunicorn_factory: Any, redis_url: str
) -> None:
    """The reader frames live events itself (HTTP/1.1 chunks, HTTP/1.0 raw bytes, envelope or
    not), joins a topic's events of one read into one write, and may write only part of it to a
    full socket: every client still parses exactly its events in publish order, with a strict
    chunk parser, whether it reads at once or much later, on one topic or two."""
    server: Gunicorn = gunicorn_factory(redis_url, workers=1)
    path = f"/events?topic=direct&access_token={TOKEN}"
    clients = {
        "chunked": SocketStream(server.port, path),
        "envelope": SocketStream(server.port, path + "&envelope=1"),
        "http/1.0": SocketStream(server.port, path, http_version="1.0"),
        "late reader": SocketStream(server.port, path, rcvbuf=4096),
        "two topics": SocketStream(server.port, path + "&topic=other"),
    }
    for stream in clients.values():
        stream.read_events(time.monotonic() + 5)
    assert clients["chunked"].headers.get("transfer-encoding") == "chunked"
    assert "transfer-encoding" not in clients["http/1.0"].headers
    before = written_direct(server.url)

    # Batches that mix the two topics (runs of several events of a topic), then one at a time:
    # small, multi-line, non-ASCII, and larger than the late reader's buffer (partial sends).
    datas = ["a", "two\nlines", "é ✓ 😀", "x" * 30_000, "", "y" * 60_000, "tail"] * 3
    published: list[tuple[str, str, str]] = []
    for round_ in range(5):
        batch = [
            {"topic": "direct" if i % 3 else "other", "type": "t", "data": f"{round_}.{i}"}
            for i in range(12)
        ]
        ids = post_json(server.url, {"events": batch})["ids"]
        published += [(i, e["topic"], e["data"]) for i, e in zip(ids, batch, strict=True)]
        gevent.sleep(0.01)  # let the streams park between writes: the reader writes for them
    for data in datas:
        event_id = post_json(server.url, {"topic": "direct", "type": "t", "data": data})["id"]
        published.append((event_id, "direct", data))
        gevent.sleep(0.01)

    for name, stream in clients.items():
        wanted = [(i, d) for i, topic, d in published if topic == "direct" or name == "two topics"]
        got: list[MessageEvent] = []
        deadline = time.monotonic() + 20
        while len(got) < len(wanted) and time.monotonic() < deadline:
            got += [e for e in stream.read_events(deadline) if e.type in ("t", "message")]
        if name == "envelope":
            received = [(e.last_event_id, json.loads(e.data)["data"]) for e in got]
            assert all(json.loads(e.data)["type"] == "t" for e in got)
        else:
            received = [(e.last_event_id, e.data) for e in got]
        assert received == wanted, name
        stream.close()
    assert written_direct(server.url) - before > 0
