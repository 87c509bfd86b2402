"""The HTTP benchmark suite: realtime beside nginx + Nchan, sse-starlette and flask-sse.

Each server runs alone, one worker pinned to CPU 0 (``taskset -c 0``); the load generator, wrk,
py-spy and the Redis servers run on CPU 1. Every scenario gets a freshly started server and, where
one is needed, a fresh private ``redis-server`` (never the machine's own on 6379). Everything
talks to 127.0.0.1, every wait is bounded, and every process started here is stopped here, by
its pid.

Scenarios (``bench/loadgen.py`` does the measuring):

- broadcast: subscribers of one topic added in steps 1,000 → 5,000 → 10,000; at each step events
  are published at a paced rate and every delivery is timed; RSS is read at every step.
- unicast: 2,000 subscribers, each on its own topic, 200 events/s in all.
- storm: 1,000 subscribers drop at once and resume with ``Last-Event-ID`` (servers with history
  only: realtime and Nchan; the others get n/a).
- full: 10,000 streams held, publishes each on a connection of its own, timed to their answer
  (realtime and Nchan only).
- throughput: publishes with no subscriber, single events and batches of 100 (``wrk``).
- profile: realtime's 10,000-subscriber broadcast again under ``py-spy`` (not in the table).

Results go to ``bench/results/suite.json``; ``bench/report.py`` turns them into the plots and
``bench/README.md``. Usage: ``python bench/suite.py [--quick] [--servers realtime,nchan]``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PEERS = BENCH / "peers"
sys.path[:0] = [str(BENCH), str(ROOT)]

from loadgen import proc_sample  # noqa: E402
from report import write_report  # noqa: E402

from realtime.core.auth import mint_token  # noqa: E402
from realtime.storage.redis_server import RedisServer, find_redis_binaries, free_port  # noqa: E402

SERVERS = ("realtime", "nchan", "starlette", "flasksse")
RESUMABLE = {"realtime", "nchan"}
BESIDE_NCHAN = {"realtime", "nchan"}  # scenarios of issue 15 that only compare these two
SERVER_CPU = "0"
LOAD_CPU = "1"
SECRET = "bench-secret-" + "x" * 40
BIN = Path(sys.executable).parent
WRK_CONNECTIONS = 16  # concurrent publishers in the throughput runs (issue 15's wrk -c16)

FULL = {
    "broadcast": ["broadcast", "--steps", "1000x200@20,5000x100@10,10000x50@5"],
    "unicast": ["unicast", "--subscribers", "2000", "--events", "2000", "--rate", "200"],
    "storm": ["storm", "--subscribers", "1000", "--rate", "20"],
    "full": ["full", "--subscribers", "10000", "--rounds", "5", "--at-once", "50"],
    "profile": ["broadcast", "--steps", "10000x50@5"],
    "throughput_s": 5,
}
QUICK = {
    "broadcast": ["broadcast", "--steps", "200x20@20,500x20@10,1000x10@5"],
    "unicast": ["unicast", "--subscribers", "200", "--events", "200", "--rate", "100"],
    "storm": ["storm", "--subscribers", "200", "--rate", "20", "--after", "2"],
    "full": ["full", "--subscribers", "1000", "--rounds", "2", "--at-once", "20"],
    "profile": ["broadcast", "--steps", "1000x20@5"],
    "throughput_s": 2,
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


NICE = -10  # ahead of whatever else this shared machine runs (needs root; else ignored)


def on_cpu(cpu: str) -> list[str]:
    """The command prefix that runs a process of the suite on ``cpu``, at the suite's priority.

    The machine may be shared (other people's test runs): a process at nice -10 gets about nine
    tenths of a contended core, so the figures move much less with what else is running.
    """
    prefix = ["taskset", "-c", cpu]
    nice = shutil.which("nice")
    if nice and os.geteuid() == 0:
        prefix = [nice, "-n", str(NICE), *prefix]
    return prefix


def pin(pid: int, cpu: str) -> None:
    """Pin every thread of ``pid`` (a Redis has background threads) to ``cpu``, at NICE."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {int(cpu)})
            if os.geteuid() == 0:
                os.setpriority(os.PRIO_PROCESS, int(task.name), NICE)
        except OSError:
            pass


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float = 15.0) -> None:
    """Signal the process we started; SIGKILL it (and its children we know) if it lingers."""
    if process.poll() is not None:
        return
    kids = children(process.pid)
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for kid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(kid, signal.SIGKILL)


