"""Forecasts on record in reports (spec §6.13): each prediction with what was measured and
whether it fell inside its interval, and each lab's track record, all recomputed by the
offline verifier from the bundle's signed forecasts and results."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from synthetic import SyntheticNetwork, _result_body, synthetic_network

from reports.bundle import parse_bundle, verify_bundle
from reports.render import render_html


def _forecast(net: SyntheticNetwork, lab: str, model: str, planned: str, acc: tuple[str, str, str]) -> Any:
    value, low, high = acc
    return net.publish(lab, "forecast", {
        "model": model, "planned_flop": planned, "policy_digest": net.policy.digest,
        "predictions": [{"rule": "arithmetic-acc", "value": value, "low": low, "high": high, "level": "0.9"}],
        "ladder": [m for m in [f"frontier-{lab}-7b"] if m != model], "note": "pre-registered before the run",
    })


def _result(net: SyntheticNetwork, lab: str, model: str, flop: int, acc: float) -> Any:
    return net.publish(lab, "eval_result", _result_body(model=model, step=1, flop=flop, acc=acc, n=500,
                                                        started=net.clock - timedelta(minutes=5)))


@pytest.fixture(scope="module")
def net() -> SyntheticNetwork:
    n = synthetic_network(pause=False, reach=0.8)
    # lab-c predicts its next model and is measured inside the interval; lab-a outside;
    # lab-b's forecast is never measured; lab-b also "predicts" a model it measured already.
    n.f_inside = _forecast(n, "lab-c", "frontier-lab-c-70b", "1E21", ("0.60", "0.50", "0.70"))
    n.f_outside = _forecast(n, "lab-a", "frontier-lab-a-70b", "1E21", ("0.30", "0.20", "0.40"))
    n.f_pending = _forecast(n, "lab-b", "frontier-lab-b-70b", "1E21", ("0.50", "0.40", "0.60"))
    measured = [e for e in n.entries if e.kind == "eval_result" and e.lab == "lab-b"][-1]
    flop = measured.statement.body.model.training_flop
    n.f_late = _forecast(n, "lab-b", "frontier-lab-b-7b", flop, ("0.30", "0.20", "0.40"))
    _result(n, "lab-c", "frontier-lab-c-70b", 1_020_000_000_000_000_000_000, 0.65)
    _result(n, "lab-a", "frontier-lab-a-70b", 980_000_000_000_000_000_000, 0.55)
    return n


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_report_shows_each_forecast_scored_and_each_labs_track_record(net: SyntheticNetwork) -> None:
    rep = verify_bundle(net.bundle())
    assert rep.verified is not None, rep.failures()
    a = rep.verified.analysis
    status = {fid: s.status for fid, s in a.forecasts.items()}
    assert status == {net.f_inside.entry_id: "scored", net.f_outside.entry_id: "scored",
                      net.f_pending.entry_id: "pending", net.f_late.entry_id: "late"}
    assert a.forecasts[net.f_inside.entry_id].rules[0].inside is True
    assert a.forecasts[net.f_outside.entry_id].rules[0].abs_error == "0.250000"
    assert a.track["lab-b"].late == 1 and a.track["lab-b"].pending == 1 and a.track["lab-b"].coverage is None
    assert a.track["lab-c"].coverage == "1.0000" and a.track["lab-a"].coverage == "0.0000"
    text = _text(render_html(rep.verified, report=rep))
    section = text[text.index("Forecasts on record") :]
    for phrase in ("Inside the interval", "Outside the interval", "Pending: no result of the model yet",
                   "Late: published after the result", "frontier-lab-c-70b", "100.0%", "0.0%"):
        assert phrase in section, phrase


def _forged(net: SyntheticNetwork, change: Any) -> list[str]:
    doc = json.loads(net.bundle().to_json_bytes())
    change(doc["claims"])
    report = verify_bundle(parse_bundle(doc))
    assert not report.ok
    (claims,) = [c for c in report.checks if c.name == "claims"]
    assert claims.status == "fail"
    return claims.failures


def test_a_forged_track_record_fails_verification(net: SyntheticNetwork) -> None:
    def better(c: dict[str, Any]) -> None:
        for t in c["track"]:
            if t["lab"] == "lab-a":
                t["coverage"], t["inside"] = "1.0000", 1

    assert any("forecast track record of lab lab-a" in f for f in _forged(net, better))


def test_a_forged_score_fails_verification(net: SyntheticNetwork) -> None:
    def inside(c: dict[str, Any]) -> None:
        for f in c["forecasts"]:
            for r in f["rules"]:
                if r["inside"] is False:
                    r["inside"] = True

    assert any("score of forecast" in f for f in _forged(net, inside))


def test_a_late_forecast_passed_off_as_scored_fails_verification(net: SyntheticNetwork) -> None:
    def unlate(c: dict[str, Any]) -> None:
        for f in c["forecasts"]:
            if f["status"] == "late":
                f["status"] = "scored"

    assert any("score of forecast" in f for f in _forged(net, unlate))


def test_a_forecast_or_track_record_left_out_fails_verification(net: SyntheticNetwork) -> None:
    def drop(c: dict[str, Any]) -> None:
        c["forecasts"] = c["forecasts"][1:]
        c["track"] = c["track"][1:]

    failures = _forged(net, drop)
    assert any("has no score claim" in f for f in failures)
    assert any("track record has no claim" in f for f in failures)
