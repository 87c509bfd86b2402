"""The character rule every Mercure identifier shares (draft 08, "Terminology").

Topics, matchers, update ids and types travel in URLs, form fields and the ``Last-Event-ID``
header, and are shown to people: none may hold a C0 or C1 control character, DEL, or a Unicode
format character (general category ``Cf``: bidirectional and zero-width controls), which are
invisible and let one identifier pass for another.
"""

from __future__ import annotations

import unicodedata

from realtime.core.errors import BadRequest


def forbidden_character(value: str) -> str | None:
    """The first character of ``value`` the rule forbids, as ``U+XXXX``, or ``None``."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf"):  # Cc: C0, DEL and C1
            return f"U+{ord(char):04X}"
    return None


def check_characters(what: str, value: str, code: str) -> None:
    """400 ``code`` naming ``what`` when ``value`` holds a forbidden character."""
    found = forbidden_character(value)
    if found is not None:
        raise BadRequest(f"{what} holds the control or format character {found}.", code=code)
