"""Training plans and safety cases (spec §6.12): plan evaluation and its stop point, the
safety-case quorum through the one pause state machine, the overdue-evaluation rule, and
malformed plans refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from protocol.canonical import format_time
from protocol.entries import (
    DocRef,
    PauseCertificateBody,
    SafetyCaseBody,
    TrainingPlanBody,
    VerifiedEntry,
    VoteBody,
    parse_body,
    safety_case_id,
)
from protocol.errors import NumericDomainError, SchemaError
from protocol.feed import FeedWriter
from protocol.keys import SigningKey
from protocol.pause import certifiable_tally, certificate_votes, pause_state
from protocol.plans import PlanState, plan_for, plan_states, run_stop
from protocol.policy import Policy
from protocol.quorum import quorum_weight
from protocol.roster import RosterChain, draft_roster, roster_envelope, verify_entry
from protocol.scope import Run
from protocol.verdicts import ResultSummary

LABS = ["alpha", "beta", "gamma"]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DOCS = [DocRef(name="case.pdf", sha256=hashlib.sha256(b"the case").hexdigest())]


def key(lab: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"plans-test-{lab}".encode()).digest())


def chain(*, safety_case: int | None = 3) -> RosterChain:
    roster = draft_roster(
        network_name="plans-test",
        labs=[(x, x, [key(x).public_key], f"https://{x}.example", 1) for x in LABS],
        pause_weight=2,
        resume_weight=2,
        roster_threshold=3,
        policy_digest="0" * 64,
        issued_at=format_time(T0 - timedelta(days=10)),
        expires=format_time(T0 + timedelta(days=300)),
        safety_case_weight=safety_case,
    )
    return RosterChain.from_envelopes([roster_envelope(roster, [key(x) for x in LABS])])


def policy(*, cadence: str | None = None, forecast: bool = True) -> Policy:
    rule: dict[str, Any] = {
        "id": "r",
        "domain": "d",
        "indicator": {"suite": "s", "task": "t", "metric": "acc", "direction": "higher_is_riskier"},
        "alert_level": "0.4",
        "breach_level": "0.6",
        "uncertainty": {"method": "upper_bound", "z": "1"},
        "actions": {"warn": ["alert"], "breach": ["alert", "pause_proposal"]},
    }
    if forecast:
        rule["forecast"] = {"horizon": "4", "level": "0.9", "chance": "0.25", "ceiling": "1"}
    if cadence is not None:
        rule["cadence"] = {"compute_multiple": cadence, "max_days": 30}
    return Policy.from_obj({"id": "p", "version": 1, "title": "t", "description": "", "rules": [rule]})


def result(lab: str, model: str, log10_flop: float, step: int = 0) -> ResultSummary:
    # Accuracy grows linearly in log-compute: 0.25 at 1e19, +0.1 per decade; the breach
    # level 0.6 is reached at 10^22.5 on the central trend.
    v = 0.25 + 0.1 * (log10_flop - 19.0)
    return ResultSummary(
        lab=lab, suite="s", model=model, checkpoint_step=step, training_flop=f"{10**log10_flop:.6E}",
        tasks={"t": {"n": 1000, "metrics": {"acc": {"value": f"{v:.4f}", "stderr": "0.0100"}}}},
    )


LADDER = {"m-70m": 19.0, "m-160m": 19.5, "m-410m": 20.0, "m-1b": 20.5, "m-3b": 21.0}


def results(lab: str = "alpha") -> dict[str, ResultSummary]:
    return {hashlib.sha256(f"{lab}{m}".encode()).hexdigest(): result(lab, m, x) for m, x in LADDER.items()}


def plan_body(planned: str = "1E23", **kw: Any) -> TrainingPlanBody:
    data: dict[str, Any] = {"model": "m-big", "planned_flop": planned, "cadence": "4", "ladder": list(LADDER)}
    data.update(kw)
    return TrainingPlanBody.model_validate(data)


class Net:
    def __init__(self, ch: RosterChain) -> None:
        self.chain = ch
        self.writers = {x: FeedWriter(ch.network_id, x, key(x)) for x in LABS}
        self.entries: list[VerifiedEntry] = []

    def put(self, lab: str, kind: str, body: Any, minutes: float = 0) -> VerifiedEntry:
        env, _ = self.writers[lab].append(kind, body, format_time(T0 + timedelta(minutes=minutes)))
        e = verify_entry(env, self.chain)
        self.entries.append(e)
        return e

    def case(self, lab: str, plan: VerifiedEntry) -> VerifiedEntry:
        pid = safety_case_id(plan.entry_id, DOCS)
        return self.put(lab, "safety_case", SafetyCaseBody(proposal_id=pid, plan=plan.entry_id, documents=DOCS))

    def vote(self, lab: str, pid: str, decision: str = "accept") -> VerifiedEntry:
        return self.put(lab, "vote", VoteBody(proposal_id=pid, action="accept", decision=decision))  # type: ignore[arg-type]

    def certify(self, lab: str, proposal: VerifiedEntry) -> VerifiedEntry:
        t = certifiable_tally(proposal, self.entries, self.chain, 1)
        body = PauseCertificateBody(
            proposal_id=proposal.statement.body.proposal_id,  # type: ignore[union-attr]
            action="accept", roster_version=1, proposal=proposal.envelope,
            votes=[v.envelope for v in certificate_votes(t)],
        )
        return self.put(lab, "pause_certificate", body)

    def plans(self, pol: Policy | None, res: dict[str, ResultSummary] | None = None) -> dict[str, PlanState]:
        plans = [e for e in self.entries if e.kind == "training_plan"]
        return plan_states(plans, results() if res is None else res, pol, pause_state(self.entries, self.chain))


def test_a_plan_whose_forecast_crosses_inside_its_compute_needs_a_safety_case() -> None:
    net = Net(chain())
    big = net.put("alpha", "training_plan", plan_body("1E23"))
    small = net.put("alpha", "training_plan", plan_body("3E21", model="m-small"))
    states = net.plans(policy())
    st = states[big.entry_id]
    assert st.status == "needs-safety-case"
    assert st.stop_rule == "r"
    # The risky edge of the 0.9 interval reaches 0.6 before the central trend does (10^22.5).
    assert 1e22 < float(st.stop_flop or 0) < 10**22.5
    assert st.stops_at == st.stop_flop
    assert states[small.entry_id].status == "clear"
    assert states[small.entry_id].stop_flop is None
    # Same signed data, same answer, whatever order the entries come in.
    again = plan_states(reversed([big, small]), dict(reversed(list(results().items()))), policy(), pause_state([], net.chain))
    assert {k: v.to_json() for k, v in again.items()} == {k: v.to_json() for k, v in states.items()}


def test_other_labs_and_models_outside_the_ladder_do_not_count() -> None:
    net = Net(chain())
    plan = net.put("alpha", "training_plan", plan_body("1E23"))
    # beta holds the same ladder; alpha's own results are absent: alpha's plan has no trend.
    st = net.plans(policy(), results("beta"))[plan.entry_id]
    assert st.status == "needs-safety-case"
    assert st.stop_flop == "1"  # nothing measured: the run may not start without a case
    assert "no trend" in st.rules[0].reason


def test_pinned_results_restrict_the_ladder() -> None:
    net = Net(chain())
    res = results()
    two = sorted(res)[:1]
    plan = net.put("alpha", "training_plan", plan_body("1E23", results=two))
    st = net.plans(policy(), res)[plan.entry_id]
    # One pinned result, one compute value: no trend, stop at what it measured.
    assert st.stop_flop is not None and st.rules[0].n_points == 1


def test_a_policy_without_forecast_rules_leaves_plans_clear_and_no_policy_leaves_them_unknown() -> None:
    net = Net(chain())
    plan = net.put("alpha", "training_plan", plan_body("1E23"))
    assert net.plans(policy(forecast=False))[plan.entry_id].status == "clear"
    unknown = net.plans(None)[plan.entry_id]
    assert unknown.status == "unknown"
    stop = run_stop(unknown.ref(), Run(model="m-big", current_flop="1E19"))
    assert stop is not None and stop.kind == "plan-unknown"


def test_safety_case_is_accepted_only_with_the_safety_case_quorum() -> None:
    net = Net(chain(safety_case=3))
    plan = net.put("alpha", "training_plan", plan_body("1E23"))
    case = net.case("alpha", plan)
    pid = case.statement.body.proposal_id  # type: ignore[union-attr]
    assert quorum_weight(case, net.chain.current.roster) == 3
    net.vote("alpha", pid)
    net.vote("beta", pid)
    # Weight 2 of 3: a certificate is refused, the plan still needs its case.
    net.certify("alpha", case)
    ps = pause_state(net.entries, net.chain)
    assert ps.proposals[pid].status == "open"
    assert any(f.kind == "invalid-certificate" for f in ps.flags)
    assert net.plans(policy())[plan.entry_id].status == "needs-safety-case"
    net.vote("gamma", pid)
    cert = net.certify("beta", case)
    st = net.plans(policy())[plan.entry_id]
    assert st.status == "accepted"
    assert st.accepted_by == cert.entry_id
    assert st.stop_flop is not None and st.stops_at is None
    # An accepted case pauses nobody and ends no pause.
    ps = pause_state(net.entries, net.chain)
    assert not ps.paused and ps.proposals[pid].status == "certified"


def test_safety_case_quorum_defaults_to_the_pause_quorum() -> None:
    net = Net(chain(safety_case=None))
    plan = net.put("alpha", "training_plan", plan_body("1E23"))
    case = net.case("alpha", plan)
    assert quorum_weight(case, net.chain.current.roster) == 2
    pid = case.statement.body.proposal_id  # type: ignore[union-attr]
    net.vote("alpha", pid)
    net.vote("beta", pid)
    net.certify("beta", case)
    assert net.plans(policy())[plan.entry_id].status == "accepted"


def test_a_safety_case_from_another_lab_does_not_count() -> None:
    net = Net(chain(safety_case=None))
    plan = net.put("alpha", "training_plan", plan_body("1E23"))
    case = net.case("beta", plan)
    pid = case.statement.body.proposal_id  # type: ignore[union-attr]
    net.vote("alpha", pid)
    net.vote("gamma", pid)
    net.certify("gamma", case)
    st = net.plans(policy())[plan.entry_id]
    assert st.status == "needs-safety-case" and st.safety_cases == ()


def test_objections_do_not_accept() -> None:
    net = Net(chain(safety_case=None))
    plan = net.put("alpha", "training_plan", plan_body("1E23"))
    case = net.case("alpha", plan)
    pid = case.statement.body.proposal_id  # type: ignore[union-attr]
    for lab in LABS:
        net.vote(lab, pid, "object")
    t = certifiable_tally(case, net.entries, net.chain, 1)
    assert not t and t.objected == frozenset(LABS)


@pytest.mark.parametrize(
    ("current", "kind"),
    [
        ("1E22", None),
        ("2.5E22", "stop-point"),
        ("9E22", "stop-point"),
        (None, "stop-point"),  # compute unknown: fail closed
    ],
    ids=["before", "at-stop", "past-stop", "unknown-compute"],
)
def test_the_gate_rule_stops_at_the_stop_point(current: str | None, kind: str | None) -> None:
    net = Net(chain())
    plan = net.put("alpha", "training_plan", plan_body("1E23"))
    # A fresh evaluation of the run itself at 1E22 keeps it from being overdue.
    res = {**results(), "f" * 64: result("alpha", "m-big", 22.0)}
    st = net.plans(policy(), res)[plan.entry_id]
    if current is not None and kind == "stop-point":
        current = max(current, st.stop_flop or "0", key=float)
    stop = run_stop(st.ref(), Run(model="m-big", current_flop=current))
    assert (stop.kind if stop else None) == kind
    if stop is not None:
        assert st.stop_flop in stop.reason and plan.entry_id[:16] in stop.reason


def test_overdue_evaluation_counts_from_the_last_signed_eval_and_the_stricter_cadence() -> None:
    net = Net(chain())
    plan = net.put("alpha", "training_plan", plan_body("3E21", model="m-small", cadence="4"))
    res = {**results(), "e" * 64: result("alpha", "m-small", 20.0)}
    st = net.plans(policy(), res)[plan.entry_id]
    assert st.status == "clear"
    assert st.cadence == "4" and float(st.last_eval_flop or 0) == 1e20
    assert float(st.overdue_after or 0) == 4e20
    assert run_stop(st.ref(), Run(model="m-small", current_flop="4E20")) is None
    stop = run_stop(st.ref(), Run(model="m-small", current_flop="4.1E20"))
    assert stop is not None and stop.kind == "overdue-evaluation"
    assert stop.reason.startswith("overdue evaluation") and st.overdue_after in stop.reason
    # The policy's cadence is stricter (2x): it wins.
    st2 = net.plans(policy(cadence="2"), res)[plan.entry_id]
    assert st2.cadence == "2" and float(st2.overdue_after or 0) == 2e20
    # With no evaluation of the run's own model, the ladder's largest compute is the base.
    st3 = net.plans(policy())[plan.entry_id]
    assert st3.last_eval_flop is None and float(st3.overdue_after or 0) == pytest.approx(4e21)


def test_a_run_past_its_planned_compute_stops() -> None:
    net = Net(chain())
    plan = net.put("alpha", "training_plan", plan_body("3E21", model="m-small"))
    res = {**results(), "e" * 64: result("alpha", "m-small", 21.4)}
    st = net.plans(policy(), res)[plan.entry_id]
    stop = run_stop(st.ref(), Run(model="m-small", current_flop="3.1E21"))
    assert stop is not None and stop.kind == "beyond-plan"


def test_the_latest_plan_for_a_model_governs_and_a_plan_id_pins_one() -> None:
    net = Net(chain())
    first = net.put("alpha", "training_plan", plan_body("1E23"))
    second = net.put("alpha", "training_plan", plan_body("3E21"))
    refs = [s.ref() for s in net.plans(policy()).values()]
    got = plan_for(refs, lab="alpha", model="m-big")
    assert got is not None and got.plan == second.entry_id
    pinned = plan_for(refs, lab="alpha", model="m-big", plan_id=first.entry_id)
    assert pinned is not None and pinned.plan == first.entry_id
    assert plan_for(refs, lab="beta", model="m-big") is None
    assert plan_for(refs, lab="beta", model="m-big", plan_id=first.entry_id) is None


@pytest.mark.parametrize(
    ("body", "error", "text"),
    [
        ({"model": "m", "cadence": "4", "ladder": ["a"]}, SchemaError, "planned_flop"),
        ({"model": "m", "planned_flop": "0", "cadence": "4", "ladder": ["a"]}, NumericDomainError, "training compute"),
        ({"model": "m", "planned_flop": "-1E22", "cadence": "4", "ladder": ["a"]}, NumericDomainError, "out of range"),
        ({"model": "m", "planned_flop": "1E22", "cadence": "1", "ladder": ["a"]}, SchemaError, "greater than 1"),
        ({"model": "m", "planned_flop": "1E22", "cadence": "4", "ladder": []}, SchemaError, "ladder"),
        ({"model": "m", "planned_flop": "1E22", "cadence": "4", "ladder": ["a", "a"]}, SchemaError, "twice"),
        ({"model": "", "planned_flop": "1E22", "cadence": "4", "ladder": ["a"]}, SchemaError, "model"),
        ({"model": "m", "planned_flop": "lots", "cadence": "4", "ladder": ["a"]}, SchemaError, "planned_flop"),
    ],
    ids=["no-compute", "zero-compute", "negative-compute", "cadence-one", "empty-ladder", "ladder-twice", "no-model", "compute-not-decimal"],
)
def test_malformed_plans_are_refused(body: dict[str, Any], error: type[Exception], text: str) -> None:
    with pytest.raises(error) as ei:
        parse_body("training_plan", body)
    assert text in str(ei.value)


def test_a_safety_case_must_carry_its_id() -> None:
    with pytest.raises(SchemaError, match="digest of the plan and documents"):
        parse_body("safety_case", {"proposal_id": "0" * 64, "plan": "1" * 64, "documents": [DOCS[0].model_dump()]})
    with pytest.raises(SchemaError, match="documents"):
        parse_body("safety_case", {"proposal_id": safety_case_id("1" * 64, []), "plan": "1" * 64, "documents": []})


def test_a_vote_on_a_safety_case_cannot_decide_pause() -> None:
    with pytest.raises(SchemaError, match="cannot decide 'pause'"):
        parse_body("vote", {"proposal_id": "0" * 64, "action": "accept", "decision": "pause"})


def test_signed_pause_state_lists_plans_additively() -> None:
    from protocol.canonical import canonical_bytes
    from protocol.pausestate import pause_state_statement

    base = {"network": "0" * 64, "node": "alpha", "issued_at": format_time(T0), "nonce": "ab" * 16,
            "paused": False, "roster_version": 1}
    old = pause_state_statement(**base)  # type: ignore[arg-type]
    assert b"plans" not in canonical_bytes(old.model_dump(mode="json"))
    net = Net(chain())
    plan = net.put("alpha", "training_plan", plan_body("1E23"))
    ref = net.plans(policy())[plan.entry_id].ref()
    new = pause_state_statement(**base, plans=[ref.model_dump(mode="json")])  # type: ignore[arg-type]
    assert new.plans == [ref]
    assert b'"plans"' in canonical_bytes(new.model_dump(mode="json"))
