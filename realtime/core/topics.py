"""The grammar of topics and event types, and the glob patterns that grant access to topics.

This module owns three things the wire contract of DESIGN.md fixes: which strings are topics,
which strings are event types (the SSE ``event:`` field), and how a pattern such as
``dashboard:*`` from a token or from ``REALTIME_PUBLIC_TOPICS`` selects topics. It is pure: no
I/O, no Flask, so the web layer, the WebSocket session, the CLI and the config validator all share
one definition and it is tested as input → verdict tables.

Intentional choices, so nobody "fixes" them:

* The alphabets are ASCII only and anchored with ``\\A``/``\\Z``, not ``^``/``$``: ``$`` also
  matches before a trailing newline, and ``"a\\n"`` must not pass as the topic ``"a"``.
* In a pattern, ``*`` is the only special character and it matches any run of characters,
  ``:`` and ``/`` included. There is no ``?``, no character class and no escaping: topics cannot
  contain ``*``, so nothing ever needs escaping, and a token author cannot write a pattern whose
  meaning is surprising.
* Matching compiles every glob of a set into one regular expression whose inner segments are
  atomic groups, so a pathological pattern such as ``*a*a*a*a*b`` costs linear time per segment
  instead of exponential backtracking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from realtime.core.errors import BadRequest

__all__ = [
    "DEFAULT_TYPE",
    "MAX_TOPIC_LENGTH",
    "MAX_TYPE_LENGTH",
    "RESERVED_TYPES",
    "TOPIC_RE",
    "TYPE_RE",
    "PatternSet",
    "parse_pattern_list",
    "validate_topic",
    "validate_type",
]

MAX_TOPIC_LENGTH = 200
MAX_TYPE_LENGTH = 64

#: A topic name: 1 to 200 characters of ``A-Z a-z 0-9 _ . : @ / -``.
TOPIC_RE: re.Pattern[str] = re.compile(r"\A[A-Za-z0-9_.:@/-]{1,200}\Z")

#: An event type: 1 to 64 characters of ``A-Z a-z 0-9 _ . : -``. Narrower than a topic because
#: it is also a JavaScript ``addEventListener`` name that clients type by hand.
TYPE_RE: re.Pattern[str] = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")

#: Types the server itself sends; a publisher using one could forge a control event.
RESERVED_TYPES: frozenset[str] = frozenset({"reset", "overflow", "shutdown", "auth_expired"})

#: The type of an event published without one, as the SSE specification's default event name.
DEFAULT_TYPE = "message"

# A pattern is a topic with '*' allowed; the length limit is the topic's.
_PATTERN_RE = re.compile(r"\A[A-Za-z0-9_.:@/*-]{1,200}\Z")

_TOPIC_RULE = "a topic is 1 to 200 characters from A-Z, a-z, 0-9 and _ . : @ / -"
_TYPE_RULE = "a type is 1 to 64 characters from A-Z, a-z, 0-9 and _ . : -"
_QUOTE_LIMIT = 60


def _quote(value: object) -> str:
    """Show an offending value in a message, bounded so a 1 MB topic cannot bloat a response."""
    text = repr(value)
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 3] + "..."
    return text


def validate_topic(value: object) -> str:
    """Return ``value`` if it is a topic name, else raise :class:`~realtime.core.errors.BadRequest`.

    Takes ``object`` because topics arrive from JSON, form fields and WebSocket frames, where a
    number or a list is as likely as a string; every caller then gets the same stable codes:
    ``missing_topic`` for ``None`` or ``""`` and ``invalid_topic`` for anything else that is not
    a topic.
    """
    if value is None or value == "":
        raise BadRequest("A topic is required.", code="missing_topic")
    if not isinstance(value, str) or TOPIC_RE.match(value) is None:
        raise BadRequest(f"Topic {_quote(value)} is invalid: {_TOPIC_RULE}.", code="invalid_topic")
    return value


def distinct(values: Iterable[str]) -> tuple[str, ...]:
    """Distinct topics in first-seen order."""
    return tuple(dict.fromkeys(values))


def check_topic_count(count: int, limit: int) -> None:
    """One stream or connection follows at most ``limit`` topics (``REALTIME_MAX_TOPICS``)."""
    if count > limit:
        raise BadRequest(
            f"A stream or connection may follow at most {limit} topics (REALTIME_MAX_TOPICS), "
            f"not {count}.",
            code="too_many_topics",
        )


def validate_type(value: object) -> str:
    """Return the event type to publish, defaulting to :data:`DEFAULT_TYPE`.

    ``None`` and ``""`` mean "no type given", so form posts with an empty ``type`` field behave
    like JSON without one. A reserved type is refused with its own code (``reserved_type``)
    because the value is well-formed and the publisher needs to know to pick another name.
    """
    if value is None or value == "":
        return DEFAULT_TYPE
    if not isinstance(value, str) or TYPE_RE.match(value) is None:
        raise BadRequest(f"Type {_quote(value)} is invalid: {_TYPE_RULE}.", code="invalid_type")
    if value in RESERVED_TYPES:
        raise BadRequest(
            f"Type {value!r} is reserved: the server itself sends events of that type, "
            "so a published one could be mistaken for a control event.",
            code="reserved_type",
        )
    return value


def _glob_to_regex(pattern: str) -> str:
    """Translate one glob to a regular expression that must be used with ``fullmatch``.

    Globs with only ``*`` match greedily-from-the-left: for an inner literal segment the leftmost
    occurrence is always a correct choice, so each ``.*?literal`` is an atomic group that never
    backtracks. Only the last segment needs backtracking, to find its literal at the very end.
    """
    parts = [re.escape(part) for part in pattern.split("*")]
    head, *inner, tail = parts
    middle = "".join(f"(?>.*?{part})" for part in inner if part)
    return f"{head}{middle}.*{tail}"


class PatternSet:
    """Compiled glob patterns: a pattern is a topic name or a glob where '*' matches any run of
    characters (including ':' and '/'), nothing else is special.

    Built once per token or per config value and asked :meth:`matches` for every subscribe and
    publish, so construction validates and compiles and matching is a set lookup or one regex.
    An empty set matches nothing and is falsy, which reads naturally as "no rights".
    """

    __slots__ = ("_exact", "_match_all", "_regex", "patterns")

    patterns: tuple[str, ...]

    def __init__(self, patterns: Iterable[str]) -> None:
        if isinstance(patterns, str):
            # A bare string is iterable too, and would silently become one pattern per character.
            raise TypeError("PatternSet takes an iterable of patterns, not a single string.")
        unique: dict[str, None] = {}
        for pattern in patterns:
            if not isinstance(pattern, str) or _PATTERN_RE.match(pattern) is None:
                raise ValueError(
                    f"Pattern {_quote(pattern)} is invalid: a pattern is a topic name in which "
                    "'*' may stand for any run of characters (1 to 200 characters from A-Z, "
                    "a-z, 0-9, _ . : @ / - and *)."
                )
            unique[pattern] = None
        self.patterns = tuple(unique)
        globs = [pattern for pattern in self.patterns if "*" in pattern]
        self._exact = frozenset(pattern for pattern in self.patterns if "*" not in pattern)
        self._match_all = any(set(glob) == {"*"} for glob in globs)
        self._regex: re.Pattern[str] | None = None
        if globs and not self._match_all:
            alternatives = "|".join(_glob_to_regex(glob) for glob in globs)
            self._regex = re.compile(f"(?:{alternatives})", re.DOTALL)

    def matches(self, topic: str) -> bool:
        """Whether any pattern selects ``topic`` (the whole topic, not a substring)."""
        if topic in self._exact or self._match_all:
            return True
        return self._regex is not None and self._regex.fullmatch(topic) is not None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __iter__(self) -> Iterator[str]:
        return iter(self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatternSet):
            return NotImplemented
        return frozenset(self.patterns) == frozenset(other.patterns)

    def __hash__(self) -> int:
        return hash(frozenset(self.patterns))

    def __repr__(self) -> str:
        return f"PatternSet({list(self.patterns)!r})"


def parse_pattern_list(text: str) -> tuple[str, ...]:
    """Split a comma-separated list from an environment variable into patterns.

    Whitespace around items is stripped and empty items are dropped, so ``"a, b,"`` and a value
    left empty both behave as people expect. The items are not validated here: build a
    :class:`PatternSet` from them, which raises :class:`ValueError` naming the bad pattern.
    """
    return tuple(item for item in (part.strip() for part in text.split(",")) if item)
