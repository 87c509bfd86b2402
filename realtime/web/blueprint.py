"""The blueprint every HTTP front door registers its routes on.

A module of its own so each door (events, publish, presence, health, pages) can decorate it
without importing the others, and :mod:`realtime.web.routes` can register it once.
"""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("realtime", __name__)
