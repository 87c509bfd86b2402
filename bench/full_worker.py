"""A full worker, as shipped: 10,000 streams open on one worker, and does it still answer?

Issue 10's line 4. gunicorn runs the repository's own ``gunicorn.conf.py`` with one worker and
every setting at its default (``REALTIME_MAX_CONNECTIONS`` 10,000, ``REALTIME_CONNECTION_HEADROOM``
1,000, 500 streams per client address, the publish rate limit, the access log), pinned to CPU 0
with its private ``redis-server`` on CPU 1 beside this process. The streams come from 20 loopback
addresses (127.0.0.2 … 127.0.0.21, 500 each), so even the per-address limit is the shipped one.

With every stream open it measures, each request on a new connection, timed from connect to
the last byte of the answer:

- publishes to a topic nobody follows, 5 rounds of 50 at once (the request path of a full worker);
- publishes to the topic all 10,000 streams follow, 50 at once (each one a 10,000-way fan-out),
  and that every stream received all 50;
- ``/healthz``, ``/metrics`` and ``/readyz`` (503, ``full``), stream 10,001 (429) and
  WebSocket 10,001 (close 1013).

Benchmarks measure; nothing here asserts. Results go to ``bench/results/full_worker.json`` and,
through ``bench/report.py``, into ``bench/README.md``. Usage: ``python bench/full_worker.py
[--streams 10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from loadgen import percentile, proc_sample  # noqa: E402
from suite import (  # noqa: E402
    BIN,
    LOAD_CPU,
    RESULTS,
    ROOT,
    SECRET,
    children,
    machine,
    realtime_env,
    spawn,
    start_redis,
    stop_process,
    wait_http,
)

from realtime.core.auth import mint_token  # noqa: E402
from realtime.storage.redis_server import free_port  # noqa: E402

TOPIC = "full"
ELSEWHERE = "nobody-follows"
MARKER = b"fw-event"
PER_ADDRESS = 500  # REALTIME_MAX_CONNECTIONS_PER_IP's default
OPEN_AT_ONCE = 256
SHIPPED_STREAMS = 10_000  # REALTIME_MAX_CONNECTIONS's default
SHIPPED_HEADROOM = 1_000  # REALTIME_CONNECTION_HEADROOM's default


class Stream:
    """One SSE stream on a non-blocking socket; counts the broadcast events it receives."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sock: socket.socket | None = None
        self.status = 0
        self.events = 0
        self.gone = False
        self._head = b""
        self._tail = b""
        self._headers = asyncio.get_running_loop().create_future()

    async def open(self, port: int, token: str) -> float:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((self.source, 0))
        await loop.sock_connect(sock, ("127.0.0.1", port))
        request = (
            f"GET /events?topic={TOPIC} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        self.sock = sock
        loop.add_reader(sock.fileno(), self._readable)
        await asyncio.wait_for(self._headers, 60)
        return time.monotonic() - started

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.gone = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            if not self._headers.done():
                self._headers.set_result(None)
            return
        if not self._headers.done():
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return
            head, _, data = self._head.partition(b"\r\n\r\n")
            self.status = int(head.split(b" ", 2)[1])
            self._headers.set_result(None)
        text = self._tail + data
        self.events += text.count(MARKER)
        self._tail = text[-(len(MARKER) - 1) :]

    def close(self) -> None:
        if self.sock is not None:
            if not self.gone:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()


async def request(
    port: int, method: str, path: str, token: str = "", body: bytes = b""
) -> dict[str, Any]:
    """One request on a new connection: status and seconds from connect to the whole answer."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    answer = await asyncio.wait_for(reader.read(), 30)  # until the server closes
    seconds = time.monotonic() - started
    writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer else 0
    headers = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    return {"status": status, "s": seconds, "retry_after": "retry-after:" in headers}


async def publishes(port: int, token: str, topic: str, count: int) -> list[dict[str, Any]]:
    data = MARKER.decode() if topic == TOPIC else "quiet"
    body = json.dumps({"topic": topic, "data": data}).encode()
    calls = [request(port, "POST", "/publish", token, body) for _ in range(count)]
    return list(await asyncio.gather(*calls))


def websocket_refused(port: int, token: str) -> dict[str, Any]:
    """WebSocket 10,001: the close code it gets and how long that took (wsproto, blocking)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

    started = time.monotonic()
    ws = WSConnection(ConnectionType.CLIENT)
    code: int | None = None
    error = ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target=f"/ws?access_token={token}")))
        while code is None:
            data = sock.recv(65536)
            if not data:
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, TextMessage):
                    error = json.loads(event.data).get("error", "")
                elif isinstance(event, CloseConnection):
                    code = event.code
                elif not isinstance(event, AcceptConnection):
                    continue
    return {"close_code": code, "error": error, "s": time.monotonic() - started}


