"""Load proofs on real gunicorn and a real redis-server: slow consumers among fast ones, and a
reconnect storm (issue 6, faults 4 and 5).

Thousands of clients live in this one gevent-patched process, so they read with
:class:`LeanStream`: a raw socket, HTTP/1.1 chunked decoding, and only the fields these proofs
need (event ids, the publish time carried in the data) found by regular expressions over
complete events. A WHATWG parser per event (``tests/sse_client.py``) would cost this process
more CPU than the server spends. Exactness is still checked per client, against the ids the
publisher got back.

Every client connects from 127.0.0.1, so the per-address stream limit is raised, and the
publish rate limit is off: neither limit is what these tests are about.

The figures (latencies, RSS, the storm's duration) are printed; run with ``-s`` to see them.
Time is only ever asserted as a timeout: this machine is shared with the server.
"""

from __future__ import annotations

import http.client
import json
import re
import resource
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import pytest
from conftest import Gunicorn, make_token

pytestmark = pytest.mark.integration

TOKEN = make_token()
COMMON_ENV = {"REALTIME_MAX_CONNECTIONS_PER_IP": "100000", "REALTIME_PUBLISH_RATE": "0"}

# Fields of complete events, each block starting with "\n" (see LeanStream.read).
ANY_ID = re.compile(rb"\nid: ([^\n]*)\n")
MESSAGE_ID = re.compile(rb"\nid: ([^\n]*)\nevent: message\n")
OTHER_EVENT = re.compile(rb"\nevent: (?!message\n)([^\n]*)\n")
# A message's id and the publish time that opens its data (see payload()), in one pass.
STAMPED_MESSAGE = re.compile(rb"\nid: ([^\n]*)\nevent: message\ntopic: [^\n]*\ndata: ([^ \n]*) ")


# -- processes, limits, memory -------------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    """Raise this process's soft limit on open files to ``needed`` (a gunicorn started after
    this inherits it), or fail saying the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert soft >= needed, f"this test needs {needed} open files; the hard limit is {hard}"


def fd_soft_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError(f"no 'Max open files' in /proc/{pid}/limits")


def status_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB: ``VmRSS`` (now) or ``VmHWM`` (peak so far)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def server_connections(port: int) -> Counter[str]:
    """The server's TCP connections on ``port`` by state, from the kernel (``/proc/net/tcp``):
    ``ESTABLISHED``, and ``CLOSE_WAIT`` for clients gone that the server has not noticed yet."""
    states = {"01": "ESTABLISHED", "08": "CLOSE_WAIT"}
    counts: Counter[str] = Counter()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split(None, 4)
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] in states:
                counts[states[fields[3]]] += 1
    return counts


class Sampler:
    """Every 50 ms the VmRSS of each worker; every 200 ms the streams open on all of them
    (``realtime_connections_open`` in ``/metrics``) and the server's connections as the kernel
    sees them. Each sample carries the moment (monotonic) it was taken."""

    def __init__(self, server: Gunicorn, pids: list[int]) -> None:
        self.server = server
        self.rss_kib: dict[int, list[tuple[float, int]]] = {pid: [] for pid in pids}
        self.streams: list[tuple[float, int]] = []
        self.connections: list[tuple[float, Counter[str]]] = []
        self._greenlets = [
            gevent.spawn(self._rss),
            gevent.spawn(self._streams),
            gevent.spawn(self._connections),
        ]

    def _rss(self) -> None:
        while True:
            for pid, samples in self.rss_kib.items():
                samples.append((time.monotonic(), status_kib(pid, "VmRSS")))
            gevent.sleep(0.05)

    def _streams(self) -> None:
        while True:
            try:
                open_now = metric(self.server, "realtime_connections_open")
            except OSError:  # a worker too busy to answer in time: no sample this round
                pass
            else:
                self.streams.append((time.monotonic(), int(open_now)))
            gevent.sleep(0.2)

    def _connections(self) -> None:
        while True:
            self.connections.append((time.monotonic(), server_connections(self.server.port)))
            gevent.sleep(0.2)

    def peak_kib(self, start: float = 0.0, end: float = float("inf")) -> int:
        """The highest RSS of any worker sampled between ``start`` and ``end`` (monotonic)."""
        return max(
            kib for samples in self.rss_kib.values() for t, kib in samples if start <= t <= end
        )

    @property
    def samples(self) -> int:
        return sum(len(samples) for samples in self.rss_kib.values())

    def stop(self) -> None:
        gevent.killall(self._greenlets)


