"""Tests for :mod:`realtime.core.config`: documented defaults, each variable's checks and messages.

Every call passes ``environ`` explicitly, so the environment of the machine running the tests
never leaks into a verdict.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from conftest import ROOT

from realtime.core.config import (
    FILES_BESIDE_CONNECTIONS,
    RETIRED,
    SETTINGS,
    Setting,
    Settings,
    check_gunicorn,
    load_settings,
)
from realtime.core.errors import ConfigError
from realtime.core.topics import PatternSet

SECRET = "s" * 32
PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
DOCUMENTED = {setting.name: setting.default for setting in SETTINGS}


def load(**environ: str) -> Settings:
    return load_settings(environ=environ)


def config_error(**environ: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(**environ)
    return str(info.value)


def attribute(name: str) -> str:
    return name.removeprefix("REALTIME_").lower()


# -- defaults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "documented", "expected"),
    [
        ("REALTIME_ENV", "development", "development"),
        ("REALTIME_REDIS_URL", "", ""),
        ("REALTIME_DATA_DIR", "var", "var"),
        ("REALTIME_HEARTBEAT_S", "15", 15.0),
        ("REALTIME_RETRY_MS", "3000", 3000),
        ("REALTIME_HISTORY_MAXLEN", "1000", 1000),
        ("REALTIME_MAX_PAYLOAD", "65536", 65536),
        ("REALTIME_MAX_BODY", "1048576", 1_048_576),
        ("REALTIME_MAX_BATCH", "500", 500),
        ("REALTIME_MAX_CONNECTION_AGE_S", "0", 0.0),
    ],
)
def test_defaults_produce_the_documented_values(
    name: str, documented: str, expected: object
) -> None:
    assert DOCUMENTED[name] == documented
    assert getattr(load(), attribute(name)) == expected


def test_defaults_leave_optional_settings_empty() -> None:
    settings = load()
    assert settings.jwt_secret is None
    assert settings.jwt_public_key is None
    assert settings.public_topics == PatternSet([])
    assert settings.allowed_origins == ()
    assert not settings.production
    assert not settings.has_jwt_key


def test_every_settings_field_is_one_setting_named_after_it() -> None:
    assert [s.attribute for s in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    assert [attribute(s.name) for s in SETTINGS] == [s.attribute for s in SETTINGS]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_has_a_meaning_that_fits_one_table_cell(setting: Setting) -> None:
    assert setting.help.strip()
    assert "\n" not in setting.help
    assert "|" not in setting.help


def test_a_retired_name_is_not_also_a_setting() -> None:
    assert RETIRED.keys().isdisjoint(s.name for s in SETTINGS)


def readme_settings_rows() -> list[str]:
    """The rows of the README's table of variables, under its ``## Configuration`` heading."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("| variable | default | meaning |\n| --- | --- | --- |\n", 1)[1]
    return list(itertools.takewhile(lambda line: line.startswith("|"), table.splitlines()))


def test_the_readme_table_lists_exactly_the_settings_with_their_defaults_and_meanings() -> None:
    rows = readme_settings_rows()
    assert [row.split("`")[1] for row in rows] == [s.name for s in SETTINGS]
    assert rows == [
        f"| `{s.name}` | {f'`{s.default}`' if s.default else '(empty)'} | {s.help} |"
        for s in SETTINGS
    ]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_documented_default_validates_when_given_explicitly(setting: Setting) -> None:
    assert load_settings(environ={setting.name: setting.default}) == load()


def test_all_documented_defaults_given_together_equal_no_configuration() -> None:
    assert len(DOCUMENTED) == len(SETTINGS)
    assert load_settings(environ=DOCUMENTED) == load()


def test_numeric_defaults_are_the_documented_numbers() -> None:
    settings = load()
    for name, default in DOCUMENTED.items():
        if default.isdigit():
            assert getattr(settings, attribute(name)) == float(default), name


