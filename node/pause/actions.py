"""What a lab does in a pause, as functions the CLI, the demo and tests call alike.

Each action reads the home, checks the request against the analysis every node applies
(:func:`node.pause.view.local_analysis`), and publishes one signed entry with
``NodeHome.publish`` (a running ``tripwire serve`` on the same home pushes it to peers).
A refused request raises an error naming the problem and publishes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from node.errors import InputFileError
from protocol.canonical import DECIMAL_RE, format_time, utcnow
from protocol.entries import (
    DiscretionaryTrigger,
    DocRef,
    EvalResultBody,
    ForecastBody,
    PauseProposalBody,
    ResumeProposalBody,
    SafetyCaseBody,
    TrainingPlanBody,
    VoteBody,
    parse_body,
    pause_proposal_id,
    resume_proposal_id,
    safety_case_id,
)
from protocol.errors import ConfigurationError, PolicyError, TripwireError
from protocol.scope import Scope, describe

if TYPE_CHECKING:
    from node.home import NodeHome

__all__ = [
    "AlreadyVotedError",
    "ForecastRefusedError",
    "PlanNotFoundError",
    "PlanRefusedError",
    "ProposalNotFoundError",
    "ScopeError",
    "VoteRefusedError",
    "VotingClosedError",
    "doc_ref",
    "doc_refs",
    "find_proposal",
    "parse_scope",
    "propose_pause",
    "propose_resume",
    "propose_safety_case",
    "publish_forecast",
    "publish_plan",
    "vote",
]

Decision = Literal["pause", "resume", "accept", "object", "abstain"]


class ProposalNotFoundError(ConfigurationError):
    """The named proposal is not held by this node (yet), or the prefix is ambiguous."""

    code = "proposal-not-found"


class VoteRefusedError(PolicyError):
    """A pause vote on a trigger this node cannot verify as a breach under the shared policy."""

    code = "vote-refused"


class AlreadyVotedError(ConfigurationError):
    """This lab already voted on the proposal; votes are final (only the first counts).

    The operator's request, not a peer's data, is at fault: exit code 2."""

    code = "already-voted"


class VotingClosedError(ConfigurationError):
    """The proposal's voting deadline has passed (spec §6.11): a vote now would not count."""

    code = "voting-closed"


class ScopeError(ConfigurationError):
    """A pause scope that does not parse, or that would cover no run the policy knows of."""

    code = "bad-scope"


class PlanRefusedError(ConfigurationError):
    """A training plan this node will not publish (bad compute or cadence, a ladder without
    signed results, results that are not the ladder's)."""

    code = "plan-refused"


class ForecastRefusedError(ConfigurationError):
    """A forecast this node will not publish (bad compute, a ladder without signed results,
    nothing the policy can forecast, a result already measured): the request is at fault."""

    code = "forecast-refused"


class PlanNotFoundError(ProposalNotFoundError):
    """The named training plan is not held by this node, or the prefix is ambiguous."""

    code = "plan-not-found"


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


def find_proposal(analysis: Any, prefix: str) -> Any:
    """The proposal state whose id starts with ``prefix`` (at least 8 hex digits)."""
    prefix = prefix.strip().lower()
    if len(prefix) < 8:
        raise ProposalNotFoundError(f"proposal id {prefix!r} is too short: give at least 8 hex digits")
    hits = [st for pid, st in analysis.proposals.items() if pid.startswith(prefix)]
    if not hits:
        raise ProposalNotFoundError(
            f"no proposal {prefix}… is held by this node (it may not have synced yet; see `tripwire proposals`)"
        )
    if len(hits) > 1:
        raise ProposalNotFoundError(f"proposal prefix {prefix!r} is ambiguous: {', '.join(h.proposal_id for h in hits)}")
    return hits[0]


def doc_ref(path: Path, what: str = "safety-case document") -> DocRef:
    """Cite a document by name and SHA-256 (the document itself stays with the lab)."""
    if path.is_dir():
        raise InputFileError(f"{what} {path} is a directory, not a document")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputFileError(f"cannot read {what} {path}: {e.strerror or e}") from e
    if not data:
        raise InputFileError(f"{what} {path} is empty: cite the document itself")
    return DocRef(name=path.name[:256], sha256=hashlib.sha256(data).hexdigest())


