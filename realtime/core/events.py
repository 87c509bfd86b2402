"""The event as it travels from the broker to every subscriber.

A :class:`StoredEvent` is built once per worker when the reader sees it, and its SSE frame is
encoded once and shared by every subscriber (DESIGN.md: encode once, share bytes). Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from realtime.core.ids import format_id
from realtime.core.sse import encode_event

ENVELOPE_EVENT = "message"
READY_EVENT = "ready"


def http_chunk(data: bytes) -> bytes:
    """One chunk of HTTP/1.1 chunked transfer coding, exactly as gunicorn frames a body write."""
    return b"%X\r\n%s\r\n" % (len(data), data)


class StoredEvent:
    """One published event; ``seq`` orders it, ``id`` names it on the wire."""

    __slots__ = (
        "_chunks",
        "_envelope",
        "_frame",
        "_ws",
        "alias",
        "attrs",
        "data",
        "epoch",
        "published_ms",
        "seq",
        "topic",
        "type",
    )

    def __init__(
        self,
        *,
        epoch: str,
        seq: int,
        topic: str,
        type: str,
        data: str,
        published_ms: int = 0,
        attrs: str = "",
        alias: str = "",
    ) -> None:
        self.epoch = epoch
        self.seq = seq
        self.topic = topic
        self.type = type
        self.data = data
        self.published_ms = published_ms
        #: What a front door stored beside the event for itself (see :attr:`Draft.attrs`).
        self.attrs = attrs
        #: The publisher's own id for the event, if it gave one (see :attr:`Draft.alias`).
        self.alias = alias
        self._frame: bytes | None = None
        self._envelope: bytes | None = None
        self._ws: str | None = None
        self._chunks: dict[bool, bytes] | None = None

    @property
    def id(self) -> str:
        return format_id(self.epoch, self.seq)

    def lag_s(self, now: float) -> float:
        """Seconds from this event's publish to ``now`` (a ``time.time()``; the hosts' clocks
        assumed in sync, so never negative)."""
        return max(0.0, now - self.published_ms / 1000)

    def frame(self) -> bytes:
        """The SSE bytes of this event, with its topic in the ``topic:`` extension field."""
        if self._frame is None:
            self._frame = encode_event(
                id=self.id, event=self.type, data=self.data, topic=self.topic
            )
        return self._frame

    def envelope_frame(self) -> bytes:
        """The SSE bytes for ``?envelope=1``: ``event: message`` with ``data`` as JSON
        ``{"topic", "type", "data"}``.

        A browser's ``EventSource`` ignores unknown fields (so it never sees ``topic:``) and
        dispatches a named event only to a listener registered for that name in advance; in
        this form one ``onmessage`` handler receives every event with its topic and type.
        """
        if self._envelope is None:
            wrapped = json.dumps(
                {"topic": self.topic, "type": self.type, "data": self.data}, ensure_ascii=False
            )
            self._envelope = encode_event(id=self.id, event=ENVELOPE_EVENT, data=wrapped)
        return self._envelope

    def chunked(self, envelope: bool) -> bytes:
        """The SSE frame (plain or envelope) as one HTTP/1.1 chunk, for writes straight to a
        client socket (:mod:`realtime.fanout.directwrite`); encoded once, shared by every stream."""
        if self._chunks is None:
            self._chunks = {}
        chunk = self._chunks.get(envelope)
        if chunk is None:
            chunk = http_chunk(self.envelope_frame() if envelope else self.frame())
            self._chunks[envelope] = chunk
        return chunk

    def ws_frame(self) -> str:
        """The WebSocket ``event`` message, encoded once and shared by every connection."""
        if self._ws is None:
            self._ws = json.dumps(
                {
                    "type": "event",
                    "topic": self.topic,
                    "id": self.id,
                    "event": self.type,
                    "data": self.data,
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
        return self._ws

    def __repr__(self) -> str:
        return f"Event({self.id!r}, topic={self.topic!r}, type={self.type!r})"


class EventRun:
    """Consecutive events of one topic from one read of the firehose, in seq order.

    A stream that follows only that topic gets the whole run in one write: under load the reader
    reads several events at once, and one system call per stream instead of one per event is what
    lets a saturated worker catch up. The joined bytes are built once per worker and shared.
    """

    __slots__ = ("_wire", "events", "first_seq", "last_seq")

    def __init__(self, events: list[StoredEvent]) -> None:
        self.events = events
        self.first_seq = events[0].seq
        self.last_seq = events[-1].seq
        self._wire: dict[tuple[bool, bool], bytes] = {}

    def wire(self, envelope: bool, chunked: bool) -> bytes:
        """Every event's SSE frame (plain or envelope), each its own HTTP chunk if ``chunked``."""
        if len(self.events) == 1:  # nothing to join: the event's own cached bytes
            event = self.events[0]
            if chunked:
                return event.chunked(envelope)
            return event.envelope_frame() if envelope else event.frame()
        key = (envelope, chunked)
        data = self._wire.get(key)
        if data is None:
            if chunked:
                data = b"".join(e.chunked(envelope) for e in self.events)
            elif envelope:
                data = b"".join(e.envelope_frame() for e in self.events)
            else:
                data = b"".join(e.frame() for e in self.events)
            self._wire[key] = data
        return data


@dataclass(frozen=True, slots=True)
class Draft:
    """An event not yet published: validated by the caller, then stored by the broker."""

    topic: str
    type: str
    data: str
    #: Text a front door keeps with the event for itself, opaque to the storage and the
    #: fan-out (the Mercure hub's alternate topics and privacy); empty for most.
    attrs: str = ""
    #: A publisher's own id for the event (the Mercure hub's ``id``), by which a client may
    #: resume after it (:meth:`~realtime.storage.broker.Broker.alias_seq`); empty for none.
    alias: str = ""


@dataclass(frozen=True, slots=True)
class Published:
    epoch: str
    seqs: tuple[int, ...]
    duplicate: bool = False
    #: The publish time the storage gave the events (ms since the epoch; 0 for a duplicate).
    published_ms: int = 0

    def events(self, drafts: list[Draft]) -> list[StoredEvent]:
        """The stored events, as a reader of the live feed would see them (not for a
        duplicate, whose ids are another publish's)."""
        return [
            StoredEvent(
                epoch=self.epoch,
                seq=seq,
                topic=d.topic,
                type=d.type,
                data=d.data,
                published_ms=self.published_ms,
                attrs=d.attrs,
                alias=d.alias,
            )
            for seq, d in zip(self.seqs, drafts, strict=True)
        ]

    @property
    def ids(self) -> list[str]:
        return [f"{self.epoch}-{seq}" for seq in self.seqs]
