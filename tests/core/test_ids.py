"""Tests for :mod:`realtime.core.ids`: the ``<epoch>-<seq>`` shape, parsed, formatted and
ordered."""

from __future__ import annotations

import re

import pytest

from realtime.core.ids import MAX_SEQ, EventId, format_id, is_epoch, new_epoch, parse_id


@pytest.mark.parametrize(
    ("epoch", "seq", "text"),
    [
        ("abc123", 7, "abc123-7"),
        ("a", 0, "a-0"),
        ("0", 1, "0-1"),
        ("f" * 32, MAX_SEQ, "f" * 32 + "-9223372036854775807"),
        ("z9", 10**18, "z9-1000000000000000000"),
    ],
)
def test_format_and_parse_round_trip(epoch: str, seq: int, text: str) -> None:
    assert format_id(epoch, seq) == text
    assert str(EventId(epoch, seq)) == text
    assert parse_id(text) == EventId(epoch, seq)
    assert parse_id(str(parse_id(text))) == EventId(epoch, seq)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" abc-1", EventId("abc", 1)),
        ("abc-1\n", EventId("abc", 1)),
        ("abc-007", EventId("abc", 7)),
    ],
)
def test_parse_id_tolerates_surrounding_whitespace_and_leading_zeros(
    text: str, expected: EventId
) -> None:
    assert parse_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "abc123",
        "abc-",
        "-1",
        "ABC-1",
        "Abc-1",
        "abc--1",
        "abc-+1",
        "abc-1.0",
        "abc-1e3",
        f"abc-{MAX_SEQ + 1}",
        "abc-" + "9" * 19,
        "abc-" + "1" * 20,
        "ab c-1",
        "abc -1",
        "abc- 1",
        "abc-1 2",
        "abc-1-2",
        "a-b-1",
        "abc-1-",
        "a" * 33 + "-1",
        "abc_1",
        "abc:1",
        "abc-\uff11",  # fullwidth digit one
        "abc-\u0661",  # Arabic-Indic digit one
        "\u00e9-1",
        "abc-1\n2",
    ],
)
def test_malformed_id_parses_to_none(text: str) -> None:
    assert parse_id(text) is None


def test_largest_sequence_parses_and_one_more_does_not() -> None:
    assert parse_id(f"e-{2**63 - 1}") == EventId("e", 2**63 - 1)
    assert parse_id(f"e-{2**63}") is None


def test_new_epoch_is_ten_lowercase_hex_characters_and_a_valid_epoch() -> None:
    epoch = new_epoch()
    assert re.fullmatch(r"[0-9a-f]{10}", epoch)
    assert is_epoch(epoch)
    assert parse_id(format_id(epoch, 1)) == EventId(epoch, 1)


def test_new_epoch_does_not_repeat_over_100_draws() -> None:
    assert len({new_epoch() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc123", True),
        ("0", True),
        ("z" * 32, True),
        ("", False),
        ("z" * 33, False),
        ("ABC", False),
        ("ab-c", False),
        ("abc\n", False),
        ("ab c", False),
    ],
)
def test_is_epoch_accepts_1_to_32_lowercase_alphanumerics(value: str, expected: bool) -> None:
    assert is_epoch(value) is expected


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        (EventId("abc", 9), EventId("abc", 10)),
        (EventId("abc", 0), EventId("abc", 1)),
        (EventId("abc", 99), EventId("abc", MAX_SEQ)),
    ],
)
def test_event_ids_of_one_epoch_order_by_sequence_numerically(
    smaller: EventId, larger: EventId
) -> None:
    assert smaller < larger
    assert larger > smaller
    assert str(smaller) != str(larger)


def test_event_ids_sort_by_sequence_not_by_text() -> None:
    ids = [EventId("e", 100), EventId("e", 9), EventId("e", 10)]
    assert [i.seq for i in sorted(ids)] == [9, 10, 100]
    assert sorted(str(i) for i in ids) == ["e-10", "e-100", "e-9"]


def test_equal_event_ids_compare_and_hash_equal() -> None:
    assert EventId("abc", 7) == parse_id("abc-7")
    assert len({EventId("abc", 7), EventId("abc", 7), EventId("abc", 8)}) == 2
    assert EventId("abc", 7) != EventId("abd", 7)
