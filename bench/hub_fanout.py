"""Hub fan-out cost: deliveries per second to N local subscribers on one core.

The hub (one reader greenlet, dispatch by topic, bounded queues) and N consumers running the real
SSE ``live()`` generator are pinned to CPU 0; redis-server and the publisher to CPU 1. Sockets are
left out on purpose: this isolates the hub and the framing from the kernel (the HTTP benchmarks of
issue 5 measure the whole path).

Two scenarios:
- burst: E events published back to back; deliveries / seconds until the last consumer has all.
- paced: events at a fixed rate; for each event, the delay from its publish to the moment the
  *last* subscriber's generator produced its bytes (p50 / p99).

Usage: python bench/hub_fanout.py [--subscribers 1000] [--events 1000] [--rate 20]
Writes bench/results/hub_fanout.json.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from realtime.fanout.hub import Hub  # noqa: E402
from realtime.fanout.stream import StreamPlan, live  # noqa: E402
from realtime.storage.broker import Broker  # noqa: E402
from realtime.storage.interface import ReplayCheck, Retention  # noqa: E402
from realtime.storage.redis_server import RedisServer, find_redis_binaries  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

PUBLISHER = """
import sys, time
from realtime.core.events import Draft
from realtime.storage.broker import Broker
from realtime.storage.interface import Retention
url, count, rate, payload = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
b = Broker(url, retention=Retention(1000, 0, 100000, 60), pool_size=1)
start = time.monotonic()
for n in range(count):
    if rate > 0:
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    b.publish([Draft("bench", "message", "x" * payload)])
"""


def run_scenario(
    url: str, hub: Hub, subscribers: int, events: int, rate: float, payload: int
) -> dict[str, float | None]:
    plan = StreamPlan(
        ("bench",), ReplayCheck("fresh", hub.epoch or "", hub.position), 0, 3000, 3600.0, 0, False
    )
    last_seen: dict[int, float] = {}
    done = gevent.event.Event()
    remaining = [subscribers]
    target_seq = hub.position + events
    bytes_out = [0]

    def consumer() -> None:
        sub = hub.subscribe(["bench"])
        got = 0
        for chunk in live(sub, plan, hub.position):
            now = time.time()
            bytes_out[0] += len(chunk)
            count = chunk.count(b"\nid: ") + chunk.startswith(b"id: ")
            got += count
            # The last id in the chunk is what this subscriber has reached.
            tail = chunk.rsplit(b"id: ", 1)[-1].split(b"\n", 1)[0].decode()
            seq = int(tail.rsplit("-", 1)[1])
            for s in range(seq - count + 1, seq + 1):
                last_seen[s] = now
            if seq >= target_seq:
                break
        hub.unsubscribe(sub)
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set()

    greenlets = [gevent.spawn(consumer) for _ in range(subscribers)]
    gevent.sleep(0.5)
    published_at: dict[int, float] = {}
    reader = hub.broker.reader()
    start_seq = hub.position
    cpu0 = time.process_time()
    started = time.monotonic()
    publisher = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            "-c",
            PUBLISHER,
            url,
            str(events),
            str(rate),
            str(payload),
        ],
    )
    done.wait(timeout=300)
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu0
    publisher.wait()
    gevent.joinall(greenlets, timeout=5)
    for event in reader.read(start_seq, block_ms=100, count=events + 10):
        published_at[event.seq] = event.published_ms / 1000
    reader.close()
    # Wall time from the first publish to the last delivery (the publisher's start-up excluded).
    if published_at and last_seen:
        elapsed = max(last_seen.values()) - min(published_at.values())
    lags = sorted((last_seen[s] - published_at[s]) * 1000 for s in published_at if s in last_seen)
    deliveries = subscribers * events
    return {
        "subscribers": subscribers,
        "events": events,
        "rate_per_s": rate,
        "payload_bytes": payload,
        "elapsed_s": round(elapsed, 3),
        "hub_cpu_s": round(cpu, 3),
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / elapsed),
        "deliveries_per_cpu_s": round(deliveries / cpu) if cpu else 0,
        "us_per_delivery_cpu": round(cpu / deliveries * 1e6, 3),
        "last_subscriber_lag_ms_p50": round(statistics.median(lags), 2) if lags else None,
        "last_subscriber_lag_ms_p99": round(lags[int(len(lags) * 0.99) - 1], 2) if lags else None,
        "bytes_out": bytes_out[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--paced-events", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--payload", type=int, default=100)
    args = parser.parse_args()

    os.sched_setaffinity(0, {0})
    binary = find_redis_binaries()[0]
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(binary, Path(tmp)).start()
        assert server.process is not None
        os.sched_setaffinity(server.process.pid, {1})
        broker = Broker(server.url, retention=Retention(1000, 0, 100000, 60), pool_size=2)
        hub = Hub(broker, max_queue=100_000, max_connections=100_000, block_ms=1000)
        hub.start()
        try:
            burst = run_scenario(server.url, hub, args.subscribers, args.events, 0, args.payload)
            paced = run_scenario(
                server.url, hub, args.subscribers, args.paced_events, args.rate, args.payload
            )
        finally:
            hub.stop()
            broker.close()
            server.stop()
    result = {
        "benchmark": "hub_fanout",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "redis": binary,
        },
        "burst": burst,
        "paced": paced,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hub_fanout.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
