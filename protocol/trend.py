"""Scaling-trend fits: one lab's metric against log training compute, with an analytic band.

For one lab and one indicator, each checkpoint gives a point (log10 training FLOP, metric
value, standard error). We fit a saturating curve, a 4-parameter logistic in log-compute

    y = floor + (ceiling - floor) / (1 + exp(-rate * (log10 C - midpoint)))

and fall back to a straight line in log-compute when there are fewer than 4 distinct
compute values, when the logistic is not identified by the data (its midpoint far
outside the data, a step too sharp to resolve, or a singular fit), or when it does not
fit clearly better than the line (an AIC-like margin). The band around the fitted curve
is analytic (delta method): ``se(x)^2 = g(x)^T C g(x)`` with ``C = s^2 (J^T J)^-1``,
where ``s^2`` is the larger of the residual variance and the mean squared measurement
standard error, so a band never claims more precision than the evals themselves had.

Determinism: every node must compute the same fit. It uses only IEEE-754 double
``+ - * /`` and ``sqrt`` and the kernel of :mod:`protocol.numeric` (its own ``exp``,
Decimal logarithms), a fixed iteration budget, sorted inputs and explicit summation loops.
Where the fitted curve reaches a rule's level, and the verdict on it, is
:mod:`protocol.forecast`; the two-step fit through a proxy metric is :mod:`protocol.twostep`.
"""


from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from protocol.errors import PolicyError
from protocol.numeric import DCTX as _DCTX
from protocol.numeric import inverse as _inverse
from protocol.numeric import log10_text as _log10_text
from protocol.numeric import sigmoid as _sigmoid
from protocol.numeric import sigmoid_all as _sigmoid_all
from protocol.numeric import solve as _solve
from protocol.numeric import t_quantile
from protocol.policy import DecimalStr, Direction, Rule, _Frozen
from protocol.verdicts import ResultSummary

#: Fewest distinct compute values for the logistic (it has four parameters).
MIN_LOGISTIC_POINTS = 4
#: Most checkpoints used in one fit; the newest are kept beyond this.
MAX_POINTS = 512
#: Checkpoints more than this many decades of compute below the latest are warm-up: dropped.
WARMUP_DECADES = 2.0
#: Weights of the three candidate curves: bounded logistic, line in log-compute, and the
#: latest level held flat ("growth stops here"). Backtested on Pythia (docs/benchmarks.md):
#: real runs decelerate more than either fitted curve expects, and the average of a curve
#: that keeps rising and one that stops beats each alone.
W_LOGISTIC, W_LINE, W_FLAT = 0.25, 0.25, 0.5
#: Without a usable logistic: line and flat level.
W_LINE_ONLY, W_FLAT_ONLY = 0.5, 0.5
#: Smallest standard deviation of a future measurement, as a fraction of the metric's range
#: (of the data's spread when the range is not declared).
NOISE_FLOOR = 0.005
#: Fewest degrees of freedom for the Student t quantile.
MIN_DOF = 2
#: Calibration of the prediction interval: its half-width is CALIBRATION * t * se, with the
#: factor chosen by backtest so that a stated level of 0.9 covers 90% on Pythia.
CALIBRATION = 0.75
_LM_MAX_ITER = 60
#: Largest logistic rate in normalized log-compute units (the data span [-1, 1]); steeper
#: means a step the checkpoints cannot resolve.
_MAX_RATE = 40.0
#: The midpoint may lie at most this far outside the data, in half-spans.
_MAX_MIDPOINT = 2.0
#: How much (in noise-variance units) the logistic must reduce the squared residuals of
#: the line to be preferred: 2 per extra parameter, as in AIC.
_LOGISTIC_MARGIN = 4.0



# --- inputs --------------------------------------------------------------------------------


class TrendPoint(_Frozen):
    """One checkpoint of one lab on one indicator."""

    flop: DecimalStr
    """Training compute of the checkpoint, FLOP (positive)."""
    value: DecimalStr
    stderr: DecimalStr
    step: Annotated[int, Field(ge=0)] = 0


