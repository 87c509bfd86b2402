"""``GET /presence``: who follows a topic, across every worker and host."""

from __future__ import annotations

from flask import Response, jsonify, request

from realtime.core.topics import validate_topic
from realtime.web.blueprint import blueprint
from realtime.web.request import request_grant, rt
from realtime.web.service import presence_answer


@blueprint.get("/presence")
def presence() -> Response:
    """Needs the right to subscribe to the topic, and a token granting it to see who."""
    topic = validate_topic(request.args.get("topic"))
    return jsonify(presence_answer(rt(), topic, request_grant()))
