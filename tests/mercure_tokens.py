"""Mercure tokens for the door's tests, in both drafts' shapes, signed with the tests' key."""

from __future__ import annotations

import time
from typing import Any

import jwt
from conftest import SECRET

from realtime.mercure.tokens import DETAIL_TYPE


def draft07(
    publish: list[str] | None = None,
    subscribe: list[str] | None = None,
    *,
    payload: Any = None,
    exp: float | None = None,
    **claims: Any,
) -> str:
    """A draft 07 JWT: ``{"mercure": {"publish": [...], "subscribe": [...]}}``."""
    mercure: dict[str, Any] = {}
    if publish is not None:
        mercure["publish"] = publish
    if subscribe is not None:
        mercure["subscribe"] = subscribe
    if payload is not None:
        mercure["payload"] = payload
    body: dict[str, Any] = {"mercure": mercure, **claims}
    if exp is not None:
        body["exp"] = int(exp)
    return jwt.encode(body, SECRET, algorithm="HS256")


def draft08(
    publish: list[dict[str, str]] | None = None,
    subscribe: list[dict[str, str]] | None = None,
    *,
    ttl_s: float = 3600,
    **claims: Any,
) -> str:
    """A draft 08 access token (``typ: at+jwt``) with Mercure authorization details."""
    details = []
    if publish is not None:
        details.append({"type": DETAIL_TYPE, "actions": ["publish"], "topics": publish})
    if subscribe is not None:
        details.append({"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": subscribe})
    return access_token(details, exp=int(time.time() + ttl_s), **claims)


def access_token(details: list[dict[str, Any]], *, exp: int | None, **claims: Any) -> str:
    """A draft 08 access token holding ``details`` as they are (malformed ones included);
    ``exp=None`` leaves ``exp`` out."""
    body: dict[str, Any] = {"authorization_details": details, **claims}
    if exp is not None:
        body["exp"] = exp
    return jwt.encode(body, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PUBLISHER = draft07(publish=["*"])
