"""Tests for :mod:`realtime.core.access`: which browser pages may act with a user's credentials, who
may see presence, and the metrics token. Pure tables; ``tests/system/test_security.py`` proves each
against real gunicorn."""

from __future__ import annotations

import pytest

from realtime.core.access import (
    authorize_browser_publish,
    authorize_metrics,
    origin_allowed,
    presence_visible,
)
from realtime.core.auth import FROM_COOKIE, FROM_HEADER, FROM_QUERY, Grant
from realtime.core.errors import AuthError, Forbidden
from realtime.core.topics import PatternSet

HOST = "rt.example:8000"


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "allowed"),
    [
        (None, "http", HOST, ()),  # no browser page: its token is what counts
        ("http://rt.example:8000", "http", HOST, ()),
        ("HTTP://RT.example:8000/", "http", HOST, ()),
        ("https://rt.example", "https", "rt.example", ()),
        ("https://rt.example", "https", "rt.example:443", ()),  # the default port, implied
        ("http://rt.example:80", "http", "rt.example", ()),
        ("http://[::1]:8000", "http", "[::1]:8000", ()),
        ("https://app.example", "http", HOST, ("https://app.example",)),
        ("https://App.Example", "http", HOST, ("https://app.example",)),
        ("https://anything.example", "http", HOST, ("*",)),
    ],
)
def test_an_origin_is_allowed_when_it_is_this_server_or_listed(
    origin: str | None, scheme: str, host: str, allowed: tuple[str, ...]
) -> None:
    assert origin_allowed(origin, scheme=scheme, host=host, allowed=allowed)


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "allowed"),
    [
        # Regression (issue 11, finding 7): the scheme was not compared.
        ("https://rt.example:8000", "http", HOST, ()),
        ("http://rt.example", "https", "rt.example", ()),
        ("ws://rt.example:8000", "http", HOST, ()),
        ("http://rt.example:8001", "http", HOST, ()),
        ("http://rt.example", "http", HOST, ()),  # port 80 is not 8000
        ("http://evil.example:8000", "http", HOST, ()),
        ("null", "http", HOST, ()),
        ("", "http", HOST, ()),
        ("http://rt.example:8000", "http", None, ()),  # no Host: nothing to be the same as
        ("https://other.example", "http", HOST, ("https://app.example",)),
        ("http://rt.example:8000", "http", HOST, ("https://app.example",)),  # a list replaces it
    ],
)
def test_any_other_origin_is_refused(
    origin: str, scheme: str, host: str | None, allowed: tuple[str, ...]
) -> None:
    assert not origin_allowed(origin, scheme=scheme, host=host, allowed=allowed)


def browser_publish(source: str, origin: str | None) -> None:
    authorize_browser_publish(source, origin, scheme="http", host=HOST, allowed=())


@pytest.mark.parametrize(
    ("source", "origin"),
    [
        (FROM_COOKIE, "https://evil.example"),  # regression: issue 11, finding 1
        (FROM_COOKIE, None),
        (FROM_COOKIE, "null"),
        (FROM_QUERY, "https://evil.example"),
    ],
)
def test_a_publish_with_the_browsers_credentials_from_elsewhere_is_refused(
    source: str, origin: str | None
) -> None:
    with pytest.raises(Forbidden) as refused:
        browser_publish(source, origin)
    assert refused.value.code == "origin_not_allowed"
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("source", "origin"),
    [
        (FROM_COOKIE, "http://rt.example:8000"),
        (FROM_QUERY, None),
        (FROM_QUERY, "http://rt.example:8000"),
        (FROM_HEADER, None),
        (FROM_HEADER, "https://evil.example"),  # a page cannot set it without a preflight
    ],
)
def test_a_publish_from_this_server_or_not_from_a_browser_passes(
    source: str, origin: str | None
) -> None:
    browser_publish(source, origin)


def grant(subscribe: tuple[str, ...]) -> Grant:
    return Grant("someone", PatternSet(subscribe), PatternSet(()), None)


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        (None, False),  # regression: issue 11, finding 2
        (grant(()), False),
        (grant(("other:*",)), False),
        (grant(("public:*",)), True),
        (grant(("public:lobby",)), True),
        (grant(("*",)), True),
    ],
)
def test_who_is_present_is_shown_to_a_token_granting_the_topic_only(
    who: Grant | None, visible: bool
) -> None:
    assert presence_visible("public:lobby", who) is visible


TOKEN = "m" * 24


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        (f"Basic {TOKEN}", "invalid_token"),
        (f"Bearer {TOKEN}x", "invalid_token"),
        ("Bearer", "invalid_token"),
        ("Bearer é", "invalid_token"),
    ],
)
def test_metrics_need_exactly_the_metrics_token(authorization: str | None, code: str) -> None:
    with pytest.raises(AuthError) as refused:
        authorize_metrics(authorization, TOKEN)
    assert refused.value.code == code


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer  {TOKEN} "])
def test_the_metrics_token_as_a_bearer_token_passes(authorization: str) -> None:
    authorize_metrics(authorization, TOKEN)
