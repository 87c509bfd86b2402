"""A gunicorn logger whose lines never contain a query-string token.

Access lines are built from atoms (``%(r)s``, ``%(q)s``, ``%(U)s``...), and gunicorn's error log
writes the request URI when a request fails ("Error handling request /events?access_token=..."):
both pass through :func:`~realtime.ops.redact.redact_url`. The ``Referer`` (``%(f)s``) is logged
without its query (:func:`~realtime.ops.redact.redact_referer`): the referring page's URL may carry
a token of its own.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from realtime.ops.redact import redact_referer, redact_url

_URL_ATOMS = ("r", "q", "U", "{raw_uri}e")
# The referring page's URL: "%(f)s" in gunicorn's access log format, or the header itself.
_REFERER_ATOMS = ("f", "{referer}i", "{http_referer}e")


def _redacted(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(redact_url(a) if isinstance(a, str) else a for a in args)


class RedactingLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = redact_url(value)
        for key in _REFERER_ATOMS:
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = redact_referer(value)
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
