"""An ordinary Flask app that publishes from its own views: what a team's app looks like.

Served by the tests under gunicorn, with the gevent worker (the repository's config) and with a
plain sync worker, on the same Redis (``REALTIME_REDIS_URL``, read from the environment like
every ``REALTIME_*`` setting). ``orders`` is a public topic (``REALTIME_PUBLIC_TOPICS``), so the
page follows it with a bare ``EventSource``.
"""

from __future__ import annotations

import threading

from flask import Flask, request

from realtime import Realtime

app = Flask(__name__)
rt = Realtime(app)

PAGE = """<!doctype html>
<title>orders</title>
<script>
  window.received = [];
  const source = new EventSource("/events?topic=orders");
  source.addEventListener("order", (e) => window.received.push({id: e.lastEventId, data: e.data}));
  source.onopen = () => { window.ready = true; };
</script>
"""


@app.get("/orders/live")
def live() -> str:
    return PAGE


@app.post("/orders")
def create_order() -> tuple[dict[str, str], int]:
    """Publish from the view itself, inside its request."""
    event_id = rt.publish("orders", {"order": request.form["order"], "by": "view"}, type="order")
    return {"id": event_id}, 201


@app.post("/orders/from-a-thread")
def create_order_in_a_thread() -> tuple[dict[str, str | bool], int]:
    """Publish from a thread the view starts (no request or app context there), as work
    handed to a thread pool does; the answer says whether gevent patched ``threading``."""
    import gevent.monkey

    order = request.form["order"]
    done: dict[str, str] = {}

    def work() -> None:
        done["id"] = rt.publish("orders", {"order": order, "by": "thread"}, type="order")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    patched = gevent.monkey.is_module_patched("threading")
    return {"id": done["id"], "gevent": patched}, 201
