"""A Mercure publish form into an Update, as the drafts say: what is accepted, what is 400/413."""

from __future__ import annotations

import pytest

from realtime.core.errors import ClientError
from realtime.mercure.updates import (
    Update,
    addresses_hub,
    parse_update,
    remove_dot_segments,
)

HUB = "https://hub.example/.well-known/mercure"


def update(*pairs: tuple[str, str], max_topics: int = 5, max_payload: int = 1000) -> Update:
    return parse_update(pairs, hub_url=HUB, max_topics=max_topics, max_payload=max_payload)


def test_a_full_update_keeps_every_field() -> None:
    got = update(
        ("topic", "https://example.com/books/1"),
        ("topic", "https://example.com/authors/2"),
        ("data", "line one\r\n  line two\rthree"),
        ("private", ""),
        ("id", "urn:uuid:4f1b"),
        ("type", "book.updated"),
        ("retry", "3000"),
        ("futureField", "ignored"),
    )
    assert got == Update(
        topics=("https://example.com/books/1", "https://example.com/authors/2"),
        data="line one\n  line two\nthree",
        private=True,
        id="urn:uuid:4f1b",
        type="book.updated",
        retry=3000,
    )


def test_a_minimal_update_is_public_with_no_id_of_its_own() -> None:
    assert update(("topic", "foo")) == Update(("foo",), "", False, None, None, None)


REFUSED = [
    ("no topic", [("data", "x")], 400, "missing_topic"),
    ("empty topic", [("topic", "")], 400, "missing_topic"),
    ("empty alternate", [("topic", "a"), ("topic", "")], 400, "invalid_topic"),
    ("wildcard topic", [("topic", "*")], 400, "invalid_topic"),
    ("wildcard alternate", [("topic", "a"), ("topic", "*")], 400, "invalid_topic"),
    ("control character", [("topic", "a\nb")], 400, "invalid_topic"),
    ("format character", [("topic", "a\u202eb")], 400, "invalid_topic"),
    ("hub namespace", [("topic", "/.well-known/mercure/subscriptions/x")], 400, "invalid_topic"),
    ("hub url itself", [("topic", HUB)], 400, "invalid_topic"),
    # relative topics resolve against the hub's URL: "mercure" is its own path
    ("relative topic naming the hub", [("topic", "mercure")], 400, "invalid_topic"),
    (
        "hub namespace, another host",
        [("topic", "https://other.example/.well-known/mercure/subscriptions/a/b")],
        400,
        "invalid_topic",
    ),
    (
        "hub namespace, encoded",
        [("topic", "https://hub.example/.well-known/%6Dercure/subscriptions/a")],
        400,
        "invalid_topic",
    ),
    (
        "hub namespace, dot segments",
        [("topic", "https://hub.example/.well-known/x/../mercure/subscriptions")],
        400,
        "invalid_topic",
    ),
    ("id starting with #", [("topic", "a"), ("id", "#1")], 400, "invalid_id"),
    ("id earliest", [("topic", "a"), ("id", "earliest")], 400, "invalid_id"),
    ("id with a newline", [("topic", "a"), ("id", "a\nb")], 400, "invalid_id"),
    ("type mercure", [("topic", "a"), ("type", "mercure")], 400, "reserved_type"),
    ("type with a newline", [("topic", "a"), ("type", "a\ndata: x")], 400, "invalid_type"),
    ("retry not digits", [("topic", "a"), ("retry", "10s")], 400, "invalid_retry"),
    ("retry negative", [("topic", "a"), ("retry", "-1")], 400, "invalid_retry"),
    ("retry non-ascii digits", [("topic", "a"), ("retry", "١٢")], 400, "invalid_retry"),
    ("too many topics", [("topic", f"t{n}") for n in range(6)], 413, "payload_too_large"),
    ("data too large", [("topic", "a"), ("data", "x" * 1001)], 413, "payload_too_large"),
]


@pytest.mark.parametrize(
    ("pairs", "status", "code"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_a_bad_update_is_refused_with_the_drafts_status(
    pairs: list[tuple[str, str]], status: int, code: str
) -> None:
    with pytest.raises(ClientError) as raised:
        update(*pairs)
    assert (raised.value.status, raised.value.code) == (status, code)


@pytest.mark.parametrize(
    "topic",
    [
        "https://example.com/.well-known/mercure-ish",
        "https://hub.example/books/.well-known/mercure",
        "urn:uuid:d3a8",
        "books",  # resolves to /.well-known/books
        "/.well-known/mercurex",
    ],
)
def test_topics_near_the_hub_namespace_are_fine(topic: str) -> None:
    assert not addresses_hub(topic, HUB)


@pytest.mark.parametrize(
    ("path", "normal"),
    [("/a/./b/../c", "/a/c"), ("/a/b/..", "/a/"), ("/../a", "/a"), ("/a//b", "/a//b")],
)
def test_dot_segments_are_removed_as_rfc_3986_says(path: str, normal: str) -> None:
    assert remove_dot_segments(path) == normal