def points_for_rule(results: Iterable[ResultSummary], rule: Rule) -> list[TrendPoint]:
    """The trend points a rule reads from a lab's results (results lacking it are skipped).

    One point per (step, training_flop): if a checkpoint was reported twice, the riskier
    report is kept, so the choice does not depend on the order of ``results``.
    """
    higher = rule.indicator.direction == "higher_is_riskier"
    best: dict[tuple[int, Decimal], tuple[tuple[Decimal, Decimal], TrendPoint]] = {}
    for res in results:
        m = res.metric(rule.indicator)
        if m is None:
            continue
        key = (res.checkpoint_step, Decimal(res.training_flop))
        v = Decimal(m.value)
        rank = (v if higher else -v, Decimal(m.stderr))
        pt = TrendPoint(flop=res.training_flop, value=m.value, stderr=m.stderr, step=res.checkpoint_step)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, pt)
    return [best[k][1] for k in sorted(best)]


def proxy_points_for_rule(results: Iterable[ResultSummary], rule: Rule) -> list[TrendPoint]:
    """The points of the rule's two-step proxy (``forecast.via``: a metric of the same task),
    read as :func:`points_for_rule` reads the indicator; empty when the rule has no ``via``."""
    if rule.forecast is None or rule.forecast.via is None:
        return []
    proxy = rule.indicator.model_copy(update={"metric": rule.forecast.via})
    return points_for_rule(results, rule.model_copy(update={"indicator": proxy}))


@dataclass(frozen=True)
class _Data:
    x: tuple[float, ...]
    """log10 FLOP, sorted."""
    v: tuple[float, ...]
    """Metric in risk space (negated for lower_is_riskier), normalized."""
    var: tuple[float, ...]
    """Measurement variance, normalized."""
    x_mid: float
    x_half: float
    u: tuple[float, ...]
    """``(x - x_mid) / x_half`` of each point: the fit's normalized compute."""
    y_mean: float
    y_scale: float
    sign: float
    distinct: int
    floor: float | None = None
    """The curve's lowest reachable value (chance, or a lower measurement), normalized risk space."""
    ceiling: float | None = None
    """The metric's best value (or a higher measurement), normalized risk space."""
    noise: float = 0.0
    """Standard deviation of a future measurement, normalized (reported stderr, floored)."""


def _prepare(
    points: Sequence[TrendPoint],
    direction: Direction,
    chance: str | None = None,
    ceiling: str | None = None,
) -> _Data | None:
    sign = 1.0 if direction == "higher_is_riskier" else -1.0
    raw: list[tuple[float, float, float]] = []
    for p in points:
        flop = Decimal(p.flop)
        if flop <= 0:
            raise PolicyError(f"trend point at step {p.step}: training FLOP {p.flop} must be positive")
        x, y, se = _log10_text(p.flop), float(Decimal(p.value)), float(Decimal(p.stderr))
        if not (math.isfinite(y) and math.isfinite(se)) or se < 0:
            raise PolicyError(f"trend point at step {p.step}: value or stderr out of range")
        raw.append((x, sign * y, se))
    raw.sort()
    if raw:
        # Warm-up rule: checkpoints more than WARMUP_DECADES below the latest compute are
        # dropped; their scores reflect the learning-rate warm-up, not the scaling trend.
        cut = raw[-1][0] - WARMUP_DECADES
        raw = [r for r in raw if r[0] >= cut]
    if len(raw) > MAX_POINTS:
        raw = raw[-MAX_POINTS:]
    distinct = len({r[0] for r in raw})
    if distinct < 2:
        return None
    xs = [r[0] for r in raw]
    x_lo, x_hi = xs[0], xs[-1]
    x_mid, x_half = (x_lo + x_hi) / 2.0, (x_hi - x_lo) / 2.0
    total = 0.0
    for r in raw:
        total += r[1]
    y_mean = total / len(raw)
    y_scale = 0.0
    for r in raw:
        y_scale = max(y_scale, abs(r[1] - y_mean))
    if y_scale == 0.0:
        y_scale = 1.0
    def norm(y: float) -> float:
        return (y - y_mean) / y_scale

    v = tuple(norm(r[1]) for r in raw)
    lo = None if chance is None else norm(sign * float(Decimal(chance)))
    hi = None if ceiling is None else norm(sign * float(Decimal(ceiling)))
    # A measurement outside the declared range widens it (a task scored below chance is
    # still measured correctly); the range then holds every forecast.
    if lo is not None:
        lo = min([lo, *v])
    if hi is not None:
        hi = max([hi, *v])
    # The next measurement's noise: the latest checkpoint's reported stderr, never less than
    # a floor (a stderr of 0 would claim an exact future score).
    latest_var = [r[2] for r in raw if r[0] == xs[-1]]
    se = 0.0
    for e in latest_var:
        se = max(se, e)
    span = (hi - lo) if lo is not None and hi is not None else 1.0
    noise = max(se / y_scale, NOISE_FLOOR * span)
    return _Data(
        x=tuple(xs),
        v=v,
        var=tuple((r[2] / y_scale) ** 2 for r in raw),
        x_mid=x_mid,
        x_half=x_half,
        u=tuple((x - x_mid) / x_half for x in xs),
        y_mean=y_mean,
        y_scale=y_scale,
        sign=sign,
        distinct=distinct,
        floor=lo,
        ceiling=hi,
        noise=noise,
    )


