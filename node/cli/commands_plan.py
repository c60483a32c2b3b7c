"""`tripwire plan | safety-case`: declare a training run before it starts, and make the case
that it is safe past its stop point (spec §6.12). Votes on a safety case are cast with
`tripwire vote ID --accept`.

Thin: read the home, check with :mod:`node.coordinator` (the same analysis every node
applies), publish with ``NodeHome.publish``, print.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli._app import app, console
from node.cli.commands_pause import HomeOpt, JsonOpt, ProposalNotFoundError, _doc_ref
from node.home import NodeHome
from protocol.canonical import DECIMAL_RE
from protocol.entries import SafetyCaseBody, TrainingPlanBody, halt_step, parse_body, safety_case_id
from protocol.errors import ConfigurationError
from protocol.plans import PlanState


class PlanRefusedError(ConfigurationError):
    """A training plan this node will not publish (bad compute or cadence, a ladder without
    signed results, results that are not the ladder's)."""

    code = "plan-refused"


class PlanNotFoundError(ProposalNotFoundError):
    """The named training plan is not held by this node, or the prefix is ambiguous."""

    code = "plan-not-found"


def _positive(what: str, text: str, *, above: str = "0") -> str:
    text = text.strip()
    try:
        ok = bool(DECIMAL_RE.match(text)) and Decimal(text) > Decimal(above)
    except InvalidOperation:
        ok = False
    if not ok:
        raise PlanRefusedError(f"{what} {text!r} is not a decimal number greater than {above} (e.g. 1E22)")
    return text


def _plan_lines(p: dict[str, Any]) -> list[str]:
    stop = f"  stop point {p['stop_flop']} FLOP (rule {p['stop_rule']})" if p.get("stop_flop") else ""
    lines = [f"plan {p['plan']}  {p['lab']} {p['model']} to {p['planned_flop']} FLOP  {p['status']}{stop}"]
    if p.get("overdue_after"):
        lines.append(f"     evaluation due: overdue past {p['overdue_after']} FLOP (cadence {p['cadence']}x)")
    for c in p.get("safety_cases", []):
        lines.append(f"     safety case {c['proposal_id']}  {c['status']}")
    lines.append(f"     {p['reason']}")
    return lines


def _state_of(h: NodeHome, plan_id: str) -> PlanState | None:
    from node.coordinator import local_analysis

    a, _ = local_analysis(h)
    return a.plans.get(plan_id)


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
    from node.coordinator import local_analysis

    compute = _positive("planned compute", compute)
    cadence = _positive("cadence", cadence, above="1")
    if not ladder:
        raise PlanRefusedError("name at least one --ladder model whose signed results forecast the run")
    pinned = [r.strip().lower() for r in (result or [])]
    with NodeHome.open(home) as h:
        a, _ = local_analysis(h)
        mine = {rid: e for rid, e in a.results.items() if e.lab == h.lab}
        names = {e.statement.body.model.name for e in mine.values()}  # type: ignore[union-attr]
        missing = [m for m in ladder if m not in names]
        if missing:
            raise PlanRefusedError(
                f"the ladder names model(s) with no signed eval_result of {h.lab} in this store: {', '.join(missing)} "
                "(publish their results first; a forecast needs measurements)"
            )
        for rid in pinned:
            e = mine.get(rid)
            if e is None:
                raise PlanRefusedError(f"--result {rid[:16]}… is not a signed eval_result of {h.lab} held here")
            if e.statement.body.model.name not in ladder:  # type: ignore[union-attr]
                raise PlanRefusedError(f"--result {rid[:16]}… is a result of {e.statement.body.model.name!r}, not of a ladder model")  # type: ignore[union-attr]
        body = parse_body(
            "training_plan",
            {"model": model, "planned_flop": compute, "cadence": cadence, "ladder": list(ladder),
             "results": pinned, "domains": list(domain or []), "rationale": rationale},
        )
        assert isinstance(body, TrainingPlanBody)
        eid = h.publish("training_plan", body)
        st = _state_of(h, eid)
    out = st.to_json() if st is not None else {"plan": eid}
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for line in _plan_lines(out) if st is not None else [f"plan {eid}"]:
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
    from node.coordinator import local_analysis

    if not doc:
        raise ConfigurationError("cite at least one --doc document")
    docs = [_doc_ref(p) for p in doc]
    prefix = plan.strip().lower()
    if len(prefix) < 8:
        raise PlanNotFoundError(f"plan id {prefix!r} is too short: give at least 8 hex digits")
    with NodeHome.open(home) as h:
        a, _ = local_analysis(h)
        hits = [s for pid, s in a.plans.items() if pid.startswith(prefix)]
        if not hits:
            raise PlanNotFoundError(f"no training plan {prefix}… is held by this node (see `tripwire status`)")
        if len(hits) > 1:
            raise PlanNotFoundError(f"plan prefix {prefix!r} is ambiguous: {', '.join(s.plan_id for s in hits)}")
        st = hits[0]
        if st.lab != h.lab:
            raise ConfigurationError(f"plan {st.plan_id[:16]}… is {st.lab}'s: a lab makes the case for its own plans only")
        pid = safety_case_id(st.plan_id, docs)
        if pid in a.proposals:
            raise ConfigurationError(f"safety case {pid} with these documents is already held")
        body = SafetyCaseBody(proposal_id=pid, plan=st.plan_id, documents=docs, rationale=rationale)
        eid = h.publish("safety_case", body)
    out = {"safety_case": pid, "entry": eid, "plan": st.plan_id, "plan_status": st.status,
           "documents": [d.model_dump(mode="json") for d in docs]}
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    console.print(f"proposed safety case {pid}\n  for plan {st.plan_id} ({st.status})", highlight=False)
    for d in docs:
        console.print(f"  cites {d.sha256}  {d.name}", highlight=False)
    console.print(f"  labs vote with: tripwire vote {pid[:16]} --accept --rationale TEXT --home DIR", highlight=False)


def _status_section(h: NodeHome) -> dict[str, Any]:
    from node.coordinator import local_analysis
    from protocol.errors import TripwireError

    try:
        _, snap = local_analysis(h)
    except TripwireError as e:
        return {"state": "unknown", "note": e.message}
    plans = snap.get("plans", [])
    # Where this lab's gates stopped runs for their plans: halt records citing the plan.
    ids = {p["plan"] for p in plans}
    stops = []
    for n in h.store.entries(kind="note", lab=h.lab):
        refs = [r for r in n.statement.body.refs if r in ids]  # type: ignore[union-attr]
        step = halt_step(n.statement.body.text)  # type: ignore[union-attr]
        if refs and step is not None:
            stops.append({"plan": refs[0], "step": step, "note": n.entry_id, "text": n.statement.body.text})  # type: ignore[union-attr]
    return {
        "stops": stops[-100:],
        "plans": plans,
        "needs_safety_case": [p["plan"] for p in plans if p["status"] == "needs-safety-case"],
        "accepted": [p["plan"] for p in plans if p["status"] == "accepted"],
        "open_safety_cases": [p["proposal_id"] for p in snap["proposals"] if p["action"] == "accept" and p["state"] == "open"],
    }


def _register_status() -> None:
    from node.cli.commands_node import STATUS_SECTIONS

    STATUS_SECTIONS["plans"] = _status_section


_register_status()
