"""Scaling-trend forecasts: when will a lab's metric reach a rule's breach level?

A rule's forecast reads a fitted trend (:mod:`protocol.trend`, the indicator against
compute; or :mod:`protocol.twostep`, through a proxy metric, when the rule names
``forecast.via``) and asks where it reaches the rule's level. The crossing is the smallest
compute at which the curve (central), the band's risky edge (``crossing_low``: the earliest
plausible crossing) or its safe edge (``crossing_high``) reaches the level. A trend warns
when ``crossing_low`` is at or below ``latest_flop * horizon``. The straight-line fallback
never saturates, so it errs towards earlier crossings; on the flat foot of a curve it can
still be late, which is why alert levels, not forecasts, carry the first warning.

Determinism: every node must compute the same forecast. The search for a crossing uses a
fixed grid and bisection budget on the fits' deterministic arithmetic, and the verdict
compares log10 FLOP values rounded to 4 decimals, which are the published numbers.
"""

from __future__ import annotations

import dataclasses
import decimal
import functools
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Literal, Protocol

from pydantic import Field, ValidationError

from protocol.canonical import DECIMAL_RE
from protocol.errors import PolicyError
from protocol.numeric import DCTX as _DCTX
from protocol.numeric import log10 as _log10
from protocol.numeric import t_quantile
from protocol.policy import DecimalStr, Direction, Policy, Rule, _explain, _Frozen, _peer_numbers
from protocol.trend import (
    CALIBRATION,
    MAX_POINTS,
    WARMUP_DECADES,
    TrendFit,
    TrendPoint,
    _sig,
    fit_trend,
    points_for_rule,
    proxy_points_for_rule,
    warn_multiplier,
)
from protocol.twostep import MIN_POINTS, TwoStepFit, fit_two_step
from protocol.verdicts import PolicyEvaluation, ResultSummary, TrendVerdict, evaluate

#: Search for crossings this many decades of compute past the horizon.
SEARCH_DECADES_PAST_HORIZON = 2
LOG_PLACES = 4
_LOG_QUANTUM = Decimal(1).scaleb(-LOG_PLACES)
_GRID_STEPS = 256
_BISECT_STEPS = 48




# --- crossings and the verdict ----------------------------------------------------------------


class Forecast(_Frozen):
    """Where a fitted trend reaches a level; numbers rounded as published."""

    model: Literal["logistic", "linear", "two_step", "none"]
    n_points: Annotated[int, Field(ge=0)]
    note: Annotated[str, Field(max_length=200)]
    params: dict[str, str]
    level: DecimalStr
    z: DecimalStr
    """Half-width of the interval in prediction standard errors (from ``interval_level``
    when that is given: calibration * Student t quantile)."""
    horizon_flop: DecimalStr
    horizon_log10_flop: DecimalStr
    crossing_log10_flop: DecimalStr | None = None
    crossing_low_log10_flop: DecimalStr | None = None
    crossing_high_log10_flop: DecimalStr | None = None
    crossing_flop: DecimalStr | None = None
    crossing_low_flop: DecimalStr | None = None
    crossing_high_flop: DecimalStr | None = None
    search_limit_log10_flop: DecimalStr | None = None
    """Crossings beyond this compute are reported as None."""
    interval_level: DecimalStr | None = None
    """Stated coverage of the prediction interval (None: the interval is ``z`` wide)."""
    warn_chance: DecimalStr | None = None
    """Chance of reaching the level that warns (None: the interval's risky edge warns)."""
    warn_z: DecimalStr | None = None
    """The one-sided bound, in prediction standard errors, that ``warn_chance`` gives."""
    crossing_warn_log10_flop: DecimalStr | None = None
    """Where the chance of having reached the level first is ``warn_chance``."""
    crossing_warn_flop: DecimalStr | None = None

    @property
    def warns(self) -> bool:
        """True when the crossing that decides (at ``warn_chance``, else the interval's
        risky edge) is at or before the horizon."""
        x = self.crossing_warn_log10_flop if self.warn_chance is not None else self.crossing_low_log10_flop
        if x is None:
            return False
        return Decimal(x) <= Decimal(self.horizon_log10_flop)


