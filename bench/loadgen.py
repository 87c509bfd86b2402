"""An asyncio SSE load generator: thousands of streams from one process, per-delivery latency.

It speaks just enough HTTP/1.1 (status line, headers, chunked or close-delimited bodies) and SSE
(blocks split on blank lines; ``id:`` and ``data:`` fields) to follow any of the four servers of
``bench/suite.py``: realtime, nginx + Nchan, sse-starlette and flask-sse. Every published event's
data is ``bench <seq> <publish time, ns since the epoch> xxx…``, so a subscriber needs no shared
state with the publisher to know what it got and how late.

What it measures, for each phase of a scenario:

- per delivery, publish → arrival latency, where arrival is the **kernel's** receive timestamp of
  the bytes (``SO_TIMESTAMPNS`` on every socket, read with ``recvmsg``). One Python process reads
  tens of thousands of deliveries a second and is slower than the servers it watches; the kernel
  timestamp is taken when loopback hands the bytes to the socket (in the server's own ``send``),
  so this process's own lag does not count. The user-space arrival (when this process read the
  bytes) is kept beside it, to show that lag. When one read holds several events (a burst), they
  all get the timestamp of the last segment read: an over-estimate, never an under-estimate.
- per event, the latency of the **last** subscriber to get it (the fan-out's real cost).
- deliveries versus expected, duplicates (the same event twice on one subscriber, counted across
  reconnects), connect time (connect → response headers), and the server's RSS and CPU seconds
  from ``/proc/<pid>/status`` and ``/proc/<pid>/stat`` (the pids are given).

Deliberately not here: starting servers, choosing parameters, asserting anything. Benchmarks
measure; ``bench/suite.py`` runs this once per server and scenario and writes the table.

Why raw sockets with ``loop.add_reader`` rather than asyncio streams for the subscribers: a
stream's transport reads with ``recv`` and drops the ancillary data that carries the kernel
timestamp. The publisher side, where no timestamp is needed, uses asyncio streams.

Usage (see ``--help`` of each scenario)::

    python bench/loadgen.py --kind realtime --port 8000 --token T --pid 1234 --out r.json \\
        broadcast --steps 1000x200@20,5000x100@10,10000x50@5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import socket
import struct
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from realtime.core.chunked import ChunkedDecoder

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same value
TIMESPEC = struct.Struct("@qq")
ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size)
MARK = b"bench "  # how the data of every event we publish starts
PAYLOAD_BYTES = 100
RESUMABLE = {"realtime", "nchan"}


def now_ns() -> int:
    return time.time_ns()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not values:
        return None
    rank = max(1, -(-int(q * 1000) * len(values) // 1000))  # ceil(q * n) without float drift
    return values[min(rank, len(values)) - 1]


def ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


# -- what each server calls things ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """How to subscribe and publish on one kind of server."""

    kind: str  # realtime | nchan | starlette | flasksse
    host: str
    port: int
    token: str = ""

    def _request(self, method: str, path: str, headers: list[str], body: bytes = b"") -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", *headers]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        if method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def subscribe(self, topic: str, last_id: bytes | None = None) -> bytes:
        if self.kind == "nchan":
            path = f"/events/{topic}"
        elif self.kind == "flasksse":
            path = f"/stream?channel={topic}"
        else:
            path = f"/events?topic={topic}"
        headers = ["Accept: text/event-stream", "Cache-Control: no-cache"]
        if last_id is not None:
            headers.append("Last-Event-ID: " + last_id.decode())
        return self._request("GET", path, headers)

    def publish(self, topic: str, data: str) -> bytes:
        if self.kind == "nchan":
            return self._request(
                "POST", f"/publish/{topic}", ["Content-Type: text/plain"], data.encode()
            )
        body = json.dumps({"topic": topic, "data": data}).encode()
        return self._request("POST", "/publish", ["Content-Type: application/json"], body)

    def publish_batch(self, topic: str, data: Sequence[str]) -> bytes | None:
        if self.kind == "nchan":
            return None  # Nchan publishes one message per request
        body = json.dumps({"events": [{"topic": topic, "data": d} for d in data]}).encode()
        return self._request("POST", "/publish", ["Content-Type: application/json"], body)

    def subscribers_probe(self, topics: Sequence[str]) -> bytes:
        """flask-sse sends its headers with the first event, so readiness is asked of the app."""
        body = json.dumps({"topics": list(topics)}).encode()
        return self._request("POST", "/subscribers", ["Content-Type: application/json"], body)


def payload(seq: int, sent_ns: int) -> str:
    head = f"bench {seq} {sent_ns} "
    return head + "x" * max(0, PAYLOAD_BYTES - len(head))


# -- /proc ----------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_sample(pids: Sequence[int]) -> dict[str, float]:
    """RSS (KiB) and CPU seconds (user + system) summed over ``pids``; gone pids count 0."""
    rss = 0
    cpu = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                        break
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            continue
    return {"rss_kib": rss, "cpu_s": round(cpu, 3)}


class PeakSampler:
    """Samples RSS every ``interval`` s in the background; ``peak`` is the highest since reset."""

    def __init__(self, pids: Sequence[int], interval: float = 0.25) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def reset(self) -> None:
        self.peak = 0

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, int(proc_sample(self.pids)["rss_kib"]))
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


# -- one measured phase ---------------------------------------------------------------------------


class Phase:
    """Deliveries of the events ``first_seq .. first_seq + events - 1`` to ``subscribers`` streams.

    ``fanout`` is how many subscribers should get each event (all of them for a broadcast, one
    for unicast). Arrays, not dicts: a phase may hold half a million deliveries.
    """

    def __init__(self, first_seq: int, events: int, subscribers: int, fanout: int) -> None:
        self.first_seq = first_seq
        self.events = events
        self.subscribers = subscribers
        self.fanout = fanout
        self.seen = bytearray(subscribers * events)
        self.sent_ns = array("q", bytes(8 * events))
        self.last_kernel = array("q", bytes(8 * events))
        self.count = array("l", bytes(array("l").itemsize * events))
        self.latency_kernel = array("q")
        self.latency_user = array("q")
        self.failed = bytearray(events)  # the publish request failed: nobody should get it
        self.duplicates = 0
        self.published = 0
        self.publish_errors = 0

    def deliver(self, sub: int, seq: int, sent_ns: int, kernel_ns: int, user_ns: int) -> bool:
        i = seq - self.first_seq
        if i < 0 or i >= self.events or sub >= self.subscribers:
            return False
        slot = sub * self.events + i
        if self.seen[slot]:
            self.duplicates += 1
            return True
        self.seen[slot] = 1
        self.count[i] += 1
        if kernel_ns > self.last_kernel[i]:
            self.last_kernel[i] = kernel_ns
        self.latency_kernel.append(kernel_ns - sent_ns)
        self.latency_user.append(user_ns - sent_ns)
        return True

    def complete(self) -> bool:
        return all(self.count[i] >= self.fanout or self.failed[i] for i in range(self.published))

    def last_latencies(self, which: Callable[[int], bool] | None = None) -> list[int]:
        """Per event that anyone got: its last subscriber's arrival - its publish time (ns)."""
        return sorted(
            self.last_kernel[i] - self.sent_ns[i]
            for i in range(self.published)
            if self.count[i] and (which is None or which(i))
        )

    def summary(self, connected: int) -> dict[str, Any]:
        stored = self.published - sum(self.failed[: self.published])
        expected = stored * (self.fanout if self.fanout else connected)
        delivered = sum(self.count[: self.published])
        last = self.last_latencies()
        kernel = sorted(self.latency_kernel)
        user = sorted(self.latency_user)
        return {
            "events_published": self.published,
            "publish_errors": self.publish_errors,
            "expected": expected,
            "delivered": delivered,
            "missing": expected - delivered,
            "duplicates": self.duplicates,
            "events_reaching_all": sum(
                1 for i in range(self.published) if self.count[i] >= self.fanout
            ),
            "last_subscriber_ms": {
                "p50": ms(percentile(last, 0.50)),
                "p90": ms(percentile(last, 0.90)),
                "p99": ms(percentile(last, 0.99)),
                "max": ms(last[-1] if last else None),
            },
            "delivery_ms": {
                "p50": ms(percentile(kernel, 0.50)),
                "p99": ms(percentile(kernel, 0.99)),
                "max": ms(kernel[-1] if kernel else None),
            },
            "delivery_ms_user_space": {
                "p50": ms(percentile(user, 0.50)),
                "p99": ms(percentile(user, 0.99)),
            },
        }


