"""The documents of Mercure's active-subscriptions feature, in the shape each draft defines. Pure.

A subscription is announced (and listed) in the draft its client speaks, known from the
parameter that made it: ``topic=`` is draft 07, ``match`` / ``match_urlpattern`` draft 08.

- Draft 07: topic ``<hub>/subscriptions/{topic}/{subscriber}``, a JSON-LD document
  (``@context`` ``https://mercure.rocks/``, ``type`` ``Subscription``, ``topic``), collections of
  ``type`` ``Subscriptions`` carrying ``lastEventID``.
- Draft 08: topic ``<hub>/subscriptions/{match_type}/{match}/{subscriber}``, a JSON document
  (``type`` ``subscription``, ``match_type``, ``match``), collections of ``type``
  ``subscriptions`` (the cursor travels in the ``Link`` header instead).

Variables are percent-encoded exactly once, as wholes (RFC 6570 simple expansion: everything
but unreserved characters). Subscription events are private updates of type ``mercure``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from realtime.mercure.selectors import EXACT, TOPIC, URLPATTERN, Selector

JSON_LD_CONTEXT = "https://mercure.rocks/"
DRAFT_07 = "07"
DRAFT_08 = "08"
MATCH_TYPES = (EXACT, URLPATTERN)


def draft_of(selector: Selector) -> str:
    """The draft a subscription's client speaks, by the parameter that made it."""
    return DRAFT_07 if selector.kind == TOPIC else DRAFT_08


def _expand(value: str) -> str:
    return quote(value, safe="")


def subscription_topic(selector: Selector, subscriber: str, hub_path: str) -> str:
    """The topic (and ``id``) of a subscription's events: a path under the hub's own."""
    base = hub_path.rstrip("/") + "/subscriptions/"
    if draft_of(selector) == DRAFT_07:
        return base + f"{_expand(selector.text)}/{_expand(subscriber)}"
    return base + f"{selector.kind}/{_expand(selector.text)}/{_expand(subscriber)}"


def subscription_document(
    selector: Selector, subscriber: str, *, active: bool, payload: Any, hub_path: str
) -> dict[str, Any]:
    """The document of one subscription: the content of its events and its API resource."""
    document: dict[str, Any] = {"id": subscription_topic(selector, subscriber, hub_path)}
    if draft_of(selector) == DRAFT_07:
        document = {"@context": JSON_LD_CONTEXT, **document, "type": "Subscription"}
        document["topic"] = selector.text
    else:
        document.update(type="subscription", match_type=selector.kind, match=selector.text)
    document.update(subscriber=subscriber, active=active)
    if payload is not None:
        document["payload"] = payload
    return document


def collection_document(
    path: str, documents: list[dict[str, Any]], *, draft: str, last_event_id: str
) -> dict[str, Any]:
    """A collection of subscription documents at ``path``; draft 07 carries the cursor in the
    body (``lastEventID``), draft 08 in the ``Link`` header only."""
    if draft == DRAFT_07:
        members = [{k: v for k, v in d.items() if k != "@context"} for d in documents]
        return {
            "@context": JSON_LD_CONTEXT,
            "id": path,
            "type": "Subscriptions",
            "lastEventID": last_event_id,
            "subscriptions": members,
        }
    return {"id": path, "type": "subscriptions", "subscriptions": documents}


@dataclass(frozen=True)
class ApiRequest:
    """What a subscriptions API path asks for: all subscriptions, those of one selector, or
    one subscription; ``match_type`` is ``None`` for draft 07's ``{topic}`` form, and ``draft``
    ``None`` for the root collection, which both drafts share (the door answers in the shape
    the client accepts: ``application/ld+json`` is draft 07's)."""

    draft: str | None
    match_type: str | None = None
    selector: str | None = None
    subscriber: str | None = None


def parse_api_path(path: str, hub_path: str) -> ApiRequest | None:
    """Read a request path under ``<hub>/subscriptions``; ``None`` when it is not one.

    The two drafts' two-segment forms look alike (``{topic}/{subscriber}`` and
    ``{match_type}/{match}``): a first segment that is a matcher type name (``exact``,
    ``urlpattern``) is read as draft 08, anything else as a draft 07 selector. The path is the
    raw one (still percent-encoded), so an encoded ``/`` inside a selector stays inside it."""
    base = hub_path.rstrip("/") + "/subscriptions"
    if path.rstrip("/") == base:
        return ApiRequest(None)
    if not path.startswith(base + "/"):
        return None
    segments = [unquote(s) for s in path[len(base) + 1 :].split("/")]
    if any(not segment for segment in segments):
        return None
    if segments[0] in MATCH_TYPES and 2 <= len(segments) <= 3:
        subscriber = segments[2] if len(segments) == 3 else None
        return ApiRequest(DRAFT_08, segments[0], segments[1], subscriber)
    if len(segments) <= 2:
        return ApiRequest(DRAFT_07, None, segments[0], segments[1] if len(segments) == 2 else None)
    return None
