"""`tripwire vote | propose-pause | propose-resume | proposals | policy install`: the people's side of a pause.

Thin: parse, call :mod:`node.pause.actions` (the checks and the publishing), print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from node.cli._app import app, console
from node.home import NodeHome
from node.pause import actions
from protocol.errors import ConfigurationError
from protocol.scope import Scope, describe

if TYPE_CHECKING:
    from node.pause.view import SharedAnalysis

HomeOpt = Annotated[Path, typer.Option("--home", help="Node home directory.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RationaleOpt = Annotated[str, typer.Option("--rationale", help="Why (published with the entry).")]

policy_app = typer.Typer(help="Install the threshold policy the roster adopts.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@app.command("vote")
def vote_cmd(
    proposal: Annotated[str, typer.Argument(help="Proposal id (or a unique prefix of at least 8 hex digits).")],
    home: HomeOpt,
    rationale: RationaleOpt,
    pause: Annotated[bool, typer.Option("--pause", help="Support a pause proposal.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Support a resume proposal.")] = False,
    accept: Annotated[bool, typer.Option("--accept", help="Support (accept) a safety case for a training plan.")] = False,
    object_: Annotated[bool, typer.Option("--object", help="Object to the proposal.")] = False,
    abstain: Annotated[bool, typer.Option("--abstain", help="Abstain (counted as a vote, not as support).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Vote on a pause or resume proposal, or a safety case (--accept). Votes are final: a lab's first vote is the one counted.

    A pause vote is refused unless this node recomputes the trigger as a breach under the
    adopted policy (an honest node does not support a pause the shared rules do not call for).
    """
    flags: tuple[tuple[actions.Decision, bool], ...] = (
        ("pause", pause), ("resume", resume), ("accept", accept), ("object", object_), ("abstain", abstain)
    )
    chosen = [n for n, on in flags if on]
    if len(chosen) != 1:
        raise ConfigurationError("choose exactly one of --pause, --resume, --accept, --object, --abstain")
    with NodeHome.open(home) as h:
        out = actions.vote(h, proposal, chosen[0], rationale).facts
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        console.print(f"voted {out['decision']} on {out['action']} proposal {out['proposal_id']}  (entry {out['vote']})", highlight=False)


@app.command("propose-pause")
def propose_pause_cmd(
    home: HomeOpt,
    rationale: Annotated[str, typer.Option("--rationale", help="What you saw and why it needs a pause (published).")],
    evidence: Annotated[
        list[Path], typer.Option("--evidence", help="Evidence document (repeatable); its SHA-256 is cited, the file stays here.")
    ],
    scope: Annotated[
        str, typer.Option("--scope", help="all | compute-above:FLOP | domain:NAME (which runs the pause would cover).")
    ] = "all",
    as_json: JsonOpt = False,
) -> None:
    """Ask the network to pause on this lab's own judgement, citing evidence no rule measures (spec §6.11).

    Nothing pauses until labs' own votes reach the roster's discretionary quorum before the
    voting deadline; automatic vote rules never vote on it. The documents are cited by
    SHA-256 and stay with the lab: share them with members and observers as you choose.
    """
    with NodeHome.open(home) as h:
        out = actions.propose_pause(h, rationale=rationale, evidence=evidence, scope=scope).facts
    pid, eid, quorum_weight, deadline_s = out["pause_proposal"], out["entry"], out["quorum_weight"], out["vote_deadline_s"]
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    console.print(f"asked for a pause: proposal {pid}  (entry {eid})", highlight=False)
    console.print(f"  covers {out['covers']}", highlight=False)
    for d in out["evidence"]:
        console.print(f"  cites {d['sha256']}  {d['name']}", highlight=False)
    console.print(
        f"  needs votes of weight {quorum_weight}"
        + (f" within {deadline_s} s, or it expires" if deadline_s else "")
        + f"; labs vote with `tripwire vote {pid[:16]} --pause|--object`",
        highlight=False,
    )


