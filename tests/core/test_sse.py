"""Tests for :mod:`realtime.core.sse`: exact bytes of the encoder, the WHATWG parser, and round
trips."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.core.sse import (
    EventStreamParser,
    MessageEvent,
    encode_comment,
    encode_event,
    encode_last_id,
    encode_retry,
)

# No example database: the tests must not write into the working tree.
hypothesis_settings = settings(deadline=None, database=None)

# The grammars of DESIGN.md ("Details that clients and tests rely on").
TOPICS = st.from_regex(r"[A-Za-z0-9_.:@/-]{1,200}", fullmatch=True)
TYPES = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
IDS = st.from_regex(r"[0-9a-f]{8}-[1-9][0-9]{0,18}", fullmatch=True)
# Any text, with every line-break form and NUL made likely.
ANY_DATA = st.lists(
    st.one_of(st.text(), st.sampled_from(["\r", "\n", "\r\n", "\n\r", "\r\r", "\0", " "]))
).map("".join)
# A value that may legitimately sit on one field line.
SINGLE_LINE = st.text().map(lambda s: re.sub(r"[\r\n\0]", "", s))


def parse(chunks: Iterable[bytes]) -> list[MessageEvent]:
    parser = EventStreamParser()
    events: list[MessageEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return events


def normalise_breaks(text: str) -> str:
    return re.sub(r"\r\n|\r", "\n", text)


def topic_fields(topic: str | None) -> Mapping[str, str]:
    return {} if topic is None else {"topic": topic}


def split_at(stream: bytes, offsets: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(set(offsets)), len(stream)]
    return [stream[start:end] for start, end in pairwise(bounds)]


# -- encoder: exact bytes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "topic", "expected"),
    [
        ("hello", None, b"id: a1b2c3d4-1\nevent: message\ndata: hello\n\n"),
        ("a\nb", None, b"id: a1b2c3d4-1\nevent: message\ndata: a\ndata: b\n\n"),
        ("a\r\nb", None, b"id: a1b2c3d4-1\nevent: message\ndata: a\ndata: b\n\n"),
        ("a\rb", None, b"id: a1b2c3d4-1\nevent: message\ndata: a\ndata: b\n\n"),
        # LF then CR is two breaks, not one.
        ("a\n\rb", None, b"id: a1b2c3d4-1\nevent: message\ndata: a\ndata: \ndata: b\n\n"),
        ("a\n", None, b"id: a1b2c3d4-1\nevent: message\ndata: a\ndata: \n\n"),
        ("", None, b"id: a1b2c3d4-1\nevent: message\ndata: \n\n"),
        (" x", None, b"id: a1b2c3d4-1\nevent: message\ndata:  x\n\n"),
        ("a\0b", None, b"id: a1b2c3d4-1\nevent: message\ndata: a\x00b\n\n"),
        ("{}", "orders", b"id: a1b2c3d4-1\nevent: message\ntopic: orders\ndata: {}\n\n"),
        (
            "h\u00e9llo \u2713 \U0001f389",
            None,
            b"id: a1b2c3d4-1\nevent: message\ndata: h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89\n\n",
        ),
        # Breaks that str.splitlines() knows but SSE does not stay inside one data line.
        (
            "a\u2028b\x85c\x0bd",
            None,
            b"id: a1b2c3d4-1\nevent: message\ndata: a\xe2\x80\xa8b\xc2\x85c\x0bd\n\n",
        ),
    ],
)
def test_encode_event_writes_exact_bytes(data: str, topic: str | None, expected: bytes) -> None:
    assert encode_event(id="a1b2c3d4-1", event="message", data=data, topic=topic) == expected


def test_encode_event_writes_fields_in_order_with_one_space() -> None:
    encoded = encode_event(id=" 7", event="a:b", data="x", topic="t/1")
    assert encoded == b"id:  7\nevent: a:b\ntopic: t/1\ndata: x\n\n"


@pytest.mark.parametrize("field", ["id", "event", "topic"])
@pytest.mark.parametrize("char", ["\n", "\r", "\0"])
def test_encode_event_refuses_line_breaks_and_nul_in_single_line_fields(
    field: str, char: str
) -> None:
    values = {"id": "a1b2c3d4-1", "event": "message", "topic": "orders"}
    values[field] = f"x{char}data: injected"
    with pytest.raises(ValueError, match=rf"SSE {field} must not contain"):
        encode_event(id=values["id"], event=values["event"], data="ok", topic=values["topic"])


def test_encode_event_refuses_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        encode_event(id="a1b2c3d4-1", event="message", data="\ud800")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", b": \n\n"),
        ("heartbeat", b": heartbeat\n\n"),
        ("caf\u00e9", b": caf\xc3\xa9\n\n"),
    ],
)
def test_encode_comment_writes_exact_bytes(text: str, expected: bytes) -> None:
    assert encode_comment(text) == expected


def test_encode_comment_defaults_to_an_empty_comment() -> None:
    assert encode_comment() == b": \n\n"


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\r\n"])
def test_encode_comment_refuses_line_breaks(text: str) -> None:
    with pytest.raises(ValueError, match="SSE comment must not contain"):
        encode_comment(text)


@pytest.mark.parametrize(("ms", "expected"), [(0, b"retry: 0\n\n"), (3000, b"retry: 3000\n\n")])
def test_encode_retry_writes_exact_bytes(ms: int, expected: bytes) -> None:
    assert encode_retry(ms) == expected


def test_encode_retry_refuses_negative_delays() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        encode_retry(-1)


@pytest.mark.parametrize("ms", [True, 1.5, "3000"])
def test_encode_retry_refuses_non_integers(ms: object) -> None:
    with pytest.raises(TypeError, match="must be an int"):
        encode_retry(ms)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("id", "expected"),
    [("a1b2c3d4-42", b"id: a1b2c3d4-42\n\n"), ("", b"id: \n\n"), (" x", b"id:  x\n\n")],
)
def test_encode_last_id_writes_exact_bytes(id: str, expected: bytes) -> None:
    assert encode_last_id(id) == expected


@pytest.mark.parametrize("char", ["\n", "\r", "\0"])
def test_encode_last_id_refuses_line_breaks_and_nul(char: str) -> None:
    with pytest.raises(ValueError, match="SSE id must not contain"):
        encode_last_id(f"1{char}2")


# -- parser: the spec's examples -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (
            "data: YHOO\ndata: +2\ndata: 10\n\n",
            [MessageEvent("message", "YHOO\n+2\n10", "")],
        ),
        (
            ": test stream\n\ndata: first event\nid: 1\n\n"
            "data:second event\nid\n\ndata:  third event\n\n",
            [
                MessageEvent("message", "first event", "1"),
                MessageEvent("message", "second event", ""),
                MessageEvent("message", " third event", ""),
            ],
        ),
        (
            "data\n\ndata\ndata\n\ndata:",
            [MessageEvent("message", "", ""), MessageEvent("message", "\n", "")],
        ),
        (
            "data:test\n\ndata: test\n\n",
            [MessageEvent("message", "test", ""), MessageEvent("message", "test", "")],
        ),
    ],
)
def test_parser_matches_the_spec_examples(stream: str, expected: list[MessageEvent]) -> None:
    assert parse([stream.encode()]) == expected


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_parser_accepts_every_line_ending(newline: str) -> None:
    lines = ["event: e", "id: 1", "data: one", "data: two", "", ""]
    assert parse([newline.join(lines).encode()]) == [MessageEvent("e", "one\ntwo", "1")]


def test_parser_accepts_mixed_line_endings() -> None:
    stream = b"data: a\r\ndata: b\rdata: c\n\r\n"
    assert parse([stream]) == [MessageEvent("message", "a\nb\nc", "")]


def test_parser_treats_lf_cr_as_two_line_breaks() -> None:
    assert parse([b"data: a\n\rdata: b\n\n"]) == [
        MessageEvent("message", "a", ""),
        MessageEvent("message", "b", ""),
    ]


# A stream exercising everything that can be split: a BOM, CRLF, lone CR, comments, retry, ids,
# a 2-, 3- and 4-byte UTF-8 sequence and an invalid byte.
SAMPLE_STREAM = (
    b"\xef\xbb\xbf: hello\r\n"
    b"retry: 1500\r\n"
    b"\r\n"
    b"id: a1b2c3d4-1\r\n"
    b"event: greeting\r\n"
    b"topic: chat/room-1\r\n"
    b"data: h\xc3\xa9llo \xe2\x9c\x93\r\n"
    b"data:  \xf0\x9f\x8e\x89\r"
    b"\r"
    b"data: bad \xff byte\n"
    b"\n"
    b"id: a1b2c3d4-2\r\n\r\n"
    b"data: trailing"
)
SAMPLE_EVENTS = [
    MessageEvent(
        "greeting", "h\u00e9llo \u2713\n \U0001f389", "a1b2c3d4-1", {"topic": "chat/room-1"}
    ),
    MessageEvent("message", "bad \ufffd byte", "a1b2c3d4-1"),
]


def test_parser_parses_the_sample_stream() -> None:
    parser = EventStreamParser()
    assert parser.feed(SAMPLE_STREAM) == SAMPLE_EVENTS
    assert parser.close() == []
    assert parser.retry_ms == 1500
    assert parser.last_event_id == "a1b2c3d4-2"


def test_parser_gives_the_same_result_fed_byte_by_byte() -> None:
    chunks = [SAMPLE_STREAM[i : i + 1] for i in range(len(SAMPLE_STREAM))]
    assert parse(chunks) == SAMPLE_EVENTS


def test_parser_gives_the_same_result_split_at_every_offset() -> None:
    for offset in range(len(SAMPLE_STREAM) + 1):
        parser = EventStreamParser()
        events = parser.feed(SAMPLE_STREAM[:offset]) + parser.feed(SAMPLE_STREAM[offset:])
        assert events == SAMPLE_EVENTS, f"split at byte {offset}"
        assert parser.close() == []
        assert (parser.retry_ms, parser.last_event_id) == (1500, "a1b2c3d4-2")


def test_parser_joins_cr_and_lf_split_across_chunks() -> None:
    # Were the CR|LF read as two breaks, the LF would be a blank line dispatching "a" alone.
    chunks = [b"data: a\r", b"\ndata: b\r", b"", b"\n\r", b"\n"]
    assert parse(chunks) == [MessageEvent("message", "a\nb", "")]


def test_parser_takes_a_cr_at_the_end_of_a_chunk_as_a_line_end_at_once() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: a\r\r") == [MessageEvent("message", "a", "")]


def test_parser_strips_a_leading_bom() -> None:
    assert parse([b"\xef\xbb\xbfdata: x\n\n"]) == [MessageEvent("message", "x", "")]


def test_parser_strips_a_bom_split_across_chunks() -> None:
    assert parse([b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [MessageEvent("message", "x", "")]


def test_parser_strips_only_one_bom() -> None:
    # The second BOM starts the field name "\ufeffdata", an unknown field: nothing is dispatched.
    assert parse([b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n"]) == []


@pytest.mark.parametrize(
    ("chunks", "expected_data"),
    [
        ([b"data: a\n\n\xef\xbb\xbfdata: b\n\n"], ["a"]),
        ([b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\n"], ["a"]),
        ([b"\n", b"\xef\xbb\xbfdata: b\n\n"], []),
    ],
)
def test_parser_keeps_a_bom_after_the_start_of_the_stream(
    chunks: list[bytes], expected_data: list[str]
) -> None:
    # "\ufeffdata" is an unknown field name, so the block after the BOM dispatches nothing.
    assert [event.data for event in parse(chunks)] == expected_data


def test_parser_replaces_invalid_utf8() -> None:
    assert parse([b"data: \xff\xc3\n\n"]) == [MessageEvent("message", "\ufffd\ufffd", "")]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ("retry: 3000\n", 3000),
        ("retry:3000\n", 3000),
        ("retry: 007\n", 7),
        ("retry: 0\n", 0),
        ("retry: 1a\n", None),
        ("retry: -1\n", None),
        ("retry: +1\n", None),
        ("retry: 1.5\n", None),
        ("retry:\n", None),
        ("retry\n", None),
        ("retry:  5\n", None),
        ("retry: \u0663\n", None),
        ("Retry: 5\n", None),
        ("retry: " + "9" * 5000 + "\n", None),
        ("retry: 5000\nretry: 1a\nretry: -1\nretry:\nretry: 250\n\n", 250),
    ],
)
def test_parser_sets_retry_only_from_ascii_digits(stream: str, expected: int | None) -> None:
    parser = EventStreamParser()
    assert parser.feed(stream.encode()) == []
    assert parser.retry_ms == expected


def test_parser_applies_retry_before_the_blank_line() -> None:
    parser = EventStreamParser()
    parser.feed(b"retry: 10\n")
    assert parser.retry_ms == 10


def test_parser_ignores_an_id_containing_nul() -> None:
    stream = b"id: 5\ndata: a\n\nid: 6\x00\ndata: b\n\n"
    assert parse([stream]) == [MessageEvent("message", "a", "5"), MessageEvent("message", "b", "5")]


def test_parser_keeps_the_last_event_id_across_events() -> None:
    parser = EventStreamParser()
    events = parser.feed(b"id: 7\ndata: a\n\ndata: b\n\n")
    assert events == [MessageEvent("message", "a", "7"), MessageEvent("message", "b", "7")]
    assert parser.last_event_id == "7"


def test_parser_resets_the_last_event_id_with_an_empty_id() -> None:
    parser = EventStreamParser()
    parser.feed(b"id: 7\ndata: a\n\n")
    assert parser.feed(b"id\ndata: b\n\n") == [MessageEvent("message", "b", "")]
    assert parser.last_event_id == ""


def test_parser_updates_the_last_event_id_only_at_a_blank_line() -> None:
    parser = EventStreamParser()
    parser.feed(b"id: 3\n")
    assert parser.last_event_id == ""
    parser.feed(b"\n")
    assert parser.last_event_id == "3"


def test_last_id_dispatches_nothing_but_sets_the_last_event_id() -> None:
    parser = EventStreamParser()
    assert parser.feed(encode_last_id("a1b2c3d4-9")) == []
    assert parser.last_event_id == "a1b2c3d4-9"
    assert parser.feed(b"data: x\n\n") == [MessageEvent("message", "x", "a1b2c3d4-9")]


def test_comments_and_retry_between_events_dispatch_nothing() -> None:
    parser = EventStreamParser()
    stream = encode_retry(2000) + encode_comment() + encode_comment("heartbeat")
    assert parser.feed(stream) == []
    assert parser.retry_ms == 2000


def test_parser_resets_the_type_when_a_block_has_no_data() -> None:
    assert parse([b"event: ignored\n\ndata: x\n\n"]) == [MessageEvent("message", "x", "")]


def test_parser_defaults_an_empty_type_to_message() -> None:
    assert parse([b"event:\ndata: x\n\n"]) == [MessageEvent("message", "x", "")]


def test_parser_compares_field_names_literally() -> None:
    assert parse([b"DATA: x\nEvent: e\ndata: y\n\n"]) == [
        MessageEvent("message", "y", "", {"DATA": "x", "Event": "e"})
    ]


def test_parser_records_extension_fields_per_event_last_value_winning() -> None:
    stream = b"topic: a\ntopic: b\nflag\ndata: 1\n\ndata: 2\n\n"
    events = parse([stream])
    assert events == [
        MessageEvent("message", "1", "", {"topic": "b", "flag": ""}),
        MessageEvent("message", "2", ""),
    ]
    assert events[1].fields == {}


def test_parser_drops_extension_fields_of_a_block_without_data() -> None:
    assert parse([b"topic: a\n\ndata: x\n\n"]) == [MessageEvent("message", "x", "")]


def test_message_events_are_hashable_and_immutable() -> None:
    (event,) = parse([b"topic: t\ndata: x\n\n"])
    assert hash(event) == hash(MessageEvent("message", "x", "", {"topic": "t"}))
    with pytest.raises(TypeError):
        event.fields["topic"] = "u"  # type: ignore[index]


@pytest.mark.parametrize("stream", [b"data: x\n", b"data: x", b"id: 9\ndata: x\r"])
def test_parser_discards_an_incomplete_event_at_close(stream: bytes) -> None:
    parser = EventStreamParser()
    assert parser.feed(stream) == []
    assert parser.close() == []
    assert parser.last_event_id == ""


def test_parser_starts_a_fresh_stream_after_close() -> None:
    parser = EventStreamParser()
    parser.feed(b"retry: 100\nid: 1\ndata: a\n\nid: 2\nevent: e\ndata: pending\n")
    assert parser.close() == []
    # The pending data, type and id are gone; the last event id and retry survive the reconnect.
    events = parser.feed(b"\xef\xbb\xbf\ndata: b\n\n")
    assert events == [MessageEvent("message", "b", "1")]
    assert (parser.retry_ms, parser.last_event_id) == (100, "1")


# -- round trips ---------------------------------------------------------------------------------


@hypothesis_settings
@given(
    id=IDS,
    event=TYPES,
    topic=st.none() | TOPICS,
    data=st.text().map(lambda s: s.replace("\r", "")),
)
def test_event_without_cr_round_trips_exactly(
    id: str, event: str, topic: str | None, data: str
) -> None:
    parser = EventStreamParser()
    events = parser.feed(encode_event(id=id, event=event, data=data, topic=topic))
    assert events == [MessageEvent(event, data, id, topic_fields(topic))]
    assert parser.last_event_id == id


@hypothesis_settings
@given(id=IDS, event=TYPES, topic=st.none() | TOPICS, data=ANY_DATA)
def test_any_data_arrives_as_one_event_with_breaks_normalised(
    id: str, event: str, topic: str | None, data: str
) -> None:
    events = parse([encode_event(id=id, event=event, data=data, topic=topic)])
    assert events == [MessageEvent(event, normalise_breaks(data), id, topic_fields(topic))]


def _encode_all(events: list[tuple[str, str, str | None, str]]) -> bytes:
    return b"".join(
        encode_event(id=id, event=event, data=data, topic=topic)
        for id, event, topic, data in events
    )


@hypothesis_settings
@given(
    events=st.lists(st.tuples(IDS, TYPES, st.none() | TOPICS, ANY_DATA), min_size=1, max_size=5),
    data=st.data(),
)
def test_concatenated_events_parse_the_same_in_any_chunking(
    events: list[tuple[str, str, str | None, str]], data: st.DataObject
) -> None:
    stream = encode_retry(3000) + encode_comment() + _encode_all(events) + encode_comment("bye")
    offsets = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    expected = [
        MessageEvent(event, normalise_breaks(text), id, topic_fields(topic))
        for id, event, topic, text in events
    ]
    assert parse(split_at(stream, offsets)) == expected


FIELD_NAMES = st.sampled_from(["id", "data", "event", "retry", "topic", ""])
FIELD_LOOKALIKE_TYPES = st.one_of(
    TYPES,
    st.builds(lambda name, rest: f"{name}:{rest}", FIELD_NAMES, TYPES).map(lambda s: s[:64]),
)


@hypothesis_settings
@given(id=IDS, event=FIELD_LOOKALIKE_TYPES, topic=st.none() | TOPICS, data=ANY_DATA)
def test_no_event_type_can_add_a_field(id: str, event: str, topic: str | None, data: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", event)
    parser = EventStreamParser()
    (parsed,) = parser.feed(encode_event(id=id, event=event, data=data, topic=topic))
    assert parsed.type == event
    assert parsed.last_event_id == parser.last_event_id == id
    assert parsed.fields == topic_fields(topic)
    assert parser.retry_ms is None


@hypothesis_settings
@given(id=SINGLE_LINE, event=SINGLE_LINE, topic=st.none() | SINGLE_LINE, data=ANY_DATA)
def test_any_single_line_field_value_round_trips(
    id: str, event: str, topic: str | None, data: str
) -> None:
    events = parse([encode_event(id=id, event=event, data=data, topic=topic)])
    expected_type = event or "message"
    assert events == [MessageEvent(expected_type, normalise_breaks(data), id, topic_fields(topic))]


SSE_FRAGMENTS = st.sampled_from(
    [
        *(b"data", b"id", b"event", b"retry", b"topic", b":", b" ", b"\r", b"\n", b"\r\n", b"\x00"),
        *(b"1", b"x", b"\xef\xbb\xbf", b"\xc3", b"\xa9", b"\xff", b"\xf0\x9f\x8e\x89"),
    ]
)


@hypothesis_settings
@given(stream=st.binary() | st.lists(SSE_FRAGMENTS).map(b"".join), data=st.data())
def test_arbitrary_bytes_parse_the_same_in_any_chunking(stream: bytes, data: st.DataObject) -> None:
    offsets = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    whole = EventStreamParser()
    chunked = EventStreamParser()
    expected = whole.feed(stream)
    assert [e for chunk in split_at(stream, offsets) for e in chunked.feed(chunk)] == expected
    assert (chunked.last_event_id, chunked.retry_ms) == (whole.last_event_id, whole.retry_ms)
