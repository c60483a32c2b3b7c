"""Verdicts: a shared policy applied to one eval result, deterministically.

Every verdict is computed with :class:`decimal.Decimal` from the decimal strings in
signed results, never with floats, so all nodes reach bit-identical verdicts (spec:
"All nodes reach the same verdict from the same signed data"). The result summaries here
are what a rule reads of an ``eval_result`` entry.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import Field, StringConstraints, ValidationError, model_validator

from protocol.errors import PolicyError, SchemaError
from protocol.policy import (
    _CTX,
    MAX_METRICS,
    MAX_TASKS,
    VERDICT_RANK,
    Action,
    DecimalStr,
    Direction,
    Indicator,
    LabId,
    MetricName,
    Name,
    Policy,
    Reason,
    Rule,
    Slug,
    Verdict,
    _dec,
    _decimal_text,
    _explain,
    _Frozen,
    _peer_numbers,
    fmt_decimal,
)

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
    model: Literal["logistic", "linear", "two_step", "none"]
    """Which curve was fitted (``two_step``: through ``forecast.via``); ``none`` when there
    were too few checkpoints."""
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


def _is_verdict(v: str) -> TypeGuard[Verdict]:
    return v in VERDICT_RANK


def worst(verdicts: Iterable[str]) -> Verdict:
    """The highest verdict under ok < warn < breach; ``ok`` for none."""
    best: Verdict = "ok"
    for v in verdicts:
        if not _is_verdict(v):
            raise PolicyError(f"unknown verdict {v!r}")
        if VERDICT_RANK[v] > VERDICT_RANK[best]:
            best = v
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
