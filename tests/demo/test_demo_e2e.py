"""`make demo` end to end: the same code path, plan and policy, with a deadline.

Real nodes (separate processes), real training of three tiny models, real evaluation of
their checkpoints, the shared policy applied by every node; asserts the early warning, the
breach, the certificate held by every node, every training loop halted by its gate, and a
report whose evidence verifies offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from node.demo import run_demo
from node.home import NodeHome
from protocol.entries import decode_entry
from reports.bundle import load_bundle


@pytest.mark.slow
def test_demo_warns_breaches_pauses_halts_and_verifies(tmp_path: Path) -> None:
    console = Console(record=True, width=140)
    r = run_demo(tmp_path / "net", deadline_s=300, console=console)
    log = "\n".join(r.events)
    assert [s.error for s in r.states] == [None, None, None], log
    # the breach and the certificate: every node holds a verified pause certificate
    assert r.paused, log
    assert r.time_to_pause_s is not None
    for d in r.homes:
        with NodeHome.open(d) as h:
            kinds = [e.kind for e in h.store.entries()]
            assert {"eval_result", "alert", "pause_proposal", "vote", "pause_certificate"} <= set(kinds)
            assert {e.lab for e in h.store.entries(kind="eval_result")} == {"aurora", "borealis", "cygnus"}
            # an early warning came before the breach's proposal
            alerts = [e.statement.body for e in h.store.entries(kind="alert")]
            assert any(a.verdict == "warn" for a in alerts), log
            assert kinds.index("alert") < kinds.index("pause_proposal")
    # every lab's training loop halted at a gate check, long before its step budget
    for s in r.states:
        assert s.state == "halted", (s.plan.lab, s.state, s.halt_message)
        assert s.halted_at is not None and s.halted_at < s.plan.max_steps
    # the report and its offline verification
    assert r.report_dir is not None and r.verify_exit == 0
    assert (r.report_dir / "report.html").stat().st_size > 10_000
    assert (r.report_dir / "report.pdf").read_bytes().startswith(b"%PDF")
    bundle = load_bundle(r.report_dir / "evidence.json")
    cited = {decode_entry(env).statement.kind for env in bundle.entries}
    assert {"eval_result", "pause_proposal", "vote", "pause_certificate"} <= cited
    assert "PAUSED" in console.export_text()