# -- one SSE stream -------------------------------------------------------------------------------


class Sub:
    """One subscriber: a non-blocking socket read by ``loop.add_reader`` with ``recvmsg``."""

    def __init__(self, gen: Loadgen, idx: int, topic: str) -> None:
        self.gen = gen
        self.idx = idx
        self.topic = topic
        self.sock: socket.socket | None = None
        self.head: bytearray | None = None
        self.status = 0
        self.chunked = False
        self.chunks = ChunkedDecoder()
        self.text = b""  # SSE text not yet ended by a blank line
        self.last_id: bytes | None = None
        self.headers_at = 0
        self.connect_ns = 0
        self.ready: asyncio.Future[None] | None = None
        self.open = False
        self.lost = False

    async def connect(self, last_id: bytes | None = None, wait_headers: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.head = bytearray()
        self.status = 0
        self.chunked = False
        self.chunks = ChunkedDecoder()
        self.text = b""
        self.lost = False
        self.ready = loop.create_future()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        start = time.perf_counter_ns()
        try:
            await loop.sock_connect(sock, (self.gen.target.host, self.gen.target.port))
            await loop.sock_sendall(sock, self.gen.target.subscribe(self.topic, last_id))
        except OSError:
            self.close()
            raise
        self.open = True
        loop.add_reader(sock.fileno(), self._readable)
        if wait_headers:
            await self.ready
            self.connect_ns = time.perf_counter_ns() - start

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.open = False
        if sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def _gone(self, why: str) -> None:
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        self.lost = True
        self.gen.lost += 1
        self.close()

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(65536, ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._gone(str(exc))
            return
        user_ns = time.time_ns()
        if not data:
            self._gone("closed by the server")
            return
        kernel_ns = user_ns
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanos = TIMESPEC.unpack_from(raw)
                kernel_ns = seconds * 1_000_000_000 + nanos
        self.feed(data, kernel_ns, user_ns)

    def feed(self, data: bytes, kernel_ns: int, user_ns: int) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            header = bytes(self.head[:end]).lower()
            data = bytes(self.head[end + 4 :])
            self.head = None
            try:
                self.status = int(header[9:12])
            except ValueError:
                self.status = -1
            self.chunked = b"transfer-encoding: chunked" in header
            if self.ready is not None and not self.ready.done():
                if self.status == 200:
                    self.ready.set_result(None)
                else:
                    self.ready.set_exception(ConnectionError(f"HTTP {self.status}"))
            if self.status != 200:
                self.gen.refused += 1
                self.close()
                return
        if self.chunked:
            data = self.chunks.feed(data)
        text = self.text + data if self.text else data
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n")
        while True:
            end = text.find(b"\n\n")
            if end < 0:
                break
            self._event(text[:end], kernel_ns, user_ns)
            text = text[end + 2 :]
        self.text = text

    def _event(self, block: bytes, kernel_ns: int, user_ns: int) -> None:
        data = None
        for line in block.split(b"\n"):
            if line.startswith(b"id:"):
                self.last_id = line[4:] if line[3:4] == b" " else line[3:]
            elif line.startswith(b"data:") and data is None:
                data = line[6:] if line[5:6] == b" " else line[5:]  # the space is optional
        if data is None or not data.startswith(MARK):
            return
        parts = data.split(b" ", 3)
        self.gen.delivered(self.idx, int(parts[1]), int(parts[2]), kernel_ns, user_ns)


# -- the publisher --------------------------------------------------------------------------------


class Publisher:
    """A few keep-alive connections (asyncio streams); each request waits for a free one.

    Servers close idle keep-alive connections after a few seconds (gunicorn 2-5 s, uvicorn 5 s),
    and a request written just as that happens is lost: a connection idle for over a second is
    replaced before use, and a request that a reused connection drops before any byte of answer
    is sent once more on a new one (with a new publish time).
    """

    IDLE_S = 1.0

    def __init__(self, target: Target, connections: int = 8) -> None:
        self.target = target
        self.size = connections
        self.free: asyncio.Queue[Conn | None] = asyncio.Queue()
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.retries = 0

    async def start(self) -> None:
        for _ in range(self.size):
            self.free.put_nowait(None)  # opened on first use

    async def _open(self) -> Conn:
        reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(reader, writer)

    async def request(self, build: Callable[[], bytes], timeout: float = 30.0) -> int:
        """Send ``build()`` (called at the moment of sending) and return the status, 0 on error."""
        conn = await self.free.get()
        status = 0
        try:
            for attempt in (1, 2):
                if conn is not None and time.monotonic() - conn.used > self.IDLE_S:
                    conn.writer.close()
                    conn = None
                reused = conn is not None
                if conn is None:
                    conn = await self._open()
                try:
                    conn.writer.write(build())
                    status, keep = await asyncio.wait_for(read_response(conn.reader), timeout)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    conn.writer.close()
                    conn = None
                    answered = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                    if reused and not answered and attempt == 1:
                        self.retries += 1
                        continue
                    raise
                conn.used = time.monotonic()
                if not keep:
                    conn.writer.close()
                    conn = None
                break
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            self.errors += 1
            if conn is not None:
                conn.writer.close()
            conn = None
            status = 0
        finally:
            self.free.put_nowait(conn)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status

    async def close(self) -> None:
        while not self.free.empty():
            conn = self.free.get_nowait()
            if conn is not None:
                conn.writer.close()


class Conn:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = time.monotonic()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP response; returns (status, whether the connection may be reused)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep = b"connection: close" not in lower
    if b"transfer-encoding: chunked" in lower:
        while True:
            line = await reader.readuntil(b"\r\n")
            length = int(line.split(b";", 1)[0], 16)
            await reader.readexactly(length + 2)
            if length == 0:
                break
    else:
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":", 1)[1]))
                break
        else:
            keep = False
    return status, keep


