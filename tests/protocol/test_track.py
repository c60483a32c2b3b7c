"""Forecasts on record (spec §6.13): the body's checks, which result scores a forecast
(first in feed order within ±10% of the planned compute), the late flag, unknown rules and
metrics, the track record's fixed-place text, and an extrapolation scored against a
held-out measurement."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from protocol.canonical import format_time
from protocol.entries import (
    EvalResultBody,
    ForecastBody,
    Metric,
    ModelRef,
    SuiteRef,
    TaskResult,
    VerifiedEntry,
    parse_body,
)
from protocol.errors import NumericDomainError, SchemaError
from protocol.feed import FeedWriter
from protocol.keys import SigningKey
from protocol.policy import Policy
from protocol.roster import RosterChain, draft_roster, roster_envelope, verify_entry
from protocol.track import (
    fixed_places,
    predict_forecast,
    score_forecasts,
    track_records,
    within_window,
)
from protocol.verdicts import ResultSummary

LABS = ["alpha", "beta"]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def key(lab: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"track-test-{lab}".encode()).digest())


def chain() -> RosterChain:
    roster = draft_roster(
        network_name="track-test",
        labs=[(x, x, [key(x).public_key], f"https://{x}.example", 1) for x in LABS],
        pause_weight=2, resume_weight=2, roster_threshold=2, policy_digest="0" * 64,
        issued_at=format_time(T0 - timedelta(days=10)), expires=format_time(T0 + timedelta(days=300)),
    )
    return RosterChain.from_envelopes([roster_envelope(roster, [key(x) for x in LABS])])


def policy(*, rules: tuple[str, ...] = ("r",)) -> Policy:
    out = []
    for rid in rules:
        out.append({
            "id": rid,
            "domain": "d",
            "indicator": {"suite": "s", "task": "t" if rid == "r" else f"t-{rid}", "metric": "acc",
                          "direction": "higher_is_riskier"},
            "alert_level": "0.8",
            "breach_level": "0.9",
            "uncertainty": {"method": "point"},
            "forecast": {"horizon": "4", "level": "0.9", "chance": "0.25", "ceiling": "1"},
            "actions": {"warn": ["alert"], "breach": ["alert"]},
        })
    return Policy.from_obj({"id": "p", "version": 1, "title": "t", "description": "", "rules": out})


def result_body(model: str, flop: str, acc: str, *, task: str = "t") -> EvalResultBody:
    return EvalResultBody(
        suite=SuiteRef(id="s", version="1", digest="1" * 64),
        model=ModelRef(name=model, commitment=hashlib.sha256(model.encode()).hexdigest(), checkpoint_step=0,
                       training_flop=flop),
        tasks=[TaskResult(name=task, digest="2" * 64, n=1000, metrics={"acc": Metric(value=acc, stderr="0.01")},
                          items_root="3" * 64)],
        started_at=format_time(T0), finished_at=format_time(T0),
    )


def forecast_body(pol: Policy, *, model: str = "m-big", planned: str = "1E22", preds: list[dict[str, Any]] | None = None,
                  **kw: Any) -> dict[str, Any]:
    preds = preds if preds is not None else [{"rule": "r", "value": "0.55", "low": "0.5", "high": "0.6", "level": "0.9"}]
    return {"model": model, "planned_flop": planned, "policy_digest": pol.digest, "predictions": preds, **kw}


class Net:
    def __init__(self) -> None:
        self.chain = chain()
        self.writers = {x: FeedWriter(self.chain.network_id, x, key(x)) for x in LABS}
        self.entries: list[VerifiedEntry] = []
        self.minutes = 0

    def put(self, lab: str, kind: str, body: Any) -> VerifiedEntry:
        self.minutes += 1
        env, _ = self.writers[lab].append(kind, body, format_time(T0 + timedelta(minutes=self.minutes)))
        e = verify_entry(env, self.chain)
        self.entries.append(e)
        return e

    def result(self, lab: str, model: str, flop: str, acc: str, **kw: Any) -> VerifiedEntry:
        return self.put(lab, "eval_result", result_body(model, flop, acc, **kw))

    def results(self) -> list[tuple[VerifiedEntry, ResultSummary]]:
        return [(e, ResultSummary.from_body(e.statement.body.model_dump(mode="json"), lab=e.lab))
                for e in self.entries if e.kind == "eval_result"]

    def scores(self, pol: Policy | None) -> dict[str, Any]:
        return score_forecasts([e for e in self.entries if e.kind == "forecast"], self.results(), pol)


# --- the body ---------------------------------------------------------------------------------


def _bad(mut: Any) -> dict[str, Any]:
    body = forecast_body(policy())
    mut(body)
    return body


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (_bad(lambda b: b["predictions"][0].update(low="0.7")), SchemaError, "interval low 0.7 is above high 0.6"),
        (_bad(lambda b: b["predictions"].append(dict(b["predictions"][0]))), SchemaError, "rule 'r' more than once"),
        (_bad(lambda b: b["predictions"][0].update(value="0.5.5")), SchemaError, "'0.5.5' is not a decimal string"),
        (_bad(lambda b: b["predictions"][0].update(value="0.7")), SchemaError, "outside its interval"),
        (_bad(lambda b: b.update(planned_flop="0")), NumericDomainError, "training compute must lie in"),
        (_bad(lambda b: b.update(planned_flop="lots")), SchemaError, "'lots' is not a decimal string"),
        (_bad(lambda b: b.update(predictions=[])), SchemaError, "predictions"),
        (_bad(lambda b: b["predictions"][0].update(level="1")), SchemaError, "strictly between 0 and 1"),
        (_bad(lambda b: b.update(ladder=["m-big"])), SchemaError, "in its own ladder"),
        (_bad(lambda b: b["predictions"][0].update(value=0.55)), SchemaError, "valid string"),
    ],
    ids=["low-above-high", "duplicate-rule", "bad-decimal", "value-outside", "compute-zero", "compute-text",
         "no-predictions", "level-one", "own-ladder", "float"],
)
def test_malformed_forecast_bodies_are_refused_naming_the_problem(body: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error) as e:
        parse_body("forecast", body)
    assert message in e.value.message


def test_a_rule_the_policy_lacks_is_refused_against_the_policy_but_not_at_ingest() -> None:
    pol = policy()
    body = forecast_body(pol, preds=[{"rule": "nope", "value": "1", "low": "0", "high": "2"}])
    assert parse_body("forecast", body)  # ingest checks form: the policy may have changed since
    with pytest.raises(SchemaError, match="rule 'nope' is not a rule of the policy"):
        ForecastBody.for_rules(body, [r.id for r in pol.rules])


def test_level_is_omitted_from_the_signed_bytes_when_absent() -> None:
    b = parse_body("forecast", forecast_body(policy(), preds=[{"rule": "r", "value": "1", "low": "0", "high": "2"}]))
    assert "level" not in b.model_dump(mode="json")["predictions"][0]


# --- scoring ----------------------------------------------------------------------------------


def test_window_is_exact_ten_percent_either_side() -> None:
    assert within_window("9E21", "1E22") and within_window("1.1E22", "1E22")
    assert not within_window("8.99999E21", "1E22") and not within_window("1.100001E22", "1E22")


def test_pending_until_a_result_within_the_window_arrives_then_scored_against_the_first() -> None:
    net, pol = Net(), policy()
    f = net.put("alpha", "forecast", parse_body("forecast", forecast_body(pol)))
    net.result("alpha", "m-big", "5E21", "0.50")  # outside the window: not the run forecast
    net.result("beta", "m-big", "1E22", "0.58")  # another lab's model of the same name
    s = net.scores(pol)[f.entry_id]
    assert s.status == "pending" and s.result is None and s.rules[0].status == "pending"
    first = net.result("alpha", "m-big", "1.05E22", "0.58")
    net.result("alpha", "m-big", "1E22", "0.70")  # later: the first result in the window counts
    s = net.scores(pol)[f.entry_id]
    assert s.status == "scored" and s.result == first.entry_id and s.result_flop == "1.05E22"
    r = s.rules[0]
    assert (r.status, r.observed, r.abs_error, r.inside) == ("scored", "0.58", "0.030000", True)
    assert s.policy_current


def test_outside_the_interval_is_scored_as_outside() -> None:
    net, pol = Net(), policy()
    f = net.put("alpha", "forecast", parse_body("forecast", forecast_body(pol)))
    net.result("alpha", "m-big", "1E22", "0.61")
    r = net.scores(pol)[f.entry_id].rules[0]
    assert (r.status, r.inside, r.abs_error) == ("scored", False, "0.060000")
    assert "outside the interval [0.5, 0.6]" in r.reason


def test_a_forecast_published_after_its_result_is_late_and_not_counted() -> None:
    net, pol = Net(), policy()
    net.result("alpha", "m-big", "1E22", "0.55")
    f = net.put("alpha", "forecast", parse_body("forecast", forecast_body(pol)))
    net.result("alpha", "m-big", "1E22", "0.56")  # a later result does not rescue it
    s = net.scores(pol)[f.entry_id]
    assert s.status == "late" and s.rules[0].status == "late" and s.rules[0].inside is None
    assert "not a prediction" in s.rules[0].reason
    rec = track_records(net.scores(pol).values())["alpha"]
    assert (rec.count, rec.late, rec.scored, rec.coverage, rec.mean_abs_error) == (1, 1, 0, None, None)


def test_unknown_rule_missing_metric_and_no_policy() -> None:
    net, two = Net(), policy(rules=("r", "q"))
    preds = [{"rule": "r", "value": "0.55", "low": "0.5", "high": "0.6"},
             {"rule": "q", "value": "0.3", "low": "0.2", "high": "0.4"},
             {"rule": "z", "value": "0.3", "low": "0.2", "high": "0.4"}]
    f = net.put("alpha", "forecast", parse_body("forecast", forecast_body(two, preds=preds)))
    net.result("alpha", "m-big", "1E22", "0.55")  # has task t only: rule q's metric is missing
    rules = {r.rule: r for r in net.scores(two)[f.entry_id].rules}
    assert rules["r"].status == "scored"
    assert rules["q"].status == "unknown" and "no metric s/t-q/acc" in rules["q"].reason
    assert rules["z"].status == "unknown" and "no rule 'z'" in rules["z"].reason
    assert [r.rule for r in net.scores(two)[f.entry_id].rules] == ["q", "r", "z"]  # sorted
    none = net.scores(None)[f.entry_id]
    assert none.status == "unknown" and not none.policy_current
    assert all(r.status == "unknown" for r in none.rules)


def test_track_record_counts_and_fixed_place_text() -> None:
    net, pol = Net(), policy()
    for model, (lo, v, hi) in {"a": ("0.5", "0.55", "0.6"), "b": ("0.1", "0.2", "0.3"), "c": ("0.4", "0.45", "0.5")}.items():
        net.put("alpha", "forecast", parse_body("forecast", forecast_body(
            pol, model=model, preds=[{"rule": "r", "value": v, "low": lo, "high": hi}])))
    net.put("alpha", "forecast", parse_body("forecast", forecast_body(pol, model="d")))  # stays pending
    net.result("alpha", "a", "1E22", "0.56")  # inside, error 0.01
    net.result("alpha", "b", "1E22", "0.25")  # inside, error 0.05
    net.result("alpha", "c", "1E22", "0.6")   # outside, error 0.15
    rec = track_records(net.scores(pol).values())["alpha"]
    assert (rec.forecasts, rec.count, rec.scored, rec.inside, rec.pending) == (4, 4, 3, 2, 1)
    assert rec.coverage == "0.6667"  # 2/3, half-even at 4 places
    assert rec.mean_abs_error == "0.070000"  # (0.01 + 0.05 + 0.15) / 3
    assert track_records([]) == {}


@pytest.mark.parametrize(
    ("x", "places", "text"),
    [(Fraction(2, 3), 4, "0.6667"), (Fraction(1, 8), 2, "0.12"), (Fraction(3, 8), 2, "0.38"), (Fraction(1), 4, "1.0000"),
     (Fraction(0), 6, "0.000000"), (Fraction(123456789, 1000), 2, "123456.79"), (Fraction(-1, 3), 3, "-0.333")],
    ids=["two-thirds", "half-even-down", "half-even-up", "one", "zero", "large", "negative"],
)
def test_fixed_places_rounds_the_exact_value_half_to_even(x: Fraction, places: int, text: str) -> None:
    assert fixed_places(x, places) == text


def test_scores_do_not_depend_on_input_order() -> None:
    net, pol = Net(), policy()
    net.put("alpha", "forecast", parse_body("forecast", forecast_body(pol)))
    net.result("alpha", "m-big", "1E22", "0.58")
    net.put("beta", "forecast", parse_body("forecast", forecast_body(pol, model="m-b")))
    fs = [e for e in net.entries if e.kind == "forecast"]
    a = score_forecasts(fs, net.results(), pol)
    b = score_forecasts(list(reversed(fs)) * 2, list(reversed(net.results())), pol)
    assert {k: v.to_json() for k, v in a.items()} == {k: v.to_json() for k, v in b.items()}
    assert list(a) == list(b)


# --- extrapolation: fit a ladder prefix, forecast, score against the held-out result ----------

#: Accuracy grows linearly in log-compute, 0.25 at 1e19 and +0.1 per decade.
LADDER = {"m-70m": 19.0, "m-160m": 19.5, "m-410m": 20.0, "m-1b": 20.5, "m-3b": 21.0}


def _acc(log10_flop: float) -> str:
    return f"{0.25 + 0.1 * (log10_flop - 19.0):.4f}"


def test_a_ladder_prefix_forecasts_the_held_out_model_and_the_measurement_is_scored() -> None:
    net, pol = Net(), policy()
    for m, x in LADDER.items():
        net.result("alpha", m, f"{10**x:.6E}", _acc(x))
    summaries = [s for _, s in net.results()]
    predicted = predict_forecast(summaries, lab="alpha", ladder=list(LADDER), policy=pol, planned_flop="1E22")
    assert predicted.skipped == ()
    (p,) = predicted.predictions
    assert p.rule == "r" and p.level == "0.9"
    # The policy's curve bends toward its ceiling, so the central value falls short of the
    # straight line's 0.55; the 0.9 interval still reaches it.
    assert 0.4 < float(p.value) < 0.55 < float(p.high) and float(p.low) < float(p.value)
    f = net.put("alpha", "forecast", ForecastBody.model_validate(
        {**forecast_body(pol, preds=[p.model_dump(mode="json")]), "ladder": list(LADDER)}))
    assert net.scores(pol)[f.entry_id].status == "pending"
    net.result("alpha", "m-big", "1E22", _acc(22.0))  # the held-out measurement
    s = net.scores(pol)[f.entry_id]
    r = s.rules[0]
    assert s.status == "scored" and r.inside is True and r.observed == "0.5500"
    assert r.abs_error == fixed_places(abs(Fraction("0.55") - Fraction(p.value)), 6)
    rec = track_records(net.scores(pol).values())["alpha"]
    assert rec.coverage == "1.0000" and rec.scored == 1


def test_a_ladder_with_one_compute_value_has_nothing_to_predict() -> None:
    net, pol = Net(), policy()
    net.result("alpha", "m-70m", "1E19", "0.25")
    predicted = predict_forecast([s for _, s in net.results()], lab="alpha", ladder=["m-70m"], policy=pol,
                                 planned_flop="1E22")
    assert predicted.predictions == () and predicted.skipped[0][0] == "r"
    assert "no trend" in predicted.skipped[0][1]
