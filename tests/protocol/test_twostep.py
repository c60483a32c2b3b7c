"""Two-step forecasts: extrapolation on synthetic ladders, refused inputs, determinism."""

from __future__ import annotations

import math
import random
import struct

import pytest
from curves import ALPHA, CHANCE, K, M, acc_at, proxy_at
from pydantic import ValidationError

from protocol.errors import PolicyError
from protocol.trend import TrendPoint
from protocol.twostep import MIN_POINTS, TwoStepFit, fit_power_law, fit_two_step


def flop(x: float) -> str:
    return f"{10**x:.6E}"


def ladder(xs: list[float], seed: int = 0, p_noise: float = 0.03, a_noise: float = 0.02
           ) -> tuple[list[TrendPoint], list[TrendPoint]]:
    rng = random.Random(seed)
    proxy, target = [], []
    for i, x in enumerate(xs):
        p = proxy_at(x) + rng.gauss(0.0, p_noise)
        a = acc_at(x) + rng.gauss(0.0, a_noise)
        proxy.append(TrendPoint(flop=flop(x), value=f"{p:.6f}", stderr=f"{p_noise:.6f}", step=i))
        target.append(TrendPoint(flop=flop(x), value=f"{a:.6f}", stderr=f"{a_noise:.6f}", step=i))
    return proxy, target


PREFIX = [15.0 + 0.1 * i for i in range(16)]  # up to 10^16.5 FLOP: accuracy from 0.26 to 0.52


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("multiple", [4, 10], ids=["4x", "10x"])
def test_extrapolates_held_out_compute(seed: int, multiple: int) -> None:
    """Fitted on a prefix of the ladder, the forecast at 4x and 10x the latest compute is
    near the accuracy the known curves give there, and inside its own 90%-ish band."""
    proxy, target = ladder(PREFIX, seed)
    fit = fit_two_step(proxy, target, chance="0.25")
    assert isinstance(fit, TwoStepFit)
    x = PREFIX[-1] + math.log10(multiple)
    true = acc_at(x)
    mean, _ = fit.predict(x)
    assert abs(mean - true) < 0.08, (mean, true)
    lo, hi = fit.interval(x, 1.645)
    assert lo <= true <= hi
    assert CHANCE <= lo <= mean <= hi <= 1.0
    # the accuracy the known curves give rose well beyond the last measured one
    assert true - acc_at(PREFIX[-1]) > 0.15


@pytest.mark.parametrize("multiple", [4, 10], ids=["4x", "10x"])
def test_beats_holding_accuracy_flat(multiple: int) -> None:
    """Averaged over seeds, the two-step forecast is closer than the last measured accuracy."""
    x = PREFIX[-1] + math.log10(multiple)
    err_two = err_last = 0.0
    for seed in range(6):
        proxy, target = ladder(PREFIX, seed)
        fit = fit_two_step(proxy, target, chance="0.25")
        assert fit is not None
        err_two += abs(fit.predict(x)[0] - acc_at(x))
        err_last += abs(float(target[-1].value) - acc_at(x))
    assert err_two < 0.5 * err_last


def test_recovers_the_map() -> None:
    proxy, target = ladder([15.0 + 0.1 * i for i in range(30)], seed=5, p_noise=0.0, a_noise=0.005)
    fit = fit_two_step(proxy, target, chance="0.25")
    assert fit is not None
    params = fit.params()
    assert abs(float(params["rate_per_proxy_unit"]) - K) < 0.2
    assert abs(float(params["midpoint_proxy"]) - M) < 0.1
    acc, slope = fit.map(M)
    assert abs(acc - (CHANCE + (1 - CHANCE) / 2)) < 0.02
    assert slope > 0


def test_band_never_below_measurement_noise() -> None:
    proxy, target = ladder(PREFIX, 0)
    fit = fit_two_step(proxy, target, chance="0.25")
    assert fit is not None
    for d in (0.0, 0.6, 1.0):
        assert fit.predict(PREFIX[-1] + d)[1] >= 0.02


def test_interval_clamped_to_chance_and_ceiling() -> None:
    proxy, target = ladder(PREFIX, 0)
    fit = fit_two_step(proxy, target, chance="0.25", ceiling="0.9")
    assert fit is not None
    for x in (10.0, 15.0, 20.0, 30.0):
        lo, hi = fit.interval(x, 50.0)
        assert 0.25 <= lo <= hi <= 0.9


def test_accuracy_at_chance_is_not_identified() -> None:
    proxy, _ = ladder(PREFIX, 0)
    rng = random.Random(7)
    flat = [TrendPoint(flop=p.flop, value=f"{0.25 + rng.gauss(0, 0.01):.6f}", stderr="0.01", step=p.step)
            for p in proxy]
    assert fit_two_step(proxy, flat, chance="0.25") is None


# --- refused inputs ---------------------------------------------------------------------


def _mismatched() -> tuple[list[TrendPoint], list[TrendPoint]]:
    proxy, target = ladder(PREFIX, 0)
    return proxy, [*target[:-1], target[-1].model_copy(update={"flop": flop(17.0)})]


def _missing_target() -> tuple[list[TrendPoint], list[TrendPoint]]:
    proxy, target = ladder(PREFIX, 0)
    return proxy, target[:-1]


def _duplicate() -> tuple[list[TrendPoint], list[TrendPoint]]:
    proxy, target = ladder(PREFIX, 0)
    return [*proxy, proxy[0]], [*target, target[0]]


def _too_few() -> tuple[list[TrendPoint], list[TrendPoint]]:
    return ladder(PREFIX[: MIN_POINTS - 1], 0)


