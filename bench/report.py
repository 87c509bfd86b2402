"""Turn bench/results/*.json into the plots and bench/README.md.

``bench/suite.py`` calls :func:`write_report` at its end; run this file alone to redraw the plots
and rewrite the README from the JSON already there (``python bench/report.py``). Figures are
given as measured and as a ratio to nginx + Nchan's in the same run; nothing here judges a run
except the "targets" column, which only says whether realtime's figure is within the targets
issues 5 and 15 set.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
NAMES = {
    "realtime": "realtime",
    "nchan": "nginx + Nchan",
    "starlette": "sse-starlette",
    "flasksse": "flask-sse",
}
COLORS = {"realtime": "C0", "nchan": "C1", "starlette": "C2", "flasksse": "C3"}
ORDER = ("realtime", "nchan", "starlette", "flasksse")

Getter = Callable[[dict[str, Any]], Any]


def dig(data: Any, *path: Any) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def step(server: dict[str, Any], subscribers: int) -> dict[str, Any] | None:
    for s in dig(server, "broadcast", "steps") or []:
        if s.get("subscribers") == subscribers:
            return s  # type: ignore[no-any-return]
    return None


def num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "int" or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_text(ratio: float) -> str:
    if ratio >= 10:
        return f"{ratio:.0f}×"
    if ratio >= 0.1:
        return f"{ratio:.1f}×"
    return f"{ratio:.2g}×"


def error_of(server: dict[str, Any], scenario: str) -> str | None:
    entry = server.get(scenario)
    if not isinstance(entry, dict):
        return "not run"
    if "na" in entry:
        return "n/a"
    if "unsupported" in entry:
        return "n/a"
    if "error" in entry or entry.get("timed_out"):
        return "failed"
    return None


# -- the table ------------------------------------------------------------------------------------


Check = Callable[[float | None, float | None], bool | None]


class Row:
    """One line of the table: a figure per server, its ratio to Nchan, and the targets of the
    issues that set one (``targets``: (text, check) pairs, the check given realtime's figure
    and Nchan's)."""

    def __init__(
        self,
        label: str,
        scenario: str,
        get: Getter,
        unit: str = "",
        ratio: bool = True,
        targets: tuple[tuple[str, Check], ...] = (),
        text: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        self.label = label
        self.scenario = scenario
        self.get = get
        self.unit = unit
        self.ratio = ratio
        self.targets = targets
        self.text = text

    def value(self, server: dict[str, Any]) -> float | None:
        try:
            value = self.get(server)
        except (KeyError, TypeError, ZeroDivisionError):
            return None
        return float(value) if isinstance(value, (int, float)) else None

    def cell(self, server: dict[str, Any], nchan: dict[str, Any] | None, is_nchan: bool) -> str:
        failed = error_of(server, self.scenario)
        if failed:
            return failed
        if self.text is not None:
            return self.text(server) or "n/a"
        value = self.value(server)
        shown = num(value, self.unit)
        if not self.ratio or is_nchan or value is None or nchan is None:
            return shown
        base = self.value(nchan)
        if not base:
            return shown
        return f"{shown} ({ratio_text(value / base)})"

    def verdict(self, realtime: dict[str, Any] | None, nchan: dict[str, Any] | None) -> str:
        said = []
        for target, met in self.targets:
            ok = None
            if realtime is not None:
                mine = None if error_of(realtime, self.scenario) else self.value(realtime)
                base = self.value(nchan) if nchan is not None else None
                ok = met(mine, base)
            said.append(target if ok is None else f"{target}: {'met' if ok else 'not met'}")
        return "; ".join(said)


def within_ratio(limit: float) -> Check:
    def check(mine: float | None, base: float | None) -> bool | None:
        if mine is None or not base:
            return None
        return mine <= limit * base

    return check


def at_most(limit: float) -> Check:
    return lambda mine, _base: None if mine is None else mine <= limit


def at_least(limit: float) -> Check:
    return lambda mine, _base: None if mine is None else mine >= limit


def last_sub(n: int, q: str) -> Getter:
    return lambda s: dig(step(s, n), "last_subscriber_ms", q)


def per_idle_stream_kib(server: dict[str, Any], n: int = 10000) -> float | None:
    s = step(server, n)
    base = dig(server, "broadcast", "baseline", "rss_kib")
    if s is None or base is None or not s.get("connected"):
        return None
    return float((s["rss_idle_kib"] - base) / s["connected"])


def delivered_text(server: dict[str, Any]) -> str | None:
    parts = []
    for s in dig(server, "broadcast", "steps") or []:
        expected = s.get("expected") or 0
        share = 100.0 * s.get("delivered", 0) / expected if expected else 0.0
        shown = f"{share:.1f}" if share < 99.95 else "100"
        if s.get("connected") != s.get("subscribers"):
            shown += f" ({s.get('connected')} open)"
        parts.append(shown)
    dups = sum(s.get("duplicates", 0) for s in dig(server, "broadcast", "steps") or [])
    return " / ".join(parts) + f"; dup {dups}" if parts else None


def connect_seconds(server: dict[str, Any]) -> float | None:
    """Seconds the broadcast's steps took to open every stream (1,000, then 4,000, then 5,000
    more); ``None`` if any failed to open."""
    steps = dig(server, "broadcast", "steps") or []
    if not steps:
        return None
    opened = sum(dig(s, "connect", "opened") or 0 for s in steps)
    if opened < steps[-1].get("subscribers", 0):
        return None
    return float(sum(dig(s, "connect", "seconds") or 0 for s in steps))


def inprocess(path: tuple[str, ...]) -> Getter:
    """A figure of ``bench/inprocess_publish.py``'s last run, for realtime's column only."""

    def get(server: dict[str, Any]) -> Any:
        if server is not INPROCESS.get("server"):
            return None
        return dig(INPROCESS.get("results"), *path)

    return get


# The realtime server of the table being written, and bench/inprocess_publish.py's results.
INPROCESS: dict[str, Any] = {}


def storm_text(server: dict[str, Any]) -> str | None:
    s = server.get("storm") or {}
    if "resumed" not in s:
        return None
    return f"{s['resumed']:,} / {s['missing']:,} / {s['duplicates']:,}"


def storm_ok(server: dict[str, Any]) -> float | None:
    s = server.get("storm") or {}
    if "resumed" not in s:
        return None
    return (
        1.0 if s["resumed"] == s["subscribers"] and not s["missing"] and not s["duplicates"] else 0
    )


ROWS = [
    Row("broadcast 1,000: last-subscriber latency p50 (ms)", "broadcast", last_sub(1000, "p50")),
    Row(
        "broadcast 1,000: last-subscriber latency p99 (ms)",
        "broadcast",
        last_sub(1000, "p99"),
        targets=(("≤ 3× Nchan (5)", within_ratio(3)),),
    ),
    Row("broadcast 5,000: last-subscriber latency p50 (ms)", "broadcast", last_sub(5000, "p50")),
    Row("broadcast 5,000: last-subscriber latency p99 (ms)", "broadcast", last_sub(5000, "p99")),
    Row(
        "broadcast 10,000: last-subscriber latency p50 (ms)",
        "broadcast",
        last_sub(10000, "p50"),
        targets=(("≤ 2× Nchan (5)", within_ratio(2)),),
    ),
    Row("broadcast 10,000: last-subscriber latency p99 (ms)", "broadcast", last_sub(10000, "p99")),
    Row(
        "broadcast 10,000: one delivery, p50 (ms)",
        "broadcast",
        lambda s: dig(step(s, 10000), "delivery_ms", "p50"),
    ),
    Row(
        "broadcast: % delivered at 1k / 5k / 10k; duplicates",
        "broadcast",
        lambda s: None,
        text=delivered_text,
    ),
    Row(
        "broadcast 10,000: server CPU per delivery (µs)",
        "broadcast",
        lambda s: dig(step(s, 10000), "server_cpu_us_per_delivery"),
    ),
    Row(
        "open 10,000 streams: time, all headers received (s)",
        "broadcast",
        connect_seconds,
        targets=(("≤ 2× Nchan (15)", within_ratio(2)),),
    ),
    Row(
        "open 10,000 streams: connect p99 at the last step (ms)",
        "broadcast",
        lambda s: dig(step(s, 10000), "connect", "connect_ms", "p99"),
    ),
    Row(
        "unicast 2,000 at 200/s: latency p50 (ms)",
        "unicast",
        lambda s: dig(s, "unicast", "delivery_ms", "p50"),
    ),
    Row(
        "unicast 2,000 at 200/s: latency p99 (ms)",
        "unicast",
        lambda s: dig(s, "unicast", "delivery_ms", "p99"),
        targets=(("≤ 5 ms (5)", at_most(5)), ("≤ 2× Nchan (15)", within_ratio(2))),
    ),
    Row(
        "server RSS with 10,000 idle streams (MiB)",
        "broadcast",
        lambda s: dig(step(s, 10000), "rss_idle_kib") / 1024,
    ),
    Row(
        "memory per idle stream at 10,000 (KiB)",
        "broadcast",
        per_idle_stream_kib,
        targets=(("≤ 20 KiB (5)", at_most(20)), ("≤ 1.5× Nchan (15)", within_ratio(1.5))),
    ),
    Row(
        "its Redis's RSS at 10,000 streams (MiB)",
        "broadcast",
        lambda s: dig(step(s, 10000), "aux_idle", "rss_kib") / 1024,
        ratio=False,
    ),
    Row(
        "publish, single events, wrk -c16 (events/s)",
        "throughput_single",
        lambda s: dig(s, "throughput_single", "events_per_s"),
        unit="int",
        targets=(("≥ 5,000/s (5, 15)", at_least(5000)),),
    ),
    Row(
        "publish in process, `rt.publish` from 16 greenlets, single events (events/s)",
        "throughput_single",
        inprocess(("in_process", "greenlets_single", "events_per_s")),
        unit="int",
        ratio=False,
    ),
    Row(
        "publish, batches of 100 (events/s)",
        "throughput_batch",
        lambda s: dig(s, "throughput_batch", "events_per_s"),
        unit="int",
        targets=(("≥ 50,000/s (5)", at_least(50000)),),
    ),
    Row(
        "storm of 1,000: resumed / missing / duplicates",
        "storm",
        storm_ok,
        text=storm_text,
        targets=(("all, 0, 0 (5)", lambda mine, _base: None if mine is None else mine == 1.0),),
    ),
    Row(
        "storm: every gap filled after the reconnect (s)",
        "storm",
        lambda s: dig(s, "storm", "catch_up_s"),
        targets=(("≤ 1.5× Nchan (15)", within_ratio(1.5)),),
    ),
    Row(
        "storm: live last-subscriber latency p99 meanwhile (ms)",
        "storm",
        lambda s: dig(s, "storm", "live_last_subscriber_ms", "p99"),
        targets=(("≤ 3× Nchan (15)", within_ratio(3)),),
    ),
    Row(
        "10,000 streams held: publish to another topic, 5 × 50 at once, p99 (ms)",
        "full",
        lambda s: dig(s, "full", "publish_elsewhere", "p99_ms"),
    ),
    Row(
        "10,000 streams held: publish to their topic, 50 at once, p99 (ms)",
        "full",
        lambda s: dig(s, "full", "publish_followed", "p99_ms"),
    ),
    Row(
        "10,000 streams held: the 50 events delivered / expected",
        "full",
        lambda s: None,
        text=lambda s: (
            f"{dig(s, 'full', 'delivered'):,} / {dig(s, 'full', 'expected'):,}"
            if dig(s, "full", "expected") is not None
            else None
        ),
    ),
]


def table(results: dict[str, Any]) -> str:
    servers = results["servers"]
    names = [n for n in ORDER if n in servers]
    nchan = servers.get("nchan")
    realtime = servers.get("realtime")
    INPROCESS["server"] = realtime
    path = RESULTS / "inprocess_publish.json"
    INPROCESS["results"] = json.loads(path.read_text()) if path.exists() else None
    head = "| scenario | " + " | ".join(NAMES[n] for n in names) + " | targets (issue) |"
    lines = [head, "|" + " --- |" * (len(names) + 2)]
    for row in ROWS:
        cells = [row.cell(servers[n], nchan, n == "nchan") for n in names]
        lines.append(
            f"| {row.label} | " + " | ".join(cells) + f" | {row.verdict(realtime, nchan)} |"
        )
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------


def plots(results: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = results["servers"]
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ORDER:
        steps = [s for s in dig(servers, name, "broadcast", "steps") or [] if s.get("delivered")]
        if not steps:
            continue
        xs = [s["subscribers"] for s in steps]
        for q, style in (("p50", "-o"), ("p99", "--^")):
            ys = [s["last_subscriber_ms"][q] for s in steps]
            ax.plot(xs, ys, style, color=COLORS[name], label=f"{NAMES[name]} {q}")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers of one topic")
    ax.set_ylabel("last-subscriber latency (ms, log)")
    ax.set_title("Broadcast: publish → the last subscriber's kernel receive")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path = RESULTS / "latency_vs_subscribers.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ORDER:
        server = servers.get(name) or {}
        steps = dig(server, "broadcast", "steps") or []
        base = dig(server, "broadcast", "baseline")
        if not steps or not base:
            continue
        xs = [0] + [s["connected"] for s in steps]
        ys = [base["rss_kib"] / 1024] + [s["rss_idle_kib"] / 1024 for s in steps]
        ax.plot(xs, ys, "-o", color=COLORS[name], label=f"{NAMES[name]} (server)")
        if base.get("aux") and all(s.get("aux_idle") for s in steps):
            ys = [base["aux"]["rss_kib"] / 1024] + [s["aux_idle"]["rss_kib"] / 1024 for s in steps]
            ax.plot(xs, ys, ":s", color=COLORS[name], label=f"{NAMES[name]}'s Redis")
    ax.set_xlabel("open SSE connections (idle)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("Resident memory vs connections")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = RESULTS / "rss_vs_connections.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)
    return written


# -- the README -----------------------------------------------------------------------------------


def hub_section() -> str:
    path = RESULTS / "hub_fanout.json"
    if not path.exists():
        return "## hub_fanout — the hub's per-event cost\n\n(no results yet: `make bench`)\n"
    hub = json.loads(path.read_text())
    burst, paced = hub["burst"], hub["paced"]
    per_event_ms = paced["us_per_delivery_cpu"] * paced["subscribers"] / 1000
    ceiling = 1e6 / paced["us_per_delivery_cpu"] if paced["us_per_delivery_cpu"] else 0
    m = hub["machine"]
    return f"""## hub_fanout — the hub's per-event cost, without sockets

`bench/hub_fanout.py`: one worker's hub (a reader greenlet on the firehose, dispatch by topic,
bounded per-connection queues) feeding N consumers that run the real SSE `live()` generator,
pinned to CPU 0; `redis-server` and the publisher pinned to CPU 1. Sockets are left out on
purpose, to isolate the hub and framing from the kernel; the suite above measures the whole path.
Without sockets no stream has a direct writer, so this is the *queue path*: the one a stream
takes when it is busy, behind, or not served by gunicorn. Under gunicorn the reader writes to a
waiting stream's socket itself (`realtime/fanout/directwrite.py`), which the suite measures.

- **burst**: {burst["events"]:,} events published back to back to {burst["subscribers"]:,}
  subscribers of one topic. Bursts coalesce: a woken consumer writes everything queued in one chunk.
- **paced**: {paced["events"]:,} events at {paced["rate_per_s"]:g}/s to {paced["subscribers"]:,}
  subscribers: each event wakes every consumer on its own, the worst case per delivery.
  *Last-subscriber lag* is publish → the moment the last generator produced the event's bytes.

Latest run ({hub["when"][:10]}, {m["cores"]} cores, Python {m["python"]}, one gevent process):

| scenario | deliveries/s (wall) | CPU µs per delivery | last-subscriber lag p50 / p99 |
| --- | --- | --- | --- |
| burst, {burst["events"]:,} × {burst["subscribers"]:,} | {burst["deliveries_per_s"]:,} | \
{burst["us_per_delivery_cpu"]} | (a backlog: {num(burst["last_subscriber_lag_ms_p50"])} / \
{num(burst["last_subscriber_lag_ms_p99"])} ms) |
| paced {paced["rate_per_s"]:g}/s, {paced["events"]:,} × {paced["subscribers"]:,} | \
{paced["deliveries_per_s"]:,} (the rate, not a limit) | {paced["us_per_delivery_cpu"]} | \
{num(paced["last_subscriber_lag_ms_p50"])} / {num(paced["last_subscriber_lag_ms_p99"])} ms |

Read the paced row as: fanning one event out to {paced["subscribers"]:,} subscribers costs about
{per_event_ms:.1f} ms of one core when each delivery is its own wake-up, so one core saturates
near {ceiling:,.0f} such deliveries per second; bursts amortise that to about
{burst["us_per_delivery_cpu"]} µs. The CPU figure includes the benchmark consumer's own
bookkeeping (parsing the id back out of each chunk).
"""


def full_worker_section() -> str:
    """Issue 10's line 4: one worker holding 10,000 streams, as shipped, still answers."""
    path = RESULTS / "full_worker.json"
    title = "## full_worker — a worker at its stream limit still answers"
    if not path.exists():
        return f"{title}\n\n(no results yet: `make bench`)\n"
    fw = json.loads(path.read_text())
    m = fw["machine"]
    commit = f"`{m.get('commit') or '?'}`"
    if m.get("server_changes"):
        commit += " (with uncommitted server changes)"

    def row(name: str, part: dict[str, Any]) -> str:
        statuses = ", ".join(f"{n} × {s}" for s, n in sorted(part["statuses"].items()))
        return (
            f"| {name} | {part['count']} ({statuses}) | {num(part['p50_ms'])} | "
            f"{num(part['p99_ms'])} | {num(part['max_ms'])} | {part['within_1s']} |"
        )

    over, ws = fw["stream_over_limit"], fw["websocket_over_limit"]
    n = fw["streams_open"]
    with_retry = "with" if over["retry_after"] else "without"
    broadcast_name = f"publish to the topic of all {n:,} streams, 50 at once"
    broadcast = row(broadcast_name, fw["publish_broadcast"])
    return f"""{title}

`bench/full_worker.py`, latest run {fw["when"]} (UTC) at commit {commit}: {fw["settings"]}
(`REALTIME_MAX_CONNECTIONS` {fw["streams_wanted"]:,}, so gunicorn's `worker_connections` is that
plus `REALTIME_CONNECTION_HEADROOM`), the worker on CPU 0, its `redis-server` and this
benchmark on CPU 1. {n:,} streams of one topic were opened from 20 loopback addresses (500
each, the per-address default) in {fw["open_all_s"]} s; the worker then held
{fw["worker_rss_mib"]} MiB. Then, every request on a new connection and timed from connect to
the last byte of its answer:

| request | count | p50 (ms) | p99 (ms) | max (ms) | answered within 1 s |
| --- | --- | --- | --- | --- | --- |
{row("publish to a topic nobody follows, 5 rounds of 50 at once", fw["publish_quiet"])}
{broadcast}
{row("all publishes", fw["publish_all"])}
{row("`/healthz`", fw["healthz"])}
{row("`/metrics`", fw["metrics"])}

- `/readyz` answered {fw["readyz"]["status"]} (`full`) in {num(fw["readyz"]["ms"])} ms.
- Stream {n + 1:,} got {over["status"]} {with_retry} `Retry-After` in {num(over["ms"])} ms;
  WebSocket {n + 1:,} got `{ws["error"]}` and close {ws["close_code"]} in {num(ws["ms"])} ms.
- Every stream received all 50 broadcast events: {fw["streams_with_all_50"]:,} of {n:,}
  ({fw["streams_cut"]} cut); the fan-out cost {fw["broadcast_cpu_s"]} s of CPU.
- A broadcast publish is answered once the worker, busy fanning the others out to {n:,}
  sockets, gets to it: that wait, not the request path, is its latency.
"""


def inprocess_section() -> str:
    """Issue 13's line 9: publishing from Python (``rt.publish``) beside ``POST /publish``."""
    path = RESULTS / "inprocess_publish.json"
    title = "## inprocess_publish — `rt.publish` from Python beside `POST /publish`"
    if not path.exists():
        return f"{title}\n\n(no results yet: `make bench`)\n"
    ip = json.loads(path.read_text())

    def row(name: str, part: dict[str, Any]) -> str:
        if "error" in part:
            return f"| {name} | failed | | |"
        busy = part.get("cpu_busy")
        if busy is None and part.get("seconds"):
            busy = round(part.get("server_cpu_s", 0) / part["seconds"], 3)
        return (
            f"| {name} | {num(part['events_per_s'])} | "
            f"{num(part.get('calls_per_s', part.get('requests_per_s')))} | {num(busy)} |"
        )

    runs = ip["in_process"]
    http = ip["http"]
    many = runs["greenlets_single"].get("callers", 8)
    conns = http["single"].get("connections", 8)
    return f"""{title}

`bench/inprocess_publish.py`, latest run {ip["when"]} (UTC) at commit `{ip.get("commit", "?")}`.
The publishing process (or, for HTTP, one gunicorn worker with the suite's settings) runs on
CPU 0; its `redis-server` (and `wrk`) on CPU 1; no subscriber; ~100-byte events; batches of 100
in one call (`publish_many`) or one request. "{many} at once" is {many} greenlets (or threads)
sharing one `Publisher`, as wrk's {conns} connections share the worker. CPU 0 busy is the
publishing process's CPU time over the run's wall time.

| publisher | events/s | calls/s | CPU 0 busy |
| --- | --- | --- | --- |
{row("in process, 1 caller, single events", runs["sequential_single"])}
{row("in process, 1 caller, batches of 100", runs["sequential_batch"])}
{row(f"in process, {many} greenlets, single events", runs["greenlets_single"])}
{row(f"in process, {many} greenlets, batches of 100", runs["greenlets_batch"])}
{row(f"in process, {many} threads (no gevent), single events", runs["threads_single"])}
{row(f"in process, {many} threads (no gevent), batches of 100", runs["threads_batch"])}
{row(f"HTTP `POST /publish`, wrk -c{conns}, single events", http["single"])}
{row(f"HTTP `POST /publish`, wrk -c{conns}, batches of 100", http["batch"])}
"""


def mercure_section() -> str:
    """Issue 14: what the Mercure hub's per-subscriber selection costs the reader."""
    path = RESULTS / "mercure_select.json"
    title = "## mercure_select — choosing each Mercure update per subscriber, in the reader"
    if not path.exists():
        return f"{title}\n\n(no results yet: `make bench`)\n"
    ms = json.loads(path.read_text())
    base, sel = ms["without_select"], ms["with_select"]

    def row(name: str, part: dict[str, Any]) -> str:
        return (
            f"| {name} | {part['seconds']} | {part['delivered']:,} | {part['us_per_selection']} |"
        )

    return f"""{title}

`bench/mercure_select.py`, latest run {ms.get("when", "?")} (UTC) at commit
`{ms.get("commit", "?")}`. {ms["subscribers"]:,} subscriptions on one worker's hub (CPU 0, its
`redis-server` on CPU 1) of 1 to 3 random selectors each (exact, URI Template, URL Pattern),
{ms["updates"]:,} updates published back to back. Every update is tested against every
subscriber by the reader greenlet itself, before anything is queued: while it tests, no stream
of the worker gets an event.

| | seconds until every subscriber drained | deliveries | µs per update and subscriber |
| --- | --- | --- | --- |
{row("every update queued to all (no select)", base)}
{row("selected (`Reader.wants`)", sel)}

The selection itself: {ms["selection_us_each"]} µs per update and subscriber, so one update to
10,000 Mercure subscribers holds the reader for about
{round(ms["selection_us_each"] * 10_000 / 1000, 1)} ms.
"""


def hot_path_section() -> str:
    """What was done to the hot path, and what stands between realtime and the issues' targets.

    Written by hand from measurements (dated), not from this run's JSON: the table above has the
    latest figures."""
    return """## The hot path, round one (issue 5, measured 2026-11-22)

- **The reader writes to waiting sockets itself** (`realtime/fanout/directwrite.py`). A broadcast
  used to wake one greenlet per subscriber per event (set, switch, resume the generator, let
  gunicorn frame and send): 45-50 µs of worker CPU per delivery. When a stream's greenlet is parked
  with nothing queued, the reader now sends the event's bytes, encoded and chunk-framed once per
  worker, with one non-blocking `send`: 12-15 µs per delivery, of which the `send` is most (85 % of
  the worker's samples at 10,000 subscribers; a loopback TCP `send` alone costs 8-12 µs on this
  machine, Nchan's whole delivery 10 µs). Busy or slow streams keep the bounded queue.
- **A topic's events of one firehose read go out as one write per stream**, so a saturated
  worker catches up instead of falling further behind.
- **Full GC passes no longer scan every open stream** (`realtime/ops/gcpolicy.py`, `gc.freeze`):
  with 2,000 streams a pass paused the worker 160-190 ms every few seconds under steady
  publishing (unicast p99 24 ms, max 242 ms); now about 1.5 ms. Survivors are frozen every
  second: at every 10 s, streams opened just before a burst were still scanned (p99 8 ms).
- **Publishing**: verified tokens are remembered (exp/nbf still checked on each use), publishes
  that arrive together share one Redis round trip (each still its own atomic script call) on
  one of three publish lanes (so a round trip is in flight while the next is sent), each lane
  a connection kept from the pool's budget: 1,150-1,450 → 490-630 µs of worker CPU per single
  publish; batches of 100 from 46,200 to 50,600-66,500 events/s on this machine.
- **Presence refreshes no longer stall delivery**: every TTL/3 the worker refreshed every entry in
  one pipeline (143 ms without a yield at 10,000 streams); now one script call per 64 entries
  with a yield between: unicast p99 6.3-7.0 → 3.0-4.0 ms with presence on.
- **Idle streams**: the body goes to gunicorn as it is (no werkzeug wrappers on the stack), the
  queue starts as an empty list, the overflow cut is one slotted object: 26.7 → 23 KiB of RSS
  per idle stream at 5,000 (round two below takes the greenlet itself away).

## The hot path, round two (issue 15, measured 2026-12-07)

- **Resumes and fresh streams from memory** (`realtime/fanout/window.py`): the newest 10,000
  events the reader saw answer a resume (where Redis would answer the same) and a fresh
  stream's start, without a Redis round trip. A 1,000-client storm: live p99 1,614 → 600 ms,
  every gap filled 1.73 → 0.68 s, before the lean path below took them further.
- **The publish script**: reading 64 entries of a topic to find its oldest time, and cutting a
  topic back at every publish, cost 249 µs of Redis per publish (it capped publishing at about
  4,000/s on its own); now one entry, and a cut every maxlen/16 publishes (the replay check still
  cuts exactly): 71 µs. Arguments packed by hiredis in C (3 µs, redis-py's encoder 27 µs).
- **The lean path** (`realtime/worker.py`, `realtime/web/lean.py`): a plain publish or stream is
  read and answered by realtime's gunicorn worker with the views' own decisions, skipping
  gunicorn's request objects and Flask: a publish cost ~640 µs of worker CPU through them, ~200
  µs lean; a stream's start ~450 µs, ~250 µs lean (10,000 streams in 6.9 s → 2.9-3.0 s).
- **Idle streams without greenlets** (`realtime/fanout/idle.py`): a stream with nothing to do
  leaves its greenlet and gunicorn's request; the worker holds it (the reader writes to it, a
  timer heap wakes it for heartbeats and deadlines, it borrows a greenlet when it needs one), a
  `StreamSlot` keeps its place in gunicorn's pool: 22-26 → 2.7 KiB per idle stream.
- **Single publishes share one Redis lane** (batches spread over the others): 4,650 → 5,300/s
  in one measurement; and a worker's own publish is delivered when Redis answers it, before its
  201, not when the reader reads it back.

Not met, and why:

- **Unicast p99 (≈ 1.1-2.0 ms, target 2× Nchan ≈ 0.5-0.6 ms).** At 200 events a second each
  publish finds an idle worker: measured at that rate, one publish costs the worker 610 µs of
  CPU with no subscriber at all (950 µs with 2,000 held streams), where the same path costs
  about 200 µs when the worker is busy: the interpreter's working set is cold at every event.
  The path has four cross-core hops where Nchan has two (client → worker → Redis → worker →
  subscriber); pinning Redis to the worker's core changed nothing measurable (p50 0.57-0.76 ms
  against 0.68-0.71). What is left on it is Python's own cost: parsing, the token, the
  validation, the script's arguments, the reply, the dispatch.
- **Single publishes (4,200-5,100/s across runs, target 5,000).** The worker is CPU-bound at
  about 200 µs a publish: gevent's loop and its socket waits (two per publish: the request and
  the Redis reply) about a third, the request head and the answer a fifth, the publish's own
  Python (token, JSON, validation, keys and arguments) a fifth, hiredis packing and parsing the
  rest; the figure moves ±10 % between runs on this shared machine. In process, 16 greenlets
  publish 8,800 events/s; a batch of 100 per request, 77,000-111,000 events/s.
"""


def profile_section(results: dict[str, Any]) -> str:
    prof = results.get("profile")
    if not prof:
        return ""
    if "error" in prof:
        return f"## Profile\n\nThe py-spy run failed: {prof['error'][:300]}\n"
    top = prof.get("top") or {}
    run = prof.get("run") or {}
    steps = run.get("steps") or [{}]
    last = steps[-1]
    lines = [
        "## Where realtime spends its time at 10,000 subscribers (py-spy)",
        "",
        f"The 10,000-subscriber broadcast again ({last.get('events', '?')} events at "
        f"{last.get('rate_per_s', '?')}/s), its worker sampled by two `py-spy record --nonblocking"
        " --rate 100` processes on CPU 1: the flame graph "
        f"[`results/{prof['svg']}`](results/{prof['svg']}) and the collapsed stacks "
        f"`results/{prof['raw']}` ({top.get('samples', 0):,} samples; an idle worker is not "
        "sampled). Last-subscriber latency in that run, with the samplers attached: p50 "
        f"{num(dig(last, 'last_subscriber_ms', 'p50'))} ms, p99 "
        f"{num(dig(last, 'last_subscriber_ms', 'p99'))} ms.",
        "",
        "| hottest functions, own time | share | | realtime's functions, with callees | share |",
        "| --- | --- | --- | --- | --- |",
    ]
    own = top.get("self") or []
    incl = top.get("inclusive") or []
    for i in range(max(len(own), len(incl))):
        a = own[i] if i < len(own) else None
        b = incl[i] if i < len(incl) else None
        cells = []
        for entry in (a, b):
            if entry is None:
                cells += ["", ""]
            else:
                frame = entry["frame"].replace("|", "\\|")
                cells += [f"`{frame}`", f"{100 * entry['share']:.1f}%"]
        lines.append(f"| {cells[0]} | {cells[1]} | | {cells[2]} | {cells[3]} |")
    return "\n".join(lines) + "\n"


def machine_text(results: dict[str, Any]) -> str:
    m = results["machine"]
    pk = m.get("packages") or {}
    return (
        f"- CPU: {m['cpu']}, `nproc` {m['nproc']}; memory (`free -h`): `{m['memory']}`; "
        f"{m['kernel']}; `ulimit -n` {m['nofile']}\n"
        f"- Python {m['python']}, gunicorn {pk.get('gunicorn')}, gevent {pk.get('gevent')}, "
        f"redis-py {pk.get('redis')}; {m['redis']}\n"
        f"- nginx {m['nginx']} with Nchan {m['nchan']} (Debian); sse-starlette "
        f"{pk.get('sse-starlette')} on uvicorn {pk.get('uvicorn')}; "
        f"flask-sse {pk.get('flask-sse')}; "
        f"wrk {m.get('wrk') or 'not installed (the load generator publishes instead)'}"
    )


def plan_text(results: dict[str, Any]) -> str:
    plan = results.get("plan") or {}
    steps = (plan.get("broadcast") or ["", "", ""])[2]
    parts = []
    for item in steps.split(","):
        if "x" in item and "@" in item:
            subs, rest = item.split("x")
            events, rate = rest.split("@")
            parts.append(f"{int(subs):,} subscribers: {events} events at {rate}/s")
    return "; ".join(parts)


def interference_text(results: dict[str, Any]) -> str:
    """How much CPU 0 time other processes took while the servers were measured."""
    parts = []
    waited = 0.0
    for name in ORDER:
        server = results["servers"].get(name)
        if not server:
            continue
        total = 0.0
        for entry in server.values():
            if isinstance(entry, dict):
                total += entry.get("cpu0_others_s") or 0.0
                waited += entry.get("waited_for_quiet_s") or 0.0
        parts.append(f"{NAMES[name]} {total:.1f} s")
    if not parts:
        return ""
    return (
        "CPU 0 time used by other processes (and by interrupts) while each server was measured: "
        + ", ".join(parts)
        + f". Before each scenario the suite waited for a quiet machine ({waited:.0f} s in all)."
    )


def write_readme(results: dict[str, Any], pictures: list[str]) -> None:
    when = results["when"]
    wall = results.get("make_bench_wall_s")
    wall_text = (
        f"`make bench` took {wall / 60:.1f} min end to end (installs, hub_fanout, the suite and "
        f"the profile); the suite alone {results['suite_wall_s'] / 60:.1f} min."
        if wall
        else f"The suite took {results.get('suite_wall_s', 0) / 60:.1f} min."
    )
    quick = (
        "\n**This run used `--quick` (small counts): its figures are not comparable.**\n"
        if results.get("quick")
        else ""
    )
    images = "\n".join(f"![{p}](results/{p})" for p in pictures)
    m = results["machine"]
    commit = f"`{m.get('commit') or '?'}`"
    if m.get("server_changes"):
        commit += (
            f" with uncommitted server changes ({m['server_changes'].strip()}; diff sha1 "
            f"{m.get('server_diff_sha1', '?')})"
        )
    text = f"""# Benchmarks

`make bench` installs what it needs (`nginx` and `libnginx-mod-nchan` and `wrk` from Debian when
missing, then `pip install -e '.[bench]'`), runs `bench/hub_fanout.py`, `bench/full_worker.py`,
`bench/inprocess_publish.py`, `bench/mercure_select.py` and the HTTP suite `bench/suite.py`,
and writes every figure to `bench/results/` and this README. Benchmarks measure; no test
asserts on speed. `python bench/report.py` redraws the plots and this file from the JSON;
`python bench/suite.py --quick` tries the suite in a couple of minutes.

## The HTTP suite: realtime beside nginx + Nchan, sse-starlette and flask-sse

Latest run: {when} (UTC), command `{results["command"]}`, at commit {commit}. {wall_text}
{quick}
{machine_text(results)}

Each cell is the figure and, in brackets, its ratio to nginx + Nchan's in the same run (lower is
better for latency, time and memory; higher for throughput). "n/a": the server has no such
feature; "failed": the run broke (see `results/suite.json`).

{table(results)}

{interference_text(results)}

{images}

### How it is measured

- **One worker on one core each**: the server is pinned to CPU 0 (`taskset -c 0`): realtime as
  gunicorn with its own `gunicorn.conf.py` and 1 gevent worker; nginx with 1 worker process and
  Nchan's memory store (`bench/peers/nchan.conf`); sse-starlette on uvicorn (uvloop, httptools)
  with an in-process broadcast (`bench/peers/starlette_app.py`); flask-sse on gunicorn's gevent
  worker (`bench/peers/flasksse_app.py`). The load generator, `wrk`, py-spy and the Redis servers
  of realtime and flask-sse (private `redis-server`s, started for the run) share CPU 1.
- **A shared machine.** Other people's test runs use these two cores too. Every process of the
  suite runs at nice -10 (as root) and each scenario waits up to 10 s for a quiet machine, but
  the line under the table says how much CPU 0 time others still took, and figures move between
  runs (up to 2-3× for the Python servers' latencies here): compare within one run, by ratio.
- **A fresh server for every scenario.** Access logs are off on all four. realtime runs with
  `REALTIME_PUBLISH_RATE=0`, `REALTIME_MAX_CONNECTIONS` and `…_PER_IP` at 15,000 (so a
  worker accepts 16,000 connections), everything else at its default (presence on, a 15 s
  heartbeat, JWT auth on every stream and publish).
- **The load generator** (`bench/loadgen.py`, asyncio, one process) holds every stream itself.
  Each event's data carries its publish time (ns, taken as the publish request is written);
  arrival is the kernel's receive timestamp of the bytes (`SO_TIMESTAMPNS`), so the generator's
  own lag in reading 50,000 deliveries a second does not count (`suite.json` keeps the
  user-space figure beside it). *Last-subscriber latency* is, per event, publish → the arrival
  at the last of the subscribers; the table gives its median and 99th percentile over the events.
- **Broadcast** adds subscribers to one topic in steps ({plan_text(results)}); all events count,
  after 5 warm-up events. Connections open 256 at a time; connect time is connect → response
  headers. *Memory per idle stream* is (worker RSS with 10,000 idle streams − RSS before the
  first) / 10,000. No event count was shortened to fit the time.
- **Unicast**: 2,000 subscribers, each on its own topic; 2,000 events at 200/s round-robin.
- **Storm**: 1,000 subscribers of one topic, events at 20/s throughout: after 2 s every stream is
  closed, 1 s later all reconnect at once with `Last-Event-ID`, and publishing goes on for 5 s.
  Every subscriber must end up with every event once. *Every gap filled* is the time from the
  reconnect until the last subscriber holds every event published before it; the latency is that
  of events published after the reconnect began (does the replay stall live delivery?).
  sse-starlette and flask-sse keep no history, so they are n/a.
- **A worker holding 10,000 streams** (realtime and Nchan only): publishes each on a connection
  of its own, timed from connect to the last byte of the answer, as `bench/full_worker.py` times
  them: 5 rounds of 50 at once to a topic nobody follows, then 50 at once to the topic of all
  10,000 streams (each a 10,000-way fan-out), every event to reach every stream.
- **Publish throughput**: `wrk -t1 -c16 -d{(results.get("plan") or {}).get("throughput_s", 5)}s`,
  no subscriber, ~100-byte events; batches of 100 as one JSON request. Nchan has no batch
  publish; the sse-starlette and flask-sse apps take a batch as a loop of single publishes.
- **flask-sse** sends its response headers with its first event (gunicorn writes headers with the
  first body chunk), so its connect time is not measurable; the generator asks the app for
  `PUBSUB NUMSUB` until every stream is subscribed instead. Each of its streams holds its own
  Redis connection, so 10,000 streams need 20,000 descriptors in one process, the machine's
  hard limit: what did not open is shown in the table.

{full_worker_section()}
{inprocess_section()}
{mercure_section()}
{hot_path_section()}
{profile_section(results)}
{hub_section()}
## Files

- `loadgen.py`: the load generator; `suite.py`: starts the servers and runs the scenarios;
  `report.py`: this README and the plots; `wrk_publish.lua`: the throughput requests;
  `setup.sh`: the installs `make bench` does; `hub_fanout.py`: the in-process hub benchmark;
  `full_worker.py`: a worker holding its 10,000 streams, as shipped, still answering;
  `inprocess_publish.py`: publishing from Python beside publishing over HTTP;
  `mercure_select.py`: the Mercure hub's selection of each update per subscriber.
- `peers/`: the nginx + Nchan config, the sse-starlette and flask-sse apps, and realtime's
  gunicorn settings for the suite (the repository's, with the access log off).
- `results/suite.json` (every figure of the last run, including those not in the table),
  `results/hub_fanout.json`, `results/full_worker.json`, the plots, and the py-spy flame graph
  and collapsed stacks.
"""
    README.write_text(text)


def write_report(path: Path = RESULTS / "suite.json") -> None:
    results = json.loads(path.read_text())
    pictures = plots(results)
    write_readme(results, pictures)
    print(f"wrote {README.relative_to(BENCH.parent)} and {', '.join(pictures)}", file=sys.stderr)


if __name__ == "__main__":
    write_report(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "suite.json")
