"""Shared threshold policy: the content-addressed rule set every node applies.

A policy is authored as YAML (or JSON), validated into frozen models, and addressed by
``digest_of(policy.to_json())``: the SHA-256 of the RFC 8785 bytes of its normalized JSON.
The roster pins that digest, so every node applies exactly the same rules. Loading the
YAML is :mod:`protocol.policy_yaml`; applying the rules to a result, :mod:`protocol.verdicts`.

YAML numbers: an unquoted YAML float such as ``0.60`` is taken as the *exact text the
author wrote* (``"0.60"``), never as a binary float, so ``0.60`` and ``"0.60"`` mean the
same thing. Integers in decimal fields become their decimal text. Non-finite or exotic
YAML numbers (``.inf``, ``1_000.5``, ``.5``) are refused with a :class:`PolicyError`.
In JSON input, floats are refused outright: JSON policies use decimal strings.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from protocol.canonical import DECIMAL_RE, canonical_bytes, digest_of, parse_json_strict
from protocol.errors import PolicyError
from protocol.policy_yaml import MAX_POLICY_BYTES, load_policy_yaml

MAX_RULES = 256
MAX_DECIMAL_CHARS = 64
MAX_TASKS = 1024
MAX_METRICS = 64

Verdict = Literal["ok", "warn", "breach"]
Direction = Literal["higher_is_riskier", "lower_is_riskier"]
Action = Literal["alert", "pause_proposal"]

#: Verdicts are ordered ok < warn < breach; an overall verdict is the worst one.
VERDICT_RANK: Mapping[str, int] = {"ok": 0, "warn": 1, "breach": 2}

#: Decimal arithmetic for verdicts: 100 significant digits, round-half-even. For every
#: realistic input ``value ± z * stderr`` is exact, and where it is not, decimal rounding
#: is fully specified, so no two nodes can disagree.
_CTX = decimal.Context(
    prec=100,
    rounding=decimal.ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


# --- field types ---------------------------------------------------------------------------


def _decimal_text(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a decimal string")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        # A float here came from JSON (YAML floats arrive as their text): the signed form
        # must not depend on binary rounding, so it is refused rather than converted.
        raise ValueError(f'float {v!r} is not allowed: write decimals as strings, e.g. "0.6"')
    if isinstance(v, str):
        if len(v) > MAX_DECIMAL_CHARS or not DECIMAL_RE.fullmatch(v):
            raise ValueError(f'{v[:48]!r} is not a decimal string such as "0.6" or "1.5E18"')
        return v
    raise ValueError(f"expected a decimal string, got {type(v).__name__}")


DecimalStr = Annotated[
    str,
    StringConstraints(max_length=MAX_DECIMAL_CHARS, pattern=DECIMAL_RE.pattern),
    BeforeValidator(_decimal_text),
]
"""A decimal number written as a string (spec: no floats in signed data)."""

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
LabId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=120)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=8000)]
Reason = Annotated[str, StringConstraints(max_length=1000)]


@contextmanager
def _peer_numbers(what: str) -> Iterator[None]:
    """Report a failure of exact arithmetic or of a result model as :class:`PolicyError`.

    Verdicts are computed from numbers other labs signed. Ingest keeps them within their
    numeric domains (spec §2.2), where nothing here can fail; a result that skipped ingest
    (a bundle, a test) must still be refused with a reason and never crash the caller.
    """
    try:
        yield
    except ValidationError as e:
        raise PolicyError(f"{what}: {_explain(e)}") from e
    except (ArithmeticError, ValueError) as e:  # decimal traps, float overflow, bad text
        raise PolicyError(f"{what}: {type(e).__name__}: {e}") from e


def _list_as_tuple(v: Any) -> Any:
    # JSON and YAML have only lists; frozen models hold tuples so they stay immutable.
    return tuple(v) if isinstance(v, list) else v


def _dec(s: str) -> Decimal:
    return Decimal(s)


def fmt_decimal(d: Decimal, places: int = 12) -> str:
    """Render a Decimal for reports: fixed point, at most ``places`` decimals, no trailing zeros."""
    with decimal.localcontext(_CTX):
        q = d.quantize(Decimal(1).scaleb(-places)) if d.adjusted() < 40 else d
    text = format(q, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# --- the policy model ----------------------------------------------------------------------


class Indicator(_Frozen):
    """Which number in an eval result a rule watches."""

    suite: Name
    """Eval suite id, as in the result's ``suite.id``."""
    task: Name
    """Task name within the suite."""
    metric: MetricName
    """Metric name within the task, e.g. ``acc``."""
    direction: Direction
    """Whether larger (``higher_is_riskier``) or smaller values mean more capability."""


