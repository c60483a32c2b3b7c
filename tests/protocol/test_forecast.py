"""Scaling-trend forecasts: recovery on synthetic curves, fallbacks, verdicts, determinism."""

from __future__ import annotations

import dataclasses
import math
import random
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import PolicyError
from protocol.forecast import evaluate_with_trend, forecast_crossing, forecast_verdict, positive_flop
from protocol.numeric import exp as _exp
from protocol.numeric import sigmoid as _sigmoid
from protocol.numeric import sigmoid_all as _sigmoid_all
from protocol.numeric import t_quantile
from protocol.policy import Policy, Rule
from protocol.trend import TrendPoint, fit_trend, points_for_rule
from protocol.verdicts import ResultSummary

A, B, K, M = 0.05, 0.95, 2.5, 20.0  # floor, ceiling, rate per decade, midpoint log10 FLOP


def sigmoid(x: float) -> float:
    return A + (B - A) / (1.0 + math.exp(-K * (x - M)))


def true_crossing(level: float) -> float:
    return M - math.log((B - A) / (level - A) - 1.0) / K


def flop(x: float) -> str:
    return f"{10**x:.6E}"


def pts(xs: list[float], ys: list[float], se: float = 0.02) -> list[TrendPoint]:
    return [
        TrendPoint(flop=flop(x), value=f"{y:.4f}", stderr=f"{se:.4f}", step=i)
        for i, (x, y) in enumerate(zip(xs, ys))
    ]


def noisy_sigmoid(seed: int, n: int = 20, noise: float = 0.02) -> list[TrendPoint]:
    rng = random.Random(seed)
    xs = [18.0 + 0.2 * i for i in range(n)]
    return pts(xs, [sigmoid(x) + rng.gauss(0.0, noise) for x in xs], se=noise)


def rule(
    horizon: str = "4", z: str = "1.96", breach: str = "0.6", direction: str = "higher_is_riskier"
) -> Rule:
    alert = "0.3" if direction == "higher_is_riskier" else "0.9"
    return Policy.from_obj(
        {
            "id": "p",
            "version": 1,
            "title": "t",
            "description": "",
            "rules": [
                {
                    "id": "r",
                    "domain": "d",
                    "indicator": {"suite": "s", "task": "t", "metric": "acc", "direction": direction},
                    "alert_level": alert,
                    "breach_level": breach,
                    "uncertainty": {"method": "upper_bound", "z": "1"},
                    "forecast": {"horizon": horizon, "z": z},
                    "actions": {"warn": ["alert"], "breach": ["alert", "pause_proposal"]},
                }
            ],
        }
    ).rules[0]


def test_exp_matches_libm() -> None:
    for i in range(-2000, 2001):
        t = i * 0.17
        assert math.isclose(_exp(t), math.exp(t), rel_tol=4e-15)
    assert _exp(1e6) == _exp(700.0) and _exp(-1e6) == _exp(-700.0)


@pytest.mark.parametrize("seed", range(6), ids=[f"seed{s}" for s in range(6)])
def test_prefix_of_a_sigmoid_warns_before_the_held_out_crossing(seed: int) -> None:
    # Fit only checkpoints below the level (up to log10 FLOP 19.8); the level is crossed
    # at 20.18, later. The interval's risky edge must reach it no later than that, and
    # never before the latest checkpoint.
    points = noisy_sigmoid(seed, n=10)
    fc = forecast_crossing(
        points, level="0.6", direction="higher_is_riskier", z="1.96", horizon_flop="1E22", chance="0.05", ceiling="1"
    )
    assert fc.model == "logistic"
    assert fc.crossing_low_log10_flop is not None
    low = float(fc.crossing_low_log10_flop)
    # Half the forecast's weight is on growth stopping (what real runs do, see the Pythia
    # backtest), so on a clean sigmoid the warning can come up to half a decade late.
    assert 19.8 <= low <= true_crossing(0.6) + 0.5
    if fc.crossing_log10_flop is not None:
        assert low <= float(fc.crossing_log10_flop)
    # The next held-out checkpoint's forecast rises above the last measurement.
    fit = fit_trend(points, direction="higher_is_riskier", chance="0.05", ceiling="1")
    assert fit is not None
    assert fit.predict(20.0)[0] > float(points[-1].value) - 0.02


