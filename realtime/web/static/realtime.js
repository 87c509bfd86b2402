// realtime.js: the browser client of realtime. An ES module: no build step, no dependencies.
//
//   import { subscribe, RealtimeSocket } from "/static/realtime.js";
//
// `subscribe()` follows topics over Server-Sent Events (GET /events) with the browser's own
// EventSource, which reconnects and resumes by itself; this module adds what EventSource lacks:
// the topic of each event (`envelope=1`), named event types, the server's `reset` and
// `overflow` signals, and a reconnect of its own when EventSource gives up.
//
// `RealtimeSocket` speaks the WebSocket protocol of GET /ws: requests answered by acks, a
// cursor per topic, and an exact resume after every reconnect.
//
// Deliberate choices, so nobody "fixes" them:
// - Tokens travel as `?access_token=`: neither EventSource nor WebSocket can set headers. The
//   server redacts the parameter from its logs.
// - Ids are opaque strings. The only thing read from them is what the WebSocket protocol asks
//   for: whether a subscribe ack's or a reset's `last_id` is newer than a topic's cursor.
// - Nothing here drops "duplicate" events: the server promises exactly-once delivery, and
//   hiding a duplicate would hide a server bug.
// - Tokens end. With `getToken` (an async function returning a fresh token, typically from
//   the page's own session) a stream that ends with `auth_expired` reconnects at once with a new
//   token from where it stopped, and a socket renews its token with an `auth` message shortly
//   before it expires. Without `getToken` an expired stream stops rather than retry a dead
//   token for ever.

/** Renew a socket's token this long before its `exp` (the server ends it at `exp`), or a
 * third of its time left when that is shorter, so a short-lived token is not renewed in a loop. */
const TOKEN_RENEW_EARLY_MS = 5000;
/** A token with less than this left is renewed before connecting with it. */
const TOKEN_MIN_LEFT_MS = 1000;

/** The version of this client. */
export const version = "0.1.0";

const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30000;
/** Event types the server itself sends on an SSE stream (publishers may not use them). */
const CONTROL_TYPES = ["reset", "overflow", "shutdown", "auth_expired"];
/** Error codes that say "not now" rather than "no" (the server answers them with Retry-After):
 * a subscribe refused so is tried again. The server's registry holds this list (RETRYABLE). */
const TRANSIENT_CODES = new Set([
  "too_many_connections",
  "rate_limited",
  "topic_rate_limited",
  "redis_unavailable",
  "draining",
]);
/** The close code this client uses to start over after a transient subscribe failure. */
const CLOSE_RESUBSCRIBE = 4000;

/**
 * An event as handlers receive it, from either transport.
 * @typedef {object} RealtimeEvent
 * @property {string} id      the event id (`<epoch>-<seq>`; treat it as opaque)
 * @property {string} topic   the topic it was published to
 * @property {string} type    the publisher's type (`"message"` unless one was given)
 * @property {string} data    the data exactly as published (JSON values arrive as their text)
 */

/**
 * What the server says when a stream cannot resume exactly: refetch state, then carry on.
 * @typedef {object} ResetInfo
 * @property {"trimmed"|"epoch"|"unknown_id"} reason
 * @property {string} last_id            the newest id now; the stream goes on from there
 * @property {string[]} [topics]         (WebSocket) the topics it applies to
 */

/** @typedef {"connecting"|"open"|"closed"} ConnectionState */

/**
 * An Error carrying the server's stable error code (or one of this client's: `timeout`,
 * `closed`, `unsubscribed`, `close_<code>`).
 */
export class RealtimeError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [frame]  the server's `error` frame, when there was one
   */
  constructor(code, message, frame) {
    super(message);
    this.name = "RealtimeError";
    /** @type {string} */
    this.code = code;
    /** @type {object|undefined} */
    this.frame = frame;
  }
}

/**
 * Exponential backoff with full jitter: the n-th wait is random in [0, min(max, base * 2^n)].
 * `reset()` after a successful connect starts again from `base`.
 */
class Backoff {
  constructor(baseMs = BACKOFF_BASE_MS, maxMs = BACKOFF_MAX_MS) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.attempt = 0;
  }

  /** @returns {number} milliseconds to wait before the next attempt */
  next() {
    const cap = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    if (cap < this.maxMs) this.attempt += 1;
    return Math.random() * cap;
  }

  reset() {
    this.attempt = 0;
  }
}