def doc_refs(paths: Sequence[Path], what: str) -> list[DocRef]:
    """Cite each document once (two paths with the same bytes are refused)."""
    docs = [doc_ref(p, what) for p in paths]
    seen: dict[str, Path] = {}
    for p, d in zip(paths, docs, strict=True):
        if d.sha256 in seen:
            raise InputFileError(f"{what} {p} has the same contents as {seen[d.sha256]}: cite each document once")
        seen[d.sha256] = p
    return docs


@dataclass(frozen=True)
class Published:
    """What an action published: the entry id and the facts the caller prints."""

    entry: str
    facts: dict[str, Any]


def vote(h: NodeHome, proposal: str, decision: Decision, rationale: str) -> Published:
    """Vote on a pause or resume proposal, or a safety case (``accept``). Votes are final.

    A pause vote on a breach proposal is refused unless this node recomputes the trigger
    as a breach under the adopted policy; a discretionary pause has no trigger to check
    (each lab judges the evidence). Refused after the voting deadline."""
    from node.pause.view import local_analysis

    a, _ = local_analysis(h)
    st = find_proposal(a, proposal)
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
        first = getattr(mine[0].statement.body, "decision", "?")
        raise AlreadyVotedError(f"{h.lab} already voted {first!r} on {pid[:16]}… (entry {mine[0].entry_id[:16]}…); votes are final")
    if decision == "pause" and not st.discretionary:
        check = st.check
        if check is None or check.status != "breach":
            raise VoteRefusedError(
                f"refusing to vote pause on {pid[:16]}…: {check.reason if check else 'no trigger check'}"
                + ("" if check is None or check.status != "unknown" else " (try again when the result has synced)")
            )
    body = VoteBody(proposal_id=pid, action=st.action, decision=decision, rationale=rationale)
    eid = h.publish("vote", body)
    return Published(eid, {"vote": eid, "proposal_id": pid, "action": st.action, "decision": decision})


def propose_pause(h: NodeHome, *, rationale: str, evidence: Sequence[Path], scope: str = "all") -> Published:
    """Ask the network to pause on this lab's own judgement, citing evidence by SHA-256 (spec §6.11)."""
    from node.home.policyfile import load_policy
    from node.pause.view import local_analysis

    if not rationale.strip():
        raise ConfigurationError("--rationale is empty: say what you saw and why it needs a pause")
    if not evidence:
        raise ConfigurationError("cite at least one --evidence document")
    docs = doc_refs(evidence, "evidence file")
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
    body = PauseProposalBody(proposal_id=pid, trigger=trigger, observed="0", level="0", rationale=rationale, scope=parsed)
    eid = h.publish("pause_proposal", body, now=now)
    quorum = roster.quorum.discretionary or roster.quorum.pause
    return Published(eid, {
        "pause_proposal": pid,
        "entry": eid,
        "scope": parsed.model_dump(mode="json", exclude_none=True) if parsed else None,
        "covers": describe(parsed),
        "evidence": [d.model_dump(mode="json", exclude_none=True) for d in docs],
        "quorum_weight": quorum.weight,
        "vote_deadline_s": roster.quorum.vote_deadline_s,
    })


def propose_resume(
    h: NodeHome, *, pause: str, rationale: str, safety_case: Sequence[Path], narrow_to: str | None = None
) -> Published:
    """Propose ending a pause, or narrowing its scope, citing the safety case by document digests (spec §6.7, §6.10)."""
    from node.home.policyfile import load_policy
    from node.pause.view import local_analysis

    if not safety_case:
        raise ConfigurationError("cite at least one --safety-case document")
    docs = doc_refs(safety_case, "safety-case document")
    a, _ = local_analysis(h)
    st = find_proposal(a, pause)
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
    return Published(eid, {
        "resume_proposal": rid, "entry": eid, "pause_proposal": st.proposal_id,
        "safety_case": [d.model_dump(mode="json") for d in docs],
        "narrow_to": narrower.model_dump(mode="json", exclude_none=True) if narrower else None,
    })