# --- the fitted curve ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Curve:
    """One candidate curve of the forecast, in normalized risk space."""

    kind: Literal["logistic", "linear", "flat"]
    theta: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    weight: float


def _curve_at(c: _Curve, u: float) -> tuple[float, float]:
    g: tuple[float, ...]
    if c.kind == "flat":
        return c.theta[0], math.sqrt(c.cov[0][0])
    if c.kind == "linear":
        c0, c1 = c.theta
        f, g = c0 + c1 * u, (1.0, u)
    else:
        a, b, k, m = c.theta
        s = _sigmoid(k * (u - m))
        w = (b - a) * s * (1.0 - s)
        f, g = a + (b - a) * s, (1.0 - s, s, w * (u - m), -w * k)
    q = 0.0
    for i, gi in enumerate(g):
        row = 0.0
        for j, gj in enumerate(g):
            row += c.cov[i][j] * gj
        q += gi * row
    return f, math.sqrt(q) if q > 0.0 else 0.0


@dataclass(frozen=True)
class TrendFit:
    """A fitted trend: a weighted average of candidate curves, with its prediction error.

    ``predict`` gives the forecast and its prediction standard error (the fitted curves'
    own error, their disagreement, and a future measurement's noise); ``interval`` the
    band ``mean ± multiplier * se`` kept inside the metric's range. Values are in the
    metric's own units.
    """

    model: Literal["logistic", "linear"]
    n_points: int
    note: str
    """Which curves were combined and why (e.g. the reason the logistic was left out)."""
    _theta: tuple[float, ...]
    """Parameters of the main curve (the logistic when used, else the line)."""
    _cov: tuple[tuple[float, ...], ...]
    _data: _Data
    _ssr: float
    _parts: tuple[_Curve, ...] = ()
    """The candidate curves and their weights; empty: the main curve alone."""
    dof: int = MIN_DOF
    """Degrees of freedom of the Student t quantile: points less two, at least MIN_DOF."""
    multiplier: float = 1.0
    """Half-width of the band in prediction standard errors (set by the forecast)."""

    def _u(self, log10_flop: float) -> float:
        return (log10_flop - self._data.x_mid) / self._data.x_half

    def _clamp(self, f: float) -> float:
        d = self._data
        if d.floor is not None and f < d.floor:
            f = d.floor
        if d.ceiling is not None and f > d.ceiling:
            f = d.ceiling
        return f

    def _risk(self, log10_flop: float) -> tuple[float, float]:
        """Forecast and prediction standard error in normalized risk space."""
        u = self._u(log10_flop)
        parts = self._parts or (_Curve(self.model, self._theta, self._cov, 1.0),)
        fs: list[tuple[float, float, float]] = []
        mean = 0.0
        for c in parts:
            f, se = _curve_at(c, u)
            f = self._clamp(f)
            fs.append((c.weight, f, se))
            mean += c.weight * f
        var = self._data.noise * self._data.noise
        for w, f, se in fs:
            var += w * (se * se + (f - mean) * (f - mean))
        return mean, math.sqrt(var)

    def _edge(self, log10_flop: float, cz: float) -> float:
        f, se = self._risk(log10_flop)
        return self._clamp(f + cz * se)

    @property
    def last_log10_flop(self) -> float:
        """Compute of the latest checkpoint fitted (log10 FLOP): forecasts start there."""
        return self._data.x[-1]

    def risk_level(self, level: float) -> float:
        """``level`` in the space :meth:`risk_edge` works in (normalized, riskier is higher)."""
        d = self._data
        return (d.sign * level - d.y_mean) / d.y_scale

    def risk_edge(self, log10_flop: float, cz: float) -> float:
        """The forecast moved ``cz`` prediction standard errors towards risk, kept inside the
        metric's range, in the space of :meth:`risk_level`."""
        return self._edge(log10_flop, cz)

    def predict(self, log10_flop: float) -> tuple[float, float]:
        """(forecast, prediction standard error) at ``log10_flop``, in metric units."""
        f, se = self._risk(log10_flop)
        d = self._data
        return d.sign * (d.y_mean + d.y_scale * f), d.y_scale * se

    def interval(self, log10_flop: float) -> tuple[float, float]:
        """(low, high) of the prediction interval at ``log10_flop``, in metric units,
        inside the metric's declared range."""
        d = self._data
        ends = [d.sign * (d.y_mean + d.y_scale * self._edge(log10_flop, cz)) for cz in (-self.multiplier, self.multiplier)]
        return min(ends), max(ends)

    def bounds(self) -> tuple[float | None, float | None]:
        """(lowest, highest) value a forecast may take in metric units (None: unbounded)."""
        d = self._data
        ends = [None if r is None else d.sign * (d.y_mean + d.y_scale * r) for r in (d.floor, d.ceiling)]
        if d.sign < 0:
            ends.reverse()
        return ends[0], ends[1]

    def params(self) -> dict[str, str]:
        """Fitted parameters in metric units and log10 FLOP, 6 significant digits."""
        d = self._data
        if self.model == "linear":
            c0, c1 = self._theta
            slope = c1 / d.x_half
            intercept = c0 - slope * d.x_mid
            vals = {
                "intercept": d.sign * (d.y_mean + d.y_scale * intercept),
                "slope_per_decade": d.sign * d.y_scale * slope,
            }
        else:
            a, b, k, m = self._theta
            vals = {
                "low_compute_limit": d.sign * (d.y_mean + d.y_scale * a),
                "high_compute_limit": d.sign * (d.y_mean + d.y_scale * b),
                "rate_per_decade": k / d.x_half,
                "midpoint_log10_flop": d.x_mid + m * d.x_half,
            }
        return {name: _sig(v) for name, v in vals.items()}


