"""A Mercure publish request's form, checked as the drafts say, into an :class:`Update`. Pure.

``POST /.well-known/mercure`` carries ``application/x-www-form-urlencoded`` fields (draft 07
section "Publication", draft 08 the same, with its validation spelled out):

- ``topic``, one or more: the first is the canonical topic, the others alternates that also
  match. None may be ``*`` (the wildcard) or address the hub's own namespace (its URL's path and
  below, after resolving against the hub's URL, removing dot segments and decoding percent-
  encoded unreserved characters), so a publisher cannot forge the hub's subscription events.
- ``data`` (default empty): delivered one SSE ``data:`` line per line; CR and CRLF become LF,
  as every SSE receiver would read them anyway.
- ``private``: present means private, whatever its value.
- ``id``: the publisher's own id for the update, delivered verbatim; not starting with ``#``
  (the hub's own ids may), not ``earliest`` (the replay-everything cursor).
- ``type``: the SSE ``event:``; not ``mercure`` (the hub's own events).
- ``retry``: ASCII digits only.

Every identifier also follows :func:`~realtime.mercure.text.check_characters`. Unknown fields
are ignored (the drafts ask it, for future extensions). A request over a limit is 413; any
other violation is 400, and nothing is stored.

Draft 07 states fewer of these rules; a draft-07 publisher that follows its own draft's
recommendations (IRIs, no ``#`` ids) meets all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from realtime.core.errors import BadRequest, PayloadTooLarge
from realtime.mercure.selectors import WILDCARD
from realtime.mercure.text import check_characters

#: The cursor that asks for every event the hub still holds (draft 08, "Reconciliation").
EARLIEST = "earliest"
#: The event type of the hub's own events (subscription events).
HUB_EVENT_TYPE = "mercure"
MAX_ID_LENGTH = 1024
MAX_TYPE_LENGTH = 256
MAX_RETRY_DIGITS = 10

_UNRESERVED_ESCAPE = re.compile(r"%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[Dd]|2[Ee]|5[Ff]|7[Ee])")


@dataclass(frozen=True)
class Update:
    """One validated Mercure update, before it is stored."""

    #: The canonical topic first, then the alternates.
    topics: tuple[str, ...]
    data: str
    private: bool
    #: The publisher's own id (delivered verbatim as the SSE ``id:``), or ``None``: the hub
    #: makes one.
    id: str | None
    #: The SSE ``event:``, or ``None`` (``message``).
    type: str | None
    #: The SSE ``retry:`` in milliseconds, or ``None``.
    retry: int | None


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: ``/a/./b/../c`` is ``/a/c``."""
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    result = "/".join(output)
    if path.endswith(("/.", "/..")):
        result += "/"
    return result


def _decode_unreserved(path: str) -> str:
    """Percent-encoded unreserved characters decoded (``%6D`` is ``m``), the others kept."""
    return _UNRESERVED_ESCAPE.sub(lambda m: unquote(m.group(0)), path)


def hub_namespace_path(topic: str, hub_url: str) -> str | None:
    """The normalised path ``topic`` names, resolved against the hub's URL; ``None`` when it is
    no URL reference there (a URN, say), which cannot name a hub path."""
    try:
        resolved = urlsplit(urljoin(hub_url, topic))
    except ValueError:
        return None
    if not resolved.path.startswith("/"):
        return None
    return remove_dot_segments(_decode_unreserved(resolved.path))


def addresses_hub(topic: str, hub_url: str) -> bool:
    """Whether ``topic`` names the hub's reserved namespace: its URL's path or below."""
    path = hub_namespace_path(topic, hub_url)
    hub_path = remove_dot_segments(urlsplit(hub_url).path).rstrip("/")
    return path is not None and (path == hub_path or path.startswith(hub_path + "/"))


def _topics(values: list[str], hub_url: str, max_topics: int) -> tuple[str, ...]:
    if not values or not values[0]:
        raise BadRequest("An update needs at least one topic field.", code="missing_topic")
    if len(values) > max_topics:
        raise PayloadTooLarge(
            f"An update may name at most {max_topics} topics (REALTIME_MAX_TOPICS), "
            f"not {len(values)}."
        )
    for topic in values:
        if not topic:
            raise BadRequest("A topic field is empty.", code="invalid_topic")
        check_characters(f"Topic {topic[:80]!r}", topic, "invalid_topic")
        if topic == WILDCARD:
            raise BadRequest(
                "'*' is the wildcard matcher, not a topic: no subscription could select it alone.",
                code="invalid_topic",
            )
        if addresses_hub(topic, hub_url):
            raise BadRequest(
                f"Topic {topic[:80]!r} is in the hub's own namespace, reserved for the events "
                "the hub publishes itself.",
                code="invalid_topic",
            )
    return tuple(values)


def _id(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > MAX_ID_LENGTH:
        raise PayloadTooLarge(f"The id is {len(value)} characters; at most {MAX_ID_LENGTH}.")
    if value.startswith("#"):
        raise BadRequest(
            "An update's id may not start with '#': the hub's own ids do.", code="invalid_id"
        )
    if value == EARLIEST:
        raise BadRequest(
            "'earliest' is the cursor that asks for every stored event, not an id.",
            code="invalid_id",
        )
    check_characters("The id", value, "invalid_id")
    return value


def _type(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > MAX_TYPE_LENGTH:
        raise PayloadTooLarge(f"The type is {len(value)} characters; at most {MAX_TYPE_LENGTH}.")
    check_characters("The type", value, "invalid_type")
    if value == HUB_EVENT_TYPE:
        raise BadRequest(
            "The type 'mercure' is the hub's own (subscription events).", code="reserved_type"
        )
    return value


def _retry(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_RETRY_DIGITS:
        raise BadRequest(
            f"retry must be a number of milliseconds in ASCII digits, not {value[:20]!r}.",
            code="invalid_retry",
        )
    return int(value)


def parse_update(
    pairs: Iterable[tuple[str, str]], *, hub_url: str, max_topics: int, max_payload: int
) -> Update:
    """The :class:`Update` a publish form holds (its fields in order, as decoded)."""
    topics: list[str] = []
    single: dict[str, str] = {}
    private = False
    for name, value in pairs:
        if name == "topic":
            topics.append(value)
        elif name == "private":
            private = True
        elif name in ("data", "id", "type", "retry"):
            single.setdefault(name, value)  # the first occurrence, as a form reader takes it
    data = single.get("data", "").replace("\r\n", "\n").replace("\r", "\n")
    size = len(data.encode("utf-8", "surrogatepass"))
    if size > max_payload:
        raise PayloadTooLarge(
            f"data is {size} bytes; the limit is {max_payload} (REALTIME_MAX_PAYLOAD)."
        )
    return Update(
        topics=_topics(topics, hub_url, max_topics),
        data=data,
        private=private,
        id=_id(single.get("id")),
        type=_type(single.get("type")),
        retry=_retry(single.get("retry")),
    )