def _round_log(x: float) -> Decimal:
    return Decimal(x).quantize(_LOG_QUANTUM, rounding=decimal.ROUND_HALF_EVEN)


def _flop_of(log10_flop: Decimal) -> str:
    with decimal.localcontext(_DCTX) as ctx:
        ctx.prec = 6
        return str(Decimal(10) ** log10_flop)


class BandFit(Protocol):
    """What a forecast reads of a fitted curve: :class:`TrendFit` (the indicator against
    compute) or :class:`protocol.twostep.TwoStepFit` (through a proxy metric)."""

    @property
    def model(self) -> Literal["logistic", "linear", "two_step"]: ...
    @property
    def n_points(self) -> int: ...
    @property
    def note(self) -> str: ...
    @property
    def dof(self) -> int: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def last_log10_flop(self) -> float: ...
    def params(self) -> dict[str, str]: ...
    def predict(self, log10_flop: float) -> tuple[float, float]: ...
    def interval(self, log10_flop: float) -> tuple[float, float]: ...
    def risk_level(self, level: float) -> float: ...
    def risk_edge(self, log10_flop: float, cz: float) -> float: ...


def _first_crossing(fit: BandFit, level: float, cz: float, lo: float, hi: float) -> float | None:
    """Smallest log10 FLOP in [lo, hi] where mean + cz*se (risk space, kept inside the
    metric's range) reaches ``level``."""

    def edge(x: float) -> float:
        return fit.risk_edge(x, cz)

    if edge(lo) >= level:
        return lo
    prev = lo
    for i in range(1, _GRID_STEPS + 1):
        x = lo + (hi - lo) * i / _GRID_STEPS
        if edge(x) >= level:
            a, b = prev, x
            for _ in range(_BISECT_STEPS):
                mid = (a + b) / 2.0
                if edge(mid) >= level:
                    b = mid
                else:
                    a = mid
            return b
        prev = x
    return None


def forecast_crossing(
    points: Sequence[TrendPoint],
    *,
    level: str,
    direction: Direction,
    z: str | None = None,
    horizon_flop: str,
    interval_level: str | None = None,
    chance: str | None = None,
    ceiling: str | None = None,
    warn_chance: str | None = None,
    on_fit: Callable[[TrendFit | None], None] | None = None,
) -> Forecast:
    """Fit the trend and find where it, and its prediction interval, reach ``level``.

    The interval is ``z`` prediction standard errors wide, or, with ``interval_level``
    (e.g. "0.9"), ``CALIBRATION * t`` with the Student t quantile of that level. Crossings
    are searched from the latest checkpoint's compute forward, never before it. With
    ``warn_chance`` (e.g. "0.2"; needs ``interval_level``), the warning crossing is where
    the calibrated one-sided bound at ``1 - warn_chance`` reaches the level.

    ``on_fit``, when given, receives the fitted curve (None: no trend), so that a caller
    drawing the band uses the very fit behind the verdict instead of fitting again.
    """
    fit = fit_for_forecast(points, direction=direction, z=z, interval_level=interval_level, chance=chance, ceiling=ceiling)
    if on_fit is not None:
        on_fit(fit)
    return crossing_of(
        fit,
        n_points=len(points),
        level=level,
        z=z,
        horizon_flop=horizon_flop,
        interval_level=interval_level,
        warn_chance=warn_chance,
    )


def fit_for_forecast(
    points: Sequence[TrendPoint],
    *,
    direction: Direction,
    z: str | None = None,
    interval_level: str | None = None,
    chance: str | None = None,
    ceiling: str | None = None,
) -> TrendFit | None:
    """:func:`fit_trend` with the interval's half-width set: ``z``, or ``CALIBRATION * t``
    at ``interval_level`` (exactly one of them)."""
    if (z is None) == (interval_level is None):
        raise PolicyError("forecast needs exactly one of z or interval_level")
    for name, text in (("z", z), ("interval_level", interval_level)):
        if text is not None and (not isinstance(text, str) or not DECIMAL_RE.fullmatch(text)):
            raise PolicyError(f"forecast {name} {text!r} is not a decimal string")
    fit = fit_trend(points, direction=direction, chance=chance, ceiling=ceiling)
    if fit is None:
        return None
    return dataclasses.replace(fit, multiplier=interval_multiplier(z, interval_level, fit.dof))


