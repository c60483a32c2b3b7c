"""Training plans in reports (spec §6.12): each plan's state, stop point and overdue
compute, recomputed by the verifier from the signed plan, results and votes."""

from __future__ import annotations

import json
import re

import pytest
from synthetic import SyntheticNetwork, synthetic_network

from reports.bundle import parse_bundle, verify_bundle
from reports.render import render_html


@pytest.fixture(scope="module")
def net() -> SyntheticNetwork:
    n = synthetic_network(pause=False, reach=0.8)
    # lab-c plans a run far past its ladder's trend; lab-a a small one the trend never reaches.
    n.publish("lab-c", "training_plan", {"model": "frontier-lab-c-70b", "planned_flop": "1E23", "cadence": "2",
                                          "ladder": ["frontier-lab-c-7b"]})
    n.publish("lab-a", "training_plan", {"model": "frontier-lab-a-1b", "planned_flop": "1E18", "cadence": "4",
                                          "ladder": ["frontier-lab-a-7b"]})
    return n


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_report_shows_each_plan_with_its_recomputed_state_and_stop_point(net: SyntheticNetwork) -> None:
    rep = verify_bundle(net.bundle())
    assert rep.verified is not None, rep.failures()
    states = {ps.model: ps for ps in rep.verified.analysis.plans.values()}
    big, small = states["frontier-lab-c-70b"], states["frontier-lab-a-1b"]
    assert big.status == "needs-safety-case" and big.stop_flop is not None
    assert small.status == "clear" and small.stop_flop is None
    claims = {c.entry: c for c in rep.verified.bundle.claims.plans}
    assert claims[big.plan].stop_flop == big.stop_flop
    text = _text(render_html(rep.verified, report=rep))
    section = text[text.index("Planned training runs and safety cases") :]
    assert "frontier-lab-c-70b" in section and "Needs a safety case: stops at its stop point" in section
    assert "frontier-lab-a-1b" in section and "Clear: no breach is forecast within the plan" in section


def test_a_forged_plan_state_fails_verification(net: SyntheticNetwork) -> None:
    doc = json.loads(net.bundle().to_json_bytes())
    for c in doc["claims"]["plans"]:
        if c["status"] == "needs-safety-case":
            c["status"], c["stop_flop"] = "clear", None  # hide the stop point
    report = verify_bundle(parse_bundle(doc))
    assert not report.ok
    (claims,) = [c for c in report.checks if c.name == "claims"]
    assert claims.status == "fail" and any("state of training plan" in d for d in claims.failures)


def test_a_plan_left_out_of_the_claims_fails_verification(net: SyntheticNetwork) -> None:
    doc = json.loads(net.bundle().to_json_bytes())
    doc["claims"]["plans"] = doc["claims"]["plans"][:1]
    report = verify_bundle(parse_bundle(doc))
    (claims,) = [c for c in report.checks if c.name == "claims"]
    assert claims.status == "fail" and any("has no state claim" in d for d in claims.failures)
