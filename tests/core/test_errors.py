"""One registry of error codes (``realtime.core.errors``), and everything that names a code is
held to it: every raise site, the README's "Errors" table, the OpenAPI document and the
JavaScript client."""

from __future__ import annotations

import ast
import re
from typing import TypeVar

import pytest
from conftest import ROOT

from realtime import __version__
from realtime.core import errors
from realtime.core.errors import ERROR_STATUS, HTTP_ERRORS, RETRYABLE, WEBSOCKET_ERRORS
from realtime.web.openapi import ERRORS

PACKAGE = ROOT / "realtime"
REALTIME_JS = (PACKAGE / "web" / "static" / "realtime.js").read_text()


def client_error_classes() -> dict[str, type[errors.ClientError]]:
    """Every ClientError class by name, the WebSocket message error included."""
    from realtime.core.messages import MessageError

    found = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.ClientError)
    }
    found[MessageError.__name__] = MessageError
    return found


T = TypeVar("T")


def literal(node: ast.expr | None, kind: type[T]) -> T | None:
    """The value of a literal argument, which must be a ``kind``; ``None`` if absent or computed."""
    if not isinstance(node, ast.Constant):
        return None
    assert isinstance(node.value, kind), f"line {node.lineno}: {node.value!r} is no {kind.__name__}"
    return node.value


def raise_sites() -> list[tuple[str, str, str | None, int | None]]:
    """(where, class, code or None, status or None) of every ClientError built in the package."""
    classes = client_error_classes()
    sites: list[tuple[str, str, str | None, int | None]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in classes:
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            code = keywords.get("code")
            status = keywords.get("status")
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            sites.append(
                (
                    where,
                    node.func.id,
                    literal(code, str),
                    literal(status, int),
                )
            )
            if code is not None and not isinstance(code, ast.Constant):
                # A computed code (werkzeug's own errors, a re-raised one) is checked elsewhere.
                sites[-1] = (where, node.func.id, "<computed>", None)
    return sites


SITES = raise_sites()


def test_the_scan_finds_the_raise_sites() -> None:
    # Guards the scan itself: if it stopped seeing calls, every check below would pass vacuously.
    assert len(SITES) > 60
    assert any(code == "too_many_topics" for _, _, code, _ in SITES)


@pytest.mark.parametrize(("where", "cls", "code", "status"), SITES, ids=[s[0] for s in SITES])
def test_every_raise_site_uses_a_registered_code_with_its_status(
    where: str, cls: str, code: str | None, status: int | None
) -> None:
    if code == "<computed>":
        return
    error_class = client_error_classes()[cls]
    effective = code if code is not None else error_class.code
    assert effective in ERROR_STATUS, f"{where}: {effective!r} is not in the registry"
    if cls != "MessageError":  # which takes its status from the registry itself
        assert (status or error_class.status) == ERROR_STATUS[effective], where


def test_a_websocket_message_error_has_its_codes_status() -> None:
    from realtime.core.messages import MessageError

    assert MessageError("x", code="missing_token").status == 401
    assert MessageError("x", code="invalid_request").status == 400


def test_no_code_is_registered_twice() -> None:
    codes = [c for table in (HTTP_ERRORS, WEBSOCKET_ERRORS) for cs in table.values() for c in cs]
    assert len(codes) == len(set(codes))


def test_every_registered_code_is_raised_somewhere() -> None:
    raised = {code for _, _, code, _ in SITES} | {
        cls.code for cls in client_error_classes().values()
    }
    # Flask's own 405 becomes a code in the error handler, from werkzeug's name (its 404 too,
    # which the Mercure hub's subscriptions API also raises itself).
    assert set(ERROR_STATUS) - raised == {"method_not_allowed"}


def readme_error_table() -> dict[int, set[str]]:
    """The README's "Errors" table: status -> codes (a "404, 405" row pairs them in order)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Errors") :].split("\n\n")[2]
    out: dict[int, set[str]] = {}
    for line in table.splitlines()[2:]:
        statuses_cell, codes_cell = line.strip("|").split("|")
        statuses = [int(s) for s in re.findall(r"\d{3}", statuses_cell)]
        codes = re.findall(r"`([a-z_]+)`", codes_cell)
        if len(statuses) > 1:
            assert len(statuses) == len(codes), line
            for status, code in zip(statuses, codes, strict=True):
                out.setdefault(status, set()).add(code)
        else:
            out.setdefault(statuses[0], set()).update(codes)
    return out


def test_the_readme_error_table_is_the_registry() -> None:
    assert readme_error_table() == {status: set(codes) for status, codes in HTTP_ERRORS.items()}


def test_the_openapi_document_enumerates_the_registry() -> None:
    assert dict(HTTP_ERRORS) == ERRORS


def test_the_javascript_client_retries_exactly_the_retryable_codes() -> None:
    match = re.search(r"const TRANSIENT_CODES = new Set\(\[([^\]]*)\]\)", REALTIME_JS)
    assert match is not None
    assert set(re.findall(r'"([a-z_]+)"', match.group(1))) == RETRYABLE


def test_the_javascript_client_carries_the_package_version() -> None:
    assert f'export const version = "{__version__}";' in REALTIME_JS
