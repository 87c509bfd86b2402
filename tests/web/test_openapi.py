"""The OpenAPI document (:mod:`realtime.web.openapi`) against the server that really answers.

First the document itself: valid OpenAPI 3.1 (openapi-spec-validator), every ``$ref`` resolves,
it lists exactly the routes of the Flask URL map, and every error code of the registry is
under its status. Then the server, in process through the Flask test client on real Redis:

- a table reaches every status and error code the document gives ``/publish``, ``/events``,
  ``/presence`` and the Mercure hub's four operations, and nothing else (the document promises no
  answer the server never gives); every code the hub's modules raise is documented under one of
  its operations, and its subscriptions API answers documents of the documented shapes;
- a property test (hypothesis) throws generated requests at those three: methods and paths,
  query strings, tokens (valid, limited, expired, forged, malformed; by header, cookie or
  query), Content-Type, Idempotency-Key, Last-Event-ID, and bodies (JSON from the schemas and
  any JSON, invalid JSON, random bytes, forms). No 5xx; every answer has a status, headers and a
  body the document gives that operation (so every refusal is ``{"error", "message"}`` with a
  documented code); a refused request stores nothing in Redis and keeps no subscription; a 201
  stored what its ids name; a stream opens as SSE and is released when closed."""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import jsonschema
import jwt
import pytest
import redis
from conftest import ROOT, SECRET, make_token, stored_keys, stored_string
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from mercure_tokens import draft07, draft08
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from test_slowrequest import Trickle

from realtime.core import errors as core_errors
from realtime.core.auth import MAX_TOKEN_LENGTH
from realtime.core.sse import EventStreamParser
from realtime.mercure.tokens import COOKIES
from realtime.storage.keys import EPOCH_KEY, FIREHOSE_KEY, PREFIX
from realtime.storage.redis_server import free_port
from realtime.web import openapi
from realtime.web.openapi import ERRORS, MERCURE, RETRY_AFTER_STATUSES, document
from realtime.web.state import state

