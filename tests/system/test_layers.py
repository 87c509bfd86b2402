"""The layers hold: import-linter's contracts (``.importlinter``) are kept by the tree, and they
are not decoration: the same checker, run on a copy of the package with one bad import added,
reports exactly that import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the ``realtime`` package found under ``package_parent``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=package_parent,
        env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT, ROOT / ".importlinter")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break on purpose."""
    shutil.copytree(
        ROOT / "realtime", tmp_path / "realtime", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def add_import(module: Path, line: str) -> None:
    text = module.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in text, module
    module.write_text(text.replace(marker, marker + line + "\n", 1))


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/ids.py", "import flask", "The core is pure"),
        ("core/sse.py", "import gevent", "The core is pure"),
        ("core/topics.py", "import redis", "The core is pure"),
        ("core/events.py", "import socket", "The core is pure"),
        ("client/__init__.py", "import gevent", "client-only install"),
        ("storage/keys.py", "from realtime.fanout import hub", "Imports run one way"),
        ("core/errors.py", "from realtime.ops import metrics", "Imports run one way"),
        ("fanout/hub.py", "from realtime.web import state", "Imports run one way"),
        ("web/state.py", "from realtime import extension", "Imports run one way"),
        # A loop between siblings of one layer: each import alone is allowed by the layers.
        ("web/request.py", "from realtime.web import routes", "import each other in a loop"),
        ("core/ids.py", "from realtime.core import events", "import each other in a loop"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    package_copy: Path, module: str, line: str, broken: str
) -> None:
    add_import(package_copy / "realtime" / module, line)
    result = lint_imports(package_copy, package_copy / ".importlinter")
    assert result.returncode != 0, result.stdout
    report = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in report, result.stdout
