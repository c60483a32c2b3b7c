"""Canonical bytes (RFC 8785 / JCS), decimal strings, timestamps and entry ids.

Spec §2: every signed statement is a JSON object serialized with JCS; no floats anywhere
in signed data; integers within ±(2^53−1); non-integer quantities are decimal strings;
timestamps are RFC 3339 UTC with ``Z``; ``entry_id`` is the SHA-256 of the canonical bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import rfc8785

from protocol.errors import CanonicalFormError, FloatInSignedDataError, OversizeError, SchemaError

MAX_SAFE_INT = 2**53 - 1
#: Nesting depth accepted in signed JSON (spec §2.4); deep JSON is a denial-of-service vector.
MAX_DEPTH = 32
#: Largest canonical statement accepted, in bytes (spec §2.4).
MAX_STATEMENT_BYTES = 1_048_576

DECIMAL_RE = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
#: ASCII digits only: ``\d`` would also admit other scripts' digits (``"٢٠٢٥-…"``), a second
#: spelling of one instant that other implementations' patterns (ECMAScript ``\d``) refuse.
TIME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$")
#: A UTF-16 surrogate code point in a decoded string: only a lone one can get there, from
#: a JSON escape (UTF-8 cannot encode surrogates, and a valid escaped pair decodes to one
#: code point above U+FFFF).
_SURROGATE = re.compile("[\ud800-\udfff]")
#: An escape that may decode to a surrogate; strings are searched only when one occurs.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_string(s: str, where: str) -> None:
    # A lone surrogate (only reachable through a "\\ud800"-style escape) has no UTF-8 and
    # hence no RFC 8785 form (spec §2.1); refusing it here keeps it from reaching the
    # UTF-16 key sort, which would fail with an encoding error instead of a refusal.
    if _SURROGATE.search(s):
        raise CanonicalFormError(f"lone surrogate in {where}: a string with no canonical form")


def _check_value(value: Any, depth: int, path: str) -> None:
    """Refuse what has no canonical form; ``depth`` counts the containers around ``value``."""
    if isinstance(value, str):
        _check_string(value, f"the string at {path or '$'}")
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float):
        raise FloatInSignedDataError(f"float {value!r} at {path or '$'}: use a decimal string")
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise CanonicalFormError(f"integer at {path or '$'} is outside ±(2^53−1)")
        return
    # Spec §2.4: one depth rule for signer and verifier, counted as the parser counts it
    # (every object or array is a level, the statement itself the first), so nothing is
    # signed that a verifier refuses.
    if depth + 1 > MAX_DEPTH:
        raise OversizeError(f"JSON nested deeper than {MAX_DEPTH} levels at {path or '$'}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CanonicalFormError(f"non-string key at {path or '$'}")
            _check_string(k, f"a key of {path or '$'}")
            _check_value(v, depth + 1, f"{path}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_value(v, depth + 1, f"{path}[{i}]")
        return
    raise CanonicalFormError(f"unsupported JSON value of type {type(value).__name__} at {path or '$'}")


def canonical_bytes(obj: Mapping[str, Any], *, max_bytes: int | None = None) -> bytes:
    """Return the RFC 8785 bytes of a JSON object, refusing what a verifier would refuse.

    Floats, unsafe integers, lone surrogates and nesting deeper than :data:`MAX_DEPTH` are
    refused as :func:`parse_canonical` refuses them; with ``max_bytes`` (signers of
    statements pass :data:`MAX_STATEMENT_BYTES`) so is a result longer than that.
    """
    if not isinstance(obj, Mapping):
        raise CanonicalFormError("a signed statement must be a JSON object")
    _check_value(obj, 0, "")
    try:
        out: bytes = rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, UnicodeError) as e:
        # Unreachable after _check_value; kept so no encoding error can escape as a crash.
        raise CanonicalFormError(f"no RFC 8785 form: {e}") from e
    if max_bytes is not None and len(out) > max_bytes:
        # Spec §2.4: the verifier refuses it before parsing, so it must never be signed.
        raise OversizeError(f"JSON is {len(out)} bytes; the limit is {max_bytes}")
    return out


def _reject_float(s: str) -> Any:
    raise FloatInSignedDataError(f"float {s} in signed data: use a decimal string")


def _checked_int(s: str) -> int:
    v = int(s)
    if not -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
        raise CanonicalFormError(f"integer {s[:24]} is outside ±(2^53−1)")
    return v


def _reject_constant(s: str) -> Any:
    raise CanonicalFormError(f"{s} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise CanonicalFormError(f"duplicate key {k!r}")
        out[k] = v
    return out


def parse_json_strict(data: bytes, *, max_bytes: int = MAX_STATEMENT_BYTES) -> Any:
    """Parse JSON refusing floats, NaN/Infinity, duplicate keys and excessive size/depth."""
    if len(data) > max_bytes:
        raise OversizeError(f"JSON is {len(data)} bytes; the limit is {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CanonicalFormError(f"not UTF-8: {e.reason}") from e
    try:
        obj = json.loads(
            text,
            parse_float=_reject_float,
            parse_int=_checked_int,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (CanonicalFormError, OversizeError):
        raise
    except RecursionError as e:
        raise OversizeError(f"JSON nested deeper than {MAX_DEPTH} levels") from e
    except ValueError as e:
        raise CanonicalFormError(f"not valid JSON: {e}") from e
    # Checked after parsing, when every string is known to be terminated, so the regex in
    # _bracket_depth runs in linear time; the bracket count is a cheap upper bound first.
    if text.count("[") + text.count("{") > MAX_DEPTH and _bracket_depth(text) > MAX_DEPTH:
        raise OversizeError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text):
        _refuse_surrogates(obj)
    return obj


def _refuse_surrogates(obj: Any) -> None:
    """Refuse a lone surrogate in any key or string value (spec §2.1: no canonical form)."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _check_string(value, f"the string at {path or '$'}")
        elif isinstance(value, dict):
            for k, v in value.items():
                _check_string(k, f"a key of {path or '$'}")
                stack.append((v, f"{path}.{k}"))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))


