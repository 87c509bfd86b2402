"""How an event is stored in a Redis stream entry, and read back: one decoder for every reader.

A stream entry's fields are ``t`` (publish time, ms), ``y`` (type) and ``d`` (data), and ``x``
(a front door's attributes, :attr:`~realtime.core.events.Draft.attrs`) and ``m`` (the
publisher's own id, :attr:`~realtime.core.events.Draft.alias`) when there are any; a
firehose entry adds ``p`` (topic) and ``e`` (epoch), which a topic stream leaves out because its
key and the epoch key say them. The entry id is ``<seq>-0``. The publish script writes these fields
(``lua/publish.lua``); this module is their only reader in Python, for replay and the live feed
alike, so the two cannot decode an event differently.

Pure: no Redis connection here, only the shapes redis-py and the scripts return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from realtime.core.events import StoredEvent


def text(value: Any) -> str:
    """A reply value as text: redis-py answers bytes (the pool does not decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_seq(raw_id: bytes | str) -> int:
    """The seq of a stream entry id ``<seq>-0``."""
    return int(text(raw_id).split("-", 1)[0])


def fields_of(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """An entry's fields as a script returns them (names and values alternating in one list)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decode_event(epoch: str, seq: int, topic: str, fields: Mapping[bytes, bytes]) -> StoredEvent:
    """The event stored as ``fields``, at ``epoch``-``seq`` on ``topic``."""
    return StoredEvent(
        epoch=epoch,
        seq=seq,
        topic=topic,
        type=fields[b"y"].decode(),
        data=fields[b"d"].decode(),
        published_ms=int(fields[b"t"]),
        attrs=fields[b"x"].decode() if b"x" in fields else "",
        alias=fields[b"m"].decode() if b"m" in fields else "",
    )


def decode_firehose_entry(raw_id: bytes, fields: Mapping[bytes, bytes]) -> StoredEvent:
    """A firehose entry: it carries its own topic and epoch. (The hub's hot path: the id is
    parsed as the bytes redis-py gives, not through :func:`entry_seq`.)"""
    seq = int(raw_id.split(b"-", 1)[0])
    return decode_event(fields[b"e"].decode(), seq, fields[b"p"].decode(), fields)
