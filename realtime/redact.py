"""Keep tokens out of log lines.

Browsers' ``EventSource`` and ``WebSocket`` cannot set headers, so tokens arrive as
``?access_token=``; any log line that contains a URL must pass through :func:`redact_url` first.
"""

from __future__ import annotations

import re

_TOKEN_PARAM = re.compile(r"(?i)((?:^|[?&;])(?:access_token|token|jwt)=)[^&;#\s\"]*")
REDACTED = "[redacted]"


def redact_url(text: str) -> str:
    """``text`` with the value of every token-bearing query parameter replaced."""
    return _TOKEN_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
