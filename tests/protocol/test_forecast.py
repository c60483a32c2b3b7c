"""Scaling-trend forecasts: recovery on synthetic curves, fallbacks, verdicts, determinism."""

from __future__ import annotations

import math
import random
import struct
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import PolicyError
from protocol.forecast import (
    TrendPoint,
    _exp,
    _sigmoid,
    _sigmoid_all,
    evaluate_with_trend,
    fit_trend,
    forecast_crossing,
    forecast_verdict,
    points_for_rule,
)
from protocol.policy import Policy, ResultSummary, Rule

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
def test_noisy_sigmoid_recovers_crossing(seed: int) -> None:
    fc = forecast_crossing(
        noisy_sigmoid(seed), level="0.6", direction="higher_is_riskier", z="1.96", horizon_flop="1E22"
    )
    assert fc.model == "logistic"
    assert fc.crossing_log10_flop is not None
    assert fc.crossing_low_log10_flop is not None and fc.crossing_high_log10_flop is not None
    central = float(fc.crossing_log10_flop)
    low, high = float(fc.crossing_low_log10_flop), float(fc.crossing_high_log10_flop)
    assert abs(central - true_crossing(0.6)) < 0.1
    assert low <= central <= high
    assert low - 0.05 <= true_crossing(0.6) <= high + 0.05
    assert math.isclose(float(fc.crossing_flop or 0), 10**central, rel_tol=1e-4)
    params = fc.params
    assert abs(float(params["midpoint_log10_flop"]) - M) < 0.2
    assert abs(float(params["high_compute_limit"]) - B) < 0.1


def test_monotone_linear_data_crosses_where_the_line_does() -> None:
    xs = [18.0 + 0.25 * i for i in range(8)]
    ys = [0.1 + 0.1 * (x - 18.0) for x in xs]  # reaches 0.6 at log10 FLOP 23
    fit = fit_trend(pts(xs, ys, se=0.0), direction="higher_is_riskier")
    assert fit is not None
    mean, _ = fit.predict(23.0)
    assert abs(mean - 0.6) < 0.02
    fc = forecast_crossing(
        pts(xs, ys, se=0.0), level="0.6", direction="higher_is_riskier", z="1.96", horizon_flop="1E22"
    )
    assert fc.crossing_log10_flop is not None
    assert abs(float(fc.crossing_log10_flop) - 23.0) < 0.1


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
    fc = forecast_crossing(points, level="0.6", direction="higher_is_riskier", z="1.96", horizon_flop="1E22")
    assert fc.model == model
    v = forecast_verdict(points, rule(), latest_flop="1E21")
    assert v.model == model
    if model == "none":
        assert v.verdict == "ok" and "no trend" in v.reason


def test_same_compute_twice_is_not_a_trend() -> None:
    points = pts([19.0, 19.0, 19.0], [0.1, 0.2, 0.3])
    assert fit_trend(points, direction="higher_is_riskier") is None


def test_unidentified_logistic_falls_back_to_linear() -> None:
    xs = [18.0 + 0.1 * i for i in range(10)]  # only the foot of the curve
    fit = fit_trend(pts(xs, [sigmoid(x) for x in xs], se=0.005), direction="higher_is_riskier")
    assert fit is not None and fit.model == "linear" and fit.note.startswith("linear: ")


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
    got = fc.model_dump(exclude={"note", "level", "z", "n_points"})
    assert got == PINNED, got


PINNED: dict[str, Any] = {
    "model": "logistic",
    "params": {
        "high_compute_limit": "0.961321",
        "low_compute_limit": "0.0416697",
        "midpoint_log10_flop": "19.8948",
        "rate_per_decade": "2.44147",
    },
    "horizon_flop": "4E20",
    "horizon_log10_flop": "20.6021",
    "crossing_log10_flop": "20.5287",
    "crossing_low_log10_flop": "20.4799",
    "crossing_high_log10_flop": "20.5891",
    "crossing_flop": "3.37831E+20",
    "crossing_low_flop": "3.01926E+20",
    "crossing_high_flop": "3.88240E+20",
    "search_limit_log10_flop": "22.7500",
}


def test_fit_is_fast() -> None:
    points = noisy_sigmoid(5)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        forecast_verdict(points, rule(), latest_flop="1E21")
        best = min(best, time.perf_counter() - t0)
    assert best < 0.05


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
    assert [t.hex() for t in fit._theta] == [
        "-0x1.267f9cbc87cf9p-1",
        "0x1.20a4c57986582p+0",
        "0x1.dbb96296e55c6p+1",
        "0x1.663eae07ac0d0p-2",
    ]
    assert fit._ssr.hex() == "0x1.93b9f7fc9d7afp-6"
    fc = forecast_crossing(points, level="0.8", direction="higher_is_riskier", z="1.96", horizon_flop="1E21")
    assert (fc.crossing_low_log10_flop, fc.crossing_log10_flop, fc.crossing_high_log10_flop) == (
        "20.6169",
        "20.6346",
        "20.6536",
    )


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