# -- the generator --------------------------------------------------------------------------------


class Loadgen:
    def __init__(self, target: Target, pids: Sequence[int], aux_pids: Sequence[int]) -> None:
        self.target = target
        self.pids = list(pids)
        self.aux_pids = list(aux_pids)
        self.subs: list[Sub] = []
        self.phase: Phase | None = None
        self.seq = 1_000_000  # distinct from anything a server numbers itself
        self.lost = 0
        self.refused = 0
        self.stray = 0
        self.publisher = Publisher(target)
        self.sampler = PeakSampler(self.pids)
        self.wait_headers = target.kind != "flasksse"
        self.mark_prefix: str | None = None

    def mark(self, name: str) -> None:
        """Touch ``<--mark>.<name>`` so a profiler outside can sample just the measured part."""
        if self.mark_prefix:
            with open(f"{self.mark_prefix}.{name}", "w"):
                pass

    def delivered(self, sub: int, seq: int, sent_ns: int, kernel_ns: int, user_ns: int) -> None:
        phase = self.phase
        if phase is None or not phase.deliver(sub, seq, sent_ns, kernel_ns, user_ns):
            self.stray += 1

    def resources(self) -> dict[str, Any]:
        own: dict[str, Any] = proc_sample(self.pids)
        if self.aux_pids:
            own["aux"] = proc_sample(self.aux_pids)
        return own

    # connecting

    async def connect(
        self, count: int, topic_of: Callable[[int], str], concurrency: int = 256
    ) -> dict[str, Any]:
        """Open subscribers until there are ``count``; connect times of the new ones."""
        first = len(self.subs)
        new = [Sub(self, i, topic_of(i)) for i in range(first, count)]
        self.subs.extend(new)
        gate = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = {}

        async def one(sub: Sub) -> None:
            async with gate:
                try:
                    await asyncio.wait_for(sub.connect(wait_headers=self.wait_headers), 30)
                except (TimeoutError, OSError) as exc:
                    key = type(exc).__name__ + (f": {exc}" if str(exc) else "")
                    failures[key[:80]] = failures.get(key[:80], 0) + 1
                    sub.close()

        started = time.perf_counter()
        await asyncio.gather(*(one(s) for s in new))
        if not self.wait_headers:
            await self.probe_ready([s.topic for s in self.subs if s.open], len(self.subs))
        elapsed = time.perf_counter() - started
        times = sorted(s.connect_ns for s in new if s.open and s.connect_ns)
        return {
            "opened": sum(1 for s in new if s.open),
            "attempted": len(new),
            "failures": failures,
            "seconds": round(elapsed, 3),
            "per_s": round(len(new) / elapsed) if elapsed else None,
            "connect_ms": {
                "p50": ms(percentile(times, 0.5)),
                "p99": ms(percentile(times, 0.99)),
                "max": ms(times[-1] if times else None),
            }
            if times
            else None,
        }

    async def probe_ready(self, topics: list[str], want: int, timeout: float = 60.0) -> int:
        """Ask the app how many streams it has subscribed (flask-sse: PUBSUB NUMSUB)."""
        unique = sorted(set(topics))
        deadline = time.monotonic() + timeout
        have = 0
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
                writer.write(self.target.subscribers_probe(unique))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                writer.close()
                have = int(json.loads(body)["subscribers"])
            except (TimeoutError, OSError, ValueError, KeyError):
                have = 0
            if have >= want:
                break
            await asyncio.sleep(0.25)
        return have

    def open_count(self) -> int:
        return sum(1 for s in self.subs if s.open)

    # publishing

    async def publish_paced(
        self, phase: Phase, topic_of: Callable[[int], str], rate: float, budget_s: float
    ) -> None:
        """Publish ``phase.events`` events at ``rate``/s (stops early after ``budget_s``)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks: list[asyncio.Task[int]] = []
        for i in range(phase.events):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() - start > budget_s:
                break
            seq = phase.first_seq + i
            topic = topic_of(i)

            def build(i: int = i, seq: int = seq, topic: str = topic) -> bytes:
                sent = now_ns()
                phase.sent_ns[i] = sent
                return self.target.publish(topic, payload(seq, sent))

            phase.published = i + 1
            tasks.append(loop.create_task(self.publisher.request(build)))
        statuses = await asyncio.gather(*tasks)
        for i, status in enumerate(statuses):
            if not 200 <= status < 300:
                phase.failed[i] = 1
        phase.publish_errors = sum(phase.failed)

    async def drain(self, phase: Phase, timeout: float) -> float:
        """Wait until every published event reached its subscribers, or ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if phase.complete():
                break
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    def new_phase(self, events: int, subscribers: int, fanout: int) -> Phase:
        phase = Phase(self.seq, events, subscribers, fanout)
        self.seq += events + 1000
        self.phase = phase
        return phase

    async def warm_up(self, topic: str, events: int = 5) -> None:
        """A few events that no phase counts: first-request costs stay out of the figures."""
        self.phase = None
        for _ in range(events):
            seq = self.seq
            self.seq += 1
            await self.publisher.request(
                functools.partial(self.target.publish, topic, payload(seq, 0))
            )
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)

    def close_all(self) -> None:
        for sub in self.subs:
            sub.close()


