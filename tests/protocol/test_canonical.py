"""Canonical bytes (spec §2): RFC 8785 agreement, strict parsing, decimals, timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INT,
    canonical_bytes,
    decimal_str,
    entry_id,
    format_time,
    parse_canonical,
    parse_json_strict,
    parse_time,
    to_decimal,
)
from protocol.errors import CanonicalFormError, FloatInSignedDataError, OversizeError, SchemaError

ascii_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=12)
any_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),  # lone surrogates have no UTF-8 form
    max_size=12,
)
scalars = st.none() | st.booleans() | st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT) | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(any_text, json_values, max_size=6)


@settings(max_examples=400, deadline=None)
@given(json_objects)
def test_canonical_round_trip_and_fast_path_agree_with_rfc8785(obj: dict[str, Any]) -> None:
    reference = rfc8785.dumps(obj)
    assert canonical_bytes(obj) == reference
    # parse_canonical takes the ASCII fast path for ASCII payloads and rfc8785 otherwise;
    # either way the reference bytes are accepted and round-trip to the same object.
    assert parse_canonical(reference) == obj
    assert canonical_bytes(parse_canonical(reference)) == reference


@settings(max_examples=300, deadline=None)
@given(json_objects)
def test_non_canonical_serializations_are_refused(obj: dict[str, Any]) -> None:
    reference = rfc8785.dumps(obj)
    for variant in (
        json.dumps(obj, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps(obj, ensure_ascii=False, sort_keys=True).encode(),
        json.dumps(obj, ensure_ascii=False, sort_keys=False, separators=(",", ":")).encode(),
    ):
        if variant == reference:
            assert parse_canonical(variant) == obj
        else:
            with pytest.raises(CanonicalFormError, match="not its RFC 8785 canonical form"):
                parse_canonical(variant)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ascii_text, st.lists(ascii_text | st.integers(-1000, 1000), max_size=3), max_size=5))
def test_ascii_fast_path_matches_rfc8785_on_ascii_objects(obj: dict[str, Any]) -> None:
    reference = rfc8785.dumps(obj)
    assert reference.isascii()  # control characters are escaped, DEL is not
    assert parse_canonical(reference) == obj


def test_fast_path_agrees_with_rfc8785_on_every_bmp_character() -> None:
    # The fast path re-serializes with orjson; it must write each character exactly as
    # RFC 8785 does (raw, or the same escape), or it would accept non-canonical bytes.
    for cp in range(0x10000):
        if 0xD800 <= cp < 0xE000:
            continue
        obj = {"k": chr(cp)}
        reference = rfc8785.dumps(obj)
        assert parse_canonical(reference) == obj, hex(cp)
        escaped = b'{"k":"\\u%04x"}' % cp
        if escaped != reference:
            with pytest.raises(CanonicalFormError):
                parse_canonical(escaped)


def test_keys_above_the_bmp_sort_in_utf16_order() -> None:
    # U+1F600 is D83D DE00 in UTF-16, so it sorts before U+FFFF; code point order reverses them.
    obj = {"\uffff": 1, "\U0001f600": 2}
    reference = rfc8785.dumps(obj)
    assert reference.index("\U0001f600".encode()) < reference.index("\uffff".encode())
    assert parse_canonical(reference) == obj
    code_point_order = '{"\uffff":1,"\U0001f600":2}'.encode()
    with pytest.raises(CanonicalFormError, match="not its RFC 8785 canonical form"):
        parse_canonical(code_point_order)


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        # An ASCII payload whose escape parses to a non-ASCII character: the canonical form
        # writes it raw, so these bytes are not canonical (was an uncaught UnicodeEncodeError).
        (b'{"a":"\\u00e9"}', CanonicalFormError, "not its RFC 8785 canonical form"),
        (b'{"a":"\\ud800"}', CanonicalFormError, r"lone surrogate in the string at \.a"),
        ('{"a":"\\ud800é"}'.encode(), CanonicalFormError, r"lone surrogate in the string at \.a"),
        # The key sort of RFC 8785 encodes keys as UTF-16: a lone surrogate there used to
        # escape as UnicodeEncodeError (an HTTP 500 sinking the whole batch).
        ('{"\\ud800":1,"b":"é"}'.encode(), CanonicalFormError, r"lone surrogate in a key of \$"),
        (b'{"\\udfff":1}', CanonicalFormError, r"lone surrogate in a key of \$"),
        ('{"a":{"\\udc00x":[1]},"é":2}'.encode(), CanonicalFormError, r"lone surrogate in a key of \.a"),
        ('{"a":["\\ud83d"],"é":2}'.encode(), CanonicalFormError, r"lone surrogate in the string at \.a\[0\]"),
        # A valid pair written as escapes is one character above U+FFFF: not lone, but
        # canonical form writes it raw.
        (b'{"a":"\\ud83d\\ude00"}', CanonicalFormError, "not its RFC 8785 canonical form"),
        (b'{"a":1.5}', FloatInSignedDataError, "float 1.5"),
        (b'{"a":1e3}', FloatInSignedDataError, "float 1e3"),
        (b'{"a":NaN}', CanonicalFormError, "NaN is not JSON"),
        (b'{"a":9007199254740992}', CanonicalFormError, "outside"),
        (b'{"a":1,"a":1}', CanonicalFormError, "duplicate key 'a'"),
        (b"[1]", CanonicalFormError, "must be a JSON object"),
        (b'{"a":1} ', CanonicalFormError, "not its RFC 8785 canonical form"),
        (b'{"a":"\xff"}', CanonicalFormError, "not UTF-8"),
        (b'{"a":', CanonicalFormError, "not valid JSON"),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), OversizeError, "nested deeper"),
    ],
    ids=[
        "escaped_non_ascii",
        "lone_surrogate_ascii",
        "lone_surrogate_utf8",
        "lone_surrogate_in_key_with_non_ascii",
        "lone_low_surrogate_in_key",
        "lone_surrogate_in_nested_key",
        "lone_surrogate_in_list",
        "escaped_surrogate_pair",
        "float",
        "exponent",
        "nan",
        "int_too_big",
        "duplicate_key",
        "array_top_level",
        "trailing_space",
        "bad_utf8",
        "truncated",
        "too_deep",
    ],
)
def test_parse_canonical_rejections(payload: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_canonical(payload)


def test_size_limit_checked_before_parsing() -> None:
    with pytest.raises(OversizeError, match="the limit is 10"):
        parse_json_strict(b'{"a":"0123456789"}', max_bytes=10)


@pytest.mark.parametrize(
    ("obj", "error", "message"),
    [
        ({"a": 0.5}, FloatInSignedDataError, r"float 0.5 at \.a"),
        ({"a": [MAX_SAFE_INT + 1]}, CanonicalFormError, r"outside"),
        ({"a": {1: 2}}, CanonicalFormError, "non-string key"),
        ({"a": {1, 2}}, CanonicalFormError, "unsupported JSON value of type set"),
        ({"a": "\ud800"}, CanonicalFormError, r"lone surrogate in the string at \.a"),
        ({"\ud800": 1, "b": "é"}, CanonicalFormError, r"lone surrogate in a key of \$"),
        ({"a": [{"\udfff": 1}]}, CanonicalFormError, r"lone surrogate in a key of \.a\[0\]"),
        ({"a": "x" * 100}, OversizeError, "the limit is 64"),
    ],
    ids=["float", "unsafe_int", "int_key", "set", "lone_surrogate", "lone_surrogate_in_key",
         "lone_surrogate_in_nested_key", "over_byte_limit"],
)
def test_canonical_bytes_rejections(obj: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        canonical_bytes(obj, max_bytes=64)


def _nested(levels: int, innermost: Any) -> dict[str, Any]:
    """An object ``levels`` containers deep (the object itself is level 1)."""
    value: Any = innermost
    for i in range(levels - 1):
        value = [value] if i % 2 else {"k": value}
    return {"k": value}


@pytest.mark.parametrize(
    ("levels", "innermost"),
    [(MAX_DEPTH - 1, 1), (MAX_DEPTH, 1), (MAX_DEPTH, {}), (MAX_DEPTH, []), (MAX_DEPTH + 1, 1),
     (MAX_DEPTH + 1, {}), (MAX_DEPTH + 1, [])],
    ids=["depth_31", "depth_32", "depth_32_empty_object", "depth_32_empty_list", "depth_33_scalar",
         "nesting_depth_33_empty_object", "nesting_depth_33_empty_list"],
)
def test_signer_and_verifier_share_one_depth_rule(levels: int, innermost: Any) -> None:
    # Spec §2.4: containers count as levels for signer and verifier alike, so a signer can
    # never produce bytes (an empty container at level 33) that every verifier refuses.
    obj = _nested(levels, innermost)
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    nesting = levels + (1 if isinstance(innermost, dict | list) else 0)
    if nesting > MAX_DEPTH:
        with pytest.raises(OversizeError, match=f"nested deeper than {MAX_DEPTH} levels"):
            canonical_bytes(obj)
        with pytest.raises(OversizeError, match=f"nested deeper than {MAX_DEPTH} levels"):
            parse_canonical(text)
    else:
        assert canonical_bytes(obj) == text
        assert parse_canonical(text) == obj


surrogate_text = st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4)
hostile_values = st.recursive(
    st.none() | st.integers(-5, 5) | surrogate_text | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(surrogate_text | any_text, inner, max_size=3),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(surrogate_text | any_text, hostile_values, max_size=4))
def test_canonical_bytes_signs_only_what_parse_canonical_accepts(obj: dict[str, Any]) -> None:
    # Lone surrogates anywhere and any nesting: the signer either refuses with a protocol
    # error or produces bytes the verifier accepts as the same object.
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in _strings(obj))
    deep = _depth(obj) > MAX_DEPTH
    try:
        payload = canonical_bytes(obj)
    except (CanonicalFormError, OversizeError) as signed:
        assert lone or deep
        with pytest.raises((CanonicalFormError, OversizeError)) as parsed:
            parse_canonical(text.encode())
        if lone != deep:  # one defect: both sides name it with the same code
            assert parsed.value.code == signed.code == ("non-canonical" if lone else "oversize")
        return
    assert not lone and not deep
    assert parse_canonical(payload) == obj


def _strings(value: Any) -> str:
    if isinstance(value, dict):
        return "".join(k + _strings(v) for k, v in value.items())
    if isinstance(value, list):
        return "".join(_strings(v) for v in value)
    return value if isinstance(value, str) else ""


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_entry_id_is_sha256_of_payload() -> None:
    assert entry_id(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("value", "places", "expected"),
    [
        (0.1 + 0.2, 6, "0.3"),
        (Decimal("1.2300"), 6, "1.23"),
        (5, 6, "5"),
        (-0.0000001, 6, "0"),
        ("0.7342", 6, "0.7342"),
        (Decimal("1.2e21"), None, "1.2E21"),
        (Decimal("123.45"), None, "123.45"),
    ],
    ids=["float_rounded", "trailing_zeros", "int", "negative_zero", "string_kept", "huge_exponent", "exact"],
)
def test_decimal_str(value: Any, places: int | None, expected: str) -> None:
    out = decimal_str(value, places)
    assert out == expected
    assert to_decimal(out) == Decimal(expected)


@pytest.mark.parametrize("bad", ["1\n", "01", "1.", ".5", "1,5", "NaN", "Infinity", "+1", " 1"])
def test_to_decimal_refuses_non_decimal_strings(bad: str) -> None:
    with pytest.raises(SchemaError, match="is not a decimal string"):
        to_decimal(bad)


def test_decimal_str_refuses_non_finite() -> None:
    with pytest.raises(SchemaError, match="not finite"):
        decimal_str(float("inf"))


def test_time_round_trip_and_normalisation() -> None:
    dt = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert format_time(dt) == "2025-01-01T12:00:00Z"
    assert parse_time("2025-01-01T12:00:00Z") == dt
    assert format_time(dt.astimezone(timezone(timedelta(hours=2)))) == "2025-01-01T12:00:00Z"
    assert parse_time("2025-01-01T12:00:00.123456789Z") == dt.replace(microsecond=123456)
    assert format_time(dt.replace(microsecond=5)) == "2025-01-01T12:00:00.000005Z"


@pytest.mark.parametrize(
    "bad",
    [
        "2025-01-01T12:00:00+00:00",
        "2025-01-01 12:00:00Z",
        "2025-01-01T12:00Z",
        "2025-02-30T00:00:00Z",
        "2025-01-01T12:00:00Z\n",
        "2025-01-01T12:00:00z",
        "\u0662\u0660\u0662\u0665-01-01T12:00:00Z",
        "2025-01-01T12:00:00.\u0661Z",
        "\uff12025-01-01T12:00:00Z",
        "2025-01-01T24:00:00Z",
        "2025-01-01T12:00:60Z",
        "0000-01-01T00:00:00Z",
    ],
    ids=["offset", "space", "no_seconds", "impossible_date", "trailing_newline", "lowercase_z",
         "arabic_indic_digits", "non_ascii_fraction", "fullwidth_digit", "hour_24", "leap_second", "year_0"],
)
def test_parse_time_refuses(bad: str) -> None:
    with pytest.raises(SchemaError):
        parse_time(bad)


def test_signed_timestamps_admit_ascii_digits_only() -> None:
    """A digit of another script is a second spelling of one instant: the models refuse it as
    parse_time does (the pattern, not just the parser)."""
    from pydantic import TypeAdapter, ValidationError

    from protocol.entries import Timestamp

    ta = TypeAdapter(Timestamp)
    assert ta.validate_python("2025-01-01T12:00:00Z") == "2025-01-01T12:00:00Z"
    with pytest.raises(ValidationError):
        ta.validate_python("\u0662\u0660\u0662\u0665-01-01T12:00:00Z")


def test_format_time_refuses_naive() -> None:
    with pytest.raises(SchemaError, match="naive datetime"):
        format_time(datetime(2025, 1, 1))