/**
 * `path` resolved against the server base URL `url` (default: this page's origin). A base with a
 * path (`https://example.com/realtime`) keeps it: `path` is appended below it.
 * @param {string|undefined} url
 * @param {string} path
 * @returns {URL}
 */
function endpoint(url, path) {
  const base = new URL(url || globalThis.location.origin, globalThis.location?.href);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  base.search = "";
  base.hash = "";
  return new URL(path, base);
}

/**
 * Whether id `candidate` should replace cursor `current`: when there is no cursor, when the
 * epochs differ (the server's history restarted: its word wins), or when it is further on.
 * @param {string} candidate
 * @param {string|null} current
 * @returns {boolean}
 */
function isNewer(candidate, current) {
  if (!current) return true;
  const a = /^([0-9a-z]+)-([0-9]+)$/.exec(candidate);
  const b = /^([0-9a-z]+)-([0-9]+)$/.exec(current);
  if (!a || !b || a[1] !== b[1]) return true;
  return BigInt(a[2]) > BigInt(b[2]);
}

/** @param {string} text */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// -- Server-Sent Events ------------------------------------------------------------------------

/**
 * @typedef {object} SubscribeHandlers
 * @property {(info: {last_id: string}) => void} [onAuthExpired]
 *   the token expired; with `getToken` the stream goes on with a new one, without it it stops
 * @property {(event: RealtimeEvent) => void} [onEvent]
 * @property {(info: ResetInfo) => void} [onReset]
 * @property {(info: {reason: string, last_id: string}) => void} [onOverflow]
 *   the server cut this stream because it fell behind; it resumes by itself, losslessly
 * @property {(state: ConnectionState) => void} [onStateChange]
 * @property {(event: Event) => void} [onError]  each failed or dropped connection
 */

/**
 * A function that returns a fresh token (or a promise of one), e.g.
 * `() => fetch("/realtime-token").then((r) => r.text())`.
 * @typedef {() => (string|Promise<string>)} TokenSource
 */

/**
 * @param {TokenSource|undefined} getToken
 * @param {(error: Error) => void} [onError]
 * @returns {Promise<string|null>} a fresh token, or null when there is no source or it failed
 */
async function fetchToken(getToken, onError) {
  if (!getToken) return null;
  try {
    const token = await getToken();
    return typeof token === "string" && token ? token : null;
  } catch (error) {
    onError?.(new RealtimeError("token_refresh_failed", String(error)));
    return null;
  }
}

/**
 * Milliseconds until a JWT's `exp` (read, not verified: the server verifies), or null when it
 * has none or is not a JWT.
 * @param {string|null} token
 * @returns {number|null}
 */
export function tokenExpiresInMs(token) {
  const payload = typeof token === "string" ? token.split(".")[1] : undefined;
  if (!payload) return null;
  try {
    const text = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(text).exp;
    return typeof exp === "number" ? exp * 1000 - Date.now() : null;
  } catch {
    return null;
  }
}

/**
 * @typedef {object} SubscribeOptions
 * @property {string} [token]    a JWT, sent as `?access_token=`
 * @property {TokenSource} [getToken]  fresh tokens: asked before the first connect when no
 *   `token` is given, when the stream ends with `auth_expired`, and before reconnecting after
 *   the server refused the stream (its token may have expired meanwhile)
 * @property {string[]} [types]  event types to listen for besides `"message"`
 * @property {string} [lastId]   resume after this id instead of starting from now
 */

/**
 * @typedef {object} Subscription
 * @property {() => void} close        stop following; no reconnect afterwards
 * @property {string|null} lastId      the id of the last event (or reset) seen
 * @property {ConnectionState} state
 */

/**
 * Follow `topics` over one SSE stream (GET /events?topic=…&envelope=1).
 *
 * EventSource resumes by itself after a dropped stream, sending `Last-Event-ID`. It gives up
 * (readyState CLOSED) on an HTTP error such as a 503 while a server restarts; this function then
 * opens a new EventSource after a backoff (1 s doubling to 30 s, full jitter) with
 * `?lastEventId=<last id>`, so nothing is missed as long as the server still holds it.
 *
 * A stream that has delivered no event yet knows no id here (EventSource keeps the server's
 * opening id to itself), so a reconnect of our own before the first event starts from "now".
 *
 * @param {string|undefined} url  the server base URL; default this page's origin
 * @param {string[]} topics
 * @param {SubscribeHandlers} [handlers]
 * @param {SubscribeOptions} [options]
 * @returns {Subscription}
 */