def interval_multiplier(z: str | None, interval_level: str | None, dof: int) -> float:
    """Half-width of a prediction interval in prediction standard errors: ``z`` as given,
    else ``CALIBRATION * t`` at ``interval_level`` with ``dof`` degrees of freedom."""
    return float(Decimal(z)) if z is not None else CALIBRATION * t_quantile(str(interval_level), dof)


def fit_for_rule(
    points: Sequence[TrendPoint],
    rule: Rule,
    *,
    proxy_points: Sequence[TrendPoint] = (),
) -> BandFit | None:
    """The fit behind a rule's forecast, its interval's half-width set.

    Without ``forecast.via``: :func:`fit_for_forecast` of the indicator against compute.
    With it, the two-step forecast (:func:`protocol.twostep.fit_two_step`) through the
    proxy's points (``proxy_points``, e.g. from :func:`proxy_points_for_rule`) on the
    checkpoints that carry both metrics; where the checkpoints do not identify it (too few
    of them, accuracy not yet clearly above chance, a proxy out of range), the direct fit,
    its note saying why.
    """
    fc = rule.forecast
    if fc is None:
        raise PolicyError(f"rule '{rule.id}' has no forecast section")
    if fc.via is not None:
        two, why = _two_step_for_rule(points, proxy_points, rule)
        if two is not None:
            return two  # the direct fit is not needed: fit it only where it decides
    direct = fit_for_forecast(
        points, direction=rule.indicator.direction, z=fc.z, interval_level=fc.level, chance=fc.chance, ceiling=fc.ceiling
    )
    if fc.via is None:
        return direct
    if direct is None:
        return None
    return dataclasses.replace(direct, note=f"direct fit, two-step via {fc.via} not used: {why}; {direct.note}"[:200])


def _two_step_for_rule(
    points: Sequence[TrendPoint], proxy_points: Sequence[TrendPoint], rule: Rule
) -> tuple[TwoStepFit | None, str]:
    fc = rule.forecast
    assert fc is not None and fc.via is not None and fc.chance is not None
    proxies = {(p.step, Decimal(p.flop)): p for p in proxy_points}
    pairs = sorted(
        ((Decimal(t.flop), t.step), t, proxies[(t.step, Decimal(t.flop))])
        for t in points
        if (t.step, Decimal(t.flop)) in proxies
    )
    if pairs:
        # The direct fit's warm-up and size rules, so both read the same checkpoints.
        cut = _log10(pairs[-1][0][0]) - WARMUP_DECADES
        pairs = [q for q in pairs if _log10(q[0][0]) >= cut][-MAX_POINTS:]
    if len({q[0][0] for q in pairs}) < MIN_POINTS:
        return None, f"{len(pairs)} checkpoints carry both metrics (it needs {MIN_POINTS} distinct compute values)"
    target = [t for _, t, _p in pairs]
    proxy = [p for _, _t, p in pairs]
    try:
        two = fit_two_step(proxy, target, chance=fc.chance, ceiling=fc.ceiling or "1")
    except PolicyError as e:
        return None, str(e).removeprefix("two-step forecast: ")
    if two is None:
        return None, f"the checkpoints do not identify the map from {fc.via} (accuracy not yet clearly above chance)"
    mult = interval_multiplier(fc.z, fc.level, two.dof)
    return dataclasses.replace(two, multiplier=mult, note=f"two-step via {fc.via}: power law, sigmoid map"), ""