@app.command("propose-resume")
def propose_resume_cmd(
    home: HomeOpt,
    rationale: RationaleOpt,
    pause_proposal: Annotated[str, typer.Option("--pause", help="The paused proposal to end (id or prefix).")],
    safety_case: Annotated[
        list[Path], typer.Option("--safety-case", help="Safety-case document (repeatable); its SHA-256 is cited.")
    ],
    narrow_to: Annotated[
        str | None,
        typer.Option("--narrow-to", help="Keep the pause in force for this narrower scope instead of ending it."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose ending a pause, or narrowing its scope, citing the safety case by document digests (spec §6.7, §6.10)."""
    with NodeHome.open(home) as h:
        out = actions.propose_resume(
            h, pause=pause_proposal, rationale=rationale, safety_case=safety_case, narrow_to=narrow_to
        ).facts
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        narrower = Scope.model_validate(out["narrow_to"]) if out["narrow_to"] else None
        paused = out["pause_proposal"]
        what = f"narrows pause {paused} to {describe(narrower)}" if narrower else f"ends pause {paused}"
        console.print(f"proposed resume {out['resume_proposal']}\n  {what}", highlight=False)
        for d in out["safety_case"]:
            console.print(f"  cites {d['sha256']}  {d['name']}", highlight=False)


@app.command("proposals")
def proposals_cmd(home: HomeOpt, as_json: JsonOpt = False) -> None:
    """List pause and resume proposals with tallies, this node's check and the pause state."""
    from node.pause.view import local_analysis

    with NodeHome.open(home) as h:
        _, snap = local_analysis(h)
    if as_json:
        typer.echo(json.dumps(snap.to_json(), indent=2))
        return
    console.print("[bold red]PAUSED[/]" if snap.pause.paused else "not paused", highlight=False)
    if not snap.policy.loaded:
        console.print(f"[bold yellow]no adopted policy loaded:[/] {snap.policy.error}", highlight=False)
    if not snap.proposals:
        console.print("no proposals")
    for p in snap.proposals:
        line = (
            f"{p.action:<6} {p.proposal_id}  {p.state:<9} weight {p.weight}/{p.threshold}"
            f"  for: {','.join(p.supporting) or '-'}  against: {','.join(p.objecting) or '-'}"
            f"  my vote: {p.my_vote or '-'}"
        )
        console.print(line, highlight=False)
        t = p.trigger or {}
        if p.action == "pause" and p.discretionary:
            console.print(
                f"       asked by {t['lab']} on its own judgement, citing {len(t['evidence'])} document(s)",
                highlight=False,
            )
        elif p.action == "pause":
            c = p.trigger_check
            console.print(f"       trigger {t['lab']} result {t['result'][:16]}… rule {t['rule']}", highlight=False)
            console.print(
                f"       this node: {c.status if c else None}: {c.reason if c else None}", highlight=False
            )
        elif p.action == "accept":
            console.print(f"       safety case for training plan {p.plan}", highlight=False)
        else:
            console.print(f"       ends pause {p.pause_proposal}", highlight=False)
        if p.covers:
            console.print(f"       covers {p.covers}", highlight=False)
        if p.deadline:
            console.print(f"       voting {'closed' if p.state == 'expired' else 'closes'} {p.deadline}", highlight=False)
    for f in snap.flags:
        console.print(f"[yellow]flag[/] {f.kind}: {json.dumps(f.model_dump(mode='json', exclude={'kind'}, exclude_unset=True))}", highlight=False)


@policy_app.command("install")
def policy_install_cmd(
    file: Annotated[Path, typer.Argument(help="Policy file (YAML, or JSON by its .json suffix).")],
    home: HomeOpt,
    force: Annotated[
        bool, typer.Option("--force", help="Install even if the roster pins another digest (before a roster update).")
    ] = False,
) -> None:
    """Install the threshold policy this node applies; it must be the one the roster pins."""
    from node.home.policyfile import install_policy

    with NodeHome.open(home) as h:
        expected = None if force or not h.store.has_roster() else h.store.roster_chain().current.roster.policy_digest
        policy = install_policy(h.path, file, expected_digest=expected)
    console.print(f"installed policy {policy.id} v{policy.version}  digest {policy.digest}", highlight=False)


def _status_section(h: NodeHome, shared: SharedAnalysis) -> dict[str, Any]:
    from protocol.errors import TripwireError

    try:
        a, snap = shared.get()
    except TripwireError as e:
        return {"state": "unknown", "note": e.message}
    from node.pause.runs import coverage, known_runs, scopes_in_force

    runs, problems = known_runs(h)
    return {
        "state": "PAUSED" if snap.pause.paused else "not paused",
        **snap.pause.to_json(),
        "in_force": scopes_in_force(a.pause),
        "runs": coverage(a.pause, runs),
        "run_record_problems": problems,
        "open_proposals": [
            {"proposal_id": p.proposal_id, "action": p.action, "covers": p.covers,
             "discretionary": bool(p.discretionary), "deadline": p.deadline}
            for p in snap.proposals if p.state == "open"
        ],
        "flags": len(snap.flags),
    }


def _register_status() -> None:
    from node.cli.commands_node import STATUS_SECTIONS

    STATUS_SECTIONS["pause"] = _status_section


_register_status()
