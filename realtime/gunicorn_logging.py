"""A gunicorn logger whose access lines never contain a query-string token."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from .redact import redact_url

_URL_ATOMS = ("r", "q", "U", "{raw_uri}e")


class RedactingLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = redact_url(value)
        for key in list(atoms):
            if key.startswith("{") and isinstance(atoms[key], str) and "token" in atoms[key]:
                atoms[key] = redact_url(atoms[key])
        return atoms
