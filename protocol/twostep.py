"""Two-step forecasts: accuracy through a smoother metric measured on the same checkpoints.

Accuracy on a task sits at chance, then rises steeply; fitted against compute directly, its
flat foot says little about where the rise comes. The published method (the Llama 3
report's, AI2's model ladders of Bhagia et al. 2024, the GPT-4 report's) forecasts it in
two steps:

1. a continuous proxy, the mean log-probability of the correct answer (``logprob_correct``,
   at most 0), is extrapolated against compute: by default as a power law, ``-proxy = A *
   C^-alpha`` (a straight line in log-log; a task with one correct answer has no
   irreducible loss, so the law needs no floor), or, with ``proxy_model="trend"``, with
   :func:`protocol.forecast.fit_trend` (the fit of the direct forecasts, ceiling 0);
2. accuracy is mapped from the proxy by a sigmoid fitted on the (proxy, accuracy) pairs
   of the same checkpoints, floored at the task's chance accuracy and capped at its ceiling::

       acc = chance + (ceiling - chance) * sigmoid(k * (proxy - m))

The forecast at a compute is the map at the proxy's forecast. Its prediction standard
error (delta method) combines the proxy forecast's error pushed through the map's slope,
the map's own parameter error, the map's scatter beyond the accuracy measurements' noise,
and the noise of a future accuracy measurement (its latest stderr, floored).

Determinism: as in :mod:`protocol.forecast`, every node computes the same numbers. Inputs
are matched by FLOP and sorted; the map is fitted by Levenberg-Marquardt from fixed starts
with a fixed iteration budget, using only IEEE-754 ``+ - * /``, ``sqrt`` and the
forecast module's own ``exp``; sums are explicit loops in a fixed order.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from protocol.canonical import DECIMAL_RE
from protocol.errors import PolicyError
from protocol.numeric import exp as _exp
from protocol.numeric import inverse as _inverse
from protocol.numeric import log10 as _log10
from protocol.numeric import log10_text as _log10_text
from protocol.numeric import sigmoid as _sigmoid
from protocol.numeric import solve as _solve
from protocol.trend import (
    MIN_DOF,
    NOISE_FLOOR,
    TrendFit,
    TrendPoint,
    _sig,
    fit_trend,
)

ProxyModel = Literal["power_law", "trend"]

#: Fewest matched checkpoints with distinct compute: the map has two parameters and the
#: proxy trend needs a shape, so three points would leave no residual to judge either.
MIN_POINTS = 4
#: The proxy's best value (a log-probability is at most 0).
PROXY_CEILING = "0"
#: Largest map rate, in normalized proxy units (the measured proxies span [-1, 1]): steeper
#: is a step the checkpoints cannot resolve.
MAX_RATE = 40.0
#: Smallest map rate: accuracy must rise with the proxy.
MIN_RATE = 1e-3
#: The map's midpoint may lie at most this many half-spans of the measured proxy beyond it
#: (accuracy still at chance everywhere leaves the midpoint unidentified).
MAX_MIDPOINT = 3.0
#: Smallest magnitude of a log-probability in the power law (a rounded 0 is a near-perfect score).
MIN_PROXY_MAGNITUDE = "0.000001"
#: The fitted map must rise this many accuracy standard errors above chance within the
#: checkpoints, or it is not identified.
RISE_SE = 2.0
_LM_MAX_ITER = 80
with decimal.localcontext(decimal.Context(prec=28)):
    _LN10 = float(Decimal(10).ln())
_STARTS = tuple((k0, m0) for k0 in (2.0, 8.0) for m0 in (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0))


@dataclass(frozen=True)
class PowerLawFit:
    """Step 1 as a power law: ``log10(-proxy)`` a straight line in log10 FLOP."""

    intercept: float
    """``log10(-proxy)`` at the middle of the checkpoints' compute."""
    slope: float
    """Per normalized log-compute unit (the checkpoints span [-1, 1])."""
    cov: tuple[tuple[float, float], tuple[float, float]]
    x_mid: float
    x_half: float
    noise: float
    """Variance of a future measurement of ``log10(-proxy)``: the latest one's, or the residuals' if larger."""

    def predict(self, log10_flop: float) -> tuple[float, float]:
        """(proxy, prediction standard error) at ``log10_flop``."""
        u = (log10_flop - self.x_mid) / self.x_half
        y = self.intercept + self.slope * u
        q = self.cov[0][0] + 2.0 * u * self.cov[0][1] + u * u * self.cov[1][1]
        se_y = math.sqrt(max(q, 0.0) + self.noise)
        p = -_exp(y * _LN10)
        return p, -p * _LN10 * se_y

    def params(self) -> dict[str, str]:
        """``-proxy = 10^a * C^b``: the exponent ``b`` (negative when the proxy improves) and ``a``."""
        b = self.slope / self.x_half
        return {"log10_magnitude_at_1_flop": _sig(self.intercept - b * self.x_mid), "exponent": _sig(b)}


