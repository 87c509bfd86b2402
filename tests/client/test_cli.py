"""`realtime token` through the installed console script, as a cron job's author would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SECRET

from realtime.core.auth import TokenVerifier
from realtime.ops.devsecret import load_or_create_dev_secret

REALTIME = str(Path(sys.executable).with_name("realtime"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    return subprocess.run(
        [REALTIME, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=30
    )


def test_token_mints_a_publish_token_the_server_accepts() -> None:
    result = run(
        "token",
        "--sub",
        "cron",
        "--publish",
        "orders:*",
        "--ttl",
        "30d",
        env={"REALTIME_JWT_SECRET": SECRET},
    )
    assert result.returncode == 0, result.stderr
    grant = TokenVerifier(secret=SECRET).verify(result.stdout.strip())
    assert grant.subject == "cron"
    assert grant.can_publish("orders:42")
    assert not grant.can_publish("users:1")
    assert not grant.can_subscribe("orders:42")
    assert grant.expires_at is not None


def test_token_never_expiring_and_subscribe_rights() -> None:
    result = run(
        "token", "--subscribe", "dashboard:*", "--ttl", "never", env={"REALTIME_JWT_SECRET": SECRET}
    )
    grant = TokenVerifier(secret=SECRET).verify(result.stdout.strip())
    assert grant.expires_at is None
    assert grant.can_subscribe("dashboard:main")


def test_token_uses_the_development_secret_that_make_run_created(tmp_path: Path) -> None:
    secret = load_or_create_dev_secret(str(tmp_path))
    result = run("token", "--publish", "*", env={"REALTIME_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert TokenVerifier(secret=secret).verify(result.stdout.strip()).can_publish("x")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (("token",), {"REALTIME_JWT_SECRET": SECRET}, "at least one --publish or --subscribe"),
        (("token", "--publish", "a", "--ttl", "soon"), {"REALTIME_JWT_SECRET": SECRET}, "ttl"),
        (("token", "--publish", "bad pattern"), {"REALTIME_JWT_SECRET": SECRET}, "pattern"),
        (("token", "--publish", "a"), {"REALTIME_DATA_DIR": "/nonexistent/dir"}, "No key"),
        (("token", "--publish", "a"), {"REALTIME_JWT_SECRET": "short"}, "REALTIME_JWT_SECRET"),
    ],
    ids=["no rights", "bad ttl", "bad pattern", "no key", "short secret"],
)
def test_token_usage_errors_exit_2_with_a_sentence(
    args: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    result = run(*args, env=env)
    assert result.returncode == 2
    assert needle.lower() in result.stderr.lower()
    assert result.stdout == ""


def test_new_secret_is_long_and_random() -> None:
    first, second = (run("token", "--new-secret").stdout.strip() for _ in range(2))
    assert len(first) >= 48
    assert first != second
