"""The README's quick start, run for real: gunicorn.conf.py as `make run` uses it (embedded Redis,
development secret and token printed), `curl -N` on /events and `curl -d` on /publish."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, wait_http

from realtime.storage.redis_server import free_port

pytestmark = pytest.mark.integration


def test_make_run_then_curl_shows_the_published_event(tmp_path: Path, curl: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env.update({"REALTIME_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)})
    log_path = tmp_path / "server.log"
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "app:app"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    listener = None
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process=server)
        printed = log_path.read_text()
        assert "embedded Redis" in printed
        assert (tmp_path / "var" / "redis.sock").exists()
        token = re.search(r"export TOKEN=(\S+)", printed)
        assert token, printed

        listener = subprocess.Popen(
            [
                curl,
                "-sN",
                f"http://127.0.0.1:{port}/events?topic=demo",
                "-H",
                f"Authorization: Bearer {token.group(1)}",
            ],
            stdout=subprocess.PIPE,
        )
        assert listener.stdout is not None
        assert listener.stdout.readline() == b"retry: 3000\n"
        published_at = time.monotonic()
        result = subprocess.run(
            [
                curl,
                "-s",
                "-d",
                "topic=demo",
                "-d",
                "data=hello",
                "-H",
                f"Authorization: Bearer {token.group(1)}",
                f"http://127.0.0.1:{port}/publish",
            ],
            capture_output=True,
            check=True,
            timeout=10,
        )
        assert b'"id"' in result.stdout
        lines: list[bytes] = []
        while b"data: hello\n" not in lines:
            lines.append(listener.stdout.readline())
        elapsed_ms = (time.monotonic() - published_at) * 1000
        print(f"\nquick start: event on the curl stream {elapsed_ms:.1f} ms after curl -d started")
        assert b"event: message\n" in lines
        assert b"topic: demo\n" in lines
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        server.terminate()
        server.wait(20)
    # The master stopped the embedded Redis it started.
    assert not (tmp_path / "var" / "redis.sock").exists() or _no_redis_alive(tmp_path)


def _no_redis_alive(tmp_path: Path) -> bool:
    pid_dirs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    for pid_dir in pid_dirs:
        try:
            cmdline = (pid_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in cmdline and str(tmp_path).encode() in cmdline:
            return False
    return True
