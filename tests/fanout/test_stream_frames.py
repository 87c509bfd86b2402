"""Tests for the pure parts of :mod:`realtime.fanout.stream`: the preamble and control events.

Each preamble is checked twice: as exact bytes, and as what a browser's EventSource would make of
it (via :class:`~realtime.core.sse.EventStreamParser`): its retry delay, last event ID and events.
"""

from __future__ import annotations

import json

import pytest

from realtime.core.sse import EventStreamParser, MessageEvent, encode_control
from realtime.core.topics import distinct
from realtime.fanout.stream import StreamPlan, preamble
from realtime.storage.interface import ReplayCheck, ReplayStatus

EPOCH = "abc123"
HEAD = 7
HEAD_ID = "abc123-7"
PREVIOUS_ID = "abc123-5"
OPENING = b"retry: 3000\n\n: ok\n\n"


def plan(status: ReplayStatus, *, after: int = 0, retry_ms: int = 3000) -> StreamPlan:
    return StreamPlan(
        topics=("a",),
        check=ReplayCheck(status, EPOCH, HEAD),
        after=after,
        retry_ms=retry_ms,
        heartbeat_s=15,
        max_age_s=0,
        envelope=False,
    )


def reconnected_parser() -> EventStreamParser:
    """A parser in the state of an EventSource reconnecting after having seen ``PREVIOUS_ID``."""
    parser = EventStreamParser()
    assert parser.feed(f"id: {PREVIOUS_ID}\n\n".encode()) == []
    parser.close()
    return parser


def reset_frame(reason: str) -> bytes:
    data = f'{{"reason":"{reason}","last_id":"{HEAD_ID}"}}'
    return f"id: {HEAD_ID}\nevent: reset\ndata: {data}\n\n".encode()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("fresh", OPENING + b"id: abc123-7\n\n"),
        ("ok", OPENING),
        ("trimmed", OPENING + reset_frame("trimmed")),
        ("epoch", OPENING + reset_frame("epoch")),
        ("unknown_id", OPENING + reset_frame("unknown_id")),
    ],
)
def test_preamble_bytes_for_each_replay_status(status: ReplayStatus, expected: bytes) -> None:
    assert preamble(plan(status)) == expected


def test_fresh_preamble_ends_with_the_head_id_line() -> None:
    assert preamble(plan("fresh")).endswith(f"id: {EPOCH}-{HEAD}\n\n".encode())


def test_ok_preamble_has_no_id_line() -> None:
    assert b"id:" not in preamble(plan("ok", after=3))


@pytest.mark.parametrize("retry_ms", [0, 250, 3_600_000])
def test_preamble_starts_with_the_plans_retry(retry_ms: int) -> None:
    out = preamble(plan("ok", retry_ms=retry_ms))
    assert out.startswith(f"retry: {retry_ms}\n\n".encode())
    parser = EventStreamParser()
    parser.feed(out)
    assert parser.retry_ms == retry_ms


def test_browser_on_a_fresh_stream_sees_no_event_but_learns_the_head_id() -> None:
    parser = EventStreamParser()
    assert parser.feed(preamble(plan("fresh"))) == []
    assert (parser.retry_ms, parser.last_event_id) == (3000, HEAD_ID)


def test_browser_resuming_exactly_sees_no_event_and_keeps_its_last_id() -> None:
    parser = reconnected_parser()
    assert parser.feed(preamble(plan("ok", after=5))) == []
    assert (parser.retry_ms, parser.last_event_id) == (3000, PREVIOUS_ID)


@pytest.mark.parametrize("status", ["trimmed", "epoch", "unknown_id"])
def test_browser_that_cannot_resume_sees_one_reset_and_moves_to_the_head(
    status: ReplayStatus,
) -> None:
    parser = reconnected_parser()
    events = parser.feed(preamble(plan(status)))
    assert len(events) == 1
    (reset,) = events
    assert (reset.type, reset.last_event_id) == ("reset", HEAD_ID)
    assert json.loads(reset.data) == {"reason": status, "last_id": HEAD_ID}
    assert (parser.retry_ms, parser.last_event_id) == (3000, HEAD_ID)


@pytest.mark.parametrize("status", ["fresh", "ok", "trimmed", "epoch", "unknown_id"])
def test_preamble_parses_the_same_when_split_byte_by_byte(status: ReplayStatus) -> None:
    whole, split = reconnected_parser(), reconnected_parser()
    out = preamble(plan(status))
    events: list[MessageEvent] = []
    for index in range(len(out)):
        events.extend(split.feed(out[index : index + 1]))
    assert events == whole.feed(out)
    assert (split.retry_ms, split.last_event_id) == (whole.retry_ms, whole.last_event_id)


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        (
            "overflow",
            {"reason": "slow_consumer", "last_id": "abc123-9"},
            b'event: overflow\ndata: {"reason":"slow_consumer","last_id":"abc123-9"}\n\n',
        ),
        ("shutdown", {"last_id": "abc123-9"}, b'event: shutdown\ndata: {"last_id":"abc123-9"}\n\n'),
        ("auth_expired", {}, b"event: auth_expired\ndata: {}\n\n"),
    ],
)
def test_encode_control_without_id_is_compact_json_and_has_no_id_line(
    kind: str, payload: dict[str, str], expected: bytes
) -> None:
    assert encode_control(kind, payload) == expected


def test_encode_control_without_id_leaves_the_last_event_id_unchanged() -> None:
    parser = reconnected_parser()
    (event,) = parser.feed(encode_control("overflow", {"reason": "slow_consumer", "last_id": "x"}))
    assert (event.type, event.last_event_id) == ("overflow", PREVIOUS_ID)
    assert json.loads(event.data) == {"reason": "slow_consumer", "last_id": "x"}
    assert parser.last_event_id == PREVIOUS_ID


def test_encode_control_with_id_moves_the_last_event_id() -> None:
    out = encode_control("reset", {"reason": "epoch", "last_id": HEAD_ID}, id=HEAD_ID)
    assert out.startswith(f"id: {HEAD_ID}\nevent: reset\n".encode())
    parser = reconnected_parser()
    (event,) = parser.feed(out)
    assert event.last_event_id == parser.last_event_id == HEAD_ID


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ()),
        (["a"], ("a",)),
        (["b", "a", "b", "c", "a"], ("b", "a", "c")),
    ],
)
def test_distinct_keeps_distinct_topics_in_first_seen_order(
    values: list[str], expected: tuple[str, ...]
) -> None:
    assert distinct(values) == expected
