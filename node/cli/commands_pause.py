"""`tripwire vote | propose-pause | propose-resume | proposals | policy install`: the people's side of a pause.

Thin: read the home, check with :mod:`node.coordinator`, publish with ``NodeHome.publish``
(a running ``tripwire serve`` on the same home pushes the entry to peers), print.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli._app import app, console
from node.errors import InputFileError
from node.home import NodeHome
from protocol.canonical import format_time, utcnow
from protocol.entries import (
    DiscretionaryTrigger,
    DocRef,
    PauseProposalBody,
    ResumeProposalBody,
    VoteBody,
    pause_proposal_id,
    resume_proposal_id,
)
from protocol.errors import ConfigurationError, PolicyError, QuorumError
from protocol.scope import Scope, describe

HomeOpt = Annotated[Path, typer.Option("--home", help="Node home directory.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RationaleOpt = Annotated[str, typer.Option("--rationale", help="Why (published with the entry).")]

policy_app = typer.Typer(help="Install the threshold policy the roster adopts.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


class ProposalNotFoundError(ConfigurationError):
    """The named proposal is not held by this node (yet), or the prefix is ambiguous."""

    code = "proposal-not-found"


class VoteRefusedError(PolicyError):
    """A pause vote on a trigger this node cannot verify as a breach under the shared policy."""

    code = "vote-refused"


class AlreadyVotedError(QuorumError):
    """This lab already voted on the proposal; votes are final (only the first counts)."""

    code = "already-voted"


class VotingClosedError(ConfigurationError):
    """The proposal's voting deadline has passed (spec §6.11): a vote now would not count."""

    code = "voting-closed"


class ScopeError(ConfigurationError):
    """A pause scope that does not parse, or that would cover no run the policy knows of."""

    code = "bad-scope"


def parse_scope(text: str, known_domains: set[str]) -> Scope | None:
    """``all`` | ``compute-above:FLOP`` | ``domain:NAME`` -> a Scope (None for ``all``).

    A domain must be one a rule of the adopted policy names (runs are declared in the
    policy's domains), so a typo cannot produce a pause that covers nothing."""
    kind, _, arg = text.strip().partition(":")
    kind = kind.replace("_", "-").lower()
    try:
        if kind == "all" and not arg:
            return None
        if kind == "compute-above" and arg:
            return Scope(kind="compute_above", flop=arg.strip())
        if kind == "domain" and arg:
            domain = arg.strip()
            if known_domains and domain not in known_domains:
                raise ScopeError(
                    f"scope {text!r} matches no run: the adopted policy's rules name the domains "
                    f"{', '.join(sorted(known_domains))}"
                )
            return Scope(kind="domain", domain=domain)
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        first = e.errors()[0]["msg"] if hasattr(e, "errors") else str(e)
        raise ScopeError(f"scope {text!r}: {first}") from None
    raise ScopeError(f"scope {text!r} is not one of: all, compute-above:FLOP (e.g. compute-above:1E24), domain:NAME")


def _find(a: Any, prefix: str) -> Any:
    prefix = prefix.strip().lower()
    if len(prefix) < 8:
        raise ProposalNotFoundError(f"proposal id {prefix!r} is too short: give at least 8 hex digits")
    hits = [st for pid, st in a.proposals.items() if pid.startswith(prefix)]
    if not hits:
        raise ProposalNotFoundError(
            f"no proposal {prefix}… is held by this node (it may not have synced yet; see `tripwire proposals`)"
        )
    if len(hits) > 1:
        raise ProposalNotFoundError(f"proposal prefix {prefix!r} is ambiguous: {', '.join(h.proposal_id for h in hits)}")
    return hits[0]


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
    from node.coordinator import local_analysis

    chosen = [n for n, on in (("pause", pause), ("resume", resume), ("accept", accept), ("object", object_), ("abstain", abstain)) if on]
    if len(chosen) != 1:
        raise ConfigurationError("choose exactly one of --pause, --resume, --accept, --object, --abstain")
    decision = chosen[0]
    with NodeHome.open(home) as h:
        a, _ = local_analysis(h)
        st = _find(a, proposal)
        pid = st.proposal_id
        if decision in ("pause", "resume", "accept") and decision != st.action:
            raise ConfigurationError(f"proposal {pid[:16]}… is a {st.action} proposal: vote --{st.action}, --object or --abstain")
        deadline = a.pause.proposals[pid].deadline if pid in a.pause.proposals else None
        if st.status == "expired" or (deadline is not None and utcnow() > deadline):
            raise VotingClosedError(
                f"voting on {pid[:16]}… closed at {format_time(deadline) if deadline else 'its deadline'} "
                "without a quorum: the request expired and a vote now would not count"
            )
        mine = a.votes_by_lab.get((pid, h.lab))
        if mine:
            first = mine[0].statement.body.decision
            raise AlreadyVotedError(f"{h.lab} already voted {first!r} on {pid[:16]}… (entry {mine[0].entry_id[:16]}…); votes are final")
        if decision == "pause" and not st.discretionary:
            # A discretionary pause has no trigger to check: each lab judges the evidence.
            check = st.check
            if check is None or check.status != "breach":
                raise VoteRefusedError(
                    f"refusing to vote pause on {pid[:16]}…: {check.reason if check else 'no trigger check'}"
                    + ("" if check is None or check.status != "unknown" else " (try again when the result has synced)")
                )
        body = VoteBody(proposal_id=pid, action=st.action, decision=decision, rationale=rationale)  # type: ignore[arg-type]
        eid = h.publish("vote", body)
    out = {"vote": eid, "proposal_id": pid, "action": st.action, "decision": decision}
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        console.print(f"voted {decision} on {st.action} proposal {pid}  (entry {eid})", highlight=False)


