"""The Server-Sent Events wire format: an encoder for the server and a parser for clients and tests.

This module owns the bytes of ``text/event-stream`` and nothing else. It does no I/O and imports
neither Flask nor gevent, so every rule below is proved by table and property tests. The parser
follows the WHATWG "Interpreting an event stream" algorithm step by step:
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Intentional behaviours (do not "fix" them):

- **Always one space after the colon.** The parser strips exactly one leading space from a field
  value, so ``data:  x`` means `` x``. Writing ``data: `` unconditionally makes a value that begins
  with a space survive, and keeps the bytes predictable for tests.
- **Data is split on every line-break form** the parser recognises (``\\r\\n``, lone ``\\r``, lone
  ``\\n``) into one ``data:`` line each, so no data can end a line early or start a field.
  A receiver therefore sees every break normalised to ``\\n``: a CR in published data cannot be
  represented in SSE at all. A trailing newline survives (it becomes a final empty ``data:`` line)
  and empty data is one ``data: `` line, which browsers dispatch as an event with ``""``.
- **NUL is allowed in data** (the spec passes it through) **but refused in id, event and topic**,
  together with CR and LF. Browsers ignore an ``id`` containing NUL, which would silently leave the
  client's resume position behind. The encoder raises :class:`ValueError` naming the field: callers
  validate first (DESIGN.md grammars), this is defence in depth so no value can inject a field.
- **Text that is not valid Unicode is refused.** A lone surrogate (``json.loads('"\\\\ud800"')``
  yields one) has no UTF-8 encoding; the encoder raises :class:`ValueError` rather than sending
  bytes that a browser would turn into U+FFFD.
- **``topic:`` is an extension field.** WHATWG parsers ignore unknown field names, so browsers
  never see it (a multi-topic browser client puts the topic in the data or the event type); our
  Python client reads it from :attr:`MessageEvent.fields`.
- **``encode_last_id`` is an event with no data.** Per "dispatch the event" step 1 a blank line
  always copies the last-event-ID buffer into the EventSource's last event ID, and step 2 then
  dispatches nothing because the data buffer is empty. A fresh stream uses it to tell the client
  where it stands, so its first reconnect resumes exactly.
- **An empty comment is ``": "``**, the same single-space rule as fields.
- **The parser records unknown fields** in :attr:`MessageEvent.fields` (last value wins, reset
  with the data and type buffers at every blank line). This is the only extension to WHATWG.
- **``retry`` needs at least one ASCII digit and nothing else**; an empty value, a sign, non-ASCII
  digits, or a number too long for :func:`int` (more than 4300 digits) is ignored.
- **End of stream discards the pending event and the pending partial line** (spec: "any pending
  data must be discarded"), so an unterminated final ``retry:`` line is not applied either.
  :meth:`EventStreamParser.close` leaves the parser ready for the next connection's stream and
  keeps :attr:`~EventStreamParser.last_event_id` and :attr:`~EventStreamParser.retry_ms`, as an
  EventSource does across reconnects.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "EventStreamParser",
    "MessageEvent",
    "encode_comment",
    "encode_event",
    "encode_last_id",
    "encode_retry",
]

# Exactly the line endings of the WHATWG parser; the alternation order makes CRLF one break.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = (
    ("\r", "a carriage return (U+000D)"),
    ("\n", "a line feed (U+000A)"),
    ("\0", "a NUL character (U+0000)"),
)
_BOM = "\ufeff"
_EMPTY_FIELDS: Mapping[str, str] = MappingProxyType({})


# -- encoder -------------------------------------------------------------------------------------


def _check_single_line(name: str, value: str, *, allow_nul: bool = False) -> None:
    """Raise :class:`ValueError` if ``value`` could end the line of SSE field ``name``."""
    for char, description in _FORBIDDEN_IN_FIELD:
        if char == "\0" and allow_nul:
            continue
        if char in value:
            raise ValueError(f"The SSE {name} must not contain {description}.")


def _utf8(name: str, text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"The SSE {name} is not valid Unicode (a lone surrogate at position {exc.start})."
        ) from exc


def encode_event(*, id: str | None, event: str, data: str, topic: str | None = None) -> bytes:
    """Encode one complete event: ``id``, ``event``, optional ``topic``, ``data`` lines, blank line.

    ``data`` may hold any text; it is split on every line-break form into one ``data:`` line each,
    so a receiver gets it back with breaks normalised to ``\\n``. ``id``, ``event`` and ``topic``
    must be single lines without NUL, otherwise :class:`ValueError` names the offending field.
    ``id=None`` writes no ``id:`` line, so the client's last event ID stays where it was: server
    notices such as ``overflow`` use it, and a resume after them loses nothing.
    """
    _check_single_line("event", event)
    lines = [f"event: {event}\n"]
    if id is not None:
        _check_single_line("id", id)
        lines.insert(0, f"id: {id}\n")
    if topic is not None:
        _check_single_line("topic", topic)
        lines.append(f"topic: {topic}\n")
    lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    lines.append("\n")
    return _utf8("event", "".join(lines))


def encode_comment(text: str = "") -> bytes:
    """Encode a comment (``: text``) and a blank line; used for heartbeats and the opening flush.

    The blank line is harmless between events: it dispatches nothing because no data is pending.
    """
    _check_single_line("comment", text, allow_nul=True)
    return _utf8("comment", f": {text}\n\n")


def encode_control(kind: str, payload: Mapping[str, str], *, id: str | None = None) -> bytes:
    """A server control event (``ready``, ``reset``, ``overflow``, ``shutdown``,
    ``auth_expired``) whose data is compact JSON."""
    return encode_event(id=id, event=kind, data=json.dumps(payload, separators=(",", ":")))


def encode_retry(ms: int) -> bytes:
    """Encode ``retry: <ms>`` and a blank line, setting the client's reconnection delay."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        raise TypeError(f"The SSE retry delay must be an int of milliseconds, not {ms!r}.")
    if ms < 0:
        raise ValueError(f"The SSE retry delay must be non-negative, not {ms}.")
    return f"retry: {ms}\n\n".encode("ascii")