def _sig(v: float, digits: int = 6) -> str:
    with decimal.localcontext(_DCTX) as ctx:
        ctx.prec = digits
        d = +Decimal(v)
    text = format(d, "f") if -20 < d.adjusted() < 20 else format(d, "E")
    if "." in text and "E" not in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _ssr(d: _Data, theta: Sequence[float]) -> float:
    a, b, k, m = theta
    ba = b - a
    total = 0.0
    for v, s in zip(d.v, _sigmoid_all([k * (u - m) for u in d.u]), strict=True):
        r = v - (a + ba * s)
        total += r * r
    return total


def _normal_equations(d: _Data, theta: Sequence[float]) -> tuple[list[list[float]], list[float]]:
    # J^T J and J^T r accumulated per element, point by point in order (unrolled: the
    # same sums, in the same order, as a loop over i <= j).
    a, b, k, m = theta
    ba = b - a
    j00 = j01 = j02 = j03 = j11 = j12 = j13 = j22 = j23 = j33 = 0.0
    r0 = r1 = r2 = r3 = 0.0
    for u, v, s in zip(d.u, d.v, _sigmoid_all([k * (u - m) for u in d.u]), strict=True):
        w = ba * s * (1.0 - s)
        g0, g1, g2, g3 = 1.0 - s, s, w * (u - m), -w * k
        r = v - (a + ba * s)
        r0 += g0 * r
        r1 += g1 * r
        r2 += g2 * r
        r3 += g3 * r
        j00 += g0 * g0
        j01 += g0 * g1
        j02 += g0 * g2
        j03 += g0 * g3
        j11 += g1 * g1
        j12 += g1 * g2
        j13 += g1 * g3
        j22 += g2 * g2
        j23 += g2 * g3
        j33 += g3 * g3
    jtj = [
        [j00, j01, j02, j03],
        [j01, j11, j12, j13],
        [j02, j12, j22, j23],
        [j03, j13, j23, j33],
    ]
    return jtj, [r0, r1, r2, r3]


