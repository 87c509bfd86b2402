"""Subscription documents and API paths, held to the drafts' own examples."""

from __future__ import annotations

import pytest

from realtime.mercure.selectors import compile_selector
from realtime.mercure.subscriptions import (
    DRAFT_07,
    DRAFT_08,
    ApiRequest,
    collection_document,
    parse_api_path,
    subscription_document,
    subscription_topic,
)

HUB = "https://example.com/.well-known/mercure"
HUB_PATH = "/.well-known/mercure"
SUBSCRIBER = "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"


def test_a_draft_07_subscription_is_the_drafts_example() -> None:
    selector = compile_selector("topic", "https://example.com/{selector}", base=HUB)
    document = subscription_document(
        selector, SUBSCRIBER, active=True, payload={"foo": "bar"}, hub_path=HUB_PATH
    )
    assert document == {
        "@context": "https://mercure.rocks/",
        "id": "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/"
        "urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6",
        "type": "Subscription",
        "topic": "https://example.com/{selector}",
        "subscriber": SUBSCRIBER,
        "active": True,
        "payload": {"foo": "bar"},
    }


def test_a_draft_08_subscription_is_the_drafts_example() -> None:
    selector = compile_selector("match_urlpattern", "https://example.com/:selector", base=HUB)
    document = subscription_document(
        selector, SUBSCRIBER, active=True, payload={"foo": "bar"}, hub_path=HUB_PATH
    )
    assert document == {
        "id": "/.well-known/mercure/subscriptions/urlpattern/"
        "https%3A%2F%2Fexample.com%2F%3Aselector/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6",
        "type": "subscription",
        "match_type": "urlpattern",
        "match": "https://example.com/:selector",
        "subscriber": SUBSCRIBER,
        "active": True,
        "payload": {"foo": "bar"},
    }


def test_variables_are_encoded_once_as_wholes() -> None:
    selector = compile_selector("match", "https://example.com/a%20b", base=HUB)
    topic = subscription_topic(selector, "s/1", HUB_PATH)
    assert topic == (
        "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fexample.com%2Fa%2520b/s%2F1"
    )
    assert parse_api_path(topic, HUB_PATH) == ApiRequest(
        DRAFT_08, "exact", "https://example.com/a%20b", "s/1"
    )


def test_collections_carry_the_cursor_as_each_draft_says() -> None:
    selector = compile_selector("topic", "https://example.com/a-topic", base=HUB)
    member = subscription_document(selector, "s", active=True, payload=None, hub_path=HUB_PATH)
    old = collection_document(
        "/.well-known/mercure/subscriptions", [member], draft=DRAFT_07, last_event_id="earliest"
    )
    assert old["@context"] == "https://mercure.rocks/"
    assert (old["type"], old["lastEventID"]) == ("Subscriptions", "earliest")
    assert "@context" not in old["subscriptions"][0]  # defined by the parent node
    new = collection_document("/x", [member], draft=DRAFT_08, last_event_id="earliest")
    assert new == {"id": "/x", "type": "subscriptions", "subscriptions": [member]}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/.well-known/mercure/subscriptions", ApiRequest(None)),
        ("/.well-known/mercure/subscriptions/", ApiRequest(None)),
        (
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D",
            ApiRequest(DRAFT_07, None, "https://example.com/{selector}"),
        ),
        (
            "/.well-known/mercure/subscriptions/a-topic/urn%3Auuid%3A1",
            ApiRequest(DRAFT_07, None, "a-topic", "urn:uuid:1"),
        ),
        (
            "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aid",
            ApiRequest(DRAFT_08, "urlpattern", "https://example.com/:id"),
        ),
        (
            "/.well-known/mercure/subscriptions/exact/t/urn%3Auuid%3A1",
            ApiRequest(DRAFT_08, "exact", "t", "urn:uuid:1"),
        ),
        ("/.well-known/mercure/subscriptions/a/b/c/d", None),
        ("/.well-known/mercure/subscriptions//b", None),
        ("/.well-known/mercure", None),
        ("/elsewhere/subscriptions", None),
    ],
)
def test_api_paths_are_read_in_both_drafts_forms(path: str, expected: ApiRequest | None) -> None:
    assert parse_api_path(path, HUB_PATH) == expected
