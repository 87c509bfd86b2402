"""Keep tokens out of log lines.

Browsers' ``EventSource`` and ``WebSocket`` cannot set headers, so tokens arrive as
``?access_token=``; any log line that contains a URL must pass through :func:`redact_url` first.

A parameter is matched by its *decoded* name, the one Flask reads: werkzeug percent-decodes
names, so ``?access%5Ftoken=`` and ``?%61ccess_token=`` are the ``access_token`` a view uses and
must be redacted like it. Names are compared case-insensitively (safer than the app, which is
not). A ``Referer`` is the URL of the page that made the request, whose query may hold anything
(the demo page's own ``?token=``): :func:`redact_referer` logs it without its query at all, as
the shipped ``nginx.conf`` does.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

# `authorization` is the Mercure hub's (draft 07: `?authorization=<token>`).
TOKEN_PARAMETERS = frozenset({"access_token", "token", "jwt", "authorization"})
REDACTED = "[redacted]"

# A name=value pair of a query string: after its start, "?", "&" or ";".
_PARAMETER = re.compile(r"(?P<head>(?:^|[?&;])(?P<name>[^=&;#?\s\"]*)=)[^&;#\s\"]*")
_QUERY_OR_FRAGMENT = re.compile(r"[?#].*", re.S)


def _is_token_name(name: str) -> bool:
    return unquote_plus(name).lower() in TOKEN_PARAMETERS


def redact_url(text: str) -> str:
    """``text`` with the value of every token-bearing query parameter replaced."""
    return _PARAMETER.sub(
        lambda m: m.group("head") + REDACTED if _is_token_name(m.group("name")) else m.group(0),
        text,
    )


def redact_referer(text: str) -> str:
    """A ``Referer`` without its query string and fragment (the page, not what it was given)."""
    return _QUERY_OR_FRAGMENT.sub(f"?{REDACTED}", text, count=1)
