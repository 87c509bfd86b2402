"""Every front door, registered on an app: the one import of the view modules.

Importing a door module attaches its routes to the blueprints of
:mod:`realtime.web.blueprint` (and :data:`~realtime.web.ws.ws_blueprint`); this module gives
each blueprint the JSON error contract and the body limit, once, and :func:`register` mounts
them on an app.
"""

from __future__ import annotations

from flask import Flask

from realtime.web import events, health, pages, presence, publish  # noqa: F401 (their routes)
from realtime.web.blueprint import blueprint, dashboard
from realtime.web.request import limit_body
from realtime.web.responses import register_error_handlers
from realtime.web.ws import ws_blueprint

BLUEPRINTS = (blueprint, ws_blueprint, dashboard)
for _scope in BLUEPRINTS:
    register_error_handlers(_scope)
blueprint.before_request(limit_body)


def register(app: Flask, *, url_prefix: str | None, standalone: bool) -> frozenset[str]:
    """Mount realtime on ``app`` under ``url_prefix``; the paths of its routes.

    ``standalone`` (the service, ``create_app``) also answers every other path with the JSON
    contract. The dashboard is mounted at the prefix, or at ``/`` only in the service: in an
    app embedding realtime without a prefix, ``/`` is the host's.
    """
    app.register_blueprint(blueprint, url_prefix=url_prefix)
    app.register_blueprint(ws_blueprint, url_prefix=url_prefix)
    if standalone or url_prefix:
        app.register_blueprint(dashboard, url_prefix=url_prefix)
    if standalone:
        register_error_handlers(app)
    names = {bp.name for bp in BLUEPRINTS}
    return frozenset(
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.partition(".")[0] in names and not rule.arguments
    )