export function subscribe(url, topics, handlers = {}, options = {}) {
  if (!Array.isArray(topics) || topics.length === 0) {
    throw new TypeError("subscribe() needs an array of at least one topic");
  }
  const types = ["message", ...(options.types || []).filter((t) => t !== "message")];
  const backoff = new Backoff();
  /** @type {EventSource|null} */
  let source = null;
  /** @type {string|null} */
  let lastId = options.lastId || null;
  /** @type {ConnectionState|null} */
  let state = null;
  let closed = false;
  let timer = 0;
  /** @type {string|null} */
  let token = options.token || null;

  /** @param {ConnectionState} next */
  function setState(next) {
    if (next === state) return;
    state = next;
    handlers.onStateChange?.(next);
  }

  function streamUrl() {
    const target = endpoint(url, "events");
    for (const topic of topics) target.searchParams.append("topic", topic);
    target.searchParams.set("envelope", "1");
    if (token) target.searchParams.set("access_token", token);
    if (lastId) target.searchParams.set("lastEventId", lastId);
    return target.href;
  }

  /** Connect again, with a fresh token first when there is a source of them. */
  async function reconnect() {
    timer = 0;
    if (closed) return;
    if (options.getToken) token = (await fetchToken(options.getToken, handlers.onError)) || token;
    if (!closed) connect();
  }

  /** @param {MessageEvent} message */
  function onMessage(message) {
    if (message.lastEventId) lastId = message.lastEventId;
    const envelope = parseJson(message.data);
    const wrapped = envelope && typeof envelope === "object" && typeof envelope.topic === "string";
    handlers.onEvent?.({
      id: message.lastEventId,
      topic: wrapped ? envelope.topic : topics.length === 1 ? topics[0] : "",
      // With envelope=1 the server sends every event as "message" with its type inside, so
      // types nobody listed in advance arrive too.
      type: wrapped && typeof envelope.type === "string" ? envelope.type : message.type,
      data: wrapped ? String(envelope.data) : message.data,
    });
  }

  /** @param {MessageEvent} message */
  function onReady(message) {
    // Where a fresh stream starts: known before any event, so our own reconnect is exact too.
    const info = parseJson(message.data) || {};
    lastId = info.last_id || message.lastEventId || lastId;
  }

  /** @param {MessageEvent} message */
  function onReset(message) {
    const info = parseJson(message.data) || {};
    lastId = info.last_id || message.lastEventId || lastId;
    handlers.onReset?.(info);
  }

  /** @param {MessageEvent} message */
  function onOverflow(message) {
    handlers.onOverflow?.(parseJson(message.data) || {});
  }

  /** @param {MessageEvent} message */
  function onShutdown(message) {
    // The server is stopping; EventSource resumes elsewhere after the `retry:` it was sent.
    if (message.lastEventId) lastId = message.lastEventId;
  }

  /** @param {MessageEvent} message */
  function onAuthExpired(message) {
    // The token is dead: EventSource would reconnect with it, be refused, and give up. Close it
    // and go on from where the stream stopped, with a new token if there is a source of them.
    const info = parseJson(message.data) || {};
    lastId = info.last_id || lastId;
    source?.close();
    source = null;
    handlers.onAuthExpired?.(info);
    if (!options.getToken) {
      closed = true;
      setState("closed");
      return;
    }
    setState("connecting");
    reconnect();
  }

  function connect() {
    timer = 0;
    if (closed) return;
    setState("connecting");
    const es = new EventSource(streamUrl());
    source = es;
    es.onopen = () => {
      backoff.reset();
      setState("open");
    };
    es.onerror = (event) => {
      handlers.onError?.(event);
      if (closed || es !== source) return;
      if (es.readyState === EventSource.CLOSED) {
        // EventSource gave up (an HTTP error, a wrong content type): reconnect ourselves.
        es.close();
        source = null;
        setState("connecting");
        timer = setTimeout(reconnect, backoff.next());
      } else {
        setState("connecting"); // EventSource is reconnecting by itself
      }
    };
    for (const type of types) {
      if (!CONTROL_TYPES.includes(type)) es.addEventListener(type, onMessage);
    }
    es.addEventListener("ready", onReady);
    es.addEventListener("reset", onReset);
    es.addEventListener("overflow", onOverflow);
    es.addEventListener("shutdown", onShutdown);
    es.addEventListener("auth_expired", onAuthExpired);
  }

  if (!token && options.getToken) reconnect();
  else connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      source?.close();
      source = null;
      setState("closed");
    },
    get lastId() {
      return lastId;
    },
    get state() {
      return /** @type {ConnectionState} */ (state);
    },
  };
}