# -- scenarios ------------------------------------------------------------------------------------


def parse_steps(text: str) -> list[tuple[int, int, float]]:
    """``1000x200@20,5000x100@10`` → [(subscribers, events, rate), ...]"""
    steps = []
    for part in text.split(","):
        subs, rest = part.split("x")
        events, rate = rest.split("@")
        steps.append((int(subs), int(events), float(rate)))
    return steps


async def broadcast(gen: Loadgen, args: argparse.Namespace) -> dict[str, Any]:
    """One topic; subscribers added step by step (RSS at each), events paced at each step."""
    topic = "bench"
    baseline = gen.resources()
    steps: list[dict[str, Any]] = []
    for n, events, rate in parse_steps(args.steps):
        connect = await gen.connect(n, lambda i: topic)
        await asyncio.sleep(args.settle)
        idle = gen.resources()
        if not steps:
            await gen.warm_up(topic)
        connected = gen.open_count()
        phase = gen.new_phase(events, n, connected)
        gen.sampler.reset()
        before = gen.resources()
        gen.mark(f"publishing-{n}")
        await gen.publish_paced(phase, lambda i: topic, rate, budget_s=events / rate * 3 + 10)
        drained = await gen.drain(phase, args.drain)
        gen.mark(f"drained-{n}")
        after = gen.resources()
        summary = phase.summary(connected)
        cpu = after["cpu_s"] - before["cpu_s"]
        steps.append(
            {
                "subscribers": n,
                "connected": connected,
                "events": events,
                "rate_per_s": rate,
                "connect": connect,
                "rss_idle_kib": idle["rss_kib"],
                "rss_peak_kib": max(gen.sampler.peak, after["rss_kib"]),
                "aux_idle": idle.get("aux"),
                "server_cpu_s": round(cpu, 3),
                "server_cpu_us_per_delivery": round(cpu / summary["delivered"] * 1e6, 3)
                if summary["delivered"]
                else None,
                "drain_s": round(drained, 3),
                "lost_streams": gen.lost,
                **summary,
            }
        )
        print(f"broadcast {n}: {json.dumps(summary['last_subscriber_ms'])}", file=sys.stderr)
    return {"baseline": baseline, "steps": steps}


