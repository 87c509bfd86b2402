"""The app's fixtures: realtime's test helpers provide a real Redis and record what is published."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_app import create_app
from flask import Flask

pytest_plugins = ["realtime.testing"]


@pytest.fixture
def app(realtime_redis_url: str, tmp_path: Path) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "REALTIME_REDIS_URL": realtime_redis_url,
            "REALTIME_DATA_DIR": str(tmp_path),
        }
    )
