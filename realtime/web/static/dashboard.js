// The dashboard's script (realtime/static/index.html): a file, not inline, so the page's
// Content-Security-Policy allows no inline script at all. It is served from <base>/static/, so
// the server's base (a prefix too) is found from this script's own address.
import { subscribe, RealtimeSocket } from "./realtime.js";

const base = new URL("..", import.meta.url);

const params = new URLSearchParams(location.search);
const topics = params.getAll("topic").filter(Boolean);
const token = params.get("token") || undefined;
const useWs = params.get("ws") === "1";
// EventSource hears only the event types it listens for (it has no wildcard): "message", those
// named by ?type=, and those this page's form publishes.
const types = new Set(["message", ...params.getAll("type").filter(Boolean)]);
if (params.has("token")) {
  // Keep the token out of the address bar (and this page's back/forward entry) once read. It
  // lives in this script's variables only: never in the page's text, never logged.
  params.delete("token");
  const query = params.toString();
  history.replaceState(null, "", location.pathname + (query ? `?${query}` : ""));
}

/** What the page received, for tests and for the curious: ids in arrival order. */
const seen = { sse: [], ws: [], resets: [], states: [], errors: [], published: [] };
window.realtimeTest = seen;

const $ = (id) => document.getElementById(id);
const list = $("events");
const MAX_SHOWN = 200;
$("origin").textContent = base.href;
$("change").href = base.href;

function showState(which, state) {
  seen.states.push(`${which}:${state}`);
  const cell = $(`${which}-state`);
  cell.textContent = state;
  cell.className = `state-${state}`;
  if (which === "sse" && state === "open") showProblem("");
}

/** @param {string} className @param {string} text */
function span(className, text) {
  return Object.assign(document.createElement("span"), { className, textContent: text });
}

function showEvent(via, evt) {
  seen[via].push(evt.id);
  $(`count-${via}`).textContent = String(seen[via].length);
  $("last-id").textContent = evt.id;
  $("empty").hidden = true;
  const item = document.createElement("li");
  item.dataset.id = evt.id;
  item.dataset.via = via;
  const meta = document.createElement("div");
  meta.className = "meta";
  const time = Object.assign(document.createElement("time"), {
    textContent: new Date().toLocaleTimeString(),
  });
  meta.append(
    span(`via via-${via}`, via),
    span("topic", evt.topic),
    span("type", evt.type),
    span("id", evt.id),
    time,
  );
  const data = Object.assign(document.createElement("pre"), { textContent: evt.data });
  item.append(meta, data);
  list.prepend(item);
  while (list.children.length > MAX_SHOWN) list.lastElementChild.remove();
}

function showReset(via, info) {
  seen.resets.push({ via, ...info });
  $("count-resets").textContent = String(seen.resets.length);
  const banner = $("reset");
  banner.hidden = false;
  banner.textContent =
    `${via}: history could not be resumed (${info.reason}); now at ${info.last_id}. ` +
    "Events before this may be missing: reload your state.";
}

/** @param {string} text  empty hides the line */
function showProblem(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text;
}

/** The server's JSON error as one line: `(403 forbidden_topic): Your token does not allow …`. */
async function refusal(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page, say): the status says enough
  }
  const code = body && typeof body.error === "string" ? ` ${body.error}` : "";
  const message = body && typeof body.message === "string" ? body.message : response.statusText;
  return `(${response.status}${code}): ${message}`;
}

// EventSource never says why it failed. When it gives up (an HTTP error: it retries network
// errors by itself), ask the same URL with fetch, at most every 5 s, and show the server's
// reason: a newcomer with a wrong token or topic sees "(403 forbidden_topic): …" instead of
// "connecting" for ever.
let lastDiagnosis = 0;
async function diagnose() {
  if (Date.now() - lastDiagnosis < 5000) return;
  lastDiagnosis = Date.now();
  const url = new URL("events", base);
  for (const topic of topics) url.searchParams.append("topic", topic);
  const controller = new AbortController();
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
    if (!response.ok) showProblem(`The server refused the stream ${await refusal(response)}`);
  } catch {
    showProblem("The server cannot be reached; retrying.");
  } finally {
    controller.abort(); // a 200 is a live stream: this check must not keep it
  }
}

