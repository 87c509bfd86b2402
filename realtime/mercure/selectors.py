"""Mercure topic selectors: which topics a subscription (or a token) matches, for both drafts.

Pure: strings in, decisions out, so every rule is table-tested. The two drafts name them
differently (``../shared/reference/mercure``), and a hub serving both kinds of client accepts
both:

- draft-dunglas-mercure-07, the ``topic`` query parameter (and the ``mercure.subscribe`` /
  ``mercure.publish`` claims): ``*`` matches everything; otherwise the selector matches a topic
  equal to it, or, when it is a valid URI Template (RFC 6570), a topic the template matches.
- draft 08, ``match`` / ``match_exact`` (exact, byte for byte) and ``match_urlpattern`` (a URL
  Pattern, relative ones resolved against the hub's URL); ``*`` is the wildcard for either, and
  any other name in the reserved ``match`` namespace is an error.

Matching a URI Template: each expression becomes the characters its operator's expansion can
produce (RFC 6570 section 3.2): ``{id}`` one path segment's worth of unreserved or
percent-encoded characters, ``{+path}`` reserved characters too (``/`` included), ``{/a}``
path segments, ``{?q}`` a query, and so on. The expressions are parsed by ``uri-template``
(the library jsonschema uses for the ``uri-template`` format), which also says whether a
selector is a valid template at all. The regular expressions built are run by RE2
(``google-re2``), in time linear in the topic's length whatever the template: neighbouring
expressions over the same characters (``{a}{b}{c}...``) would make a backtracking engine take
seconds per topic, in the hub's reader, where every door's deliveries wait on it.

URL Patterns are evaluated by ``urlpattern`` (the URL Pattern Standard in Rust, whose regex
engine runs in linear time, as draft 08 requires against pathological patterns); a topic that
is not a URL never matches one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2  # type: ignore[import-untyped]
import uri_template
import urlpattern

from realtime.core.errors import BadRequest
from realtime.mercure.text import check_characters

#: The wildcard selector of both drafts.
WILDCARD = "*"
#: Selector kinds, by the query parameter that gives them.
TOPIC = "topic"  # draft 07: exact, *, or URI Template
EXACT = "exact"
URLPATTERN = "urlpattern"
#: Parameter name -> kind (draft 08's reserved ``match`` namespace, plus draft 07's ``topic``).
PARAMETERS = {"topic": TOPIC, "match": EXACT, "match_exact": EXACT, "match_urlpattern": URLPATTERN}

#: Limits (draft 08 asks for implementation-defined ones, refused with 400).
MAX_SELECTORS = 100
MAX_SELECTOR_LENGTH = 2048
MAX_EXPRESSIONS = 16

_PCT = r"%[0-9A-Fa-f]{2}"
_NON_ASCII = r"[^\x00-\x7f]"  # IRIs: ucschar stands for itself
_UNRESERVED = rf"(?:[A-Za-z0-9\-._~]|{_PCT}|{_NON_ASCII})"
_UNRESERVED_NO_DOT = rf"(?:[A-Za-z0-9\-_~]|{_PCT}|{_NON_ASCII})"
_RESERVED = rf"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|{_PCT}|{_NON_ASCII})"
_NAME = rf"(?:[A-Za-z0-9_.]|{_PCT})+"


def _names(names: Sequence[str], explode: bool) -> str:
    """The variable names a named expansion may write (any key, for an exploded one)."""
    if explode:
        return _NAME
    return "(?:" + "|".join(re.escape(name) for name in names) + ")"


def _expression_regex(operator: str | None, names: Sequence[str], explode: bool) -> str:
    """What one ``{...}`` expression can expand to (RFC 6570 3.2, an empty value included).

    Without an explode modifier each variable writes at most one value, so an expression of
    ``n`` variables repeats its part at most ``n`` times (``{/id}`` is one path segment); an
    exploded list or map may write any number."""
    value = f"{_UNRESERVED}*"
    most = "" if explode else str(len(names))
    again = "*" if explode else "{0," + str(len(names) - 1) + "}"
    if operator == "+":
        return f"{_RESERVED}*"
    if operator == "#":
        return f"(?:#{_RESERVED}*)?"
    if operator == ".":
        # A value may hold dots (unreserved), but only a lone label may match them: where
        # labels repeat, a dot inside one could split them every way.
        label = _UNRESERVED if not explode and len(names) == 1 else _UNRESERVED_NO_DOT
        return rf"(?:\.{label}*){{0,{most}}}"
    if operator == "/":
        return f"(?:/{value}){{0,{most}}}"
    if operator == ";":
        return f"(?:;{_names(names, explode)}(?:={value})?){{0,{most}}}"
    if operator == "?":
        pair = f"{_names(names, explode)}={value}"
        return rf"(?:\?{pair}(?:&{pair}){again})?"
    if operator == "&":
        return f"(?:&{_names(names, explode)}={value}){{0,{most}}}"
    return f"{value}(?:,{value}){again}"  # simple string expansion: values joined by commas


def template_regex(template: str) -> Any:
    """The RE2 expression of a valid URI Template with at least one expression (its
    ``fullmatch`` tells whether a topic matches); ``None`` for a plain string (no expression)
    or one that is not a valid template."""
    if "{" not in template or not uri_template.validate(template):
        return None
    parts: list[str] = []
    expressions = 0
    for part in uri_template.URITemplate(template).expansions:
        variables = getattr(part, "vars", None)
        if variables is None:
            parts.append(re.escape(str(getattr(part, "value", ""))))
            continue
        expressions += 1
        names = [var.name for var in variables]
        explode = any(var.explode for var in variables)
        parts.append(_expression_regex(getattr(part, "operator", None), names, explode))
    if expressions > MAX_EXPRESSIONS:
        raise BadRequest(
            f"A topic selector may hold at most {MAX_EXPRESSIONS} URI Template expressions.",
            code="invalid_selector",
        )
    return re2.compile("".join(parts))


@dataclass(frozen=True)
class Selector:
    """One topic selector: its kind (:data:`TOPIC`, :data:`EXACT`, :data:`URLPATTERN`) and its
    text, compiled once."""

    kind: str
    text: str
    _template: Any = field(default=None, compare=False)  # an RE2 pattern
    _pattern: urlpattern.URLPattern | None = field(default=None, compare=False)

    def matches(self, topic: str, *, base: str) -> bool:
        """Whether ``topic`` matches; ``base`` is the hub's URL, for relative URL Patterns."""
        if self.text == WILDCARD or topic == self.text:
            return True
        if self._template is not None:
            return self._template.fullmatch(topic) is not None
        if self._pattern is not None:
            try:
                return bool(self._pattern.test(topic, base))
            except ValueError:  # not a URL reference: no URL Pattern matches it
                return False
        return False