def test_monotone_linear_data_interval_holds_the_line() -> None:
    xs = [18.0 + 0.25 * i for i in range(8)]
    ys = [0.1 + 0.1 * (x - 18.0) for x in xs]  # reaches 0.6 at log10 FLOP 23
    fit = fit_trend(pts(xs, ys, se=0.0), direction="higher_is_riskier", chance="0", ceiling="1")
    assert fit is not None
    fit = dataclasses.replace(fit, multiplier=1.96)
    mean, se = fit.predict(23.0)
    assert ys[-1] < mean < 0.6 and se > 0
    lo, hi = fit.interval(23.0)
    assert lo <= 0.6 <= hi
    fc = forecast_crossing(
        pts(xs, ys, se=0.0), level="0.6", direction="higher_is_riskier", z="1.96", horizon_flop="1E22"
    )
    assert fc.crossing_low_log10_flop is not None
    assert xs[-1] <= float(fc.crossing_low_log10_flop) <= 23.0


def test_lower_is_riskier_mirrors_higher_is_riskier() -> None:
    up = noisy_sigmoid(3)
    down = [p.model_copy(update={"value": str(1 - Decimal(p.value))}) for p in up]
    a = forecast_crossing(up, level="0.6", direction="higher_is_riskier", z="1.96", horizon_flop="1E22")
    b = forecast_crossing(down, level="0.4", direction="lower_is_riskier", z="1.96", horizon_flop="1E22")
    assert (a.crossing_low_log10_flop, a.crossing_log10_flop, a.crossing_high_log10_flop) == (
        b.crossing_low_log10_flop,
        b.crossing_log10_flop,
        b.crossing_high_log10_flop,
    )


def test_flat_data_never_warns() -> None:
    rng = random.Random(7)
    xs = [18.0 + 0.2 * i for i in range(20)]
    flat = pts(xs, [0.1 + rng.gauss(0.0, 0.01) for _ in xs], se=0.01)
    fc = forecast_crossing(flat, level="0.6", direction="higher_is_riskier", z="1.96", horizon_flop="1E22")
    assert fc.crossing_log10_flop is None and fc.crossing_low_log10_flop is None and not fc.warns
    v = forecast_verdict(flat, rule(horizon="1000"), latest_flop=flop(xs[-1]))
    assert v.verdict == "ok" and "does not reach" in v.reason


@pytest.mark.parametrize(
    ("n", "model"),
    [(0, "none"), (1, "none"), (2, "linear"), (3, "linear"), (4, "logistic")],
    ids=["no_points", "one_point", "two_points", "three_points", "four_points"],
)
def test_too_few_points(n: int, model: str) -> None:
    xs = [18.0, 19.0, 20.0, 21.0][:n]
    points = pts(xs, [sigmoid(x) for x in xs], se=0.02)
    fc = forecast_crossing(
        points, level="0.6", direction="higher_is_riskier", z="1.96", horizon_flop="1E22", chance="0", ceiling="1"
    )
    # Four points allow the logistic; whether it is identified depends on the points.
    assert fc.model == model or (model == "logistic" and fc.model == "linear")
    v = forecast_verdict(points, rule(), latest_flop="1E21")
    assert v.model == ("linear" if model == "logistic" else model)
    if model == "none":
        assert v.verdict == "ok" and "no trend" in v.reason


def test_same_compute_twice_is_not_a_trend() -> None:
    points = pts([19.0, 19.0, 19.0], [0.1, 0.2, 0.3])
    assert fit_trend(points, direction="higher_is_riskier") is None


def test_unidentified_logistic_falls_back_to_linear() -> None:
    xs = [18.0 + 0.1 * i for i in range(10)]  # only the foot of the curve
    fit = fit_trend(pts(xs, [sigmoid(x) for x in xs], se=0.005), direction="higher_is_riskier")
    assert fit is not None and fit.model == "linear" and fit.note.startswith("line and latest level: ")


