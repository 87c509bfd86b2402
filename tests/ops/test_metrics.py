"""/metrics: counters move by the right amounts, and add up across gunicorn workers."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import gevent
import pytest
from conftest import Gunicorn, make_token
from procfs import established_per_worker
from sse_client import SocketStream
from ws_client import Client

TOKEN = make_token()


def scrape(url: str) -> dict[str, float]:
    """Every sample of a /metrics scrape: ``name{labels}`` -> value."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def publish(url: str, topic: str, count: int) -> list[str]:
    body = json.dumps({"events": [{"topic": topic, "data": str(n)} for n in range(count)]})
    request = urllib.request.Request(
        url + "/publish",
        data=body.encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read())["ids"])


def test_metrics_in_process_expose_every_documented_family(client: Any) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    for family in (
        "realtime_connections_open",
        "realtime_events_published_total",
        "realtime_events_delivered_total",
        "realtime_events_replayed_total",
        "realtime_events_written_direct_total",
        "realtime_resets_total",
        "realtime_overflow_disconnects_total",
        "realtime_reader_reconnects_total",
        "realtime_reader_resyncs_total",
        "realtime_redis_errors_total",
        "realtime_publish_latency_seconds",
        "realtime_delivery_lag_seconds",
    ):
        base = family.removesuffix("_total")
        assert re.search(rf"^# TYPE {base}(_total)? ", text, re.M), family


@pytest.mark.integration
def test_counters_move_by_the_right_amounts_and_add_up_across_two_workers(
    gunicorn_factory: Any, redis_url: str, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server: Gunicorn = gunicorn_factory(
        redis_url, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    )
    before = scrape(server.url)
    # Open streams until both workers serve some (the kernel picks the accepting worker).
    streams: list[SocketStream] = []
    while len(streams) < 60:
        stream = SocketStream(server.port, f"/events?topic=m&access_token={TOKEN}")
        stream.read_events(time.monotonic() + 5)
        streams.append(stream)
        counts = established_per_worker(server.worker_pids(), server.port).values()
        if len(streams) >= 8 and min(counts) >= 2:
            break
    socket_client = Client(server, f"?access_token={TOKEN}")
    socket_client.recv()
    socket_client.send(type="subscribe", topics=["m"], req=1)
    socket_client.until("ack")
    per_worker = established_per_worker(server.worker_pids(), server.port)

    ids = publish(server.url, "m", 5)
    for stream in streams:
        got: list[str] = []
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            got += [e.last_event_id for e in stream.read_events(deadline)]
        assert got == ids
    assert [e["id"] for e in socket_client.events(5)] == ids
    # A resume that replays, and one that cannot be exact.
    replaying = SocketStream(
        server.port, f"/events?topic=m&access_token={TOKEN}", {"Last-Event-ID": ids[1]}
    )
    replaying.read_events(time.monotonic() + 5)
    resetting = SocketStream(
        server.port, f"/events?topic=m&access_token={TOKEN}", {"Last-Event-ID": "zzzz-1"}
    )
    resetting.read_events(time.monotonic() + 5)

    n = len(streams)
    counted = {  # what the counters reach once the worker has counted every write above
        'realtime_events_delivered_total{transport="sse"}': n * 5,
        'realtime_events_delivered_total{transport="ws"}': 5,
        'realtime_events_replayed_total{transport="sse"}': 3,
        'realtime_resets_total{reason="epoch"}': 1,
    }

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    # A client can read its bytes before the worker counts them (a count follows its write):
    # scrape until the counts are reached, then the assertions below hold them exactly.
    deadline = time.monotonic() + 5
    while True:
        after = scrape(server.url)
        if time.monotonic() >= deadline or all(moved(k) >= v for k, v in counted.items()):
            break
        gevent.sleep(0.05)

    print(f"\nstreams per worker: {per_worker}")
    # Both workers' figures.
    assert len(per_worker) == 2
    assert min(per_worker.values()) >= 2
    assert after['realtime_connections_open{transport="sse"}'] == n + 2
    assert after['realtime_connections_open{transport="ws"}'] == 1
    assert moved("realtime_events_published_total") == 5
    assert moved('realtime_events_delivered_total{transport="sse"}') == n * 5
    assert moved('realtime_events_delivered_total{transport="ws"}') == 5
    # Under gunicorn the reader wrote (some of) them straight to the waiting streams' sockets.
    assert 0 < moved("realtime_events_written_direct_total") <= n * 5
    assert moved('realtime_events_replayed_total{transport="sse"}') == 3
    assert moved('realtime_resets_total{reason="epoch"}') == 1
    assert moved("realtime_publish_latency_seconds_count") == 1
    assert moved('realtime_delivery_lag_seconds_count{transport="sse"}') >= 5
    assert moved('realtime_delivery_lag_seconds_count{transport="ws"}') >= 1

    for stream in [*streams, replaying, resetting]:
        stream.close()
    socket_client.close()
