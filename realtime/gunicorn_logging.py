"""A gunicorn logger whose lines never contain a query-string token.

Access lines are built from atoms (``%(r)s``, ``%(q)s``, ``%(U)s``...), and gunicorn's error log
writes the request URI when a request fails ("Error handling request /events?access_token=..."):
both pass through :func:`~realtime.redact.redact_url`.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from .redact import redact_url

_URL_ATOMS = ("r", "q", "U", "{raw_uri}e")


def _redacted(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(redact_url(a) if isinstance(a, str) else a for a in args)


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

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().critical(redact_url(str(msg)), *_redacted(args), **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().error(redact_url(str(msg)), *_redacted(args), **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().warning(redact_url(str(msg)), *_redacted(args), **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().info(redact_url(str(msg)), *_redacted(args), **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().debug(redact_url(str(msg)), *_redacted(args), **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().exception(redact_url(str(msg)), *_redacted(args), **kwargs)