@pytest.mark.parametrize(
    ("latest", "horizon", "expected"),
    [(19.5, "1", "ok"), (19.5, "100", "warn"), (20.0, "4", "warn"), (20.5, "1", "warn")],
    ids=["far_from_crossing", "long_horizon_reaches_it", "one_step_away", "already_past"],
)
def test_forecast_verdict_against_horizon(latest: float, horizon: str, expected: str) -> None:
    xs = [18.0 + 0.1 * i for i in range(round((latest - 18.0) / 0.1) + 1)]
    points = pts(xs, [sigmoid(x) for x in xs], se=0.01)
    v = forecast_verdict(points, rule(horizon=horizon), latest_flop=flop(xs[-1]))
    assert v.verdict == expected, v.reason
    assert Decimal(v.horizon_flop) == Decimal(flop(xs[-1])) * Decimal(horizon)
    if expected == "warn":
        assert v.crossing_low_flop is not None
        assert Decimal(v.crossing_low_flop) <= Decimal(v.horizon_flop) * Decimal("1.001")


def test_forecast_is_deterministic_and_order_free() -> None:
    points = noisy_sigmoid(11)
    first = forecast_verdict(points, rule(), latest_flop="1E21")
    shuffled = points[:]
    random.Random(0).shuffle(shuffled)
    assert forecast_verdict(shuffled, rule(), latest_flop="1E21") == first
    assert forecast_verdict(points, rule(), latest_flop="1E21") == first


def test_pinned_forecast_vector() -> None:
    # A fixed input and its published output: another machine or implementation that
    # computes something else here would disagree with this network's verdicts.
    xs = [18.0 + 0.25 * i for i in range(12)]
    ys = [
        "0.051",
        "0.058",
        "0.071",
        "0.094",
        "0.135",
        "0.199",
        "0.297",
        "0.42",
        "0.56",
        "0.69",
        "0.79",
        "0.86",
    ]
    points = [
        TrendPoint(flop=flop(x), value=y, stderr="0.015", step=i) for i, (x, y) in enumerate(zip(xs, ys))
    ]
    fc = forecast_crossing(points, level="0.8", direction="higher_is_riskier", z="1.96", horizon_flop="4E20")
    new = {"warn_chance", "warn_z", "crossing_warn_flop", "crossing_warn_log10_flop"}
    got = fc.model_dump(exclude={"note", "level", "z", "n_points"} | new)
    assert got == PINNED, got
    assert all(getattr(fc, k) is None for k in new)  # no warn_chance: the older rule, unchanged


PINNED: dict[str, Any] = {
    # Pinned anew when forecasts became prediction intervals over an average of curves,
    # searched from the latest checkpoint: the data already read 0.86 >= 0.8 there, so
    # every crossing is the latest checkpoint itself, never a date in the past.
    "model": "logistic",
    "params": {
        "high_compute_limit": "0.962246",
        "low_compute_limit": "0.0407818",
        "midpoint_log10_flop": "19.8948",
        "rate_per_decade": "2.43373",
    },
    "horizon_flop": "4E20",
    "horizon_log10_flop": "20.6021",
    "crossing_log10_flop": "20.7500",
    "crossing_low_log10_flop": "20.7500",
    "crossing_high_log10_flop": "20.7500",
    "crossing_flop": "5.62341E+20",
    "crossing_low_flop": "5.62341E+20",
    "crossing_high_flop": "5.62341E+20",
    "search_limit_log10_flop": "22.7500",
    "interval_level": None,
}


def test_bad_inputs_are_policy_errors() -> None:
    with pytest.raises(PolicyError, match="not a positive decimal"):
        forecast_verdict(noisy_sigmoid(0), rule(), latest_flop="-1")
    no_forecast = rule().model_copy(update={"forecast": None})
    with pytest.raises(PolicyError, match="no forecast section"):
        forecast_verdict(noisy_sigmoid(0), no_forecast, latest_flop="1E20")
    with pytest.raises(PolicyError, match="must be positive"):
        fit_trend([TrendPoint(flop="0", value="0.1", stderr="0")] * 3, direction="higher_is_riskier")