class Uncertainty(_Frozen):
    """How measurement error enters the comparison with a level."""

    method: Literal["point", "upper_bound"]
    """``point``: compare the estimate; ``upper_bound``: compare estimate moved z standard
    errors in the risky direction, so a level that cannot be ruled out counts as reached."""
    z: DecimalStr | None = None
    """Number of standard errors for ``upper_bound`` (e.g. "1.96"); absent for ``point``."""

    @model_validator(mode="after")
    def _z_matches_method(self) -> Uncertainty:
        if self.method == "upper_bound":
            if self.z is None:
                raise ValueError("uncertainty method 'upper_bound' needs z, e.g. z: \"1.96\"")
            if _dec(self.z) < 0:
                raise ValueError(f"uncertainty z {self.z} must not be negative")
        elif self.z is not None:
            raise ValueError("uncertainty method 'point' takes no z")
        return self


class Cadence(_Frozen):
    """When a model must be (re-)evaluated: whichever comes first."""

    compute_multiple: DecimalStr
    """Re-evaluate each time effective training compute grows by this factor (e.g. "4")."""
    max_days: Annotated[int, Field(ge=1, le=3650)]
    """Re-evaluate at least this often, in days."""

    @model_validator(mode="after")
    def _grows(self) -> Cadence:
        if _dec(self.compute_multiple) <= 1:
            raise ValueError(f"cadence compute_multiple {self.compute_multiple} must be greater than 1")
        return self


class TrendRule(_Frozen):
    """Trend warning: warn when the forecast's interval reaches the breach level soon."""

    horizon: DecimalStr
    """Compute multiple: warn if the forecast crosses the breach level before
    ``training_flop * horizon`` (e.g. "4" = within the next 4x of compute)."""
    z: DecimalStr | None = None
    """Half-width of the forecast interval in prediction standard errors (older policies);
    give either ``z`` or ``level``."""
    level: DecimalStr | None = None
    """Stated coverage of the prediction interval, e.g. "0.9": a later measurement falls
    inside it that often (calibrated by backtest); its risky edge decides."""
    chance: DecimalStr | None = None
    """The metric's value with no capability (e.g. "0.25" for 4-choice accuracy): the
    forecast's floor. Absent: the curve's floor is fitted."""
    ceiling: DecimalStr | None = None
    """The metric's best possible value (e.g. "1" for accuracy): forecasts never pass it.
    Absent: the curve's ceiling is fitted."""
    warn_chance: DecimalStr | None = None
    """Warn when the forecast gives at least this chance (e.g. "0.2") that the breach level
    is reached within the horizon: the one-sided prediction bound at ``1 - warn_chance``
    decides instead of the interval's risky edge. Requires ``level``; absent: the risky
    edge of the interval at ``level`` (or ``z``) decides, as in older policies."""
    via: MetricName | None = None
    """A smoother metric of the same task (e.g. ``logprob_correct``) to forecast through: its
    power law over compute is mapped to the indicator by a sigmoid fitted on the same
    checkpoints (``protocol.twostep``). Requires ``chance`` and ``ceiling`` and a
    ``higher_is_riskier`` indicator; where the checkpoints do not identify the map yet,
    the direct fit decides and its note says why. Absent: the direct fit."""

    @model_validator(mode="after")
    def _sane(self) -> TrendRule:
        if _dec(self.horizon) < 1:
            raise ValueError(f"forecast horizon {self.horizon} must be at least 1")
        if (self.z is None) == (self.level is None):
            raise ValueError('forecast needs exactly one of level (e.g. "0.9") or z')
        if self.z is not None and _dec(self.z) < 0:
            raise ValueError(f"forecast z {self.z} must not be negative")
        if self.level is not None and not Decimal("0.5") <= _dec(self.level) <= Decimal("0.999"):
            raise ValueError(f"forecast level {self.level} must be between 0.5 and 0.999")
        if self.chance is not None and self.ceiling is not None and _dec(self.chance) == _dec(self.ceiling):
            raise ValueError(f"forecast chance {self.chance} equals its ceiling")
        if self.warn_chance is not None:
            if self.level is None:
                raise ValueError("forecast warn_chance needs level (a calibrated interval), not z")
            if not Decimal("0.01") <= _dec(self.warn_chance) <= Decimal("0.5"):
                raise ValueError(f"forecast warn_chance {self.warn_chance} must be between 0.01 and 0.5")
        if self.via is not None and (self.chance is None or self.ceiling is None):
            raise ValueError(f"forecast via {self.via} needs chance and ceiling (the map's floor and top)")
        return self


