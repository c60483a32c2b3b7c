"""The demo's fourth act: the labs resume after an investigation, the breaching lab plans
its next run, every node forecasts it, and the run's gate stops at the stop point."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from node.demo.story import EventLog
from protocol.entries import EvalResultBody


@dataclass
class PlanAct:
    """The fourth act: the pause is lifted after an investigation, then a lab declares its
    next, larger run; every node forecasts it from the lab's signed results, and the run's
    gate stops at the forecast stop point (no safety case was accepted for it)."""

    lab: str = ""
    resume_proposal: str | None = None
    resumed: bool = False
    plan: str | None = None
    model: str = ""
    planned_flop: str = ""
    status: str = ""
    stop_flop: str | None = None
    stop_rule: str | None = None
    nodes_agree: bool = False
    halted_step: int | None = None
    halted_flop: str | None = None
    halt_kind: str | None = None
    halt_reason: str = ""
    note: str = ""
    """Why the act ended early (empty when it ran to the gate's stop)."""


#: The investigation the labs cite when they resume (a real network's would be the report
#: of whoever investigated; the document stays with the lab, only its SHA-256 is signed).
INVESTIGATION = """# Investigation of the arithmetic breach

The breaching model answers two-digit additions. The capability is the one the policy
names, and it is harmless in itself: the network agreed on it as a stand-in. The labs
resume training; the next run of the same recipe must still clear the planning rule.
"""


def _wait_for(what: str, cond: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.25)
    return cond()


def run_plan_act(
    root: Path,
    home_dirs: Sequence[Path],
    events: EventLog,
    tok_dir: Path,
    *,
    lab: str,
    ladder_model: str,
    seed: int,
    deadline: float,
) -> PlanAct:
    """Resume, plan the next run, train it under its gate until the gate stops it."""
    import torch
    from transformers import AutoTokenizer

    from node.evals.tinymodels import build_tiny_gpt2, train_tiny_arithmetic
    from node.home import NodeHome
    from node.pause import actions
    from node.pause.gate import TrainingGate
    from node.pause.view import AnalysisCaches, local_analysis
    from protocol.scope import Run

    act = PlanAct(lab=lab)
    homes = {d.name: d for d in home_dirs}
    lab_dir = homes[lab]

    caches: dict[Path, AnalysisCaches] = {}

    def analysis(d: Path) -> Any:
        with NodeHome.open(d) as h:
            return local_analysis(h, caches.setdefault(d, AnalysisCaches()))[0]

    paused = sorted(analysis(lab_dir).paused)
    if not paused:
        act.note = "the network was not paused: nothing to resume"
        return act
    # 1. The investigation closes; the labs vote to resume.
    doc = root / "investigation.md"
    doc.write_text(INVESTIGATION)
    with NodeHome.open(lab_dir) as h:
        rp = actions.propose_resume(
            h, pause=paused[0], rationale="the investigation found the capability is the agreed stand-in",
            safety_case=[doc],
        ).facts["resume_proposal"]
    act.resume_proposal = rp
    events.add(lab, f"proposed to resume ({rp[:12]}…), citing investigation.md by its SHA-256")
    for d in home_dirs:
        def holds(d: Path = d) -> bool:
            return rp in analysis(d).proposals

        if not _wait_for("the resume proposal", holds, deadline):
            act.note = f"{d.name} never received the resume proposal"
            return act
        with NodeHome.open(d) as h:
            actions.vote(h, rp, "resume", "the investigation's findings are convincing")
        events.add(d.name, f"voted resume on {rp[:12]}…")
    act.resumed = _wait_for("the resume", lambda: all(not analysis(d).paused for d in home_dirs), deadline)
    if not act.resumed:
        act.note = "the resume was not certified in time"
        return act
    events.add("network", "resume certificate verified by every node: training may go on")

    # 2. The lab plans its next run: four times the compute its model reached, one recipe.
    with NodeHome.open(lab_dir) as h:
        a = local_analysis(h)[0]
        bodies = [e.statement.body for e in a.results.values() if e.lab == lab]
        flops = [
            Decimal(b.model.training_flop)
            for b in bodies
            if isinstance(b, EvalResultBody) and b.model.name == ladder_model
        ]
        planned = f"{max(flops) * 4:.3E}"
        facts = actions.publish_plan(
            h, model=f"{lab}-next", compute=planned, ladder=[ladder_model], cadence="4",
            rationale="the next model of the same recipe",
        ).facts
    act.plan, act.model, act.planned_flop = facts["plan"], f"{lab}-next", planned
    act.status, act.stop_flop, act.stop_rule = facts.get("status", ""), facts.get("stop_flop"), facts.get("stop_rule")
    events.add(
        lab,
        f"published a training plan for {act.model} to {planned} FLOP: {act.status}"
        + (f", stop point {act.stop_flop} FLOP (rule {act.stop_rule})" if act.stop_flop else ""),
    )

    def agreed() -> bool:
        for d in home_dirs:
            st = analysis(d).plans.get(act.plan)
            if st is None or st.to_json().get("stop_flop") != act.stop_flop:
                return False
        return True

    act.nodes_agree = _wait_for("every node's plan state", agreed, deadline)
    if act.nodes_agree:
        events.add("network", f"every node computes the same plan state: {act.status}")
    if act.stop_flop is None:
        act.note = f"the plan is {act.status}: no stop point to show"
        return act

    # 3. The run itself: a wider model, trained under its gate until the gate says stop.
    tok = AutoTokenizer.from_pretrained(tok_dir)
    # Wide enough that the CPU runs near its best FLOP rate (the run needs about as much
    # compute as the breaching model's whole training to reach the stop point).
    model = build_tiny_gpt2(2, 256, 4, tok, seed)
    params = sum(p.numel() for p in model.parameters())
    row_tokens = len(tok.encode("12+34=046;" * 10))
    stop = Decimal(act.stop_flop)
    # Batch sized so the run reaches its stop point in about 40 steps.
    batch = max(8, min(1024, math.ceil(float(stop) / (6 * params * row_tokens * 40))))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    home = NodeHome.open(lab_dir)
    gate = TrainingGate(home, run=Run(model=act.model, planned_flop=planned))

    def on_step(step: int, m: Any) -> bool:
        flop = f"{6 * params * step * batch * row_tokens:.6E}"
        gate.set_compute(flop)
        decision = gate.check(step)
        if not decision.proceed:
            act.halted_step, act.halted_flop, act.halt_reason = step, flop, decision.reason
            act.halt_kind = str(decision.details.get("plan_stop") or "pause")
            return False
        return time.monotonic() < deadline and step < 400

    try:
        train_tiny_arithmetic(None, steps=400, batch_size=batch, lr=3e-3, seed=seed, model=model,
                              tokenizer=tok, on_step=on_step, answer_loss_only=True)
    finally:
        gate.close()
        home.close()
    if act.halted_step is None:
        act.note = "the run ended before its gate stopped it"
    else:
        events.add(lab, f"{act.model}: training HALTED at step {act.halted_step} ({act.halted_flop} FLOP) "
                        f"by its gate: {act.halt_reason}")
    return act
