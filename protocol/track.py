"""Forecasts on record and their track record (spec §6.13): one pure function of signed entries.

A lab publishes a ``forecast`` before a run: per policy rule, the value its model will
measure at the planned compute and an interval, made with the policy's own ladder
prediction (:func:`predict_forecast`). When a result of that model arrives, every node
scores the forecast the same way, from the same signed entries:

- the result it is scored against is the *first*, in the lab's feed order, verified
  ``eval_result`` of the same lab and model whose training compute is within ±10% of the
  planned compute (``10·|flop − planned| ≤ planned``, exactly);
- no such result: ``pending``; that result precedes the forecast in the feed: ``late``
  (it was published after the fact and is no prediction); else per rule ``scored``
  (observed value, absolute error, inside the interval or not) or ``unknown`` (the
  adopted policy has no such rule, none is loaded, or the result lacks the metric).

A lab's *track record* counts its predictions by status, the coverage (the fraction of
scored predictions whose observed value lies inside the interval, to 4 places) and the
mean absolute error (to 6 places), both rounded half-to-even from the exact rational value
and written with exactly that many places, so that every node shows the same text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from protocol.documents import WireDocument
from protocol.entries import EvalResultBody, ForecastBody, RulePrediction, VerifiedEntry
from protocol.errors import PolicyError
from protocol.ladder import ladder_points, ladder_proxy_points, predict_at
from protocol.policy import Policy
from protocol.verdicts import ResultSummary

__all__ = [
    "COVERAGE_PLACES",
    "ERROR_PLACES",
    "ForecastScore",
    "RuleScore",
    "ScoreStatus",
    "TrackRecord",
    "fixed_places",
    "predict_forecast",
    "score_forecasts",
    "track_records",
    "within_window",
]

ScoreStatus = Literal["pending", "scored", "late", "unknown"]

#: Places of the coverage and of absolute errors (fixed, so every node writes the same text).
COVERAGE_PLACES = 4
ERROR_PLACES = 6
#: The compute window a result must fall in to score a forecast: ±1/10 of the planned compute.
WINDOW = Fraction(1, 10)


def fixed_places(x: Fraction, places: int) -> str:
    """``x`` rounded half-to-even to ``places`` decimals, written with exactly that many
    (``fixed_places(Fraction(2, 3), 4) == "0.6667"``; no exponent, trailing zeros kept)."""
    q = round(x, places)  # exact on a Fraction: no binary or decimal intermediate
    n = int(q * 10**places)
    sign = "-" if n < 0 else ""
    digits = str(abs(n)).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}" if places else f"{sign}{digits}"


def _frac(text: str) -> Fraction:
    return Fraction(Decimal(text))


def within_window(training_flop: str, planned_flop: str) -> bool:
    """Whether a result's training compute is within ±10% of the planned compute."""
    flop, planned = _frac(training_flop), _frac(planned_flop)
    return abs(flop - planned) <= WINDOW * planned


# --- the scores (spec §8): each one closed model, computed here and served as is ----------


class RuleScore(WireDocument):
    """One rule's prediction in a forecast and how it fared."""

    rule: str
    """The policy rule id."""
    status: ScoreStatus
    """Whether a result scores it yet."""
    value: str
    """The predicted value (decimal text, as signed)."""
    low: str
    """The interval's low end."""
    high: str
    """The interval's high end."""
    level: str | None
    """The interval's level."""
    observed: str | None
    """The result's value of the rule's metric (scored and late)."""
    abs_error: str | None
    """``|observed − value|`` to 6 places (scored only)."""
    inside: bool | None
    """Whether the observed value fell inside the interval (scored only)."""
    reason: str
    """Why, in words."""


class ForecastScore(WireDocument):
    """What every node concludes about one forecast entry."""

    forecast: str
    """Entry id of the forecast."""
    lab: str
    """The lab that signed it."""
    seq: int
    """Its position in the lab's feed."""
    issued_at: str
    """When it was signed."""
    model: str
    """The forecast model."""
    planned_flop: str
    """The compute it predicts at."""
    policy_digest: str
    """The policy it is scored under."""
    policy_current: bool
    """Whether that is the adopted policy."""
    status: ScoreStatus
    """Overall: pending or late as every rule is; scored when some rule is."""
    result: str | None
    """Entry id of the result it is scored against (None: pending)."""
    result_seq: int | None
    """That result's position in its feed."""
    result_flop: str | None
    """That result's training compute."""
    rules: tuple[RuleScore, ...]
    """Each rule's prediction and score."""
    ladder: tuple[str, ...]
    """Entry ids of the results the forecast was fitted on."""
    note: str
    """Anything the scorer noted."""


