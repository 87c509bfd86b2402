"""A Python client for realtime: publish with safe retries, subscribe with exact resume.

This module owns the client side of the HTTP contract in README.md and nothing of the server. It
uses the standard library only (``http.client``, ``socket``, ``ssl``), so a cron job or a backend
service needs no dependency beyond this package, and it does no monkey-patching: under gevent it
cooperates if the caller patched, and blocks a thread otherwise.

Intentional behaviours (do not "fix" them):

- **Every publish carries an ``Idempotency-Key``**, a uuid4 unless the caller gives one, and every
  retry of that publish reuses it. A retry after a lost response (the server stored the event, the
  answer never arrived) then gets the first request's id back instead of storing a second event.
- **Retries use exponential backoff with full jitter**: attempt ``n`` waits a uniformly random
  time in ``[0, min(cap, base * 2**n)]``, so many publishers failing together do not retry in
  lockstep. Connection errors, timeouts, 408, 5xx and 429 are retried; any other 4xx is not, because
  the same request would be refused again.
- **``Retry-After`` is a floor, never shortened.** A publish told to wait longer than the backoff
  cap gives up at once rather than sleeping for it; a subscription waits at most ``max_backoff``.
- **``subscribe`` yields the server's notices** (``reset``, ``overflow``, ``shutdown``) as events
  of that type. ``reset`` means history was lost and the caller must refetch its state: hiding it
  would hide a gap. ``overflow`` and ``shutdown`` are followed by a lossless reconnect.
- **:attr:`Event.id` is the stream's position after the event** (the WHATWG last event ID). A
  notice without an ``id:`` line (``overflow``, ``shutdown``) carries the position it left off at.
- **The stream is read from a raw socket**, not ``http.client``: a read timeout leaves
  ``http.client``'s buffered file unusable, and we read with short timeouts so that ``stop`` is
  seen within :data:`POLL_S` and a silent connection is detected after ``timeout``. The HTTP/1.1
  response framing this needs (status line, headers, chunked coding) is small and pure here.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from realtime.core.chunked import ChunkedDecoder, ProtocolError
from realtime.core.errors import RealtimeError
from realtime.core.sse import EventStreamParser, MessageEvent
from realtime.core.topics import RESERVED_TYPES
from realtime.core.version import __version__

__all__ = [
    "DEFAULT_URL",
    "NOTICE_TYPES",
    "AuthFailed",
    "Backoff",
    "BadInput",
    "Event",
    "Refused",
    "RequestError",
    "ServerUnavailable",
    "publish",
    "publish_batch",
    "subscribe",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
#: Event types the server itself sends; every other type is a publisher's.
NOTICE_TYPES: frozenset[str] = RESERVED_TYPES
#: How often a blocked read wakes up to look at ``stop`` and at the idle timer.
POLL_S = 0.5
#: The reconnection delay before the server has sent a ``retry:``; also the floor of any delay
#: base, so a ``retry: 0`` cannot turn a refused connection into a busy loop.
DEFAULT_RETRY_S = 1.0
MIN_RETRY_S = 0.1
#: Most bytes read of an error answer or of a response head: enough for any JSON refusal.
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = f"realtime-client/{__version__}"


# -- errors --------------------------------------------------------------------------------------


class RequestError(RealtimeError):
    """A request that did not succeed, with what the server said about it, if anything.

    ``status`` and ``code`` are the HTTP status and the stable ``error`` code of the JSON
    refusal (``None`` when the server was never reached or sent no JSON); ``message`` is one
    sentence fit to show a person; ``attempts`` counts the requests made.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.attempts = attempts

    @property
    def error(self) -> str | None:
        """The stable code, by the name the JSON body gives it (as the server's own
        :class:`~realtime.core.errors.ClientError` has it)."""
        return self.code


class Refused(RequestError):
    """The server refused the request (a 4xx other than 408 and 429): the same request would
    fail again, so it is never retried."""


class AuthFailed(Refused):
    """401 (no token, or one the server cannot trust) or 403 (the token lacks the topic)."""