@dataclass
class Server:
    """A running server: its pids (what the load generator samples) and how to stop it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    pids: list[int]
    stop_signal: int
    log_path: Path
    token: str = ""
    redis: RedisServer | None = None
    aux_pids: list[int] = field(default_factory=list)

    def stop(self) -> None:
        stop_process(self.process, self.stop_signal)
        if self.redis is not None:
            self.redis.stop(kill=True)

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def start_redis(directory: Path, maxclients: int = 0) -> RedisServer:
    binary = find_redis_binaries()[0]
    server = RedisServer(binary, directory).start()
    assert server.process is not None
    pin(server.process.pid, LOAD_CPU)
    if maxclients:
        import redis

        client = redis.Redis.from_url(server.url)
        client.config_set("maxclients", maxclients)
        client.close()
    return server


def spawn(
    name: str,
    argv: list[str],
    tmp: Path,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = tmp / f"{name}.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [*on_cpu(SERVER_CPU), *argv],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return process, log_path


def realtime_env(tmp: Path, port: int, redis_url: str, settings: dict[str, str]) -> dict[str, str]:
    """One worker of realtime on ``port`` and ``redis_url``: this environment without any
    REALTIME_* variable of its own, the bench's JWT secret, and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env.update(
        {
            "REALTIME_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "1",
            "REALTIME_REDIS_URL": redis_url,
            "REALTIME_JWT_SECRET": SECRET,
            "REALTIME_DATA_DIR": str(tmp / "var"),
            "PYTHONPATH": str(ROOT),
            **settings,
        }
    )
    return env


def start_realtime(tmp: Path) -> Server:
    redis_server = start_redis(tmp / "redis")
    port = free_port()
    settings = {
        "REALTIME_PUBLISH_RATE": "0",
        # 10,000 subscribers at most; + the 1,000 of headroom stays under `ulimit -n` 20,000.
        "REALTIME_MAX_CONNECTIONS": "15000",
        "REALTIME_MAX_CONNECTIONS_PER_IP": "15000",
    }
    env = realtime_env(tmp, port, redis_server.url, settings)
    gunicorn = str(BIN / "gunicorn")
    argv = [gunicorn, "-c", str(PEERS / "realtime_gunicorn.py"), "app:app"]
    process, log_path = spawn("realtime", argv, tmp, env)
    token = mint_token(
        secret=SECRET, subject="bench", publish=["*"], subscribe=["*"], ttl_s=4 * 3600
    )
    return finish_start("realtime", port, process, log_path, signal.SIGQUIT, token, redis_server)


def nchan_module() -> str:
    for candidate in glob.glob("/usr/lib/nginx/modules/ngx_nchan_module.so") + glob.glob(
        "/usr/lib*/nginx/modules/ngx_nchan_module.so"
    ):
        return candidate
    raise RuntimeError("ngx_nchan_module.so not found: apt-get install libnginx-mod-nchan")


