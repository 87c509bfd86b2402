"""Redis Streams storage: the only module that imports ``redis``.

Layout (every key shares the hash tag ``{rt}`` so the scripts are valid on Redis Cluster):

``{rt}:epoch``      random token created with the counter; a new one means Redis lost its data.
``{rt}:seq``        the global counter; event ``<epoch>-<seq>`` has stream id ``<seq>-0``.
``{rt}:t:<topic>``  one stream per topic, trimmed by ``REALTIME_HISTORY_MAXLEN`` and ``_TTL_S``;
                    with a TTL it expires as a whole once its newest event is past it.
``{rt}:trim:<topic>`` the highest seq ever trimmed from that topic (exact detection of lost
                    history on Redis 6.2, which lacks ``max-deleted-entry-id``); it expires
                    with its stream.
``{rt}:clock``      sorted set: the counter as a publish began, by its time, a point every
                    :data:`CLOCK_EVERY_MS`, kept for the TTL: which seqs are older than the TTL
                    (see "Expiry" below).
``{rt}:firehose``   every event of every topic, in seq order, read by each worker's hub.
``{rt}:trimmed``    hash topic -> marker, as written before markers became keys: still read.
``{rt}:idem:<k>``   the ids a publish with ``Idempotency-Key`` got, for its retries.
``{rt}:topics:<p>`` one publisher's budget of new topics (``REALTIME_NEW_TOPICS_PER_MINUTE``).

Publishing is one Lua script, so an event is in its topic stream and the firehose or in neither.
Every check (idempotency) happens before the first write, so a refused publish writes nothing.
Seqs in the firehose are contiguous, which lets the hub detect a gap by arithmetic.

Expiry: with ``REALTIME_HISTORY_TTL_S``, a topic's stream and marker expire in Redis
:func:`expiry_margin_ms` after its newest event passes the TTL, so a topic nobody publishes to
any more leaves nothing behind, however many one-off topics were created (a quiet topic's
events were otherwise kept until the topic was next touched). What an expired stream held is
then unknown, but it was all published before ``now - TTL``: the clock bounds those seqs, and
a client whose position is below that bound is told ``trimmed`` (for a topic with no stream,
or one created again since: its marker is set to the bound when it is created). A client away
for less than the TTL is never affected, and the margin keeps a stream from expiring under a
replay that the check let through.

Publishes that arrive together share a round trip (:class:`ScriptBatcher`): each is still its own
script call with its own answer, pipelined on one connection, so a worker under load pays one
write and one read for many publishes instead of a connection checkout and a round trip each.

What this module deliberately does not do: know about subscriptions (the hub does), or HTTP (the
web layer turns :class:`~realtime.core.errors.BrokerError` into 503).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import select
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gevent.monkey
import redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from realtime.core.errors import BrokerError, HistoryLost, IdempotencyConflict, RateLimited
from realtime.core.events import Draft, Event, Published
from realtime.core.ids import new_epoch, parse_id
from realtime.ops import metrics

PREFIX = "{rt}"
EPOCH_KEY = f"{PREFIX}:epoch"
SEQ_KEY = f"{PREFIX}:seq"
FIREHOSE_KEY = f"{PREFIX}:firehose"
TRIMMED_KEY = f"{PREFIX}:trimmed"
CLOCK_KEY = f"{PREFIX}:clock"
#: How often the clock takes a point (seq, time): the bound it gives is late by at most this.
CLOCK_EVERY_MS = 1000


def topic_key(topic: str) -> str:
    return f"{PREFIX}:t:{topic}"


def marker_key(topic: str) -> str:
    """The highest seq trimmed from ``topic`` (it expires with the topic's stream)."""
    return f"{PREFIX}:trim:{topic}"


def new_topics_key(scope: str) -> str:
    """One publisher's budget of new topics (REALTIME_NEW_TOPICS_PER_MINUTE)."""
    return _publisher_key("topics", scope)


def expiry_margin_ms(ttl_ms: int) -> int:
    """How long past the TTL a topic's stream is kept before Redis expires it: long enough that
    no replay the check let through can lose it midway (a replay takes seconds)."""
    return min(ttl_ms, 60_000)


def presence_key(topic: str) -> str:
    return f"{PREFIX}:presence:{topic}"


def rate_key(scope: str) -> str:
    """One publisher's budget of events (REALTIME_PUBLISH_RATE)."""
    return _publisher_key("rate", scope)


def _publisher_key(kind: str, scope: str) -> str:
    """A key of one publisher's, named by a digest: a scope may be long or hold anything."""
    return f"{PREFIX}:{kind}:{hashlib.sha256(scope.encode()).hexdigest()[:32]}"


def idempotency_key(scoped_key: str) -> str:
    """The Redis key remembering one ``Idempotency-Key`` (already scoped to its publisher)."""
    digest = hashlib.sha256(scoped_key.encode()).hexdigest()[:32]
    return f"{PREFIX}:idem:{digest}"


# Shared by every script that reads the epoch. ARGV[1] is "<candidate> <known epoch> <high water>":
# the epoch to create if there is none, and the newest seq this worker has seen in the epoch it
# knows. A counter below that high water means this Redis came back without events we already
# delivered (an older snapshot, an AOF that lost its last second): their ids would be handed out
# again, so a new epoch is started and every client holding an old id gets `reset`.
_EPOCH_LUA = """
local function current_epoch(epoch_key, seq_key, spec)
  local candidate, known, high = string.match(spec, '^(%S+) (%S+) (%d+)$')
  local epoch = redis.call('GET', epoch_key)
  if epoch and epoch == known and tonumber(redis.call('GET', seq_key) or '0') < tonumber(high) then
    epoch = nil
  end
  if not epoch then
    epoch = candidate
    redis.call('SET', epoch_key, epoch)
  end
  return epoch
end
"""

# Shared by both scripts that may trim: remove what is over MAXLEN or older than the TTL from the
# front of a topic stream and remember the highest seq removed, so replay can tell a gap exactly.
# The marker lives as long as its stream (both are given the stream's expiry).
_TRIM_LUA = """
local function trim(key, marker_key, maxlen, ttl_ms, now)
  local removed = nil
  local len = redis.call('XLEN', key)
  if len > maxlen then
    local over = redis.call('XRANGE', key, '-', '+', 'COUNT', len - maxlen)
    removed = over[#over][1]
    redis.call('XTRIM', key, 'MAXLEN', maxlen)
  end
  if ttl_ms > 0 then
    local cutoff = now - ttl_ms
    while true do
      local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 64)
      local old = nil
      local fresh = false
      for _, entry in ipairs(head) do
        if tonumber(entry[2][2]) < cutoff then old = entry[1] else fresh = true break end
      end
      if old then
        local seq = tonumber(string.match(old, '^(%d+)'))
        redis.call('XTRIM', key, 'MINID', (seq + 1) .. '-0')
        removed = old
      end
      if fresh or #head < 64 then break end
    end
  end
  if removed then
    redis.call('SET', marker_key, string.match(removed, '^(%d+)'))
    local pttl = redis.call('PTTL', key)
    if pttl > 0 then redis.call('PEXPIRE', marker_key, pttl) end
  end
end

-- The highest seq known trimmed from a topic: its marker key, or a marker of the old hash.
local function marker(marker_key, legacy_key, topic)
  local own = tonumber(redis.call('GET', marker_key) or '0')
  local old = tonumber(redis.call('HGET', legacy_key, topic) or '0')
  return math.max(own, old)
end

-- A bound on the seqs published before now - ttl. A clock point (t, s) says every event
-- published before t has a seq of at most s (s is the counter as the publish at t began), so the
-- first point at or after that time bounds them; with none since, the head does.
local function horizon(clock_key, seq_key, now, ttl_ms)
  local point = redis.call('ZRANGEBYSCORE', clock_key, now - ttl_ms, '+inf', 'LIMIT', 0, 1)
  if #point > 0 then return tonumber(point[1]) end
  return tonumber(redis.call('GET', seq_key) or '0')
end
"""

# KEYS: epoch, seq, firehose, trimmed (legacy), idempotency, rate bucket, new-topics bucket,
#       clock, then topic stream and marker x n
# ARGV: candidate epoch, now ms, maxlen, ttl ms, firehose maxlen, idem ttl s, use idem,
#       fingerprint, rate (events/s, 0: unlimited), burst, new topics per minute (0: unlimited),
#       expiry margin ms, n, then topic, type, data for each
_PUBLISH_LUA = (
    _EPOCH_LUA
    + _TRIM_LUA
    + """
local use_idem = ARGV[7] == '1'
if use_idem then
  local previous = redis.call('GET', KEYS[5])
  if previous then
    return {'dup', redis.call('GET', KEYS[1]) or '', previous}
  end
end
local now = tonumber(ARGV[2])
local n = tonumber(ARGV[13])
local FIRST_TOPIC_KEY, FIRST_TOPIC_ARG = 9, 13

-- A token bucket of `rate` a second and `burst` at most, shared by every worker and host: its
-- tokens after refilling, and the answer if `cost` is more than it holds. Nothing is written.
local function refill(key, rate, burst, cost)
  local bucket = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(bucket[1]) or burst
  local ts = tonumber(bucket[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens < cost then return tokens, tostring(math.ceil((cost - tokens) * 1000 / rate)) end
  return tokens, nil
end
local function spend(key, rate, burst, tokens, cost)
  redis.call('HSET', key, 'tokens', tostring(tokens - cost), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
end

-- Every check before the first write: a refused publish writes nothing, buckets included.
local rate, burst = tonumber(ARGV[9]), tonumber(ARGV[10])
local event_tokens, topic_tokens
if rate > 0 then
  local wait
  event_tokens, wait = refill(KEYS[6], rate, burst, n)
  if wait then return {'limited', '', wait} end
end
local new_topics = {}
local created = 0
for i = 1, n do
  local topic = ARGV[FIRST_TOPIC_ARG + (i - 1) * 3 + 1]
  if new_topics[topic] == nil then
    new_topics[topic] = redis.call('EXISTS', KEYS[FIRST_TOPIC_KEY + (i - 1) * 2]) == 0
    if new_topics[topic] then created = created + 1 end
  end
end
local per_minute = tonumber(ARGV[11])
if per_minute > 0 and created > 0 then
  local wait
  topic_tokens, wait = refill(KEYS[7], per_minute / 60, per_minute, created)
  if wait then return {'topics_limited', '', wait} end
end
if event_tokens then spend(KEYS[6], rate, burst, event_tokens, n) end
if topic_tokens then spend(KEYS[7], per_minute / 60, per_minute, topic_tokens, created) end

local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[1])
local maxlen = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local expiry_ms = ttl_ms + tonumber(ARGV[12])
-- A topic created (again) now: whatever an expired stream of it held was published before
-- now - ttl, so clients below that bound (taken before this publish's own seqs) are told it
-- was trimmed.
local bound = 0
if created > 0 and ttl_ms > 0 then bound = horizon(KEYS[8], KEYS[2], now, ttl_ms) end
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
for i = 1, n do
  local base = FIRST_TOPIC_ARG + (i - 1) * 3
  local topic, etype, data = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local key = KEYS[FIRST_TOPIC_KEY + (i - 1) * 2]
  if new_topics[topic] then
    new_topics[topic] = false
    if bound > 0 then redis.call('SET', KEYS[FIRST_TOPIC_KEY + (i - 1) * 2 + 1], bound) end
  end
  local id = (first + i - 1) .. '-0'
  redis.call('XADD', key, id, 't', now, 'y', etype, 'd', data)
  redis.call('XADD', KEYS[3], id, 't', now, 'p', topic, 'y', etype, 'd', data, 'e', epoch)
end
local trimmed = {}
for i = 1, n do
  local topic = ARGV[FIRST_TOPIC_ARG + (i - 1) * 3 + 1]
  if not trimmed[topic] then
    trimmed[topic] = true
    local key, mkey = KEYS[FIRST_TOPIC_KEY + (i - 1) * 2], KEYS[FIRST_TOPIC_KEY + (i - 1) * 2 + 1]
    if ttl_ms > 0 then
      redis.call('PEXPIRE', key, expiry_ms)
      redis.call('PEXPIRE', mkey, expiry_ms)
    end
    trim(key, mkey, maxlen, ttl_ms, now)
  end
end
if ttl_ms > 0 then
  local newest = redis.call('ZRANGE', KEYS[8], -1, -1, 'WITHSCORES')
  if #newest == 0 or now - tonumber(newest[2]) >= CLOCK_EVERY_MS then
    redis.call('ZADD', KEYS[8], now, tostring(first - 1))
    redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. (now - expiry_ms - CLOCK_EVERY_MS))
  end
end
redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', tonumber(ARGV[5]))
if use_idem then
  redis.call('SET', KEYS[5], ARGV[8] .. '|' .. first .. '|' .. n, 'EX', tonumber(ARGV[6]))
end
return {'ok', epoch, tostring(first)}
""".replace("CLOCK_EVERY_MS", str(CLOCK_EVERY_MS))
)

# KEYS: epoch, seq, trimmed (legacy), clock, then topic stream and marker x n
# ARGV: candidate epoch, claimed epoch ('' for a fresh client), after seq, now ms, maxlen, ttl ms,
#       then the topics
_CHECK_LUA = (
    _EPOCH_LUA
    + _TRIM_LUA
    + """
local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[1])
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local claimed, after = ARGV[2], tonumber(ARGV[3])
if claimed == '' then return {'fresh', epoch, tostring(head)} end
if claimed ~= epoch then return {'epoch', epoch, tostring(head)} end
if after > head then return {'unknown_id', epoch, tostring(head)} end
local now, maxlen, ttl_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local bound = nil
for i = 1, (#KEYS - 4) / 2 do
  local key, mkey, topic = KEYS[3 + 2 * i], KEYS[4 + 2 * i], ARGV[6 + i]
  trim(key, mkey, maxlen, ttl_ms, now)
  if marker(mkey, KEYS[3], topic) > after then return {'trimmed', epoch, tostring(head)} end
  if ttl_ms > 0 and redis.call('EXISTS', key) == 0 then
    -- No stream: if the topic had one, it expired, with events published before now - ttl.
    bound = bound or horizon(KEYS[4], KEYS[2], now, ttl_ms)
    if bound > after then return {'trimmed', epoch, tostring(head)} end
  end
end
return {'ok', epoch, tostring(head)}
"""
)

# KEYS: epoch, trimmed (legacy), topic stream, its marker.  ARGV: epoch, topic, after seq, up to
# seq, count
_PAGE_LUA = (
    _TRIM_LUA
    + """
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return {'epoch', {}} end
local after = tonumber(ARGV[3])
if marker(KEYS[4], KEYS[2], ARGV[2]) > after then return {'trimmed', {}} end
return {'ok', redis.call('XRANGE', KEYS[3], (after + 1) .. '-0', ARGV[4] .. '-0', 'COUNT', ARGV[5])}
"""
)

# KEYS: epoch, seq.  ARGV: candidate epoch.  The epoch and head read together, creating the epoch.
_POSITION_LUA = (
    _EPOCH_LUA
    + """
local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[1])
return {epoch, redis.call('GET', KEYS[2]) or '0'}
"""
)

# KEYS: presence set.  ARGV: now ms.  Drop expired members, return the rest.
_PRESENCE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: the presence set of each entry, adds first; ARGV: expires_ms, the sets' TTL (ms), the
# number of adds, then each entry's member in KEYS' order. One command for a whole chunk: a
# pipeline of ZADD + PEXPIRE per entry cost the worker ~20 µs per entry to build.
_PRESENCE_UPDATE_LUA = """
local adds = tonumber(ARGV[3])
for i = 1, #KEYS do
  if i <= adds then
    redis.call('ZADD', KEYS[i], ARGV[1], ARGV[3 + i])
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  else
    redis.call('ZREM', KEYS[i], ARGV[3 + i])
  end
end
return #KEYS
"""

ReplayStatus = Literal["fresh", "ok", "epoch", "unknown_id", "trimmed"]


@dataclass(frozen=True, slots=True)
class ReplayCheck:
    """Whether a client at ``after`` can be replayed exactly, and where history stands now."""

    status: ReplayStatus
    epoch: str
    head: int


@dataclass(frozen=True, slots=True)
class Retention:
    maxlen: int
    ttl_s: int
    firehose_maxlen: int
    idempotency_ttl_s: int


def fingerprint(drafts: Sequence[Draft]) -> str:
    """A digest of a publish request: a reused ``Idempotency-Key`` with other content is caught."""
    payload = json.dumps([[d.topic, d.type, d.data] for d in drafts], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class HighWater:
    """The newest seq this worker has seen, per epoch: evidence a restarted Redis lost events."""

    def __init__(self) -> None:
        self.epoch = "-"
        self.seq = 0

    def observe(self, epoch: str, seq: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.seq = epoch, seq
        elif seq > self.seq:
            self.seq = seq

    def spec(self) -> str:
        """ARGV[1] of the scripts: a candidate epoch, the known epoch and its high water."""
        return f"{new_epoch()} {self.epoch} {self.seq}"


_NO_REPLY: Any = object()
# The operating system's poll even under gevent's patching: a zero-timeout readiness check that
# never needs the hub (gevent's own takes a timer and two greenlet switches).
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


#: Publish connections a broker keeps (see :meth:`Broker._publish_lane`).
PUBLISH_LANES = 3


class ScriptBatcher:
    """Runs concurrent calls of one Lua script in shared round trips, each with its own answer.

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
    gevent's ``select.poll``, a timer and two greenlet switches, which cost a publish at low load
    as much as the rest of its Redis work; the dedicated connection is polled before each busy
    spell too, so one that Redis closed meanwhile is replaced rather than failing a publish, but
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
        self._sha = hashlib.sha1(script.encode()).hexdigest()
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
        """Open the dedicated connection now (:meth:`Broker.warm`); without one, nothing."""
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
                conn.send_packed_command(conn.pack_commands([c.command for c in pending]))
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


def _read_position(script: Any, high_water: HighWater) -> tuple[str, int]:
    """Run the position script: the epoch (created if Redis is new) and the head seq."""
    try:
        epoch, head = script(keys=[EPOCH_KEY, SEQ_KEY], args=[high_water.spec()])
    except RedisError as exc:
        raise BrokerError(f"Redis is unreachable: {exc}") from exc
    position = _text(epoch), int(_text(head))
    high_water.observe(*position)
    return position


class Broker:
    """Publish into and read from Redis Streams over a fixed-size, blocking connection pool.

    The pool is a :class:`redis.BlockingConnectionPool` of ``pool_size`` connections opened up
    front: callers wait for a free connection instead of failing (redis-py's default pool raises
    when full), and a worker holds the same connections whatever its client count. Publishing
    keeps :data:`PUBLISH_LANES` of the ``pool_size`` for itself (at most ``pool_size - 1``; a pool
    of one is shared).
    """

    def __init__(
        self,
        url: str,
        *,
        retention: Retention,
        pool_size: int = 8,
        socket_timeout: float = 5.0,
        pool_timeout: float = 20.0,
    ) -> None:
        self.url = url
        self.retention = retention
        self.pool_size = pool_size
        # Publishing keeps up to PUBLISH_LANES of the pool_size connections for itself, one per
        # lane (see ScriptBatcher); with a pool of one it borrows that one for each busy spell.
        dedicated = pool_size > 1
        lanes = min(PUBLISH_LANES, pool_size - 1) if dedicated else 1
        self._pooled = pool_size - lanes if dedicated else pool_size
        self._pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=self._pooled,
            timeout=pool_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
        )
        self._redis = redis.Redis(connection_pool=self._pool)
        self._lanes = [
            ScriptBatcher(
                self._pool,
                _PUBLISH_LUA,
                wait_timeout=pool_timeout + 2 * socket_timeout,
                dedicated=dedicated,
            )
            for _ in range(lanes)
        ]
        self._check = self._redis.register_script(_CHECK_LUA)
        self._page = self._redis.register_script(_PAGE_LUA)
        self._position = self._redis.register_script(_POSITION_LUA)
        self._presence = self._redis.register_script(_PRESENCE_LUA)
        self._presence_update = self._redis.register_script(_PRESENCE_UPDATE_LUA)
        self.high_water = HighWater()

    # -- connections ------------------------------------------------------------------------

    def warm(self) -> None:
        """Open every pooled connection now, so the count never changes with load."""
        held = []
        try:
            for _ in range(self._pooled):
                conn = self._pool.get_connection()  # type: ignore[no-untyped-call]
                held.append(conn)
                conn.connect()
            for lane in self._lanes:
                lane.connect()
        except RedisError as exc:
            raise BrokerError(f"Redis is unreachable: {exc}") from exc
        finally:
            for conn in held:
                self._pool.release(conn)  # type: ignore[no-untyped-call]

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except RedisError:
            return False

    def close(self) -> None:
        self._pool.disconnect()
        for lane in self._lanes:
            lane.close()

    def _publish_lane(self) -> ScriptBatcher:
        """The idle lane if there is one, else the one with the shortest queue.

        One lane alone sends the next round trip only when the last one is answered: the worker
        sat idle while Redis ran a batch's scripts (single and batch publishes both topped out
        with the worker's core 70-80 % busy). With several, a round trip is in flight while the
        next is sent (measured, wrk -c8 on one worker: batches of 100, 1 lane 39,600 events/s,
        2 lanes 52,500, 3 lanes 65,300, 4 lanes 56,700; single events 1,200 → 1,550-1,980/s).
        Publishes on different lanes are concurrent requests anyway: a client's
        own publishes are ordered by waiting for each answer.
        """
        return min(self._lanes, key=lambda lane: lane.load)

    def reader(self) -> FirehoseReader:
        """A dedicated connection for one hub's blocking reads of the firehose."""
        return FirehoseReader(self.url, self.high_water)

    # -- publish ------------------------------------------------------------------------------

    def publish(
        self,
        drafts: Sequence[Draft],
        *,
        idempotency: str | None = None,
        rate_scope: str | None = None,
        rate: float = 0,
        burst: int = 0,
        new_topics_per_minute: int = 0,
        now_ms: int | None = None,
    ) -> Published:
        """Store ``drafts`` atomically (all or none) and return their ids.

        ``idempotency`` is the already-scoped key: a repeat with the same content returns the
        first publish's ids with ``duplicate=True``; with other content it raises
        :class:`IdempotencyConflict` and writes nothing. With ``rate`` > 0 the publisher named
        by ``rate_scope`` may store ``rate`` events a second in bursts of ``burst``, counted in
        Redis so the limit holds across workers and hosts; over it, :class:`RateLimited` is
        raised and nothing is written. With ``new_topics_per_minute`` > 0 the same publisher may
        create that many topics a minute (a topic is new while it has no stream: never published
        to, or expired), or :class:`RateLimited` with ``topics=True``. A retried duplicate costs
        nothing.
        """
        if not drafts:
            raise ValueError("publish needs at least one event")
        r = self.retention
        digest = fingerprint(drafts) if idempotency else ""
        keys = [EPOCH_KEY, SEQ_KEY, FIREHOSE_KEY, TRIMMED_KEY]
        keys.append(idempotency_key(idempotency) if idempotency else f"{PREFIX}:idem:-")
        keys.append(rate_key(rate_scope) if rate_scope and rate > 0 else f"{PREFIX}:rate:-")
        topics_key = None
        if rate_scope is not None and new_topics_per_minute > 0:
            topics_key = new_topics_key(rate_scope)
        keys.append(topics_key or f"{PREFIX}:topics:-")
        keys.append(CLOCK_KEY)
        for d in drafts:
            keys += [topic_key(d.topic), marker_key(d.topic)]
        ttl_ms = r.ttl_s * 1000
        args: list[str | int] = [
            self.high_water.spec(),
            now_ms if now_ms is not None else int(time.time() * 1000),
            r.maxlen,
            r.ttl_s * 1000,
            r.firehose_maxlen,
            r.idempotency_ttl_s,
            1 if idempotency else 0,
            digest,
            str(rate if rate_scope else 0),
            burst,
            new_topics_per_minute if topics_key else 0,
            expiry_margin_ms(ttl_ms),
            len(drafts),
        ]
        for d in drafts:
            args += [d.topic, d.type, d.data]
        started = time.perf_counter()
        result = self._publish_lane()(keys, args)
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
        status, epoch = _text(result[0]), _text(result[1])
        if status in ("limited", "topics_limited"):
            raise RateLimited(int(_text(result[2])), topics=status == "topics_limited")
        if status == "dup":
            stored_digest, first, count = _text(result[2]).split("|")
            if stored_digest != digest:
                raise IdempotencyConflict(idempotency)
            start = int(first)
            return Published(epoch, tuple(range(start, start + int(count))), duplicate=True)
        first_seq = int(_text(result[2]))
        self.high_water.observe(epoch, first_seq + len(drafts) - 1)
        metrics.PUBLISHED.inc(len(drafts))
        return Published(epoch, tuple(range(first_seq, first_seq + len(drafts))))

    # -- replay -------------------------------------------------------------------------------

    def position(self) -> tuple[str, int]:
        """The current epoch and head seq, read together (creating the epoch if Redis is new)."""
        return _read_position(self._position, self.high_water)

    def check_last_id(self, topics: Sequence[str], last_id: str | None) -> tuple[ReplayCheck, int]:
        """:meth:`check_replay` for the id a client sent (``None``: a fresh client), and the seq
        to replay after. An id that is not ours answers ``unknown_id`` with the current head."""
        if last_id is None:
            return self.check_replay(topics, None, 0), 0
        parsed = parse_id(last_id)
        if parsed is None:
            fresh = self.check_replay(topics, None, 0)
            return ReplayCheck("unknown_id", fresh.epoch, fresh.head), 0
        return self.check_replay(topics, parsed.epoch, parsed.seq), parsed.seq

    def check_replay(
        self,
        topics: Sequence[str],
        claimed_epoch: str | None,
        after: int,
        now_ms: int | None = None,
    ) -> ReplayCheck:
        """Can a client at ``claimed_epoch-after`` be replayed exactly on ``topics``?

        ``claimed_epoch=None`` means a fresh client (no ``Last-Event-ID``); the answer then only
        carries the position to start from. TTL trimming is applied to the topics first so a
        quiet topic cannot replay events older than the TTL.
        """
        r = self.retention
        keys = [EPOCH_KEY, SEQ_KEY, TRIMMED_KEY, CLOCK_KEY]
        for topic in topics:
            keys += [topic_key(topic), marker_key(topic)]
        args: list[str | int] = [
            self.high_water.spec(),
            claimed_epoch or "",
            after,
            now_ms if now_ms is not None else int(time.time() * 1000),
            r.maxlen,
            r.ttl_s * 1000,
            *topics,
        ]
        try:
            status, epoch, head = self._check(keys=keys, args=args)
        except RedisError as exc:
            raise BrokerError(f"Redis is unreachable: {exc}") from exc
        self.high_water.observe(_text(epoch), int(_text(head)))
        return ReplayCheck(_text(status), _text(epoch), int(_text(head)))  # type: ignore[arg-type]

    def history(
        self, topic: str, epoch: str, after: int, upto: int, page_size: int = 200
    ) -> Iterator[Event]:
        """Events of ``topic`` with ``after < seq <= upto``, in order, fetched a page at a time.

        Each page re-checks the epoch and the trim marker, so history lost while a long replay
        is in progress raises :class:`HistoryLost` instead of being skipped silently.
        """
        cursor = after
        while cursor < upto:
            try:
                status, entries = self._page(
                    keys=[EPOCH_KEY, TRIMMED_KEY, topic_key(topic), marker_key(topic)],
                    args=[epoch, topic, cursor, upto, page_size],
                )
            except RedisError as exc:
                raise BrokerError(f"Redis failed during replay: {exc}") from exc
            if _text(status) != "ok":
                raise HistoryLost(_text(status))
            for raw_id, fields in entries:
                seq = int(_text(raw_id).split("-", 1)[0])
                yield _history_event(epoch, seq, topic, fields)
                cursor = seq
            if len(entries) < page_size:
                return

    def replay(self, topics: Sequence[str], epoch: str, after: int, upto: int) -> Iterator[Event]:
        """All events of ``topics`` in ``(after, upto]``, merged into one seq-ordered stream."""
        streams = [self.history(t, epoch, after, upto) for t in topics]
        return heapq.merge(*streams, key=lambda e: e.seq)

    # -- presence -----------------------------------------------------------------------------

    def presence_update(
        self,
        add: Iterable[tuple[str, str]],
        remove: Iterable[tuple[str, str]],
        *,
        expires_ms: int,
        ttl_s: float,
    ) -> None:
        """Add/refresh and remove ``(topic, member)`` entries in one round trip.

        A topic's set expires as a whole a TTL after its last refresh, so topics nobody follows
        any more leave nothing behind.
        """
        adds, removes = list(add), list(remove)
        keys = [presence_key(topic) for topic, _ in adds + removes]
        members = [entry for _, entry in adds + removes]
        if not keys:
            return
        try:
            self._presence_update(
                keys=keys, args=[expires_ms, int(ttl_s * 2000), len(adds), *members]
            )
        except RedisError as exc:
            raise BrokerError(f"Redis failed to update presence: {exc}") from exc

    def presence_members(self, topic: str, *, now_ms: int) -> list[str]:
        """The unexpired members of ``topic``'s presence set (expired ones are dropped)."""
        try:
            members = self._presence(keys=[presence_key(topic)], args=[now_ms])
        except RedisError as exc:
            raise BrokerError(f"Redis is unreachable: {exc}") from exc
        return [_text(m) for m in members]

    # -- introspection for tests and operators -------------------------------------------------

    def redis_client_count(self) -> int:
        """How many clients the Redis server has connected (all of them, not just ours)."""
        try:
            return len(self._redis.client_list())
        except RedisError as exc:
            raise BrokerError(str(exc)) from exc


def _history_event(epoch: str, seq: int, topic: str, flat: list[bytes]) -> Event:
    """An entry as a script returns it: field names and values alternate in one flat list."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    return Event(
        epoch=epoch,
        seq=seq,
        topic=topic,
        type=fields[b"y"].decode(),
        data=fields[b"d"].decode(),
        published_ms=int(fields[b"t"]),
    )


class FirehoseReader:
    """One dedicated Redis connection doing ``XREAD BLOCK`` on the firehose for a hub."""

    def __init__(
        self, url: str, high_water: HighWater | None = None, socket_timeout: float = 30.0
    ) -> None:
        self.high_water = high_water or HighWater()
        self._redis = redis.Redis.from_url(
            url,
            single_connection_client=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=5.0,
        )
        self._position = self._redis.register_script(_POSITION_LUA)

    def position(self) -> tuple[str, int]:
        return _read_position(self._position, self.high_water)

    def read(self, after: int, *, block_ms: int, count: int = 1000) -> list[Event]:
        """Firehose events with seq > ``after`` (waiting up to ``block_ms``), with their epochs."""
        try:
            reply: Any = self._redis.xread(
                {FIREHOSE_KEY: f"{after}-0"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            raise BrokerError(f"Redis refused XREAD: {exc}") from exc
        except RedisError as exc:
            raise BrokerError(f"Redis connection lost: {exc}") from exc
        events: list[Event] = []
        for _stream, entries in reply or ():
            for raw_id, f in entries:
                events.append(
                    Event(
                        epoch=f[b"e"].decode(),
                        seq=int(raw_id.split(b"-", 1)[0]),
                        topic=f[b"p"].decode(),
                        type=f[b"y"].decode(),
                        data=f[b"d"].decode(),
                        published_ms=int(f[b"t"]),
                    )
                )
        return events

    def close(self) -> None:
        try:
            self._redis.close()
        except RedisError:
            pass