# --- from results to trend verdicts ----------------------------------------------------------


def summary(lab: str, step: int, x: float, value: float, stderr: str = "0.01") -> ResultSummary:
    return ResultSummary(
        lab=lab,
        suite="s",
        checkpoint_step=step,
        training_flop=flop(x),
        tasks={"t": {"n": 500, "metrics": {"acc": {"value": f"{value:.4f}", "stderr": stderr}}}},
    )


def test_points_for_rule_dedupes_checkpoints_order_free() -> None:
    results = [summary("a", 1, 18.0, 0.1), summary("a", 1, 18.0, 0.2), summary("a", 2, 19.0, 0.3)]
    got = points_for_rule(results, rule())
    assert [(p.step, p.value) for p in got] == [(1, "0.2000"), (2, "0.3000")]
    assert points_for_rule(list(reversed(results)), rule()) == got


def test_evaluate_with_trend_warns_on_a_rising_trend_and_ignores_other_labs() -> None:
    policy = Policy.from_obj(
        {
            "id": "p",
            "version": 1,
            "title": "t",
            "description": "",
            "rules": [rule(horizon="4", z="1.96").model_dump(mode="json", exclude_none=True)],
        }
    )
    xs = [18.0 + 0.1 * i for i in range(20)]  # up to 19.9; crossing at about 20.18
    history = [summary("a", i, x, sigmoid(x)) for i, x in enumerate(xs[:-1])]
    current = summary("a", 19, xs[-1], sigmoid(xs[-1]))
    ev = evaluate_with_trend(policy, current, history)
    v = ev.by_rule("r")
    assert v is not None and v.trend is not None
    assert v.trend.verdict == "warn" and v.verdict in ("warn", "breach")
    assert v.trend.n_points == 20
    # The same numbers reported by another lab say nothing about lab a's trend.
    alone = evaluate_with_trend(
        policy, summary("a", 19, 18.5, sigmoid(18.5)), [h.model_copy(update={"lab": "b"}) for h in history]
    )
    w = alone.by_rule("r")
    assert w is not None and w.trend is not None and w.trend.model == "none" and w.verdict == "ok"


# --- the fit's arithmetic is pinned: faster code must give the same bits ---------------------


def test_fit_gives_the_pinned_bits() -> None:
    # Values produced by the straightforward loop implementation (one _sigmoid call per
    # point, Horner loop in _exp); every node must reproduce them exactly.
    rng = random.Random(2024)
    xs = [18.0 + 0.05 * i for i in range(60)]
    ys = [0.05 + 0.9 / (1.0 + math.exp(-2.5 * (x - 20.0))) + rng.gauss(0, 0.01) for x in xs]
    points = [
        TrendPoint(flop=f"{10**x:.6E}", value=f"{y:.4f}", stderr="0.0100", step=i)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
    ]
    fit = fit_trend(points, direction="higher_is_riskier")
    assert fit is not None and fit.model == "logistic"
    # Pinned anew (warm-up rule: checkpoints over 2 decades below the latest are dropped).
    assert [t.hex() for t in fit._theta] == [
        "-0x1.13253978d10a7p+0",
        "0x1.2973b2ecc1335p+0",
        "0x1.479b29d5d860fp+1",
        "0x1.7a5f1a1f506a0p-5",
    ]
    assert fit._ssr.hex() == "0x1.7fd5925caefc1p-6"
    fc = forecast_crossing(points, level="0.8", direction="higher_is_riskier", z="1.96", horizon_flop="1E21")
    assert (fc.crossing_low_log10_flop, fc.crossing_log10_flop, fc.crossing_high_log10_flop) == (
        "20.9500",
        "20.9500",
        "20.9500",
    )
    # A prefix, a bounded logistic (chance floor, ceiling 1) and a stated 0.9 level.
    fit = fit_trend(points[:30], direction="higher_is_riskier", chance="0.05", ceiling="1")
    assert fit is not None and fit.model == "logistic"
    assert [t.hex() for t in fit._theta] == [
        "-0x1.fc9046e33cf45p-2",
        "0x1.ba1ad1e28541dp+2",
        "0x1.a7c735f91289cp+0",
        "0x1.d65cbb6eb71ecp+0",
    ]
    assert fit._ssr.hex() == "0x1.fbcdb944e57b2p-3"
    fc = forecast_crossing(
        points[:30], level="0.8", direction="higher_is_riskier", interval_level="0.9",
        chance="0.05", ceiling="1", horizon_flop="1E21",
    )  # fmt: skip
    assert (fc.z, fc.crossing_low_log10_flop, fc.crossing_log10_flop) == ("1.27585", "20.4090", None)


