"""What a node concludes from its verified entries, as a pure function (spec §6).

:func:`analyze` takes the held entries by kind, the roster chain and the adopted policy and
returns an :class:`Analysis`: every result's verdicts (:func:`evaluate_results`, with the
trend over the same lab's and model's earlier results), each proposal's tally and, for a
pause proposal, this node's recomputation of its trigger (:func:`check_trigger`), the pause
state (:func:`protocol.pause.pause_state`), plan states and forecast scores. The same
entries give the same analysis on every node, whatever the delivery order; nothing here
reads a store, a clock or the network (``now`` is an argument).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from protocol.entries import AlertBody, EvalResultBody, PauseProposalBody, Trigger, VerifiedEntry, VoteBody
from protocol.errors import TripwireError
from protocol.forecast import evaluate_with_trend
from protocol.pause import PAUSE_KINDS, CertCache, Flag, PauseState, pause_state
from protocol.plans import PlanCache, PlanState, plan_states
from protocol.policy import Policy
from protocol.quorum import QuorumResult
from protocol.roster import RosterChain
from protocol.scope import breach_scope
from protocol.scope import describe as describe_scope
from protocol.track import ForecastScore, score_forecasts
from protocol.verdicts import PolicyEvaluation, ResultSummary

#: Entry kinds the coordinator reads.
KINDS = (
    "eval_result", "alert", "pause_proposal", "resume_proposal", "vote", "pause_certificate",
    "training_plan", "safety_case", "forecast",
)


TriggerStatus = Literal["breach", "not-breach", "unknown"]


@dataclass(frozen=True)
class TriggerCheck:
    """This node's recomputation of a proposal's trigger under the shared policy."""

    status: TriggerStatus
    """``breach``: verified; ``not-breach``: refuted; ``unknown``: cannot tell yet
    (the result is not held yet, or no adopted policy is loaded)."""
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"status": self.status, "reason": self.reason}


@dataclass
class ProposalState:
    proposal_id: str
    action: Literal["pause", "resume", "accept"]
    entries: list[VerifiedEntry]
    """Every held proposal entry with this id (several labs may propose the same trigger)."""
    tally: QuorumResult | None
    check: TriggerCheck | None
    """Trigger check (pause proposals only)."""
    certificates: list[str] = field(default_factory=list)
    """entry_ids of valid certificates for this proposal."""
    pause_proposal: str | None = None
    """For resume proposals: the pause proposal it would end."""
    discretionary: bool = False
    """A pause a lab asked for on its own judgement (spec §6.11): no trigger to check, no
    automatic votes; certified once labs' own votes reach the quorum."""
    status: str = "open"
    """The pause state machine's status for it (``expired`` included)."""

    @property
    def certified(self) -> bool:
        return bool(self.certificates)


@dataclass
class Analysis:
    """What a node concludes from its verified entries (same input, same output, on every node)."""

    evaluations: dict[str, PolicyEvaluation]
    """eval_result entry_id -> evaluation under the adopted policy."""
    results: dict[str, VerifiedEntry]
    proposals: dict[str, ProposalState]
    paused: dict[str, str]
    """Paused proposal id -> entry_id of the first valid pause certificate held for it."""
    resumed: dict[str, str]
    """Pause proposal id -> entry_id of the first valid resume certificate ending it."""
    flags: list[Flag]
    """What the pause rules and this analysis flagged and skipped."""
    votes_by_lab: dict[tuple[str, str], list[VerifiedEntry]]
    """(proposal_id, lab) -> that lab's votes on the proposal, lowest seq first."""
    alerts: set[tuple[str, str]]
    """(result entry_id, rule id) pairs some lab already alerted on."""
    pause: PauseState
    """The pause state machine's output (:func:`protocol.pause.pause_state`)."""
    plans: dict[str, PlanState] = field(default_factory=dict)
    """training_plan entry_id -> its state under the adopted policy (spec §6.12)."""
    forecasts: dict[str, ForecastScore] = field(default_factory=dict)
    """forecast entry_id -> its score against the lab's results (spec §6.13)."""


class EvaluationCache:
    """Evaluations by result entry_id for one policy digest (they never change for it)."""

    def __init__(self) -> None:
        self.digest: str | None = None
        self.summaries: dict[str, ResultSummary | None] = {}
        self.evaluations: dict[str, PolicyEvaluation | None] = {}
        self.errors: dict[str, str] = {}
        self.plans: PlanCache = {}

    def reset_for(self, digest: str | None) -> None:
        if digest != self.digest:
            self.digest = digest
            self.evaluations.clear()


