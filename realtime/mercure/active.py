"""Active subscriptions: what a connection announces of itself, across workers and hosts. Pure.

Each Mercure connection is one presence entry on :data:`~realtime.mercure.store.UPDATES_TOPIC`
(the presence every door already keeps in Redis, refreshed by its worker and expiring when the
worker dies), whose name is :func:`presence_name`: the hub-made subscriber id, and with the
subscriptions feature on, each of its selectors with the token's payload for it. The
subscriptions API reads those entries back (:func:`parse_presence_name`) from every worker of
every host; the subscription events (:func:`subscription_updates`) are private updates of type
``mercure`` published when a connection opens and when it ends.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from realtime.mercure.selectors import TOPIC, Selector
from realtime.mercure.subscriptions import ApiRequest, subscription_document, subscription_topic
from realtime.mercure.updates import HUB_EVENT_TYPE, Update


def new_subscriber() -> str:
    """A subscriber id made by the hub (draft 08: never taken from the client), random, so it
    discloses nothing of the token's ``sub``."""
    return f"urn:uuid:{uuid.uuid4()}"


@dataclass(frozen=True)
class ActiveSubscription:
    selector: Selector
    subscriber: str
    payload: Any


def presence_name(subscriber: str, subscriptions: list[ActiveSubscription] | None) -> str:
    """The name a connection has in presence: its subscriber id alone, or (the subscriptions
    feature on) a compact JSON of its subscriptions too."""
    if subscriptions is None:
        return subscriber
    return json.dumps(
        {
            "s": subscriber,
            "m": [[a.selector.kind, a.selector.text, a.payload] for a in subscriptions],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def parse_presence_name(name: str) -> list[ActiveSubscription]:
    """The subscriptions a presence name announces; none for a bare subscriber id (a
    connection made while the feature was off) or a name that is not one of ours."""
    if not name.startswith("{"):
        return []
    try:
        parsed = json.loads(name)
        return [
            ActiveSubscription(Selector(kind, text), parsed["s"], payload)
            for kind, text, payload in parsed["m"]
        ]
    except (ValueError, KeyError, TypeError):
        return []


def document(active: ActiveSubscription, *, active_now: bool, hub_path: str) -> dict[str, Any]:
    return subscription_document(
        active.selector,
        active.subscriber,
        active=active_now,
        payload=active.payload,
        hub_path=hub_path,
    )


def subscription_updates(
    subscriptions: list[ActiveSubscription], *, active: bool, hub_path: str
) -> list[Update]:
    """The private ``mercure`` updates announcing that ``subscriptions`` began or ended, one per
    selector, on each one's own topic under the hub's path (draft 08, "Subscription Events")."""
    return [
        Update(
            topics=(subscription_topic(a.selector, a.subscriber, hub_path),),
            data=json.dumps(
                document(a, active_now=active, hub_path=hub_path),
                ensure_ascii=False,
                separators=(",", ":"),
            ),
            private=True,
            id=None,
            type=HUB_EVENT_TYPE,
            retry=None,
        )
        for a in subscriptions
    ]


def select(subscriptions: list[ActiveSubscription], api: ApiRequest) -> list[ActiveSubscription]:
    """The subscriptions an API path asks for: all, those of one selector, or one."""
    chosen = []
    for a in subscriptions:
        if api.selector is not None and a.selector.text != api.selector:
            continue
        if api.match_type is not None and a.selector.kind != api.match_type:
            continue
        if api.match_type is None and api.selector is not None and a.selector.kind != TOPIC:
            continue
        if api.subscriber is not None and a.subscriber != api.subscriber:
            continue
        chosen.append(a)
    return chosen
