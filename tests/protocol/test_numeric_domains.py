"""Numeric domains of signed decimals (spec §2.2): refused at ingest, never contagious.

A member can sign any well-formed decimal. Out-of-domain ones ("1E70", "1E-999", sixty
digits) must be refused at ingest with ``numeric-domain``, and whatever passes ingest must
evaluate (policy verdicts, trends) without any error but a :class:`PeerDataError`.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.canonical import DECIMAL_RE
from protocol.entries import (
    FORECAST_FLOP,
    METRIC_STDERR,
    METRIC_VALUE,
    TRAINING_FLOP,
    VERDICT_NUMBER,
    NumericDomain,
    parse_body,
    parse_statement,
)
from protocol.errors import NumericDomainError, PeerDataError, SchemaError
from protocol.forecast import evaluate_with_trend
from protocol.policy import Policy
from protocol.verdicts import ResultSummary

H = "ab" * 32


def eval_body(value: str = "0.75", stderr: str = "0.02", flop: str = "1.5E18", step: int = 1) -> dict[str, Any]:
    return {
        "suite": {"id": "s", "version": "1", "digest": H},
        "model": {"name": "m", "commitment": H, "checkpoint_step": step, "training_flop": flop},
        "tasks": [
            {"name": "t", "digest": H, "n": 100, "metrics": {"acc": {"value": value, "stderr": stderr}},
             "items_root": H}
        ],
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:05:00Z",
    }


def alert_body(observed: str = "0.75", level: str = "0.7", **forecast: str) -> dict[str, Any]:
    fc = {"crossing_flop": "1.2E21", "crossing_low": "1E21", "crossing_high": "2E21", "horizon_flop": "6E18"}
    fc.update(forecast)
    return {"result": H, "result_lab": "alpha", "rule": "r", "policy_digest": H, "verdict": "breach",
            "observed": observed, "level": level, "forecast": fc, "message": "m"}


def proposal_body(observed: str = "0.75", level: str = "0.7") -> dict[str, Any]:
    from protocol.entries import Trigger, pause_proposal_id

    trigger = Trigger(result=H, lab="alpha", rule="r", policy_digest=H)
    return {"proposal_id": pause_proposal_id(trigger), "trigger": trigger.model_dump(mode="json"),
            "observed": observed, "level": level}


def metric(value: str = "0.75", stderr: str = "0.02") -> dict[str, Any]:
    return eval_body(value=value, stderr=stderr)


# (kind, body, field path in the message) for each out-of-domain defect
OUT_OF_DOMAIN = [
    ("eval_result", metric(value="1E70"), "tasks.0.metrics.acc.value", "metric_value_1e70"),
    ("eval_result", metric(value="-1000000000000001"), "tasks.0.metrics.acc.value", "metric_value_below_minus_1e15"),
    ("eval_result", metric(value="1E-999"), "tasks.0.metrics.acc.value", "metric_value_exponent_minus_999"),
    ("eval_result", metric(value="0." + "0" * 30 + "1"), "tasks.0.metrics.acc.value", "metric_value_31_places"),
    ("eval_result", metric(value="1." + "1" * 30), "tasks.0.metrics.acc.value", "metric_value_31_digits"),
    ("eval_result", metric(stderr="-0.01"), "tasks.0.metrics.acc.stderr", "stderr_negative"),
    ("eval_result", metric(stderr="2E15"), "tasks.0.metrics.acc.stderr", "stderr_over_1e15"),
    ("eval_result", eval_body(flop="0"), "model.training_flop", "training_flop_zero"),
    ("eval_result", eval_body(flop="-1E20"), "model.training_flop", "training_flop_negative"),
    ("eval_result", eval_body(flop="0.5"), "model.training_flop", "training_flop_below_one"),
    ("eval_result", eval_body(flop="1.1E40"), "model.training_flop", "training_flop_over_1e40"),
    ("eval_result", eval_body(flop="1E999"), "model.training_flop", "training_flop_1e999"),
    ("alert", alert_body(observed="1E41"), "observed", "alert_observed_over_1e40"),
    ("alert", alert_body(level="-1E999"), "level", "alert_level_huge_negative"),
    ("alert", alert_body(level="1E-31"), "level", "alert_level_31_places"),
    ("alert", alert_body(horizon_flop="0"), "forecast.horizon_flop", "forecast_horizon_zero"),
    ("alert", alert_body(crossing_low="1E61"), "forecast.crossing_low", "forecast_crossing_over_1e60"),
    ("alert", alert_body(crossing_flop="1." + "0" * 30), "forecast.crossing_flop", "forecast_crossing_31_digits"),
    ("pause_proposal", proposal_body(observed="1E70"), "observed", "proposal_observed_1e70"),
    ("pause_proposal", proposal_body(level="1E-999"), "level", "proposal_level_exponent_minus_999"),
]


@pytest.mark.parametrize(
    ("kind", "body", "field"), [c[:3] for c in OUT_OF_DOMAIN], ids=[c[3] for c in OUT_OF_DOMAIN]
)
def test_out_of_domain_decimal_is_refused_with_numeric_domain(kind: str, body: dict[str, Any], field: str) -> None:
    with pytest.raises(NumericDomainError, match=f"body field {field}: .* must lie in") as e:
        parse_body(kind, body)
    assert e.value.code == "numeric-domain"
    # The same refusal, under the statement's field path, for a whole feed statement.
    with pytest.raises(NumericDomainError, match=f"statement field body.{field}: ") as e:
        parse_statement({"protocol": "tripwire/1", "network": H, "lab": "alpha", "seq": 1, "prev": None,
                         "issued_at": "2025-01-01T00:06:00Z", "kind": kind, "body": body})
    assert e.value.code == "numeric-domain"


IN_DOMAIN = [
    ("eval_result", metric(value="1E15", stderr="1E15"), "metric_value_at_max"),
    ("eval_result", metric(value="-1000000000000000", stderr="0"), "metric_value_at_min_stderr_zero"),
    ("eval_result", metric(value="-0", stderr="-0"), "negative_zero"),
    ("eval_result", metric(value="0." + "0" * 29 + "1"), "metric_value_30_places"),
    ("eval_result", metric(value="1.5E-29"), "metric_value_exponent_30_places"),
    ("eval_result", metric(value="1." + "1" * 29), "metric_value_30_digits"),
    ("eval_result", eval_body(flop="1"), "training_flop_one"),
    ("eval_result", eval_body(flop="1E40"), "training_flop_at_max"),
    ("eval_result", eval_body(flop="1200000000000000000000"), "training_flop_fixed_point"),
    ("alert", alert_body(observed="-1E40", level="1E40"), "alert_at_bounds"),
    ("alert", alert_body(horizon_flop="1", crossing_flop="1E60"), "forecast_at_bounds"),
    ("pause_proposal", proposal_body(observed="2.959999999999", level="0.7"), "proposal_bound_12_places"),
]


@pytest.mark.parametrize(("kind", "body"), [c[:2] for c in IN_DOMAIN], ids=[c[2] for c in IN_DOMAIN])
def test_in_domain_decimal_is_accepted(kind: str, body: dict[str, Any]) -> None:
    parse_body(kind, body)


def test_optional_decimals_may_be_absent() -> None:
    body = alert_body()
    del body["observed"], body["level"]
    body["forecast"] = {"crossing_flop": None, "horizon_flop": "4E18"}
    parse_body("alert", body)


@pytest.mark.parametrize("bad", ["1e3x", "+1", ".5"], ids=["trailing_junk", "plus_sign", "no_integer_digit"])
def test_malformed_decimal_stays_a_schema_error(bad: str) -> None:
    # Domains refine well-formed decimals; a string that is no decimal at all is `schema`.
    with pytest.raises(SchemaError, match=r"tasks\.0\.metrics\.acc\.value") as e:
        parse_body("eval_result", metric(value=bad))
    assert type(e.value) is SchemaError


@pytest.mark.parametrize(
    "domain", [METRIC_VALUE, METRIC_STDERR, TRAINING_FLOP, FORECAST_FLOP, VERDICT_NUMBER],
    ids=["metric_value", "metric_stderr", "training_flop", "forecast_flop", "verdict_number"],
)
def test_domain_bounds_are_decimal_strings_inside_the_domain(domain: NumericDomain) -> None:
    assert DECIMAL_RE.fullmatch(domain.minimum) and DECIMAL_RE.fullmatch(domain.maximum)
    assert domain.check(domain.minimum) == domain.minimum
    assert domain.check(domain.maximum) == domain.maximum


# --- evaluation raises only PeerDataError -----------------------------------------------------

POLICY = Policy.from_obj(
    {
        "id": "p",
        "version": 1,
        "title": "t",
        "description": "",
        "rules": [
            {
                "id": "high",
                "domain": "d",
                "indicator": {"suite": "s", "task": "t", "metric": "acc", "direction": "higher_is_riskier"},
                "alert_level": "0.5",
                "breach_level": "0.7",
                "uncertainty": {"method": "upper_bound", "z": "1.96"},
                "forecast": {"horizon": "4", "z": "1.96"},
                "actions": {"warn": ["alert"], "breach": ["alert", "pause_proposal"]},
            },
            {
                "id": "low",
                "domain": "d",
                "indicator": {"suite": "s", "task": "t", "metric": "acc", "direction": "lower_is_riskier"},
                "alert_level": "0.5",
                "breach_level": "0.2",
                "uncertainty": {"method": "point"},
                "forecast": {"horizon": "10", "z": "1"},
                "actions": {"warn": ["alert"], "breach": ["pause_proposal"]},
            },
        ],
    }
)

_digits = st.text("0123456789", min_size=1, max_size=70)
#: Any string DECIMAL_RE admits, most of them far outside every domain.
wild_decimals = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.integers(1, 10**70).map(str)),
    st.one_of(st.just(""), _digits.map(lambda d: "." + d)),
    st.one_of(
        st.just(""),
        st.builds(lambda e, s, n: f"{e}{s}{n}", st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
                  st.integers(0, 999)),
    ),
)


def _fixed(lo: int, hi: int, places: int) -> st.SearchStrategy[str]:
    return st.decimals(min_value=lo, max_value=hi, places=places, allow_nan=False, allow_infinity=False).map(
        lambda d: format(d, "f")
    )


values = st.one_of(wild_decimals, _fixed(-(10**15), 10**15, 6), _fixed(0, 1, 4))
stderrs = st.one_of(wild_decimals, _fixed(0, 10**15, 6), _fixed(0, 1, 4))
flops = st.one_of(
    wild_decimals,
    st.builds(lambda m, e: f"{m}E{e}", st.integers(1, 999), st.integers(0, 37)),
    st.integers(1, 10**40).map(str),
)
checkpoints = st.lists(st.tuples(values, stderrs, flops), min_size=1, max_size=6)
in_domain_checkpoints = st.lists(
    st.tuples(
        st.one_of(_fixed(-(10**15), 10**15, 6), _fixed(0, 1, 4), _fixed(-1, 1, 30)),
        st.one_of(_fixed(0, 10**15, 6), _fixed(0, 1, 4)),
        st.one_of(st.builds(lambda m, e: f"{m}E{e}", st.integers(1, 999), st.integers(0, 37)),
                  st.integers(1, 10**40).map(str)),
    ),
    min_size=1,
    max_size=8,
)


def _summaries(points: list[tuple[str, str, str]]) -> list[ResultSummary]:
    return [
        ResultSummary.from_body(eval_body(value=v, stderr=se, flop=f, step=i), lab="alpha")
        for i, (v, se, f) in enumerate(points)
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoints)
def test_evaluation_raises_only_peer_data_errors(points: list[tuple[str, str, str]]) -> None:
    try:
        results = _summaries(points)
        evaluate_with_trend(POLICY, results[-1], results[:-1])
    except PeerDataError:
        pass  # refused with a reason; any other exception fails the test


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(in_domain_checkpoints, checkpoints))
def test_whatever_passes_ingest_evaluates(points: list[tuple[str, str, str]]) -> None:
    try:
        for i, (v, se, f) in enumerate(points):
            parse_body("eval_result", eval_body(value=v, stderr=se, flop=f, step=i))
    except PeerDataError:  # refused at ingest: numeric-domain, or a string over 64 characters
        return
    results = _summaries(points)
    ev = evaluate_with_trend(POLICY, results[-1], results[:-1])
    assert {v.rule_id for v in ev.verdicts} == {"high", "low"}
    # Every number the node would publish in an alert or proposal lies in its domain.
    for v in ev.verdicts:
        VERDICT_NUMBER.check(v.bound)
        if v.trend is not None:
            for x in (v.trend.horizon_flop, v.trend.crossing_flop, v.trend.crossing_low_flop,
                      v.trend.crossing_high_flop):
                if x is not None:
                    FORECAST_FLOP.check(x)


@pytest.mark.parametrize(
    ("value", "stderr", "flop"),
    [("1E70", "0.01", "1E20"), ("0.5", "0.01", "1E999"), ("1E-999", "1E-999", "1E20"),
     ("9" * 64, "0", "1E20"), ("0.5", "1E400", "1E20"), ("0.5", "0.01", "9E999")],
    ids=["metric_value_1e70", "training_flop_1e999", "exponent_minus_999", "sixty_four_digits",
         "stderr_beyond_float", "horizon_beyond_exponent_range"],
)
def test_extreme_decimals_that_skip_ingest_fail_as_peer_data(value: str, stderr: str, flop: str) -> None:
    # A result built without ingest (e.g. from a bundle) still cannot crash evaluation.
    history = _summaries([("0.1", "0.01", "1E18"), ("0.2", "0.01", "1E19")])
    try:
        current = ResultSummary.from_body(eval_body(value=value, stderr=stderr, flop=flop, step=9), lab="alpha")
        evaluate_with_trend(POLICY, current, history)
    except PeerDataError:
        pass


def test_in_domain_extremes_evaluate() -> None:
    points = [("1E15", "1E15", "1E40"), ("-1E15", "0", "1"), ("0." + "0" * 29 + "1", "1E15", "1E39"),
              ("-999999999999999.999999999999999", "0", "2")]
    for i, (v, se, f) in enumerate(points):
        parse_body("eval_result", eval_body(value=v, stderr=se, flop=f, step=i))
    results = _summaries(copy.deepcopy(points))
    ev = evaluate_with_trend(POLICY, results[-1], results[:-1])
    assert ev.by_rule("high") is not None