def _levenberg_marquardt(
    d: _Data, theta0: Sequence[float], bounded: bool = False
) -> tuple[tuple[float, ...], float]:
    """Least squares; ``bounded``: the floor stays at ``d.floor`` and the ceiling within
    (floor, ``d.ceiling``]."""
    theta = tuple(theta0)
    ssr = _ssr(d, theta)
    lam = 1e-3
    for _ in range(_LM_MAX_ITER):
        jtj, jtr = _normal_equations(d, theta)
        if bounded:
            for i in range(4):
                jtj[0][i] = jtj[i][0] = 0.0
            jtj[0][0], jtr[0] = 1.0, 0.0
        accepted = False
        while lam <= 1e12:
            m = [row[:] for row in jtj]
            for i in range(4):
                m[i][i] += lam * (jtj[i][i] + 1e-9)
            step = _solve(m, jtr)
            if step is not None:
                cand = [theta[i] + step[i] for i in range(4)]
                cand[2] = max(-_MAX_RATE, min(_MAX_RATE, cand[2]))
                if bounded and d.floor is not None and d.ceiling is not None:
                    cand[0] = d.floor
                    cand[1] = max(d.floor + 1e-6, min(d.ceiling, cand[1]))
                new = _ssr(d, cand)
                if new < ssr:
                    accepted = True
                    lam = max(lam / 10.0, 1e-12)
                    gain, theta, ssr = ssr - new, tuple(cand), new
                    break
            lam *= 10.0
        if not accepted or gain <= 1e-12 * (ssr + 1e-300):
            break
    return theta, ssr


def _sigma2(d: _Data, ssr: float, n_params: int) -> float:
    dof = len(d.x) - n_params
    meas = 0.0
    for v in d.var:
        meas += v
    meas /= len(d.var)
    return max(ssr / dof if dof > 0 else 0.0, meas)


def _fit_linear(d: _Data, note: str) -> TrendFit | None:
    n = float(len(d.x))
    su = suu = sv = suv = 0.0
    for u, v in zip(d.u, d.v, strict=True):
        su += u
        suu += u * u
        sv += v
        suv += u * v
    xtx = [[n, su], [su, suu]]
    theta = _solve(xtx, [sv, suv])
    inv = _inverse(xtx)
    if theta is None or inv is None:
        return None
    ssr = 0.0
    for x, v in zip(d.x, d.v, strict=True):
        r = v - (theta[0] + theta[1] * (x - d.x_mid) / d.x_half)
        ssr += r * r
    s2 = _sigma2(d, ssr, 2)
    cov = tuple(tuple(s2 * c for c in row) for row in inv)
    return TrendFit("linear", len(d.x), note, tuple(theta), cov, d, ssr)


def _fit_logistic(d: _Data) -> tuple[TrendFit | None, str]:
    # Starting values: a few fixed midpoints, with floor/ceiling from a linear solve given
    # the sigmoid shape; the best of the fixed starts wins (ties: the first), so the
    # result never depends on anything but the data.
    n = len(d.x)
    suv = 0.0
    for x, v in zip(d.x, d.v, strict=True):
        suv += (x - d.x_mid) * v
    k0 = 3.0 if suv >= 0 else -3.0
    best: tuple[tuple[float, ...], float] | None = None
    for m0 in (-0.5, 0.0, 0.5):
        s = _sigmoid_all([k0 * (u - m0) for u in d.u])
        s00 = s01 = s11 = b0 = b1 = 0.0
        for si, v in zip(s, d.v, strict=True):
            s00 += (1 - si) * (1 - si)
            s01 += (1 - si) * si
            s11 += si * si
            b0 += (1 - si) * v
            b1 += si * v
        ab = _solve([[s00, s01], [s01, s11]], [b0, b1]) or [min(d.v), max(d.v)]
        theta, ssr = _levenberg_marquardt(d, (ab[0], ab[1], k0, m0))
        if best is None or ssr < best[1]:
            best = (theta, ssr)
    assert best is not None
    theta, ssr = best
    a, b, k, m = theta
    if not all(math.isfinite(t) for t in theta) or not math.isfinite(ssr):
        return None, "logistic fit diverged"
    if abs(k) >= _MAX_RATE * 0.999:
        return None, "logistic step too sharp for the checkpoints to resolve"
    if abs(m) > _MAX_MIDPOINT:
        return None, "logistic midpoint lies far outside the checkpoints"
    jtj, _ = _normal_equations(d, theta)
    inv = _inverse(jtj)
    if inv is None:
        return None, "logistic parameters not identified by the checkpoints"
    s2 = _sigma2(d, ssr, 4)
    cov = tuple(tuple(s2 * c for c in row) for row in inv)
    return TrendFit("logistic", n, "logistic fit", (a, b, k, m), cov, d, ssr), ""


