from __future__ import annotations

import fnmatch
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.core.errors import BadRequest
from realtime.core.topics import (
    DEFAULT_TYPE,
    RESERVED_TYPES,
    TOPIC_RE,
    TYPE_RE,
    PatternSet,
    parse_pattern_list,
    validate_topic,
    validate_type,
)


@pytest.mark.parametrize(
    "topic",
    [
        "a",
        "orders",
        "user:42",
        "dashboard:cpu.load",
        "team@example.com/inbox",
        "a_b-c.d:e@f/g",
        "0",
        "x" * 200,
    ],
)
def test_validate_topic_accepts_the_topic_alphabet(topic: str) -> None:
    assert validate_topic(topic) == topic
    assert TOPIC_RE.match(topic)


@pytest.mark.parametrize(
    "value",
    [
        "a\n",
        "\na",
        "x" * 201,
        "with space",
        " a",
        "a\t",
        "café",
        "ａ",  # noqa: RUF001 - a fullwidth a, which must be refused
        "١٢",  # Arabic-Indic digits match \d but not [0-9]
        "a*",
        "a,b",
        "a#b",
        "a?b",
        "a\x00",
        42,
        ["a"],
        b"a",
    ],
)
def test_validate_topic_rejects_anything_else_as_invalid_topic(value: object) -> None:
    with pytest.raises(BadRequest) as info:
        validate_topic(value)
    assert info.value.code == "invalid_topic"
    assert info.value.status == 400
    assert "A-Z" in info.value.message


@pytest.mark.parametrize("value", [None, ""])
def test_validate_topic_reports_a_missing_topic(value: object) -> None:
    with pytest.raises(BadRequest) as info:
        validate_topic(value)
    assert info.value.code == "missing_topic"


def test_invalid_topic_message_quotes_the_value_truncated() -> None:
    with pytest.raises(BadRequest) as info:
        validate_topic("bad topic " + "y" * 1000)
    message = info.value.message
    assert "'bad topic yyy" in message
    assert "y" * 100 not in message
    assert len(message) < 200


def test_topic_regex_does_not_let_dollar_match_before_a_trailing_newline() -> None:
    assert TOPIC_RE.match("a\n") is None
    assert TOPIC_RE.search("a\n") is None
    assert TYPE_RE.search("a\n") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_TYPE),
        ("", DEFAULT_TYPE),
        ("message", "message"),
        ("order.created", "order.created"),
        ("ns:thing_changed-v2", "ns:thing_changed-v2"),
        ("t" * 64, "t" * 64),
        ("Reset", "Reset"),  # case matters: only the exact reserved names are refused
    ],
)
def test_validate_type_accepts_and_defaults(value: object, expected: str) -> None:
    assert validate_type(value) == expected


@pytest.mark.parametrize(
    "value",
    ["t" * 65, "a\n", "with space", "a/b", "a@b", "é", "a*", 7, ["message"]],
)
def test_validate_type_rejects_anything_else_as_invalid_type(value: object) -> None:
    with pytest.raises(BadRequest) as info:
        validate_type(value)
    assert info.value.code == "invalid_type"


@pytest.mark.parametrize("value", sorted(RESERVED_TYPES))
def test_validate_type_refuses_types_the_server_sends(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_type(value)
    assert info.value.code == "reserved_type"
    assert repr(value) in info.value.message
    assert "server" in info.value.message


def test_reserved_types_are_the_documented_ones() -> None:
    assert {"reset", "overflow", "shutdown", "auth_expired"} == RESERVED_TYPES
    assert DEFAULT_TYPE == "message"


@pytest.mark.parametrize(
    ("patterns", "topic", "expected"),
    [
        (["user:42"], "user:42", True),
        (["user:42"], "user:420", False),
        (["user:42"], "user:4", False),
        (["dashboard:*"], "dashboard:cpu", True),
        (["dashboard:*"], "dashboard:cpu/core:1", True),
        (["dashboard:*"], "dashboard:", True),
        (["dashboard:*"], "dashboard", False),
        (["dashboard:*"], "xdashboard:cpu", False),
        (["org:*:alerts"], "org:acme:alerts", True),
        (["org:*:alerts"], "org:acme:eu/west:alerts", True),
        (["org:*:alerts"], "org:acme:alerts:old", False),
        (["*:alerts"], "a:alerts", True),
        (["a*b*c"], "abc", True),
        (["a*b*c"], "aXbYbZc", True),
        (["a*b*c"], "acb", False),
        (["a*b*b"], "abb", True),
        (["a*b*b"], "ab", False),
        (["a*a"], "a", False),
        (["a.b"], "aXb", False),  # '.' is literal, not a regex wildcard
        (["*"], "anything/at:all", True),
        (["**"], "x", True),
        (["user:1", "user:2"], "user:2", True),
        (["user:1", "team:*"], "team:red", True),
        (["user:1", "team:*"], "user:3", False),
        ([], "user:1", False),
    ],
)
def test_pattern_set_matches(patterns: list[str], topic: str, expected: bool) -> None:
    assert PatternSet(patterns).matches(topic) is expected


@pytest.mark.parametrize(
    "pattern",
    ["", "a b", "a?", "a[b]", "a\n", "é*", "x" * 201, "a,b"],
)
def test_pattern_set_rejects_invalid_patterns_naming_them(pattern: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(pattern)[:20])):
        PatternSet(["ok:*", pattern])


def test_pattern_set_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        PatternSet("user:*")


def test_pattern_set_truthiness_patterns_and_equality() -> None:
    assert not PatternSet([])
    patterns = PatternSet(["b", "a:*", "b"])
    assert patterns
    assert patterns.patterns == ("b", "a:*")
    assert patterns == PatternSet(["a:*", "b"])
    assert hash(patterns) == hash(PatternSet(["a:*", "b"]))
    assert patterns != PatternSet(["a:*"])


@settings(database=None, max_examples=300)
@given(
    patterns=st.lists(st.text(alphabet="ab:*", min_size=1, max_size=8), max_size=4),
    topic=st.text(alphabet="ab:", min_size=1, max_size=12),
)
def test_pattern_set_agrees_with_fnmatch(patterns: list[str], topic: str) -> None:
    # Within this alphabet fnmatch has no other special characters, so it is a reference glob.
    expected = any(fnmatch.fnmatchcase(topic, pattern) for pattern in patterns)
    assert PatternSet(patterns).matches(topic) is expected


def test_pattern_set_does_not_backtrack_catastrophically() -> None:
    patterns = PatternSet(["*a*a*a*a*a*a*a*a*a*a*a*a*b", "x:*"])
    started = time.perf_counter()
    assert not patterns.matches("a" * 200)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("  ", ()),
        ("a", ("a",)),
        ("a,b", ("a", "b")),
        (" a , b:* ,, ", ("a", "b:*")),
        (",", ()),
    ],
)
def test_parse_pattern_list(text: str, expected: tuple[str, ...]) -> None:
    assert parse_pattern_list(text) == expected