class BadInput(Refused):
    """400, 413 or 415: the topic, type, data or body is not acceptable; ``message`` says why."""


class ServerUnavailable(RequestError):
    """The server could not be reached, or answered 5xx, 429 or 408, on every attempt."""


def refusal(status: int, reason: str, body: bytes, retry_after: str | None = None) -> RequestError:
    """The exception for a non-2xx answer, from its status and its JSON ``{error, message}``.

    A body that is not our JSON (a proxy's HTML error page) still gives a sentence.
    """
    code: str | None = None
    message = f"The server answered {status} {reason}.".replace(" .", ".")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        if isinstance(answer.get("error"), str):
            code = answer["error"]
        if isinstance(answer.get("message"), str) and answer["message"]:
            message = answer["message"]
    return kind_of(status)(
        message, status=status, code=code, retry_after=parse_retry_after(retry_after)
    )


def kind_of(status: int) -> type[RequestError]:
    """The exception class of a refusal with ``status``, whoever refused (the server over
    HTTP, or the app's own storage for ``flask realtime publish``)."""
    if status in (401, 403):
        return AuthFailed
    if status in (408, 429) or status >= 500:  # 408: the body was too slow to arrive
        return ServerUnavailable
    if status in (400, 413, 415):
        return BadInput
    return Refused


# -- backoff -------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date (RFC 9110).

    ``None`` for a missing or malformed value; a date in the past is ``0``.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: retry ``n`` (from 0) waits a uniformly random time
    in ``[0, min(cap, base * 2**n)]``, and never less than a ``Retry-After``.

    Full jitter spreads publishers that failed together (a Redis blip at the top of the minute,
    when every cron job runs) instead of having them retry in lockstep.
    """

    base: float = 0.5
    cap: float = 30.0

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the wait before retry ``attempt``."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 64))

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """How long to wait before retry ``attempt``; ``uniform`` is injectable for tests."""
        wait = uniform(0.0, self.ceiling(attempt))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait


DEFAULT_BACKOFF = Backoff()


# -- URLs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is: scheme, host, port and the path it is mounted under."""

    https: bool
    host: str
    port: int
    prefix: str

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{'https' if self.https else 'http'}://{self.netloc}"

    def path(self, endpoint: str) -> str:
        return f"{self.prefix}{endpoint}"


