"""Turn a publish request body into validated :class:`~realtime.core.events.Draft` events.

Pure: given the media type and the body (bytes, or the decoded form fields), return drafts or
raise a :class:`~realtime.core.errors.ClientError`. Every check runs before anything is stored, so a
refused request writes nothing.

Intentional choices:
- JSON ``data`` may be any JSON value: a string is delivered as its characters, anything else as
  its compact JSON text (DESIGN.md).
- ``data`` containing a carriage return is refused (``invalid_data``): SSE has no way to carry a
  CR (a WHATWG parser ends the line there), and we deliver data exactly or not at all.
- Unknown JSON fields are refused, so a typo such as ``"tpoic"`` is an error, not a silent default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from realtime.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from realtime.core.events import Draft
from realtime.core.topics import validate_topic, validate_type

JSON_TYPES = frozenset({"application/json"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
EVENT_FIELDS = frozenset({"topic", "data", "type"})
MAX_IDEMPOTENCY_KEY = 255


def data_text(value: Any) -> str:
    """The delivered text of a JSON ``data`` value.

    ``json.loads`` reads a number too large for a float (``1e400``) as infinity, which has no
    JSON text: that is the publisher's error, not ours.
    """
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise BadRequest(
            "data holds a number too large to represent exactly; send it as a string.",
            code="invalid_data",
        ) from None
    except RecursionError:
        raise BadRequest("data is nested too deeply.", code="invalid_data") from None
    except TypeError as exc:  # only from Python callers: JSON bodies hold only JSON values
        raise BadRequest(f"data is not a JSON value: {exc}.", code="invalid_data") from None


def validate_data(text: str, max_payload: int, where: str = "data") -> str:
    if "\r" in text:
        raise BadRequest(
            f"{where} contains a carriage return, which SSE cannot deliver unchanged; "
            "use \\n line breaks or send the data as a JSON value.",
            code="invalid_data",
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(f"{where} is not valid Unicode text.", code="invalid_data") from None
    if size > max_payload:
        raise PayloadTooLarge(
            f"{where} is {size} bytes; the limit is {max_payload} (REALTIME_MAX_PAYLOAD)."
        )
    return text


def draft(fields: Mapping[str, Any], max_payload: int, where: str = "event") -> Draft:
    """One event from a JSON object or form fields."""
    unknown = sorted(set(fields) - EVENT_FIELDS)
    if unknown:
        raise BadRequest(
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; "
            "an event has topic, data and type.",
            code="unknown_field",
        )
    topic = validate_topic(fields.get("topic"))
    event_type = validate_type(fields.get("type"))
    if "data" not in fields:
        raise BadRequest(f"{where} has no data.", code="missing_data")
    text = validate_data(data_text(fields["data"]), max_payload, f"{where}'s data")
    return Draft(topic=topic, type=event_type, data=text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes, *, max_payload: int, max_batch: int) -> tuple[list[Draft], bool]:
    """Drafts from a JSON body and whether it was a batch."""
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}.", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("The body's JSON is nested too deeply.", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    if "events" in doc:
        if set(doc) != {"events"}:
            raise BadRequest(
                'A batch is {"events": [...]} with nothing beside it.', code="invalid_batch"
            )
        return drafts_of_batch(doc["events"], max_payload=max_payload, max_batch=max_batch), True
    return [draft(doc, max_payload)], False


def drafts_of_batch(events: object, *, max_payload: int, max_batch: int) -> list[Draft]:
    """Drafts from a batch's ``events``: a JSON body's list, or the events given to
    ``publish_many`` in Python, checked alike."""
    if not isinstance(events, list | tuple) or not events:
        raise BadRequest("events must be a non-empty list.", code="invalid_batch")
    if len(events) > max_batch:
        raise BadRequest(
            f"A batch holds at most {max_batch} events (REALTIME_MAX_BATCH), not {len(events)}.",
            code="batch_too_large",
        )
    drafts = []
    for index, item in enumerate(events):
        if not isinstance(item, Mapping):
            raise BadRequest(f"events[{index}] must be an object.", code="invalid_batch")
        drafts.append(draft(item, max_payload, f"events[{index}]"))
    return drafts


def parse_form(fields: Mapping[str, list[str]], *, max_payload: int) -> list[Draft]:
    """One draft from form fields (``curl -d topic=demo -d data=hello``)."""
    single: dict[str, str] = {}
    for name, values in fields.items():
        if len(values) != 1:
            raise BadRequest(f"Form field {name!r} is given {len(values)} times.", code="bad_form")
        single[name] = values[0]
    return [draft(single, max_payload)]


def parse_publish(
    mimetype: str,
    *,
    body: bytes | None = None,
    form: Mapping[str, list[str]] | None = None,
    max_payload: int,
    max_batch: int,
) -> tuple[list[Draft], bool]:
    if mimetype in JSON_TYPES:
        return parse_json(body or b"", max_payload=max_payload, max_batch=max_batch)
    if mimetype in FORM_TYPES:
        return parse_form(form or {}, max_payload=max_payload), False
    shown = mimetype or "none"
    raise UnsupportedMediaType(
        f"Content-Type {shown!r} is not accepted; send application/json or a form "
        "(application/x-www-form-urlencoded, multipart/form-data).",
    )


def validate_idempotency_key(value: object) -> str | None:
    """The key, or ``None`` for none. Takes ``object`` because a WebSocket ``publish`` message's
    ``idempotency_key`` is any JSON value, where a header is always a string."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY
        or not value.isascii()
        or not value.isprintable()
    ):
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters.",
            code="invalid_idempotency_key",
        )
    return value
