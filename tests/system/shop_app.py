"""A team's existing Flask app that embeds realtime under ``/rt``: its own home page, 404 page,
``MAX_CONTENT_LENGTH`` and static files, and a page of its own built on ``realtime.js``.

Served by ``test_embedding_gunicorn.py`` and ``test_token_refresh.py`` under the team's own
gunicorn config; settings come from the environment (``REALTIME_*``), the token for the live page
from ``SHOP_TOKEN``. ``/token`` mints short-lived tokens (``SHOP_TOKEN_TTL_S``) for the page that
renews them, as a session-backed endpoint of a real app would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask, request

from realtime import Realtime
from realtime.core.auth import mint_token

STATIC = Path(os.environ.get("SHOP_STATIC", Path(__file__).parent))

app = Flask(__name__, static_folder=str(STATIC))
app.config["MAX_CONTENT_LENGTH"] = 1000
rt = Realtime(app, url_prefix="/rt")

LIVE = """<!doctype html>
<title>shop: live</title>
<script type="module">
  import { subscribe } from "/rt/static/realtime.js";
  window.received = [];
  window.states = [];
  subscribe("/rt/", ["shop"], {
    onEvent: (e) => window.received.push({id: e.id, data: e.data}),
    onStateChange: (s) => window.states.push(s),
  }, {token: TOKEN});
</script>
"""


REFRESHING = """<!doctype html>
<title>shop: live, with tokens that end</title>
<script type="module">
  import { subscribe, RealtimeSocket } from "/rt/static/realtime.js";
  window.sse = [];
  window.ws = [];
  window.wsStates = [];
  window.tokens = 0;
  window.expired = 0;
  const getToken = async () => {
    window.tokens += 1;
    return (await fetch("/token")).text();
  };
  subscribe("/rt/", ["shop"], {
    onEvent: (e) => window.sse.push(e.id),
    onAuthExpired: () => { window.expired += 1; },
  }, {getToken});
  window.socket = new RealtimeSocket("/rt/", {
    topics: ["shop"],
    getToken,
    onEvent: (e) => window.ws.push(e.id),
    onStateChange: (s) => window.wsStates.push(s),
  });
</script>
"""


@app.get("/refreshing")
def refreshing() -> str:
    return REFRESHING


@app.get("/token")
def token() -> str:
    """A fresh token for the page's topic: what a session-backed endpoint hands its pages."""
    return mint_token(
        secret=os.environ["REALTIME_JWT_SECRET"],
        subject="shop-page",
        subscribe=["shop"],
        publish=[],
        ttl_s=int(os.environ.get("SHOP_TOKEN_TTL_S", "3600")),
    )


@app.get("/")
def home() -> str:
    return "the shop's home"


@app.get("/live")
def live() -> str:
    return LIVE.replace("TOKEN", json.dumps(os.environ.get("SHOP_TOKEN", "")))


@app.post("/upload")
def upload() -> str:
    return f"{len(request.get_data())} bytes"


@app.post("/orders")
def order() -> tuple[dict[str, str], int]:
    return {"id": rt.publish("shop", request.form["order"])}, 201


@app.errorhandler(404)
def not_found(_err: Exception) -> tuple[str, int]:
    return "<h1>The shop has no such page</h1>", 404
