"""Tests for :class:`realtime.core.events.StoredEvent`: its id and its two cached SSE encodings."""

from __future__ import annotations

import json

import pytest

from realtime.core.events import StoredEvent
from realtime.core.sse import EventStreamParser, MessageEvent, encode_event

DATA = [
    "hello",
    "",
    'say "hi"',
    'line one\nline "two"\n',
    "\n\n",
    "back\\slash and \\n literally",
    '{"json": "as text"}',
    "café ☃ \u2028 😀",
    "nul\0inside",
    " leading and trailing ",
]


def event(data: str = "hello", *, epoch: str = "abc123", seq: int = 7) -> StoredEvent:
    return StoredEvent(epoch=epoch, seq=seq, topic="orders:42", type="created", data=data)


def parse_one(frame: bytes) -> MessageEvent:
    parser = EventStreamParser()
    (message,) = parser.feed(frame)
    return message


@pytest.mark.parametrize(
    ("epoch", "seq", "expected"),
    [
        ("abc123", 7, "abc123-7"),
        ("e", 0, "e-0"),
        ("f" * 10, 2**63 - 1, "f" * 10 + "-" + str(2**63 - 1)),
    ],
)
def test_id_is_epoch_dash_seq(epoch: str, seq: int, expected: str) -> None:
    assert event(epoch=epoch, seq=seq).id == expected


@pytest.mark.parametrize("data", DATA)
def test_frame_is_the_encoded_event_with_its_topic(data: str) -> None:
    assert event(data).frame() == encode_event(
        id="abc123-7", event="created", data=data, topic="orders:42"
    )


@pytest.mark.parametrize("data", DATA)
def test_frame_parses_back_to_the_event(data: str) -> None:
    message = parse_one(event(data).frame())
    assert (message.type, message.last_event_id) == ("created", "abc123-7")
    assert message.fields == {"topic": "orders:42"}
    if data:  # the parser dispatches empty data as no event at all, never reaching here
        assert message.data == data


def test_frame_is_encoded_once_and_shared() -> None:
    subject = event()
    assert subject.frame() is subject.frame()


def test_envelope_frame_is_encoded_once_and_shared() -> None:
    subject = event()
    assert subject.envelope_frame() is subject.envelope_frame()


def test_frame_and_envelope_frame_are_cached_separately() -> None:
    subject = event()
    first = subject.envelope_frame()
    assert subject.frame() != first
    assert subject.envelope_frame() is first


@pytest.mark.parametrize("data", DATA)
def test_envelope_frame_data_is_json_with_topic_and_the_original_data(data: str) -> None:
    message = parse_one(event(data).envelope_frame())
    assert (message.type, message.last_event_id) == ("message", "abc123-7")
    assert json.loads(message.data) == {"topic": "orders:42", "type": "created", "data": data}


@pytest.mark.parametrize("data", DATA)
def test_envelope_frame_is_a_single_data_line_without_a_topic_field(data: str) -> None:
    frame = event(data).envelope_frame()
    assert frame.count(b"\ndata: ") == 1
    assert b"\ntopic: " not in frame
    assert parse_one(frame).fields == {}


def test_repr_names_the_id_topic_and_type() -> None:
    assert repr(event()) == "Event('abc123-7', topic='orders:42', type='created')"