DOC = document()
DOC_URI = "urn:realtime:openapi"
REGISTRY = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012)
)
JSON = "application/json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def pointer(*parts: str) -> str:
    """A JSON pointer to ``parts`` (RFC 6901 escaping)."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


# -- the document --------------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"] == "3.1.0"
    validate_openapi(DOC)


def test_openapi_json_serves_the_document(client: Any) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == DOC


def test_every_ref_resolves_inside_the_document() -> None:
    found = sorted(set(refs(DOC)))
    assert len(found) > 10
    for ref in found:
        assert isinstance(resolve(ref), dict), ref


def flask_operations(app: Any) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route but static files and the WebSocket; HEAD and
    OPTIONS are Flask's own on every route."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static") or rule.rule == "/ws":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((path, method.lower()))
    return found


def test_document_lists_exactly_the_routes_of_the_url_map(app: Any) -> None:
    documented = {
        (path, method)
        for path, item in DOC["paths"].items()
        for method in item
        if method in METHODS
    }
    assert documented == flask_operations(app)
    assert any(rule.rule == "/ws" for rule in app.url_map.iter_rules())  # left out on purpose


def test_the_catalogue_holds_one_response_per_status_with_every_code_of_it() -> None:
    # The codes themselves are the core's registry (tests/core/test_errors.py holds the README to
    # it).
    catalogue = DOC["components"]["responses"].values()
    assert sorted(tuple(error_codes_of(r)) for r in catalogue) == sorted(ERRORS.values())


def error_codes_of(response: dict[str, Any]) -> list[str]:
    schema = response["content"]["application/json"]["schema"]
    assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}
    codes: list[str] = schema["allOf"][1]["properties"]["error"]["enum"]
    return codes


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_error_response_is_the_error_schema_with_codes_of_its_status() -> None:
    seen = set()
    for path, method, operation in operations():
        for status_text, response in operation["responses"].items():
            status = int(status_text)
            if status < 400 or (path, status) == ("/readyz", 503):
                continue
            codes = error_codes_of(response)
            assert codes, (path, method, status)
            assert set(codes) <= set(ERRORS[status]), (path, method, status)
            has_retry_after = "Retry-After" in response.get("headers", {})
            assert has_retry_after == (status in RETRY_AFTER_STATUSES), (path, status)
            seen.update(codes)
    router = [resolve(r["$ref"]) for r in DOC["x-router-responses"].values()]
    seen.update(code for response in router for code in error_codes_of(response))
    # Every code is answerable somewhere over HTTP, but the WebSocket's own.
    only_websocket = {"draining", "invalid_handshake", "unsupported_websocket_version"}
    assert {c for codes in ERRORS.values() for c in codes} - seen == only_websocket


def mercure_operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    return ((p, m, o) for p, m, o in operations() if p.startswith(MERCURE))


def mercure_raised_codes() -> set[tuple[int, str]]:
    """(status, code) of every refusal built in realtime/mercure: a ClientError's literal
    ``code=`` (else its class's own) and the code given to ``check_characters``."""
    classes = {
        name: cls
        for name, cls in vars(core_errors).items()
        if isinstance(cls, type) and issubclass(cls, core_errors.ClientError)
    }
    found = set()
    for path in sorted((ROOT / "realtime" / "mercure").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            if node.func.id == "check_characters":
                found.add((400, str(literal(node.args[2]))))
            elif node.func.id in classes:
                cls = classes[node.func.id]
                code = keywords.get("code")
                if code is not None and not isinstance(code, ast.Constant):
                    continue  # check_characters' own raise: its callers are counted above
                status = literal(keywords.get("status"))
                found.add((int(status or cls.status), str(literal(code) or cls.code)))
    return found


def literal(node: ast.expr | None) -> Any:
    """The value of a literal argument, ``None`` if absent."""
    return node.value if isinstance(node, ast.Constant) else None


def test_every_code_the_mercure_hub_raises_is_documented_under_one_of_its_operations() -> None:
    raised = mercure_raised_codes()
    assert {(400, "invalid_selector"), (403, "insufficient_scope"), (404, "not_found")} <= raised
    documented = {
        (int(status), code)
        for _, _, operation in mercure_operations()
        for status, response in operation["responses"].items()
        if int(status) >= 400
        for code in error_codes_of(response)
    }
    assert raised <= documented, sorted(raised - documented)


def test_the_mercure_token_refusals_carry_their_bearer_challenge() -> None:
    for path, method, operation in mercure_operations():
        for status, response in operation["responses"].items():
            challenge = response.get("headers", {}).get("WWW-Authenticate")
            if status == "401":
                assert challenge is not None, (path, method)
                assert challenge["required"], (path, method)
            if "insufficient_scope" in (error_codes_of(response) if int(status) >= 400 else []):
                assert challenge is not None, (path, method, status)
        cookies = {
            p["name"] for p in map(resolve_ref, operation["parameters"]) if p["in"] == "cookie"
        }
        assert cookies == set(COOKIES), (path, method)


def resolve_ref(node: dict[str, Any]) -> dict[str, Any]:
    return resolve(node["$ref"]) if "$ref" in node else node


def test_documented_request_examples_are_accepted(client: Any) -> None:
    body = DOC["paths"]["/publish"]["post"]["requestBody"]["content"]["application/json"]
    schema = validator(
        pointer("paths", "/publish", "post", "requestBody", "content", JSON, "schema")
    )
    for name, sample in body["examples"].items():
        schema.validate(sample["value"])
        response = client.post("/publish", json=sample["value"], headers=bearer(TOKENS["all"]))
        assert response.status_code == 201, (name, response.get_json())
        check_body("/publish", "post", 201, JSON, response.get_json())


# -- the server against the document -------------------------------------------------------------


def expired(secret: str = SECRET) -> str:
    now = int(time.time())
    claims = {"sub": "late", "iat": now - 100, "exp": now - 10, "realtime": {"publish": ["*"]}}
    return jwt.encode(claims, secret, algorithm="HS256")


TOKENS = {
    "all": make_token(),
    "fuzz only": make_token(publish=("fuzz:*",), subscribe=("fuzz:*",)),
    "subscribe only": make_token(publish=(), subscribe=("*",)),
    "no subject": make_token(subject=None),
    "expired": expired(),
    "wrongly signed": make_token(secret="another-secret-" + "y" * 40),
    "not a jwt": "not.a.jwt",
    # No key: PyJWT's "none" algorithm takes "" (or None, which its annotation leaves out).
    "alg none": jwt.encode({"sub": "x", "realtime": {"publish": ["*"]}}, "", algorithm="none"),
    "too large": "x" * (MAX_TOKEN_LENGTH + 1),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def validator(schema_pointer: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"{DOC_URI}#{schema_pointer}"}, registry=REGISTRY
    )


def documented_path(path: str) -> str:
    """The document's path (template) a request path is an instance of, else ``path`` itself.
    A template's variable is a Flask ``path`` converter: any non-empty rest, ``/`` included."""
    for template in DOC["paths"]:
        parts = re.split(r"\{[^{}]+\}", template)
        if len(parts) > 1 and re.fullmatch(".+".join(map(re.escape, parts)), path):
            return str(template)
    return path


def documented_response(path: str, method: str, status: int) -> tuple[str, dict[str, Any]]:
    """The JSON pointer and object of the response the document gives for this answer: the
    operation's own, or the router's 404/405 for unknown paths and methods."""
    path = documented_path(path)
    operation = DOC["paths"].get(path, {}).get(method)
    if operation is not None and str(status) in operation["responses"]:
        where = pointer("paths", path, method, "responses", str(status))
        return where, operation["responses"][str(status)]
    if path not in DOC["paths"]:
        assert status == 404, f"{method.upper()} {path} (no such path) answered {status}"
    elif operation is None:
        assert status == 405, f"{method.upper()} {path} (no such method) answered {status}"
    else:
        raise AssertionError(f"{method.upper()} {path} answered {status}, not documented")
    ref = DOC["x-router-responses"][str(status)]["$ref"]
    return ref[1:], resolve(ref)


def check_body(path: str, method: str, status: int, mimetype: str, body: Any) -> None:
    where, response = documented_response(path, method, status)
    assert mimetype in response["content"], (path, method, status, mimetype)
    schema_at = where + pointer("content", mimetype, "schema")
    errors = sorted(validator(schema_at).iter_errors(body), key=str)
    assert not errors, f"{method.upper()} {path} {status}: {body!r}: {errors[0].message}"


def check_headers(path: str, method: str, status: int, headers: Any) -> None:
    _, response = documented_response(path, method, status)
    for name, header in response.get("headers", {}).items():
        if "$ref" in header:
            header = resolve(header["$ref"])
        value = headers.get(name)
        if value is None:
            assert not header.get("required"), f"{status} without {name}"
            continue
        schema = header["schema"]
        if schema.get("type") == "integer":
            assert value.isdigit(), (name, value)
        else:
            jsonschema.validate(value, schema)


def snapshot(r: redis.Redis) -> dict[bytes, Any]:
    """Everything stored, but presence: an accepted stream's entries come and go in the
    background (a refused request registers no subscription, which is checked separately).
    A key that expires while it is read (a rate bucket's few seconds are up) is left out: it
    was not written by the request under test."""
    out: dict[bytes, Any] = {}
    for key in stored_keys(r, "*"):
        if key.startswith(f"{PREFIX}:presence:".encode()):
            continue
        kind = r.type(key)
        if kind == b"stream":
            value: Any = r.xrange(key)
        elif kind == b"string":
            value = r.get(key)
        elif kind == b"hash":
            value = r.hgetall(key)
        elif kind == b"zset":
            value = r.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        if value not in (None, {}, [], b"none") or r.exists(key):
            out[key] = value
    return out


# Small limits, so every refusal is reachable with small bodies.
LIMITS = {
    "REALTIME_MAX_PAYLOAD": 512,
    "REALTIME_MAX_BODY": 4096,
    "REALTIME_MAX_BATCH": 4,
    "REALTIME_MAX_TOPICS": 3,
    "REALTIME_PUBLIC_TOPICS": "public:*",
}


def mostly(
    likely: st.SearchStrategy[Any], other: st.SearchStrategy[Any], percent: int = 75
) -> st.SearchStrategy[Any]:
    """``likely`` in about ``percent`` % of draws, else ``other``: most requests are valid
    enough to reach the deep checks (a 201, a stream), the rest probe each refusal."""
    return st.integers(0, 99).flatmap(lambda n: likely if n < percent else other)


GOOD_TOPICS = st.sampled_from(["fuzz:a", "fuzz:b/c", "public:news", "demo", "secret"])
TOPICS = mostly(
    GOOD_TOPICS,
    st.one_of(
        st.from_regex(r"[A-Za-z0-9_.:@/-]{1,12}", fullmatch=True),
        st.sampled_from(["", "has space", "a\nb", "x" * 201, "a*", "é", "fuzz:\x00"]),
        st.text(max_size=20),
    ),
)
TYPES = mostly(
    st.sampled_from(["created", "message", "", "note.v1"]),
    st.one_of(
        st.sampled_from(["reset", "auth_expired", "a b", "x" * 65, "m\ndata: evil"]),
        st.from_regex(r"[A-Za-z0-9_.:-]{1,10}", fullmatch=True),
        st.text(max_size=10),
    ),
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
DATA = mostly(
    st.text(max_size=40) | ANY_JSON,
    st.sampled_from(["line 1\nline 2", "cr\r\nlf", "\r", "x" * 600, "é" * 300, "\ud800"]),
    80,
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """An event object from the PublishEvent schema, with any field sometimes wrong or gone."""
    event: dict[str, Any] = {}
    if draw(st.integers(0, 19)):
        event["topic"] = draw(mostly(TOPICS, st.sampled_from([None, 7, ["a"]]), 90))
    if draw(st.booleans()):
        event["type"] = draw(mostly(TYPES, st.sampled_from([None, 1, {"a": 1}]), 90))
    if draw(st.integers(0, 19)):
        event["data"] = draw(DATA)
    if not draw(st.integers(0, 19)):
        event[draw(st.sampled_from(["tpoic", "id", "events", "extra"]))] = draw(JSON_SCALARS)
    return event


JSON_DOCS = mostly(
    events() | st.builds(lambda e: {"events": e}, st.lists(events(), min_size=1, max_size=3)),
    st.one_of(
        st.builds(lambda e: {"events": e}, st.lists(events(), max_size=6)),
        st.builds(lambda e, x: {"events": e, "topic": x}, st.lists(events(), max_size=2), TOPICS),
        st.builds(lambda e: {"events": e}, ANY_JSON),
        ANY_JSON,
    ),
    80,
)
JSON_BODIES = mostly(
    st.builds(
        lambda d, a: json.dumps(d, ensure_ascii=a).encode("utf-8", "surrogatepass"),
        JSON_DOCS,
        st.booleans(),
    ),
    st.one_of(
        st.sampled_from(
            [
                b"",
                b"{",
                b"{'topic': 'a'}",
                b'{"topic": "fuzz:a", "data": NaN}',
                b'{"topic": "fuzz:a", "data": 1e400}',
                b'{"topic": "fuzz:a", "data": "x"} trailing',
                b'{"topic": "fuzz:a", "data": "\\ud800"}',
                b"\xff\xfe{}",
                b"[" * 5000 + b"]" * 5000,
                b'{"topic": "fuzz:a", "data": ' + b"[" * 3000 + b"]" * 3000 + b"}",
                b'{"topic": "fuzz:a", "data": "' + b"x" * 5000 + b'"}',
            ]
        ),
        st.binary(max_size=64),
    ),
    85,
)
FORM_FIELDS = mostly(
    st.fixed_dictionaries(
        {"topic": TOPICS, "data": st.text(max_size=40)}, optional={"type": TYPES}
    ).map(lambda d: list(d.items())),
    st.lists(
        st.tuples(
            st.sampled_from(["topic", "data", "type", "extra"]) | st.text(max_size=5),
            st.one_of(TOPICS, TYPES, st.text(max_size=40), st.just("x" * 600)),
        ),
        max_size=5,
    ),
    60,
)


def multipart(fields: list[tuple[str, str]], boundary: str = "fuzzboundary") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{quote(name)}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode("utf-8", "surrogatepass")


JSON_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8"])
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data; boundary=fuzzboundary"
OTHER_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        ["text/plain", "application/merge-patch+json", "multipart/form-data", "application/xml"]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
BODIES = mostly(
    st.one_of(
        st.tuples(JSON_BODIES, mostly(JSON_TYPES, OTHER_TYPES, 85)),
        st.tuples(
            FORM_FIELDS.map(lambda f: urlencode(f).encode()),
            mostly(st.just(FORM_TYPE), OTHER_TYPES, 85),
        ),
        st.tuples(FORM_FIELDS.map(multipart), mostly(st.just(MULTIPART_TYPE), OTHER_TYPES, 85)),
    ),
    st.tuples(st.just(b"x" * 5000), JSON_TYPES | st.just(FORM_TYPE)),  # over REALTIME_MAX_BODY
    95,
)

HEADER_TEXT = st.text(
    st.characters(min_codepoint=1, max_codepoint=255, exclude_characters="\r\n"), max_size=30
)
TOKEN_NAMES = st.sampled_from(sorted(TOKENS))
AUTH = mostly(
    st.tuples(
        st.sampled_from(["bearer", "cookie", "query"]), st.sampled_from(["all", "fuzz only"])
    ),
    st.one_of(
        st.just(("none", "")),
        st.tuples(st.sampled_from(["bearer", "cookie", "query"]), TOKEN_NAMES),
        st.tuples(st.just("raw"), st.sampled_from(["Basic abc", "Bearer", "Bearer a b", ""])),
        st.tuples(st.just("raw"), HEADER_TEXT),
    ),
    70,
)
# "EPOCH" stands for the current epoch, read at request time.
LAST_IDS = st.one_of(
    st.builds(lambda n: f"EPOCH-{n}", st.integers(0, 50)),
    st.sampled_from(["", " ", "zzzz-1", "0-99999999999999999999", "x" * 300]),
    HEADER_TEXT,
)
QUERY_VALUES = {
    "topic": TOPICS,
    "lastEventId": LAST_IDS,
    "envelope": st.sampled_from(["1", "true", "json", "0", ""]),
    "access_token": TOKEN_NAMES.map(TOKENS.__getitem__),
}
GOOD_QUERY = st.tuples(
    st.lists(GOOD_TOPICS.map(lambda t: ("topic", t)), min_size=1, max_size=4),
    st.lists(
        st.sampled_from(["lastEventId", "envelope"]).flatmap(
            lambda k: st.tuples(st.just(k), QUERY_VALUES[k])
        ),
        max_size=2,
    ),
).map(lambda pair: pair[0] + pair[1])
QUERY = mostly(
    GOOD_QUERY,
    st.lists(
        st.one_of(
            st.sampled_from(sorted(QUERY_VALUES)).flatmap(
                lambda k: st.tuples(st.just(k), QUERY_VALUES[k])
            ),
            st.tuples(st.text(max_size=5), st.text(max_size=10)),
        ),
        max_size=5,
    ),
    70,
)
ROUTES = mostly(
    st.sampled_from([("POST", "/publish"), ("GET", "/events"), ("GET", "/presence")]),
    st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
        st.sampled_from(["/publish", "/events", "/presence", "/publish/", "/events/x", "/nope"]),
    ),
    85,
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """One request: method and path, query, headers (token, Content-Type, Idempotency-Key,
    Last-Event-ID) and body, each mostly plausible and sometimes anything."""
    method, path = draw(ROUTES)
    query = draw(QUERY)
    headers: dict[str, str] = {}
    cookie = None
    how, value = draw(AUTH)
    if how == "bearer":
        headers["Authorization"] = f"Bearer {TOKENS[value]}"
    elif how == "cookie" and value != "too large":  # a browser would not even keep that cookie
        cookie = TOKENS[value]
    elif how == "query":
        query.append(("access_token", TOKENS[value]))
    elif how == "raw":
        headers["Authorization"] = value
    body, content_type = b"", None
    if method != "GET" or not draw(st.integers(0, 9)):
        body, content_type = draw(BODIES)
    if content_type is not None:
        headers["Content-Type"] = content_type
    key = draw(mostly(st.none(), st.sampled_from(["job-1", "job-2"]) | HEADER_TEXT, 70))
    if key is not None:
        headers["Idempotency-Key"] = key
    last_id = draw(mostly(st.none(), LAST_IDS, 60))
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    return {
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "cookie": cookie,
        "body": body,
    }


def with_epoch(value: str, epoch: str) -> str:
    return value.replace("EPOCH", epoch)


@pytest.fixture
def fuzz_app(app_factory: Any) -> Any:
    return app_factory(**LIMITS)


def ask(
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    token: str | None = "all",
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> dict[str, Any]:
    """A request as :func:`requests` draws them, written by hand."""
    all_headers = bearer(TOKENS[token]) if token else {}
    if json_body is not None:
        body, content_type = json.dumps(json_body).encode(), content_type or JSON
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    all_headers.update(headers or {})
    return {
        "method": method,
        "path": path,
        "query": query or [],
        "headers": all_headers,
        "cookie": None,
        "body": body,
    }


def post(json_body: Any = None, *, content_type: str = JSON, **kwargs: Any) -> dict[str, Any]:
    return ask("POST", "/publish", json_body=json_body, content_type=content_type, **kwargs)


def topics(*names: str, **kwargs: Any) -> list[tuple[str, str]]:
    return [("topic", name) for name in names] + list(kwargs.items())


EVENT = {"topic": "fuzz:a", "data": "x"}
REDIS_DOWN = {"REALTIME_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
# name, settings beside LIMITS, requests first (streams are held open), request, status, code
REACHABLE: list[tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any], int, str]] = [
    ("publish", {}, [], post(EVENT), 201, ""),
    ("publish batch", {}, [], post({"events": [EVENT, EVENT]}), 201, ""),
    (
        "publish retried",
        {},
        [post(EVENT, headers={"Idempotency-Key": "k"})],
        post(EVENT, headers={"Idempotency-Key": "k"}),
        201,
        "replayed",
    ),
    (
        "publish body too slow",
        {"REALTIME_BODY_TIMEOUT_S": "0.2"},
        [],
        {**post(EVENT), "trickle_s": 0.05},
        408,
        "request_timeout",
    ),
    (
        "publish new topics over the limit",
        {"REALTIME_NEW_TOPICS_PER_MINUTE": "1"},
        [post({"topic": "fuzz:first", "data": "x"})],
        post({"topic": "fuzz:second", "data": "x"}),
        429,
        "topic_rate_limited",
    ),
    ("publish no topic", {}, [], post({"data": "x"}), 400, "missing_topic"),
    ("publish bad topic", {}, [], post({**EVENT, "topic": "a b"}), 400, "invalid_topic"),
    ("publish bad type", {}, [], post({**EVENT, "type": "a b"}), 400, "invalid_type"),
    ("publish reserved type", {}, [], post({**EVENT, "type": "reset"}), 400, "reserved_type"),
    ("publish no data", {}, [], post({"topic": "fuzz:a"}), 400, "missing_data"),
    ("publish CR", {}, [], post({**EVENT, "data": "a\r\nb"}), 400, "invalid_data"),
    ("publish typo", {}, [], post({**EVENT, "tpoic": "a"}), 400, "unknown_field"),
    ("publish bad json", {}, [], post(body=b"{"), 400, "invalid_json"),
    ("publish NaN", {}, [], post(body=b'{"topic": "a", "data": NaN}'), 400, "invalid_json"),
    ("publish deep json", {}, [], post(body=b"[" * 4000), 400, "invalid_json"),
    ("publish 1e400", {}, [], post(body=b'{"topic": "a", "data": 1e400}'), 400, "invalid_data"),
    ("publish surrogate", {}, [], post({"topic": "a", "data": "\ud800"}), 400, "invalid_data"),
    (
        "publish form CR",
        {},
        [],
        post(body=b"topic=a&data=%0D", content_type=FORM_TYPE),
        400,
        "invalid_data",
    ),
    ("publish bad batch", {}, [], post({"events": []}), 400, "invalid_batch"),
    ("publish big batch", {}, [], post({"events": [EVENT] * 5}), 400, "batch_too_large"),
    (
        "publish repeated field",
        {},
        [],
        post(body=b"topic=a&topic=b&data=x", content_type=FORM_TYPE),
        400,
        "bad_form",
    ),
    (
        "publish bad key",
        {},
        [],
        post(EVENT, headers={"Idempotency-Key": "\x01"}),
        400,
        "invalid_idempotency_key",
    ),
    (
        "publish reused key",
        {},
        [post(EVENT, headers={"Idempotency-Key": "k"})],
        post({**EVENT, "data": "y"}, headers={"Idempotency-Key": "k"}),
        400,
        "idempotency_key_reused",
    ),
    ("publish no token", {}, [], post(EVENT, token=None), 401, "missing_token"),
    ("publish bad token", {}, [], post(EVENT, token="not a jwt"), 401, "invalid_token"),
    ("publish expired", {}, [], post(EVENT, token="expired"), 401, "token_expired"),
    (
        "publish token too large",
        {},
        [],
        post(EVENT, token="too large"),
        401,
        "token_too_large",
    ),
    (
        "publish cookie without origin",
        {},
        [],
        {**post(EVENT, token=None), "cookie": TOKENS["all"]},
        403,
        "origin_not_allowed",
    ),
    (
        "publish basic auth",
        {},
        [],
        post(EVENT, token=None, headers={"Authorization": "Basic abc"}),
        401,
        "invalid_authorization",
    ),
    (
        "publish forbidden",
        {},
        [],
        post({**EVENT, "topic": "secret"}, token="fuzz only"),
        403,
        "forbidden_topic",
    ),
    ("publish big data", {}, [], post({**EVENT, "data": "x" * 600}), 413, "payload_too_large"),
    (
        "publish big body",
        {},
        [],
        post(body=b"x" * 5000),
        413,
        "payload_too_large",
    ),
    (
        "publish text",
        {},
        [],
        post(body=b"x", content_type="text/plain"),
        415,
        "unsupported_media_type",
    ),
    (
        "publish over rate",
        {"REALTIME_PUBLISH_RATE": "0.01", "REALTIME_PUBLISH_BURST": "4"},
        [post({"events": [EVENT] * 4})],
        post(EVENT),
        429,
        "rate_limited",
    ),
    ("publish redis down", REDIS_DOWN, [], post(EVENT), 503, "redis_unavailable"),
    ("events", {}, [], ask("GET", "/events", query=topics("fuzz:a")), 200, ""),
    ("events public", {}, [], ask("GET", "/events", query=topics("public:x"), token=None), 200, ""),
    ("events no topic", {}, [], ask("GET", "/events"), 400, "missing_topic"),
    ("events bad topic", {}, [], ask("GET", "/events", query=topics("a b")), 400, "invalid_topic"),
    (
        "events 4 topics",
        {},
        [],
        ask("GET", "/events", query=topics("a", "b", "c", "d")),
        400,
        "too_many_topics",
    ),
    (
        "events long id",
        {},
        [],
        ask("GET", "/events", query=topics("a"), headers={"Last-Event-ID": "x" * 300}),
        400,
        "invalid_last_event_id",
    ),
    (
        "events no token",
        {},
        [],
        ask("GET", "/events", query=topics("a"), token=None),
        401,
        "missing_token",
    ),
    (
        "events bad token",
        {},
        [],
        ask("GET", "/events", query=topics("a"), token="alg none"),
        401,
        "invalid_token",
    ),
    (
        "events expired",
        {},
        [],
        ask("GET", "/events", query=topics("a"), token="expired"),
        401,
        "token_expired",
    ),
    (
        "events token too large",
        {},
        [],
        ask("GET", "/events", query=topics("a"), token="too large"),
        401,
        "token_too_large",
    ),
    (
        "events basic auth",
        {},
        [],
        ask("GET", "/events", query=topics("a"), token=None, headers={"Authorization": "Basic x"}),
        401,
        "invalid_authorization",
    ),
    (
        "events forbidden",
        {},
        [],
        ask("GET", "/events", query=topics("secret"), token="fuzz only"),
        403,
        "forbidden_topic",
    ),
    (
        "events over connections",
        {"REALTIME_MAX_CONNECTIONS": "1"},
        [ask("GET", "/events", query=topics("a"))],
        ask("GET", "/events", query=topics("a")),
        429,
        "too_many_connections",
    ),
    (
        "events redis down",
        REDIS_DOWN,
        [],
        ask("GET", "/events", query=topics("a")),
        503,
        "redis_unavailable",
    ),
    ("presence", {}, [], ask("GET", "/presence", query=topics("fuzz:a")), 200, ""),
    ("presence no topic", {}, [], ask("GET", "/presence"), 400, "missing_topic"),
    (
        "presence empty topic",
        {},
        [],
        ask("GET", "/presence", query=topics("")),
        400,
        "missing_topic",
    ),
    (
        "presence bad topic",
        {},
        [],
        ask("GET", "/presence", query=topics("a b")),
        400,
        "invalid_topic",
    ),
    (
        "presence off",
        {"REALTIME_PRESENCE_TTL_S": "0"},
        [],
        ask("GET", "/presence", query=topics("a")),
        400,
        "presence_off",
    ),
    (
        "presence no token",
        {},
        [],
        ask("GET", "/presence", query=topics("a"), token=None),
        401,
        "missing_token",
    ),
    (
        "presence bad token",
        {},
        [],
        ask("GET", "/presence", query=topics("a"), token="wrongly signed"),
        401,
        "invalid_token",
    ),
    (
        "presence expired",
        {},
        [],
        ask("GET", "/presence", query=topics("a"), token="expired"),
        401,
        "token_expired",
    ),
    (
        "presence token too large",
        {},
        [],
        ask("GET", "/presence", query=topics("a"), token="too large"),
        401,
        "token_too_large",
    ),
    (
        "presence bearer typo",
        {},
        [],
        ask("GET", "/presence", query=topics("a"), token=None, headers={"Authorization": "Bearer"}),
        401,
        "invalid_authorization",
    ),
    (
        "presence forbidden",
        {},
        [],
        ask("GET", "/presence", query=topics("secret"), token="fuzz only"),
        403,
        "forbidden_topic",
    ),
    (
        "presence redis down",
        REDIS_DOWN,
        [],
        ask("GET", "/presence", query=topics("a")),
        503,
        "redis_unavailable",
    ),
]


# -- the Mercure hub's door ------------------------------------------------------------------

HUB_TOKENS = {
    "publisher": draft07(publish=["*"], subscribe=["*"]),
    "tester": draft07(publish=["*"], sub="tester"),  # the sub of TOKENS' tokens
    "books publisher": draft07(publish=["https://example.com/books/{id}"]),
    "subscriber": draft08(subscribe=[{"match": "*"}]),
    "elsewhere": draft07(subscribe=["https://example.com/elsewhere"]),
    "expired": draft07(subscribe=["*"], exp=time.time() - 60),
    "wrongly signed": TOKENS["wrongly signed"],
    "too large": TOKENS["too large"],
}
BOOK = "https://example.com/books/1"
SUBSCRIPTIONS = MERCURE + "/subscriptions"
SUBSCRIPTIONS_ON = {"REALTIME_MERCURE_SUBSCRIPTIONS": "1"}


def hub(
    method: str = "GET",
    path: str = MERCURE,
    *,
    query: list[tuple[str, str]] | None = None,
    token: str | None = "publisher",
    headers: dict[str, str] | None = None,
    form: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    cookie: str | None = None,
) -> dict[str, Any]:
    """A request to the Mercure hub, in the shape :func:`ask` makes."""
    if form is not None:
        body, content_type = urlencode(form).encode(), content_type or FORM_TYPE
    request = ask(method, path, query=query, token=None, headers=headers, body=body)
    if token is not None:
        request["headers"] = {**bearer(HUB_TOKENS[token]), **request["headers"]}
    if content_type is not None:
        request["headers"]["Content-Type"] = content_type
    if cookie is not None:
        request["cookie"], request["cookie_name"] = HUB_TOKENS[cookie], "mercureAuthorization"
    return request


def update(*fields: tuple[str, str], **kwargs: Any) -> dict[str, Any]:
    return hub("POST", form=list(fields), **kwargs)


def selectors(*names: str) -> list[tuple[str, str]]:
    return [("topic", name) for name in names]


UPDATE = (("topic", BOOK), ("data", "x"))
REACHABLE += [
    ("mercure subscribe", {}, [], hub(query=selectors(BOOK)), 200, ""),
    (
        "mercure subscribe draft 08",
        {},
        [],
        hub(
            query=[("match", "urn:a"), ("match_urlpattern", "/books/:id")],
            headers={"Last-Event-ID": "earliest"},
        ),
        200,
        "",
    ),
    (
        "mercure subscribe anonymous",
        {"REALTIME_MERCURE_ANONYMOUS": "1"},
        [],
        hub(query=selectors(BOOK), token=None),
        200,
        "",
    ),
    (
        "mercure subscribe query token",
        {},
        [],
        hub(query=[("topic", BOOK), ("authorization", HUB_TOKENS["publisher"])], token=None),
        200,
        "",
    ),
    ("mercure bad selector", {}, [], hub(query=[("match_regex", "a")]), 400, "invalid_selector"),
    ("mercure no selector", {}, [], hub(query=[("lastEventID", "x")]), 400, "missing_topic"),
    (
        "mercure many selectors",
        {},
        [],
        hub(query=selectors(*(f"urn:{n}" for n in range(101)))),
        400,
        "too_many_topics",
    ),
    (
        "mercure long id",
        {},
        [],
        hub(query=selectors(BOOK), headers={"Last-Event-ID": "x" * 1025}),
        400,
        "invalid_last_event_id",
    ),
    (
        "mercure subscribe basic auth",
        {},
        [],
        hub(query=selectors(BOOK), token=None, headers={"Authorization": "Basic abc"}),
        400,
        "invalid_request",
    ),
    (
        "mercure subscribe no token",
        {},
        [],
        hub(query=selectors(BOOK), token=None),
        401,
        "missing_token",
    ),
    (
        "mercure subscribe expired",
        {},
        [],
        hub(query=selectors(BOOK), token="expired"),
        401,
        "invalid_token",
    ),
    (
        "mercure subscribe access token in query",
        {},
        [],
        hub(query=[("topic", BOOK), ("authorization", HUB_TOKENS["subscriber"])], token=None),
        401,
        "invalid_token",
    ),
    (
        "mercure subscribe token too large",
        {},
        [],
        hub(query=selectors(BOOK), token="too large"),
        401,
        "token_too_large",
    ),
    (
        "mercure subscribe over connections",
        {"REALTIME_MAX_CONNECTIONS": "1"},
        [hub(query=selectors(BOOK))],
        hub(query=selectors(BOOK)),
        429,
        "too_many_connections",
    ),
    (
        "mercure subscribe redis down",
        REDIS_DOWN,
        [],
        hub(query=selectors(BOOK)),
        503,
        "redis_unavailable",
    ),
    (
        "mercure publish",
        {},
        [],
        update(
            ("topic", BOOK),
            ("topic", "urn:isbn:1"),
            ("data", "line 1\nline 2"),
            ("private", "on"),
            ("id", "book-1"),
            ("type", "stock"),
            ("retry", "1000"),
            ("extension", "ignored"),
        ),
        200,
        "",
    ),
    ("mercure publish no topic", {}, [], update(("data", "x")), 400, "missing_topic"),
    ("mercure publish wildcard", {}, [], update(("topic", "*")), 400, "invalid_topic"),
    (
        "mercure publish hub topic",
        {},
        [],
        update(("topic", SUBSCRIPTIONS + "/x/y")),
        400,
        "invalid_topic",
    ),
    ("mercure publish # id", {}, [], update(*UPDATE, ("id", "#1")), 400, "invalid_id"),
    ("mercure publish bad type", {}, [], update(*UPDATE, ("type", "a\x01")), 400, "invalid_type"),
    (
        "mercure publish hub type",
        {},
        [],
        update(*UPDATE, ("type", "mercure")),
        400,
        "reserved_type",
    ),
    ("mercure publish bad retry", {}, [], update(*UPDATE, ("retry", "1.5")), 400, "invalid_retry"),
    (
        "mercure publish not utf-8",
        {},
        [],
        hub("POST", body=b"topic=\xff", content_type=FORM_TYPE),
        400,
        "bad_form",
    ),
    (
        "mercure publish empty bearer",
        {},
        [],
        update(*UPDATE, token=None, headers={"Authorization": "Bearer"}),
        400,
        "invalid_request",
    ),
    ("mercure publish no token", {}, [], update(*UPDATE, token=None), 401, "missing_token"),
    (
        "mercure publish bad token",
        {},
        [],
        update(*UPDATE, token="wrongly signed"),
        401,
        "invalid_token",
    ),
    (
        "mercure publish token too large",
        {},
        [],
        update(*UPDATE, token="too large"),
        401,
        "token_too_large",
    ),
    (
        "mercure publish no rights",
        {},
        [],
        update(*UPDATE, token="subscriber"),
        403,
        "insufficient_scope",
    ),
    (
        "mercure publish alternate not granted",
        {},
        [],
        update(*UPDATE, ("topic", "https://example.com/authors/1"), token="books publisher"),
        403,
        "insufficient_scope",
    ),
    (
        "mercure publish cookie without origin",
        {},
        [],
        update(*UPDATE, token=None, cookie="publisher"),
        403,
        "origin_not_allowed",
    ),
    (
        "mercure publish body too slow",
        {"REALTIME_BODY_TIMEOUT_S": "0.2"},
        [],
        {**update(*UPDATE), "trickle_s": 0.05},
        408,
        "request_timeout",
    ),
    (
        "mercure publish big data",
        {},
        [],
        update(("topic", BOOK), ("data", "x" * 600)),
        413,
        "payload_too_large",
    ),
    (
        "mercure publish 4 topics",
        {},
        [],
        update(*(("topic", f"urn:{n}") for n in range(4))),
        413,
        "payload_too_large",
    ),
    (
        "mercure publish json",
        {},
        [],
        hub("POST", body=b'{"topic": "a"}', content_type=JSON),
        415,
        "unsupported_media_type",
    ),
    (
        "mercure publish over rate",
        {"REALTIME_PUBLISH_RATE": "0.01", "REALTIME_PUBLISH_BURST": "4"},
        [update(*UPDATE)] * 4,
        update(*UPDATE),
        429,
        "rate_limited",
    ),
    (
        # Every update is kept on one storage topic, new only while it has no history: its first
        # update, by a publisher (a token's sub, shared with /publish) already at its limit.
        "mercure publish new topics over the limit",
        {"REALTIME_NEW_TOPICS_PER_MINUTE": "1"},
        [post({"topic": "fuzz:first", "data": "x"})],
        update(*UPDATE, token="tester"),
        429,
        "topic_rate_limited",
    ),
    ("mercure publish redis down", REDIS_DOWN, [], update(*UPDATE), 503, "redis_unavailable"),
    ("mercure subscriptions", SUBSCRIPTIONS_ON, [], hub(path=SUBSCRIPTIONS), 200, ""),
    (
        "mercure subscriptions as json-ld",
        SUBSCRIPTIONS_ON,
        [],
        hub(path=SUBSCRIPTIONS, headers={"Accept": "application/ld+json"}),
        200,
        "",
    ),
    (
        "mercure subscriptions of a matcher",
        SUBSCRIPTIONS_ON,
        [],
        hub(path=SUBSCRIPTIONS + "/exact/urn%3Aa"),
        200,
        "",
    ),
    (
        "mercure subscriptions of a draft 07 topic",
        SUBSCRIPTIONS_ON,
        [],
        hub(path=SUBSCRIPTIONS + "/urn%3Aa"),
        200,
        "",
    ),
    (
        "mercure no such subscriptions resource",
        SUBSCRIPTIONS_ON,
        [],
        hub(path=SUBSCRIPTIONS + "/a/b/c/d"),
        404,
        "not_found",
    ),
    (
        "mercure no such subscription",
        SUBSCRIPTIONS_ON,
        # The epoch first: this 404 comes after the cursor is read, which would create it.
        [hub(path=SUBSCRIPTIONS)],
        hub(path=SUBSCRIPTIONS + "/exact/urn%3Aa/urn%3Auuid%3Ax"),
        404,
        "not_found",
    ),
]
# Both subscriptions operations refuse alike: the collection and a matcher's subscriptions.
for where, path in (("", SUBSCRIPTIONS), (" of a matcher", SUBSCRIPTIONS + "/exact/urn%3Aa")):
    REACHABLE += [
        (
            f"mercure subscriptions{where} basic auth",
            SUBSCRIPTIONS_ON,
            [],
            hub(path=path, token=None, headers={"Authorization": "Basic abc"}),
            400,
            "invalid_request",
        ),
        (
            f"mercure subscriptions{where} no token",
            SUBSCRIPTIONS_ON,
            [],
            hub(path=path, token=None),
            401,
            "missing_token",
        ),
        (
            f"mercure subscriptions{where} expired",
            SUBSCRIPTIONS_ON,
            [],
            hub(path=path, token="expired"),
            401,
            "invalid_token",
        ),
        (
            f"mercure subscriptions{where} token too large",
            SUBSCRIPTIONS_ON,
            [],
            hub(path=path, token="too large"),
            401,
            "token_too_large",
        ),
        (
            f"mercure subscriptions{where} not granted",
            SUBSCRIPTIONS_ON,
            [],
            hub(path=path, token="elsewhere"),
            403,
            "insufficient_scope",
        ),
        (f"mercure subscriptions{where} off", {}, [], hub(path=path), 404, "not_found"),
        (
            f"mercure subscriptions{where} redis down",
            {**REDIS_DOWN, **SUBSCRIPTIONS_ON},
            [],
            hub(path=path),
            503,
            "redis_unavailable",
        ),
    ]


def trickling(body: bytes, every: float) -> dict[str, Any]:
    return {"wsgi.input": Trickle(body, every), "CONTENT_LENGTH": str(len(body))}


def answer(app: Any, r: redis.Redis, request: dict[str, Any]) -> tuple[int, str]:
    """Send ``request``; check the answer against the document and, for a refusal, that Redis
    is unchanged and no subscription is left. Returns the status and the error code."""
    hub = state(app).hub
    subscriptions = hub.subscription_count
    epoch = (stored_string(r, EPOCH_KEY) or b"0000000000").decode()
    query = urlencode([(k, with_epoch(v, epoch)) for k, v in request["query"]])
    headers = {k: with_epoch(v, epoch) for k, v in request["headers"].items()}
    method, path = request["method"].lower(), request["path"]
    client = app.test_client()
    if request["cookie"] is not None:
        client.set_cookie(request.get("cookie_name", "realtime_token"), request["cookie"])
    before = snapshot(r)
    volatile = {key for key in before if r.pttl(key) != -1}  # keys that expire (or just did)
    trickle = request.get("trickle_s")  # the body arrives a byte every so many seconds
    response = client.open(
        path,
        method=request["method"],
        query_string=query,
        headers=headers,
        data=None if trickle else request["body"],
        environ_overrides=trickling(request["body"], trickle) if trickle else None,
        buffered=False,
    )
    body: Any = None
    try:
        status = response.status_code
        check_headers(path, method, status, response.headers)
        if response.mimetype == "text/event-stream":
            # A stream: its opening must be SSE; then it is closed at once.
            check_body(path, method, status, response.mimetype, "")
            opening = next(iter(response.response))
            assert opening.startswith(b"retry: ")
            EventStreamParser().feed(opening)
        elif response.mimetype == "text/plain":  # a Mercure publish: the update's id
            check_body(path, method, status, response.mimetype, response.get_data(as_text=True))
        else:
            body = json.loads(response.get_data())
            check_body(path, method, status, response.mimetype, body)
        replayed = "Idempotent-Replayed" in response.headers
    finally:
        response.close()
    assert hub.subscription_count == subscriptions  # streams and refusals release their own
    if status >= 400:
        after = snapshot(r)
        # Nothing new, nothing changed, nothing removed but what expired meanwhile (a bucket).
        written = {k: v for k, v in after.items() if before.get(k) != v}
        assert not written, f"a refused request ({status}) stored something: {written}"
        removed = [k for k in before.keys() - after.keys() if k not in volatile]
        assert not removed, f"a refused request ({status}) removed {removed}"
        return status, str(body["error"])
    if status == 201:
        ids = body["ids"] if "ids" in body else [body["id"]]
        for event_id in ids:
            seq = event_id.rsplit("-", 1)[1]
            assert r.xrange(FIREHOSE_KEY, f"{seq}-0", f"{seq}-0"), event_id
        assert (snapshot(r) == before) == replayed
        return status, "replayed" if replayed else ""
    return status, ""


@pytest.mark.parametrize(
    ("overrides", "setup", "request_", "status", "code"),
    [row[1:] for row in REACHABLE],
    ids=[row[0] for row in REACHABLE],
)
def test_every_documented_answer_is_one_the_server_gives(
    app_factory: Any,
    redis_client: redis.Redis,
    overrides: dict[str, Any],
    setup: list[dict[str, Any]],
    request_: dict[str, Any],
    status: int,
    code: str,
) -> None:
    app = app_factory(**{**LIMITS, **overrides})
    state(app).hub.start_timeout = 0.2  # how long /events waits for an unreachable Redis
    held = []
    for earlier in setup:
        response = app.test_client().open(
            earlier["path"],
            method=earlier["method"],
            query_string=urlencode(earlier["query"]),
            headers=earlier["headers"],
            data=earlier["body"],
            buffered=False,
        )
        assert response.status_code < 300
        held.append(response)
    try:
        got = answer(app, redis_client, request_)
    finally:
        for response in held:
            response.close()
    assert got == (status, code)


def test_the_mercure_subscriptions_api_answers_documents_of_the_documented_shapes(
    app_factory: Any,
) -> None:
    """Two live subscriptions, one per draft (with a payload), listed in both shapes and each
    read back by its own id: every body, header and content type as documented."""
    client = app_factory(**LIMITS, **SUBSCRIPTIONS_ON).test_client()
    token = draft07(subscribe=["*"], payload={"user": "ada"})
    held = [
        client.get(MERCURE, query_string=query, headers=bearer(token), buffered=False)
        for query in ({"topic": "urn:book:1"}, {"match": "urn:a"})
    ]

    def get(path: str, accept: str = JSON) -> tuple[str, Any]:
        response = client.get(path, headers={**bearer(token), "Accept": accept})
        assert response.status_code == 200, response.get_data()
        check_headers(path, "get", 200, response.headers)
        check_body(path, "get", 200, response.mimetype, response.get_json(force=True))
        return response.mimetype, response.get_json(force=True)

    try:
        assert all(r.status_code == 200 for r in held)
        deadline = time.monotonic() + 5
        while len(get(SUBSCRIPTIONS)[1]["subscriptions"]) < 2:  # presence reaches Redis
            assert time.monotonic() < deadline, "the subscriptions never showed"
            time.sleep(0.05)
        assert get(SUBSCRIPTIONS, "application/ld+json")[0] == "application/ld+json"
        members = get(SUBSCRIPTIONS)[1]["subscriptions"]
        assert {m["type"] for m in members} == {"Subscription", "subscription"}
        for member in members:
            mimetype, body = get(member["id"])
            assert body["id"] == member["id"]
            assert body["payload"] == {"user": "ada"}
            draft07_shape = member["type"] == "Subscription"
            assert mimetype == ("application/ld+json" if draft07_shape else JSON)
    finally:
        for response in held:
            response.close()


def test_the_reachable_table_covers_every_documented_error() -> None:
    """Each operation's documented codes are exactly those the tables above get from it."""
    reached = {
        (
            documented_path(request["path"]),
            request["method"].lower(),
            status,
            code if status >= 400 else "",
        )
        for _, _, _, request, status, code in REACHABLE
    }
    documented = {
        (path, method, int(status), code)
        for path, method, operation in operations()
        if path in ("/publish", "/events", "/presence") or path.startswith(MERCURE)
        for status, response in operation["responses"].items()
        for code in (error_codes_of(response) if int(status) >= 400 else [""])
    }
    assert documented == reached


def with_examples(test: Any) -> Any:
    """The table's requests that need no other settings run in the property test every time."""
    for _, overrides, setup, request, _, _ in reversed(REACHABLE):
        if not overrides and not setup:
            test = example(request=request)(test)
    return test


@settings(
    max_examples=800,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@with_examples
@given(request=requests())
def test_generated_requests_get_only_documented_answers_and_refusals_store_nothing(
    fuzz_app: Any, redis_client: redis.Redis, request: dict[str, Any]
) -> None:
    status, code = answer(fuzz_app, redis_client, request)
    assert status < 500
    event(f"{request['method']} {request['path']} {status} {code}")


def test_the_mercure_limits_the_document_states_are_the_hubs() -> None:
    from realtime.mercure import selectors, subscriptions, updates

    assert (openapi.MAX_SELECTORS, openapi.MAX_SELECTOR_LENGTH) == (
        selectors.MAX_SELECTORS,
        selectors.MAX_SELECTOR_LENGTH,
    )
    assert openapi.JSON_LD_CONTEXT == subscriptions.JSON_LD_CONTEXT
    assert (openapi.EARLIEST, openapi.HUB_EVENT_TYPE) == (updates.EARLIEST, updates.HUB_EVENT_TYPE)
    assert (openapi.MAX_ID_LENGTH, openapi.MAX_TYPE_LENGTH, openapi.MAX_RETRY_DIGITS) == (
        updates.MAX_ID_LENGTH,
        updates.MAX_TYPE_LENGTH,
        updates.MAX_RETRY_DIGITS,
    )