def readyz(server: Gunicorn) -> Any:
    """``/readyz``'s JSON, whether it says ready (200) or not (503)."""
    try:
        with urllib.request.urlopen(server.url + "/readyz", timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return json.loads(refused.read())


def metric(server: Gunicorn, name: str) -> float:
    """The sum of a Prometheus metric's samples over every label set, from ``/metrics``."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what()}")
        gevent.sleep(0.05)


def percentile(samples: list[tuple[float, int]], fraction: float) -> float:
    """The ``fraction`` quantile of weighted samples ``(value, count)``."""
    ordered = sorted(samples)
    rank = fraction * sum(n for _, n in ordered)
    seen = 0
    for value, n in ordered:
        seen += n
        if seen >= rank:
            return value
    return ordered[-1][0]


# -- publishing ----------------------------------------------------------------------------------


def payload(size: int, stamp: float) -> str:
    """Event data: the publish time (for latency), then filler up to ``size`` characters."""
    text = f"{stamp:.6f} "
    return text + "x" * (size - len(text))


class Publisher:
    """Batch publishes over one keep-alive connection; remembers every id it got back, with the
    moment the answer came (the event was stored before then)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.ids: list[str] = []
        self.by_topic: dict[str, list[str]] = {}
        self.acked: list[tuple[float, str, int]] = []  # (monotonic time, topic, count so far)
        self.answered: list[float] = []  # when (monotonic) each request was answered

    def publish(self, events: list[dict[str, str]]) -> list[str]:
        body = json.dumps({"events": events})
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        self.connection.request("POST", "/publish", body=body, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        assert response.status == 201, answer
        ids: list[str] = json.loads(answer)["ids"]
        now = time.monotonic()
        self.answered.append(now)
        self.ids += ids
        for event, event_id in zip(events, ids, strict=True):
            topic_ids = self.by_topic.setdefault(event["topic"], [])
            topic_ids.append(event_id)
            self.acked.append((now, event["topic"], len(topic_ids)))
        return ids

    def paced(
        self,
        batch: Callable[[float], list[dict[str, str]]],
        interval: float,
        until: Callable[[int], bool],
    ) -> float:
        """Publish ``batch(now)`` every ``interval`` s on a fixed schedule (catching up at once
        when late) until ``until(batches sent)``; returns the seconds it took."""
        start = time.monotonic()
        sent = 0
        while not until(sent):
            gevent.sleep(max(0.0, start + sent * interval - time.monotonic()))
            self.publish(batch(time.time()))
            sent += 1
        return time.monotonic() - start

    def count_before(self, topic: str, moment: float) -> int:
        """How many events of ``topic`` were acknowledged before ``moment`` (monotonic)."""
        return max((n for t, p, n in self.acked if p == topic and t < moment), default=0)

    def close(self) -> None:
        self.connection.close()


# -- a lean SSE client ---------------------------------------------------------------------------


class LeanStream:
    """One ``GET /events`` on a raw socket, decoded just enough for load tests.

    :meth:`read` returns the complete events received so far as one bytes block (an event is
    complete at its blank line; a partial one waits, and is lost if the stream ends, as in an
    EventSource). Every block starts with ``\\n``, so every field line follows a newline.

    ``rcvbuf`` makes a slow client. Not below 4096: through a 2 KiB buffer the rest of a cut
    stream sometimes came as a trickle (44 events in 10 s, and no end), most likely because so
    small a window is not re-advertised when the reader frees it, which leaves the sender to
    its backed-off zero-window probes.
    """

    def __init__(
        self,
        port: int,
        topics: Iterable[str],
        last_id: str | None = None,
        rcvbuf: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.status: int | None = None
        self.refusal = b""  # the head and first bytes of an answer that is not a stream
        self.ended = False  # the stream is over: last chunk, FIN, RST, or not a 200
        self._head = b""
        self._raw = bytearray()
        self._chunk_left = 0  # data bytes left in the current chunk
        self._crlf_left = 0  # bytes of the CRLF after a chunk's data still to skip
        self._text = b"\n"  # decoded bytes after the last complete event
        query = "&".join(f"topic={t}" for t in topics)
        lines = [
            f"GET /events?{query}&access_token={TOKEN} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Accept: text/event-stream",
        ]
        if last_id is not None:
            lines.append(f"Last-Event-ID: {last_id}")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            started = time.monotonic()
            self.sock.connect(("127.0.0.1", port))
            self.connect_s = time.monotonic() - started
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        except BaseException:
            self.sock.close()
            raise

    def read(self, size: int = 262144) -> bytes:
        """Wait for bytes (at most ``size``) and return the events they complete, maybe none."""
        try:
            data = self.sock.recv(size)
        except ConnectionResetError:
            data = b""
        if not data:
            self.ended = True
            return b""
        if self.status is None:
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return b""
            head, _, data = self._head.partition(b"\r\n\r\n")
            self.status = int(head.split(b" ", 2)[1])
            if self.status != 200 or b"transfer-encoding: chunked" not in head.lower():
                self.refusal = self._head
                self.ended = True
                return b""
        self._raw += data
        self._text += self._dechunk()
        cut = self._text.rfind(b"\n\n")
        if cut < 0:
            return b""
        complete, self._text = self._text[: cut + 1], self._text[cut + 1 :]
        return complete

    def read_head(self) -> bytes:
        """Read until the status line and headers are in; the events that came with them."""
        blocks = [b"\n"]
        while self.status is None and not self.ended:
            blocks.append(self.read(512))
        return b"".join(blocks)

    def _dechunk(self) -> bytes:
        raw, pos, out = self._raw, 0, []
        while pos < len(raw):
            if self._crlf_left:
                skip = min(self._crlf_left, len(raw) - pos)
                pos += skip
                self._crlf_left -= skip
            elif self._chunk_left:
                take = min(self._chunk_left, len(raw) - pos)
                out.append(bytes(raw[pos : pos + take]))
                pos += take
                self._chunk_left -= take
                if not self._chunk_left:
                    self._crlf_left = 2
            else:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(raw[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    self.ended = True
                    break
                self._chunk_left = size
        del raw[:pos]
        return b"".join(out)

    def close(self) -> None:
        self.sock.close()


def close_all(streams: Iterable[LeanStream | None]) -> None:
    for stream in streams:
        if stream is not None:
            stream.close()


# -- a client that stops reading is cut at its queue bound, not after the kernel's buffer --------


def test_a_client_that_stops_reading_is_cut_after_its_queue_not_megabytes_of_kernel_buffer(
    gunicorn_factory: Any, redis_url: str
) -> None:
    """Regression: Linux grows a stream socket's send buffer to 4 MiB at once on loopback, so a
    client that stopped reading was ~11,000 events of 360 B behind before its queue (here 50)
    even started to fill. 720 KB flowed past such a client without it being cut."""
    server: Gunicorn = gunicorn_factory(
        redis_url,
        workers=1,
        env={**COMMON_ENV, "REALTIME_MAX_QUEUE": "50", "REALTIME_OVERFLOW_GRACE_S": "0.5"},
    )
    stalled = LeanStream(server.port, ["stall"], rcvbuf=4096)
    publisher = Publisher(server.port)
    try:
        got = MESSAGE_ID.findall(stalled.read_head())
        assert stalled.status == 200
        for _ in range(40):  # 2,000 events of 300 B, about 720 KB of SSE
            publisher.publish([{"topic": "stall", "data": payload(300, time.time())}] * 50)
        wait_until(
            lambda: readyz(server)["streams"] == 0,
            10,
            lambda: "the stalled stream to be cut",
        )
        # Awake again: what the kernel held for it, then the end of the stream.
        deadline = time.monotonic() + 10
        while not stalled.ended and time.monotonic() < deadline:
            got += MESSAGE_ID.findall(stalled.read())
    finally:
        stalled.close()
        publisher.close()
    print(f"\nstalled client: handed {len(got)} of 2000 events before the cut")
    assert stalled.ended
    assert got == [i.encode() for i in publisher.ids[: len(got)]]
    # 64 KiB unsent + a coalesced write of at most 50 events + the client's 8 KiB window.
    assert len(got) < 400


# -- many clients resuming long histories at once are all served ---------------------------------


def test_200_clients_resuming_4000_events_each_at_once_are_all_served_exactly(
    gunicorn_factory: Any, redis_url: str
) -> None:
    """Regression: a replay whose socket writes never blocked released a pooled Redis
    connection and took it again without letting another greenlet run, so the pool's waiters
    starved: of 100 clients resuming 4,000 events each at once on one worker, 44 were refused
    ``503 redis_unavailable`` ("No connection available", after the pool's 5 s) while Redis was
    fine. With 200 clients it failed in 3 runs of 3 before the fix."""
    server: Gunicorn = gunicorn_factory(
        redis_url, workers=1, env={**COMMON_ENV, "REALTIME_HISTORY_MAXLEN": "10000"}
    )
    publisher = Publisher(server.port)
    streams: list[LeanStream] = []
    resumers: list[gevent.Greenlet] = []

    def resume(after: str, count: int) -> list[bytes]:
        stream = LeanStream(server.port, ["history"], last_id=after)
        streams.append(stream)
        ids: list[bytes] = []
        while len(ids) < count and not stream.ended:
            ids += MESSAGE_ID.findall(stream.read())
        assert stream.status == 200, stream.refusal
        return ids

    try:
        for _ in range(80):
            publisher.publish([{"topic": "history", "data": payload(300, time.time())}] * 50)
        after, *rest = publisher.ids
        started = time.monotonic()
        resumers += [gevent.spawn(resume, after, len(rest)) for _ in range(200)]
        gevent.joinall(resumers, timeout=60, raise_error=True)
        took = time.monotonic() - started
    finally:
        gevent.killall(resumers, timeout=5)
        close_all(streams)
        publisher.close()
    print(f"\n200 clients resumed {len(rest)} events each at once in {took:.1f} s")
    wire = [i.encode() for i in rest]
    for greenlet in resumers:
        assert greenlet.value == wire
