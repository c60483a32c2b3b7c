"""Policy rules that forecast through a proxy (``forecast.via``): the two-step forecast in
verdicts and ladder predictions, its fallback to the direct fit, and refused policies."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from curves import acc_at, proxy_at

from protocol.errors import PolicyError
from protocol.forecast import evaluate_with_trend, fit_for_rule, forecast_verdict
from protocol.ladder import ladder_points, ladder_proxy_points, predict_at
from protocol.policy import Policy
from protocol.trend import points_for_rule, proxy_points_for_rule
from protocol.verdicts import ResultSummary


def crossing_of_truth(level: float) -> float:
    lo, hi = 14.0, 22.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if acc_at(mid) >= level else (mid, hi)
    return hi


PREFIX = [15.0 + 0.1 * i for i in range(16)]  # up to 10^16.5 FLOP: accuracy 0.26 -> 0.52


def results(xs: list[float], *, seed: int = 0, lab: str = "a", model: str = "m",
            acc: Any = acc_at, proxy: Any = proxy_at) -> list[ResultSummary]:
    rng = random.Random(seed)
    out = []
    for i, x in enumerate(xs):
        metrics = {"acc": {"value": f"{acc(x) + rng.gauss(0, 0.02):.6f}", "stderr": "0.020000"}}
        if proxy is not None:
            metrics["logprob_correct"] = {"value": f"{min(proxy(x) + rng.gauss(0, 0.03), 0.0):.6f}", "stderr": "0.030000"}
        out.append(ResultSummary(lab=lab, suite="s", model=model, checkpoint_step=i, training_flop=f"{10**x:.6E}",
                                 tasks={"t": {"n": 500, "metrics": metrics}}))
    return out


def rule_obj(breach: str = "0.6", **forecast: str) -> dict[str, Any]:
    fc = {"horizon": "4", "level": "0.9", "chance": "0.25", "ceiling": "1", "via": "logprob_correct"}
    fc.update(forecast)
    return {
        "id": "r",
        "domain": "d",
        "indicator": {"suite": "s", "task": "t", "metric": "acc", "direction": "higher_is_riskier"},
        "alert_level": "0.55",
        "breach_level": breach,
        "uncertainty": {"method": "point"},
        "forecast": {k: v for k, v in fc.items() if v is not None},
        "actions": {"warn": ["alert"], "breach": ["alert", "pause_proposal"]},
    }


def policy(**kw: Any) -> Policy:
    return Policy.from_obj({"id": "p", "version": 1, "title": "t", "description": "", "rules": [rule_obj(**kw)]})


def trend(p: Policy, rs: list[ResultSummary]) -> Any:
    v = evaluate_with_trend(p, rs[-1], rs[:-1]).by_rule("r")
    assert v is not None and v.trend is not None
    return v.trend


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_via_extrapolates_the_rise_and_dates_the_real_crossing(seed: int) -> None:
    """Fitted on a prefix below the breach level, the two-step verdict warns for a level the
    true curve reaches within the horizon, and stays ok for one it reaches far beyond it."""
    rs = results(PREFIX, seed=seed)
    horizon_end = PREFIX[-1] + math.log10(4)
    soon, late = "0.6", "0.97"
    assert crossing_of_truth(0.6) <= horizon_end < crossing_of_truth(0.97) - 0.5
    near = trend(policy(breach=soon), rs)
    assert near.model == "two_step" and near.verdict == "warn", near.reason
    assert "two-step trend (via logprob_correct)" in near.reason
    # The central crossing lies within 0.3 decades of the truth's.
    assert near.crossing_flop is not None
    assert abs(math.log10(float(near.crossing_flop)) - crossing_of_truth(0.6)) < 0.3
    far = trend(policy(breach=late), rs)
    assert far.model == "two_step" and far.verdict == "ok", far.reason


def test_without_via_the_same_rule_uses_the_direct_fit() -> None:
    rs = results(PREFIX)
    direct = trend(policy(via=None), rs)
    assert direct.model in ("logistic", "linear") and "two-step" not in direct.reason


@pytest.mark.parametrize(
    ("case", "rs", "needle"),
    [
        ("accuracy_still_at_chance", results(PREFIX[:8], acc=lambda x: 0.25), "do not identify the map"),
        ("proxy_missing", results(PREFIX, proxy=None), "0 checkpoints carry both metrics"),
        ("proxy_not_a_log_probability", results(PREFIX, proxy=lambda x: 0.5 - proxy_at(x)), None),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_falls_back_to_the_direct_fit_and_says_why(case: str, rs: list[ResultSummary], needle: str | None) -> None:
    if case == "proxy_not_a_log_probability":
        # A hostile lab signs log-probabilities above 0; the clamp in results() is undone here.
        rs = [r.model_copy(update={"tasks": {"t": r.tasks["t"].model_copy(update={"metrics": {
            **r.tasks["t"].metrics,
            "logprob_correct": r.tasks["t"].metrics["acc"],
        }})}}) for r in rs]
        needle = "above 0"
    t = trend(policy(), rs)
    assert t.model in ("logistic", "linear"), t.reason
    assert "two-step via logprob_correct not used" in t.reason and needle in t.reason, t.reason


def test_only_checkpoints_with_both_metrics_feed_the_map() -> None:
    rs = results(PREFIX)
    holes = [r if i % 2 else r.model_copy(update={"tasks": {"t": r.tasks["t"].model_copy(update={
        "metrics": {"acc": r.tasks["t"].metrics["acc"]}})}}) for i, r in enumerate(rs)]
    p = policy()
    rule = p.rules[0]
    fit = fit_for_rule(points_for_rule(holes, rule), rule, proxy_points=proxy_points_for_rule(holes, rule))
    assert fit is not None and fit.model == "two_step" and fit.n_points == len(PREFIX) // 2


def test_order_of_history_does_not_change_the_verdict() -> None:
    rs = results(PREFIX, seed=5)
    p = policy()
    a = evaluate_with_trend(p, rs[-1], rs[:-1])
    b = evaluate_with_trend(p, rs[-1], list(reversed(rs[:-1])))
    assert a == b


def test_ladder_predicts_an_untrained_size_through_the_proxy() -> None:
    """Five sizes of one recipe (one checkpoint each) forecast a model at 4x the largest."""
    xs = [15.0, 15.3, 15.6, 15.9, 16.2, 16.5]
    rs = [r.model_copy(update={"model": f"size-{i}"}) for i, r in enumerate(results(xs, seed=3))]
    p = policy()
    rule = p.rules[0]
    models = [r.model for r in rs]
    pts = ladder_points(rs, lab="a", models=models, rule=rule)
    prox = ladder_proxy_points(rs, lab="a", models=models, rule=rule)
    target = 10 ** (16.5 + math.log10(4))
    pred = predict_at(pts, rule, f"{target:.6E}", proxy_points=prox)
    assert pred.model == "two_step"
    assert pred.low is not None and pred.high is not None and pred.value is not None
    truth = acc_at(math.log10(target))
    assert float(pred.low) <= truth <= float(pred.high)
    direct = predict_at(pts, rule, f"{target:.6E}")
    assert direct.model != "two_step"


@pytest.mark.parametrize(
    ("forecast", "indicator", "needle"),
    [
        ({"chance": None}, {}, "needs chance and ceiling"),
        ({"ceiling": None}, {}, "needs chance and ceiling"),
        ({"via": "acc"}, {}, "indicator's own metric"),
        ({"chance": "0.75", "ceiling": "0"}, {"direction": "lower_is_riskier"}, "higher_is_riskier"),
        ({"via": "not a metric!"}, {}, "via"),
    ],
    ids=["no_chance", "no_ceiling", "via_is_the_indicator", "lower_is_riskier", "bad_metric_name"],
)
def test_policies_that_cannot_forecast_through_a_proxy_are_refused(forecast: dict, indicator: dict, needle: str) -> None:
    obj = rule_obj(**forecast)
    obj["indicator"].update(indicator)
    if indicator.get("direction") == "lower_is_riskier":
        obj["alert_level"], obj["breach_level"] = "0.5", "0.4"
    with pytest.raises(PolicyError, match=needle):
        Policy.from_obj({"id": "p", "version": 1, "title": "t", "description": "", "rules": [obj]})


def test_verdict_refuses_a_rule_without_forecast() -> None:
    rule = policy().rules[0].model_copy(update={"forecast": None})
    with pytest.raises(PolicyError, match="no forecast section"):
        forecast_verdict([], rule, "1E16")
