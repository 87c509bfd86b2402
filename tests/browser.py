"""Headless Debian Chromium for the tests, through Playwright (no browser is ever downloaded)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import missing, require_binary

CHROMIUM = "/usr/bin/chromium"
# Root in a container: no sandbox; nothing that phones home or needs a GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]
WAIT_MS = 30_000


def sync_playwright() -> Any:
    """Playwright's sync entry point; a missing package fails or skips like a missing binary."""
    try:
        from playwright.sync_api import sync_playwright as entry
    except ImportError:
        missing("the playwright Python package is not installed (pip install playwright)")
    return entry()


@contextmanager
def chromium_page(profile: Path, **options: Any) -> Iterator[Any]:
    """A page in a fresh headless Debian Chromium with its own profile directory; ``options``
    go to the browser context (a viewport, say)."""
    executable = require_binary("chromium", CHROMIUM)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=WAIT_MS,
            **options,
        )
        try:
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            context.close()