def parse_url(url: str) -> Target:
    """The :class:`Target` of a base URL such as ``http://127.0.0.1:8000`` or
    ``https://example.com/realtime``; :class:`ValueError` with a sentence if it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL ({exc}).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host.")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} should be the server's base URL, without ? or #.")
    https = parts.scheme == "https"
    return Target(
        https=https,
        host=parts.hostname,
        port=port or (443 if https else 80),
        prefix=parts.path.rstrip("/"),
    )


def _check_header(name: str, value: str) -> str:
    """Refuse a header value that could end the header line (a token pasted with a newline)."""
    if any(char in value for char in "\r\n\0"):
        raise ValueError(f"The {name} must not contain a line break or NUL.")
    return value


def _auth_headers(token: str | None) -> dict[str, str]:
    if token is None:
        return {}
    return {"Authorization": "Bearer " + _check_header("token", token)}


# -- publishing ----------------------------------------------------------------------------------


def publish(
    url: str,
    topic: str,
    data: object,
    *,
    type: str | None = None,
    token: str | None = None,
    idempotency_key: str | None = None,
    retries: int = 4,
    timeout: float = 10.0,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> str:
    """Publish one event and return its id.

    ``data`` is any JSON value: a string is delivered as its characters, anything else as its
    compact JSON text. ``retries`` is how many times a failed attempt is repeated (so at most
    ``retries + 1`` requests), all with the same ``Idempotency-Key``, so the event is stored
    once however many attempts it takes. ``timeout`` bounds each connect and each read.

    Raises :class:`AuthFailed`, :class:`BadInput` or :class:`Refused` at once, and
    :class:`ServerUnavailable` when the retries are spent.
    """
    answer = _post(
        url,
        _event_body(topic, data, type),
        token=token,
        idempotency_key=idempotency_key,
        retries=retries,
        timeout=timeout,
        backoff=backoff,
    )
    event_id = answer.get("id")
    if not isinstance(event_id, str):
        raise RequestError("The server's answer to a publish has no event id.")
    return event_id


def publish_batch(
    url: str,
    events: Iterable[Mapping[str, object]],
    *,
    token: str | None = None,
    idempotency_key: str | None = None,
    retries: int = 4,
    timeout: float = 10.0,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> list[str]:
    """Publish several events atomically (all or none) and return their ids, in order.

    Each event is a mapping with ``topic``, ``data`` and optionally ``type``; retries behave as
    in :func:`publish`.
    """
    batch = [_event_body(e["topic"], e["data"], e.get("type")) for e in events]
    answer = _post(
        url,
        {"events": batch},
        token=token,
        idempotency_key=idempotency_key,
        retries=retries,
        timeout=timeout,
        backoff=backoff,
    )
    ids = answer.get("ids")
    if not isinstance(ids, list) or len(ids) != len(batch):
        raise RequestError("The server's answer to a batch publish does not list one id per event.")
    return [str(i) for i in ids]


def _event_body(topic: object, data: object, event_type: object) -> dict[str, object]:
    body: dict[str, object] = {"topic": topic, "data": data}
    if event_type is not None:
        body["type"] = event_type
    return body


def _post(
    url: str,
    body: Mapping[str, object],
    *,
    token: str | None,
    idempotency_key: str | None,
    retries: int,
    timeout: float,
    backoff: Backoff,
) -> dict[str, Any]:
    """POST ``body`` to ``/publish`` until it succeeds, is refused, or the retries are spent."""
    target = parse_url(url)
    payload = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": _check_header("Idempotency-Key", idempotency_key or str(uuid.uuid4())),
        **_auth_headers(token),
    }
    attempt = 0
    while True:
        attempt += 1
        try:
            status, reason, answer, retry_after = _request(target, payload, headers, timeout)
        except (OSError, http.client.HTTPException) as exc:
            failure: RequestError = ServerUnavailable(
                f"Could not reach {target.origin} ({describe(exc)}) after {attempt} "
                f"attempt{'s' if attempt > 1 else ''}.",
                attempts=attempt,
            )
        else:
            if 200 <= status < 300:
                return _json_object(answer)
            failure = refusal(status, reason, answer, retry_after)
            failure.attempts = attempt
            if not isinstance(failure, ServerUnavailable):
                raise failure
        if attempt > retries or (
            failure.retry_after is not None and failure.retry_after > backoff.cap
        ):
            raise failure
        wait = backoff.delay(attempt - 1, failure.retry_after)
        log.info("publish attempt %d failed (%s); retrying in %.2f s", attempt, failure, wait)
        time.sleep(wait)


def _request(
    target: Target, payload: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, str, bytes, str | None]:
    """One POST /publish on a fresh connection: status, reason, body and ``Retry-After``."""
    connection: http.client.HTTPConnection
    if target.https:
        connection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        connection.request("POST", target.path("/publish"), body=payload, headers=dict(headers))
        response = connection.getresponse()
        answer = response.read(MAX_ANSWER_BYTES)
        return response.status, response.reason, answer, response.getheader("Retry-After")
    finally:
        connection.close()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise RequestError("The server's answer is not a JSON object.")
    return answer


def describe(exc: BaseException) -> str:
    """A short, secret-free phrase for a network failure: ``connection refused``, ``timed out``."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the connection closed without an answer"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