async def unicast(gen: Loadgen, args: argparse.Namespace) -> dict[str, Any]:
    """Every subscriber on its own topic; events round-robin over the topics."""
    n = args.subscribers

    def topic_of(i: int) -> str:
        return f"u{i % n}"

    connect = await gen.connect(n, topic_of)
    await asyncio.sleep(args.settle)
    await gen.warm_up("u-warm")
    phase = gen.new_phase(args.events, n, 1)
    before = gen.resources()
    gen.mark(f"publishing-{n}")
    await gen.publish_paced(phase, topic_of, args.rate, budget_s=args.events / args.rate * 3 + 10)
    drained = await gen.drain(phase, args.drain)
    gen.mark(f"drained-{n}")
    after = gen.resources()
    return {
        "subscribers": n,
        "connected": gen.open_count(),
        "events": args.events,
        "rate_per_s": args.rate,
        "connect": connect,
        "server_cpu_s": round(after["cpu_s"] - before["cpu_s"], 3),
        "drain_s": round(drained, 3),
        **phase.summary(1),
    }


async def storm(gen: Loadgen, args: argparse.Namespace) -> dict[str, Any]:
    """Subscribers drop at once, miss some events, and all resume at once with Last-Event-ID.

    Events go on at ``rate`` the whole time. Afterwards every subscriber should hold every event
    exactly once; ``catch_up_s`` is how long after the reconnect the last subscriber had every
    event published before it, and ``live_last_subscriber_ms`` is the last-subscriber latency of
    events published after the reconnect started (does the replay stall live delivery?).
    """
    topic = "storm"
    n = args.subscribers
    connect = await gen.connect(n, lambda i: topic)
    await asyncio.sleep(args.settle)
    await gen.warm_up(topic)
    total = int(args.rate * (args.before + args.gap + args.after))
    phase = gen.new_phase(total, n, n)
    loop = asyncio.get_running_loop()
    publishing = loop.create_task(
        gen.publish_paced(phase, lambda i: topic, args.rate, budget_s=total / args.rate * 3 + 10)
    )
    await asyncio.sleep(args.before)
    for sub in gen.subs:
        sub.close()
    dropped_at = now_ns()
    await asyncio.sleep(args.gap)
    reconnect_ns = now_ns()
    first_after = phase.published  # events from here on were published after the reconnect began
    failures: dict[str, int] = {}

    async def resume(sub: Sub) -> None:
        try:
            await asyncio.wait_for(sub.connect(last_id=sub.last_id), 30)
        except (TimeoutError, OSError) as exc:
            key = (type(exc).__name__ + f": {exc}")[:80]
            failures[key] = failures.get(key, 0) + 1
            sub.close()

    started = time.perf_counter()
    await asyncio.gather(*(resume(s) for s in gen.subs))
    reconnect_s = time.perf_counter() - started
    await publishing
    drained = await gen.drain(phase, args.drain)
    summary = phase.summary(n)
    before = [phase.last_kernel[i] for i in range(first_after) if phase.count[i]]
    catch_up = (max(before) - reconnect_ns) / 1e9 if before else None
    live = phase.last_latencies(lambda i: i >= first_after)
    times = sorted(s.connect_ns for s in gen.subs if s.open and s.connect_ns)
    return {
        "subscribers": n,
        "connect": connect,
        "rate_per_s": args.rate,
        "events_before_drop": int(args.rate * args.before),
        "events_while_away": first_after - int(args.rate * args.before),
        "resumed": sum(1 for s in gen.subs if s.open),
        "resume_failures": failures,
        "reconnect_all_s": round(reconnect_s, 3),
        "reconnect_ms": {"p50": ms(percentile(times, 0.5)), "p99": ms(percentile(times, 0.99))},
        "dropped_to_reconnect_s": round((reconnect_ns - dropped_at) / 1e9, 3),
        "catch_up_s": round(catch_up, 3) if catch_up is not None else None,
        "live_last_subscriber_ms": {
            "p50": ms(percentile(live, 0.5)),
            "p99": ms(percentile(live, 0.99)),
            "max": ms(live[-1] if live else None),
        },
        "drain_s": round(drained, 3),
        **summary,
    }