class TrackRecord(WireDocument):
    """A lab's forecasts on record, counted and scored."""

    lab: str
    """The lab."""
    forecasts: int
    """Forecast entries."""
    count: int
    """Rule predictions across them."""
    scored: int
    """Predictions scored."""
    inside: int
    """Scored predictions whose interval held the observed value."""
    pending: int
    """Predictions awaiting a result."""
    late: int
    """Predictions signed after their result."""
    unknown: int
    """Predictions that cannot be scored."""
    coverage: str | None
    """``inside / scored`` to 4 places (None: nothing scored yet)."""
    mean_abs_error: str | None
    """Mean absolute error of the scored predictions, to 6 places (None: none)."""


def _pred_fields(p: RulePrediction) -> dict[str, Any]:
    return {"rule": p.rule, "value": p.value, "low": p.low, "high": p.high, "level": p.level}


def score_forecasts(
    forecasts: Iterable[VerifiedEntry],
    results: Iterable[tuple[VerifiedEntry, ResultSummary]],
    policy: Policy | None,
) -> dict[str, ForecastScore]:
    """Forecast entry id -> its score, from the held ``forecast`` entries, the verified
    results (each with its summary) and the adopted policy. Pure and order-independent:
    inputs are deduplicated by entry id and read in (lab, seq, entry_id) order."""
    by_model: dict[tuple[str, str], list[tuple[VerifiedEntry, ResultSummary]]] = {}
    for e, s in sorted({e.entry_id: (e, s) for e, s in results}.values(), key=lambda p: (p[0].lab, p[0].seq, p[0].entry_id)):
        body = e.statement.body
        if isinstance(body, EvalResultBody):
            by_model.setdefault((e.lab, body.model.name), []).append((e, s))
    rules = {r.id: r for r in policy.rules} if policy is not None else {}
    out: dict[str, ForecastScore] = {}
    for f in sorted({f.entry_id: f for f in forecasts}.values(), key=lambda f: (f.lab, f.seq, f.entry_id)):
        body = f.statement.body
        if not isinstance(body, ForecastBody):
            continue
        # §6.13: the first result in feed order within the window, before or after the forecast.
        match = next(
            ((e, s) for e, s in by_model.get((f.lab, body.model), ()) if within_window(s.training_flop, body.planned_flop)),
            None,
        )
        scores = tuple(_rule_score(p, f, match, rules, policy) for p in sorted(body.predictions, key=lambda p: p.rule))
        if match is None:
            status: ScoreStatus = "pending"
        elif match[0].seq < f.seq:
            status = "late"
        else:
            status = "scored" if any(r.status == "scored" for r in scores) else "unknown"
        out[f.entry_id] = ForecastScore(
            forecast=f.entry_id,
            lab=f.lab,
            seq=f.seq,
            issued_at=f.statement.issued_at,
            model=body.model,
            planned_flop=body.planned_flop,
            policy_digest=body.policy_digest,
            policy_current=policy is not None and body.policy_digest == policy.digest,
            status=status,
            result=match[0].entry_id if match else None,
            result_seq=match[0].seq if match else None,
            result_flop=match[1].training_flop if match else None,
            rules=scores,
            ladder=tuple(body.ladder),
            note=body.note,
        )
    return out