def fit_power_law(points: Sequence[TrendPoint]) -> PowerLawFit | None:
    """Step 1 alone: the power law of a log-probability over compute (points sorted by FLOP
    here); None with fewer than 2 distinct FLOP values."""
    floor = Decimal(MIN_PROXY_MAGNITUDE)
    xs: list[float] = []
    ys: list[float] = []
    var: list[float] = []
    for p in sorted(points, key=lambda q: (Decimal(q.flop), q.step)):
        v = Decimal(p.value)
        if v > 0:
            raise PolicyError(f"two-step forecast: proxy {p.value} at step {p.step} is a log-probability above 0")
        mag = max(-v, floor)
        xs.append(_log10_text(p.flop))
        ys.append(_log10(mag))
        rel = float(Decimal(p.stderr) / mag) / _LN10
        var.append(rel * rel)
    if len(xs) < 2:
        return None
    x_mid, x_half = (xs[0] + xs[-1]) / 2.0, (xs[-1] - xs[0]) / 2.0
    if not x_half > 0.0:
        return None
    n = len(xs)
    su = suu = sy = suy = 0.0
    us = [(x - x_mid) / x_half for x in xs]
    for u, y in zip(us, ys, strict=True):
        su += u
        suu += u * u
        sy += y
        suy += u * y
    xtx = [[float(n), su], [su, suu]]
    theta, inv = _solve(xtx, [sy, suy]), _inverse(xtx)
    if theta is None or inv is None:
        return None
    ssr = meas = 0.0
    for u, y, vy in zip(us, ys, var, strict=True):
        r = y - (theta[0] + theta[1] * u)
        ssr += r * r
        meas += vy
    resid = ssr / (n - 2) if n > 2 else 0.0
    s2 = max(resid, meas / n)
    cov = ((s2 * inv[0][0], s2 * inv[0][1]), (s2 * inv[1][0], s2 * inv[1][1]))
    return PowerLawFit(theta[0], theta[1], cov, x_mid, x_half, max(var[-1], resid))


@dataclass(frozen=True)
class TwoStepFit:
    """A fitted two-step forecast: the proxy's trend over compute and the proxy-to-accuracy map.

    ``predict`` gives (forecast, prediction standard error) in accuracy units; ``interval``
    the band ``mean ± multiplier * se`` inside [chance, ceiling].
    """

    proxy: PowerLawFit | TrendFit
    """Step 1: the proxy against log10 FLOP."""
    chance: float
    ceiling: float
    rate: float
    """Map rate in normalized proxy units."""
    midpoint: float
    """Map midpoint in normalized proxy units."""
    cov: tuple[tuple[float, float], tuple[float, float]]
    """Covariance of (rate, midpoint)."""
    proxy_mid: float
    proxy_half: float
    scatter: float
    """Variance of the map's residuals beyond the accuracy measurements' own noise."""
    noise: float
    """Standard deviation of a future accuracy measurement."""
    n_points: int
    dof: int
    """Degrees of freedom for a Student t quantile: points less two, at least MIN_DOF."""
    last_log10_flop: float = 0.0
    """Compute of the latest checkpoint fitted (log10 FLOP): forecasts start there."""
    multiplier: float = 1.0
    """Half-width of the band in prediction standard errors (set by the forecast)."""
    note: str = "two-step: power law, sigmoid map"

    @property
    def model(self) -> Literal["two_step"]:
        return "two_step"

    def map(self, proxy: float) -> tuple[float, float]:
        """(accuracy, d accuracy / d proxy) of the fitted map at a proxy value."""
        u = (proxy - self.proxy_mid) / self.proxy_half
        s = _sigmoid(self.rate * (u - self.midpoint))
        span = self.ceiling - self.chance
        return self.chance + span * s, span * s * (1.0 - s) * self.rate / self.proxy_half

    def predict(self, log10_flop: float) -> tuple[float, float]:
        """(forecast accuracy, prediction standard error) at ``log10_flop``."""
        p, p_se = self.proxy.predict(log10_flop)
        acc, slope = self.map(p)
        u = (p - self.proxy_mid) / self.proxy_half
        s = _sigmoid(self.rate * (u - self.midpoint))
        w = (self.ceiling - self.chance) * s * (1.0 - s)
        g = (w * (u - self.midpoint), -w * self.rate)
        par = 0.0
        for i in range(2):
            for j in range(2):
                par += g[i] * self.cov[i][j] * g[j]
        var = slope * slope * p_se * p_se + max(par, 0.0) + self.scatter + self.noise * self.noise
        return acc, math.sqrt(var)

    def interval(self, log10_flop: float, multiplier: float | None = None) -> tuple[float, float]:
        """(low, high): ``mean ± multiplier * se`` at ``log10_flop`` (default: the fit's own
        ``multiplier``), inside [chance, ceiling]."""
        mult = self.multiplier if multiplier is None else multiplier
        mean, se = self.predict(log10_flop)
        lo = min(max(mean - mult * se, self.chance), self.ceiling)
        hi = min(max(mean + mult * se, self.chance), self.ceiling)
        return lo, hi

    def risk_level(self, level: float) -> float:
        """``level`` in the space of :meth:`risk_edge` (the metric's own: higher is riskier)."""
        return level

    def risk_edge(self, log10_flop: float, cz: float) -> float:
        """The forecast moved ``cz`` prediction standard errors up, inside [chance, ceiling]."""
        mean, se = self.predict(log10_flop)
        return min(max(mean + cz * se, self.chance), self.ceiling)

    def params(self) -> dict[str, str]:
        """The map in proxy units (rate per proxy unit, midpoint proxy value) and the proxy
        trend's parameters (prefixed ``proxy_``), 6 significant digits."""
        return {
            "rate_per_proxy_unit": _sig(self.rate / self.proxy_half),
            "midpoint_proxy": _sig(self.proxy_mid + self.midpoint * self.proxy_half),
            "chance": _sig(self.chance),
            "ceiling": _sig(self.ceiling),
            **{f"proxy_{k}": v for k, v in self.proxy.params().items()},
        }


