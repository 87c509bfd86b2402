"""Presence across gunicorn instances sharing one Redis, and its expiry when one is killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Any

import gevent
import pytest
from conftest import Gunicorn, make_token
from sse_client import SocketStream
from ws_client import Client

pytestmark = pytest.mark.integration

TTL_S = 2.0
ALICE = make_token(subject="alice")
BOB = make_token(subject="bob")


def presence(server: Gunicorn, topic: str, token: str = ALICE) -> Any:
    request = urllib.request.Request(
        f"{server.url}/presence?topic={topic}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def wait_for(predicate: Any, timeout: float) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not reached in time")
        gevent.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def two_instances(gunicorn_factory: Any, redis_url: str) -> tuple[Gunicorn, Gunicorn]:
    env = {"REALTIME_PRESENCE_TTL_S": str(TTL_S)}
    return (
        gunicorn_factory(redis_url, workers=2, env=env),
        gunicorn_factory(redis_url, workers=2, env=env),
    )


def test_a_client_on_each_instance_shows_in_both_and_a_killed_instance_drops_out(
    two_instances: tuple[Gunicorn, Gunicorn],
) -> None:
    a, b = two_instances
    on_a = Client(a, f"?access_token={ALICE}")
    on_a.recv()
    on_a.send(type="subscribe", topics=["room"], req=1)
    on_a.until("ack")
    on_b = SocketStream(b.port, f"/events?topic=room&access_token={BOB}")
    on_b.read_events(time.monotonic() + 5)

    both = {"topic": "room", "present": ["alice", "bob"], "connections": 2, "hidden": False}
    wait_for(lambda: presence(a, "room") == both and presence(b, "room") == both, 5)
    on_a.send(type="presence", topic="room", req="who")
    ack, _ = on_a.until("ack")
    assert (ack["present"], ack["connections"]) == (["alice", "bob"], 2)

    # SIGKILL the whole of instance A: nothing runs its cleanup; only the TTL removes alice.
    pids = [a.process.pid, *a.worker_pids()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    a.process.wait(5)
    gone_after = wait_for(lambda: presence(b, "room")["present"] == ["bob"], TTL_S + 3)
    print(f"\nkilled instance's client left presence after {gone_after:.2f} s (TTL {TTL_S} s)")
    assert gone_after <= TTL_S + 1.0
    on_b.close()
    with contextlib.suppress(OSError):
        on_a.close()


def test_a_closed_connection_leaves_presence_at_once(gunicorn_factory: Any, redis_url: str) -> None:
    server = gunicorn_factory(redis_url, workers=1, env={"REALTIME_PRESENCE_TTL_S": "30"})
    client = Client(server, f"?access_token={BOB}")
    client.recv()
    client.send(type="subscribe", topics=["desk"], req=1)
    client.until("ack")
    wait_for(lambda: presence(server, "desk")["present"] == ["bob"], 5)
    client.close()
    wait_for(lambda: presence(server, "desk")["present"] == [], 5)  # not 30 s


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        (None, 401, "missing_token"),
        (make_token(subscribe=("other:*",)), 403, "forbidden_topic"),
    ],
    ids=["no token", "no subscribe right"],
)
def test_presence_needs_the_right_to_subscribe(
    gunicorn_factory: Any, redis_url: str, token: str | None, status: int, code: str
) -> None:
    server = gunicorn_factory(redis_url, workers=1)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{server.url}/presence?topic=room", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == status
    assert json.loads(refused.value.read())["error"] == code