EDGES = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    700.0,
    -700.0,
    700.5,
    -700.5,
    1e308,
    -1e308,
    math.inf,
    -math.inf,
    math.nan,
]


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50))
@settings(max_examples=300, deadline=None)
def test_sigmoid_all_is_sigmoid_bit_for_bit(zs: list[float]) -> None:
    zs = zs + EDGES
    got = _sigmoid_all(zs)
    want = [_sigmoid(z) for z in zs]
    assert [struct.pack("<d", v) for v in got] == [struct.pack("<d", v) for v in want]


# --- properties: inside the range, never in the past ----------------------------------------


@given(
    st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=12),
    st.sampled_from(["0", "0.25", "0.5"]),
    st.floats(min_value=0.0, max_value=0.05),
    st.floats(min_value=0.3, max_value=0.99),
)
@settings(max_examples=60, deadline=None)
def test_forecasts_stay_in_range_and_crossings_are_never_in_the_past(
    ys: list[float], chance: str, se: float, level: float
) -> None:
    xs = [18.0 + 0.3 * i for i in range(len(ys))]
    points = pts(xs, ys, se=se)
    fit = fit_trend(points, direction="higher_is_riskier", chance=chance, ceiling="1")
    assert fit is not None
    fit = dataclasses.replace(fit, multiplier=2.0)
    floor = min([float(chance), *(float(p.value) for p in points)])
    for x in (xs[-1], xs[-1] + 0.6, xs[-1] + 1.5, xs[-1] + 5.0):
        mean, _ = fit.predict(x)
        lo, hi = fit.interval(x)
        assert floor - 1e-12 <= lo <= mean <= hi <= 1.0 + 1e-12
    fc = forecast_crossing(
        points, level=f"{level:.3f}", direction="higher_is_riskier", interval_level="0.9",
        chance=chance, ceiling="1", horizon_flop="1E22",
    )  # fmt: skip
    for c in (fc.crossing_low_log10_flop, fc.crossing_log10_flop, fc.crossing_high_log10_flop):
        assert c is None or Decimal(c) >= Decimal(f"{xs[-1]:.4f}") - Decimal("0.0001")


def test_a_flat_task_at_chance_does_not_warn_just_above_it() -> None:
    rng = random.Random(3)
    xs = [18.0 + 0.2 * i for i in range(12)]
    flat = pts(xs, [0.25 + rng.gauss(0.0, 0.01) for _ in xs], se=0.01)
    fc = forecast_crossing(
        flat, level="0.35", direction="higher_is_riskier", interval_level="0.9",
        chance="0.25", ceiling="1", horizon_flop=flop(xs[-1] + math.log10(4)),
    )  # fmt: skip
    assert not fc.warns


def test_t_quantile_matches_known_values() -> None:
    assert abs(t_quantile("0.9", 1000) - 1.6456) < 1e-3
    assert abs(t_quantile("0.9", 10) - 1.8125) < 2e-3
    assert abs(t_quantile("0.95", 5) - 2.5706) < 2e-2
    assert abs(t_quantile("0.99", 30) - 2.7500) < 2e-3


