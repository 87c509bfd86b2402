"""``GET /ws``: the WebSocket side, on the same hub, broker, auth and replay as SSE.

One :class:`WebSocketSession` per connection. Two greenlets share it: the request's own greenlet
reads client messages, and a sender greenlet is the *only* writer: it sends queued frames, runs
replays, and forwards live events from the connection's hub subscription. Keeping every write
in one greenlet makes per-topic ordering and the replay/live seam the same argument as for SSE:
a subscribe registers its topics with the hub *before* the replay check reads the head, and the
sender skips live events at or below each topic's cursor.

simple-websocket writes with ``sock.send()`` from its own ping thread as well as from ours; a
partial send or two frames interleaved would corrupt the stream, so the socket it is given is
wrapped to send whole buffers under one lock (:class:`SerializedSocket`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.lock
from flask import Blueprint, Response, current_app, request
from simple_websocket import ConnectionClosed, Server

from realtime.core.access import (
    TOKEN_COOKIE,
    TOKEN_QUERY,
    authorize_subscribe,
    origin_allowed,
)
from realtime.core.auth import Grant, extract_token
from realtime.core.errors import (
    AuthError,
    BadRequest,
    BrokerError,
    ClientError,
    Forbidden,
    HistoryLost,
)
from realtime.core.events import StoredEvent
from realtime.core.ids import format_id
from realtime.core.messages import Message, MessageError, Req, encode, error_frame, parse_message
from realtime.core.publishing import draft, validate_idempotency_key
from realtime.core.topics import check_topic_count
from realtime.fanout.hub import OVERFLOW, RESYNC, SHUTDOWN, Subscription
from realtime.fanout.slowclient import cut_on_overflow, server_socket
from realtime.ops import metrics
from realtime.storage.interface import ReplayCheck
from realtime.web import service
from realtime.web.request import app_grant
from realtime.web.responses import error_response
from realtime.web.state import RealtimeState, state

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013
RECEIVE_POLL_S = 1.0
CLOSE_WAIT_S = 2.0
REPLAY_YIELD_EVERY = 64
# Why the hub closed a subscription -> the close code that tells the client what to do.
CLOSE_CODES = {OVERFLOW: CLOSE_TRY_LATER, RESYNC: CLOSE_RESTART, SHUTDOWN: CLOSE_RESTART}

ws_blueprint = Blueprint("realtime_ws", __name__)


class SerializedSocket:
    """A socket whose ``send`` writes the whole buffer, one caller at a time."""

    def __init__(self, raw: socket.socket) -> None:
        self._raw = raw
        self._lock = gevent.lock.Semaphore()

    def send(self, data: bytes) -> int:
        with self._lock:
            self._raw.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


WEBSOCKET_VERSION = "13"  # RFC 6455, the only version browsers and libraries speak


def check_handshake(version: str | None, key: str | None) -> None:
    """The upgrade's own headers, checked before wsproto sees them (it raises on a missing or
    foreign version or key, which would be a 500): 400 ``invalid_handshake``, or 426
    ``unsupported_websocket_version`` for a version we do not speak (RFC 6455 §4.2.2)."""
    if version is None or not version.strip():
        raise BadRequest(
            "A WebSocket upgrade needs Sec-WebSocket-Version: 13.", code="invalid_handshake"
        )
    if version.strip() != WEBSOCKET_VERSION:
        raise ClientError(
            f"This server speaks WebSocket version {WEBSOCKET_VERSION} only, not "
            f"{version.strip()[:20]!r}.",
            code="unsupported_websocket_version",
            status=426,
        )
    try:
        nonce = base64.b64decode((key or "").strip(), validate=True)
    except binascii.Error:
        nonce = b""
    if len(nonce) != 16:
        raise BadRequest(
            "A WebSocket upgrade needs Sec-WebSocket-Key: 16 random bytes in base64.",
            code="invalid_handshake",
        )


def _refusal(err: ClientError) -> Response:
    response = error_response(err)
    if err.status == 426:
        response.headers["Sec-WebSocket-Version"] = WEBSOCKET_VERSION
    return response


@ws_blueprint.before_request
def _guard() -> Response | None:
    """Refuse a broken handshake (400/426) and a foreign ``Origin`` (403) before the handshake;
    serialize socket writes."""
    rt = state(current_app)
    try:
        check_handshake(
            request.headers.get("Sec-WebSocket-Version"), request.headers.get("Sec-WebSocket-Key")
        )
    except ClientError as exc:
        return _refusal(exc)
    # Cross-site WebSocket hijacking: the upgrade carries the user's cookie whoever opened it.
    if not origin_allowed(
        request.headers.get("Origin"),
        scheme=request.scheme,
        host=request.host,
        allowed=rt.settings.trusted_origins,
    ):
        return _refusal(
            Forbidden(
                "This Origin may not open a WebSocket here (REALTIME_ALLOWED_ORIGINS).",
                code="origin_not_allowed",
            )
        )
    raw = server_socket(request.environ)
    if raw is not None:
        request.environ["realtime.raw_socket"] = raw
        request.environ["gunicorn.socket"] = SerializedSocket(raw)
    return None


class _Handled(Response):
    """The answer of a view that spoke WebSocket on the connection itself: nothing more is sent.

    gunicorn is told so by ``StopIteration`` (as flask-sock does), werkzeug's development server
    sends the empty response it expects; this is the same ending flask-sock gives its routes.
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def __call__(self, environ: Any, start_response: Any) -> Any:
        if self.mode == "gunicorn":
            raise StopIteration
        if self.mode == "werkzeug":
            return super().__call__(environ, start_response)
        return []