class Actions(_Frozen):
    """What a node does when a rule reaches each verdict."""

    warn: Annotated[tuple[Action, ...], BeforeValidator(_list_as_tuple), Field(max_length=2)]
    breach: Annotated[tuple[Action, ...], BeforeValidator(_list_as_tuple), Field(max_length=2)]

    @model_validator(mode="after")
    def _unique(self) -> Actions:
        for name, acts in (("warn", self.warn), ("breach", self.breach)):
            if len(set(acts)) != len(acts):
                raise ValueError(f"actions.{name} lists an action twice")
        return self


class PauseScopeRule(_Frozen):
    """Which runs a pause proposed for this rule's breach covers (spec §6.10)."""

    kind: Literal["all", "compute_above", "domain", "beyond_breach"]
    """``all``: every run; ``compute_above``: runs once they reach ``flop``; ``domain``: runs
    of models in the rule's own ``domain``; ``beyond_breach``: runs once they reach the
    breaching checkpoint's training compute."""
    flop: DecimalStr | None = None
    """For ``compute_above``: the level (FLOP)."""

    @model_validator(mode="after")
    def _flop_iff_compute(self) -> PauseScopeRule:
        if (self.kind == "compute_above") != (self.flop is not None):
            raise ValueError("pause_scope takes flop exactly when its kind is compute_above")
        if self.flop is not None and _dec(self.flop) <= 0:
            raise ValueError(f"pause_scope flop {self.flop} must be positive")
        return self


class LevelNames(_Frozen):
    """Human names a framework gives the two levels (e.g. "High" / "Critical")."""

    alert: Label
    breach: Label


class Rule(_Frozen):
    """One tripwire: an indicator, an alert level below a breach level, and what to do."""

    id: Slug
    """Stable rule id, unique within the policy."""
    domain: Slug
    """Risk domain, e.g. ``cbrn``, ``cyber``, ``autonomy``."""
    title: Title | None = None
    description: Text | None = None
    reference: Label | None = None
    """Where in a published framework this rule comes from (free text)."""
    indicator: Indicator
    alert_level: DecimalStr
    """Early-warning level: reaching it gives ``warn`` (the safety buffer)."""
    breach_level: DecimalStr
    """Reaching it gives ``breach``."""
    level_names: LevelNames | None = None
    uncertainty: Uncertainty
    cadence: Cadence | None = None
    """Absent: this policy sets no evaluation schedule for the rule."""
    forecast: TrendRule | None = None
    """Absent: no trend warnings for the rule."""
    actions: Actions
    pause_scope: PauseScopeRule | None = None
    """Which runs a breach pause covers; absent: every run."""

    @model_validator(mode="after")
    def _levels_ordered(self) -> Rule:
        alert, breach = _dec(self.alert_level), _dec(self.breach_level)
        if self.indicator.direction == "higher_is_riskier" and breach < alert:
            raise ValueError(
                f"rule '{self.id}': breach level {self.breach_level} is below alert level "
                f"{self.alert_level} for a higher_is_riskier indicator"
            )
        if self.indicator.direction == "lower_is_riskier" and breach > alert:
            raise ValueError(
                f"rule '{self.id}': breach level {self.breach_level} is above alert level "
                f"{self.alert_level} for a lower_is_riskier indicator"
            )
        fc = self.forecast
        if fc is not None and fc.chance is not None and fc.ceiling is not None:
            up = _dec(fc.ceiling) > _dec(fc.chance)
            if up != (self.indicator.direction == "higher_is_riskier"):
                raise ValueError(
                    f"rule '{self.id}': forecast ceiling {fc.ceiling} must lie on the risky side "
                    f"of chance {fc.chance} for a {self.indicator.direction} indicator"
                )
        if fc is not None and fc.via is not None:
            if self.indicator.direction != "higher_is_riskier":
                raise ValueError(f"rule '{self.id}': forecast via needs a higher_is_riskier indicator")
            if fc.via == self.indicator.metric:
                raise ValueError(f"rule '{self.id}': forecast via {fc.via} is the indicator's own metric")
        return self


