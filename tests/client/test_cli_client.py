"""`realtime publish` and `realtime listen` run as a cron job would run them: the installed
console script in a subprocess, against real gunicorn and a real redis-server, with faults
injected by a real HTTP proxy (see test_client.py) and by stopping and restarting the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest
import redis
from conftest import Gunicorn, make_token
from test_client import FaultyProxy, launch_gunicorn, stored

from realtime.client import Event, RequestError, publish, subscribe
from realtime.storage.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration

REALTIME = str(Path(sys.executable).with_name("realtime"))
TOKEN = make_token()


def cli_env(url: str | None = None, token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    if url is not None:
        env["REALTIME_URL"] = url
    if token is not None:
        env["REALTIME_TOKEN"] = token
    return env


def run(
    *args: str, url: str | None = None, token: str | None = TOKEN, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REALTIME, *args],
        env=cli_env(url, token),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


class Listener:
    """``realtime listen`` in a subprocess, its stdout read line by line as it prints."""

    def __init__(self, *args: str, url: str) -> None:
        self.process = subprocess.Popen(
            [REALTIME, "listen", *args],
            env=cli_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def lines(self, count: int, timeout: float = 15.0) -> list[str]:
        assert self.process.stdout is not None
        got: list[str] = []
        with gevent.Timeout(timeout, AssertionError(f"only {len(got)} lines in {timeout} s")):
            while len(got) < count:
                line = self.process.stdout.readline()
                assert line, "realtime listen exited early"
                got.append(line.rstrip("\n"))
        return got

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit code and everything written to stderr."""
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=10)
        return self.process.returncode, err


@pytest.fixture
def listeners() -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def start(*args: str, url: str) -> Listener:
        listener = Listener(*args, url=url)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        if listener.process.poll() is None:
            listener.process.kill()
            listener.process.communicate()


