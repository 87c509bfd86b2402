"""Event ids: ``<epoch>-<seq>``, parsed and formatted.

``seq`` is the global counter kept in Redis; ``epoch`` is the random token created with it, so an
id from before Redis lost its data is recognised as foreign rather than compared with a counter
that started again. Clients treat ids as opaque; only this module knows their shape.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_EPOCH_RE = re.compile(r"[0-9a-z]{1,32}\Z")
_ID_RE = re.compile(r"([0-9a-z]{1,32})-([0-9]{1,19})\Z")
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True, slots=True, order=True)
class EventId:
    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"


def new_epoch() -> str:
    """A fresh random epoch token: 10 lowercase hex characters (40 bits)."""
    return secrets.token_hex(5)


def is_epoch(value: str) -> bool:
    return _EPOCH_RE.match(value) is not None


def format_id(epoch: str, seq: int) -> str:
    return f"{epoch}-{seq}"


def parse_id(value: str) -> EventId | None:
    """The :class:`EventId` in ``value``, or ``None`` when it is not one of ours.

    ``None`` is not an error to the caller: a stream given an unparsable id starts with a
    ``reset`` (reason ``unknown_id``) rather than failing, because a client must never be left
    guessing whether it missed something.
    """
    match = _ID_RE.match(value.strip())
    if match is None:
        return None
    seq = int(match.group(2))
    if seq > MAX_SEQ:
        return None
    return EventId(match.group(1), seq)
