"""Mercure topic selectors, as both drafts define them: tables of selector, topic and verdict."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.core.errors import BadRequest
from realtime.mercure.selectors import (
    MAX_SELECTOR_LENGTH,
    MAX_SELECTORS,
    compile_selector,
    parse_selectors,
    template_regex,
)

HUB = "https://hub.example/.well-known/mercure"

# (parameter, selector, topic, matches)
MATCHES = [
    # the wildcard, for every kind
    ("topic", "*", "https://example.com/books/1", True),
    ("match", "*", "anything at all", True),
    ("match_urlpattern", "*", "urn:uuid:1", True),
    # draft 07: exact strings
    ("topic", "https://example.com/books/1", "https://example.com/books/1", True),
    ("topic", "https://example.com/books/1", "https://example.com/books/10", False),
    ("topic", "foo", "foo", True),
    ("topic", "foo", "Foo", False),
    # draft 07: URI Templates; {id} is one path segment
    ("topic", "https://example.com/books/{id}", "https://example.com/books/1", True),
    ("topic", "https://example.com/books/{id}", "https://example.com/books/1/reviews", False),
    ("topic", "https://example.com/books/{id}", "https://example.com/authors/1", False),
    ("topic", "https://example.com/books/{id}", "https://example.com/books/%C3%A9t%C3%A9", True),
    ("topic", "https://example.com/books/{id}", "https://example.com/books/été", True),
    ("topic", "https://example.com/{+path}", "https://example.com/a/b/c", True),
    ("topic", "https://example.com/books{/id,part}", "https://example.com/books/1/2", True),
    ("topic", "https://example.com/books{/id}", "https://example.com/books/1", True),
    ("topic", "https://example.com/books{/id}", "https://example.com/books/1/2", False),
    ("topic", "https://example.com/books{/path*}", "https://example.com/books/1/2/3", True),
    ("topic", "https://example.com/{a,b}", "https://example.com/1,2", True),
    ("topic", "https://example.com/{a}", "https://example.com/1,2", False),
    ("topic", "https://example.com/books{?page}", "https://example.com/books?page=2", True),
    ("topic", "https://example.com/books{?page}", "https://example.com/books?other=2", False),
    ("topic", "https://example.com/books{?page}", "https://example.com/books", True),
    ("topic", "https://example.com/{id}.json", "https://example.com/7.json", True),
    ("topic", "https://example.com/files{.ext}", "https://example.com/files.tar.gz", True),
    ("topic", "https://example.com/map{;x,y}", "https://example.com/map;x=1;y=2", True),
    ("topic", "https://example.com/a{#frag}", "https://example.com/a#top", True),
    # draft 07, rule 2: a template equal to the string matches (templates compared as strings)
    ("topic", "https://example.com/books/{id}", "https://example.com/books/{id}", True),
    # an invalid template is only an exact string
    ("topic", "https://example.com/books/{id", "https://example.com/books/1", False),
    ("topic", "https://example.com/books/{id", "https://example.com/books/{id", True),
    # draft 08: exact is byte for byte, never a template
    ("match", "https://example.com/books/{id}", "https://example.com/books/1", False),
    ("match_exact", "https://example.com/books/1", "https://example.com/books/1", True),
    # draft 08: URL Patterns; :id is one path segment
    ("match_urlpattern", "https://example.com/books/:id", "https://example.com/books/1", True),
    ("match_urlpattern", "https://example.com/books/:id", "https://example.com/books/1/2", False),
    ("match_urlpattern", "https://example.com/books/*", "https://example.com/books/1/2", True),
    ("match_urlpattern", "https://example.com/books/:id", "urn:uuid:1", False),
    ("match_urlpattern", "https://EXAMPLE.com/books/:id", "https://example.com/books/1", True),
    ("match_urlpattern", "https://example.com/Books/:id", "https://example.com/books/1", False),
    # relative patterns and topics resolve against the hub's URL
    ("match_urlpattern", "/.well-known/mercure/subscriptions/*", f"{HUB}/subscriptions/a", True),
    ("match_urlpattern", "/books/:id", "https://hub.example/books/1", True),
    ("match_urlpattern", "/books/:id", "https://example.com/books/1", False),
]


@pytest.mark.parametrize(("name", "selector", "topic", "expected"), MATCHES)
def test_a_selector_matches_what_its_draft_says(
    name: str, selector: str, topic: str, expected: bool
) -> None:
    assert compile_selector(name, selector, base=HUB).matches(topic, base=HUB) is expected


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("matches", "x", "reserved match namespace"),
        ("match_regex", "x", "reserved match namespace"),
        ("MATCH", "x", "reserved match namespace"),
        ("match", "", "empty"),
        ("topic", "a\x00b", r"U\+0000"),
        ("match", "a\u200bb", r"U\+200B"),  # a format character (Cf)
        ("match", "a\x85b", r"U\+0085"),  # C1
        ("match", "x" * (MAX_SELECTOR_LENGTH + 1), "at most"),
        ("match_urlpattern", "https://example.com/(", "not a valid URL Pattern"),
        ("topic", "https://x/" + "{a}" * 17, "at most 16"),
    ],
)
def test_a_bad_selector_is_400_invalid_selector(name: str, value: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says) as raised:
        parse_selectors([(name, value)], base=HUB)
    assert (raised.value.status, raised.value.code) == (400, "invalid_selector")


def test_a_subscription_reads_every_selector_parameter_and_ignores_the_rest() -> None:
    pairs = [
        ("topic", "https://example.com/books/{id}"),
        ("lastEventID", "urn:uuid:1"),
        ("match", "bar"),
        ("match_urlpattern", "https://example.com/authors/:id"),
        ("match", "bar"),  # identical: one subscription
    ]
    selectors = parse_selectors(pairs, base=HUB)
    assert [s.text for s in selectors.selectors] == [
        "https://example.com/books/{id}",
        "bar",
        "https://example.com/authors/:id",
    ]
    assert selectors.matches("bar")
    assert selectors.matches_any(["https://example.com/nothing", "https://example.com/authors/2"])
    assert not selectors.matches("https://example.com/nothing")


def test_a_subscription_needs_a_selector_and_no_more_than_the_limit() -> None:
    with pytest.raises(BadRequest) as none:
        parse_selectors([("lastEventID", "x")], base=HUB)
    assert none.value.code == "missing_topic"
    with pytest.raises(BadRequest) as many:
        parse_selectors([("match", f"t{n}") for n in range(MAX_SELECTORS + 1)], base=HUB)
    assert many.value.code == "too_many_topics"


def test_a_plain_string_or_an_invalid_template_has_no_regex() -> None:
    assert template_regex("https://example.com/books/1") is None
    assert template_regex("https://example.com/{unclosed") is None
    assert template_regex("https://example.com/{id}") is not None


@pytest.mark.timeout(120)  # a hang guard, not a speed claim: backtracking would take hours
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="{}+/?#.;&=,*a1", max_size=60))
def test_any_template_compiles_and_matching_adversarial_topics_ends(template: str) -> None:
    """Templates come from clients: whatever they write either compiles to a pattern without
    nested ambiguity or is refused, and matching a topic built to make a backtracking engine
    try every split ends."""
    try:
        selector = compile_selector("topic", "https://x/" + template, base=HUB)
    except BadRequest:
        return  # too many expressions: refused before matching
    topic = "https://x/" + ("a," * 40) + ".;&=" * 10 + "!"
    assert isinstance(selector.matches(topic, base=HUB), bool)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "template",
    [
        "{+a}{+b}{+c}{+d}{+e}{+f}{+g}{+h}!",
        "{a}{b}{c}{d}{e}{f}{g}{h}{i}{j}{k}{l}{m}{n}{o}{p}!",
        "{a}-{b}-{c}-{d}-{e}-{f}-{g}-{h}-{i}-{j}-{k}-{l}-{m}-{n}-{o}-{p}!",
    ],
)
def test_neighbouring_expressions_cannot_make_a_match_backtrack(template: str) -> None:
    """A backtracking engine takes longer than the universe's age on these (every split of the
    topic among the expressions is tried before the `!` fails); RE2 answers in one pass, so the
    test's timeout is never near."""
    selector = compile_selector("topic", template, base=HUB)
    for topic in ("a-" * 500 + "x", "a" * 1000):
        assert not selector.matches(topic, base=HUB)
    assert selector.matches("a-" * 15 + "a!", base=HUB)  # and still matches what it should