@pytest.fixture(scope="module")
def server(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """One gunicorn for the module; every test uses its own topics."""
    started = launch_gunicorn(redis_server.url, tmp_path_factory.mktemp("cli"), workers=2)
    yield started
    started.stop(signal.SIGQUIT)


@pytest.fixture(scope="module")
def redis_conn(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def proxy(server: Gunicorn) -> Iterator[Callable[[list[str]], FaultyProxy]]:
    started: list[FaultyProxy] = []

    def start(script: list[str]) -> FaultyProxy:
        started.append(FaultyProxy(server.port, script).start())
        return started[-1]

    yield start
    for faulty in started:
        faulty.stop()


def delivered(url: str, topic: str, after: str, count: int) -> list[Event]:
    """The ``count`` events of ``topic`` after id ``after``, as a subscriber receives them."""
    stream = subscribe(url, topic, token=TOKEN, last_id=after)
    with gevent.Timeout(10):
        events = [next(stream) for _ in range(count)]
    stream.close()
    return events


# -- acceptance 5: publish survives a flaky server, listen survives a restart --------------------


def test_publish_after_two_503s_stores_exactly_one_event_and_exits_0(
    proxy: Callable[[list[str]], FaultyProxy], redis_conn: redis.Redis
) -> None:
    faulty = proxy(["503", "503"])
    result = run("publish", "cli:flaky", "hello", url=faulty.url)
    assert (result.returncode, result.stderr) == (0, "")
    assert len(faulty.posts) == 3
    assert len(faulty.keys()) == 1
    assert stored(redis_conn, "cli:flaky") == 1
    assert result.stdout == json.loads(faulty.upstream_answers[0])["id"] + "\n"


def test_publish_whose_answer_is_lost_after_storing_is_stored_once(
    proxy: Callable[[list[str]], FaultyProxy], redis_conn: redis.Redis
) -> None:
    faulty = proxy(["drop"])
    result = run("publish", "cli:lost", "hello", url=faulty.url)
    assert result.returncode == 0, result.stderr
    assert len(faulty.posts) == 2
    assert len(faulty.keys()) == 1
    assert stored(redis_conn, "cli:lost") == 1
    first, retried = (json.loads(answer)["id"] for answer in faulty.upstream_answers)
    assert result.stdout.strip() == first == retried


def test_listen_resumes_across_a_server_restart_printing_every_id_once_in_order(
    redis_server: RedisServer, tmp_path: Path, listeners: Callable[..., Listener]
) -> None:
    topic = "cli:restart"
    home = launch_gunicorn(redis_server.url, tmp_path, workers=1)
    other = launch_gunicorn(redis_server.url, tmp_path, workers=1)  # same Redis, another port
    servers = [home, other]
    try:
        start = publish(home.url, topic, "start", token=TOKEN)
        # From `start` on, nothing can be missed, however long the listener takes to connect.
        listener = listeners(topic, "--last-id", start, "--max-backoff", "1", "-v", url=home.url)
        published = [publish(home.url, topic, f"before {n}", token=TOKEN) for n in range(3)]
        printed = listener.lines(3)

        home.stop(signal.SIGTERM)  # streams end with `shutdown`; reconnects are refused
        published += [publish(other.url, topic, f"while down {n}", token=TOKEN) for n in range(3)]
        gevent.sleep(0.5)
        home = launch_gunicorn(redis_server.url, tmp_path, port=home.port, workers=1)
        servers.append(home)
        published += [publish(home.url, topic, f"after {n}", token=TOKEN) for n in range(3)]
        printed += listener.lines(6)

        code, err = listener.interrupt()
    finally:
        for started in servers:
            started.stop(signal.SIGQUIT)
    assert [line.split("\t")[0] for line in printed] == published
    assert [line.split("\t", 3)[3] for line in printed] == [
        *(f"before {n}" for n in range(3)),
        *(f"while down {n}" for n in range(3)),
        *(f"after {n}" for n in range(3)),
    ]
    assert code == 0
    assert "reconnecting" in err
    assert "Traceback" not in err


# -- publish: input ------------------------------------------------------------------------------


def test_publish_dash_reads_all_of_stdin_exactly(server: Gunicorn) -> None:
    start = publish(server.url, "cli:stdin", "start", token=TOKEN)
    text = run("publish", "cli:stdin", "-", url=server.url, stdin="line 1\n\tline 2\n")
    value = run(
        "publish", "cli:stdin", "-", "--json", "--type", "report", url=server.url,
        stdin='{"ok": true, "n": [1, 2]}\n',
    )  # fmt: skip
    assert (text.returncode, value.returncode) == (0, 0), text.stderr + value.stderr
    events = delivered(server.url, "cli:stdin", start, 2)
    assert [(e.id, e.type, e.data) for e in events] == [
        (text.stdout.strip(), "message", "line 1\n\tline 2\n"),
        (value.stdout.strip(), "report", '{"ok":true,"n":[1,2]}'),
    ]


def test_publish_idempotency_key_makes_a_rerun_publish_nothing_new(
    server: Gunicorn, redis_conn: redis.Redis
) -> None:
    runs = [
        run("publish", "cli:rerun", "daily", "--idempotency-key", "2026-01-01", url=server.url)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0]
    assert runs[0].stdout == runs[1].stdout
    assert stored(redis_conn, "cli:rerun") == 1


# -- listen: output ------------------------------------------------------------------------------


def test_listen_prints_one_tab_separated_line_per_event_with_data_escaped(
    server: Gunicorn, listeners: Callable[..., Listener]
) -> None:
    start = publish(server.url, "cli:lines", "start", token=TOKEN)
    listener = listeners("cli:lines", "--last-id", start, url=server.url)
    first = publish(server.url, "cli:lines", "a\nb\tc\\d", type="note", token=TOKEN)
    second = publish(server.url, "cli:lines", {"k": 1}, token=TOKEN)
    lines = listener.lines(2)
    code, err = listener.interrupt()
    assert lines == [
        f"{first}\tcli:lines\tnote\ta\\nb\\tc\\\\d",
        f'{second}\tcli:lines\tmessage\t{{"k":1}}',
    ]
    assert (code, err) == (0, "")


def test_listen_json_prints_objects_and_reports_a_reset_on_stderr_and_stdout(
    server: Gunicorn, listeners: Callable[..., Listener]
) -> None:
    listener = listeners("cli:json", "--json", "--last-id", "bogus", url=server.url)
    [reset] = [json.loads(line) for line in listener.lines(1)]
    event_id = publish(server.url, "cli:json", "a\nb", token=TOKEN)
    [event] = [json.loads(line) for line in listener.lines(1)]
    code, err = listener.interrupt()
    assert reset["type"] == "reset"
    assert reset["topic"] is None
    assert json.loads(reset["data"])["reason"] == "unknown_id"
    assert event == {"id": event_id, "topic": "cli:json", "type": "message", "data": "a\nb"}
    assert code == 0
    assert err.startswith("realtime: reset (unknown_id): events may have been missed; refetch")


# -- acceptance 6: exit codes and messages -------------------------------------------------------


def server_message(url: str, topic: str, data: str, token: str | None) -> str:
    """What the server says about this publish, asked through the library."""
    with pytest.raises(RequestError) as refused:
        publish(url, topic, data, token=token, retries=0)
    return refused.value.message


@pytest.mark.parametrize(
    ("topic", "data", "token", "code"),
    [
        ("cli:auth", "x", "not-a-jwt", 3),
        ("cli:auth", "x", make_token(secret="another-secret-" + "y" * 40), 3),
        ("cli:auth", "x", make_token(publish=("elsewhere",)), 3),
        ("not a topic", "x", TOKEN, 2),
        ("cli:big", "x" * 70_000, TOKEN, 2),
        ("cli:cr", "a\rb", TOKEN, 2),
    ],
    ids=["malformed token", "wrong key", "no rights", "bad topic", "too large", "carriage return"],
)
def test_publish_refused_exits_with_its_code_and_the_servers_sentence(
    server: Gunicorn, redis_conn: redis.Redis, topic: str, data: str, token: str, code: int
) -> None:
    result = run("publish", topic, data, url=server.url, token=token)
    assert result.returncode == code
    assert result.stderr == f"Error: {server_message(server.url, topic, data, token)}\n"
    assert result.stdout == ""
    assert token not in result.stderr
    assert stored(redis_conn, topic) == 0


def test_publish_without_a_token_exits_3_naming_the_variable(server: Gunicorn) -> None:
    result = run("publish", "cli:x", "x", url=server.url, token=None)
    assert result.returncode == 3
    assert (
        result.stderr == "Error: Publishing needs a token: set REALTIME_TOKEN (or pass --token).\n"
    )


def test_publish_to_an_unreachable_server_exits_4_quickly() -> None:
    port = free_port()  # closed: nothing listens there
    started = time.monotonic()
    result = run("publish", "cli:x", "x", "--retries", "1", url=f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    assert result.returncode == 4
    assert result.stderr == (
        f"Error: Could not reach http://127.0.0.1:{port} (connection refused) after 2 attempts.\n"
    )
    assert TOKEN not in result.stderr


def test_publish_to_a_server_failing_every_attempt_exits_4_with_its_message(
    proxy: Callable[[list[str]], FaultyProxy],
) -> None:
    faulty = proxy(["503", "503"])
    result = run("publish", "cli:x", "x", "--retries", "1", url=faulty.url)
    assert result.returncode == 4
    assert result.stderr == "Error: Redis is unreachable; retry shortly.\n"
    assert len(faulty.posts) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("publish",), "Missing argument 'TOPIC'"),
        (("publish", "t"), "Missing argument 'DATA'"),
        (("publish", "t", "{", "--json"), "DATA is not valid JSON: Expecting property name"),
        (("publish", "t", "NaN", "--json"), "DATA is not valid JSON: NaN is not a JSON value."),
        (("publish", "t", "x", "--url", "ftp://h"), "is not an http:// or https:// URL"),
        (("publish", "t", "x", "--retries", "-1"), "--retries"),
        (("listen",), "Missing argument 'TOPIC...'"),
    ],
    ids=["no topic", "no data", "bad json", "nan", "bad url", "negative retries", "no topics"],
)
def test_usage_errors_exit_2_before_any_request(args: tuple[str, ...], needle: str) -> None:
    result = run(*args, url=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("topic", "token", "code", "error"),
    [
        ("cli:x", "not-a-jwt", 3, "Error: The token is malformed"),
        ("cli:x", make_token(subscribe=("elsewhere",)), 3, "Error: Your token does not allow"),
        ("not a topic", TOKEN, 2, "Error: "),
    ],
    ids=["bad token", "no rights", "bad topic"],
)
def test_listen_refused_exits_with_its_code_instead_of_retrying(
    server: Gunicorn, topic: str, token: str, code: int, error: str
) -> None:
    started = time.monotonic()
    result = run("listen", topic, url=server.url, token=token)
    assert time.monotonic() - started < 10
    assert result.returncode == code
    assert result.stderr.startswith(error)
    assert result.stderr.count("\n") == 1
    assert token not in result.stderr


def test_help_documents_the_exit_codes() -> None:
    for command in ("publish", "listen"):
        shown = run(command, "--help").stdout
        assert "Exit codes:" in shown
        for line in ("0  success", "2  usage error", "3  authentication", "4  the server or"):
            assert line in shown