def _fit_bounded_logistic(d: _Data) -> tuple[TrendFit | None, str]:
    """Logistic with its floor at chance and its ceiling at most the metric's maximum."""
    assert d.floor is not None and d.ceiling is not None
    suv = 0.0
    for x, v in zip(d.x, d.v, strict=True):
        suv += (x - d.x_mid) * v
    k0 = 3.0 if suv >= 0 else -3.0
    best: tuple[tuple[float, ...], float] | None = None
    for m0 in (-0.5, 0.0, 0.5, 1.5):
        theta, ssr = _levenberg_marquardt(d, (d.floor, d.ceiling, k0, m0), bounded=True)
        if best is None or ssr < best[1]:
            best = (theta, ssr)
    assert best is not None
    theta, ssr = best
    if not all(math.isfinite(t) for t in theta) or not math.isfinite(ssr):
        return None, "logistic fit diverged"
    if abs(theta[2]) >= _MAX_RATE * 0.999:
        return None, "logistic step too sharp for the checkpoints to resolve"
    jtj, _ = _normal_equations(d, theta)
    sub = _inverse([row[1:] for row in jtj[1:]])
    if sub is None:
        return None, "logistic parameters not identified by the checkpoints"
    s2 = _sigma2(d, ssr, 3)
    cov = tuple(tuple(0.0 if i == 0 or j == 0 else s2 * sub[i - 1][j - 1] for j in range(4)) for i in range(4))
    return TrendFit("logistic", len(d.x), "bounded logistic", theta, cov, d, ssr), ""


def fit_trend(
    points: Sequence[TrendPoint],
    *,
    direction: Direction,
    chance: str | None = None,
    ceiling: str | None = None,
) -> TrendFit | None:
    """Fit the trend of one indicator over compute; None with fewer than 2 distinct FLOP values.

    The forecast averages three candidate curves: a logistic in log-compute (its floor at
    ``chance`` and its ceiling at most ``ceiling`` when both are declared; otherwise free,
    and kept only where it fits clearly better than a line), a straight line in
    log-compute, and the latest level held flat. Their disagreement widens the interval.
    """
    d = _prepare(points, direction, chance, ceiling)
    if d is None:
        return None
    dof = max(len(d.x) - 2, MIN_DOF)
    flat_v = 0.0
    n_latest = 0
    for x, v in zip(d.x, d.v, strict=True):
        if x == d.x[-1]:
            flat_v += v
            n_latest += 1
    flat = _Curve("flat", (flat_v / n_latest,), ((d.noise * d.noise,),), W_FLAT)
    why = f"{d.distinct} distinct compute values (the logistic needs {MIN_LOGISTIC_POINTS})"
    logistic: TrendFit | None = None
    if d.distinct >= MIN_LOGISTIC_POINTS:
        bounded = d.floor is not None and d.ceiling is not None
        logistic, why = _fit_bounded_logistic(d) if bounded else _fit_logistic(d)
    line = _fit_linear(d, "")
    if line is None:
        return None
    if logistic is not None and logistic.note != "bounded logistic":
        # A free logistic must earn its two extra parameters (an AIC-like margin in units
        # of the noise): fitted to a curve's foot it invents a ceiling at the latest value.
        s2 = max(_sigma2(d, logistic._ssr, 4), 1e-300)
        if (line._ssr - logistic._ssr) / s2 <= _LOGISTIC_MARGIN:
            logistic, why = None, "the logistic does not fit clearly better than a line"
    parts: tuple[_Curve, ...]
    if logistic is None:
        parts = (
            _Curve("linear", line._theta, line._cov, W_LINE_ONLY),
            dataclasses.replace(flat, weight=W_FLAT_ONLY),
        )
        note = f"line and latest level: {why}"
        return dataclasses.replace(line, note=note[:200], _parts=parts, dof=dof)
    parts = (
        _Curve("logistic", logistic._theta, logistic._cov, W_LOGISTIC),
        _Curve("linear", line._theta, line._cov, W_LINE),
        flat,
    )
    return dataclasses.replace(logistic, note=f"{logistic.note}, line and latest level", _parts=parts, dof=dof)


def warn_multiplier(warn_chance: str, dof: int) -> float:
    """The calibrated one-sided bound, in prediction standard errors, that a later
    measurement exceeds with probability ``warn_chance`` (0 at "0.5": the forecast itself)."""
    p = Decimal(warn_chance)
    if p == Decimal("0.5"):
        return 0.0
    return CALIBRATION * t_quantile(str(1 - 2 * p), dof)