def _unevaluable(err: Exception) -> str:
    if isinstance(err, TripwireError):
        return err.message
    # Not a PeerDataError: a defect in policy code met data it did not expect. The result is
    # isolated (flagged and skipped) so that one entry can never stop the coordinator.
    return f"cannot be evaluated ({type(err).__name__}: {str(err)[:200]})"


def _summary(e: VerifiedEntry, cache: EvaluationCache) -> ResultSummary | None:
    if e.entry_id not in cache.summaries:
        try:
            cache.summaries[e.entry_id] = ResultSummary.from_body(
                e.statement.body.model_dump(mode="json"), lab=e.lab
            )
        except Exception as err:  # isolate any bad result (see _unevaluable)
            cache.summaries[e.entry_id] = None
            cache.errors[e.entry_id] = _unevaluable(err)
    return cache.summaries[e.entry_id]


def evaluate_results(
    results: Sequence[VerifiedEntry], policy: Policy | None, cache: EvaluationCache | None = None
) -> dict[str, PolicyEvaluation]:
    """Judge every result: point verdicts plus the trend over the same lab's and model's
    earlier results in feed (seq) order, the lineage every node sees identically."""
    cache = cache or EvaluationCache()
    cache.reset_for(policy.digest if policy else None)
    if policy is None:
        return {}
    lineage: dict[tuple[str, str], list[ResultSummary]] = defaultdict(list)
    out: dict[str, PolicyEvaluation] = {}
    for e in sorted(results, key=lambda r: (r.lab, r.seq)):
        s = _summary(e, cache)
        if s is None:
            continue
        key = (s.lab, s.model)
        if e.entry_id not in cache.evaluations:
            try:
                cache.evaluations[e.entry_id] = evaluate_with_trend(policy, s, list(lineage[key]))
            except Exception as err:  # isolate any bad result (see _unevaluable)
                cache.evaluations[e.entry_id] = None
                cache.errors[e.entry_id] = _unevaluable(err)
        ev = cache.evaluations[e.entry_id]
        if ev is None:
            continue  # an unevaluable result is no part of its lineage's trend
        out[e.entry_id] = ev
        lineage[key].append(s)
    return out


def check_trigger(
    trigger: Trigger,
    *,
    policy: Policy | None,
    roster_policy_digest: str,
    results: Mapping[str, VerifiedEntry],
    evaluations: Mapping[str, PolicyEvaluation],
    policy_error: str | None = None,
) -> TriggerCheck:
    """Is ``trigger`` a verified breach under the adopted policy? (spec §6.2–6.3)"""
    if trigger.policy_digest != roster_policy_digest:
        return TriggerCheck(
            "not-breach",
            f"the trigger cites policy {trigger.policy_digest[:16]}…, the roster adopts {roster_policy_digest[:16]}…",
        )
    if policy is None:
        return TriggerCheck("unknown", f"no adopted policy is loaded ({policy_error or 'not installed'})")
    result = results.get(trigger.result)
    if result is None:
        return TriggerCheck("unknown", f"result {trigger.result[:16]}… is not held yet")
    if result.lab != trigger.lab:
        return TriggerCheck("not-breach", f"result {trigger.result[:16]}… is {result.lab!r}'s, the trigger names {trigger.lab!r}")
    try:
        rule = policy.rule(trigger.rule)
    except TripwireError:
        return TriggerCheck("not-breach", f"the adopted policy has no rule {trigger.rule!r}")
    ev = evaluations.get(trigger.result)
    if ev is None:
        return TriggerCheck("not-breach", f"result {trigger.result[:16]}… cannot be evaluated under the policy")
    verdict = ev.by_rule(trigger.rule)
    if verdict is None:
        return TriggerCheck("not-breach", f"rule {trigger.rule!r} does not apply to result {trigger.result[:16]}…")
    if verdict.verdict != "breach":
        return TriggerCheck("not-breach", f"rule {trigger.rule!r} gives {verdict.verdict}: {verdict.reason}")
    if "pause_proposal" not in rule.actions.breach:
        return TriggerCheck("not-breach", f"rule {trigger.rule!r} does not call for a pause on breach")
    return TriggerCheck("breach", f"rule {trigger.rule!r} gives breach: {verdict.reason}")


