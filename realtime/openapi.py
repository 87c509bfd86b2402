"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``. Pure data.

(Placeholder being completed: see tests/test_openapi.py.)
"""

from __future__ import annotations

from typing import Any


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "realtime", "version": "0.1.0"},
        "paths": {},
    }
