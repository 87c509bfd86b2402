"""Tests for :mod:`realtime.core.publishing`: request bodies in, drafts or a stable error code
out."""

from __future__ import annotations

import pytest

from realtime.core.errors import ClientError, PayloadTooLarge
from realtime.core.events import Draft
from realtime.core.publishing import (
    MAX_IDEMPOTENCY_KEY,
    data_text,
    draft,
    parse_form,
    parse_json,
    parse_publish,
    validate_data,
    validate_idempotency_key,
)
from realtime.core.topics import RESERVED_TYPES

MAX_PAYLOAD = 60  # divisible by 2, 3 and 4, so multi-byte characters fill it exactly
MAX_BATCH = 3
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def parse(body: bytes) -> tuple[list[Draft], bool]:
    return parse_publish(JSON, body=body, max_payload=MAX_PAYLOAD, max_batch=MAX_BATCH)


def refused(body: bytes) -> ClientError:
    with pytest.raises(ClientError) as info:
        parse(body)
    return info.value


def event_body(raw_data: str) -> bytes:
    """A single-event body whose ``data`` is the JSON text ``raw_data``."""
    return ('{"topic": "t", "data": ' + raw_data + "}").encode("utf-8")


# -- accepted ------------------------------------------------------------------------------------


def test_json_single_event_becomes_one_draft_and_is_not_a_batch() -> None:
    body = b'{"topic": "orders", "type": "created", "data": "hello"}'
    assert parse(body) == ([Draft(topic="orders", type="created", data="hello")], False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"hello"', "hello"),
        ('""', ""),
        ('"  spaced  "', "  spaced  "),
        ('"line1\\nline2\\n"', "line1\nline2\n"),
        ('"{\\"a\\": 1}"', '{"a": 1}'),
        ('"caf\\u00e9 \\u2603"', "café ☃"),
        ('"nul\\u0000inside"', "nul\0inside"),
        ('"tab\\there"', "tab\there"),
    ],
)
def test_string_data_is_delivered_verbatim(raw: str, expected: str) -> None:
    drafts, _ = parse(event_body(raw))
    assert drafts[0].data == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{ "a" : 1 , "b" : [ 1 , 2 ] }', '{"a":1,"b":[1,2]}'),
        ("{}", "{}"),
        ('[1, "x", null]', '[1,"x",null]'),
        ("[]", "[]"),
        ("42", "42"),
        ("-1.5", "-1.5"),
        ("1e3", "1000.0"),
        ("true", "true"),
        ("false", "false"),
        ("null", "null"),
        ('{"name": "caf\\u00e9 \\u2603"}', '{"name":"café ☃"}'),
        ('{"text": "a\\rb"}', '{"text":"a\\rb"}'),  # a CR inside JSON text is an escape, not a CR
    ],
)
def test_non_string_data_is_delivered_as_compact_json_text(raw: str, expected: str) -> None:
    drafts, _ = parse(event_body(raw))
    assert drafts[0].data == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ({"a": [1, 2]}, '{"a":[1,2]}'),
        (["é"], '["é"]'),
        (0, "0"),
        (True, "true"),
        (None, "null"),
    ],
)
def test_data_text_keeps_strings_and_compacts_everything_else(value: object, expected: str) -> None:
    assert data_text(value) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"topic": "t", "data": "x"}',
        b'{"topic": "t", "type": null, "data": "x"}',
        b'{"topic": "t", "type": "", "data": "x"}',
    ],
)
def test_type_defaults_to_message(body: bytes) -> None:
    drafts, _ = parse(body)
    assert drafts[0].type == "message"


def test_batch_of_several_keeps_order_and_reports_a_batch() -> None:
    body = (
        b'{"events": ['
        b'{"topic": "a", "data": "1"},'
        b'{"topic": "b", "type": "t", "data": {"n": 2}},'
        b'{"topic": "a", "data": 3}'
        b"]}"
    )
    assert parse(body) == (
        [
            Draft(topic="a", type="message", data="1"),
            Draft(topic="b", type="t", data='{"n":2}'),
            Draft(topic="a", type="message", data="3"),
        ],
        True,
    )