# -- numeric variables ---------------------------------------------------------------------------

# (variable, values out of its range besides a negative one)
WHOLE_NUMBERS = (
    ("REALTIME_RETRY_MS", ("3600001",)),
    ("REALTIME_HISTORY_MAXLEN", ("0",)),
    ("REALTIME_HISTORY_TTL_S", ()),  # 0 means "no limit", so only negatives are out of range
    ("REALTIME_FIREHOSE_MAXLEN", ("0", "99")),
    ("REALTIME_RECENT_EVENTS", ()),  # 0 means "keep none"
    ("REALTIME_RECENT_BYTES", ("65535",)),
    ("REALTIME_MAX_QUEUE", ("0",)),
    ("REALTIME_MAX_PAYLOAD", ("0",)),
    ("REALTIME_MAX_BODY", ("0",)),
    ("REALTIME_MAX_BATCH", ("0", "10001")),
    ("REALTIME_MAX_TOPICS", ("0",)),
    ("REALTIME_MAX_CONNECTIONS", ("0",)),
    ("REALTIME_CONNECTION_HEADROOM", ("0", "9")),
    ("REALTIME_IDEMPOTENCY_TTL_S", ("0",)),
    ("REALTIME_REDIS_POOL_SIZE", ("0", "1001")),
    ("REALTIME_WS_BURST", ("0",)),
    ("REALTIME_PUBLISH_BURST", ("0",)),
    ("REALTIME_NEW_TOPICS_PER_MINUTE", ()),  # 0 means "no limit", so only negatives are out
    ("REALTIME_MAX_CONNECTIONS_PER_IP", ("0",)),
    ("REALTIME_PROXY_HOPS", ("11",)),
)
SECONDS = (
    ("REALTIME_HEARTBEAT_S", ("0", "0.04")),
    ("REALTIME_WS_PING_S", ("0", "0.09")),
    ("REALTIME_MAX_CONNECTION_AGE_S", ("0.5", "0.999")),  # 0 disables; below 1 otherwise is not
    ("REALTIME_OVERFLOW_GRACE_S", ("0", "0.009")),
    ("REALTIME_PRESENCE_TTL_S", ("0.5",)),  # 0 disables presence; below 1 otherwise is not
    ("REALTIME_WS_AUTH_TIMEOUT_S", ("0", "0.09")),
    ("REALTIME_BODY_TIMEOUT_S", ("0", "0.09")),
    ("REALTIME_WS_RATE", ("0", "0.09")),
    ("REALTIME_PUBLISH_RATE", ("0.001",)),  # 0 disables the limit
)
WHOLE_NUMBER_GARBAGE = ("abc", "", "  ", "1.5", "1e3", "12 events", "0x10", "9" * 5000)
SECONDS_GARBAGE = ("abc", "", "  ", "15s", "nan", "inf", "-inf", "1e400", "1,5")

REJECTED_NUMBERS = [
    (name, raw)
    for table, garbage in ((WHOLE_NUMBERS, WHOLE_NUMBER_GARBAGE), (SECONDS, SECONDS_GARBAGE))
    for name, out_of_range in table
    for raw in (*garbage, "-1", "-0.5", *out_of_range)
]


FLAGS = ("REALTIME_MERCURE", "REALTIME_MERCURE_ANONYMOUS", "REALTIME_MERCURE_SUBSCRIPTIONS")