async def throughput(gen: Loadgen, args: argparse.Namespace) -> dict[str, Any]:
    """Closed-loop publishes with no subscribers (used when wrk is not installed)."""
    batch = args.batch
    target = gen.target
    data = [payload(0, 0)] * max(1, batch)
    request = target.publish_batch("tput", data) if batch else target.publish("tput", data[0])
    if request is None:
        return {"batch": batch, "unsupported": True}
    done = {"ok": 0, "other": 0}
    deadline = time.monotonic() + args.duration

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        while time.monotonic() < deadline:
            writer.write(request)
            status, keep = await read_response(reader)
            done["ok" if 200 <= status < 300 else "other"] += 1
            if not keep:
                writer.close()
                reader, writer = await asyncio.open_connection(target.host, target.port)
        writer.close()

    before = gen.resources()
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.connections)))
    elapsed = time.monotonic() - started
    after = gen.resources()
    per_request = max(1, batch)
    return {
        "tool": "loadgen",
        "batch": batch,
        "connections": args.connections,
        "seconds": round(elapsed, 3),
        "requests": done["ok"],
        "non_2xx": done["other"],
        "requests_per_s": round(done["ok"] / elapsed, 1),
        "events_per_s": round(done["ok"] * per_request / elapsed, 1),
        "server_cpu_s": round(after["cpu_s"] - before["cpu_s"], 3),
    }