def _zero_flop() -> tuple[list[TrendPoint], list[TrendPoint]]:
    proxy, target = ladder(PREFIX, 0)
    return [proxy[0].model_copy(update={"flop": "0"}), *proxy[1:]], target


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_mismatched, "same checkpoints; 2 unmatched, first: proxy at 3.162278E+16 FLOP"),
        (_missing_target, "1 unmatched, first: proxy at 3.162278E+16 FLOP"),
        (_duplicate, "two proxy points at 1.000000E+15 FLOP"),
        (_too_few, f"3 checkpoints with distinct compute; it needs at least {MIN_POINTS}"),
        (_zero_flop, "FLOP 0 must be positive"),
    ],
    ids=["mismatched_flop", "missing_target", "duplicate_checkpoint", "too_few_points", "zero_flop"],
)
def test_refuses_bad_checkpoints(make, message: str) -> None:  # type: ignore[no-untyped-def]
    proxy, target = make()
    with pytest.raises(PolicyError, match="two-step forecast") as e:
        fit_two_step(proxy, target, chance="0.25")
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("chance", "ceiling", "message"),
    [
        ("NaN", "1", "chance 'NaN' is not a decimal string"),
        ("0.25", "inf", "ceiling 'inf' is not a decimal string"),
        ("0.25 ", "1", "chance '0.25 ' is not a decimal string"),
        ("0.5", "0.5", "chance 0.5 must be below ceiling 0.5"),
    ],
    ids=["nan_chance", "inf_ceiling", "trailing_space", "empty_range"],
)
def test_refuses_bad_bounds(chance: str, ceiling: str, message: str) -> None:
    proxy, target = ladder(PREFIX, 0)
    with pytest.raises(PolicyError) as e:
        fit_two_step(proxy, target, chance=chance, ceiling=ceiling)
    assert message in str(e.value)


@pytest.mark.parametrize("text", ["NaN", "nan", "Infinity", "-inf", "1e5000x"])
def test_nan_like_values_cannot_be_points(text: str) -> None:
    with pytest.raises(ValidationError):
        TrendPoint(flop="1e18", value=text, stderr="0.01")


# --- determinism ------------------------------------------------------------------------


def _bits(fit: TwoStepFit) -> list[bytes]:
    out = []
    for x in (15.0, 16.0, 16.7, 17.5, 18.0):
        mean, se = fit.predict(x)
        lo, hi = fit.interval(x, 1.645)
        out += [struct.pack("<d", v) for v in (mean, se, lo, hi)]
    return out


def test_bit_identical_and_order_independent() -> None:
    proxy, target = ladder(PREFIX, 3)
    base = fit_two_step(proxy, target, chance="0.25")
    assert base is not None
    again = fit_two_step(proxy, target, chance="0.25")
    assert again is not None and _bits(again) == _bits(base)
    rng = random.Random(11)
    for _ in range(3):
        p2, t2 = proxy[:], target[:]
        rng.shuffle(p2)
        rng.shuffle(t2)
        shuffled = fit_two_step(p2, t2, chance="0.25")
        assert shuffled is not None
        assert _bits(shuffled) == _bits(base)
        assert shuffled.params() == base.params()


@pytest.mark.parametrize("multiple", [4, 10], ids=["4x", "10x"])
def test_trend_proxy_model(multiple: int) -> None:
    """Step 1 by the direct forecasts' trend fit: it holds half its weight on the latest
    level, so on a steady power law it lags, but it stays inside its (wider) band."""
    x = PREFIX[-1] + math.log10(multiple)
    for seed in range(4):
        proxy, target = ladder(PREFIX, seed)
        fit = fit_two_step(proxy, target, chance="0.25", proxy_model="trend")
        assert fit is not None
        lo, hi = fit.interval(x, 1.645)
        assert lo <= acc_at(x) <= hi
        assert abs(fit.predict(x)[0] - acc_at(x)) < 0.2


def test_proxy_above_zero_is_refused() -> None:
    proxy, target = ladder(PREFIX, 0)
    proxy[2] = proxy[2].model_copy(update={"value": "0.1"})
    with pytest.raises(PolicyError, match=r"proxy 0\.1 at step 2 is a log-probability above 0"):
        fit_two_step(proxy, target, chance="0.25")


def test_unknown_proxy_model_is_refused() -> None:
    proxy, target = ladder(PREFIX, 0)
    with pytest.raises(PolicyError, match="unknown proxy model 'spline'"):
        fit_two_step(proxy, target, chance="0.25", proxy_model="spline")  # type: ignore[arg-type]


def test_published_parameters_of_a_fixed_ladder() -> None:
    """The published numbers of one fixed ladder: a change to the fit shows up here."""
    proxy, target = ladder(PREFIX, 0)
    fit = fit_two_step(proxy, target, chance="0.25")
    assert fit is not None
    assert fit.params() == {
        "rate_per_proxy_unit": "2.12815",
        "midpoint_proxy": "-1.21478",
        "chance": "0.25",
        "ceiling": "1",
        "proxy_log10_magnitude_at_1_flop": "5.93795",
        "proxy_exponent": "-0.349312",
    }


def test_power_law_step_alone() -> None:
    proxy, _ = ladder(PREFIX, 1)
    fit = fit_power_law(list(reversed(proxy)))
    assert fit is not None
    assert abs(float(fit.params()["exponent"]) + ALPHA) < 0.01
    x = PREFIX[-1] + 1.0
    p, se = fit.predict(x)
    assert abs(p - proxy_at(x)) < 3 * se
    assert fit_power_law(proxy[:1]) is None
