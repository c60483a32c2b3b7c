"""What a demo run produced (:class:`DemoResult`) and how it is shown: the live table, the
verification table and the summary a person reads at the end of ``make demo``."""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from node.demo.labs import LabState
from node.demo.plan_act import PlanAct
from node.demo.story import ACCURACY, LOGPROB, Milestone, percent, short

if TYPE_CHECKING:
    from reports.bundle import VerificationReport


@dataclass
class DemoResult:
    workdir: Path
    homes: list[Path]
    states: list[LabState]
    events: list[str]
    paused: bool
    time_to_pause_s: float | None
    report_dir: Path | None
    verify_exit: int | None
    story: list[Milestone] = field(default_factory=list)
    checkpoints: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Each lab's evaluated checkpoints: (step, training FLOP), in step order."""
    previous: Path | None = None
    """Where a previous demo network in the same folder was moved."""
    plan_act: PlanAct | None = None
    """The fourth act (resume, a training plan, its gate's stop); None when skipped."""


def lab_table(states: Sequence[LabState], paused: bool) -> Table:
    t = Table(title="Tripwire demo network" + ("  [bold red]PAUSED[/]" if paused else ""), expand=False)
    for col in ("lab", "model", "step", "evals", "exact answers", "log-prob of correct answer", "training"):
        t.add_column(col)
    for s in states:
        p = s.plan
        exact, lp = s.last.get(".".join(ACCURACY)), s.last.get(".".join(LOGPROB))
        style = {"halted": "bold red", "failed": "bold magenta", "training": "green"}.get(s.state, "")
        t.add_row(
            p.lab,
            f"{p.n_layer}x{p.n_embd}",
            str(s.step),
            str(s.evals),
            percent(exact) if exact else "-",
            short(lp) if lp else "-",
            f"[{style}]{s.state}[/]" if style else s.state,
        )
    return t


def checks_table(report: VerificationReport) -> Table:
    table = Table(title="Offline verification (what `tripwire verify` checks)", title_justify="left")
    table.add_column("Check", style="bold")
    table.add_column("Result")
    table.add_column("Detail", overflow="fold")
    style = {"pass": "[bold green]PASS[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]SKIP[/]"}
    for c in report.checks:
        table.add_row(c.name, style[c.status], c.summary)
    return table


def shown(path: Path) -> str:
    """A path as the reader would type it from here (relative when below the current folder)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def tripwire_command() -> str:
    """How to run ``tripwire`` from this shell: the venv's script unless it is on PATH."""
    script = Path(sys.executable).parent / "tripwire"
    on_path = shutil.which("tripwire")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "tripwire"
    return shown(script) if script.exists() else "tripwire"


def warning_lead(r: DemoResult, what: str) -> tuple[Milestone, int, float] | None:
    """How far ahead of the breach the breaching lab's first ``what`` came: the milestone,
    the number of that lab's checkpoints from it to the breach, and doublings of compute."""
    breach = next((m for m in r.story if m.what == "breach"), None)
    warn = next((m for m in r.story if m.what == what and breach and m.lab == breach.lab), None)
    if breach is None or warn is None or warn.step is None or breach.step is None:
        return None
    n = sum(1 for step, _ in r.checkpoints.get(breach.lab, []) if warn.step < step <= breach.step)
    doublings = math.log2(breach.flop / warn.flop) if breach.flop and warn.flop else 0.0
    return warn, n, doublings


def print_summary(r: DemoResult, console: Console) -> None:
    """The short summary a person reads at the end of ``make demo``: the story, then where things are."""
    console.rule("[bold]Summary")
    if r.paused:
        ttp = f" (every node held the certificate {r.time_to_pause_s:.2f}s after the proposal)" if r.time_to_pause_s else ""
        console.print(f"[bold red]The network is PAUSED[/]: a quorum of labs signed the pause{ttp}.")
    else:
        console.print("[bold]No pause[/]: no model crossed the breach threshold within the deadline.")
    breach = next((m for m in r.story if m.what == "breach"), None)
    if breach is not None:
        console.print(
            f"\nWhat fired, and when ({breach.lab}'s checkpoints, training compute doubling as steps double):",
            highlight=False,
        )
        for what, rule_says in (
            ("early warning", "the sensitive eval (log-probability of the correct answer) warned"),
            ("trend warning", "the trend forecast the crossing of the threshold"),
        ):
            lead = warning_lead(r, what)
            if lead is None:
                console.print(f"  {what:<14} none on {breach.lab}'s results before the breach", highlight=False)
                continue
            m, n, doublings = lead
            console.print(
                f"  {what:<14} rule {m.rule} at step {m.step}: {rule_says} {n} checkpoints "
                f"({doublings:.1f} doublings of compute) before the breach",
                highlight=False,
            )
        console.print(
            f"  {'breach':<14} rule {breach.rule} at step {breach.step}: {breach.lab}'s result crossed the agreed threshold",
            highlight=False,
        )
    halts = {m.lab: m.step for m in r.story if m.what == "halt" and m.step is not None}
    console.print("\nWhere each lab's training stopped (from the signed halt records):", highlight=False)
    for s in r.states:
        if s.plan.lab in halts:
            where = f"halted at step {halts[s.plan.lab]}"
        else:
            where = f"{s.state} at step {s.step} (no halt record)"
        err = f"  [magenta]{s.error}[/]" if s.error else ""
        console.print(f"  {s.plan.lab:<9} {where}, {s.evals} signed results{err}", highlight=False)
    p = r.plan_act
    if p is not None and p.plan:
        console.print("\nThe next run (fourth act):", highlight=False)
        console.print(f"  resumed        {'yes' if p.resumed else 'no'}: the labs' resume certificate, citing the investigation",
                      highlight=False)
        console.print(f"  plan           {p.lab} plans {p.model} to {p.planned_flop} FLOP: {p.status}"
                      + (f", stop point {p.stop_flop} FLOP (rule {p.stop_rule})" if p.stop_flop else ""), highlight=False)
        if p.halted_step is not None:
            console.print(f"  gate           stopped the run at step {p.halted_step} ({p.halted_flop} FLOP): "
                          "no safety case was accepted for the plan", highlight=False)
    elif p is not None and p.note:
        console.print(f"\nThe fourth act did not finish: {p.note}", highlight=False)
    tw = tripwire_command()
    if r.report_dir is not None:
        console.print(f"\nReport:   {shown(r.report_dir / 'report.html')}", highlight=False)
        console.print(f"PDF:      {shown(r.report_dir / 'report.pdf')}", highlight=False)
        console.print(f"Evidence: {shown(r.report_dir / 'evidence.json')}", highlight=False)
        console.print(f"Genesis:  {shown(r.workdir / 'genesis.json')} (the roster to pin with --roster)", highlight=False)
        verdict = "[green]passed[/]" if r.verify_exit == 0 else "[red]FAILED[/]"
        console.print(f"Offline verification (tripwire verify): {verdict}")
    console.print("\nKeep exploring (each lab home works with the normal CLI):", highlight=False)
    for h in r.homes:
        console.print(f"  {tw} serve  --home {shown(h)}", highlight=False, overflow="fold")
    console.print(f"  {tw} status --home {shown(r.homes[0])}", highlight=False, overflow="fold")
    report = shown(r.report_dir) if r.report_dir else "REPORT_FOLDER"
    console.print(
        f"  {tw} verify {report} --roster {shown(r.workdir / 'genesis.json')} --require-pin",
        highlight=False,
        overflow="fold",
    )
