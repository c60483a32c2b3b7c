"""`make demo` end to end: the same code path, plan, policy and seeds, with a deadline.

Real nodes (separate processes), real training of three tiny models, real evaluation of
their checkpoints, the shared policy applied by every node. Asserts the story the demo
tells, in order: the sensitive eval (log-probability) warns first, a trend forecast warns
of the crossing, one lab's model breaches the accuracy threshold (not the log-probability
rule), the pause certificate forms, and every lab's training halts at its gate; then a
report whose first page carries the policy's own text and whose evidence verifies offline.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from node.demo import ACCURACY_RULE, DEFAULT_PLAN, LOGPROB_RULE, print_summary, run_demo
from node.home import NodeHome
from protocol.entries import decode_entry
from reports.bundle import load_bundle


def _first(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_demo_warns_forecasts_breaches_on_accuracy_pauses_halts_and_verifies(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    # The story ends at the pause, reached at a fixed training step (the seeds fix it); the
    # deadline is only a safety net against a hang, far past what the slowest machine needs.
    r = run_demo(tmp_path / "net", deadline_s=2000, console=console)
    log = "\n".join(r.events)
    assert [s.error for s in r.states] == [None, None, None], log
    assert r.paused, log

    # the story, as the node recorded it: warning, forecast, breach, certificate, halts
    story = [(m.what, m.lab, m.rule) for m in r.story]
    whats = [w for w, _, _ in story]
    assert whats.index("early warning") < whats.index("trend warning") < whats.index("breach"), story
    assert whats.index("breach") < whats.index("certificate") < whats.index("halt"), story
    warning = next(m for m in r.story if m.what == "early warning")
    assert warning.rule == LOGPROB_RULE
    breach = next(m for m in r.story if m.what == "breach")
    assert (breach.lab, breach.rule) == ("aurora", ACCURACY_RULE), story
    aurora_warning = next(m for m in r.story if m.what == "early warning" and m.lab == "aurora")
    assert aurora_warning.step is not None and breach.step is not None
    assert aurora_warning.step < breach.step  # checkpoints of warning before the breach
    with NodeHome.open(r.homes[0]) as h:
        (proposal,) = h.store.entries(kind="pause_proposal")
        assert proposal.statement.body.trigger.rule == ACCURACY_RULE
        assert Decimal(proposal.statement.body.level) == Decimal("0.50")
        assert Decimal(proposal.statement.body.observed) >= Decimal("0.50")
        plans = {e.entry_id: e for e in h.store.entries(kind="training_plan")}
        notes = [e for e in h.store.entries(kind="note") if e.statement.body.text.startswith("training halted at step ")]
        # The pause's halt records (the fourth act's plan stop cites the plan instead).
        halts = {e.statement.lab: e.statement.body.text for e in notes if not set(e.statement.body.refs) & set(plans)}
        plan_halts = [e for e in notes if set(e.statement.body.refs) & set(plans)]
        # Which proposal each certificate certifies. Supporters certify one stagger apart, so
        # on a loaded machine a second may publish before the first reaches it: duplicates
        # are valid and harmless (spec §6.5), a certificate for anything else is not.
        certificates = {e.statement.body.proposal_id for e in h.store.entries(kind="pause_certificate")
                        if e.statement.body.action == "pause"}
        resumes = {e.statement.body.proposal_id for e in h.store.entries(kind="pause_certificate")
                   if e.statement.body.action == "resume"}

    # every lab's training loop halted at a gate check, and signed where
    for s, plan in zip(r.states, DEFAULT_PLAN, strict=True):
        assert s.state == "halted", (s.plan.lab, s.state, s.halt_message)
        assert s.halted_at is not None and s.halted_at < plan.max_steps
        assert halts.get(s.plan.lab, "").startswith(f"training halted at step {s.halted_at}"), halts

    # the console tells it in the same order, votes before the certificate that quotes them
    lines = r.events
    early, trend = _first(lines, "EARLY WARNING"), _first(lines, "TREND WARNING")
    brk, cert = _first(lines, "BREACH: aurora's model now answers"), _first(lines, "PAUSE CERTIFICATE")
    assert early < trend < brk < cert, log
    assert "of two-digit additions correctly" in lines[brk] and "the agreed threshold is 50%" in lines[brk]
    assert all(i < cert for i, line in enumerate(lines) if "votes PAUSE" in line and i < cert + 1), log
    # the breaching lab's gate stops at once on its own breach; the others stop on the
    # certificate, and their signed halt records say so
    assert certificates == {proposal.statement.body.proposal_id}, certificates
    for lab in ("borealis", "cygnus"):
        assert "pause certificate" in halts[lab], (lab, halts)
    for meaning in ("sensitive evals warn first", "the trend forecasts the crossing", "reads at a glance"):
        assert meaning in log

    # the report: the policy's own text on its first page, and offline verification
    assert r.report_dir is not None and r.verify_exit == 0
    html = (r.report_dir / "report.html").read_text()
    assert "Two-digit addition stands in for a dangerous capability" in html[: len(html) // 3]
    assert (r.report_dir / "report.pdf").read_bytes().startswith(b"%PDF")
    bundle = load_bundle(r.report_dir / "evidence.json")
    cited = {decode_entry(env).statement.kind for env in bundle.entries}
    assert {"eval_result", "pause_proposal", "vote", "pause_certificate"} <= cited

    # the fourth act: the labs resume, aurora plans a larger run of the same recipe, every
    # node says it needs a safety case with the same stop point, and its gate stops the run
    # at the first step at or past that point (a signed halt record citing the plan)
    act = r.plan_act
    assert act is not None and not act.note, (act, log)
    assert act.resumed and act.resume_proposal is not None and resumes == {act.resume_proposal}, resumes
    assert act.status == "needs-safety-case" and act.stop_flop is not None and act.nodes_agree
    assert act.plan in plans and plans[act.plan].statement.lab == "aurora"
    assert act.halt_kind == "stop-point" and act.halted_flop is not None and act.halted_step is not None
    assert Decimal(act.halted_flop) >= Decimal(act.stop_flop)
    # it stopped at the first step past the stop point, not later
    per_step = Decimal(act.halted_flop) / act.halted_step
    assert Decimal(act.halted_flop) - per_step < Decimal(act.stop_flop) * Decimal("1.000001")
    assert [e.statement.lab for e in plan_halts] == ["aurora"]
    assert f"training halted at step {act.halted_step}" in plan_halts[0].statement.body.text
    assert "plan halt" in [m.what for m in r.story]

    print_summary(r, console)
    text = console.export_text()
    assert "The network is PAUSED" in text
    assert "early warning  rule answer-logprob at step" in text and "halted at step" in text
    assert "needs-safety-case, stop point" in text and f"stopped the run at step {act.halted_step}" in text


def test_a_previous_demo_network_is_moved_aside_not_deleted(tmp_path: Path) -> None:
    from node.demo import MARKER, prepare_workdir

    net = tmp_path / "demo-network"
    net.mkdir()
    (net / MARKER).write_text("x")
    (net / "keep.txt").write_text("previous run")
    moved = prepare_workdir(net)
    assert moved is not None and moved.name.startswith("demo-network.previous-")
    assert (moved / "keep.txt").read_text() == "previous run"
    assert (net / MARKER).exists() and not (net / "keep.txt").exists()
