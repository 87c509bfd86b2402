"""The development JWT secret: created once under the data directory, shared by all workers.

Only used when no key is configured outside production (production refuses to start without one,
see :mod:`realtime.core.config`). It lives in a file rather than memory so every gunicorn
worker, and ``realtime token`` run later from a shell, agree on it. The file appears atomically
(written aside, then hard-linked into place), so a worker never reads half a secret.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

FILENAME = "dev-jwt-secret"


def dev_secret_path(data_dir: str) -> Path:
    return Path(data_dir) / FILENAME


def load_or_create_dev_secret(data_dir: str) -> str:
    path = dev_secret_path(data_dir)
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dev-secret-")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another worker won the race: use its secret
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_text(encoding="ascii").strip()