// -- WebSocket ---------------------------------------------------------------------------------

/**
 * @typedef {object} SocketOptions
 * @property {string} [token]          a JWT, sent as `?access_token=`
 * @property {TokenSource} [getToken]  fresh tokens: asked before connecting when the token is
 *   missing or about to expire, and shortly before it expires on an open socket, which then
 *   sends it in an `auth` message (the connection, its subscriptions and cursors stay)
 * @property {string[]} [topics]       topics to subscribe to on connect
 * @property {(event: RealtimeEvent) => void} [onEvent]
 * @property {(info: ResetInfo) => void} [onReset]
 * @property {(state: ConnectionState) => void} [onStateChange]
 * @property {(error: RealtimeError) => void} [onError]
 *   `error` frames that answer no pending request, and abnormal closes (`.code` is `close_<n>`)
 * @property {number} [requestTimeoutMs]  how long a request may wait for its ack (default 10 s)
 */

/**
 * @typedef {object} PendingRequest
 * @property {object} frame
 * @property {(ack: object) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {number} timer
 */

/**
 * @typedef {object} SubscribeWaiter
 * @property {Set<string>} topics  not yet acknowledged on the current connection
 * @property {(ack: object) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {number} timer
 */

/**
 * A WebSocket to GET /ws that reconnects by itself and resumes every topic exactly.
 *
 * It keeps a cursor per topic: the id of the last event of that topic, or the `last_id` of a
 * subscribe ack or reset when newer. After every reconnect it subscribes again to every topic
 * with its cursor as `last_id` (one subscribe per distinct cursor), so the server replays what
 * was missed, once, in order. Reconnects back off from 1 s, doubling to 30 s, with full jitter;
 * a successful connect (the server's `welcome`) starts again from 1 s.
 *
 * Abnormal closes (1008 for a refused token, say) and `error` frames that answer no request go to
 * `onError`; the socket keeps reconnecting until `close()`. A subscribe the server refuses
 * (`forbidden_topic`, …) is dropped; one it cannot serve now (`redis_unavailable`, …) is retried.
 *
 * Requests return promises that resolve with the server's ack and reject with a
 * {@link RealtimeError} carrying `.code`: the server's code on an `error` frame, `timeout` after
 * `requestTimeoutMs` (counted from the call), or `closed` after `close()`. Requests made while
 * disconnected wait for the connection; requests whose connection dropped before their answer
 * are sent again on the next one.
 */