def test_batch_of_one_is_still_a_batch() -> None:
    assert parse(b'{"events": [{"topic": "a", "data": "x"}]}') == (
        [Draft(topic="a", type="message", data="x")],
        True,
    )


def test_batch_of_exactly_max_batch_is_accepted() -> None:
    body = b'{"events": [' + b",".join([b'{"topic": "a", "data": "x"}'] * MAX_BATCH) + b"]}"
    drafts, batch = parse_json(body, max_payload=MAX_PAYLOAD, max_batch=MAX_BATCH)
    assert (len(drafts), batch) == (MAX_BATCH, True)


def test_json_without_a_body_is_invalid_json() -> None:
    with pytest.raises(ClientError) as info:
        parse_publish(JSON, body=None, max_payload=MAX_PAYLOAD, max_batch=MAX_BATCH)
    assert (info.value.code, info.value.status) == ("invalid_json", 400)


# -- refused with 400 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"data": "x"}', "missing_topic"),
        (b'{"topic": "", "data": "x"}', "missing_topic"),
        (b'{"topic": null, "data": "x"}', "missing_topic"),
        (b'{"topic": "a b", "data": "x"}', "invalid_topic"),
        (b'{"topic": "a*", "data": "x"}', "invalid_topic"),
        (b'{"topic": 42, "data": "x"}', "invalid_topic"),
        (b'{"topic": ["a"], "data": "x"}', "invalid_topic"),
        (b'{"topic": "a", "type": "bad type", "data": "x"}', "invalid_type"),
        (b'{"topic": "a", "type": 7, "data": "x"}', "invalid_type"),
        (b'{"topic": "a", "type": "a/b", "data": "x"}', "invalid_type"),
        (b'{"topic": "a"}', "missing_data"),
        (b'{"topic": "a", "type": "t"}', "missing_data"),
        (b'{"topic": "a", "data": "x", "tpoic": "b"}', "unknown_field"),
        (b'{"topic": "a", "data": "x", "id": "1"}', "unknown_field"),
        (b'{"topic": "a", "data": "a\\rb"}', "invalid_data"),
        (b'{"topic": "a", "data": "a\\r\\nb"}', "invalid_data"),
        (b'{"topic": "a", "data": "\\ud800"}', "invalid_data"),
        (b'{"topic": "a", "data": "x\\udfffy"}', "invalid_data"),
        (b'{"topic": "a", "data": ["\\ud800"]}', "invalid_data"),
        (b'{"topic": "a", "data": {"\\ud800": 1}}', "invalid_data"),
        (b'{"topic": "a", "data": NaN}', "invalid_json"),
        (b'{"topic": "a", "data": Infinity}', "invalid_json"),
        (b'{"topic": "a", "data": -Infinity}', "invalid_json"),
        (b'{"topic": "a", "data": [1, NaN]}', "invalid_json"),
        (b'{"topic": "a", "data": "caf\xe9"}', "invalid_json"),  # Latin-1, not UTF-8
        (b"\xff\xfe{\x00}\x00", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"topic": "a", "data": "x"', "invalid_json"),
        (b'{"topic": "a", "data": "x"} trailing', "invalid_json"),
        (b"[]", "invalid_json"),
        (b'[{"topic": "a", "data": "x"}]', "invalid_json"),
        (b'"text"', "invalid_json"),
        (b"42", "invalid_json"),
        (b"null", "invalid_json"),
        (b'{"events": [{"topic": "a", "data": "x"}], "topic": "a"}', "invalid_batch"),
        (b'{"events": [], "extra": 1}', "invalid_batch"),
        (b'{"events": []}', "invalid_batch"),
        (b'{"events": null}', "invalid_batch"),
        (b'{"events": {"topic": "a", "data": "x"}}', "invalid_batch"),
        (b'{"events": [{"topic": "a", "data": "x"}, "x"]}', "invalid_batch"),
        (b'{"events": [{"topic": "a", "data": "x"}, null]}', "invalid_batch"),
        (b'{"events": [[{"topic": "a", "data": "x"}]]}', "invalid_batch"),
        (b'{"events": [{"topic": "a", "data": "x"}, {"topic": "b"}]}', "missing_data"),
        (b'{"events": [{"topic": "a", "data": "x"}, {"data": "x"}]}', "missing_topic"),
        (b'{"events": [{"topic": "a", "data": "x", "extra": 1}]}', "unknown_field"),
    ],
)
def test_bad_json_body_is_refused_with_its_code_and_400(body: bytes, code: str) -> None:
    error = refused(body)
    assert (error.code, error.status) == (code, 400)