const onError = (error) => seen.errors.push(String(error?.code || error?.type || error));
/** @type {ReturnType<typeof subscribe>} the SSE subscription now in use */
let sse;
let generation = 0;

/** Follow the topics over SSE with the current types, after `lastId` (null: from now). */
function follow(lastId) {
  const mine = ++generation;
  // Callbacks of a subscription this page has replaced are ignored.
  const current = (handler) => (value) => {
    if (mine === generation) handler(value);
  };
  $("types").textContent = [...types].join(", ");
  sse = subscribe(base.href, topics, {
    onEvent: current((evt) => showEvent("sse", evt)),
    onReset: current((info) => showReset("sse", info)),
    onOverflow: current(() => seen.errors.push("sse:overflow")),
    onStateChange: current((state) => showState("sse", state)),
    onError: current((error) => {
      onError(error);
      if (error?.target?.readyState === EventSource.CLOSED) diagnose();
    }),
  }, { token, types: [...types], lastId: lastId || undefined });
  window.realtimeSse = sse;
}

/** Types a publisher may use (README, "Publishing"); the server refuses others with a reason. */
const PUBLISHABLE_TYPE = /^[A-Za-z0-9_.:-]{1,64}$/;
const RESERVED_TYPES = new Set(["reset", "overflow", "shutdown", "auth_expired"]);

/**
 * Make sure the SSE stream hears events of `type`: if it does not yet, open a new stream that
 * does, resuming after the last id seen (exact; before any event, from now: as realtime.js's
 * own reconnects), and wait until it is open so that the event about to be published reaches it.
 */
async function listenFor(type) {
  if (types.has(type) || !PUBLISHABLE_TYPE.test(type) || RESERVED_TYPES.has(type)) return;
  types.add(type);
  const old = sse;
  follow(old.lastId);
  old.close();
  for (let waited = 0; sse.state !== "open" && waited < 5000; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function publishFromForm(event) {
  event.preventDefault();
  const result = $("publish-result");
  const button = $("publish-button");
  const body = { topic: $("publish-topic").value.trim(), data: $("publish-data").value };
  const type = $("publish-type").value.trim();
  if (type) body.type = type;
  button.disabled = true;
  result.className = "";
  result.textContent = "publishing…";
  try {
    if (type) await listenFor(type);
    const response = await fetch(new URL("publish", base), {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    if (response.ok) {
      const { id } = await response.json();
      seen.published.push(id);
      result.className = "ok";
      result.textContent = `published ${id}`;
    } else {
      result.className = "error";
      result.textContent = `refused ${await refusal(response)}`;
    }
  } catch {
    result.className = "error";
    result.textContent =
      "No answer from the server: the event may or may not have been published.";
  } finally {
    button.disabled = false;
  }
}

function startWithForm(event) {
  event.preventDefault();
  const query = new URLSearchParams();
  for (const name of ["topic", "type"]) {
    for (const word of $(`start-${name}s`).value.split(/[\s,]+/)) {
      if (word) query.append(name, word);
    }
  }
  const typed = $("start-token").value.trim();
  if (typed) query.set("token", typed); // read and removed from the address bar on load
  if ($("start-ws").checked) query.set("ws", "1");
  location.assign(`${location.pathname}?${query}`);
}

if (topics.length === 0) {
  $("start").hidden = false;
  $("start-form").addEventListener("submit", startWithForm);
} else {
  $("dashboard").hidden = false;
  $("topics").textContent = topics.join(", ");
  const publishUrl = new URL("publish", base).href;
  $("curl-example").textContent =
    `curl -d topic=${topics[0]} -d data=hello -H "Authorization: Bearer $TOKEN" ${publishUrl}`;
  if (token) {
    $("publish").hidden = false;
    $("with-form").hidden = false;
    $("publish-topic").value = topics[0];
    $("topic-options").append(
      ...topics.map((topic) => Object.assign(document.createElement("option"), { value: topic })),
    );
    $("publish-form").addEventListener("submit", publishFromForm);
  }

  follow(null);
  if (useWs) {
    window.realtimeWs = new RealtimeSocket(base.href, {
      token,
      topics,
      onEvent: (evt) => showEvent("ws", evt),
      onReset: (info) => showReset("ws", info),
      onStateChange: (state) => showState("ws", state),
      onError,
    });
  }
}