def _positive(what: str, text: str, *, above: str = "0", error: type[ConfigurationError] = PlanRefusedError) -> str:
    text = text.strip()
    try:
        ok = bool(DECIMAL_RE.fullmatch(text)) and Decimal(text) > Decimal(above)
    except InvalidOperation:
        ok = False
    if not ok:
        raise error(f"{what} {text!r} is not a decimal number greater than {above} (e.g. 1E22)")
    return text


def _model_name(entry: Any) -> str:
    body = entry.statement.body
    return body.model.name if isinstance(body, EvalResultBody) else ""


def publish_plan(
    h: NodeHome,
    *,
    model: str,
    compute: str,
    ladder: Sequence[str],
    cadence: str = "4",
    results: Sequence[str] = (),
    domains: Sequence[str] = (),
    rationale: str = "",
) -> Published:
    """Publish a training plan before the run (spec §6.12); the facts are the plan's state
    as this node computes it (every node computes the same from the same signed entries)."""
    from node.pause.view import local_analysis

    compute = _positive("planned compute", compute)
    cadence = _positive("cadence", cadence, above="1")
    if not ladder:
        raise PlanRefusedError("name at least one --ladder model whose signed results forecast the run")
    pinned = [r.strip().lower() for r in results]
    a, _ = local_analysis(h)
    mine = {rid: e for rid, e in a.results.items() if e.lab == h.lab}
    names = {_model_name(e) for e in mine.values()}
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
        if _model_name(e) not in ladder:
            raise PlanRefusedError(f"--result {rid[:16]}… is a result of {_model_name(e)!r}, not of a ladder model")
    body = parse_body(
        "training_plan",
        {"model": model, "planned_flop": compute, "cadence": cadence, "ladder": list(ladder),
         "results": pinned, "domains": list(domains), "rationale": rationale},
    )
    assert isinstance(body, TrainingPlanBody)
    eid = h.publish("training_plan", body)
    a, _ = local_analysis(h)
    st = a.plans.get(eid)
    return Published(eid, st.to_json() if st is not None else {"plan": eid})


def propose_safety_case(h: NodeHome, *, plan: str, docs: Sequence[Path], rationale: str) -> Published:
    """Propose accepting a safety case for this lab's training plan; labs vote ``accept``."""
    from node.pause.view import local_analysis

    if not docs:
        raise ConfigurationError("cite at least one --doc document")
    refs = [doc_ref(p) for p in docs]
    prefix = plan.strip().lower()
    if len(prefix) < 8:
        raise PlanNotFoundError(f"plan id {prefix!r} is too short: give at least 8 hex digits")
    a, _ = local_analysis(h)
    hits = [s for pid, s in a.plans.items() if pid.startswith(prefix)]
    if not hits:
        raise PlanNotFoundError(f"no training plan {prefix}… is held by this node (see `tripwire status`)")
    if len(hits) > 1:
        raise PlanNotFoundError(f"plan prefix {prefix!r} is ambiguous: {', '.join(s.plan for s in hits)}")
    st = hits[0]
    if st.lab != h.lab:
        raise ConfigurationError(f"plan {st.plan[:16]}… is {st.lab}'s: a lab makes the case for its own plans only")
    pid = safety_case_id(st.plan, refs)
    if pid in a.proposals:
        raise ConfigurationError(f"safety case {pid} with these documents is already held")
    body = SafetyCaseBody(proposal_id=pid, plan=st.plan, documents=refs, rationale=rationale)
    eid = h.publish("safety_case", body)
    return Published(eid, {"safety_case": pid, "entry": eid, "plan": st.plan, "plan_status": st.status,
                           "documents": [d.model_dump(mode="json") for d in refs]})