@pytest.mark.parametrize("event_type", sorted(RESERVED_TYPES))
def test_reserved_type_is_refused_with_its_own_code(event_type: str) -> None:
    error = refused(f'{{"topic": "a", "type": "{event_type}", "data": "x"}}'.encode())
    assert (error.code, error.status) == ("reserved_type", 400)


@pytest.mark.parametrize("size", [MAX_BATCH + 1, 100])
def test_batch_over_max_batch_is_batch_too_large(size: int) -> None:
    body = b'{"events": [' + b",".join([b'{"topic": "a", "data": "x"}'] * size) + b"]}"
    error = refused(body)
    assert (error.code, error.status) == ("batch_too_large", 400)
    assert str(MAX_BATCH) in error.message


def test_batch_item_error_names_its_index() -> None:
    error = refused(b'{"events": [{"topic": "a", "data": "x"}, {"topic": "a", "data": "\\r"}]}')
    assert error.code == "invalid_data"
    assert "events[1]" in error.message


# -- payload size --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        "a" * MAX_PAYLOAD,
        "é" * (MAX_PAYLOAD // 2),  # 2 bytes each
        "€" * (MAX_PAYLOAD // 3),  # 3 bytes each
        "😀" * (MAX_PAYLOAD // 4),  # 4 bytes each
        "€" * (MAX_PAYLOAD // 3 - 1) + "é" + "a",
    ],
)
def test_data_of_exactly_max_payload_utf8_bytes_is_accepted(data: str) -> None:
    assert len(data.encode("utf-8")) == MAX_PAYLOAD
    assert validate_data(data, MAX_PAYLOAD) == data
    drafts, _ = parse(event_body(f'"{data}"'))
    assert drafts[0].data == data


@pytest.mark.parametrize(
    "data",
    [
        "a" * (MAX_PAYLOAD + 1),
        "é" * (MAX_PAYLOAD // 2) + "a",
        "€" * (MAX_PAYLOAD // 3) + "a",
        "😀" * (MAX_PAYLOAD // 4) + "a",
        "a" + "é" * (MAX_PAYLOAD // 2),
    ],
)
def test_data_of_max_payload_plus_one_utf8_byte_is_payload_too_large(data: str) -> None:
    assert len(data.encode("utf-8")) == MAX_PAYLOAD + 1
    with pytest.raises(PayloadTooLarge) as info:
        parse(event_body(f'"{data}"'))
    assert (info.value.code, info.value.status) == ("payload_too_large", 413)


def test_characters_under_the_limit_but_bytes_over_it_are_too_large() -> None:
    data = "é" * (MAX_PAYLOAD // 2 + 1)
    assert len(data) < MAX_PAYLOAD
    with pytest.raises(PayloadTooLarge) as info:
        validate_data(data, MAX_PAYLOAD)
    assert info.value.status == 413


def test_non_string_data_is_measured_as_its_compact_json_text() -> None:
    # '["' + 56 characters + '"]' is 60 bytes of JSON text; one more character is 61.
    fits = event_body('[ "' + "a" * (MAX_PAYLOAD - 4) + '" ]')
    over = event_body('["' + "a" * (MAX_PAYLOAD - 3) + '"]')
    assert len(parse(fits)[0][0].data) == MAX_PAYLOAD
    with pytest.raises(PayloadTooLarge):
        parse(over)


def test_oversize_item_in_a_batch_is_payload_too_large() -> None:
    body = b'{"events": [{"topic": "a", "data": "x"}, {"topic": "a", "data": "%s"}]}' % (
        b"a" * (MAX_PAYLOAD + 1)
    )
    with pytest.raises(PayloadTooLarge) as info:
        parse(body)
    assert "events[1]" in info.value.message


# -- media types and forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "mimetype", ["", "text/plain", "application/xml", "application/merge-patch+json"]
)
def test_unsupported_media_type_is_415(mimetype: str) -> None:
    with pytest.raises(ClientError) as info:
        parse_publish(
            mimetype, body=b'{"topic": "a", "data": "x"}', max_payload=MAX_PAYLOAD, max_batch=1
        )
    assert (info.value.code, info.value.status) == ("unsupported_media_type", 415)


@pytest.mark.parametrize("mimetype", [FORM, "multipart/form-data"])
def test_form_publishes_one_event(mimetype: str) -> None:
    form = {"topic": ["orders"], "type": ["created"], "data": ["hello world"]}
    assert parse_publish(mimetype, form=form, max_payload=MAX_PAYLOAD, max_batch=1) == (
        [Draft(topic="orders", type="created", data="hello world")],
        False,
    )


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"topic": ["a"], "data": ["x"]}, Draft(topic="a", type="message", data="x")),
        ({"topic": ["a"], "type": [""], "data": [""]}, Draft(topic="a", type="message", data="")),
        ({"topic": ["a"], "data": ['{"n": 1}']}, Draft(topic="a", type="message", data='{"n": 1}')),
    ],
)
def test_form_fields_are_taken_as_text(form: dict[str, list[str]], expected: Draft) -> None:
    assert parse_form(form, max_payload=MAX_PAYLOAD) == [expected]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"topic": ["a", "b"], "data": ["x"]}, "bad_form"),
        ({"topic": ["a"], "data": ["x", "y"]}, "bad_form"),
        ({"topic": [], "data": ["x"]}, "bad_form"),
        ({"topic": ["a"]}, "missing_data"),
        ({"data": ["x"]}, "missing_topic"),
        ({"topic": ["a"], "data": ["x"], "token": ["t"]}, "unknown_field"),
        ({"topic": ["a"], "data": ["line\r\nbreak"]}, "invalid_data"),
        ({"topic": ["a"], "type": ["reset"], "data": ["x"]}, "reserved_type"),
    ],
)
def test_bad_form_is_refused_with_its_code_and_400(form: dict[str, list[str]], code: str) -> None:
    with pytest.raises(ClientError) as info:
        parse_publish(FORM, form=form, max_payload=MAX_PAYLOAD, max_batch=1)
    assert (info.value.code, info.value.status) == (code, 400)