def test_the_rejection_table_covers_every_numeric_setting() -> None:
    numeric = {
        name for name, default in DOCUMENTED.items() if default.isdigit() and name not in FLAGS
    }
    assert {name for name, _ in WHOLE_NUMBERS + SECONDS} == numeric


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("true", True),
        (" Yes ", True),
        ("on", True),
        ("0", False),
        ("off", False),
        ("no", False),
        ("FALSE", False),
        ("", False),
    ],
)
def test_a_flag_reads_the_usual_spellings(name: str, raw: str, value: bool) -> None:
    settings = load_settings(environ={name: raw, "REALTIME_PRESENCE_TTL_S": "30"})
    assert getattr(settings, attribute(name)) is value


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("raw", ["2", "enabled", "y e s", "-1"])
def test_a_flag_refuses_anything_else_naming_it(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(environ={name: raw})


def test_the_subscriptions_api_needs_presence() -> None:
    with pytest.raises(ConfigError, match="REALTIME_PRESENCE_TTL_S"):
        load_settings(
            environ={"REALTIME_MERCURE_SUBSCRIPTIONS": "1", "REALTIME_PRESENCE_TTL_S": "0"}
        )


@pytest.mark.parametrize(("name", "raw"), REJECTED_NUMBERS)
def test_numeric_variable_rejects_garbage_negatives_and_out_of_range_naming_it(
    name: str, raw: str
) -> None:
    assert config_error(**{name: raw}).startswith(f"{name} must be ")


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("REALTIME_RETRY_MS", "0", 0),
        ("REALTIME_RETRY_MS", "3600000", 3_600_000),
        ("REALTIME_HISTORY_TTL_S", "0", 0),
        ("REALTIME_FIREHOSE_MAXLEN", "100", 100),
        ("REALTIME_MAX_BATCH", "10000", 10_000),
        ("REALTIME_REDIS_POOL_SIZE", "1000", 1000),
        ("REALTIME_MAX_QUEUE", " 20 ", 20),
        ("REALTIME_RECENT_EVENTS", "0", 0),
        ("REALTIME_RECENT_BYTES", "65536", 65536),
        ("REALTIME_HEARTBEAT_S", "0.05", 0.05),
        ("REALTIME_HEARTBEAT_S", " 2.5 ", 2.5),
        ("REALTIME_WS_PING_S", "0.1", 0.1),
        ("REALTIME_OVERFLOW_GRACE_S", "0.01", 0.01),
        ("REALTIME_MAX_CONNECTION_AGE_S", "1", 1.0),
        ("REALTIME_MAX_CONNECTION_AGE_S", "3600", 3600.0),
        ("REALTIME_PRESENCE_TTL_S", "0", 0.0),
        ("REALTIME_PRESENCE_TTL_S", "1", 1.0),
        ("REALTIME_WS_RATE", "0.1", 0.1),
        ("REALTIME_WS_BURST", "1", 1),
        ("REALTIME_CONNECTION_HEADROOM", "10", 10),
        ("REALTIME_BODY_TIMEOUT_S", "0.1", 0.1),
    ],
)
def test_numeric_variable_accepts_its_bounds(name: str, raw: str, expected: float) -> None:
    assert getattr(load(**{name: raw}), attribute(name)) == expected


@pytest.mark.parametrize("raw", ["0", "0.0", " 0 "])
def test_max_connection_age_zero_means_disabled(raw: str) -> None:
    assert load(REALTIME_MAX_CONNECTION_AGE_S=raw).max_connection_age_s == 0.0


@pytest.mark.parametrize(
    ("payload", "body"),
    [("1000", "2024"), ("1", "1025"), ("65536", "1048576")],
)
def test_max_body_at_least_1024_over_max_payload_is_accepted(payload: str, body: str) -> None:
    settings = load(REALTIME_MAX_PAYLOAD=payload, REALTIME_MAX_BODY=body)
    assert (settings.max_payload, settings.max_body) == (int(payload), int(body))


@pytest.mark.parametrize(
    ("payload", "body"),
    [("1000", "2023"), ("65536", "65536"), ("65536", "1000"), ("1048576", "1048576")],
)
def test_max_body_not_exceeding_max_payload_fails_naming_both(payload: str, body: str) -> None:
    message = config_error(REALTIME_MAX_PAYLOAD=payload, REALTIME_MAX_BODY=body)
    assert message.startswith("REALTIME_MAX_BODY")
    assert "REALTIME_MAX_PAYLOAD" in message