def crossing_of(
    fit: BandFit | None,
    *,
    n_points: int,
    level: str,
    horizon_flop: str,
    z: str | None = None,
    interval_level: str | None = None,
    warn_chance: str | None = None,
) -> Forecast:
    """Where a fit from :func:`fit_for_forecast` (None: no trend over ``n_points``) and its
    interval reach ``level``, searched from the latest checkpoint's compute forward."""
    try:
        base = Forecast(
            model="none",
            n_points=n_points,
            note="",
            params={},
            level=level,
            z=z if z is not None else "0",
            horizon_flop=horizon_flop,
            horizon_log10_flop="0",
            interval_level=interval_level,
            warn_chance=warn_chance,
        )
    except ValidationError as e:
        raise PolicyError(f"forecast inputs: {_explain(e)}") from e
    h = Decimal(horizon_flop)
    if h <= 0:
        raise PolicyError(f"forecast horizon FLOP {horizon_flop} must be positive")
    with decimal.localcontext(_DCTX):
        h_log = h.log10().quantize(_LOG_QUANTUM, rounding=decimal.ROUND_HALF_EVEN)
    if (z is None) == (interval_level is None):
        raise PolicyError("forecast needs exactly one of z or interval_level")
    if warn_chance is not None and (interval_level is None or not Decimal("0.01") <= Decimal(warn_chance) <= Decimal("0.5")):
        raise PolicyError(f"forecast warn_chance {warn_chance} needs interval_level and must be between 0.01 and 0.5")
    if fit is None:
        return base.model_copy(
            update={
                "note": "fewer than 2 distinct compute values: no trend",
                "horizon_log10_flop": str(h_log),
            }
        )
    risk_level = fit.risk_level(float(Decimal(level)))
    zf = fit.multiplier
    # Only the future is forecast: a crossing is never dated before the latest checkpoint.
    lo = fit.last_log10_flop
    hi = max(lo, float(h_log)) + SEARCH_DECADES_PAST_HORIZON
    found = {
        "": _first_crossing(fit, risk_level, 0.0, lo, hi),
        "_low": _first_crossing(fit, risk_level, zf, lo, hi),
        "_high": _first_crossing(fit, risk_level, -zf, lo, hi),
    }
    update: dict[str, object] = {
        "model": fit.model,
        "z": _sig(zf),
        "n_points": fit.n_points,
        "note": fit.note[:200],
        "params": fit.params(),
        "horizon_log10_flop": str(h_log),
        "search_limit_log10_flop": str(_round_log(hi)),
    }
    if warn_chance is not None:
        wz = warn_multiplier(warn_chance, fit.dof)
        found["_warn"] = _first_crossing(fit, risk_level, wz, lo, hi)
        update["warn_z"] = _sig(wz)
    for suffix, x in found.items():
        if x is not None:
            xr = _round_log(x)
            update[f"crossing{suffix}_log10_flop"] = str(xr)
            update[f"crossing{suffix}_flop"] = _flop_of(xr)
    return base.model_copy(update=update)


def forecast_verdict(
    points: Sequence[TrendPoint],
    rule: Rule,
    latest_flop: str,
    *,
    proxy_points: Sequence[TrendPoint] = (),
    on_fit: Callable[[BandFit | None], None] | None = None,
) -> TrendVerdict:
    """Trend verdict for a rule: ``warn`` when the band's risky edge reaches the breach
    level at or before ``latest_flop * rule.forecast.horizon``, else ``ok``.

    ``proxy_points`` feed a two-step forecast (``forecast.via``; see :func:`fit_for_rule`).
    ``on_fit``, when given, receives the fit behind the verdict (None: no trend)."""
    with _peer_numbers(f"forecast for rule '{rule.id}'"):
        return _forecast_verdict(points, rule, latest_flop, proxy_points, on_fit)


def positive_flop(text: str, which: str) -> Decimal:
    """A training FLOP from a caller (``which``: ``latest``, ``target``) as a positive Decimal;
    :class:`PolicyError` naming it otherwise (fullmatch: ``$`` alone admits a trailing newline)."""
    if not isinstance(text, str) or not DECIMAL_RE.fullmatch(text) or Decimal(text) <= 0:
        raise PolicyError(f"{which} training FLOP {text!r} is not a positive decimal string")
    return Decimal(text)


