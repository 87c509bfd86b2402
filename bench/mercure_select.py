"""Mercure selection cost: what choosing each update per subscriber costs the hub's reader.

Every Mercure subscriber's selectors and privacy are tested by the reader greenlet itself
(``Subscription.select``), for every update, before anything is queued; while it tests, no other
stream of the worker gets an event. This measures that cost on one core: N subscriptions of
random selectors (exact, URI Template, URL Pattern; the mix of ``tests/system/
test_mercure_resume.py``), E updates published back to back, and the time from the first publish
until every subscriber has drained what it selected. The same N subscriptions without a select
(every update queued to all) are the baseline: the difference is the selection.

redis-server runs on CPU 1; the hub, its consumers and the publisher (batches of 50 updates:
a handful of calls) on CPU 0.

Usage: python bench/mercure_select.py [--subscribers 2000] [--updates 500]
Writes bench/results/mercure_select.json.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from realtime.fanout.hub import Hub, Subscription  # noqa: E402
from realtime.mercure.selectors import SelectorSet, compile_selector  # noqa: E402
from realtime.mercure.store import UPDATES_TOPIC, to_draft  # noqa: E402
from realtime.mercure.stream import Reader  # noqa: E402
from realtime.mercure.tokens import ANONYMOUS  # noqa: E402
from realtime.mercure.updates import Update  # noqa: E402
from realtime.storage.broker import Broker  # noqa: E402
from realtime.storage.interface import Retention  # noqa: E402
from realtime.storage.redis_server import RedisServer, find_redis_binaries  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BASE = "https://example.com/.well-known/mercure"
ROOT = "https://example.com"
SECTIONS = [f"s{n}" for n in range(8)]
ITEMS = [str(n) for n in range(5)]


def random_selectors(rng: random.Random) -> SelectorSet:
    chosen = []
    for _ in range(rng.randint(1, 3)):
        section, item = rng.choice(SECTIONS), rng.choice(ITEMS)
        kind = rng.randrange(4)
        if kind == 0:
            chosen.append(compile_selector("topic", f"{ROOT}/{section}/{item}", base=BASE))
        elif kind == 1:
            chosen.append(compile_selector("match", f"{ROOT}/{section}/{item}", base=BASE))
        elif kind == 2:
            chosen.append(compile_selector("topic", f"{ROOT}/{section}/{{item}}", base=BASE))
        else:
            chosen.append(
                compile_selector("match_urlpattern", f"{ROOT}/{section}/:item", base=BASE)
            )
    return SelectorSet(tuple(chosen), BASE)


def run(broker: Broker, subscribers: int, updates: int, select: bool) -> dict[str, float]:
    rng = random.Random(14)
    hub = Hub(broker, max_queue=updates + 10, max_connections=subscribers + 10, block_ms=100)
    subs: list[Subscription] = []
    for _ in range(subscribers):
        sub = hub.subscribe([UPDATES_TOPIC])
        if select:
            sub.select = Reader(random_selectors(rng), ANONYMOUS).wants
        subs.append(sub)
    drafts = [
        to_draft(
            Update(
                (f"{ROOT}/{rng.choice(SECTIONS)}/{rng.choice(ITEMS)}",),
                "x" * 64,
                False,
                None,
                None,
                None,
            )
        )
        for _ in range(updates)
    ]
    head = broker.position().seq
    last = head + updates
    seen = dict.fromkeys(range(subscribers), 0)
    done = gevent.event.Event()
    remaining = [subscribers]

    def consume(index: int, sub: Subscription) -> None:
        while True:
            sub.wait(1.0)
            events = sub.drain()
            seen[index] += len(events)
            if hub.position >= last and not sub.queue:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()
                return

    consumers = [gevent.spawn(consume, i, s) for i, s in enumerate(subs)]
    started = time.perf_counter()
    for start in range(0, updates, 50):
        broker.publish(drafts[start : start + 50])
    done.wait(120)
    elapsed = time.perf_counter() - started
    gevent.killall(consumers)
    hub.stop()
    delivered = sum(seen.values())
    return {
        "seconds": round(elapsed, 4),
        "delivered": delivered,
        "selections": subscribers * updates,
        "us_per_selection": round(elapsed * 1e6 / (subscribers * updates), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=500)
    args = parser.parse_args()
    binary = find_redis_binaries()[0]
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(binary, Path(tmp)).start()
        assert server.process is not None
        os.sched_setaffinity(server.process.pid, {1})
        os.sched_setaffinity(0, {0})
        broker = Broker(server.url, retention=Retention(1000, 0, 100_000, 60), pool_size=2)
        try:
            baseline = run(broker, args.subscribers, args.updates, select=False)
            selected = run(broker, args.subscribers, args.updates, select=True)
        finally:
            broker.close()
            server.stop()
    extra = selected["seconds"] - baseline["seconds"]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {
        "benchmark": "mercure_select",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit or "?",
        "subscribers": args.subscribers,
        "updates": args.updates,
        "without_select": baseline,
        "with_select": selected,
        "selection_us_each": round(extra * 1e6 / (args.subscribers * args.updates), 3),
        "machine": platform.platform(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mercure_select.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
