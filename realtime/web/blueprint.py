"""The blueprints every HTTP front door registers its routes on.

A module of its own so each door (events, publish, presence, health, pages) can decorate them
without importing the others, and :mod:`realtime.web.routes` can register them once.

:data:`blueprint` carries the API and ``realtime.js`` (its static folder, served at
``<prefix>/static/``); :data:`dashboard` only the demo page at ``<prefix>/``, which an app
embedding realtime without a prefix does not get: it would take the host's own ``/``.
"""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("realtime", __name__, static_folder="static", static_url_path="/static")
dashboard = Blueprint("realtime_dashboard", __name__)