async def timed_request(target: Target, request: bytes, timeout: float = 30.0) -> tuple[int, int]:
    """One request on a connection of its own: (status, ns from connect to the answer's last
    byte); status 0 when it failed."""
    started = time.perf_counter_ns()
    writer: asyncio.StreamWriter | None = None
    try:
        reader, opened = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), timeout
        )
        writer = opened
        opened.write(request)
        status, _ = await asyncio.wait_for(read_response(reader), timeout)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        status = 0
    finally:
        if writer is not None:
            writer.close()
    return status, time.perf_counter_ns() - started


def latency_summary(results: Sequence[tuple[int, int]]) -> dict[str, Any]:
    times = sorted(t for _, t in results)
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "count": len(results),
        "statuses": statuses,
        "p50_ms": ms(percentile(times, 0.5)),
        "p99_ms": ms(percentile(times, 0.99)),
        "max_ms": ms(times[-1] if times else None),
    }


async def full(gen: Loadgen, args: argparse.Namespace) -> dict[str, Any]:
    """A worker holding ``--subscribers`` streams of one topic: how fast are publishes answered?

    Each publish goes on a connection of its own, timed from connect to the last byte of its
    answer (as ``bench/full_worker.py`` times them): ``--rounds`` rounds of ``--at-once``
    publishes at once to a topic nobody follows (the request path of a busy worker), then
    ``--at-once`` at once to the followed topic, each a fan-out to every stream, which must all
    arrive.
    """
    topic = "full"
    n = args.subscribers
    connect = await gen.connect(n, lambda i: topic)
    await asyncio.sleep(args.settle)
    await gen.warm_up(topic)
    target = gen.target
    elsewhere: list[tuple[int, int]] = []
    for _ in range(args.rounds):
        requests = [target.publish("nobody-follows", payload(0, 0)) for _ in range(args.at_once)]
        elsewhere += await asyncio.gather(*(timed_request(target, r) for r in requests))
        await asyncio.sleep(0.2)
    phase = gen.new_phase(args.at_once, n, gen.open_count())
    sent = now_ns()
    for i in range(args.at_once):
        phase.sent_ns[i] = sent
    phase.published = args.at_once
    requests = [
        target.publish(topic, payload(phase.first_seq + i, sent)) for i in range(args.at_once)
    ]
    followed = await asyncio.gather(*(timed_request(target, r) for r in requests))
    for i, (status, _) in enumerate(followed):
        if not 200 <= status < 300:
            phase.failed[i] = 1
    drained = await gen.drain(phase, args.drain)
    summary = phase.summary(gen.open_count())
    return {
        "subscribers": n,
        "connected": gen.open_count(),
        "connect": connect,
        "at_once": args.at_once,
        "publish_elsewhere": latency_summary(elsewhere),
        "publish_followed": latency_summary(followed),
        "publish_all": latency_summary([*elsewhere, *followed]),
        "drain_s": round(drained, 3),
        "delivered": summary["delivered"],
        "expected": summary["expected"],
        "duplicates": summary["duplicates"],
    }


