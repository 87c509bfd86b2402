"""Publishing in process (``realtime.Publisher``, behind ``rt.publish``) beside ``POST /publish``.

What a Flask view, a Celery task or a cron script gets by publishing from Python instead of over
HTTP: the same Lua script and checks, without the request, the token and the JSON answer.

Both sides get one core: the publishing process (a gevent-patched Python process calling the
publisher, or one gunicorn worker serving ``POST /publish``) runs on CPU 0; Redis and, for
HTTP, wrk run on CPU 1. Each side publishes single events and batches of 100, with no subscriber:

- in-process, sequential: one caller, each publish waiting for its answer (a view or a task);
- in-process, 16 at once: 16 greenlets sharing one publisher, as 16 concurrent views of a
  gevent worker would, the same concurrency as wrk's 16 connections
  (``suite.WRK_CONNECTIONS``);
- in-process, 16 threads: the same from plain threads (a gthread worker, no gevent patching);
- HTTP: wrk with 16 connections against one worker, as ``bench/suite.py`` measures throughput.

Results go to ``bench/results/inprocess_publish.json`` and a section of ``bench/README.md``
(through ``bench/report.py``). Usage: ``python bench/inprocess_publish.py [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path[:0] = [str(BENCH), str(ROOT)]

from suite import (  # noqa: E402
    LOAD_CPU,
    SERVER_CPU,
    WRK_CONNECTIONS,
    machine,
    on_cpu,
    running,
    start_redis,
    wrk,
)

DATA = "bench 0 0 " + "x" * 90  # the suite's throughput payload
BATCH = 100


def measure_worker(redis_url: str, mode: str, batch: int, seconds: float) -> dict[str, Any]:
    """Run in the child process (on CPU 0): publish for ``seconds``, count events and CPU."""
    if mode == "greenlets":
        from gevent import monkey

        monkey.patch_all()
    import threading

    from realtime import Publisher

    callers = 1 if mode == "sequential" else WRK_CONNECTIONS
    events = [{"topic": "tput", "data": DATA}] * batch
    counts = [0] * callers
    deadline = [0.0]

    with Publisher(redis_url, config={"REALTIME_DATA_DIR": tempfile.gettempdir()}) as publisher:
        publisher.publish("tput", "warm-up")

        def work(index: int) -> None:
            while time.monotonic() < deadline[0]:
                if batch:
                    publisher.publish_many(events)
                    counts[index] += batch
                else:
                    publisher.publish("tput", DATA)
                    counts[index] += 1

        cpu_before = time.process_time()
        started = time.monotonic()
        deadline[0] = started + seconds
        if mode == "greenlets":
            import gevent

            gevent.joinall([gevent.spawn(work, i) for i in range(callers)])
        elif mode == "threads":
            threads = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            work(0)
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu_before
    total = sum(counts)
    return {
        "mode": mode,
        "callers": callers,
        "batch": batch,
        "seconds": round(elapsed, 3),
        "events": total,
        "events_per_s": round(total / elapsed, 1),
        "calls_per_s": round(total / max(1, batch) / elapsed, 1),
        "cpu_s": round(cpu, 3),
        "cpu_busy": round(cpu / elapsed, 3),
    }


def in_process(redis_url: str, mode: str, batch: int, seconds: float) -> dict[str, Any]:
    argv = [*on_cpu(SERVER_CPU), sys.executable, __file__, "--worker", redis_url]
    argv += ["--mode", mode, "--batch", str(batch), "--seconds", str(seconds)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        argv, capture_output=True, timeout=seconds + 60, env=env, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-1500:], "rc": done.returncode}
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", default=str(RESULTS / "inprocess_publish.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="sequential", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_worker(args.worker, args.mode, args.batch, args.seconds)))
        return

    host = machine()
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    RESULTS.mkdir(exist_ok=True)
    result: dict[str, Any] = {"in_process": {}, "http": {}}
    with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as tmp_name:
        tmp = Path(tmp_name)
        for mode in ("sequential", "greenlets", "threads"):
            for batch in (0, BATCH):
                redis_server = start_redis(tmp / f"redis-{mode}-{batch}")
                try:
                    run = in_process(redis_server.url, mode, batch, args.seconds)
                finally:
                    redis_server.stop(kill=True)
                result["in_process"][f"{mode}_{'batch' if batch else 'single'}"] = run
                print(mode, batch, run, file=sys.stderr)
        for batch in (0, BATCH):
            with running("realtime") as server:
                run = wrk(server, batch, int(args.seconds), tmp)
            result["http"]["batch" if batch else "single"] = run
            print("http", batch, run, file=sys.stderr)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["machine"] = host
    result["commit"] = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if Path(args.out) == RESULTS / "inprocess_publish.json" and (RESULTS / "suite.json").exists():
        from report import write_report

        write_report()


if __name__ == "__main__":
    main()
