"""Concurrent calls of one Lua script, pipelined on one connection: nothing broker-specific.

:class:`ScriptBatcher` takes any script and any redis-py connection pool; it knows nothing of
events, keys or epochs. The storage uses it to publish (see
:mod:`realtime.storage.broker`), where many requests of one worker call the same script at
once: shared round trips turn a checkout and a round trip per call into one write and one read
for many calls.

Deliberately not here: which script, what its replies mean, or how many batchers to run side by
side (the caller picks; :data:`PUBLISH_LANES` is the count measured best for publishing).
"""

from __future__ import annotations

import hashlib
import os
import select
import threading
from collections.abc import Callable, Sequence
from typing import Any

import gevent.monkey
import redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from realtime.core.errors import BrokerError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # redis-py's hiredis extra, a dependency of the server: C packing of each command
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - a client-only install without the extra
    _hiredis_pack = None

_NO_REPLY: Any = object()
# Why the unpatched poll: before each busy spell the dedicated connection is checked for
# anything to read (see _readable), once per round trip, so it must be cheap. Under gevent's
# patching ``select.poll`` is gevent's, which even with a zero timeout arms a timer and switches
# to the gevent hub and back: that cost a publish at low load as much as the rest of its Redis
# work. A zero-timeout poll never blocks, so the operating system's own is safe to call from a
# greenlet and answers at once. Without patching, get_original returns the same function.
_os_poll = gevent.monkey.get_original("select", "poll")


def _readable(conn: Any) -> bool:
    """Whether an idle connection's socket has anything to read: an answer nobody waits for, or
    the end of a connection the server closed. Either way it must not carry the next command."""
    sock = getattr(conn, "_sock", None)  # None: not connected, so the next send connects
    if sock is None:
        return False
    poller = _os_poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # a socket closed under us counts as readable: replace it
        return True


class _ScriptCall:
    """One script call waiting in a :class:`ScriptBatcher`: its arguments, then its answer."""

    __slots__ = ("command", "done", "error", "lead", "reply")

    def __init__(self, command: tuple[str | int, ...]) -> None:
        self.command = command
        self.done = threading.Event()
        self.lead = False  # set with ``done`` when this call's caller is to run the next batch
        self.reply: Any = _NO_REPLY
        self.error: BaseException | None = None

    @property
    def answered(self) -> bool:
        return self.reply is not _NO_REPLY or self.error is not None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


#: How many batchers (lanes, a connection each) the storage runs side by side for publishing:
#: the count measured best (see :meth:`realtime.storage.broker.Broker._publish_lane`).
PUBLISH_LANES = 3


