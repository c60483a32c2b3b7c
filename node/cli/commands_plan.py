"""`tripwire plan | safety-case`: declare a training run before it starts, and make the case
that it is safe past its stop point (spec §6.12). Votes on a safety case are cast with
`tripwire vote ID --accept`.

Thin: parse, call :mod:`node.pause.actions` (the checks every node applies, and the
publishing), print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from node.cli._app import app, console
from node.cli.commands_pause import HomeOpt, JsonOpt
from node.home import NodeHome
from node.pause import actions
from protocol.entries import NoteBody, halt_step

if TYPE_CHECKING:
    from node.pause.view import SharedAnalysis


def _plan_lines(p: dict[str, Any]) -> list[str]:
    stop = f"  stop point {p['stop_flop']} FLOP (rule {p['stop_rule']})" if p.get("stop_flop") else ""
    lines = [f"plan {p['plan']}  {p['lab']} {p['model']} to {p['planned_flop']} FLOP  {p['status']}{stop}"]
    if p.get("overdue_after"):
        lines.append(f"     evaluation due: overdue past {p['overdue_after']} FLOP (cadence {p['cadence']}x)")
    for c in p.get("safety_cases", []):
        lines.append(f"     safety case {c['proposal_id']}  {c['status']}")
    lines.append(f"     {p['reason']}")
    return lines


@app.command("plan")
def plan_cmd(
    home: HomeOpt,
    model: Annotated[str, typer.Option("--model", help="The model the run trains (as its eval results name it).")],
    compute: Annotated[str, typer.Option("--compute", help="Planned training compute, FLOP (e.g. 1E22).")],
    ladder: Annotated[
        list[str], typer.Option("--ladder", help="A smaller model of the same recipe whose signed results forecast the run (repeatable).")
    ],
    cadence: Annotated[
        str, typer.Option("--cadence", help="Evaluate each time compute grows by this factor (greater than 1).")
    ] = "4",
    result: Annotated[
        list[str] | None, typer.Option("--result", help="Pin the forecast to these eval_result entry ids (repeatable).")
    ] = None,
    domain: Annotated[list[str] | None, typer.Option("--domain", help="Capability domain of the model (repeatable).")] = None,
    rationale: Annotated[str, typer.Option("--rationale", help="Why (published with the plan).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Publish a training plan before the run; every node forecasts it from the ladder's
    signed results and says whether it needs a safety case, and where the run stops."""
    with NodeHome.open(home) as h:
        out = actions.publish_plan(
            h, model=model, compute=compute, ladder=ladder, cadence=cadence, results=result or (),
            domains=domain or (), rationale=rationale,
        ).facts
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for line in _plan_lines(out) if "status" in out else [f"plan {out['plan']}"]:
        console.print(line, highlight=False)


@app.command("safety-case")
def safety_case_cmd(
    home: HomeOpt,
    plan: Annotated[str, typer.Option("--plan", help="The training plan (entry id or a unique prefix).")],
    doc: Annotated[list[Path], typer.Option("--doc", help="A document of the case (repeatable); its SHA-256 is cited.")],
    rationale: Annotated[str, typer.Option("--rationale", help="The case in brief (published).")],
    as_json: JsonOpt = False,
) -> None:
    """Propose accepting a safety case for this lab's training plan; labs vote on it with
    `tripwire vote ID --accept` and the roster's safety-case quorum accepts it."""
    with NodeHome.open(home) as h:
        out = actions.propose_safety_case(h, plan=plan, docs=doc, rationale=rationale).facts
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    pid = out["safety_case"]
    console.print(f"proposed safety case {pid}\n  for plan {out['plan']} ({out['plan_status']})", highlight=False)
    for d in out["documents"]:
        console.print(f"  cites {d['sha256']}  {d['name']}", highlight=False)
    console.print(f"  labs vote with: tripwire vote {pid[:16]} --accept --rationale TEXT --home DIR", highlight=False)


def _status_section(h: NodeHome, shared: SharedAnalysis) -> dict[str, Any]:
    from protocol.errors import TripwireError

    try:
        _, snap = shared.get()
    except TripwireError as e:
        return {"state": "unknown", "note": e.message}
    plans = snap.plans
    # Where this lab's gates stopped runs for their plans: halt records citing the plan.
    ids = {p.plan for p in plans}
    stops = []
    for n in h.store.entries(kind="note", lab=h.lab):
        note = n.statement.body_as(NoteBody)
        refs = [r for r in note.refs if r in ids]
        step = halt_step(note.text)
        if refs and step is not None:
            stops.append({"plan": refs[0], "step": step, "note": n.entry_id, "text": note.text})
    return {
        "stops": stops[-100:],
        "plans": [p.to_json() for p in plans],
        "needs_safety_case": [p.plan for p in plans if p.status == "needs-safety-case"],
        "accepted": [p.plan for p in plans if p.status == "accepted"],
        "open_safety_cases": [p.proposal_id for p in snap.proposals if p.action == "accept" and p.state == "open"],
    }


def _register_status() -> None:
    from node.cli.commands_node import STATUS_SECTIONS

    STATUS_SECTIONS["plans"] = _status_section


_register_status()