SCENARIOS = {
    "broadcast": broadcast,
    "unicast": unicast,
    "storm": storm,
    "throughput": throughput,
    "full": full,
}


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def run(args: argparse.Namespace) -> dict[str, Any]:
    target = Target(args.kind, args.host, args.port, args.token)
    gen = Loadgen(target, args.pid, args.aux_pid)
    gen.mark_prefix = args.mark
    await gen.publisher.start()
    gen.sampler.start()
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(SCENARIOS[args.scenario](gen, args), args.timeout)
        result["timed_out"] = False
    except TimeoutError:
        result = {"timed_out": True}
    finally:
        gen.sampler.stop()
        gen.close_all()
        await gen.publisher.close()
    result.update(
        {
            "scenario": args.scenario,
            "server": args.kind,
            "wall_s": round(time.monotonic() - started, 3),
            "stray_deliveries": gen.stray,
            "refused_streams": gen.refused,
            "publish_statuses": {str(k): v for k, v in sorted(gen.publisher.statuses.items())},
            "publish_retries": gen.publisher.retries,
            "loadgen_cpu_s": round(sum(os.times()[:2]), 3),
        }
    )
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=["realtime", "nchan", "starlette", "flasksse"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--pid", type=int, action="append", default=[], help="server pid(s)")
    parser.add_argument("--aux-pid", type=int, action="append", default=[], help="e.g. Redis")
    parser.add_argument("--out", help="write the JSON result here too")
    parser.add_argument("--timeout", type=float, default=600, help="whole-run bound, seconds")
    parser.add_argument("--settle", type=float, default=1.0, help="pause after connecting, s")
    parser.add_argument("--drain", type=float, default=30.0, help="wait for stragglers, s")
    parser.add_argument("--mark", help="touch MARK.publishing-N / MARK.drained-N when measuring")
    sub = parser.add_subparsers(dest="scenario", required=True)
    b = sub.add_parser("broadcast", help="one topic, subscribers added in steps")
    b.add_argument("--steps", default="1000x200@20,5000x100@10,10000x50@5")
    u = sub.add_parser("unicast", help="one topic per subscriber")
    u.add_argument("--subscribers", type=int, default=2000)
    u.add_argument("--events", type=int, default=3000)
    u.add_argument("--rate", type=float, default=200)
    s = sub.add_parser("storm", help="drop every stream, resume with Last-Event-ID")
    s.add_argument("--subscribers", type=int, default=1000)
    s.add_argument("--rate", type=float, default=20)
    s.add_argument("--before", type=float, default=2.0)
    s.add_argument("--gap", type=float, default=1.0)
    s.add_argument("--after", type=float, default=5.0)
    f = sub.add_parser("full", help="publishes answered while many streams are held")
    f.add_argument("--subscribers", type=int, default=10000)
    f.add_argument("--rounds", type=int, default=5)
    f.add_argument("--at-once", type=int, default=50)
    t = sub.add_parser("throughput", help="publishes with no subscribers")
    t.add_argument("--connections", type=int, default=32)
    t.add_argument("--duration", type=float, default=5.0)
    t.add_argument("--batch", type=int, default=0, help="events per request; 0: single")
    args = parser.parse_args(argv)
    raise_nofile()
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # only with the bench extra

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args))
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