def encode_last_id(id: str) -> bytes:
    """Encode ``id: <id>`` and a blank line: sets the client's last event ID, dispatches nothing."""
    _check_single_line("id", id)
    return _utf8("id", f"id: {id}\n\n")


# -- parser --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """One dispatched event, as an EventSource would deliver it."""

    #: The ``event`` field, or ``"message"`` when the event had none (or an empty one).
    type: str
    data: str
    #: The stream's last event ID string at dispatch: persists across events until a new ``id``.
    last_event_id: str
    #: Extension fields of this event (e.g. ``{"topic": "orders"}``), last value wins. Not WHATWG.
    fields: Mapping[str, str] = field(default_factory=lambda: _EMPTY_FIELDS, hash=False)


class EventStreamParser:
    """An incremental ``text/event-stream`` parser written from the WHATWG algorithm.

    Feed it bytes as they arrive, split anywhere (inside a UTF-8 sequence, between CR and LF);
    :meth:`feed` returns the events completed so far.
    """

    #: The last valid ``retry`` value seen, in milliseconds; ``None`` until one arrives.
    retry_ms: int | None
    #: The EventSource's last event ID string: updated from the id buffer at every blank line.
    last_event_id: str

    def __init__(self) -> None:
        self.retry_ms = None
        self.last_event_id = ""
        self._new_stream()

    def _new_stream(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True  # no character decoded yet, so a BOM may still come
        self._skip_lf = False  # the previous text ended in CR: a leading LF completes that CRLF
        self._partial: list[str] = []  # text of the current unterminated line
        self._reset_event()
        self._id_buffer = self.last_event_id

    def _reset_event(self) -> None:
        self._data: list[str] = []
        self._type = ""
        self._fields: dict[str, str] = {}

    def feed(self, chunk: bytes) -> list[MessageEvent]:
        """Parse ``chunk`` and return the events it completes, in order."""
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[MessageEvent]:
        """End the stream. The spec discards any incomplete event, so this always returns ``[]``.

        The parser is then ready for the next connection's stream; ``last_event_id`` and
        ``retry_ms`` are kept, as an EventSource keeps them across reconnects.
        """
        self._new_stream()
        return []

    def _feed_text(self, text: str) -> list[MessageEvent]:
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            if text.startswith(_BOM):
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[MessageEvent] = []
        start = 0
        for match in _LINE_BREAK.finditer(text):
            self._partial.append(text[start : match.start()])
            line = "".join(self._partial)
            self._partial.clear()
            event = self._process_line(line)
            if event is not None:
                events.append(event)
            start = match.end()
        if start < len(text):
            self._partial.append(text[start:])
        # A CR ending the text was taken as a lone CR; if an LF starts the next text, it is a CRLF.
        self._skip_lf = text.endswith("\r")
        return events

    def _process_line(self, line: str) -> MessageEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        self._process_field(name, value)
        return None

    def _process_field(self, name: str, value: str) -> None:
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
            self._data.append("\n")
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                # ValueError: longer than sys.get_int_max_str_digits(); the field is ignored.
                with contextlib.suppress(ValueError):
                    self.retry_ms = int(value)
        else:
            self._fields[name] = value

    def _dispatch(self) -> MessageEvent | None:
        self.last_event_id = self._id_buffer
        data = "".join(self._data)
        event_type = self._type or "message"
        fields = MappingProxyType(self._fields) if self._fields else _EMPTY_FIELDS
        self._reset_event()
        if not data:
            return None
        if data.endswith("\n"):
            data = data[:-1]
        return MessageEvent(event_type, data, self.last_event_id, fields)