def _doc_ref(path: Path, what: str = "safety-case document") -> DocRef:
    if path.is_dir():
        raise InputFileError(f"{what} {path} is a directory, not a document")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read {what} {path}: {e.strerror or e}") from e
    if not data:
        raise InputFileError(f"{what} {path} is empty: cite the document itself")
    return DocRef(name=path.name[:256], sha256=hashlib.sha256(data).hexdigest())


def _doc_refs(paths: list[Path], what: str) -> list[DocRef]:
    docs = [_doc_ref(p, what) for p in paths]
    seen: dict[str, Path] = {}
    for p, d in zip(paths, docs, strict=True):
        if d.sha256 in seen:
            raise InputFileError(f"{what} {p} has the same contents as {seen[d.sha256]}: cite each document once")
        seen[d.sha256] = p
    return docs


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
    from node.coordinator import local_analysis
    from node.policyfile import load_policy

    if not rationale.strip():
        raise ConfigurationError("--rationale is empty: say what you saw and why it needs a pause")
    if not evidence:
        raise ConfigurationError("cite at least one --evidence document")
    docs = _doc_refs(evidence, "evidence file")
    with NodeHome.open(home) as h:
        chain = h.store.roster_chain()
        roster = chain.current.roster
        now = utcnow()
        if roster.expired(now):
            raise ConfigurationError(f"roster v{chain.current.version} expired at {roster.expires}: it accepts no proposal or vote")
        policy = load_policy(h.path, roster.policy_digest)
        parsed = parse_scope(scope, {r.domain for r in policy.rules})
        trigger = DiscretionaryTrigger(kind="discretionary", lab=h.lab, evidence=docs, opened_at=format_time(now))
        pid = pause_proposal_id(trigger, parsed)
        a, _ = local_analysis(h)
        if pid in a.proposals:  # the same request, sent twice within one clock tick
            raise ConfigurationError(f"proposal {pid} is already held")
        body = PauseProposalBody(
            proposal_id=pid, trigger=trigger, observed="0", level="0", rationale=rationale, scope=parsed
        )
        eid = h.publish("pause_proposal", body, now=now)
        quorum = roster.quorum.discretionary or roster.quorum.pause
        deadline_s = roster.quorum.vote_deadline_s
    out = {
        "pause_proposal": pid,
        "entry": eid,
        "scope": parsed.model_dump(mode="json", exclude_none=True) if parsed else None,
        "covers": describe(parsed),
        "evidence": [d.model_dump(mode="json", exclude_none=True) for d in docs],
        "quorum_weight": quorum.weight,
        "vote_deadline_s": deadline_s,
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    console.print(f"asked for a pause: proposal {pid}  (entry {eid})", highlight=False)
    console.print(f"  covers {describe(parsed)}", highlight=False)
    for d in docs:
        console.print(f"  cites {d.sha256}  {d.name}", highlight=False)
    console.print(
        f"  needs votes of weight {quorum.weight}"
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
    from node.coordinator import local_analysis
    from node.policyfile import load_policy

    if not safety_case:
        raise ConfigurationError("cite at least one --safety-case document")
    docs = _doc_refs(safety_case, "safety-case document")
    with NodeHome.open(home) as h:
        a, _ = local_analysis(h)
        st = _find(a, pause_proposal)
        if st.action != "pause":
            raise ConfigurationError(f"proposal {st.proposal_id[:16]}… is a resume proposal, not a pause")
        if st.proposal_id not in a.paused:
            state = "already resumed" if st.proposal_id in a.resumed else "not paused (no valid pause certificate)"
            raise ConfigurationError(f"pause proposal {st.proposal_id[:16]}… is {state}: nothing to resume")
        narrower = None
        if narrow_to is not None:
            policy = load_policy(h.path, h.store.roster_chain().current.roster.policy_digest)
            narrower = parse_scope(narrow_to, {r.domain for r in policy.rules})
            if narrower is None:
                raise ScopeError("--narrow-to all would not narrow anything: leave it out to end the pause")
            current = a.pause.scope_of(st.proposal_id)
            if not narrower.narrows(current):
                raise ScopeError(
                    f"--narrow-to {narrow_to!r} does not narrow the pause: it is in force for {describe(current)}, "
                    "and a resume may only keep a part of that"
                )
        rid = resume_proposal_id(st.proposal_id, docs, narrower)
        if rid in a.proposals:
            raise ConfigurationError(f"resume proposal {rid} with these documents is already held")
        body = ResumeProposalBody(
            proposal_id=rid, pause_proposal=st.proposal_id, safety_case=docs, rationale=rationale, scope=narrower
        )
        eid = h.publish("resume_proposal", body)
    out = {"resume_proposal": rid, "entry": eid, "pause_proposal": st.proposal_id,
           "safety_case": [d.model_dump(mode="json") for d in docs],
           "narrow_to": narrower.model_dump(mode="json", exclude_none=True) if narrower else None}
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        what = f"narrows pause {st.proposal_id} to {describe(narrower)}" if narrower else f"ends pause {st.proposal_id}"
        console.print(f"proposed resume {rid}\n  {what}", highlight=False)
        for d in docs:
            console.print(f"  cites {d.sha256}  {d.name}", highlight=False)


@app.command("proposals")
def proposals_cmd(home: HomeOpt, as_json: JsonOpt = False) -> None:
    """List pause and resume proposals with tallies, this node's check and the pause state."""
    from node.coordinator import local_analysis

    with NodeHome.open(home) as h:
        _, snap = local_analysis(h)
    if as_json:
        typer.echo(json.dumps(snap, indent=2))
        return
    pause = snap["pause"]
    console.print("[bold red]PAUSED[/]" if pause["paused"] else "not paused", highlight=False)
    if not snap["policy"]["loaded"]:
        console.print(f"[bold yellow]no adopted policy loaded:[/] {snap['policy']['error']}", highlight=False)
    if not snap["proposals"]:
        console.print("no proposals")
    for p in snap["proposals"]:
        line = (
            f"{p['action']:<6} {p['proposal_id']}  {p['state']:<9} weight {p['weight']}/{p['threshold']}"
            f"  for: {','.join(p['supporting']) or '-'}  against: {','.join(p['objecting']) or '-'}"
            f"  my vote: {p['my_vote'] or '-'}"
        )
        console.print(line, highlight=False)
        if p["action"] == "pause" and p.get("discretionary"):
            t = p["trigger"]
            console.print(
                f"       asked by {t['lab']} on its own judgement, citing {len(t['evidence'])} document(s)",
                highlight=False,
            )
        elif p["action"] == "pause":
            t, c = p["trigger"], p["trigger_check"] or {}
            console.print(f"       trigger {t['lab']} result {t['result'][:16]}… rule {t['rule']}", highlight=False)
            console.print(f"       this node: {c.get('status')}: {c.get('reason')}", highlight=False)
        elif p["action"] == "accept":
            console.print(f"       safety case for training plan {p['plan']}", highlight=False)
        else:
            console.print(f"       ends pause {p['pause_proposal']}", highlight=False)
        if p.get("covers"):
            console.print(f"       covers {p['covers']}", highlight=False)
        if p.get("deadline"):
            console.print(f"       voting {'closed' if p['state'] == 'expired' else 'closes'} {p['deadline']}", highlight=False)
    for f in snap["flags"]:
        console.print(f"[yellow]flag[/] {f['kind']}: {json.dumps({k: v for k, v in f.items() if k != 'kind'})}", highlight=False)


@policy_app.command("install")
def policy_install_cmd(
    file: Annotated[Path, typer.Argument(help="Policy file (YAML, or JSON by its .json suffix).")],
    home: HomeOpt,
    force: Annotated[
        bool, typer.Option("--force", help="Install even if the roster pins another digest (before a roster update).")
    ] = False,
) -> None:
    """Install the threshold policy this node applies; it must be the one the roster pins."""
    from node.policyfile import install_policy

    with NodeHome.open(home) as h:
        expected = None if force or not h.store.has_roster() else h.store.roster_chain().current.roster.policy_digest
        policy = install_policy(h.path, file, expected_digest=expected)
    console.print(f"installed policy {policy.id} v{policy.version}  digest {policy.digest}", highlight=False)


def _status_section(h: NodeHome) -> dict[str, Any]:
    from node.coordinator import local_analysis
    from protocol.errors import TripwireError

    try:
        a, snap = local_analysis(h)
    except TripwireError as e:
        return {"state": "unknown", "note": e.message}
    from node.runs import coverage, known_runs, scopes_in_force

    pause = snap["pause"]
    runs, problems = known_runs(h)
    return {
        "state": "PAUSED" if pause["paused"] else "not paused",
        **pause,
        "in_force": scopes_in_force(a.pause),
        "runs": coverage(a.pause, runs),
        "run_record_problems": problems,
        "open_proposals": [
            {"proposal_id": p["proposal_id"], "action": p["action"], "covers": p["covers"],
             "discretionary": p.get("discretionary", False), "deadline": p["deadline"]}
            for p in snap["proposals"] if p["state"] == "open"
        ],
        "flags": len(snap["flags"]),
    }


def _register_status() -> None:
    from node.cli.commands_node import STATUS_SECTIONS

    STATUS_SECTIONS["pause"] = _status_section


_register_status()
