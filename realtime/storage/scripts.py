"""The Lua scripts the storage runs in Redis, read once from ``lua/*.lua`` at import.

Each script is a file of its own; helpers that several scripts share (``epoch.lua``,
``trim.lua``, ``marker.lua``, ``horizon.lua``, each one ``local function``) are files of their
own too, prepended to exactly the scripts that call them, so no script carries code it does not
use. The files are read with :mod:`importlib.resources`, so they load from a wheel as from the
source tree (the wheel ships them as package data, ``storage/lua/*.lua``).

Each constant is the full text Redis runs (and hashes for ``EVALSHA``). What the keys and
arguments of each script are is written at the top of its file.

Deliberately not here: running them (:mod:`realtime.storage.broker`, with redis-py's
``register_script`` or :class:`~realtime.storage.batcher.ScriptBatcher`).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from realtime.storage.keys import CLOCK_EVERY_MS


@cache
def _read(name: str) -> str:
    """One file of ``lua/``, read once however many scripts include it."""
    return (files("realtime.storage") / "lua" / name).read_text(encoding="utf-8")


def _script(name: str, *helpers: str, prelude: str = "") -> str:
    """The script ``name`` as Redis runs it: ``prelude``, then its helpers, then itself."""
    return prelude + "".join(_read(h) for h in helpers) + _read(name)


#: Publish a batch atomically into its topic streams and the firehose (with idempotency, rate
#: limits and the clock). The clock's interval is a constant of the key layout, defined first.
PUBLISH = _script(
    "publish.lua",
    "epoch.lua",
    "trim.lua",
    "horizon.lua",
    prelude=f"local CLOCK_EVERY_MS = {CLOCK_EVERY_MS}\n",
)
#: Whether a client's position can be replayed exactly on some topics, and the head now.
CHECK = _script("check.lua", "epoch.lua", "trim.lua", "marker.lua", "horizon.lua")
#: One page of a topic's history, re-checking the epoch and the trim marker.
PAGE = _script("page.lua", "marker.lua")
#: The epoch (created if Redis is new) and the head seq, read together.
POSITION = _script("position.lua", "epoch.lua")
#: A topic's unexpired presence members (expired ones are dropped).
PRESENCE = _script("presence.lua")
#: Add/refresh and remove presence entries in one command.
PRESENCE_UPDATE = _script("presence_update.lua")