#: Hooks run per number literal (few in a statement): floats and NaN/Infinity are refused,
#: integers range-checked, while the C scanner does the rest.
_FAST_DECODER = json.JSONDecoder(
    parse_float=_reject_float, parse_int=_checked_int, parse_constant=_reject_constant
)
#: Lead bytes of 4-byte UTF-8 sequences (code points above U+FFFF). Only for those does
#: RFC 8785's UTF-16 key order differ from code point order.
_ASTRAL = re.compile(rb"[\xf0-\xf4]")


def _bracket_depth(text: str) -> int:
    """Nesting depth, counting only brackets outside strings (cheap: strings are cut by regex)."""
    depth = best = 0
    for ch in _BRACKETS.findall(_STRINGS.sub("", text)):
        if ch in "[{":
            depth += 1
            best = max(best, depth)
        else:
            depth -= 1
    return best


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def parse_canonical(payload: bytes, *, max_bytes: int = MAX_STATEMENT_BYTES) -> dict[str, Any]:
    """Parse payload bytes and require that they are already canonical (spec §2.3)."""
    if len(payload) > max_bytes:
        raise OversizeError(f"JSON is {len(payload)} bytes; the limit is {max_bytes}")
    # Fast path (spec §2.3 allows any parser that accepts exactly the canonical bytes):
    # parse with floats refused and integers range-checked, then re-serialize with orjson's
    # sorted keys and compare bytes. Without code points above U+FFFF that serialization
    # is byte-identical to RFC 8785: keys sort the same in UTF-16 and code point order,
    # both write non-ASCII raw and escape exactly '"', '\\' and C0 controls, the same
    # way (tests/protocol check every BMP character and random documents against rfc8785).
    # Duplicate keys cannot survive the byte comparison (re-serialization loses one), so a
    # payload that fails here is re-parsed strictly below for a precise error.
    if payload.isascii() or not _ASTRAL.search(payload):
        try:
            text = payload.decode("utf-8")
            obj = _FAST_DECODER.decode(text)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            try:
                same = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == payload
            except orjson.JSONEncodeError:  # e.g. a lone surrogate: no canonical form
                same = False
            if same and (
                payload.count(b"[") + payload.count(b"{") <= MAX_DEPTH or _bracket_depth(text) <= MAX_DEPTH
            ):
                return obj
    obj = parse_json_strict(payload, max_bytes=max_bytes)
    if not isinstance(obj, dict):
        raise CanonicalFormError("a signed statement must be a JSON object")
    # An ASCII payload that parses has been judged by the fast path already (its parser
    # accepts what the strict one does, duplicates aside): it is not canonical. Others go to
    # rfc8785, which also names a lone surrogate as having no canonical form.
    if payload.isascii() or canonical_bytes(obj) != payload:
        raise CanonicalFormError("payload is valid JSON but not its RFC 8785 canonical form")
    return obj


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def entry_id(payload: bytes) -> str:
    """``entry_id``: lowercase hex SHA-256 of the canonical statement bytes (spec §2.5)."""
    return hashlib.sha256(payload).hexdigest()