def test_draft_error_names_where_the_event_came_from() -> None:
    with pytest.raises(ClientError) as info:
        draft({"topic": "a"}, MAX_PAYLOAD, "events[4]")
    assert info.value.message == "events[4] has no data."


# -- idempotency keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [None, "k", "order-42", "retry 1: ~!@#$%^&*()", "a" * MAX_IDEMPOTENCY_KEY],
)
def test_valid_idempotency_key_is_returned(key: str | None) -> None:
    assert validate_idempotency_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", "a" * 256, "clé", "键", "a\nb", "a\tb", "a\rb", "\x00", "a\x7f", "\x1b[31m"],
)
def test_invalid_idempotency_key_is_refused(key: str) -> None:
    with pytest.raises(ClientError) as info:
        validate_idempotency_key(key)
    assert (info.value.code, info.value.status) == ("invalid_idempotency_key", 400)


# -- regressions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "[1e999]"])
def test_number_overflowing_a_float_is_a_client_error(raw: str) -> None:
    # Regression: json.loads reads 1e400 as inf (parse_constant never sees it) and the compact
    # re-encoding raised a plain ValueError: POST /publish answered 500.
    error = refused(event_body(raw))
    assert error.status == 400
    assert error.code in {"invalid_json", "invalid_data"}


def test_deeply_nested_data_is_a_client_error() -> None:
    # Regression: a 200 kB body of nested lists raised RecursionError, answered as a 500.
    depth = 100_000
    error = refused(event_body("[" * depth + "]" * depth))
    assert (error.code, error.status) == ("invalid_json", 400)