# -- the connection budget of a worker -----------------------------------------------------------


def test_a_worker_accepts_its_streams_plus_the_headroom() -> None:
    assert load().worker_connections == 10_000 + 1_000
    settings = load(REALTIME_MAX_CONNECTIONS="200", REALTIME_CONNECTION_HEADROOM="20")
    assert settings.worker_connections == 220


def gunicorn_error(settings: Settings, **gunicorn: float) -> str:
    values = {"worker_connections": settings.worker_connections, "keepalive": 5.0}
    values["open_files"] = values["worker_connections"] + FILES_BESIDE_CONNECTIONS
    values.update(gunicorn)
    with pytest.raises(ConfigError) as info:
        check_gunicorn(
            settings,
            worker_connections=int(values["worker_connections"]),
            keepalive=values["keepalive"],
            open_files=int(values["open_files"]),
        )
    return str(info.value)


@pytest.mark.parametrize(
    ("worker_connections", "files"),
    [(11_000, 11_000 + FILES_BESIDE_CONNECTIONS), (20_000, 1_000_000)],
)
def test_the_shipped_budget_or_a_larger_one_passes(worker_connections: int, files: int) -> None:
    check_gunicorn(load(), worker_connections=worker_connections, keepalive=5, open_files=files)


@pytest.mark.parametrize("worker_connections", [10_000, 10_999, 100])
def test_worker_connections_without_the_headroom_fail_naming_both(
    worker_connections: int,
) -> None:
    message = gunicorn_error(load(), worker_connections=worker_connections)
    assert f"worker_connections ({worker_connections})" in message
    assert "REALTIME_MAX_CONNECTIONS (10000)" in message
    assert "REALTIME_CONNECTION_HEADROOM (1000) = 11000" in message


@pytest.mark.parametrize("keepalive", [0, -1])
def test_keepalive_zero_fails_because_request_heads_would_have_no_bound(keepalive: float) -> None:
    assert "keepalive must be above 0" in gunicorn_error(load(), keepalive=keepalive)


def test_an_open_file_limit_below_the_budget_fails_naming_it() -> None:
    message = gunicorn_error(load(), open_files=4096)
    assert message.startswith("A worker may open only 4096 files")
    assert "REALTIME_MAX_CONNECTIONS 10000" in message
    assert "ulimit -n" in message


def test_the_retired_worker_connections_variable_fails_naming_what_replaced_it() -> None:
    message = config_error(REALTIME_WORKER_CONNECTIONS="10000")
    assert message.startswith("REALTIME_WORKER_CONNECTIONS is no longer read")
    assert "REALTIME_MAX_CONNECTIONS + REALTIME_CONNECTION_HEADROOM" in message
    with pytest.raises(ConfigError, match="no longer read"):
        load_settings({"REALTIME_WORKER_CONNECTIONS": 10_000}, environ={})


@pytest.mark.parametrize(
    "raw", ["short", "x" * 15, "has space in it!!", "é" * 20, "tab\there-abcdefgh"]
)
def test_a_weak_or_unprintable_metrics_token_fails_naming_it(raw: str) -> None:
    assert config_error(REALTIME_METRICS_TOKEN=raw).startswith("REALTIME_METRICS_TOKEN")


def test_a_metrics_token_is_kept_and_empty_means_open() -> None:
    assert load(REALTIME_METRICS_TOKEN=" " + "m" * 16 + " ").metrics_token == "m" * 16
    assert load().metrics_token is None


# -- mode and keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["production", "PRODUCTION", " Production "])
def test_production_without_a_key_fails_naming_the_secret(mode: str) -> None:
    assert "REALTIME_JWT_SECRET" in config_error(REALTIME_ENV=mode)