def digest_of(obj: Mapping[str, Any]) -> str:
    """Content address of a JSON object: SHA-256 of its canonical bytes (policies, suites)."""
    return sha256_hex(canonical_bytes(obj))


# --- decimal strings ---------------------------------------------------------------------


def to_decimal(s: str) -> Decimal:
    """Parse a decimal string from signed data; raise :class:`SchemaError` if malformed."""
    # fullmatch: re's "$" also matches before a trailing newline.
    if not isinstance(s, str) or not DECIMAL_RE.fullmatch(s):
        raise SchemaError(f"{s!r} is not a decimal string")
    try:
        return Decimal(s)
    except InvalidOperation as e:  # pragma: no cover - regex already guarantees this
        raise SchemaError(f"{s!r} is not a decimal string") from e


def decimal_str(value: Decimal | int | float | str, places: int | None = 6) -> str:
    """Format a number as a decimal string for signed data.

    Floats are accepted only here, at the edge where measurements are made, and are
    rounded to ``places`` decimal places; the result never uses an exponent unless
    ``places`` is None and the value is huge.
    """
    if isinstance(value, str):
        to_decimal(value)
        return value
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not d.is_finite():
        raise SchemaError(f"{value!r} is not finite")
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places))
        text = format(d, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        return text
    text = format(d, "f") if abs(d.adjusted()) < 20 else format(d, "E").replace("E+", "E")
    return text


# --- timestamps --------------------------------------------------------------------------


def format_time(dt: datetime) -> str:
    """RFC 3339 UTC with ``Z``, second precision unless there are microseconds."""
    if dt.tzinfo is None:
        raise SchemaError("naive datetime: timestamps must be timezone-aware")
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str) -> datetime:
    """Parse an RFC 3339 UTC ``Z`` timestamp from signed data."""
    if not isinstance(s, str) or not TIME_RE.fullmatch(s):
        raise SchemaError(f"{s!r} is not an RFC 3339 UTC timestamp ending in Z")
    base, _, frac = s[:-1].partition(".")
    try:
        # The pattern fixed the shape, so the ISO parser (several times faster than strptime)
        # only checks the calendar and clock ranges.
        dt = datetime.fromisoformat(base).replace(tzinfo=UTC)
    except ValueError as e:
        raise SchemaError(f"{s!r} is not a valid date-time") from e
    if frac:
        dt = dt.replace(microsecond=int((frac + "000000")[:6]))
    return dt


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, truncated to seconds."""
    return datetime.now(UTC).replace(microsecond=0)