@ws_blueprint.route("/ws", websocket=True)
def websocket() -> Response:
    """The upgrade, on simple-websocket directly rather than through flask-sock's ``route``:
    flask-sock reads its server options from the app-wide ``SOCK_SERVER_OPTIONS``, which an app
    embedding realtime may use for its own sockets; these are realtime's (the ping interval,
    messages up to ``REALTIME_MAX_BODY``) and nobody else's."""
    rt = state(current_app)
    ws = Server(
        request.environ,
        ping_interval=rt.settings.ws_ping_s,
        max_message_size=rt.settings.max_body,
    )
    with contextlib.suppress(ConnectionClosed):
        WebSocketSession(ws, rt, request.environ).run()
    with contextlib.suppress(Exception):  # already closed, by either side
        ws.close()
    return _Handled(ws.mode)


class TokenBucket:
    """``rate`` messages a second with bursts of ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WebSocketSession:
    """One WebSocket connection: authentication, requests, replay and live delivery."""

    def __init__(self, ws: Any, rt: RealtimeState, environ: dict[str, Any]) -> None:
        self.ws = ws
        self.rt = rt
        self.settings = rt.settings
        self.environ = environ
        self.grant: Grant | None = None
        self.token: str | None = None
        self.token_error: ClientError | None = None
        self.sub: Subscription | None = None
        self.cursors: dict[str, int] = {}
        self.epoch = ""
        self.outbox: deque[tuple[str, Any]] = deque()
        self.closing: tuple[int, str] | None = None
        self.bucket = TokenBucket(self.settings.ws_rate, self.settings.ws_burst)
        self.refused = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._authenticate_from_request()
        except ClientError as exc:
            self._send_now(error_frame(exc))
            self._close(CLOSE_POLICY, exc.message)
            return
        who = self.grant.subject if self.grant is not None else None
        try:
            self.sub = self.rt.hub.subscribe(
                (), who=who, transport="ws", address=self.environ.get("REMOTE_ADDR", "")
            )
        except ClientError as exc:
            self._send_now(error_frame(exc))
            self._close(CLOSE_TRY_LATER if exc.status == 429 else CLOSE_RESTART, exc.message)
            return
        sub = self.sub
        disarm = cut_on_overflow(
            sub, self.environ.get("realtime.raw_socket"), self.settings.overflow_grace_s
        ).disarm
        self._send_now(
            encode(
                "welcome",
                connection_id=sub.connection_id,
                heartbeat_s=self.settings.ws_ping_s,
                authenticated=self.grant is not None,
            )
        )
        sender = gevent.spawn(self._sender)
        try:
            self._receiver(sender)
        except ConnectionClosed:
            pass
        finally:
            if self.closing is not None:
                sender.join(timeout=1.0)  # let it send the queued close
            self.rt.hub.unsubscribe(sub)
            disarm()
            sender.kill(block=True, timeout=2)
        if self.closing is not None and self.ws.connected:
            self._close(*self.closing)

    def _close(self, code: int, reason: str) -> None:
        """Send a close frame, then wait (briefly) for the peer's reply before the server drops
        the TCP connection: closing with the reply unread makes the kernel send a reset, which
        can destroy our last frames in the client's buffer before it reads them."""
        with contextlib.suppress(ConnectionClosed, OSError):
            self.ws.close(reason=code, message=reason[:120])
        thread = getattr(self.ws, "thread", None)
        if thread is not None and thread is not gevent.getcurrent():
            thread.join(timeout=CLOSE_WAIT_S)

    def _send_now(self, frame: str) -> None:
        self.ws.send(frame)

    def _queue(self, kind: str, value: Any) -> None:
        self.outbox.append((kind, value))
        if self.sub is not None:
            self.sub.wakeup.set()

    def _subscription(self) -> Subscription:
        """The hub subscription, which :meth:`run` makes before it reads or sends a request."""
        if self.sub is None:
            raise RuntimeError("The WebSocket session has no subscription: run() makes it first.")
        return self.sub

    def _reply_error(self, err: ClientError, req: Req) -> None:
        self._queue("frame", error_frame(err, req))

    # -- authentication -----------------------------------------------------------------------

    def _authenticate_from_request(self) -> None:
        token = extract_token(
            authorization=self.environ.get("HTTP_AUTHORIZATION"),
            cookie=request.cookies.get(TOKEN_COOKIE),
            query=request.args.get(TOKEN_QUERY),
        )
        if token is not None:
            self.grant = self.rt.verifier.verify(token)
            self.token = token
        else:  # the app's authorize hook, from the upgrade request (its session cookie)
            self.grant = app_grant()

    # -- receiving ----------------------------------------------------------------------------

    def _receiver(self, sender: gevent.Greenlet) -> None:
        deadline = None
        if self.grant is None:
            deadline = time.monotonic() + self.settings.ws_auth_timeout_s
        while self.closing is None and not sender.dead:
            raw = self.ws.receive(timeout=RECEIVE_POLL_S)
            if raw is None:
                if not self.ws.connected:
                    return
                if deadline is not None and time.monotonic() > deadline and not self.cursors:
                    self.closing = (CLOSE_POLICY, "No token was given in time.")
                    self._queue("close", self.closing)
                    return
                continue
            if not self.bucket.take():
                self.refused += 1
                if self.refused > self.settings.ws_burst:
                    self.closing = (CLOSE_POLICY, "Message rate limit exceeded.")
                    self._queue("close", self.closing)
                    return
                self._reply_error(
                    ClientError(
                        f"Over {self.settings.ws_rate:g} messages per second; slow down.",
                        code="rate_limited",
                        status=429,
                    ),
                    None,
                )
                continue
            self.refused = 0
            try:
                message = parse_message(raw, max_topics=self.settings.max_topics)
                self._handle(message)
                if message.type in ("auth", "subscribe"):
                    deadline = None if self.grant is not None or self.cursors else deadline
            except MessageError as exc:
                self._reply_error(exc, exc.req)
                if exc.code == "invalid_token":  # an auth token that is not even text
                    self.closing = (CLOSE_POLICY, exc.message)
                    self._queue("close", self.closing)
                    return
            except _Close as exc:
                self.closing = (exc.code, exc.reason)
                self._queue("close", self.closing)
                return

    def _handle(self, message: Message) -> None:
        req = message.req
        try:
            if message.type == "auth":
                self._auth(message)
            elif message.type == "subscribe":
                self._subscribe(message)
            elif message.type == "unsubscribe":
                self.rt.hub.remove_topics(self._subscription(), message.topics)
                self._queue("unsubscribe", (message.topics, req))
            elif message.type == "publish":
                self._publish(message)
            elif message.type == "presence":
                self._presence(message)
            else:  # ping
                self._queue("frame", encode("ack", req=req))
        except MessageError:
            raise
        except ClientError as exc:
            self._reply_error(exc, req)
        except _Close:
            raise
        except BrokerError as exc:
            self._reply_error(service.redis_unavailable(exc, "WebSocket request"), req)
        except Exception as exc:  # a bug: answer and close this session, never kill it silently
            log.exception("WebSocket request failed")
            self._reply_error(
                ClientError("Internal error.", code="internal_error", status=500), req
            )
            raise _Close(CLOSE_INTERNAL, "Internal error.") from exc

    def _auth(self, message: Message) -> None:
        try:
            self.grant = self.rt.verifier.verify(message.body["token"])
            self.token = message.body["token"]
        except ClientError as exc:
            self._reply_error(exc, message.req)
            raise _Close(CLOSE_POLICY, exc.message) from None
        self._queue("frame", encode("ack", req=message.req, sub=self.grant.subject))

    def _subscribe(self, message: Message) -> None:
        sub = self._subscription()
        topics = [t for t in message.topics if t not in sub.topics]
        check_topic_count(len(sub.topics) + len(topics), self.settings.max_topics)
        authorize_subscribe(topics, self.grant, self.settings.public_topics)
        self.rt.hub.add_topics(sub, topics)  # before the check: the seam argument needs it
        try:
            check, after = self.rt.broker.check_last_id(topics, message.body.get("last_id"))
        except BaseException:
            self.rt.hub.remove_topics(sub, topics)
            raise
        self._queue("subscribe", (message.topics, topics, check, after, message.req))

    def _publish(self, message: Message) -> None:
        body = dict(message.body)
        key = validate_idempotency_key(body.pop("idempotency_key", None))
        event = draft(body, self.settings.max_payload, "publish")
        published = service.publish(
            self.rt, [event], grant=self.grant, token=self.token, idempotency_key=key
        )
        self._queue("frame", encode("ack", req=message.req, id=published.ids[0]))

    def _presence(self, message: Message) -> None:
        answer = service.presence_answer(self.rt, message.body["topic"], self.grant)
        self._queue("frame", encode("ack", req=message.req, **answer))

    # -- sending (the only writer) ------------------------------------------------------------

    def _sender(self) -> None:
        sub = self._subscription()
        try:
            while True:
                sub.wait(self._until_token_expires())
                if self._token_expired():
                    self.ws.send(
                        error_frame(
                            AuthError(
                                "Your token expired; reconnect with a new one.",
                                code="token_expired",
                            )
                        )
                    )
                    raise _Close(CLOSE_POLICY, "Token expired.")
                while self.outbox:
                    kind, value = self.outbox.popleft()
                    if kind == "close":
                        code, reason = value
                        self._close(code, reason)
                        return
                    self._send_command(kind, value)
                self._send_live(sub.drain())
                if sub.closed_reason is not None:
                    code = CLOSE_CODES.get(sub.closed_reason, CLOSE_INTERNAL)
                    raise _Close(code, sub.closed_reason)
        except _Close as exc:
            self.closing = (exc.code, exc.reason)
            self._close(exc.code, exc.reason)
        except (ConnectionClosed, OSError):
            self.closing = self.closing or (CLOSE_GOING_AWAY, "connection lost")
        except Exception:  # a bug must end this session cleanly, never hang or leak it
            log.exception("WebSocket sender failed")
            self.closing = (CLOSE_INTERNAL, "internal error")
            self._close(CLOSE_INTERNAL, "Internal error.")

    def _until_token_expires(self) -> float | None:
        """Seconds until the current token's ``exp`` (an ``auth`` message may renew it)."""
        expires_at = self.grant.expires_at if self.grant is not None else None
        return None if expires_at is None else max(0.0, expires_at - time.time())

    def _token_expired(self) -> bool:
        expires_at = self.grant.expires_at if self.grant is not None else None
        return expires_at is not None and time.time() >= expires_at

    def _send_command(self, kind: str, value: Any) -> None:
        if kind == "frame":
            self.ws.send(value)
        elif kind == "subscribe":
            self._run_subscribe(*value)
        elif kind == "unsubscribe":
            topics, req = value
            for topic in topics:
                self.cursors.pop(topic, None)
            self.ws.send(encode("ack", req=req, topics=topics))

    def _run_subscribe(
        self, asked: list[str], new: list[str], check: ReplayCheck, after: int, req: Req
    ) -> None:
        self.epoch = check.epoch
        head_id = format_id(check.epoch, check.head)
        if new and check.status == "ok" and after < check.head:
            try:
                for count, event in enumerate(
                    self.rt.broker.replay(new, check.epoch, after, check.head), 1
                ):
                    self.ws.send(event.ws_frame())
                    metrics.REPLAYED.labels("ws").inc()
                    if count % REPLAY_YIELD_EVERY == 0:
                        # As for SSE: writes that never block would keep the pooled Redis
                        # connection from every other greenlet for the whole replay.
                        gevent.sleep(0)
            except (HistoryLost, BrokerError) as exc:
                # History vanished mid-replay: close so the resubscribe gets an exact reset.
                log.info("WebSocket replay interrupted (%s); asking the client to resume", exc)
                raise _Close(CLOSE_RESTART, "Replay interrupted; resume.") from None
        elif new and check.status not in ("ok", "fresh"):
            metrics.RESETS.labels(check.status).inc()
            self.ws.send(encode("reset", req=req, topics=new, reason=check.status, last_id=head_id))
        for topic in new:
            self.cursors[topic] = check.head
        self.ws.send(encode("ack", req=req, topics=asked, last_id=head_id))

    def _send_live(self, events: list[StoredEvent]) -> None:
        cursors = self.cursors
        sent = 0
        for event in events:
            cursor = cursors.get(event.topic)
            if cursor is None or event.seq <= cursor:
                continue  # not (yet) subscribed, or already sent by the replay
            cursors[event.topic] = event.seq
            self.ws.send(event.ws_frame())
            if not sent:
                metrics.DELIVERY_LAG.labels("ws").observe(event.lag_s(time.time()))
            sent += 1
        if sent:
            metrics.DELIVERED.labels("ws").inc(sent)
