"""Cross-model forecasts: a lab's ladder of models (one recipe, several sizes) forecasts a
model it has not trained yet at its planned compute.

The points are the ladder models' verified results for a rule, placed at their own training
compute; the curve and its prediction interval are the policy's (``protocol.forecast``), so
every node computes the same prediction from the same signed results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from protocol.errors import PolicyError
from protocol.forecast import _flop_of, _round_log, crossing_of, fit_for_rule, positive_flop
from protocol.numeric import log10 as _log10
from protocol.policy import DecimalStr, Rule, _Frozen
from protocol.trend import TrendPoint, _sig, points_for_rule, proxy_points_for_rule
from protocol.verdicts import ResultSummary

__all__ = ["Prediction", "ladder_points", "ladder_proxy_points", "predict_at", "stop_point"]


def ladder_points(
    results: Iterable[ResultSummary], *, lab: str, models: Sequence[str], rule: Rule
) -> list[TrendPoint]:
    """The trend points of ``lab``'s ladder: every result of a model named in ``models``
    that carries the rule's indicator, at its training compute (sorted, one per checkpoint).

    Results of other labs and of models outside the ladder are ignored: a ladder is a
    lab's own claim about its own recipe.
    """
    return points_for_rule(_ladder(results, lab, models), rule)


def ladder_proxy_points(
    results: Iterable[ResultSummary], *, lab: str, models: Sequence[str], rule: Rule
) -> list[TrendPoint]:
    """The ladder's points of the rule's two-step proxy (``forecast.via``; empty without it)."""
    return proxy_points_for_rule(_ladder(results, lab, models), rule)


def _ladder(results: Iterable[ResultSummary], lab: str, models: Sequence[str]) -> list[ResultSummary]:
    wanted = set(models)
    return [r for r in results if r.lab == lab and r.model in wanted]


class Prediction(_Frozen):
    """A forecast of a rule's indicator at one compute, as published (decimal text)."""

    rule: str
    target_flop: DecimalStr
    """Training compute the prediction is for, FLOP."""
    model: Literal["logistic", "linear", "two_step", "none"]
    """The main fitted curve (``two_step``: through ``forecast.via``; ``none``: fewer than 2
    distinct compute values)."""
    n_points: Annotated[int, Field(ge=0)]
    value: DecimalStr | None = None
    """Central forecast in the metric's units (None: no trend)."""
    low: DecimalStr | None = None
    high: DecimalStr | None = None
    """Prediction interval at the rule's stated level (or ``z``), inside the metric's range."""
    level: DecimalStr | None = None
    """The interval's stated coverage (None: a bare ``z``-wide interval)."""


def predict_at(
    points: Sequence[TrendPoint], rule: Rule, target_flop: str, *, proxy_points: Sequence[TrendPoint] = ()
) -> Prediction:
    """The rule's forecast of its indicator at ``target_flop``, with its prediction interval
    (two-step through ``proxy_points`` when the rule's forecast has ``via``)."""
    if rule.forecast is None:
        raise PolicyError(f"rule '{rule.id}' has no forecast section")
    target = positive_flop(target_flop, "target")
    fc = rule.forecast
    fit = fit_for_rule(points, rule, proxy_points=proxy_points)
    if fit is None:
        return Prediction(rule=rule.id, target_flop=target_flop, model="none", n_points=len(points), level=fc.level)
    x = _log10(target)
    mean, _se = fit.predict(x)
    lo, hi = fit.interval(x)
    return Prediction(
        rule=rule.id,
        target_flop=target_flop,
        model=fit.model,
        n_points=fit.n_points,
        value=_sig(mean),
        low=_sig(lo),
        high=_sig(hi),
        level=fc.level,
    )


def stop_point(
    points: Sequence[TrendPoint], rule: Rule, planned_flop: str, *, proxy_points: Sequence[TrendPoint] = ()
) -> str | None:
    """The compute (FLOP, decimal text) at which the rule's breach becomes plausible, when
    that is at or before ``planned_flop``; None when the interval's risky edge stays short of
    the breach level up to the planned compute.

    "Plausible" is the rule's own trend test: the risky edge of the prediction interval
    reaches the breach level (with ``forecast.warn_chance``: the chance of having reached it
    is that high). With no trend (fewer than 2 distinct compute values) there is
    no forecast to lean on and the answer is None; callers decide how to treat that.
    """
    if rule.forecast is None:
        raise PolicyError(f"rule '{rule.id}' has no forecast section")
    planned = positive_flop(planned_flop, "target")
    fc = crossing_of(
        fit_for_rule(points, rule, proxy_points=proxy_points),
        n_points=len(points),
        level=rule.breach_level,
        z=rule.forecast.z,
        interval_level=rule.forecast.level,
        warn_chance=rule.forecast.warn_chance,
        horizon_flop=planned_flop,
    )
    crossing = fc.crossing_warn_log10_flop if fc.warn_chance is not None else fc.crossing_low_log10_flop
    if crossing is None:
        return None
    planned_log = _round_log(_log10(planned))
    x = Decimal(crossing)
    if x > planned_log:
        return None
    return _flop_of(x)