def publish_forecast(
    h: NodeHome,
    *,
    model: str,
    compute: str,
    ladder: Sequence[str] = (),
    note: str = "",
    dry_run: bool = False,
) -> Published:
    """Put a forecast on record before the run (spec §6.13): the adopted policy's own ladder
    prediction of every forecast rule for ``model`` at ``compute``, from this lab's signed
    results of the ladder models. The ladder defaults to the one the lab's training plan for
    the model names. ``dry_run``: compute and return it, publish nothing (``entry`` is "")."""
    from node.home.policyfile import load_policy
    from node.pause.view import local_analysis
    from protocol.track import predict_forecast, within_window
    from protocol.verdicts import ResultSummary

    model = model.strip()
    if not model:
        raise ForecastRefusedError("name the --model the forecast is for (as its eval results will name it)")
    compute = _positive("planned compute", compute, error=ForecastRefusedError)
    a, _ = local_analysis(h)
    names = [m.strip() for m in ladder if m.strip()]
    if not names:
        plans = sorted((p for p in a.plans.values() if p.lab == h.lab and p.model == model), key=lambda p: p.seq)
        if not plans:
            raise ForecastRefusedError(
                f"name the --ladder models the forecast extrapolates from (no training plan of {h.lab} for "
                f"{model!r} names a ladder)"
            )
        plan = h.store.get(plans[-1].plan)
        if plan is None or not isinstance(plan.statement.body, TrainingPlanBody):
            raise ForecastRefusedError(f"training plan {plans[-1].plan[:16]}… is not held; name the --ladder models")
        names = list(plan.statement.body.ladder)
    if model in names:
        raise ForecastRefusedError(f"--ladder names {model!r} itself: a forecast extrapolates from other, smaller models")
    if len(set(names)) != len(names):
        raise ForecastRefusedError("--ladder names a model twice")
    mine = [e for e in a.results.values() if e.lab == h.lab]
    held = {_model_name(e) for e in mine}
    missing = [m for m in names if m not in held]
    if missing:
        raise ForecastRefusedError(
            f"the ladder names model(s) with no signed eval_result of {h.lab} in this store: {', '.join(missing)} "
            "(publish their results first; a forecast needs measurements)"
        )
    chain = h.store.roster_chain()
    try:
        policy = load_policy(h.path, chain.current.roster.policy_digest)
    except ConfigurationError as err:
        raise ForecastRefusedError(f"no adopted policy to forecast with: {err.message}") from err
    if not any(r.forecast is not None for r in policy.rules):
        raise ForecastRefusedError("the adopted policy has no rule with a forecast section: there is nothing to predict")
    measured = sorted(
        (e for e in mine if _model_name(e) == model
         and within_window(e.statement.body_as(EvalResultBody).model.training_flop, compute)),
        key=lambda e: e.seq,
    )
    if measured:
        raise ForecastRefusedError(
            f"{h.lab} already published a result of {model!r} within ±10% of {compute} FLOP (entry "
            f"{measured[0].entry_id[:16]}…): a forecast now would be scored late, not as a prediction"
        )
    summaries = []
    for e in sorted(mine, key=lambda e: e.seq):
        if _model_name(e) in names:
            summaries.append(ResultSummary.from_body(e.statement.body.model_dump(mode="json"), lab=e.lab))
    predicted = predict_forecast(summaries, lab=h.lab, ladder=names, policy=policy, planned_flop=compute)
    if not predicted.predictions:
        why = "; ".join(f"rule {rid!r}: {reason}" for rid, reason in predicted.skipped)
        raise ForecastRefusedError(f"no rule of the adopted policy can be forecast from the ladder ({why})")
    try:
        body = ForecastBody.for_rules(
            {"model": model, "planned_flop": compute, "policy_digest": policy.digest,
             "predictions": [p.model_dump(mode="json") for p in predicted.predictions],
             "ladder": names, "note": note},
            [r.id for r in policy.rules],
        )
    except TripwireError as err:
        raise ForecastRefusedError(err.message) from err
    facts: dict[str, Any] = {
        "forecast": None,
        "dry_run": dry_run,
        "body": body.model_dump(mode="json"),
        "skipped": [{"rule": rid, "reason": reason} for rid, reason in predicted.skipped],
    }
    if dry_run:
        return Published("", facts)
    eid = h.publish("forecast", body)
    a, _ = local_analysis(h)
    score = a.forecasts.get(eid)
    facts["forecast"] = eid
    facts["score"] = score.to_json() if score is not None else None
    return Published(eid, facts)