export class RealtimeSocket {
  /**
   * @param {string|undefined} url  the server base URL (http(s) or ws(s)); default this origin
   * @param {SocketOptions} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = options;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    /** @type {ConnectionState|null} */
    this.state = null;
    /** @type {string|null} the server's id for the current connection */
    this.connectionId = null;
    /** @type {Map<string, string|null>} subscribed topics and their cursors */
    this._cursors = new Map();
    /** @type {Set<string>} topics acknowledged on the current connection */
    this._acked = new Set();
    /** @type {Map<number, PendingRequest>} requests sent, by `req` */
    this._inFlight = new Map();
    /** @type {Map<number, string[]>} subscribe frames sent, by `req`: their topics */
    this._subscribing = new Map();
    /** @type {PendingRequest[]} requests waiting for a connection */
    this._outbox = [];
    /** @type {SubscribeWaiter[]} */
    this._waiters = [];
    /** @type {WebSocket|null} */
    this._ws = null;
    this._open = false;
    this._closed = false;
    this._nextReq = 1;
    this._timer = 0;
    this._renewTimer = 0;
    /** @type {string|null} */
    this._token = options.token || null;
    this._backoff = new Backoff();
    for (const topic of options.topics || []) this._cursors.set(topic, null);
    this._connect();
  }

  /** @returns {Object<string, string|null>} each subscribed topic's cursor */
  get cursors() {
    return Object.fromEntries(this._cursors);
  }

  /**
   * Subscribe to `topics` from now on (topics already subscribed keep their cursor). Resolves
   * with the ack once every topic is acknowledged; across a reconnect, with the last ack needed.
   * @param {string[]} topics
   * @returns {Promise<object>}
   */
  subscribe(topics) {
    if (this._closed) return Promise.reject(closedError());
    const fresh = topics.filter((t) => !this._cursors.has(t));
    for (const topic of fresh) this._cursors.set(topic, null);
    const waiting = new Set(topics.filter((t) => !this._acked.has(t)));
    if (waiting.size === 0) return Promise.resolve({ type: "ack", topics: [...topics] });
    const promise = new Promise((resolve, reject) => {
      /** @type {SubscribeWaiter} */
      const waiter = { topics: waiting, resolve, reject, timer: 0 };
      waiter.timer = setTimeout(() => {
        this._waiters = this._waiters.filter((w) => w !== waiter);
        reject(new RealtimeError("timeout", `subscribe got no ack in ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this._waiters.push(waiter);
    });
    // New topics go now; while disconnected, `_resubscribe()` sends them all on the welcome.
    if (this._open && fresh.length) this._sendSubscribe(fresh, null);
    return promise;
  }

  /**
   * Stop receiving `topics`; they are forgotten at once (no event of theirs is delivered after
   * this call, and a reconnect does not subscribe to them again).
   * @param {string[]} topics
   * @returns {Promise<object>}
   */
  unsubscribe(topics) {
    for (const topic of topics) {
      this._cursors.delete(topic);
      this._acked.delete(topic);
    }
    const dropped = this._waiters.filter((w) => topics.some((t) => w.topics.has(t)));
    this._waiters = this._waiters.filter((w) => !dropped.includes(w));
    for (const waiter of dropped) {
      clearTimeout(waiter.timer);
      waiter.reject(new RealtimeError("unsubscribed", "unsubscribed before the subscribe ack"));
    }
    return this._request({ type: "unsubscribe", topics: [...topics] });
  }

  /**
   * Publish one event; resolves with `{type: "ack", id}`.
   * @param {string} topic
   * @param {*} data  a string is delivered as is, any other JSON value as its compact text
   * @param {string} [type]
   * @returns {Promise<object>}
   */
  publish(topic, data, type) {
    // A key of its own makes the publish safe to send again after a reconnect: the server
    // answers a repeat with the first publish's id instead of publishing twice.
    /** @type {Object<string, *>} */
    const frame = { type: "publish", topic, data, idempotency_key: randomKey() };
    // The frame's own `type` is "publish": the event's type travels as `event`, as in the
    // `event` frames the server sends.
    if (type) frame.event = type;
    return this._request(frame);
  }

  /**
   * Who is subscribed to `topic`; resolves with `{present: [...], connections}`.
   * @param {string} topic
   * @returns {Promise<object>}
   */
  presence(topic) {
    return this._request({ type: "presence", topic });
  }

  /** @returns {Promise<object>} resolves when the server answers */
  ping() {
    return this._request({ type: "ping" });
  }

  /** Close the socket for good: no reconnect, and every waiting request is rejected. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    const error = closedError();
    for (const request of [...this._inFlight.values(), ...this._outbox]) {
      clearTimeout(request.timer);
      request.reject(error);
    }
    for (const waiter of this._waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this._inFlight.clear();
    this._outbox = [];
    this._waiters = [];
    clearTimeout(this._renewTimer);
    const ws = this._ws;
    this._ws = null;
    this._open = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "client closed");
    this._setState("closed");
  }

  // -- connection --------------------------------------------------------------------------------

  async _connect() {
    this._timer = 0;
    if (this._closed) return;
    this._setState("connecting");
    if (this.options.getToken && this._tokenStale()) {
      this._token = (await fetchToken(this.options.getToken, this.options.onError)) || this._token;
      if (this._closed) return;
    }
    const target = endpoint(this.url, "ws");
    if (target.protocol === "http:") target.protocol = "ws:";
    if (target.protocol === "https:") target.protocol = "wss:";
    if (this._token) target.searchParams.set("access_token", this._token);
    let ws;
    try {
      ws = new WebSocket(target.href);
    } catch (error) {
      this.options.onError?.(new RealtimeError("invalid_url", String(error)));
      this._reconnectLater();
      return;
    }
    this._ws = ws;
    ws.onmessage = (message) => {
      if (ws === this._ws) this._onFrame(message.data);
    };
    ws.onclose = (event) => {
      if (ws === this._ws) this._onClose(event);
    };
  }

  _reconnectLater() {
    this._setState("connecting");
    this._timer = setTimeout(() => this._connect(), this._backoff.next());
  }

  /** @returns {boolean} no token, or one that expires within TOKEN_MIN_LEFT_MS */
  _tokenStale() {
    if (!this._token) return true;
    const left = tokenExpiresInMs(this._token);
    return left !== null && left < TOKEN_MIN_LEFT_MS;
  }

  /** Renew the token of the open socket shortly before it expires (needs `getToken`). */
  _scheduleRenewal() {
    clearTimeout(this._renewTimer);
    this._renewTimer = 0;
    const left = tokenExpiresInMs(this._token);
    if (!this.options.getToken || left === null || this._closed) return;
    const early = Math.min(TOKEN_RENEW_EARLY_MS, left / 3);
    this._renewTimer = setTimeout(() => this._renew(), Math.max(0, left - early));
  }

  async _renew() {
    this._renewTimer = 0;
    const token = await fetchToken(this.options.getToken, this.options.onError);
    if (!token || this._closed) return;
    this._token = token; // the next connect uses it too
    if (!this._open) return;
    this._request({ type: "auth", token }).then(
      () => this._scheduleRenewal(),
      (error) => this.options.onError?.(error),
    );
  }

  /** @param {ConnectionState} next */
  _setState(next) {
    if (next === this.state) return;
    this.state = next;
    this.options.onStateChange?.(next);
  }

  /** @param {CloseEvent} event */
  _onClose(event) {
    this._ws = null;
    this._open = false;
    clearTimeout(this._renewTimer);
    this._acked.clear();
    this._subscribing.clear();
    // Requests that were on the wire go again on the next connection (a publish carries its
    // idempotency key, so it cannot happen twice), except an unsubscribe: the drop did its work.
    const again = [];
    for (const request of this._inFlight.values()) {
      if (request.frame.type === "unsubscribe") {
        clearTimeout(request.timer);
        request.resolve({ type: "ack", topics: request.frame.topics });
      } else {
        again.push(request);
      }
    }
    this._inFlight.clear();
    this._outbox = [...again, ...this._outbox];
    if (this._closed) return;
    if (![1000, 1001, 1012, CLOSE_RESUBSCRIBE].includes(event.code)) {
      const reason = event.reason || "the connection closed abnormally";
      this.options.onError?.(new RealtimeError(`close_${event.code}`, reason));
    }
    this._reconnectLater();
  }

  /** @param {*} text */
  _onFrame(text) {
    const frame = typeof text === "string" ? parseJson(text) : null;
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "welcome":
        this._onWelcome(frame);
        break;
      case "event":
        this._onEvent(frame);
        break;
      case "reset":
        this._onReset(frame);
        break;
      case "ack":
        this._onAck(frame);
        break;
      case "error":
        this._onError(frame);
        break;
      default:
        break; // a frame type from a newer server: ignore it
    }
  }

  _onWelcome(frame) {
    this._open = true;
    this.connectionId = frame.connection_id ?? null;
    this._backoff.reset();
    this._scheduleRenewal();
    this._resubscribe();
    const queued = this._outbox;
    this._outbox = [];
    for (const request of queued) {
      if (request.frame.type === "unsubscribe") {
        // This connection never subscribed to them: nothing to undo.
        clearTimeout(request.timer);
        request.resolve({ type: "ack", topics: request.frame.topics });
      } else {
        this._sendRequest(request);
      }
    }
    this._setState("open");
  }

  /** Subscribe to every topic again, each group of topics sharing a cursor in one frame. */
  _resubscribe() {
    /** @type {Map<string, string[]>} */
    const groups = new Map();
    for (const [topic, cursor] of this._cursors) {
      const key = cursor ?? "";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(topic);
    }
    for (const [cursor, topics] of groups) this._sendSubscribe(topics, cursor || null);
  }

  /**
   * @param {string[]} topics
   * @param {string|null} lastId
   */
  _sendSubscribe(topics, lastId) {
    const req = this._nextReq++;
    this._subscribing.set(req, topics);
    /** @type {Object<string, *>} */
    const frame = { type: "subscribe", topics, req };
    if (lastId) frame.last_id = lastId;
    this._ws.send(JSON.stringify(frame));
  }

  /**
   * @param {object} frame
   * @returns {Promise<object>}
   */
  _request(frame) {
    if (this._closed) return Promise.reject(closedError());
    if (frame.type === "unsubscribe" && !this._open) {
      return Promise.resolve({ type: "ack", topics: frame.topics });
    }
    return new Promise((resolve, reject) => {
      /** @type {PendingRequest} */
      const request = { frame, resolve, reject, timer: 0 };
      request.timer = setTimeout(() => {
        this._outbox = this._outbox.filter((r) => r !== request);
        for (const [req, r] of this._inFlight) if (r === request) this._inFlight.delete(req);
        const ms = this.requestTimeoutMs;
        reject(new RealtimeError("timeout", `${frame.type} got no answer in ${ms} ms`));
      }, this.requestTimeoutMs);
      if (this._open) this._sendRequest(request);
      else this._outbox.push(request);
    });
  }

  /** @param {PendingRequest} request */
  _sendRequest(request) {
    const req = this._nextReq++;
    this._inFlight.set(req, request);
    this._ws.send(JSON.stringify({ ...request.frame, req }));
  }

  _onEvent(frame) {
    const topic = frame.topic;
    if (!this._cursors.has(topic)) return; // unsubscribed meanwhile
    this._cursors.set(topic, frame.id);
    this.options.onEvent?.({
      id: frame.id,
      topic,
      type: frame.event || "message",
      data: frame.data,
    });
  }

  _onReset(frame) {
    const topics = (frame.topics || []).filter((t) => this._cursors.has(t));
    for (const topic of topics) {
      if (frame.last_id && isNewer(frame.last_id, this._cursors.get(topic))) {
        this._cursors.set(topic, frame.last_id);
      }
    }
    this.options.onReset?.({ reason: frame.reason, last_id: frame.last_id, topics });
  }

  _onAck(frame) {
    const topics = this._subscribing.get(frame.req);
    if (topics) {
      this._subscribing.delete(frame.req);
      for (const topic of topics) {
        if (!this._cursors.has(topic)) continue;
        if (frame.last_id && isNewer(frame.last_id, this._cursors.get(topic))) {
          this._cursors.set(topic, frame.last_id);
        }
        this._acked.add(topic);
      }
      this._settleWaiters(topics, frame);
      return;
    }
    const request = this._inFlight.get(frame.req);
    if (request) {
      this._inFlight.delete(frame.req);
      clearTimeout(request.timer);
      request.resolve(frame);
    }
  }

  /**
   * Resolve the subscribe waiters whose last topics `done` are.
   * @param {string[]} done
   * @param {object} ack
   */
  _settleWaiters(done, ack) {
    this._waiters = this._waiters.filter((waiter) => {
      for (const topic of done) waiter.topics.delete(topic);
      if (waiter.topics.size > 0) return true;
      clearTimeout(waiter.timer);
      waiter.resolve(ack);
      return false;
    });
  }

  _onError(frame) {
    const error = new RealtimeError(
      String(frame.error || "error"),
      String(frame.message || "the server refused a request"),
      frame,
    );
    const topics = this._subscribing.get(frame.req);
    if (topics && TRANSIENT_CODES.has(error.code)) {
      // Not subscribed, for now: start over (with backoff), the cursors make it exact.
      this._subscribing.delete(frame.req);
      this.options.onError?.(error);
      this._ws?.close(CLOSE_RESUBSCRIBE, "resubscribe");
      return;
    }
    if (topics) {
      // The server refused these topics: stop asking for them on every reconnect.
      this._subscribing.delete(frame.req);
      for (const topic of topics) {
        this._cursors.delete(topic);
        this._acked.delete(topic);
      }
      const refused = this._waiters.filter((w) => topics.some((t) => w.topics.has(t)));
      this._waiters = this._waiters.filter((w) => !refused.includes(w));
      for (const waiter of refused) {
        clearTimeout(waiter.timer);
        waiter.reject(error);
      }
      if (refused.length === 0) this.options.onError?.(error);
      return;
    }
    const request = frame.req == null ? undefined : this._inFlight.get(frame.req);
    if (request) {
      this._inFlight.delete(frame.req);
      clearTimeout(request.timer);
      request.reject(error);
      return;
    }
    this.options.onError?.(error);
  }
}

/** @returns {string} 128 random bits as hex (crypto.randomUUID needs a secure context) */
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function closedError() {
  return new RealtimeError("closed", "the socket was closed");
}
