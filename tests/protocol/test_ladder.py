"""Cross-model forecasts over a lab's ladder: which results count, extrapolation to an
untrained size, and the stop point of a planned run."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from protocol.errors import PolicyError
from protocol.ladder import ladder_points, predict_at, stop_point
from protocol.policy import Policy, Rule
from protocol.verdicts import ResultSummary


def _rule(forecast: dict[str, str]) -> Rule:
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
                    "indicator": {"suite": "s", "task": "t", "metric": "acc", "direction": "higher_is_riskier"},
                    "alert_level": "0.4",
                    "breach_level": "0.6",
                    "uncertainty": {"method": "upper_bound", "z": "1"},
                    "forecast": forecast,
                    "actions": {"warn": ["alert"], "breach": ["alert", "pause_proposal"]},
                }
            ],
        }
    ).rules[0]


RULE = _rule({"horizon": "4", "level": "0.9", "chance": "0.25", "ceiling": "1"})


def truth(log10_flop: float) -> float:
    # A ladder whose accuracy grows linearly in log-compute from chance: 0.25 at 1e19,
    # +0.1 per decade.
    return 0.25 + 0.1 * (log10_flop - 19.0)


def result(lab: str, model: str, log10_flop: float, step: int = 1000, value: float | None = None) -> ResultSummary:
    v = truth(log10_flop) if value is None else value
    return ResultSummary(
        lab=lab,
        suite="s",
        model=model,
        checkpoint_step=step,
        training_flop=f"{10**log10_flop:.6E}",
        tasks={"t": {"n": 1000, "metrics": {"acc": {"value": f"{v:.4f}", "stderr": "0.0100"}}}},
    )


LADDER = {"m-70m": 19.0, "m-160m": 19.5, "m-410m": 20.0, "m-1b": 20.5, "m-3b": 21.0}


def ladder_results(lab: str = "alpha") -> list[ResultSummary]:
    return [result(lab, m, x, step=i) for i, (m, x) in enumerate(LADDER.items())]


def test_ladder_points_take_only_the_labs_own_ladder_models() -> None:
    noise = [
        result("beta", "m-1b", 20.5, value=0.99),  # another lab's model of the same name
        result("alpha", "other-recipe", 20.7, value=0.99),  # outside the declared ladder
    ]
    pts = ladder_points(noise + ladder_results(), lab="alpha", models=list(LADDER), rule=RULE)
    assert [p.value for p in pts] == [f"{truth(x):.4f}" for x in LADDER.values()]
    # The order of the results does not matter.
    assert ladder_points(list(reversed(noise + ladder_results())), lab="alpha", models=list(LADDER), rule=RULE) == pts


def test_prediction_for_an_untrained_size_holds_the_held_out_truth() -> None:
    # Fit the three smallest sizes only; predict the two held-out larger ones.
    small = [r for r in ladder_results() if r.model in ("m-70m", "m-160m", "m-410m")]
    pts = ladder_points(small, lab="alpha", models=list(LADDER), rule=RULE)
    for x in (20.5, 21.0):
        p = predict_at(pts, RULE, f"{10**x:.6E}")
        assert p.value is not None and p.low is not None and p.high is not None
        assert Decimal(p.low) <= Decimal(f"{truth(x):.4f}") <= Decimal(p.high)
        assert 0.25 <= float(p.low) <= float(p.value) <= float(p.high) <= 1.0
        assert p.level == "0.9"
    # Farther extrapolation is less certain.
    near = predict_at(pts, RULE, f"{10**20.5:.6E}")
    far = predict_at(pts, RULE, f"{10**21.5:.6E}")
    assert float(far.high) - float(far.low) > float(near.high) - float(near.low)  # type: ignore[arg-type]


def test_prediction_is_bit_identical_and_published_as_text() -> None:
    pts = ladder_points(ladder_results(), lab="alpha", models=list(LADDER), rule=RULE)
    a = predict_at(pts, RULE, "1E22")
    b = predict_at(list(pts), RULE, "1E22")
    assert a == b and a.model_dump() == b.model_dump()
    assert all(isinstance(v, str) for v in (a.value, a.low, a.high))


def test_one_size_is_no_trend() -> None:
    pts = ladder_points(ladder_results()[:1], lab="alpha", models=list(LADDER), rule=RULE)
    p = predict_at(pts, RULE, "1E22")
    assert p.model == "none" and p.value is None
    assert stop_point(pts, RULE, "1E22") is None


def test_stop_point_is_where_the_breach_becomes_plausible_and_not_after_the_plan() -> None:
    pts = ladder_points(ladder_results(), lab="alpha", models=list(LADDER), rule=RULE)
    # The central trend reaches 0.6 at 10^22.5; the interval's risky edge earlier.
    far_plan = f"{10**23.5:.6E}"
    sp = stop_point(pts, RULE, far_plan)
    assert sp is not None
    x = math.log10(float(sp))
    assert 21.0 <= x <= 22.5
    # A plan that ends before the stop point needs no stop.
    assert stop_point(pts, RULE, f"{10 ** (x - 0.3):.6E}") is None
    # A plan that ends past it stops at the same point, whatever its size.
    assert stop_point(pts, RULE, f"{10**24:.6E}") == sp


@pytest.mark.parametrize("bad", ["0", "-1E20", "lots", "1E20 ", "1E20\n", "\u0661E20"],
                         ids=["zero", "negative", "text", "trailing-space", "trailing-newline", "arabic-indic-digit"])
def test_bad_target_compute_is_refused(bad: str) -> None:
    pts = ladder_points(ladder_results(), lab="alpha", models=list(LADDER), rule=RULE)
    with pytest.raises(PolicyError, match="target training FLOP"):
        predict_at(pts, RULE, bad)
    with pytest.raises(PolicyError, match="target training FLOP"):
        stop_point(pts, RULE, bad)


def test_rule_without_forecast_is_refused() -> None:
    r = RULE.model_copy(update={"forecast": None})
    with pytest.raises(PolicyError, match="no forecast section"):
        predict_at([], r, "1E22")