def _chance_rule(warn_chance: str | None, **forecast: str) -> dict[str, Any]:
    fc: dict[str, str] = {"horizon": "4", "level": "0.9", "chance": "0.05", "ceiling": "1", **forecast}
    if warn_chance is not None:
        fc["warn_chance"] = warn_chance
    return {
        "id": "p", "version": 1, "title": "t", "description": "",
        "rules": [{
            "id": "r", "domain": "d",
            "indicator": {"suite": "s", "task": "t", "metric": "acc", "direction": "higher_is_riskier"},
            "alert_level": "0.3", "breach_level": "0.6",
            "uncertainty": {"method": "upper_bound", "z": "1"},
            "forecast": fc,
            "actions": {"warn": ["alert"], "breach": ["alert", "pause_proposal"]},
        }],
    }  # fmt: skip


def test_warn_chance_orders_the_warning_between_the_risky_edge_and_the_central_forecast() -> None:
    points = noisy_sigmoid(4, n=10)
    kw: dict[str, Any] = dict(
        level="0.6", direction="higher_is_riskier", interval_level="0.9", chance="0.05", ceiling="1",
        horizon_flop="1E22",
    )  # fmt: skip
    old = forecast_crossing(points, **kw)
    # At level 0.9 the risky edge is the one-sided 95% bound: warn_chance 0.05 is the same test.
    same = forecast_crossing(points, warn_chance="0.05", **kw)
    assert same.crossing_warn_log10_flop == old.crossing_low_log10_flop and same.warns == old.warns
    # warn_chance 0.5 is the central forecast itself.
    central = forecast_crossing(points, warn_chance="0.5", **kw)
    assert central.warn_z == "0" and central.crossing_warn_log10_flop == old.crossing_log10_flop
    # A higher chance demanded warns no earlier.
    xs = [
        Decimal(forecast_crossing(points, warn_chance=p, **kw).crossing_warn_log10_flop or "99")
        for p in ("0.05", "0.1", "0.2", "0.3", "0.5")
    ]
    assert xs == sorted(xs) and xs[0] < xs[-1]


def test_warn_chance_decides_the_verdict_and_says_so() -> None:
    # A series that has flattened well below the breach level: the 95% edge of the interval
    # still reaches it within 4x, a 20% chance does not.
    rng = random.Random(11)
    xs = [18.0 + 0.2 * i for i in range(12)]
    ys = [min(0.48, 0.05 + 0.08 * i) + rng.gauss(0.0, 0.01) for i in range(12)]
    points = pts(xs, ys, se=0.01)
    latest = flop(xs[-1])
    edge = Policy.from_obj(_chance_rule(None)).rules[0]
    chance = Policy.from_obj(_chance_rule("0.2")).rules[0]
    a = forecast_verdict(points, edge, latest)
    b = forecast_verdict(points, chance, latest)
    assert (a.verdict, b.verdict) == ("warn", "ok"), (a.reason, b.reason)
    assert "0.2 chance" in b.reason and "breach level 0.6" in b.reason


@pytest.mark.parametrize(
    ("forecast", "message"),
    [
        ({"warn_chance": "0.2", "level": None, "z": "1.96"}, "needs level"),
        ({"warn_chance": "0.6"}, "between 0.01 and 0.5"),
        ({"warn_chance": "0"}, "between 0.01 and 0.5"),
        ({"warn_chance": "0.2x"}, "warn_chance"),
    ],
    ids=["with-z", "above-half", "zero", "not-a-decimal"],
)
def test_bad_warn_chance_is_refused_by_the_policy(forecast: dict[str, Any], message: str) -> None:
    obj = _chance_rule(None)
    fc = obj["rules"][0]["forecast"]
    for k, v in forecast.items():
        if v is None:
            fc.pop(k)
        else:
            fc[k] = v
    with pytest.raises(PolicyError, match=message):
        Policy.from_obj(obj)


@pytest.mark.parametrize("bad", ["0", "-1E20", "lots", "1E20 ", "1E20\n", "\u0661E20", 1e20],
                         ids=["zero", "negative", "text", "trailing-space", "trailing-newline", "arabic-indic-digit",
                              "float"])
def test_a_training_flop_must_be_a_positive_decimal_string(bad) -> None:
    assert positive_flop("1.5E20", "latest") == Decimal("1.5E20")
    with pytest.raises(PolicyError, match="latest training FLOP"):
        positive_flop(bad, "latest")