# -- subscribing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a subscription, or a server notice (``type`` in :data:`NOTICE_TYPES`)."""

    #: The stream position after this event: the id to resume from (``""`` before any).
    id: str
    #: The publisher's type (``"message"`` by default), or ``reset``, ``overflow``, ``shutdown``.
    type: str
    #: The data exactly as published (JSON text for a JSON value that was not a string).
    data: str
    #: The topic the event was published to; ``None`` for notices, which concern the stream.
    topic: str | None = None

    @property
    def is_notice(self) -> bool:
        """True for the server's own events: ``reset`` asks the caller to refetch its state."""
        return self.type in NOTICE_TYPES

    @classmethod
    def from_message(cls, message: MessageEvent) -> Event:
        return cls(message.last_event_id, message.type, message.data, message.fields.get("topic"))


class StopSignal(Protocol):
    """What ``subscribe(stop=...)`` accepts: :class:`threading.Event` or gevent's ``Event``."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def subscribe(
    url: str,
    topics: str | Iterable[str],
    *,
    token: str | None = None,
    last_id: str | None = None,
    timeout: float = 45.0,
    max_backoff: float = 30.0,
    stop: StopSignal | None = None,
) -> Generator[Event, None, None]:
    """Follow ``topics``, yielding events as they arrive, for as long as the caller iterates.

    Any drop (the server restarting, the network, ``timeout`` seconds without a byte, heartbeats
    included, so keep it above ``REALTIME_HEARTBEAT_S``) is followed by a reconnect that resumes
    with ``Last-Event-ID``, so nothing is missed or repeated. Reconnects wait with full jitter,
    from the server's ``retry:`` doubling per consecutive failure up to ``max_backoff``.

    Yields ``reset`` when the server cannot resume exactly (refetch your state), and
    ``overflow``/``shutdown`` before the reconnect they cause. Raises :class:`AuthFailed` on 401
    or 403 and :class:`Refused` on other 4xx (a bad topic), which retrying cannot fix. Setting
    ``stop`` ends the iteration within about :data:`POLL_S`; so does closing the generator.
    """
    target = parse_url(url)
    names = [topics] if isinstance(topics, str) else list(topics)
    if not names:
        raise ValueError("Name at least one topic to subscribe to.")
    path = target.path("/events") + "?" + urlencode([("topic", name) for name in names])
    _auth_headers(token)  # a malformed token is the caller's error now, not at the first next()
    parser = EventStreamParser()
    if last_id:
        parser.last_event_id = _check_header("Last-Event-ID", last_id)
        parser.close()  # a new stream starts from the last event ID we just set
    return _follow(target, path, parser, token, timeout, max_backoff, stop)


def _follow(
    target: Target,
    path: str,
    parser: EventStreamParser,
    token: str | None,
    timeout: float,
    max_backoff: float,
    stop: StopSignal | None,
) -> Generator[Event, None, None]:
    """The reconnecting loop of :func:`subscribe`; ``parser`` carries the position across."""
    failures = 0
    while not _stopped(stop):
        retry_after: float | None = None
        try:
            with _EventStream(target, path, _stream_headers(token, parser), timeout) as stream:
                body = stream.open(stop)
                failures = 0  # the server took us: the next drop starts the backoff afresh
                for chunk in body:
                    for message in parser.feed(chunk):
                        if _stopped(stop):
                            return
                        yield Event.from_message(message)
                reason = "the server ended the stream"
        except ServerUnavailable as exc:
            reason, retry_after = exc.message, exc.retry_after
        except (OSError, ProtocolError) as exc:
            reason = describe(exc)
        finally:
            parser.close()
        if _stopped(stop):
            return
        told = parser.retry_ms / 1000 if parser.retry_ms is not None else DEFAULT_RETRY_S
        base = max(MIN_RETRY_S, told)
        backoff = Backoff(base=base, cap=max_backoff)
        wait = min(max_backoff, backoff.delay(failures, retry_after))
        failures += 1
        log.info("stream from %s lost (%s); reconnecting in %.2f s", target.origin, reason, wait)
        if stop is not None:
            if stop.wait(wait):
                return
        else:
            time.sleep(wait)


def _stopped(stop: StopSignal | None) -> bool:
    return stop is not None and stop.is_set()


def _stream_headers(token: str | None, parser: EventStreamParser) -> dict[str, str]:
    headers = {
        "Accept": "text/event-stream",
        "Cache-Control": "no-cache",
        "User-Agent": USER_AGENT,
        **_auth_headers(token),
    }
    if parser.last_event_id:
        headers["Last-Event-ID"] = parser.last_event_id
    return headers


@dataclass
class ResponseHead:
    """The status line and headers of an HTTP/1.1 response (header names lower-cased)."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