def _bound(name: str, text: str) -> float:
    if not isinstance(text, str) or not DECIMAL_RE.fullmatch(text):
        raise PolicyError(f"two-step forecast: {name} {text!r} is not a decimal string")
    return float(Decimal(text))


def _pairs(proxy: Sequence[TrendPoint], target: Sequence[TrendPoint]) -> list[tuple[Decimal, TrendPoint, TrendPoint]]:
    """Proxy and target points matched by FLOP, sorted by FLOP; refuses anything unmatched."""

    def by_flop(points: Sequence[TrendPoint], which: str) -> dict[Decimal, TrendPoint]:
        out: dict[Decimal, TrendPoint] = {}
        for p in points:
            f = Decimal(p.flop)
            if f <= 0:
                raise PolicyError(f"two-step forecast: {which} point at step {p.step}: FLOP {p.flop} must be positive")
            if f in out:
                raise PolicyError(f"two-step forecast: two {which} points at {p.flop} FLOP")
            out[f] = p
        return out

    a, b = by_flop(proxy, "proxy"), by_flop(target, "target")
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        first = f"proxy at {a[only_a[0]].flop} FLOP" if only_a else f"target at {b[only_b[0]].flop} FLOP"
        raise PolicyError(
            f"two-step forecast: proxy and target must come from the same checkpoints; "
            f"{len(only_a) + len(only_b)} unmatched, first: {first}"
        )
    return [(f, a[f], b[f]) for f in sorted(a)]


def _ssr(u: Sequence[float], y: Sequence[float], c: float, span: float, k: float, m: float) -> float:
    total = 0.0
    for ui, yi in zip(u, y, strict=True):
        r = yi - (c + span * _sigmoid(k * (ui - m)))
        total += r * r
    return total


def _normal(u: Sequence[float], y: Sequence[float], c: float, span: float, k: float, m: float
            ) -> tuple[list[list[float]], list[float]]:
    j00 = j01 = j11 = r0 = r1 = 0.0
    for ui, yi in zip(u, y, strict=True):
        s = _sigmoid(k * (ui - m))
        w = span * s * (1.0 - s)
        g0, g1 = w * (ui - m), -w * k
        r = yi - (c + span * s)
        r0 += g0 * r
        r1 += g1 * r
        j00 += g0 * g0
        j01 += g0 * g1
        j11 += g1 * g1
    return [[j00, j01], [j01, j11]], [r0, r1]


def _map_at(u: float, c: float, span: float, k: float, m: float) -> tuple[float, float]:
    s = _sigmoid(k * (u - m))
    return c + span * s, s


def _clip(k: float, m: float) -> tuple[float, float]:
    return max(MIN_RATE, min(MAX_RATE, k)), max(-MAX_MIDPOINT, min(MAX_MIDPOINT, m))