@pytest.mark.parametrize(
    "keys",
    [{"REALTIME_JWT_SECRET": SECRET}, {"REALTIME_JWT_PUBLIC_KEY": PEM}],
)
def test_production_with_a_key_starts(keys: dict[str, str]) -> None:
    settings = load(REALTIME_ENV="production", **keys)
    assert settings.production
    assert settings.has_jwt_key


@pytest.mark.parametrize(
    ("raw", "expected"), [("", "development"), ("  ", "development"), ("test", "test")]
)
def test_env_accepts_development_and_test(raw: str, expected: str) -> None:
    assert load(REALTIME_ENV=raw).env == expected


@pytest.mark.parametrize("raw", ["staging", "prod", "dev"])
def test_unknown_env_fails_naming_it(raw: str) -> None:
    assert config_error(REALTIME_ENV=raw).startswith("REALTIME_ENV")


@pytest.mark.parametrize("secret", ["x", "s" * 31])
def test_short_secret_fails_naming_it(secret: str) -> None:
    assert config_error(REALTIME_JWT_SECRET=secret).startswith("REALTIME_JWT_SECRET")


def test_secret_of_32_characters_is_kept_verbatim() -> None:
    assert load(REALTIME_JWT_SECRET=SECRET).jwt_secret == SECRET


def test_secret_and_public_key_together_fail_naming_both() -> None:
    message = config_error(REALTIME_JWT_SECRET=SECRET, REALTIME_JWT_PUBLIC_KEY=PEM)
    assert "REALTIME_JWT_SECRET" in message
    assert "REALTIME_JWT_PUBLIC_KEY" in message


@pytest.mark.parametrize("raw", [PEM, f"\n  {PEM}\n"])
def test_inline_pem_public_key_is_kept(raw: str) -> None:
    assert load(REALTIME_JWT_PUBLIC_KEY=raw).jwt_public_key == PEM


def test_public_key_given_as_a_path_is_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(PEM + "\n", encoding="ascii")
    assert load(REALTIME_JWT_PUBLIC_KEY=str(path)).jwt_public_key == PEM + "\n"
    assert load(REALTIME_JWT_PUBLIC_KEY=f"  {path}  ").jwt_public_key == PEM + "\n"


@pytest.mark.parametrize("name", ["missing.pem", "."])
def test_public_key_path_that_cannot_be_read_fails_naming_it(tmp_path: Path, name: str) -> None:
    message = config_error(REALTIME_JWT_PUBLIC_KEY=str(tmp_path / name))
    assert message.startswith("REALTIME_JWT_PUBLIC_KEY")


def test_public_key_file_that_is_not_ascii_fails_naming_it(tmp_path: Path) -> None:
    # Regression: a DER (binary) key file escaped as a raw UnicodeDecodeError.
    path = tmp_path / "key.der"
    path.write_bytes(b"\x30\x82\x01\x22\x30\x0d")
    message = config_error(REALTIME_JWT_PUBLIC_KEY=str(path))
    assert message.startswith("REALTIME_JWT_PUBLIC_KEY")


# -- strings and lists ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("rediss://user:pw@redis.example:6380", "rediss://user:pw@redis.example:6380"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("  redis://localhost  ", "redis://localhost"),
    ],
)
def test_redis_url_accepts_redis_schemes_and_empty(raw: str, expected: str) -> None:
    assert load(REALTIME_REDIS_URL=raw).redis_url == expected


@pytest.mark.parametrize(
    "raw", ["http://localhost:6379", "localhost:6379", "redis:/localhost", "tcp://localhost"]
)
def test_redis_url_with_another_scheme_fails_naming_it(raw: str) -> None:
    assert config_error(REALTIME_REDIS_URL=raw).startswith("REALTIME_REDIS_URL")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        (" , ,", ()),
        ("*", ("*",)),
        ("https://a.example", ("https://a.example",)),
        ("https://a.example/", ("https://a.example",)),
        (
            " https://a.example/ , http://b.example:8080,",
            ("https://a.example", "http://b.example:8080"),
        ),
    ],
)
def test_allowed_origins_are_split_trimmed_and_lose_a_trailing_slash(
    raw: str, expected: tuple[str, ...]
) -> None:
    assert load(REALTIME_ALLOWED_ORIGINS=raw).allowed_origins == expected