def _check_text(name: str, value: str) -> None:
    if not value:
        raise BadRequest(f"The {name} parameter is empty.", code="invalid_selector")
    if len(value) > MAX_SELECTOR_LENGTH:
        raise BadRequest(
            f"A {name} value is {len(value)} characters; at most {MAX_SELECTOR_LENGTH}.",
            code="invalid_selector",
        )
    check_characters(f"A {name} value", value, "invalid_selector")


def compile_selector(name: str, value: str, *, base: str) -> Selector:
    """The selector a query parameter ``name=value`` gives; 400 ``invalid_selector`` for a
    name in the reserved ``match`` namespace that is no matcher type, or a value that is not
    valid for its kind. ``base`` is the hub's URL (relative URL Patterns resolve against it)."""
    kind = PARAMETERS.get(name)
    if kind is None:
        raise BadRequest(
            f"{name!r} is in the reserved match namespace but is no matcher type this hub "
            "supports: use match (exact), match_exact or match_urlpattern.",
            code="invalid_selector",
        )
    _check_text(name, value)
    if value == WILDCARD or kind == EXACT:
        return Selector(kind, value)
    if kind == TOPIC:
        return Selector(kind, value, _template=template_regex(value))
    try:
        pattern = urlpattern.URLPattern(value, base)
    except ValueError as exc:
        raise BadRequest(
            f"match_urlpattern {value!r} is not a valid URL Pattern: {exc}.",
            code="invalid_selector",
        ) from None
    return Selector(kind, value, _pattern=pattern)


def is_selector_parameter(name: str) -> bool:
    """Whether a query parameter names a selector: ``topic``, or anything in the reserved
    ``match`` namespace (compared without case, so a misspelling fails loudly)."""
    return name == "topic" or name.lower().startswith("match")


@dataclass(frozen=True)
class SelectorSet:
    """The selectors of one subscription (or one token's claim): a topic matches the set when
    it matches one of them."""

    selectors: tuple[Selector, ...]
    base: str

    def matches(self, topic: str) -> bool:
        return any(selector.matches(topic, base=self.base) for selector in self.selectors)

    def matches_any(self, topics: Iterable[str]) -> bool:
        """Whether one of an update's topics (its canonical topic and alternates) matches."""
        return any(self.matches(topic) for topic in topics)


def parse_selectors(pairs: Iterable[tuple[str, str]], *, base: str) -> SelectorSet:
    """The selectors among a subscribe request's query (or body) ``pairs``, in order; other
    parameters are ignored. At least one is needed, at most :data:`MAX_SELECTORS`."""
    selectors = [
        compile_selector(name, value, base=base)
        for name, value in pairs
        if is_selector_parameter(name)
    ]
    if not selectors:
        raise BadRequest(
            "A subscription needs at least one topic, match or match_urlpattern parameter.",
            code="missing_topic",
        )
    if len(selectors) > MAX_SELECTORS:
        raise BadRequest(
            f"A subscription may hold at most {MAX_SELECTORS} selectors, not {len(selectors)}.",
            code="too_many_topics",
        )
    unique = tuple(dict.fromkeys(selectors))  # identical kind and text: one subscription
    return SelectorSet(unique, base)


def claim_selectors(values: Iterable[object], *, base: str) -> SelectorSet | None:
    """A token's ``mercure.subscribe`` / ``mercure.publish`` list as draft 07 reads it (each a
    topic selector: ``*``, exact, or URI Template); ``None`` for no list (no rights)."""
    texts = [value for value in values if isinstance(value, str) and value]
    if not texts:
        return None
    return SelectorSet(tuple(compile_selector("topic", text, base=base) for text in texts), base)