def latency_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = sorted(s["s"] for s in samples)
    statuses: dict[str, int] = {}
    for sample in samples:
        statuses[str(sample["status"])] = statuses.get(str(sample["status"]), 0) + 1
    return {
        "count": len(samples),
        "statuses": statuses,
        "p50_ms": round((percentile(seconds, 0.5) or 0) * 1000, 2),
        "p99_ms": round((percentile(seconds, 0.99) or 0) * 1000, 2),
        "max_ms": round(seconds[-1] * 1000, 2) if seconds else None,
        "within_1s": sum(1 for s in seconds if s < 1.0),
    }


async def measure(port: int, token: str, pids: list[int], streams_wanted: int) -> dict[str, Any]:
    sources = [f"127.0.0.{2 + i // PER_ADDRESS}" for i in range(streams_wanted)]
    streams = [Stream(source) for source in sources]
    started = time.monotonic()
    before = proc_sample(pids)
    connect_s: list[float] = []
    for at in range(0, len(streams), OPEN_AT_ONCE):
        batch = streams[at : at + OPEN_AT_ONCE]
        connect_s += await asyncio.gather(*(s.open(port, token) for s in batch))
    open_s = time.monotonic() - started
    opened = sum(1 for s in streams if s.status == 200)
    await asyncio.sleep(1.0)
    held = proc_sample(pids)
    out: dict[str, Any] = {
        "streams_wanted": streams_wanted,
        "streams_open": opened,
        "open_all_s": round(open_s, 2),
        "connect_p99_ms": round((percentile(sorted(connect_s), 0.99) or 0) * 1000, 1),
        "worker_rss_mib": round(held["rss_kib"] / 1024, 1),
        "rss_per_stream_kib": round((held["rss_kib"] - before["rss_kib"]) / max(1, opened), 1),
    }
    readyz = await request(port, "GET", "/readyz")
    out["readyz"] = {"status": readyz["status"], "ms": round(readyz["s"] * 1000, 2)}

    quiet: list[dict[str, Any]] = []
    for _ in range(5):
        quiet += await publishes(port, token, ELSEWHERE, 50)
    out["publish_quiet"] = latency_summary(quiet)
    cpu = proc_sample(pids)["cpu_s"]
    broadcast = await publishes(port, token, TOPIC, 50)
    out["publish_broadcast"] = latency_summary(broadcast)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(s.events < 50 for s in streams if not s.gone):
        await asyncio.sleep(0.2)
    out["broadcast_cpu_s"] = round(proc_sample(pids)["cpu_s"] - cpu, 2)
    out["streams_with_all_50"] = sum(1 for s in streams if s.events == 50)
    out["streams_cut"] = sum(1 for s in streams if s.gone)
    out["healthz"] = latency_summary([await request(port, "GET", "/healthz") for _ in range(20)])
    out["metrics"] = latency_summary([await request(port, "GET", "/metrics") for _ in range(5)])
    refused = await request(port, "GET", f"/events?topic={TOPIC}", token)
    out["stream_over_limit"] = {
        "status": refused["status"],
        "retry_after": refused["retry_after"],
        "ms": round(refused["s"] * 1000, 2),
    }
    loop = asyncio.get_running_loop()
    ws = await loop.run_in_executor(None, websocket_refused, port, token)
    out["websocket_over_limit"] = {
        "close_code": ws["close_code"],
        "error": ws["error"],
        "ms": round(ws["s"] * 1000, 2),
    }
    all_publishes = quiet + broadcast
    out["publish_all"] = latency_summary(all_publishes)
    for stream in streams:
        stream.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--streams",
        type=int,
        default=SHIPPED_STREAMS,
        help="fewer, to try it: the limit and the headroom are then scaled at the shipped ratio",
    )
    parser.add_argument("--out", default=str(RESULTS / "full_worker.json"))
    args = parser.parse_args()
    host = machine()  # before pinning: nproc counts the CPUs this process may use
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    RESULTS.mkdir(exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="bench-full-") as tmp_name:
        tmp = Path(tmp_name)
        redis_server = start_redis(tmp / "redis")
        port = free_port()
        settings = "the shipped gunicorn.conf.py and defaults, 1 worker"
        scaled: dict[str, str] = {}
        if args.streams != SHIPPED_STREAMS:
            headroom = max(10, args.streams * SHIPPED_HEADROOM // SHIPPED_STREAMS)
            scaled = {
                "REALTIME_MAX_CONNECTIONS": str(args.streams),
                "REALTIME_CONNECTION_HEADROOM": str(headroom),
            }
            settings += f", scaled: REALTIME_MAX_CONNECTIONS={args.streams}, headroom {headroom}"
        env = realtime_env(tmp, port, redis_server.url, scaled)
        argv = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "app:app"]
        process, log_path = spawn("full_worker", argv, tmp, env)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", process)
            pids = children(process.pid)
            token = mint_token(
                secret=SECRET, subject="bench", publish=["*"], subscribe=["*"], ttl_s=3600
            )
            result = asyncio.run(measure(port, token, pids, args.streams))
        except BaseException:
            print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            stop_process(process, signal.SIGQUIT)
            redis_server.stop(kill=True)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["machine"] = host
    result["settings"] = settings
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if Path(args.out) == RESULTS / "full_worker.json" and (RESULTS / "suite.json").exists():
        from report import write_report

        write_report()


if __name__ == "__main__":
    main()
