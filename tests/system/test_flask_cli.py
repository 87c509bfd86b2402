"""``flask realtime ...``: the commands inside an app's own Flask CLI, reading its settings.

Run as a team runs them, ``flask --app examples/dashboard_app realtime ...`` in a subprocess
against a real Redis; ``listen`` follows a real gunicorn serving ``app:app``.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
import redis
from conftest import ROOT, SECRET, Gunicorn, stored_entries

from realtime.storage.keys import topic_key

pytestmark = pytest.mark.timeout(120)

FLASK = str(Path(sys.executable).with_name("flask"))


def flask_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env.update(
        REALTIME_REDIS_URL=redis_url,
        REALTIME_JWT_SECRET=SECRET,
        REALTIME_DATA_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def flask(
    args: list[str], env: dict[str, str], app: str = "examples/dashboard_app"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLASK, "--app", app, "realtime", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flask_realtime_publish_stores_through_the_apps_own_storage(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = flask_env(redis_url, tmp_path)
    done = flask(["publish", "user:alice", '{"text": "from the shell"}', "--json"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("-1")
    [(_, fields)] = stored_entries(redis_client, topic_key("user:alice"))
    assert fields[b"d"] == b'{"text":"from the shell"}'


def test_flask_realtime_publish_refuses_with_the_apis_sentence_and_exit_code(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    done = flask(["publish", "has space", "x"], flask_env(redis_url, tmp_path))
    assert done.returncode == 2
    assert "Topic 'has space' is invalid" in done.stderr
    assert "Traceback" not in done.stderr
    assert redis_client.keys("*") == []


def test_flask_realtime_token_signs_with_the_apps_key(redis_url: str, tmp_path: Path) -> None:
    done = flask(
        ["token", "--sub", "cron", "--publish", "reports:*"], flask_env(redis_url, tmp_path)
    )
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "cron"
    assert claims["realtime"]["publish"] == ["reports:*"]


def test_an_invalid_setting_stops_the_command_with_its_sentence(
    redis_url: str, tmp_path: Path
) -> None:
    env = flask_env(redis_url, tmp_path, REALTIME_MAX_QUEUE="lots")
    done = flask(["publish", "user:alice", "x"], env)
    assert done.returncode != 0
    assert "REALTIME_MAX_QUEUE must be" in done.stderr


@pytest.mark.integration
def test_flask_realtime_listen_follows_a_running_server_of_the_app(
    gunicorn_factory: Callable[..., Gunicorn], redis_url: str, tmp_path: Path
) -> None:
    server = gunicorn_factory(redis_url, workers=1)
    env = flask_env(redis_url, tmp_path, REALTIME_URL=server.url)
    listener = subprocess.Popen(
        [FLASK, "--app", "app", "realtime", "listen", "jobs"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        selector = selectors.DefaultSelector()
        assert listener.stdout is not None
        selector.register(listener.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while not line and time.monotonic() < deadline:
            published = flask(["publish", "jobs", "done"], env, app="app")
            assert published.returncode == 0, published.stderr
            if selector.select(timeout=1):
                line = listener.stdout.readline()
        assert line.rstrip("\n").split("\t")[1:] == ["jobs", "message", "done"]
    finally:
        listener.terminate()
        listener.wait(10)