@pytest.mark.parametrize("raw", ["a.example", "https://a.example, b.example", "null"])
def test_allowed_origin_without_a_scheme_fails_naming_the_variable(raw: str) -> None:
    assert config_error(REALTIME_ALLOWED_ORIGINS=raw).startswith("REALTIME_ALLOWED_ORIGINS")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", []), ("news", ["news"]), (" news, dashboard:* ,", ["news", "dashboard:*"])],
)
def test_public_topics_are_parsed_into_a_pattern_set(raw: str, expected: list[str]) -> None:
    assert load(REALTIME_PUBLIC_TOPICS=raw).public_topics == PatternSet(expected)


@pytest.mark.parametrize("raw", ["a b", "news,#tag", "café", "x" * 201])
def test_invalid_public_topic_pattern_fails_naming_the_variable(raw: str) -> None:
    assert config_error(REALTIME_PUBLIC_TOPICS=raw).startswith("REALTIME_PUBLIC_TOPICS")


@pytest.mark.parametrize(
    ("raw", "expected"), [("", "var"), ("  ", "var"), (" /srv/rt ", "/srv/rt")]
)
def test_data_dir_is_trimmed_and_empty_means_var(raw: str, expected: str) -> None:
    assert load(REALTIME_DATA_DIR=raw).data_dir == expected


# -- overrides -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [(5, 5.0), ("7.5", 7.5), (0.25, 0.25)],
)
def test_overrides_win_over_environ(override: object, expected: float) -> None:
    settings = load_settings(
        {"REALTIME_HEARTBEAT_S": override}, environ={"REALTIME_HEARTBEAT_S": "20"}
    )
    assert settings.heartbeat_s == expected


def test_environ_applies_where_overrides_are_silent() -> None:
    settings = load_settings({"REALTIME_RETRY_MS": 100}, environ={"REALTIME_HEARTBEAT_S": "20"})
    assert (settings.heartbeat_s, settings.retry_ms) == (20.0, 100)


def test_none_override_clears_an_environ_value() -> None:
    settings = load_settings(
        {"REALTIME_REDIS_URL": None, "REALTIME_DATA_DIR": None},
        environ={"REALTIME_REDIS_URL": "redis://elsewhere", "REALTIME_DATA_DIR": "/srv"},
    )
    assert (settings.redis_url, settings.data_dir) == ("", "var")


def test_non_realtime_keys_in_overrides_and_environ_are_ignored() -> None:
    overrides = {
        "SECRET_KEY": "flask",
        "DEBUG": True,
        "HEARTBEAT_S": "garbage",
        "REALTIME_UNKNOWN": "garbage",
        "realtime_heartbeat_s": "garbage",
    }
    environ = {"PATH": "/bin", "REDIS_URL": "http://not-ours", "REALTIME_NOPE": "x"}
    assert load_settings(overrides, environ=environ) == load()


def test_invalid_override_fails_even_when_environ_is_valid() -> None:
    with pytest.raises(ConfigError, match=r"\AREALTIME_MAX_QUEUE "):
        load_settings({"REALTIME_MAX_QUEUE": "lots"}, environ={"REALTIME_MAX_QUEUE": "10"})


def test_printing_settings_never_shows_a_key() -> None:
    secret = "s" * 40
    settings = load_settings(
        {}, environ={"REALTIME_JWT_SECRET": secret, "REALTIME_METRICS_TOKEN": "m" * 20}
    )
    assert secret not in repr(settings)
    assert "m" * 20 not in repr(settings)
    assert settings.jwt_secret == secret
