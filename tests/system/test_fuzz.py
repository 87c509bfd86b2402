"""Fuzzing the two parsers of untrusted input, and one WebSocket session against another.

(a) The SSE encoder (:mod:`realtime.core.sse`, and the frames of
:class:`realtime.core.events.StoredEvent`) with any text in any field, control characters, lone
surrogates and huge lines included: it refuses a value with a clean :class:`ValueError`, or it
writes a frame that a WHATWG parser reads back as exactly one event with the same id, type and
topic and no other field, without disturbing the events around it however the bytes are split.
No input breaks framing.

(b) The WebSocket message parser :func:`realtime.core.messages.parse_message` with any str, bytes
and JSON structure: it returns a :class:`~realtime.core.messages.Message` whose body has the shape
the session relies on, or raises :class:`~realtime.core.messages.MessageError` with a stable code
and a ``req`` that can be echoed; never anything else.

(c) One real gunicorn and two real WebSocket clients: client 1 sends generated garbage and
near-miss requests (topics of client 2's included) while client 2 follows its own topic. Client
2 receives exactly its events, client 1 gets answers and only its own events, never one of client
2's, and the server logs no traceback.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from itertools import pairwise
from typing import Any

import pytest
import simple_websocket
from conftest import Gunicorn, make_token
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ws_client import Client

from realtime.core.errors import ERROR_STATUS, ClientError
from realtime.core.events import Draft, StoredEvent
from realtime.core.messages import (
    CLIENT_TYPES,
    MAX_LAST_ID_LENGTH,
    MAX_REQ_LENGTH,
    Message,
    MessageError,
    error_frame,
    parse_message,
)
from realtime.core.publishing import draft, validate_idempotency_key
from realtime.core.sse import (
    EventStreamParser,
    MessageEvent,
    encode_comment,
    encode_event,
    encode_last_id,
)
from realtime.core.topics import TOPIC_RE, TYPE_RE

FUZZ = settings(deadline=None, database=None, max_examples=500)

# -- (a) the SSE encoder -------------------------------------------------------------------------

# Pieces that could break a line-oriented format, with any character (surrogates too) between.
NASTY = st.sampled_from(
    [
        *("\r", "\n", "\r\n", "\n\r", "\0", "\ud800", "\udfff", "\ufeff", "\x85", "\u2028", "\x1b"),
        *(":", " ", "data: x", "id: 1", "event: e", "retry: 1", "topic: t", "\n\n", ": c"),
    ]
)
TEXT = st.lists(
    st.one_of(st.text(st.characters(exclude_categories=()), max_size=20), NASTY), max_size=12
).map("".join)
HUGE = st.builds(
    lambda piece, n: piece * n, st.text(min_size=1, max_size=4), st.integers(1, 50_000)
)
FIELD = st.one_of(TEXT, HUGE)


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def cannot_frame(id: str | None, event: str, topic: str | None, data: str) -> bool:
    """What the encoder must refuse: a line break or NUL in a single-line field, or text that
    is not Unicode (a lone surrogate) anywhere."""
    single = [v for v in (id, event, topic) if v is not None]
    return any(c in v for v in single for c in "\r\n\0") or any(
        has_surrogate(v) for v in [*single, data]
    )


def split_at(stream: bytes, offsets: list[int]) -> list[bytes]:
    cuts = sorted({0, len(stream), *offsets})
    return [stream[a:b] for a, b in pairwise(cuts)]


BEFORE = encode_event(id="before-1", event="before", data="b", topic="t0")
AFTER = encode_event(id="after-1", event="after", data="a", topic="t1")


def parse_between(frame: bytes, offsets: list[int]) -> tuple[list[MessageEvent], EventStreamParser]:
    """``frame`` between two known events, fed in chunks cut at ``offsets``."""
    parser = EventStreamParser()
    events = []
    for chunk in split_at(BEFORE + frame + AFTER, offsets):
        events += parser.feed(chunk)
    return events, parser


def assert_neighbours_intact(events: list[MessageEvent]) -> None:
    assert events[0] == MessageEvent("before", "b", "before-1", {"topic": "t0"})
    assert events[-1] == MessageEvent("after", "a", "after-1", {"topic": "t1"})


@FUZZ
@given(
    id=st.none() | FIELD,
    event=FIELD,
    topic=st.none() | FIELD,
    data=FIELD,
    offsets=st.lists(st.integers(0, 200_000), max_size=8),
)
@example(id="1", event="message", topic="t", data="\r", offsets=[])
@example(id="1\r", event="e", topic=None, data="", offsets=[])
@example(id=None, event="e", topic="t", data="\ud800", offsets=[])
def test_sse_encoder_refuses_cleanly_or_frames_exactly_one_event(
    id: str | None, event: str, topic: str | None, data: str, offsets: list[int]
) -> None:
    if cannot_frame(id, event, topic, data):
        with pytest.raises(ValueError, match=r"^The SSE "):
            encode_event(id=id, event=event, data=data, topic=topic)
        return
    frame = encode_event(id=id, event=event, data=data, topic=topic)
    events, parser = parse_between(frame, offsets)
    assert len(events) == 3
    assert_neighbours_intact(events)
    middle = events[1]
    assert middle.type == (event or "message")
    assert middle.last_event_id == (id if id is not None else "before-1")
    assert dict(middle.fields) == ({"topic": topic} if topic is not None else {})
    assert middle.data == re.sub(r"\r\n|\r", "\n", data)
    assert parser.retry_ms is None


@FUZZ
@given(text=FIELD, offsets=st.lists(st.integers(0, 200_000), max_size=8))
def test_comments_and_id_only_blocks_dispatch_nothing_whatever_their_text(
    text: str, offsets: list[int]
) -> None:
    for encode, forbidden in ((encode_comment, "\r\n"), (encode_last_id, "\r\n\0")):
        try:
            frame = encode(text)
        except ValueError:
            assert any(c in text for c in forbidden) or has_surrogate(text)
            continue
        events, parser = parse_between(frame, offsets)
        assert len(events) == 2
        assert_neighbours_intact(events)
        if encode is encode_last_id:
            assert parser.last_event_id == "after-1"


SEQS = st.integers(1, 2**63 - 1)


@FUZZ
@given(
    topic=FIELD,
    type=FIELD,
    data=FIELD,
    seq=SEQS,
    offsets=st.lists(st.integers(0, 200_000), max_size=8),
)
def test_event_frames_carry_their_own_topic_and_data_only(
    topic: str, type: str, data: str, seq: int, offsets: list[int]
) -> None:
    """What every subscriber of a topic is sent: the SSE frame, the ``envelope=1`` frame and the
    WebSocket frame of one :class:`StoredEvent` name its topic and hold its data, nothing more."""
    event = StoredEvent(epoch="e0", seq=seq, topic=topic, type=type, data=data)
    try:
        frame = event.frame()
    except ValueError:
        assert cannot_frame(event.id, type, topic, data)
    else:
        events, _ = parse_between(frame, offsets)
        assert len(events) == 3
        assert events[1].fields == {"topic": topic}
        assert (events[1].last_event_id, events[1].data) == (event.id, re.sub("\r\n?", "\n", data))
    try:
        envelope = event.envelope_frame()
    except ValueError:
        assert has_surrogate(topic + type + data)  # JSON escapes every control character
    else:
        events, _ = parse_between(envelope, offsets)
        assert len(events) == 3
        assert events[1].type == "message"
        # The JSON in the data keeps even a carriage return exact.
        assert json.loads(events[1].data) == {"topic": topic, "type": type, "data": data}
    ws = json.loads(event.ws_frame())
    assert ws == {"type": "event", "topic": topic, "id": event.id, "event": type, "data": data}


# -- (b) the WebSocket envelope parser ------------------------------------------------------------

ENVELOPE_CODES = {
    "invalid_json",
    "invalid_request",
    "unknown_type",
    "missing_token",
    "invalid_token",
    "missing_topic",
    "invalid_topic",
    "too_many_topics",
    "invalid_last_event_id",
    "unknown_field",
}
MAX_TOPICS = 3
PUBLISH_CODES = {
    "missing_topic",
    "invalid_topic",
    "invalid_type",
    "reserved_type",
    "missing_data",
    "invalid_data",
    "invalid_idempotency_key",
    "payload_too_large",
}

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**53 - 2, max_value=2**64)
    | st.floats()
    | st.text(st.characters(exclude_categories=()), max_size=20)
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
WS_TOPICS = st.one_of(
    st.from_regex(TOPIC_RE, fullmatch=True),
    st.sampled_from(["c1:a", "c2:secret", "pub:x", "", "a b", "x" * 201]),
    ANY_JSON,
)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A client message close to the envelope's grammar, any field possibly wrong."""
    doc: dict[str, Any] = {}
    doc["type"] = draw(st.sampled_from(sorted(CLIENT_TYPES)) | ANY_JSON)
    optional = {
        "req": st.integers(-(2**60), 2**60) | st.text(max_size=70) | ANY_JSON,
        "topics": st.lists(WS_TOPICS, max_size=5) | WS_TOPICS,
        "topic": WS_TOPICS,
        "last_id": st.sampled_from(["", "abc-1", "x" * 300]) | ANY_JSON,
        "token": st.text(st.characters(exclude_categories=()), max_size=20) | ANY_JSON,
        "data": ANY_JSON,
        "event": st.sampled_from(["created", "reset", "a b"]) | ANY_JSON,
        "idempotency_key": st.sampled_from(["k1", "", "\x01"]) | ANY_JSON,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(strategy)
    extra = draw(st.dictionaries(st.text(max_size=6), ANY_JSON, max_size=2))
    return {**extra, **doc}


def dumps(doc: Any, ensure_ascii: bool = True) -> str:
    # ensure_ascii writes a lone surrogate as a \\ud800 escape, which json.loads gives back.
    return json.dumps(doc, ensure_ascii=ensure_ascii)


RAW_MESSAGES = st.one_of(
    envelopes().map(dumps),
    st.builds(dumps, envelopes(), st.just(False)),
    ANY_JSON.map(dumps),
    st.text(st.characters(exclude_categories=())),
    st.binary(max_size=100),
    st.sampled_from(
        [
            "",
            "{",
            "[" * 100_000,
            '{"type": "ping", "req": ' + "9" * 5000 + "}",
            '{"type": "ping", "req": NaN}',
            '{"type": "ping", "req": 1e400}',
            '{"type": "ping", "req": "\\ud800"}',
            '{"type": "auth", "token": "\\udfff"}',
            '{"type": "subscribe", "topics": "c1:a", "last_id": "\\ud800-1"}',
        ]
    ),
)


def echoable(req: Any) -> bool:
    """A ``req`` the session may send back: in JSON, and encodable as a text frame."""
    if req is None:
        return True
    if isinstance(req, bool) or not isinstance(req, str | int):
        return False
    if isinstance(req, int):
        return abs(req) <= 2**53
    return len(req) <= MAX_REQ_LENGTH and not has_surrogate(req)


def parse_or_refusal(raw: str | bytes) -> Message | MessageError:
    """What :func:`parse_message` returns, or the :class:`MessageError` it raises."""
    try:
        return parse_message(raw, max_topics=MAX_TOPICS)
    except MessageError as exc:
        return exc


def check_message(message: Message) -> None:
    """The body shapes the session relies on for each type."""
    assert message.type in CLIENT_TYPES
    assert echoable(message.req)
    body = message.body
    if message.type == "auth":
        assert isinstance(body["token"], str)
        assert body["token"]
        body["token"].encode("utf-8")  # the verifier encodes it
    elif message.type in ("subscribe", "unsubscribe"):
        assert 1 <= len(message.topics) <= MAX_TOPICS
        assert all(TOPIC_RE.match(t) for t in message.topics)
        assert len(set(message.topics)) == len(message.topics)
        last_id = body.get("last_id")
        assert last_id is None or (isinstance(last_id, str) and len(last_id) <= MAX_LAST_ID_LENGTH)
    elif message.type == "publish":
        assert set(body) <= {"topic", "data", "type", "idempotency_key"}
    elif message.type == "presence":
        assert TOPIC_RE.match(body["topic"])
    else:
        assert body == {}


@settings(deadline=None, database=None, max_examples=1000)
@given(raw=RAW_MESSAGES)
@example(raw='{"type": "ping", "req": "\\ud800"}')
@example(raw='{"type": "auth", "token": "\\udfff"}')
def test_envelope_parser_returns_a_message_or_a_stable_error_never_anything_else(
    raw: str | bytes,
) -> None:
    parsed = parse_or_refusal(raw)
    if isinstance(parsed, Message):
        check_message(parsed)
        return
    assert parsed.code in ENVELOPE_CODES
    assert parsed.status == ERROR_STATUS[parsed.code]  # a code means one status everywhere
    assert isinstance(parsed.message, str)
    assert parsed.message.endswith(".")
    assert echoable(parsed.req)
    frame = error_frame(parsed, parsed.req)
    frame.encode("utf-8")  # sendable as a text frame
    assert json.loads(frame)["error"] == parsed.code


def draft_or_refusal(body: dict[str, Any]) -> tuple[str | None, Draft] | ClientError:
    """What the session makes of a ``publish`` body: its idempotency key and its event, or
    the :class:`ClientError` it answers with instead."""
    try:
        key = validate_idempotency_key(body.pop("idempotency_key", None))
        return key, draft(body, 512, "publish")
    except ClientError as exc:
        return exc


@settings(deadline=None, database=None, max_examples=300)
@given(doc=envelopes().map(lambda d: {**d, "type": "publish"}))
@example(doc={"type": "publish", "topic": "c1:a", "data": "x", "idempotency_key": 5})
def test_a_publish_message_is_refused_with_a_client_error_or_becomes_an_event(
    doc: dict[str, Any],
) -> None:
    """What the session does with a ``publish`` message before it reaches Redis."""
    try:
        body = dict(parse_message(dumps(doc), max_topics=MAX_TOPICS).body)
    except MessageError:
        return  # a bad req: answered before the publish is looked at
    drafted = draft_or_refusal(body)
    if isinstance(drafted, ClientError):
        assert drafted.code in PUBLISH_CODES, drafted
        assert drafted.message.endswith("."), drafted
        return
    key, event = drafted
    assert key is None or (key.isascii() and key.isprintable())
    assert TOPIC_RE.match(event.topic)
    assert TYPE_RE.match(event.type)
    assert "\r" not in event.data
    assert len(event.data.encode()) <= 512


# Regressions the fuzzing found: each crashed a live WebSocket session (a traceback in the
# worker's log, the client cut off with 1000 or a protocol error) instead of an error frame.


@pytest.mark.parametrize(
    ("raw", "code", "req"),
    [
        ('{"type": "ping", "req": "\\ud800"}', "invalid_request", None),
        ('{"type": "auth", "token": "\\udfff", "req": 7}', "invalid_token", 7),
    ],
    ids=["req echoed into an unencodable ack", "token the JWT library cannot encode"],
)
def test_regression_a_lone_surrogate_escape_is_refused_not_sent_back_or_decoded(
    raw: str, code: str, req: int | None
) -> None:
    with pytest.raises(MessageError) as refused:
        parse_message(raw, max_topics=MAX_TOPICS)
    assert (refused.value.code, refused.value.req) == (code, req)


@pytest.mark.parametrize("key", [5, True, 1.5, [1], {"k": "v"}, ""])
def test_regression_an_idempotency_key_that_is_not_a_string_is_refused_not_a_type_error(
    key: object,
) -> None:
    with pytest.raises(ClientError) as refused:
        validate_idempotency_key(key)
    assert (refused.value.status, refused.value.code) == (400, "invalid_idempotency_key")


# -- (c) two real WebSocket clients -------------------------------------------------------------

C1_TOKEN = make_token(subject="client-1", publish=("c1:*",), subscribe=("c1:*", "pub:*"))
C2_TOKEN = make_token(subject="client-2", publish=(), subscribe=("c2:*",))
PUBLISHER = make_token(subject="publisher", publish=("c2:*",), subscribe=())
SECRET_TOPIC = "c2:secret"
C1_FRAME_TYPES = {"welcome", "ack", "error", "event", "reset"}

C1_RAW = st.one_of(
    envelopes().map(dumps),
    st.builds(dumps, envelopes(), st.just(False)).filter(lambda s: not has_surrogate(s)),
    st.sampled_from(
        [
            '{"type": "ping", "req": "\\udbff"}',
            '{"type": "auth", "token": "\\ud800x"}',
            dumps({"type": "publish", "topic": "c1:a", "data": "x", "idempotency_key": [1]}),
            dumps({"type": "subscribe", "topics": [SECRET_TOPIC], "req": "steal"}),
            dumps({"type": "subscribe", "topics": ["c1:a", SECRET_TOPIC], "last_id": "0-0"}),
            dumps({"type": "subscribe", "topics": ["c2:*"]}),
            dumps({"type": "presence", "topic": SECRET_TOPIC}),
            dumps({"type": "publish", "topic": SECRET_TOPIC, "data": "forged"}),
            dumps({"type": "subscribe", "topics": ["c1:a"], "req": 1}),
            dumps({"type": "publish", "topic": "c1:a", "data": {"n": 1}, "req": 2}),
            dumps({"type": "auth", "token": make_token(secret="not-ours-" + "z" * 40)}),
        ]
    ),
    st.text(max_size=50),
    st.binary(max_size=50),
)


def publish(server: Gunicorn, topic: str, data: str) -> str:
    request = urllib.request.Request(
        server.url + "/publish",
        data=json.dumps({"topic": topic, "data": data}).encode(),
        headers={"Authorization": f"Bearer {PUBLISHER}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["id"])


class Prober:
    """Client 1: sends frames, reads every answer, reconnects after a policy close."""

    def __init__(self, server: Gunicorn) -> None:
        self.server = server
        self.frames: list[dict[str, Any]] = []
        self.closes: list[int] = []
        self.sent = 0
        self.connect()

    def connect(self) -> None:
        self.client = Client(self.server, f"?access_token={C1_TOKEN}")
        assert self.client.recv()["type"] == "welcome"

    def exchange(self, raws: list[str | bytes]) -> None:
        """Send ``raws``, then read until a ``ping`` sent after them is acknowledged (every
        frame before it has been answered by then), or the server closes the socket."""
        marker = f"done-{uuid.uuid4().hex}"
        answers = 0
        try:
            for raw in raws:
                self.client.ws.send(raw)
            self.sent += len(raws)
            self.client.send(type="ping", req=marker)
            while True:
                frame = self.client.recv(timeout=10)
                if frame == {"type": "ack", "req": marker}:
                    # Every request was answered once, with an ack or an error.
                    assert answers == len(raws), (raws, self.frames[-answers:])
                    return
                answers += frame["type"] in ("ack", "error")
                self.frames.append(frame)
        except simple_websocket.ConnectionClosed as closed:
            self.closes.append(int(closed.reason))
            self.client.close()
            self.connect()


@pytest.mark.integration
def test_websocket_garbage_never_crashes_a_session_or_leaks_another_clients_events(
    gunicorn_factory: Any, redis_url: str
) -> None:
    server = gunicorn_factory(
        redis_url,
        workers=1,  # both clients on one worker: one hub, one fan-out
        env={"REALTIME_WS_RATE": "1000", "REALTIME_WS_BURST": "1000"},
    )
    follower = Client(server, f"?access_token={C2_TOKEN}")
    assert follower.recv()["type"] == "welcome"
    follower.send(type="subscribe", topics=[SECRET_TOPIC], req="mine")
    ack, _ = follower.until("ack")
    assert ack["topics"] == [SECRET_TOPIC]
    prober = Prober(server)
    secrets: list[tuple[str, str]] = []

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(raws=st.lists(C1_RAW, min_size=1, max_size=4))
    @example(raws=['{"type": "ping", "req": "\\ud800"}'])  # crashed the session's sender
    @example(raws=['{"type": "auth", "token": "\\udfff"}'])  # crashed its receiver
    @example(raws=[dumps({"type": "publish", "topic": "c1:a", "data": 1, "idempotency_key": 5})])
    @example(raws=[dumps({"type": "auth", "token": "forged"}), dumps({"type": "ping"})])  # 1008
    def round_trip(raws: list[str | bytes]) -> None:
        data = f"secret-{uuid.uuid4().hex}"
        secrets.append((publish(server, SECRET_TOPIC, data), data))
        prober.exchange(raws)

    started = time.monotonic()
    round_trip()
    elapsed = time.monotonic() - started

    # Client 2 got exactly its events, in order, and nothing else.
    got = [follower.recv() for _ in secrets]
    assert [(e["type"], e["topic"], e["id"], e["data"]) for e in got] == [
        ("event", SECRET_TOPIC, event_id, data) for event_id, data in secrets
    ]
    prober.exchange([])  # one more round trip: anything stray for client 2 has arrived by now
    assert follower.ws.receive(timeout=0.3) is None

    # Client 1 got answers and its own events only; it was closed, if at all, for policy.
    leaked = [f for f in prober.frames if any(d in json.dumps(f) for _, d in secrets)]
    assert not leaked
    for frame in prober.frames:
        assert frame["type"] in C1_FRAME_TYPES, frame
        if frame["type"] == "event":
            assert frame["topic"].startswith(("c1:", "pub:")), frame
        if frame["type"] == "error":
            assert frame["error"], frame
            assert frame["message"], frame
    assert set(prober.closes) <= {1008}, prober.closes
    print(
        f"\n{len(secrets)} rounds in {elapsed:.1f} s: client 1 sent {prober.sent} frames, got "
        f"{len(prober.frames)} answers and events and {len(prober.closes)} policy closes; "
        f"client 2 got exactly its {len(got)} events"
    )
    prober.client.close()
    follower.close()
    assert "Traceback" not in server.log()