def _forecast_verdict(
    points: Sequence[TrendPoint],
    rule: Rule,
    latest_flop: str,
    proxy_points: Sequence[TrendPoint],
    on_fit: Callable[[BandFit | None], None] | None,
) -> TrendVerdict:
    if rule.forecast is None:
        raise PolicyError(f"rule '{rule.id}' has no forecast section")
    positive_flop(latest_flop, "latest")
    with decimal.localcontext(_DCTX) as ctx:
        ctx.prec = 12
        horizon_flop = str(+(Decimal(latest_flop) * Decimal(rule.forecast.horizon)))
    fit = fit_for_rule(points, rule, proxy_points=proxy_points)
    if on_fit is not None:
        on_fit(fit)
    fc = crossing_of(
        fit,
        n_points=len(points),
        level=rule.breach_level,
        z=rule.forecast.z,
        interval_level=rule.forecast.level,
        warn_chance=rule.forecast.warn_chance,
        horizon_flop=horizon_flop,
    )
    what = f"two-step trend (via {rule.forecast.via})" if fc.model == "two_step" else f"{fc.model} trend"
    horizon = f"the {rule.forecast.horizon}x horizon ({horizon_flop} FLOP)"
    if fc.model == "none":
        reason = f"{fc.note}; {horizon}"
    elif fc.warns and fc.warn_chance is not None:
        reason = (
            f"{what} over {fc.n_points} checkpoints has a {fc.warn_chance} chance of reaching "
            f"breach level {rule.breach_level} by {fc.crossing_warn_flop} FLOP (central "
            f"{fc.crossing_flop or 'beyond range'}), within {horizon}"
        )
    elif fc.warns:
        reason = (
            f"{what} over {fc.n_points} checkpoints may reach breach level {rule.breach_level} "
            f"at {fc.crossing_low_flop} FLOP (central {fc.crossing_flop or 'beyond range'}), "
            f"within {horizon}"
        )
    elif fc.warn_chance is not None and fc.crossing_warn_flop is not None:
        reason = (
            f"{what} over {fc.n_points} checkpoints has a {fc.warn_chance} chance of reaching "
            f"breach level {rule.breach_level} no earlier than {fc.crossing_warn_flop} FLOP, beyond {horizon}"
        )
    elif fc.crossing_low_flop is not None and fc.warn_chance is None:
        reason = (
            f"{what} over {fc.n_points} checkpoints reaches breach level {rule.breach_level} "
            f"no earlier than {fc.crossing_low_flop} FLOP, beyond {horizon}"
        )
    else:
        chance = "" if fc.warn_chance is None else f" with a {fc.warn_chance} chance"
        reason = (
            f"{what} over {fc.n_points} checkpoints does not reach breach level "
            f"{rule.breach_level}{chance} before {_flop_of(Decimal(fc.search_limit_log10_flop or '0'))} FLOP"
        )
    if rule.forecast.via is not None and fc.model not in ("two_step", "none"):
        reason = f"{reason} ({fc.note.split('; ')[0]})"
    return TrendVerdict(
        verdict="warn" if fc.warns else "ok",
        reason=reason[:1000],
        model=fc.model,
        n_points=fc.n_points,
        horizon_flop=horizon_flop,
        crossing_flop=fc.crossing_flop,
        crossing_low_flop=fc.crossing_low_flop,
        crossing_high_flop=fc.crossing_high_flop,
    )


def evaluate_with_trend(
    policy: Policy,
    result: ResultSummary,
    history: Iterable[ResultSummary],
    *,
    fits: dict[str, BandFit | None] | None = None,
) -> PolicyEvaluation:
    """Point verdicts plus trend verdicts for every rule that has a forecast section.

    ``history`` is the same lab's earlier verified results, as the caller defines the
    lineage (e.g. feed order up to this result); results of other labs are ignored.
    ``fits``, when given, receives the fitted curve behind each trend verdict by rule id
    (reports draw the forecast band from it).
    """
    same_lab = [r for r in history if r.lab == result.lab]
    same_lab.append(result)
    trends: dict[str, TrendVerdict] = {}
    for rule in policy.rules:
        if rule.forecast is None or result.metric(rule.indicator) is None:
            continue
        sink = None if fits is None else functools.partial(fits.__setitem__, rule.id)
        with _peer_numbers(f"trend of rule '{rule.id}' over {result.lab}'s results"):
            points = points_for_rule(same_lab, rule)
            proxies = proxy_points_for_rule(same_lab, rule)
        trends[rule.id] = forecast_verdict(points, rule, result.training_flop, proxy_points=proxies, on_fit=sink)
    return evaluate(policy, result, trends=trends)
