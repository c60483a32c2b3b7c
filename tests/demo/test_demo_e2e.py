"""The demo end to end, shortened: same code path as `make demo`, fewer and smaller steps.

Real nodes (separate processes), real training, real evaluation; only the policy's breach
level is set where an untrained model's measured score already reaches it, so the chain
breach -> proposal -> votes -> certificate -> halted training -> report -> verify runs in
well under a minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from node.demo import LabPlan, run_demo
from node.home import NodeHome
from protocol.entries import decode_entry
from reports.bundle import load_bundle

HERE = Path(__file__).parent

PLAN = (
    LabPlan("aurora", 2, 64, 4, 16, 3e-3, seed=1, eval_every=10, max_steps=400),
    LabPlan("borealis", 1, 32, 2, 16, 3e-3, seed=2, eval_every=10, max_steps=400),
    LabPlan("cygnus", 1, 32, 2, 16, 3e-3, seed=3, eval_every=10, max_steps=400),
)


@pytest.mark.slow
def test_shortened_demo_breaches_pauses_halts_and_verifies(tmp_path: Path) -> None:
    console = Console(record=True, width=140)
    r = run_demo(
        tmp_path / "net",
        plan=PLAN,
        policy=HERE / "plumbing-policy.yaml",
        deadline_s=240,
        console=console,
    )
    assert [s.error for s in r.states] == [None, None, None]
    # the breach and the certificate: every node holds a pause certificate
    assert r.paused, "\n".join(r.events)
    assert r.time_to_pause_s is not None
    for d in r.homes:
        with NodeHome.open(d) as h:
            kinds = {e.kind for e in h.store.entries()}
            assert {"eval_result", "pause_proposal", "vote", "pause_certificate"} <= kinds
            results = h.store.entries(kind="eval_result")
            assert {e.lab for e in results} == {"aurora", "borealis", "cygnus"}
    # every lab's training loop halted at a gate check, well before its step budget
    for s in r.states:
        assert s.state == "halted", (s.plan.lab, s.state, s.halt_message)
        assert s.halted_at is not None and s.halted_at < s.plan.max_steps
    # the report and its offline verification
    assert r.report_dir is not None and r.verify_exit == 0
    assert (r.report_dir / "report.html").stat().st_size > 10_000
    bundle = load_bundle(r.report_dir / "evidence.json")
    kinds = {decode_entry(env).statement.kind for env in bundle.entries}
    assert {"eval_result", "pause_proposal", "vote", "pause_certificate"} <= kinds
    assert "PAUSED" in console.export_text()