def _rule_score(
    p: RulePrediction,
    f: VerifiedEntry,
    match: tuple[VerifiedEntry, ResultSummary] | None,
    rules: Mapping[str, Any],
    policy: Policy | None,
) -> RuleScore:
    pred = _pred_fields(p)
    if match is None:
        return RuleScore(**pred, status="pending", observed=None, abs_error=None, inside=None,
                         reason="no result of the model within ±10% of the planned compute yet")
    result, summary = match
    rule = rules.get(p.rule)
    metric = summary.metric(rule.indicator) if rule is not None else None
    observed = metric.value if metric is not None else None
    if result.seq < f.seq:
        return RuleScore(**pred, status="late", observed=observed, abs_error=None, inside=None,
                         reason=f"published after the result it would be scored against (seq {result.seq} < {f.seq}): "
                         "not a prediction")
    if policy is None:
        return RuleScore(**pred, status="unknown", observed=None, abs_error=None, inside=None,
                         reason="no adopted policy is loaded: the rule's metric is unknown")
    if rule is None:
        return RuleScore(**pred, status="unknown", observed=None, abs_error=None, inside=None,
                         reason=f"the adopted policy has no rule {p.rule!r}")
    if observed is None:
        ind = rule.indicator
        return RuleScore(**pred, status="unknown", observed=None, abs_error=None, inside=None,
                         reason=f"the result has no metric {ind.suite}/{ind.task}/{ind.metric}")
    obs = _frac(observed)
    err = abs(obs - _frac(p.value))
    inside = _frac(p.low) <= obs <= _frac(p.high)
    where = "inside" if inside else "outside"
    return RuleScore(**pred, status="scored", observed=observed, abs_error=fixed_places(err, ERROR_PLACES), inside=inside,
                     reason=f"measured {observed}, {where} the interval [{p.low}, {p.high}]")


def track_records(scores: Iterable[ForecastScore]) -> dict[str, TrackRecord]:
    """Lab -> its track record over its forecasts' scores (sorted by lab)."""
    by_lab: dict[str, list[ForecastScore]] = {}
    for s in sorted(scores, key=lambda s: (s.lab, s.seq, s.forecast)):
        by_lab.setdefault(s.lab, []).append(s)
    out: dict[str, TrackRecord] = {}
    for lab, items in sorted(by_lab.items()):
        rs = [r for s in items for r in s.rules]
        scored = [r for r in rs if r.status == "scored"]
        inside = sum(1 for r in scored if r.inside)
        errors = [abs(_frac(r.observed) - _frac(r.value)) for r in scored if r.observed is not None]
        out[lab] = TrackRecord(
            lab=lab,
            forecasts=len(items),
            count=len(rs),
            scored=len(scored),
            inside=inside,
            pending=sum(1 for r in rs if r.status == "pending"),
            late=sum(1 for r in rs if r.status == "late"),
            unknown=sum(1 for r in rs if r.status == "unknown"),
            coverage=fixed_places(Fraction(inside, len(scored)), COVERAGE_PLACES) if scored else None,
            # The mean of the exact errors, not of the rounded ones: rounding happens once.
            mean_abs_error=fixed_places(sum(errors, Fraction(0)) / len(errors), ERROR_PLACES) if errors else None,
        )
    return out


@dataclass(frozen=True)
class Predicted:
    """What :func:`predict_forecast` makes of a ladder: the predictions and the rules it
    could not forecast (with why)."""

    predictions: tuple[RulePrediction, ...]
    skipped: tuple[tuple[str, str], ...]
    """(rule id, reason) for each forecast rule without a prediction."""


def predict_forecast(
    results: Iterable[ResultSummary],
    *,
    lab: str,
    ladder: Sequence[str],
    policy: Policy,
    planned_flop: str,
) -> Predicted:
    """The policy's own ladder prediction (:func:`protocol.ladder.predict_at`) of every rule
    with a ``forecast`` section, at ``planned_flop``, from ``lab``'s results of the ladder
    models: what a ``forecast`` entry publishes. A rule whose ladder has fewer than two
    distinct compute values has no trend and is skipped."""
    chosen = list(results)
    preds: list[RulePrediction] = []
    skipped: list[tuple[str, str]] = []
    for rule in sorted(policy.rules, key=lambda r: r.id):
        if rule.forecast is None:
            continue
        points = ladder_points(chosen, lab=lab, models=ladder, rule=rule)
        proxies = ladder_proxy_points(chosen, lab=lab, models=ladder, rule=rule)
        p = predict_at(points, rule, planned_flop, proxy_points=proxies)
        if p.value is None or p.low is None or p.high is None:
            skipped.append((rule.id, f"{len({Decimal(pt.flop) for pt in points})} distinct compute value(s) of the ladder "
                                     "carry the rule's metric: no trend to extrapolate"))
            continue
        try:
            preds.append(RulePrediction(rule=rule.id, value=p.value, low=p.low, high=p.high, level=p.level))
        except ValueError as e:  # pydantic's ValidationError: a prediction outside the metric domain
            raise PolicyError(f"rule {rule.id!r}: the ladder's prediction cannot be published ({e})") from e
    return Predicted(tuple(preds), tuple(skipped))