class Policy(_Frozen):
    """A versioned, content-addressed threshold policy shared by every node."""

    id: Slug
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    title: Title
    description: Text
    rules: Annotated[
        tuple[Rule, ...], BeforeValidator(_list_as_tuple), Field(min_length=1, max_length=MAX_RULES)
    ]

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"duplicate rule id '{rule.id}'")
            seen.add(rule.id)
        return self

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_obj(cls, obj: Any) -> Policy:
        """Validate a JSON-shaped object, raising :class:`PolicyError` with the field path."""
        if not isinstance(obj, Mapping):
            raise PolicyError("a policy must be a mapping (YAML) or object (JSON) at the top level")
        try:
            return cls.model_validate(obj)
        except ValidationError as e:
            raise PolicyError(f"invalid policy: {_explain(e)}") from e

    @classmethod
    def from_yaml(cls, text: str) -> Policy:
        """Parse policy YAML text (see the module docstring for how numbers are read)."""
        return cls.from_obj(load_policy_yaml(text))

    @classmethod
    def from_json(cls, data: bytes) -> Policy:
        """Parse policy JSON bytes; floats, duplicate keys and oversize input are refused."""
        try:
            obj = parse_json_strict(data, max_bytes=MAX_POLICY_BYTES)
        except Exception as e:  # every parse failure is a bad policy to the caller
            raise PolicyError(f"policy JSON is invalid: {e}") from e
        return cls.from_obj(obj)

    # -- content address ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The normalized JSON object that is hashed, signed and pinned (absent = omitted)."""
        out: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return out

    def canonical_bytes(self) -> bytes:
        """RFC 8785 bytes of :meth:`to_json`."""
        return canonical_bytes(self.to_json())

    @property
    def digest(self) -> str:
        """Content address pinned in the roster: SHA-256 of the canonical JSON.

        Memoized by content (the frozen model's hash and equality cover every field), so a
        copy made with ``model_copy(update=...)`` gets its own digest, never a stale one;
        the coordinator reads it several times per pass.
        """
        return _policy_digest(self)

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id, or :class:`PolicyError`."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise PolicyError(f"policy '{self.id}' has no rule '{rule_id}'")


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of the policy format (published under ``specs/schemas/``)."""
    schema: dict[str, Any] = Policy.model_json_schema(mode="validation")
    _array_bounds_as_items(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://tripwire.invalid/schemas/policy.schema.json"
    return schema


def _array_bounds_as_items(node: Any) -> None:
    # pydantic writes a tuple's length bounds as minLength/maxLength; JSON Schema spells
    # them minItems/maxItems for arrays, and other validators would silently ignore them.
    if isinstance(node, dict):
        if node.get("type") == "array":
            for old, new in (("minLength", "minItems"), ("maxLength", "maxItems")):
                if old in node:
                    node[new] = node.pop(old)
        for v in node.values():
            _array_bounds_as_items(v)
    elif isinstance(node, list):
        for v in node:
            _array_bounds_as_items(v)


def _explain(e: ValidationError) -> str:
    parts: list[str] = []
    for err in e.errors(include_url=False)[:5]:
        loc = ""
        for item in err["loc"]:
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        msg = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if err["type"] == "extra_forbidden":
            key = loc.rsplit(".", 1)[-1]
            parent = loc[: -len(key) - 1] if "." in loc else "top level"
            msg, loc = f"unknown key '{key}' in {parent or 'top level'}", ""
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "too_short":
            msg = f"needs at least {err.get('ctx', {}).get('min_length')} item(s)"
        elif err["type"] == "too_long":
            msg = f"allows at most {err.get('ctx', {}).get('max_length')} item(s)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(e.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


@lru_cache(maxsize=64)
def _policy_digest(policy: Policy) -> str:
    return digest_of(policy.to_json())
