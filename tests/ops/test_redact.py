"""Tests for :mod:`realtime.ops.redact`: token-bearing query parameters vanish from log text."""

from __future__ import annotations

import pytest

from realtime.ops.redact import REDACTED, redact_referer, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/events?access_token=abc", "/events?access_token=[redacted]"),
        ("/events?access_token=abc&topic=a", "/events?access_token=[redacted]&topic=a"),
        (
            "/events?topic=a&access_token=abc&envelope=1",
            "/events?topic=a&access_token=[redacted]&envelope=1",
        ),
        ("/events?topic=a&access_token=abc", "/events?topic=a&access_token=[redacted]"),
        ("/events?topic=a;access_token=abc;x=1", "/events?topic=a;access_token=[redacted];x=1"),
        ("/events?access_token=abc#top", "/events?access_token=[redacted]#top"),
        ("/events?access_token=&topic=a", "/events?access_token=[redacted]&topic=a"),
        ("access_token=abc&topic=a", "access_token=[redacted]&topic=a"),  # a bare query string
        ("/ws?token=abc", "/ws?token=[redacted]"),
        ("/ws?topic=a&jwt=abc", "/ws?topic=a&jwt=[redacted]"),
        (  # the Mercure hub's draft 07 query token
            "/.well-known/mercure?topic=*&authorization=abc",
            "/.well-known/mercure?topic=*&authorization=[redacted]",
        ),
    ],
)
def test_token_parameter_value_is_redacted_wherever_it_stands(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/events?ACCESS_TOKEN=abc", "/events?ACCESS_TOKEN=[redacted]"),
        ("/events?Access_Token=abc&topic=a", "/events?Access_Token=[redacted]&topic=a"),
        ("/events?topic=a&aCcEsS_tOkEn=abc", "/events?topic=a&aCcEsS_tOkEn=[redacted]"),
        ("/ws?TOKEN=abc", "/ws?TOKEN=[redacted]"),
        ("/ws?JWT=abc", "/ws?JWT=[redacted]"),
    ],
)
def test_parameter_name_is_matched_case_insensitively(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/events",
        "/events/orders:42",
        "/tokens/new",
        "/events/access_token=abc",
        "/events?topic=a&envelope=1",
        "/events?topic=token",
        "/events?topic=access_token",
        "/events?my_access_token=abc",
        "/events?tokens=5",
        "/events?topic=a&stoken=abc",
        "",
    ],
)
def test_text_without_a_token_parameter_is_untouched(text: str) -> None:
    assert redact_url(text) == text


def test_other_parameters_keep_their_values() -> None:
    redacted = redact_url("/events?topic=orders&access_token=abc&last_event_id=e1-7&envelope=1")
    assert redacted == "/events?topic=orders&access_token=[redacted]&last_event_id=e1-7&envelope=1"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "GET /events?topic=a&access_token=abc HTTP/1.1",
            "GET /events?topic=a&access_token=[redacted] HTTP/1.1",
        ),
        (
            '10.0.0.1 - - "GET /events?access_token=abc HTTP/1.1" 200 -',
            '10.0.0.1 - - "GET /events?access_token=[redacted] HTTP/1.1" 200 -',
        ),
    ],
)
def test_request_line_loses_the_token_but_keeps_the_protocol(line: str, expected: str) -> None:
    redacted = redact_url(line)
    assert redacted == expected
    assert "abc" not in redacted


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl-_",
        "a%2Bb%3D%3D",
        "a+b/c=d",
    ],
)
def test_whole_token_value_is_redacted(token: str) -> None:
    redacted = redact_url(f"/events?access_token={token}&topic=a")
    assert redacted == "/events?access_token=[redacted]&topic=a"
    assert token not in redacted


def test_every_token_in_the_text_is_redacted() -> None:
    text = "/events?access_token=first&topic=a&access_token=second;token=third&jwt=fourth"
    redacted = redact_url(text)
    assert redacted.count(REDACTED) == 4
    for secret in ("first", "second", "third", "fourth"):
        assert secret not in redacted


@pytest.mark.parametrize(
    "text", ["/events?access_token=abc&topic=a", "GET /ws?token=x HTTP/1.1", "/events"]
)
def test_redacting_twice_changes_nothing_more(text: str) -> None:
    once = redact_url(text)
    assert redact_url(once) == once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Regression (issue 11, finding 4): werkzeug decodes names, so these are access_token.
        ("/events?access%5Ftoken=abc&topic=a", "/events?access%5Ftoken=[redacted]&topic=a"),
        ("/events?%61ccess_token=abc", "/events?%61ccess_token=[redacted]"),
        ("/events?topic=a&ACCESS%5fTOKEN=abc", "/events?topic=a&ACCESS%5fTOKEN=[redacted]"),
        ("/ws?%74oken=abc", "/ws?%74oken=[redacted]"),
        ("/ws?j%77t=abc;x=1", "/ws?j%77t=[redacted];x=1"),
        ("/events?access%5Ftoke=abc", "/events?access%5Ftoke=abc"),  # another name
        ("/events?topic=access%5Ftoken", "/events?topic=access%5Ftoken"),  # a value
    ],
)
def test_a_parameter_is_matched_by_its_decoded_name(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    ("referer", "expected"),
    [
        ("http://dash.example/?topic=a&token=abc", "http://dash.example/?[redacted]"),
        ("https://dash.example/page#token=abc", "https://dash.example/page?[redacted]"),
        ("https://dash.example/page", "https://dash.example/page"),
        ("-", "-"),
    ],
)
def test_a_referer_is_logged_without_its_query(referer: str, expected: str) -> None:
    assert redact_referer(referer) == expected
