"""Private updates never leak: a property test over selectors, grants and topics.

:meth:`realtime.mercure.stream.Reader.wants` is the one test every update passes before it is
sent, replayed or live. Here it meets random subscriptions, random tokens (both drafts' shapes)
and random updates over a small universe of topics, and is checked against an oracle written
independently of the selector code: segment by segment, with what each selector kind means.
"""

from __future__ import annotations

from typing import Any

import jwt
from conftest import SECRET
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.core.auth import TokenVerifier
from realtime.core.events import StoredEvent
from realtime.mercure.selectors import SelectorSet, compile_selector
from realtime.mercure.store import UPDATES_TOPIC, to_draft
from realtime.mercure.stream import Reader
from realtime.mercure.tokens import DETAIL_TYPE, verify
from realtime.mercure.updates import Update

BASE = "https://hub.example/.well-known/mercure"
ROOT = "https://example.com"
SECTIONS = ("books", "users", "news")
ITEMS = ("1", "2", "3")

#: Topics: ``ROOT/<section>/<item>``, and a few of two more segments, which no one-segment
#: variable may match.
topics = st.one_of(
    st.tuples(st.sampled_from(SECTIONS), st.sampled_from(ITEMS)).map(
        lambda p: f"{ROOT}/{p[0]}/{p[1]}"
    ),
    st.tuples(st.sampled_from(SECTIONS), st.sampled_from(ITEMS)).map(
        lambda p: f"{ROOT}/{p[0]}/{p[1]}/more"
    ),
)

#: A selector as (parameter, text, what it means): ``*``; an exact topic; a section with a
#: variable item, as a URI Template (draft 07) or a URL Pattern (draft 08).
Spec = tuple[str, str, tuple[str, ...]]


def _exact(topic: str) -> Spec:
    return ("match", topic, ("exact", topic))


def _section(kind: str, section: str) -> Spec:
    if kind == "topic":
        return ("topic", f"{ROOT}/{section}/{{id}}", ("section", section))
    return ("match_urlpattern", f"{ROOT}/{section}/:id", ("section", section))


specs = st.one_of(
    st.just(("topic", "*", ("all",))),
    topics.map(_exact),
    st.tuples(st.sampled_from(["topic", "match_urlpattern"]), st.sampled_from(SECTIONS)).map(
        lambda p: _section(*p)
    ),
)


def oracle(meaning: tuple[str, ...], topic: str) -> bool:
    """What a selector means, without the selector code: all, one topic, or one segment of a
    section."""
    if meaning[0] == "all":
        return True
    if meaning[0] == "exact":
        return topic == meaning[1]
    parts = topic.removeprefix(ROOT + "/").split("/")
    return len(parts) == 2 and parts[0] == meaning[1] and parts[1] != ""


def selector_set(chosen: list[Spec]) -> SelectorSet:
    return SelectorSet(tuple(compile_selector(p, text, base=BASE) for p, text, _ in chosen), BASE)


def token(shape: str, grants: list[Spec]) -> str:
    """A token granting subscribe on ``grants``, in draft 07's or draft 08's shape."""
    if shape == "07":
        return jwt.encode({"mercure": {"subscribe": [t for _, t, _ in grants]}}, SECRET, "HS256")
    matchers = [
        {"match": text, "match_type": "urlpattern" if param == "match_urlpattern" else "exact"}
        for param, text, _ in grants
        if param != "topic" or text == "*"
    ]
    details = (
        [{"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": matchers}] if matchers else []
    )
    body: dict[str, Any] = {"authorization_details": details, "exp": 4_000_000_000}
    return jwt.encode(body, SECRET, "HS256", headers={"typ": "at+jwt"})


def draft08_grants(grants: list[Spec]) -> list[Spec]:
    """The grants a draft 08 token can express (it has no URI Templates; ``*`` is exact ``*``)."""
    return [g for g in grants if g[0] != "topic" or g[1] == "*"]


def draft07_grants(grants: list[Spec]) -> list[Spec]:
    """The grants a draft 07 claim expresses: its selectors are topics or URI Templates, so a
    URL Pattern's text there is an exact topic, one no topic of this universe equals."""
    return [g for g in grants if g[0] != "match_urlpattern"]


VERIFIER = TokenVerifier(secret=SECRET)


@settings(max_examples=400, deadline=None)
@given(
    subscription=st.lists(specs, min_size=1, max_size=4),
    grants=st.lists(specs, max_size=3),
    shape=st.sampled_from(["07", "08"]),
    update_topics=st.lists(topics, min_size=1, max_size=3, unique=True),
    private=st.booleans(),
)
def test_an_update_is_sent_only_when_selected_and_if_private_granted(
    subscription: list[Spec],
    grants: list[Spec],
    shape: str,
    update_topics: list[str],
    private: bool,
) -> None:
    grant = verify(VERIFIER, token(shape, grants), base=BASE)
    reader = Reader(selector_set(subscription), grant)
    draft = to_draft(Update(tuple(update_topics), "d", private, None, None, None))
    event = StoredEvent(
        epoch="e",
        seq=1,
        topic=UPDATES_TOPIC,
        type=draft.type,
        data=draft.data,
        attrs=draft.attrs,
        alias=draft.alias,
    )
    effective = draft08_grants(grants) if shape == "08" else draft07_grants(grants)
    selected = any(oracle(m, t) for _, _, m in subscription for t in update_topics)
    readable = any(oracle(m, t) for _, _, m in effective for t in update_topics)
    assert reader.wants(event) == (selected and (not private or readable))


def test_an_event_of_another_door_is_never_a_mercure_update() -> None:
    reader = Reader(
        selector_set([("topic", "*", ("all",))]), verify(VERIFIER, token("07", []), base=BASE)
    )
    assert not reader.wants(StoredEvent(epoch="e", seq=1, topic="news", type="message", data="x"))