def _fit_map(u: Sequence[float], y: Sequence[float], c: float, span: float) -> tuple[float, float, float]:
    """Least squares (rate, midpoint, ssr) of the bounded sigmoid; the best of fixed starts
    (ties: the first), each refined by Levenberg-Marquardt within the bounds."""
    best: tuple[float, float, float] | None = None
    for k0, m0 in _STARTS:
        k, m = k0, m0
        ssr = _ssr(u, y, c, span, k, m)
        lam = 1e-3
        for _ in range(_LM_MAX_ITER):
            jtj, jtr = _normal(u, y, c, span, k, m)
            accepted = False
            gain = 0.0
            while lam <= 1e12:
                a = [[jtj[0][0] * (1.0 + lam) + 1e-12, jtj[0][1]], [jtj[1][0], jtj[1][1] * (1.0 + lam) + 1e-12]]
                step = _solve(a, jtr)
                if step is not None:
                    ck, cm = _clip(k + step[0], m + step[1])
                    new = _ssr(u, y, c, span, ck, cm)
                    if new < ssr:
                        accepted = True
                        lam = max(lam / 10.0, 1e-12)
                        gain, k, m, ssr = ssr - new, ck, cm, new
                        break
                lam *= 10.0
            if not accepted or gain <= 1e-12 * (ssr + 1e-300):
                break
        if best is None or ssr < best[2]:
            best = (k, m, ssr)
    assert best is not None
    return best


def fit_two_step(
    proxy: Sequence[TrendPoint],
    target: Sequence[TrendPoint],
    *,
    chance: str,
    ceiling: str = "1",
    proxy_model: ProxyModel = "power_law",
) -> TwoStepFit | None:
    """Fit accuracy (``target``) through the proxy (``proxy``, e.g. ``logprob_correct``).

    ``proxy`` and ``target`` are the same checkpoints' measurements (matched by FLOP; a
    checkpoint present in one and not the other is refused). Returns None when the map
    is not identified by the checkpoints: accuracy never leaves chance, the proxy does
    not vary, or the map's step is too sharp to resolve. Raises :class:`PolicyError` on
    invalid inputs or fewer than :data:`MIN_POINTS` checkpoints.
    """
    lo, hi = _bound("chance", chance), _bound("ceiling", ceiling)
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise PolicyError(f"two-step forecast: chance {chance} must be below ceiling {ceiling}")
    pairs = _pairs(proxy, target)
    if len(pairs) < MIN_POINTS:
        raise PolicyError(
            f"two-step forecast: {len(pairs)} checkpoints with distinct compute; it needs at least {MIN_POINTS}"
        )
    xs: list[float] = []
    ys: list[float] = []
    yvar: list[float] = []
    for _, p, t in pairs:
        x, y, se = float(Decimal(p.value)), float(Decimal(t.value)), float(Decimal(t.stderr))
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(se)) or se < 0:
            raise PolicyError(f"two-step forecast: point at step {t.step}: value or stderr out of range")
        xs.append(x)
        ys.append(y)
        yvar.append(se * se)
    step1: PowerLawFit | TrendFit | None
    if proxy_model == "power_law":
        step1 = fit_power_law([p for _, p, _t in pairs])
    elif proxy_model == "trend":
        step1 = fit_trend([p for _, p, _t in pairs], direction="higher_is_riskier", ceiling=PROXY_CEILING)
    else:
        raise PolicyError(f"two-step forecast: unknown proxy model {proxy_model!r}")
    if step1 is None:
        return None
    x_lo, x_hi = min(xs), max(xs)
    half = (x_hi - x_lo) / 2.0
    if not half > 0.0:
        return None
    mid = (x_lo + x_hi) / 2.0
    u = [(x - mid) / half for x in xs]
    span = hi - lo
    k, m, ssr = _fit_map(u, ys, lo, span)
    if not (math.isfinite(k) and math.isfinite(m) and math.isfinite(ssr)):
        return None
    if k >= MAX_RATE * 0.999 or abs(m) >= MAX_MIDPOINT * 0.999:
        return None
    n = len(u)
    meas = 0.0
    for v in yvar:
        meas += v
    meas /= n
    resid = ssr / (n - 2)
    jtj, _ = _normal(u, ys, lo, span, k, m)
    inv = _inverse(jtj)
    if inv is None:
        return None
    s2 = max(resid, meas)
    # A map fitted where accuracy never clearly left chance says nothing about the rise.
    top, _ = _map_at(max(u), lo, span, k, m)
    if top - lo <= RISE_SE * math.sqrt(s2):
        return None
    cov = ((s2 * inv[0][0], s2 * inv[0][1]), (s2 * inv[1][0], s2 * inv[1][1]))
    latest = math.sqrt(yvar[-1])
    return TwoStepFit(
        proxy=step1,
        chance=lo,
        ceiling=hi,
        rate=k,
        midpoint=m,
        cov=cov,
        proxy_mid=mid,
        proxy_half=half,
        scatter=max(resid - meas, 0.0),
        noise=max(latest, NOISE_FLOOR * span),
        n_points=n,
        dof=max(n - 2, MIN_DOF),
        last_log10_flop=_log10(pairs[-1][0]),
    )
