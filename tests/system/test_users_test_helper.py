"""Issue 13, acceptance 6: a team's own test suite, written with ``realtime.testing``, passes.

``examples/dashboard_app/tests`` is the example app's suite as its team would keep it (its own
``pytest.ini``, ``pytest_plugins = ["realtime.testing"]``); this runs it as they would, with
``pytest`` in that directory, against the embedded Redis the helper starts. Also the helper on
its own: it records exactly what was published since it began, however it was published.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SECRET, make_token

from realtime import Publisher, create_app
from realtime.testing import record
from realtime.web.state import state

EXAMPLE = ROOT / "examples" / "dashboard_app"


def test_the_example_apps_own_suite_passes_with_the_documented_helper() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


@pytest.fixture
def service(redis_url: str, tmp_path: Path) -> Any:
    app = create_app(
        {
            "REALTIME_REDIS_URL": redis_url,
            "REALTIME_JWT_SECRET": SECRET,
            "REALTIME_DATA_DIR": str(tmp_path),
        }
    )
    yield app
    state(app).hub.stop()
    state(app).broker.close()


def test_it_records_every_way_of_publishing_once_in_order_and_nothing_from_before(
    service: Any, redis_url: str
) -> None:
    client = service.test_client()
    token = make_token()
    headers = {"Authorization": f"Bearer {token}"}
    client.post("/publish", json={"topic": "t", "data": "before"}, headers=headers)
    with record(service) as recording:
        client.post("/publish", json={"topic": "t", "data": "over http"}, headers=headers)
        with Publisher(redis_url) as publisher:
            publisher.publish("u", "from a task")

        def late() -> None:
            with Publisher(redis_url) as late_publisher:
                late_publisher.publish("t", "from a thread", type="late")

        thread = threading.Thread(target=late)
        thread.start()
        got = recording.wait_for(3)
        thread.join()
    assert [(e.topic, e.type, e.data) for e in got] == [
        ("t", "message", "over http"),
        ("u", "message", "from a task"),
        ("t", "late", "from a thread"),
    ]
    assert [e.data for e in recording.on("u")] == ["from a task"]


def test_waiting_for_what_never_comes_says_what_did(service: Any) -> None:
    with record(service) as recording, pytest.raises(AssertionError, match="got 0"):
        recording.wait_for(1, timeout=0.2)


def test_record_refuses_an_app_without_realtime() -> None:
    from flask import Flask

    with pytest.raises(TypeError, match="Realtime"):
        record(Flask("plain"))