def parse_head(raw: bytes) -> ResponseHead:
    """Parse a response head (without the blank line that ends it); :class:`ProtocolError`
    if it is not HTTP/1.x."""
    status_line, *lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    status_text, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not (status_text.isdigit() and len(status_text) == 3):
        raise ProtocolError(f"Not an HTTP/1.x status line: {status_line[:60]!r}.")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError(f"Malformed header line {line[:60]!r}.")
        headers[name.strip().lower()] = value.strip()
    return ResponseHead(int(status_text), reason.strip(), headers)


class _EventStream:
    """One ``GET /events`` connection over a raw socket: the request, the head, the body."""

    def __init__(
        self, target: Target, path: str, headers: Mapping[str, str], timeout: float
    ) -> None:
        self.timeout = timeout
        self._buffer = b""
        lines = [f"GET {path} HTTP/1.1", f"Host: {target.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
        try:
            if target.https:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
            sock.sendall(request)
        except BaseException:
            sock.close()  # the caller's `with` never started: nobody else would close it
            raise
        self.sock = sock

    def __enter__(self) -> _EventStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.sock.close()

    def _recv(self, stop: StopSignal | None) -> bytes | None:
        """The next bytes, ``b""`` at end of stream, ``None`` if ``stop`` was set meanwhile.

        Raises :class:`TimeoutError` after ``timeout`` seconds without a byte.
        """
        idle_since = time.monotonic()
        while True:
            left = self.timeout - (time.monotonic() - idle_since)
            if left <= 0:
                raise TimeoutError(f"no data for {self.timeout:g} s")
            self.sock.settimeout(min(POLL_S, left))
            try:
                return self.sock.recv(65536)
            except TimeoutError:
                if _stopped(stop):
                    return None

    def open(self, stop: StopSignal | None) -> Iterator[bytes]:
        """Read the answer's head: the body of a 200 ``text/event-stream`` answer, as it
        arrives, or the :class:`RequestError` of any other answer."""
        head = self._read_head(stop)
        if head is None:
            return iter(())
        body = self._body(head, stop)
        if head.status != 200:
            answer = b"".join(body)[:MAX_ANSWER_BYTES]
            raise refusal(head.status, head.reason, answer, head.headers.get("retry-after"))
        media_type = head.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "text/event-stream":
            raise Refused(
                f"The server answered with {media_type or 'no content type'}, not an event "
                "stream: check the URL.",
                status=200,
            )
        return body

    def _read_head(self, stop: StopSignal | None) -> ResponseHead | None:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_ANSWER_BYTES:
                raise ProtocolError("The response head is too long.")
            data = self._recv(stop)
            if data is None:
                return None
            if not data:
                raise ProtocolError("The connection closed before the response head.")
            self._buffer += data
        raw, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        return parse_head(raw)

    def _body(self, head: ResponseHead, stop: StopSignal | None) -> Iterator[bytes]:
        decoder: ChunkedDecoder | None = None
        if "chunked" in head.headers.get("transfer-encoding", "").lower():
            decoder = ChunkedDecoder()
        length = head.headers.get("content-length")
        left = int(length) if decoder is None and length and length.isdigit() else None
        data, self._buffer = self._buffer, b""
        while True:
            if decoder is not None:
                data = decoder.feed(data)
            elif left is not None:
                data = data[:left]
                left -= len(data)
            if data:
                yield data
            if (decoder is not None and decoder.done) or left == 0:
                return
            received = self._recv(stop)
            if not received:  # None: stopped; b"": the server closed the connection
                if (decoder is not None or left is not None) and received is not None:
                    raise ProtocolError("The connection closed in the middle of the body.")
                return
            data = received