class ScriptBatcher:
    """Runs concurrent calls of one Lua script in shared round trips, each with its own answer.

    Any script, any pool: the batcher neither knows nor interprets what the script does.

    A caller that finds no round trip in progress runs one itself, taking along every call queued
    by then; callers arriving meanwhile queue and wait, and when the round trip ends the first of
    them is handed the connection to run the next. So one connection carries a worker's script
    calls, pipelined: under load many calls share one write and one read, and with one call at a
    time it is the plain round trip it was.

    Each call is still one ``EVALSHA``, atomic on its own, with its own reply or error: a script
    that fails (or a refusal such as ``READONLY``) fails only its own call. A connection that
    fails fails every call in flight on it, as :class:`BrokerError`, their outcome unknown, as
    any lost answer; calls not yet sent are not touched by it. Nothing is retried, so a call is
    never run twice. Uses :mod:`threading` primitives, which are gevent's under gevent's patching
    and real ones without it.

    With ``dedicated`` the batcher keeps a connection of its own (made like the pool's) instead
    of checking one out of ``pool`` for each busy spell. A checkout polls the socket through
    gevent's ``select.poll``, a timer and two greenlet switches, which cost a call at low load
    as much as the rest of its Redis work; the dedicated connection is polled before each busy
    spell too, so one that Redis closed meanwhile is replaced rather than failing a call, but
    with the operating system's poll, which answers at once.
    """

    #: Calls sent in one write at most: the callers of a batch are answered when its last reply
    #: is read, so the first of a long queue is not kept waiting for thousands behind it.
    MAX_BATCH = 256

    def __init__(
        self,
        pool: redis.ConnectionPool,
        script: str,
        *,
        wait_timeout: float,
        dedicated: bool = False,
    ) -> None:
        self._pool = pool
        self._script = script
        # The name EVALSHA calls the script by: Redis's choice of hash, not a security measure.
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        self._wait_timeout = wait_timeout
        self._lock = threading.Lock()
        self._queue: list[_ScriptCall] = []
        self._busy = False  # a caller is running a round trip (or has been handed the next)
        self._conn: Any = None  # the connection of the current busy spell
        self._own: Any = pool.connection_class(**pool.connection_kwargs) if dedicated else None
        self._pid = os.getpid()

    @property
    def load(self) -> tuple[bool, int]:
        """(a round trip is running, calls queued): how busy this batcher is, to pick a lane."""
        return self._busy, len(self._queue)

    def connect(self) -> None:
        """Open the dedicated connection now (to open a fixed count up front); without one,
        nothing."""
        if self._own is not None:
            self._own.connect()

    def close(self) -> None:
        if self._own is not None:
            self._own.disconnect()

    def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """Run the script with ``keys`` and ``args``; its reply, or the error for this call."""
        call = _ScriptCall(("EVALSHA", self._sha, len(keys), *keys, *args))
        with self._lock:
            self._queue.append(call)
            lead = not self._busy
            self._busy = True
        if not lead:
            self._await(call)
        if lead or call.lead:
            self._run_batch()
        return call.result()

    def _await(self, call: _ScriptCall) -> None:
        """Wait until ``call`` is answered or its caller is handed the next round trip."""
        try:
            finished = call.done.wait(self._wait_timeout)
        except BaseException:  # the caller was killed while waiting: leave nothing behind
            self._abandon(call)
            raise
        if finished:
            return
        with self._lock:
            if call.done.is_set():
                return
            sent = call not in self._queue
            if not sent:
                self._queue.remove(call)
        raise BrokerError(
            "Redis did not answer in time"
            + (" (the script may have run)." if sent else "; nothing was sent.")
        )

    def _abandon(self, call: _ScriptCall) -> None:
        with self._lock:
            if call not in self._queue:
                return  # in flight: its round trip ends without this caller
            self._queue.remove(call)
            if not call.lead:
                return
        self._hand_over()  # it was to run the next round trip: pass that on

    def _run_batch(self) -> None:
        """Send the queued calls (up to :attr:`MAX_BATCH`) in one write, read their replies, then
        hand over or go idle."""
        with self._lock:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
        try:
            self._round_trip(batch)
        except BaseException as exc:  # our own caller was killed or hit a bug: fail the rest
            failure = BrokerError(f"Publishing was interrupted: {exc!r}")
            for call in batch:
                if not call.answered:
                    call.error = failure
            raise
        finally:
            for call in batch:
                call.done.set()
            self._hand_over()

    def _checkout(self) -> Any:
        """The connection for a new busy spell: the dedicated one, replaced if Redis closed it
        (or sent something nobody asked for) while it was idle, as the pool would; or one from
        the pool."""
        if self._own is None:
            return self._pool.get_connection()
        if self._pid != os.getpid():
            # A forked child (gunicorn --preload) must not talk on its parent's socket: like
            # redis-py's pool, it leaves that one alone and makes its own.
            self._own = self._pool.connection_class(**self._pool.connection_kwargs)
            self._pid = os.getpid()
        elif _readable(self._own):
            self._own.disconnect()  # the next send connects afresh
        return self._own

    def _round_trip(self, batch: list[_ScriptCall]) -> None:
        conn = self._conn
        try:
            if conn is None:
                conn = self._conn = self._checkout()
            pending = batch
            for _attempt in range(2):  # a second pass only after loading a flushed script
                conn.send_packed_command(_packed(conn, [c.command for c in pending]))
                missing: list[_ScriptCall] = []
                for call in pending:
                    try:
                        call.reply = conn.read_response()
                    except NoScriptError:
                        missing.append(call)  # refused before running: safe to send again
                    except ResponseError as exc:
                        call.error = BrokerError(f"Redis refused the script: {exc}")
                if not missing:
                    return
                conn.send_command("SCRIPT", "LOAD", self._script)
                conn.read_response()
                pending = missing
            for call in pending:
                call.error = BrokerError("Redis lost the script twice in a row.")
        except BaseException as exc:
            if conn is not None:
                conn.disconnect()  # replies may be half read: never reuse this connection as is
            if not isinstance(exc, RedisError):
                raise
            failure = BrokerError(f"Redis failed to store the event: {exc}")
            for call in batch:
                if not call.answered:
                    call.error = failure

    def _hand_over(self) -> None:
        """Give the connection to the first queued caller, or return it to the pool."""
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.done.set()
                return
            self._busy = False
            conn, self._conn = self._conn, None
        if conn is not None and conn is not self._own:
            self._pool.release(conn)


def _packed(conn: Any, commands: list[tuple[str | int, ...]]) -> list[bytes]:
    """``commands`` in the Redis protocol, ready for ``send_packed_command``.

    Why not ``conn.pack_commands``: redis-py encodes each argument through a Python method with
    type checks, 27 µs for a publish's 32 arguments here, most of a publish's own CPU in
    Python; hiredis packs the same command in C in 3 µs. The arguments are ``str`` and ``int``
    only, which both pack alike (UTF-8, decimal).
    """
    if _hiredis_pack is None:  # pragma: no cover - without hiredis, redis-py's own packing
        return list(conn.pack_commands(commands))
    return [b"".join([_hiredis_pack(command) for command in commands])]