def analyze(
    entries: Mapping[str, Sequence[VerifiedEntry]],
    chain: RosterChain,
    policy: Policy | None,
    *,
    policy_error: str | None = None,
    cache: EvaluationCache | None = None,
    cert_cache: CertCache | None = None,
    heads: Mapping[str, int] | None = None,
    held_ids: Callable[[str], bool] | None = None,
    forks: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> Analysis:
    """Verdicts, proposal states, pause state and flags from verified entries (pure).

    The pause state is :func:`protocol.pause.pause_state` (the one definition every node,
    gate and report applies); this adds what depends on the adopted policy: verdicts and
    each pause proposal's trigger check. ``cert_cache`` only saves repeated signature
    checks across passes; ``heads``/``held_ids``/``forks`` describe the feeds held (spec §6.5
    step 7).

    ``entries`` maps kind to the held entries of that kind (any order): the outcome does
    not depend on delivery order, so every node holding the same entries agrees.
    """
    roster = chain.current.roster
    cache = cache if cache is not None else EvaluationCache()
    results = {e.entry_id: e for e in entries.get("eval_result", ())}
    evaluations = evaluate_results(list(results.values()), policy, cache)
    ps = pause_state(
        (e for k in PAUSE_KINDS for e in entries.get(k, ())),
        chain,
        heads=heads,
        held_ids=held_ids,
        forks=forks,
        cache=cert_cache,
        now=now,
    )
    flags: list[Flag] = list(ps.flags)
    for rid in sorted(cache.errors):
        if rid in results:
            flags.append(
                Flag(kind="unevaluable-result", lab=results[rid].lab, entry_id=rid, reason=cache.errors[rid])
            )

    votes_by_lab: dict[tuple[str, str], list[VerifiedEntry]] = defaultdict(list)
    for v in sorted({e.entry_id: e for e in entries.get("vote", ())}.values(), key=lambda e: (e.lab, e.seq)):
        body = v.statement.body
        assert isinstance(body, VoteBody)
        votes_by_lab[(body.proposal_id, v.lab)].append(v)

    def trigger_check(trigger: Trigger) -> TriggerCheck:
        return check_trigger(
            trigger,
            policy=policy,
            roster_policy_digest=roster.policy_digest,
            results=results,
            evaluations=evaluations,
            policy_error=policy_error,
        )

    proposals: dict[str, ProposalState] = {}
    for pid, p in ps.proposals.items():
        check = None
        if p.action == "pause" and not p.discretionary:
            body = p.entry.statement.body
            assert isinstance(body, PauseProposalBody) and isinstance(body.trigger, Trigger)
            check = trigger_check(body.trigger)
            if check.status == "breach" and policy is not None:
                expected = breach_scope(policy.rule(body.trigger.rule), results[body.trigger.result].statement.body_as(EvalResultBody).model.training_flop)
                if body.scope != expected:
                    # §6.10: the policy, not the proposer, scopes a breach pause.
                    check = TriggerCheck(
                        "not-breach",
                        f"the proposal covers {describe_scope(body.scope)}; the policy's rule {body.trigger.rule!r} "
                        f"scopes its pause to {describe_scope(expected)}",
                    )
            if check.status == "not-breach":
                flags.append(
                    Flag(kind="proposal-not-breach", proposal_id=pid, lab=p.entry.lab,
                         entry_id=p.entry.entry_id, reason=check.reason)
                )
                for c in p.certificates:
                    # Valid by its votes, so it counts; but this node could not confirm the breach.
                    flags.append(
                        Flag(kind="certificate-not-breach", entry_id=c.entry_id, lab=c.lab,
                             proposal_id=pid, reason=check.reason)
                    )
        proposals[pid] = ProposalState(
            pid,
            p.action,
            list(p.entries),
            p.tally,
            check,
            [c.entry_id for c in p.certificates],
            p.pause_proposal,
            p.discretionary,
            p.status,
        )
    alerts = {
        (ab.result, ab.rule)
        for ab in (a.statement.body_as(AlertBody) for a in entries.get("alert", ()))
    }
    return Analysis(
        evaluations,
        results,
        proposals,
        {pid: c.entry_id for pid, c in ps.active.items()},
        {pid: c.entry_id for pid, c in ps.resumed.items()},
        flags,
        dict(votes_by_lab),
        alerts,
        ps,
        plan_states(
            entries.get("training_plan", ()),
            {rid: s for rid in results if (s := cache.summaries.get(rid)) is not None},
            policy,
            ps,
            cache=cache.plans,
        ),
        score_forecasts(
            entries.get("forecast", ()),
            [(results[rid], s) for rid in results if (s := cache.summaries.get(rid)) is not None],
            policy,
        ),
    )


def load_entries(store: Any) -> dict[str, list[VerifiedEntry]]:
    return {k: store.entries(kind=k) for k in KINDS}
