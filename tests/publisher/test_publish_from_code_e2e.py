"""Acceptance 1 of issue 13, end to end: an app's own code publishes and a browser receives.

One ordinary Flask app (``orders_app.py``) runs twice on one Redis: under gunicorn's gevent
worker with the repository's config (its view publishes, and it serves ``/events`` to the
page), and under a plain sync worker (its view publishes from a thread it starts, with
``threading`` unpatched). A third publisher is a separate Python process with nothing but
``REALTIME_REDIS_URL``, as a Celery worker or a cron job. Headless Chromium follows the topic
with a bare ``EventSource``; it must receive every event exactly once, in id order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser import chromium_page
from conftest import ROOT, Gunicorn

from realtime.core.ids import parse_id
from realtime.storage.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

APP_DIR = ROOT / "tests" / "publisher"
ENV = {"REALTIME_PUBLIC_TOPICS": "orders", "REALTIME_HEARTBEAT_S": "1"}

# A separate process that knows only the Redis URL: the environment is emptied of every other
# REALTIME_* variable, and it runs outside the repository.
PROCESS_PUBLISH = (
    "import sys\n"
    "from realtime import Publisher\n"
    "with Publisher() as publisher:\n"
    "    order = {'order': sys.argv[1], 'by': 'process'}\n"
    "    print(publisher.publish('orders', order, type='order'))\n"
)


def post_order(server: Gunicorn, path: str, order: str) -> dict[str, Any]:
    body = urllib.parse.urlencode({"order": order}).encode()
    request = urllib.request.Request(server.url + path, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def publish_from_a_process(redis_url: str, order: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env["REALTIME_REDIS_URL"] = redis_url
    done = subprocess.run(
        [sys.executable, "-c", PROCESS_PUBLISH, order],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_view_thread_and_separate_process_publishes_reach_the_browser_once_in_order(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, tmp_path: Path
) -> None:
    gevent_app = gunicorn_factory(
        redis_url,
        workers=1,
        env=ENV,
        argv=("-c", str(ROOT / "gunicorn.conf.py"), "--pythonpath", str(APP_DIR), "orders_app:app"),
    )
    empty_config = tmp_path / "sync.conf.py"
    empty_config.write_text("# a team's own, plain gunicorn config: the sync worker\n")
    port = free_port()
    sync_app = gunicorn_factory(
        redis_url,
        workers=1,
        env=ENV,
        port=port,
        argv=(
            "-c",
            str(empty_config),
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "--pythonpath",
            str(APP_DIR),
            "orders_app:app",
        ),
    )

    with chromium_page(tmp_path / "chromium-profile") as page:
        page.goto(gevent_app.url + "/orders/live")
        page.wait_for_function("() => window.ready === true")

        published: list[tuple[str, str]] = []
        for round_ in range(2):
            view = post_order(gevent_app, "/orders", f"v{round_}")
            published.append((view["id"], f"v{round_}"))
            thread = post_order(sync_app, "/orders/from-a-thread", f"t{round_}")
            assert thread["gevent"] is False  # a real OS thread, in a worker without gevent
            published.append((thread["id"], f"t{round_}"))
            process_id = publish_from_a_process(redis_url, f"p{round_}", tmp_path)
            published.append((process_id, f"p{round_}"))

        page.wait_for_function("n => window.received.length >= n", arg=len(published))
        time.sleep(1.5)  # more than a heartbeat: a duplicate would have arrived by now
        received = page.evaluate("() => window.received")

    assert [(r["id"], json.loads(r["data"])["order"]) for r in received] == published
    ids = [parse_id(r["id"]) for r in received]
    assert all(i is not None for i in ids)
    seqs = [i.seq for i in ids if i is not None]
    assert seqs == sorted(seqs)
    assert {json.loads(r["data"])["by"] for r in received} == {"view", "thread", "process"}