def start_nchan(tmp: Path) -> Server:
    port = free_port()
    prefix = tmp / "nginx"
    prefix.mkdir()
    conf = (PEERS / "nchan.conf").read_text()
    for key, value in {"prefix": str(prefix), "port": str(port), "module": nchan_module()}.items():
        conf = conf.replace("{" + key + "}", value)
    (prefix / "nginx.conf").write_text(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    argv = [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    process, log_path = spawn("nchan", argv, tmp)
    return finish_start("nchan", port, process, log_path, signal.SIGTERM, worker_children=True)


def start_starlette(tmp: Path) -> Server:
    port = free_port()
    argv = [str(BIN / "uvicorn"), "--app-dir", str(PEERS), "starlette_app:app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    argv += ["--log-level", "warning", "--backlog", "4096", "--timeout-graceful-shutdown", "2"]
    process, log_path = spawn("starlette", argv, tmp)
    return finish_start("starlette", port, process, log_path, signal.SIGTERM, worker_children=False)


def start_flasksse(tmp: Path) -> Server:
    redis_server = start_redis(tmp / "redis", maxclients=19000)
    port = free_port()
    env = dict(os.environ, REDIS_URL=redis_server.url)
    argv = [str(BIN / "gunicorn"), "-k", "gevent", "-w", "1", "--worker-connections", "20000"]
    argv += ["--backlog", "4096", "-b", f"127.0.0.1:{port}", "--chdir", str(PEERS)]
    argv += ["flasksse_app:app"]
    # Started in bench/peers: gunicorn reads ./gunicorn.conf.py when given no -c, and realtime's
    # (in the repository's root) would apply its checks and hooks to flask-sse.
    process, log_path = spawn("flasksse", argv, tmp, env, cwd=PEERS)
    return finish_start("flasksse", port, process, log_path, signal.SIGQUIT, "", redis_server)


def finish_start(
    name: str,
    port: int,
    process: subprocess.Popen[bytes],
    log_path: Path,
    stop_signal: int,
    token: str = "",
    redis_server: RedisServer | None = None,
    worker_children: bool = True,
) -> Server:
    server = Server(name, port, process, [], stop_signal, log_path, token, redis_server)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{exc}\n{server.log_tail()}") from None
    server.pids = children(process.pid) if worker_children else [process.pid]
    if redis_server is not None and redis_server.process is not None:
        server.aux_pids = [redis_server.process.pid]
    return server


STARTERS = {
    "realtime": start_realtime,
    "nchan": start_nchan,
    "starlette": start_starlette,
    "flasksse": start_flasksse,
}


@contextmanager
def running(name: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        server = STARTERS[name](Path(tmp))
        try:
            yield server
        finally:
            server.stop()


# -- running the load ----------------------------------------------------------------------------


def loadgen_argv(server: Server, scenario: list[str], timeout: float) -> list[str]:
    argv = [*on_cpu(LOAD_CPU), sys.executable, str(BENCH / "loadgen.py")]
    argv += ["--kind", server.name, "--port", str(server.port), "--timeout", str(timeout)]
    argv += ["--drain", "20"]
    if server.token:
        argv += ["--token", server.token]
    for pid in server.pids:
        argv += ["--pid", str(pid)]
    for pid in server.aux_pids:
        argv += ["--aux-pid", str(pid)]
    return argv + scenario


def loadgen(server: Server, scenario: list[str], timeout: float) -> dict[str, Any]:
    """Run bench/loadgen.py on CPU 1 against ``server``; its JSON result (or the failure)."""
    argv = loadgen_argv(server, scenario, timeout)
    waited = wait_quiet()
    started = time.monotonic()
    busy = cpu_busy(SERVER_CPU)
    server_cpu = proc_sample(server.pids)["cpu_s"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout + 60, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"the load generator ran over {timeout + 60:.0f} s and was stopped"}
    # CPU 0 time not spent by the server: other processes on this machine competing with it.
    others = cpu_busy(SERVER_CPU) - busy - (proc_sample(server.pids)["cpu_s"] - server_cpu)
    if done.returncode != 0:
        return {
            "error": f"the load generator exited with {done.returncode}",
            "stderr": done.stderr.decode(errors="replace")[-2000:],
            "server_log": server.log_tail(),
        }
    result: dict[str, Any] = json.loads(done.stdout)
    result["process_wall_s"] = round(time.monotonic() - started, 3)
    result["cpu0_others_s"] = round(max(0.0, others), 2)
    result["waited_for_quiet_s"] = waited
    return result


QUIET_BUDGET = [120.0]  # seconds the whole suite may spend waiting for a quiet machine


def wait_quiet(limit: float = 10.0) -> float:
    """Wait (up to ``limit`` s, and the suite's budget) until neither CPU is more than 15% busy
    for half a second: other work on a shared machine skews every figure. Returns the wait."""
    started = time.monotonic()
    while time.monotonic() - started < min(limit, QUIET_BUDGET[0]):
        before = [cpu_busy(c) for c in (SERVER_CPU, LOAD_CPU)]
        time.sleep(0.5)
        after = [cpu_busy(c) for c in (SERVER_CPU, LOAD_CPU)]
        if all(b - a < 0.075 for a, b in zip(before, after, strict=True)):
            break
    waited = time.monotonic() - started
    QUIET_BUDGET[0] = max(0.0, QUIET_BUDGET[0] - waited)
    return round(waited, 1)


def cpu_busy(cpu: str) -> float:
    """Seconds CPU ``cpu`` has run something (user, system, interrupts; not a hypervisor's steal),
    from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(x) for x in line.split()[1:]]
            busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]  # user..softirq, no steal
            return busy / os.sysconf("SC_CLK_TCK")
    return 0.0


def wrk(server: Server, batch: int, seconds: int, tmp: Path) -> dict[str, Any]:
    """Closed-loop publishes with no subscriber: wrk, one thread, on CPU 1."""
    binary = shutil.which("wrk")
    data = "bench 0 0 " + "x" * 90
    if server.name == "nchan":
        if batch:
            return {"unsupported": "Nchan publishes one message per request"}
        path, ctype, body = "/publish/tput", "text/plain", data
    else:
        path, ctype = "/publish", "application/json"
        if batch:
            body = json.dumps({"events": [{"topic": "tput", "data": data}] * batch})
        else:
            body = json.dumps({"topic": "tput", "data": data})
    if binary is None:
        scenario = ["throughput", "--duration", str(seconds), "--batch", str(batch)]
        return loadgen(server, scenario, timeout=seconds + 60)
    body_file = tmp / f"body-{server.name}-{batch}.txt"
    body_file.write_text(body)
    env = dict(
        os.environ,
        BENCH_PATH=path,
        BENCH_CONTENT_TYPE=ctype,
        BENCH_BODY_FILE=str(body_file),
        BENCH_TOKEN=server.token,
    )
    argv = [
        *on_cpu(LOAD_CPU),
        binary,
        "-t1",
        f"-c{WRK_CONNECTIONS}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
    ]
    argv += ["-s", str(BENCH / "wrk_publish.lua"), f"http://127.0.0.1:{server.port}"]
    waited = wait_quiet()
    before = proc_sample(server.pids)
    busy = cpu_busy(SERVER_CPU)
    done = subprocess.run(argv, capture_output=True, timeout=seconds + 60, env=env, check=False)
    after = proc_sample(server.pids)
    others = cpu_busy(SERVER_CPU) - busy - (after["cpu_s"] - before["cpu_s"])
    out = done.stdout.decode(errors="replace")
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        return {"error": "wrk printed no summary", "stdout": out[-1500:], "rc": done.returncode}
    stats = json.loads(line[len("WRK_JSON ") :])
    seconds_run = stats["duration_us"] / 1e6
    ok = stats["requests"] - stats["status_errors"]
    per = max(1, batch)
    return {
        "tool": "wrk",
        "batch": batch,
        "connections": WRK_CONNECTIONS,
        "seconds": round(seconds_run, 3),
        **stats,
        "requests_per_s": round(ok / seconds_run, 1),
        "events_per_s": round(ok * per / seconds_run, 1),
        "server_cpu_s": round(after["cpu_s"] - before["cpu_s"], 3),
        "cpu0_others_s": round(max(0.0, others), 2),
        "waited_for_quiet_s": waited,
    }


def profile(plan: dict[str, Any]) -> dict[str, Any]:
    """realtime's largest broadcast again, its publishing phase sampled by two py-spy processes
    (a flame graph and collapsed stacks): connecting the streams is left out of the samples."""
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not os.access(py_spy, os.X_OK):
        return {"error": "py-spy is not installed"}
    svg = RESULTS / "realtime_broadcast_pyspy.svg"
    raw = RESULTS / "realtime_broadcast_pyspy.txt"
    scenario = plan["profile"]
    subscribers = scenario[-1].split(",")[-1].split("x")[0]
    with running("realtime") as server, tempfile.TemporaryDirectory() as tmp:
        mark = Path(tmp) / "mark"
        out_path = Path(tmp) / "loadgen.json"
        argv = loadgen_argv(server, scenario, timeout=300)
        at = argv.index("broadcast")  # options go before the scenario's name
        argv[at:at] = ["--out", str(out_path), "--mark", str(mark)]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samplers: list[subprocess.Popen[bytes]] = []
        try:
            if wait_for(Path(f"{mark}.publishing-{subscribers}"), process, 240):
                for fmt, out in (("flamegraph", svg), ("raw", raw)):
                    argv = [*on_cpu(LOAD_CPU), py_spy, "record", "--pid"]
                    argv += [str(server.pids[0]), "--rate", "100", "--nonblocking"]
                    argv += ["--format", fmt, "--output", str(out)]
                    samplers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
                wait_for(Path(f"{mark}.drained-{subscribers}"), process, 240)
            for sampler in samplers:
                if sampler.poll() is None:
                    sampler.send_signal(signal.SIGINT)
            for sampler in samplers:
                try:
                    sampler.wait(30)
                except subprocess.TimeoutExpired:
                    sampler.kill()
                    sampler.wait()
            process.wait(120)
        finally:
            for child in [*samplers, process]:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        try:
            result = json.loads(out_path.read_text())
        except (OSError, ValueError):
            result = {"error": "the load generator wrote no result"}
    return {"svg": svg.name, "raw": raw.name, "run": result, "top": summarise_profile(raw)}


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()


LINE_NUMBER = re.compile(r":\d+\)$")


def summarise_profile(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares of the hottest functions in py-spy's collapsed stacks
    (lines of one function added up)."""
    if not raw.exists():
        return {}
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [LINE_NUMBER.sub(")", f) for f in stack.split(";")]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count

    def table(counts: dict[str, int]) -> list[dict[str, Any]]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [{"frame": f, "samples": n, "share": round(n / total, 4)} for f, n in best]

    ours = {f: n for f, n in inclusive.items() if "(realtime/" in f}
    return {"samples": total, "self": table(own), "inclusive": table(ours)}


# -- the suite -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def run(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
            return (done.stdout + done.stderr).decode(errors="replace").strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    from importlib.metadata import PackageNotFoundError, version

    packages: dict[str, str | None] = {}
    for name in ("gunicorn", "gevent", "flask", "redis", "sse-starlette", "uvicorn", "flask-sse"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    free = run(["free", "-h"]).splitlines()
    return {
        "cpu": cpu,
        "nproc": run(["nproc"]),
        "memory": free[1] if len(free) > 1 else "",
        "kernel": run(["uname", "-sr"]),
        "python": sys.version.split()[0],
        "nginx": run(["nginx", "-v"]).replace("nginx version: nginx/", ""),
        "nchan": run(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"]),
        "redis": run([find_redis_binaries()[0], "--version"]).split(" sha=")[0],
        "wrk": run(["dpkg-query", "-W", "-f=${Version}", "wrk"]) if shutil.which("wrk") else None,
        "packages": packages,
        "nofile": run(["sh", "-c", "ulimit -n"]),
        "commit": run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        # uncommitted changes to the server measured (others work in the same tree)
        "server_changes": run(
            ["git", "-C", str(ROOT), "status", "--short", "realtime", "app.py"]
        ).replace("\n", ", "),
        # A fingerprint of the diff, not a security measure.
        "server_diff_sha1": hashlib.sha1(
            subprocess.run(
                ["git", "-C", str(ROOT), "diff", "HEAD", "--", "realtime", "app.py"],
                capture_output=True,
                check=False,
            ).stdout,
            usedforsecurity=False,
        ).hexdigest()[:10],
    }


def run_server(name: str, plan: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    scenarios = (("broadcast", 480), ("unicast", 180), ("storm", 180), ("full", 240))
    for scenario, timeout in scenarios:
        if scenario == "storm" and name not in RESUMABLE:
            out[scenario] = {"na": "no history to resume from (Last-Event-ID is not supported)"}
            continue
        if scenario == "full" and name not in BESIDE_NCHAN:
            out[scenario] = {"na": "measured for realtime and nginx + Nchan only"}
            continue
        log(f"{name}: {scenario}")
        try:
            with running(name) as server:
                out[scenario] = loadgen(server, plan[scenario], timeout)
        except RuntimeError as exc:
            out[scenario] = {"error": str(exc)[-2000:]}
    log(f"{name}: publish throughput")
    try:
        with running(name) as server, tempfile.TemporaryDirectory() as tmp:
            seconds = plan["throughput_s"]
            out["throughput_single"] = wrk(server, 0, seconds, Path(tmp))
            out["throughput_batch"] = wrk(server, 100, seconds, Path(tmp))
    except RuntimeError as exc:
        out["throughput_single"] = out["throughput_batch"] = {"error": str(exc)[-2000:]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--quick", action="store_true", help="small counts, to try the suite")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    parser.add_argument("--started", type=float, help="epoch seconds `make bench` began")
    parser.add_argument("--out", default=str(RESULTS / "suite.json"))
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    started = time.time()
    plan = QUICK if args.quick else FULL
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "make bench" if args.started else " ".join(["python", *sys.argv]),
        "quick": args.quick,
        "plan": dict(plan),
        "machine": machine(),  # before pinning: nproc counts the CPUs this process may use
        "servers": {},
    }
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    for name in args.servers.split(","):
        results["servers"][name] = run_server(name, plan)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_profile and "realtime" in args.servers.split(","):
        log("realtime: broadcast under py-spy")
        try:
            results["profile"] = profile(plan)
        except RuntimeError as exc:
            results["profile"] = {"error": str(exc)[-2000:]}
    results["suite_wall_s"] = round(time.time() - started, 1)
    if args.started:
        results["make_bench_wall_s"] = round(time.time() - args.started, 1)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out}")
    write_report(Path(args.out))


if __name__ == "__main__":
    main()
