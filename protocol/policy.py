"""Shared threshold policy: a content-addressed rule set and deterministic verdicts.

A policy is authored as YAML (or JSON), validated into frozen models, and addressed by
``digest_of(policy.to_json())``: the SHA-256 of the RFC 8785 bytes of its normalized JSON.
The roster pins that digest, so every node applies exactly the same rules.

Every verdict is computed with :class:`decimal.Decimal` from the decimal strings in
signed results, never with floats, so all nodes reach bit-identical verdicts (spec:
"All nodes reach the same verdict from the same signed data").

YAML numbers: an unquoted YAML float such as ``0.60`` is taken as the *exact text the
author wrote* (``"0.60"``), never as a binary float, so ``0.60`` and ``"0.60"`` mean the
same thing. Integers in decimal fields become their decimal text. Non-finite or exotic
YAML numbers (``.inf``, ``1_000.5``, ``.5``) are refused with a :class:`PolicyError`.
In JSON input, floats are refused outright: JSON policies use decimal strings.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal

import yaml
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
from protocol.errors import PolicyError, SchemaError

#: Largest policy document accepted, in bytes of YAML or JSON text.
MAX_POLICY_BYTES = 262_144
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
        if len(v) > MAX_DECIMAL_CHARS or not DECIMAL_RE.match(v):
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


# --- YAML ----------------------------------------------------------------------------------


class _PolicyLoader(yaml.SafeLoader):
    """Safe YAML with the policy rules: floats as their text, no aliases, no duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Aliases let a small document expand into a huge one; policies never need them.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves Parser.peek_event unannotated
            raise PolicyError(
                f"YAML aliases (*name) are not allowed in policies (line {event.start_mark.line + 1})"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML silently keeps the last of two equal keys; in a safety policy that hides edits.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise PolicyError(
                    f"duplicate key {key!r} in policy YAML (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _scalar_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


# The exact text keeps "0.60" as written: converting through binary floats would make the
# digest depend on float formatting, and 0.1 would silently become 0.1000000000000000055...
_PolicyLoader.add_constructor("tag:yaml.org,2002:float", _scalar_text)
_PolicyLoader.add_constructor("tag:yaml.org,2002:timestamp", _scalar_text)


@lru_cache(maxsize=64)
def _policy_digest(policy: Policy) -> str:
    return digest_of(policy.to_json())


def load_policy_yaml(text: str) -> Any:
    """Parse policy YAML text into plain JSON-shaped data, raising :class:`PolicyError`."""
    if not isinstance(text, str):
        raise PolicyError("policy YAML must be passed as text (str)")
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy YAML is larger than {MAX_POLICY_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 (a SafeLoader subclass)
    except PolicyError:
        raise
    except yaml.YAMLError as e:
        raise PolicyError(f"policy YAML is malformed: {e}") from e
    if data is None:
        raise PolicyError("policy YAML is empty")
    return data


# --- eval result summaries -----------------------------------------------------------------


class MetricValue(_Frozen):
    """One metric of one task: estimate and standard error, as decimal strings."""

    value: DecimalStr
    stderr: DecimalStr

    @model_validator(mode="after")
    def _nonneg(self) -> MetricValue:
        if _dec(self.stderr) < 0:
            raise ValueError(f"stderr {self.stderr} must not be negative")
        return self


class TaskSummary(_Frozen):
    """The numbers a policy reads from one task of a result."""

    n: Annotated[int, Field(ge=0, le=2**53 - 1)]
    metrics: Annotated[dict[MetricName, MetricValue], Field(max_length=MAX_METRICS)]


class ResultSummary(_Frozen):
    """What the policy needs from one verified ``eval_result`` (built by :meth:`from_body`)."""

    lab: LabId
    suite: Name
    model: Annotated[str, StringConstraints(max_length=256)] = ""
    checkpoint_step: Annotated[int, Field(ge=0, le=2**53 - 1)]
    training_flop: DecimalStr
    tasks: Annotated[dict[Name, TaskSummary], Field(max_length=MAX_TASKS)]

    @model_validator(mode="after")
    def _positive_flop(self) -> ResultSummary:
        if _dec(self.training_flop) <= 0:
            raise ValueError(f"training_flop {self.training_flop} must be positive")
        return self

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, lab: str) -> ResultSummary:
        """Build from an ``eval_result`` body (JSON-shaped) and the lab that signed it.

        Only the fields a policy reads are taken; the full body is validated elsewhere.
        """
        try:
            suite = body["suite"]
            model = body["model"]
            tasks: dict[str, Any] = {}
            for t in body["tasks"]:
                name = t["name"]
                if not isinstance(name, str) or name in tasks:
                    raise SchemaError(f"eval_result body: task name {name!r} is invalid or repeated")
                tasks[name] = {"n": t["n"], "metrics": dict(t["metrics"])}
            data = {
                "lab": lab,
                "suite": suite["id"],
                "model": model.get("name", ""),
                "checkpoint_step": model["checkpoint_step"],
                "training_flop": model["training_flop"],
                "tasks": tasks,
            }
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise SchemaError(f"eval_result body lacks a field the policy reads: {e}") from e
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SchemaError(f"eval_result body: {_explain(e)}") from e

    @classmethod
    def from_statement(cls, statement: Mapping[str, Any]) -> ResultSummary:
        """Build from a whole feed statement of kind ``eval_result``."""
        if statement.get("kind") != "eval_result":
            raise SchemaError(f"expected an eval_result statement, got kind {statement.get('kind')!r}")
        body = statement.get("body")
        if not isinstance(body, Mapping):
            raise SchemaError("eval_result statement has no body object")
        return cls.from_body(body, lab=str(statement.get("lab", "")))

    def metric(self, indicator: Indicator) -> MetricValue | None:
        """The metric an indicator points at, or None when this result lacks it."""
        if indicator.suite != self.suite:
            return None
        task = self.tasks.get(indicator.task)
        return None if task is None else task.metrics.get(indicator.metric)


# --- verdicts ------------------------------------------------------------------------------


class TrendVerdict(_Frozen):
    """The forecast side of a rule's verdict (produced by :mod:`protocol.forecast`)."""

    verdict: Literal["ok", "warn"]
    reason: Reason
    model: Literal["logistic", "linear", "none"]
    """Which curve was fitted; ``none`` when there were too few checkpoints."""
    n_points: Annotated[int, Field(ge=0)]
    horizon_flop: DecimalStr
    """``training_flop * horizon``: a crossing at or below it warns."""
    crossing_flop: DecimalStr | None = None
    """FLOP where the fitted curve reaches the breach level (None: not within range)."""
    crossing_low_flop: DecimalStr | None = None
    """Earliest plausible crossing: where the band's risky edge reaches the level."""
    crossing_high_flop: DecimalStr | None = None
    """Latest plausible crossing: where the band's safe edge reaches the level."""


class RuleVerdict(_Frozen):
    """One rule's verdict on one result, with every number used to reach it."""

    rule_id: Slug
    domain: Slug
    verdict: Verdict
    reason: Reason
    metric: MetricName
    direction: Direction
    observed: DecimalStr
    stderr: DecimalStr
    method: Literal["point", "upper_bound"]
    z: DecimalStr | None = None
    bound: DecimalStr
    """The number compared with the levels: observed, or observed moved z stderr toward risk."""
    alert_level: DecimalStr
    breach_level: DecimalStr
    actions: tuple[Action, ...]
    """What the rule asks for at this verdict (empty for ok)."""
    trend: TrendVerdict | None = None


class SkippedRule(_Frozen):
    """A rule that gave no verdict because the result lacks its indicator."""

    rule_id: Slug
    reason: Reason


class PolicyEvaluation(_Frozen):
    """A policy applied to one result: per-rule verdicts and the overall (worst) verdict."""

    policy_id: Slug
    policy_version: int
    policy_digest: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    lab: LabId
    suite: Name
    checkpoint_step: int
    training_flop: DecimalStr
    overall: Verdict
    """Worst verdict over :attr:`verdicts`; ``ok`` when no rule applied."""
    verdicts: tuple[RuleVerdict, ...]
    """Sorted by rule id, so the output does not depend on rule order."""
    skipped: tuple[SkippedRule, ...]

    @property
    def actions(self) -> tuple[Action, ...]:
        """Every action some rule asks for, in a fixed order."""
        wanted = {a for v in self.verdicts for a in v.actions}
        return tuple(a for a in ("alert", "pause_proposal") if a in wanted)

    def by_rule(self, rule_id: str) -> RuleVerdict | None:
        for v in self.verdicts:
            if v.rule_id == rule_id:
                return v
        return None


def worst(verdicts: Iterable[str]) -> Verdict:
    """The highest verdict under ok < warn < breach; ``ok`` for none."""
    best: Verdict = "ok"
    for v in verdicts:
        if v not in VERDICT_RANK:
            raise PolicyError(f"unknown verdict {v!r}")
        if VERDICT_RANK[v] > VERDICT_RANK[best]:
            best = v  # type: ignore[assignment]  # checked against VERDICT_RANK above
    return best


def _actions_for(rule: Rule, verdict: Verdict) -> tuple[Action, ...]:
    if verdict == "breach":
        return rule.actions.breach
    if verdict == "warn":
        return rule.actions.warn
    return ()


def risk_bound(rule: Rule, metric: MetricValue) -> Decimal:
    """The value compared with the levels, exactly (spec: "cannot rule out" counts as reached)."""
    with decimal.localcontext(_CTX):
        value = _dec(metric.value)
        if rule.uncertainty.method == "point":
            return value
        shift = _dec(rule.uncertainty.z or "0") * _dec(metric.stderr)
        return value + shift if rule.indicator.direction == "higher_is_riskier" else value - shift


def _reaches(rule: Rule, bound: Decimal, level: str) -> bool:
    if rule.indicator.direction == "higher_is_riskier":
        return bound >= _dec(level)
    return bound <= _dec(level)


def evaluate_rule(rule: Rule, result: ResultSummary) -> RuleVerdict | SkippedRule:
    """Apply one rule to one result (no forecast): a verdict, or why there is none."""
    ind = rule.indicator
    if ind.suite != result.suite:
        return SkippedRule(
            rule_id=rule.id, reason=f"result is for suite '{result.suite}', rule reads '{ind.suite}'"
        )
    task = result.tasks.get(ind.task)
    if task is None:
        return SkippedRule(rule_id=rule.id, reason=f"result has no task '{ind.task}'")
    metric = task.metrics.get(ind.metric)
    if metric is None:
        return SkippedRule(rule_id=rule.id, reason=f"task '{ind.task}' has no metric '{ind.metric}'")

    with _peer_numbers(f"rule '{rule.id}' on {result.lab}'s result"):
        return _rule_verdict(rule, metric)


def _rule_verdict(rule: Rule, metric: MetricValue) -> RuleVerdict:
    ind = rule.indicator
    bound = risk_bound(rule, metric)
    if _reaches(rule, bound, rule.breach_level):
        verdict: Verdict = "breach"
    elif _reaches(rule, bound, rule.alert_level):
        verdict = "warn"
    else:
        verdict = "ok"
    return RuleVerdict(
        rule_id=rule.id,
        domain=rule.domain,
        verdict=verdict,
        reason=_reason(rule, metric, bound, verdict),
        metric=ind.metric,
        direction=ind.direction,
        observed=metric.value,
        stderr=metric.stderr,
        method=rule.uncertainty.method,
        z=rule.uncertainty.z,
        bound=fmt_decimal(bound),
        alert_level=rule.alert_level,
        breach_level=rule.breach_level,
        actions=_actions_for(rule, verdict),
    )


def _reason(rule: Rule, metric: MetricValue, bound: Decimal, verdict: Verdict) -> str:
    higher = rule.indicator.direction == "higher_is_riskier"
    name = rule.indicator.metric
    if rule.uncertainty.method == "point":
        what = f"{name} {metric.value}"
    else:
        sign = "+" if higher else "-"
        edge = "upper" if higher else "lower"
        what = f"{name} {edge} bound {fmt_decimal(bound)} ({metric.value} {sign} {rule.uncertainty.z}*{metric.stderr})"
    side = "at or above" if higher else "at or below"
    names = rule.level_names
    breach = f"breach level {rule.breach_level}" + (f" ({names.breach})" if names else "")
    alert = f"alert level {rule.alert_level}" + (f" ({names.alert})" if names else "")
    if verdict == "breach":
        return f"{what} is {side} {breach}"
    if verdict == "warn":
        return f"{what} is {side} {alert} but not {breach}"
    return f"{what} is not {side} {alert}"


def combine(rule: Rule, point: RuleVerdict, trend: TrendVerdict | None) -> RuleVerdict:
    """Merge a rule's point verdict with its trend verdict: the worse of the two wins."""
    if trend is None:
        return point
    if point.rule_id != rule.id:
        raise PolicyError(f"verdict for rule '{point.rule_id}' combined with rule '{rule.id}'")
    verdict = worst((point.verdict, trend.verdict))
    reason = point.reason
    if trend.verdict == "warn":
        reason = f"{reason}; trend: {trend.reason}"
    actions = _actions_for(rule, verdict)
    return point.model_copy(
        update={"verdict": verdict, "reason": reason[:1000], "trend": trend, "actions": actions}
    )


def evaluate(
    policy: Policy,
    result: ResultSummary,
    *,
    trends: Mapping[str, TrendVerdict] | None = None,
) -> PolicyEvaluation:
    """Apply every rule of ``policy`` to ``result``; ``trends`` maps rule id to its forecast.

    Deterministic: the output depends only on the policy's content and the result's
    numbers, not on rule order or mapping order.
    """
    verdicts: list[RuleVerdict] = []
    skipped: list[SkippedRule] = []
    for rule in policy.rules:
        out = evaluate_rule(rule, result)
        if isinstance(out, SkippedRule):
            skipped.append(out)
            continue
        verdicts.append(combine(rule, out, (trends or {}).get(rule.id)))
    verdicts.sort(key=lambda v: v.rule_id)
    skipped.sort(key=lambda s: s.rule_id)
    with _peer_numbers(f"evaluating {result.lab}'s result"):
        return PolicyEvaluation(
            policy_id=policy.id,
            policy_version=policy.version,
            policy_digest=policy.digest,
            lab=result.lab,
            suite=result.suite,
            checkpoint_step=result.checkpoint_step,
            training_flop=result.training_flop,
            overall=worst(v.verdict for v in verdicts),
            verdicts=tuple(verdicts),
            skipped=tuple(skipped),
        )


def evaluation_due(
    rule: Rule,
    *,
    last_evaluated_flop: str,
    current_flop: str,
    days_since_last: int,
) -> bool:
    """Whether the rule's cadence calls for a new evaluation (compute growth or elapsed days)."""
    if rule.cadence is None:
        return False
    try:
        last, now = _dec(_decimal_text(last_evaluated_flop)), _dec(_decimal_text(current_flop))
    except ValueError as e:
        raise PolicyError(f"evaluation_due: {e}") from e
    with decimal.localcontext(_CTX):
        if last <= 0:
            return True
        return now >= last * _dec(rule.cadence.compute_multiple) or days_since_last >= rule.cadence.max_days


def rules_for(policy: Policy, suite: str) -> Sequence[Rule]:
    """The rules that read results of ``suite``."""
    return tuple(r for r in policy.rules if r.indicator.suite == suite)
