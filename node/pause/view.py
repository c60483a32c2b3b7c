"""One node's view of the pause, as the documents it serves and prints.

:func:`describe` is the ``coordination`` section of ``GET /v1/status`` (also
``tripwire proposals``) and :func:`forecasts_json` its ``forecasts`` section.
:func:`local_analysis` analyses a home's store directly, for the CLI, training gates and
a status request served without a running coordinator; :class:`AnalysisCaches` lets
repeated calls on one store reuse what they read and fitted, and :class:`SharedAnalysis`
gives several readers of one moment (the sections of one ``tripwire status``) one analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from node.contracts import (
    CoordinationPolicy,
    CoordinationProposal,
    CoordinationSection,
    ForecastsSection,
    ResultVerdict,
    RuleVerdictDocument,
)
from node.pause.analysis import KINDS, Analysis, EvaluationCache, ProposalState, analyze, load_entries
from node.pause.planner import VotesConfig
from node.pause.tracker import EntryIndex, feeds_held
from protocol.canonical import format_time, utcnow
from protocol.entries import PauseProposalBody, SafetyCaseBody, VoteBody
from protocol.errors import ConfigurationError, TripwireError
from protocol.pause import CertCache
from protocol.policy import Policy
from protocol.roster import RosterChain
from protocol.scope import describe as describe_scope
from protocol.track import track_records

if TYPE_CHECKING:
    from node.home import NodeHome

#: Most verdicts / flags listed in the status document.
MAX_LISTED = 100


def _proposal(a: Analysis, pid: str, st: ProposalState, lab: str) -> CoordinationProposal:
    t = st.tally
    mine = a.votes_by_lab.get((pid, lab))
    first = st.entries[0].statement
    variant: dict[str, Any]
    if st.action == "pause":
        body = first.body_as(PauseProposalBody)
        variant = {
            "trigger": body.trigger.model_dump(mode="json"),
            "trigger_check": st.check.to_json() if st.check else None,
            "discretionary": st.discretionary,
            "rationale": body.rationale,
        }
    elif st.action == "accept":
        variant = {"plan": first.body_as(SafetyCaseBody).plan}
    else:
        variant = {"pause_proposal": st.pause_proposal}
    scope = getattr(first.body, "scope", None)
    deadline = a.pause.proposals[pid].deadline if pid in a.pause.proposals else None
    # Only the action's own members are set, so the others stay absent on the wire.
    return CoordinationProposal.model_validate({
        "proposal_id": pid,
        "action": st.action,
        "proposed_by": sorted({e.lab for e in st.entries}),
        "entry_id": st.entries[0].entry_id,
        "state": (
            "resumed" if pid in a.resumed else
            "paused" if pid in a.paused else
            "certified" if st.certified else
            "expired" if st.status == "expired" else "open"
        ),
        "certificates": st.certificates,
        # ``t`` is falsy until it reaches the quorum: test for None, not truth.
        "weight": t.weight if t is not None else 0,
        "threshold": t.threshold if t is not None else None,
        "supporting": sorted(t.signed) if t is not None else [],
        "objecting": sorted(t.objected) if t is not None else [],
        "abstaining": sorted(t.abstained) if t is not None else [],
        "missing": sorted(t.missing) if t is not None else [],
        "my_vote": mine[0].statement.body_as(VoteBody).decision if mine else None,
        **variant,
        "scope": scope.model_dump(mode="json", exclude_none=True) if scope is not None else None,
        "covers": describe_scope(scope) if st.action == "pause" else None,
        "deadline": format_time(deadline) if deadline is not None else None,
    })


def describe(
    a: Analysis,
    chain: RosterChain,
    policy: Policy | None,
    policy_error: str | None,
    config: VotesConfig,
    lab: str,
    now: datetime,
) -> CoordinationSection:
    """The ``coordination`` section of ``GET /v1/status`` (also ``tripwire proposals``)."""
    roster = chain.current.roster
    proposals = [
        _proposal(a, pid, st, lab)
        for pid, st in sorted(a.proposals.items(), key=lambda kv: (kv[1].entries[0].statement.issued_at, kv[0]))
    ]
    verdicts = []
    for rid, ev in a.evaluations.items():
        if ev.overall == "ok":
            continue
        r = a.results[rid]
        verdicts.append(
            ResultVerdict(
                result=rid,
                lab=r.lab,
                seq=r.seq,
                checkpoint_step=ev.checkpoint_step,
                training_flop=ev.training_flop,
                overall=ev.overall,
                rules=[
                    RuleVerdictDocument(rule=v.rule_id, verdict=v.verdict, reason=v.reason)
                    for v in ev.verdicts if v.verdict != "ok"
                ],
            )
        )
    verdicts.sort(key=lambda v: (v.lab, v.seq))
    return CoordinationSection(
        rule=config.auto,
        policy=CoordinationPolicy(
            adopted=roster.policy_digest,
            loaded=policy is not None,
            id=policy.id if policy else None,
            version=policy.version if policy else None,
            error=policy_error,
        ),
        roster_expired=roster.expired(now),
        pause=a.pause.document(),
        proposals=proposals,
        plans=sorted(a.plans.values(), key=lambda p: (p.lab, p.seq))[-MAX_LISTED:],
        verdicts=verdicts[-MAX_LISTED:],
        forecasts=forecasts_json(a),
        results_judged=len(a.evaluations),
        flags=a.flags[:MAX_LISTED],
    )


def forecasts_json(a: Analysis) -> ForecastsSection:
    """The ``forecasts`` section of ``GET /v1/status``: each lab's track record and the most
    recent forecasts with their scores (spec §6.13)."""
    scores = sorted(a.forecasts.values(), key=lambda s: (s.issued_at, s.lab, s.seq))
    return ForecastsSection(
        track=list(track_records(scores).values()),
        forecasts=scores[-MAX_LISTED:],
    )


@dataclass
class AnalysisCaches:
    """What repeated :func:`local_analysis` calls on one store can reuse: the entries read so
    far (read incrementally), the policy evaluations and forecast fits per result, and the
    certificate checks. A training gate checks at every step; without these, each check
    would refit every result's forecast."""

    index: EntryIndex = field(default_factory=lambda: EntryIndex(KINDS))
    evaluations: EvaluationCache = field(default_factory=lambda: EvaluationCache())
    certificates: CertCache = field(default_factory=dict)


def local_analysis(home: NodeHome, caches: AnalysisCaches | None = None) -> tuple[Analysis, CoordinationSection]:
    """Analyze a home's store directly (CLI, gates, status without a running coordinator).
    Give ``caches`` (one per store) when calling repeatedly: the result is the same."""
    from node.home.policyfile import load_policy

    chain = home.store.roster_chain()
    error = None
    try:
        policy: Policy | None = load_policy(home.path, chain.current.roster.policy_digest)
    except ConfigurationError as e:
        policy, error = None, e.message
    store = home.store
    now = utcnow()
    entries = caches.index.update(store) if caches is not None else load_entries(store)
    a = analyze(
        entries,
        chain,
        policy,
        policy_error=error,
        cache=caches.evaluations if caches is not None else None,
        cert_cache=caches.certificates if caches is not None else None,
        now=now,
        **feeds_held(store),
    )
    config = VotesConfig.from_mapping(home.config.votes)
    return a, describe(a, chain, policy, error, config, home.lab, now)


class SharedAnalysis:
    """One :func:`local_analysis` of a home, run at the first :meth:`get` and shared by every
    later one: the readers see the same moment, and the store is read and analysed once.
    A refusal (:class:`~protocol.errors.TripwireError`) is kept too and raised to each reader."""

    def __init__(self, home: NodeHome) -> None:
        self.home = home
        self._result: tuple[Analysis, CoordinationSection] | None = None
        self._error: TripwireError | None = None

    def get(self) -> tuple[Analysis, CoordinationSection]:
        if self._result is None and self._error is None:
            try:
                self._result = local_analysis(self.home)
            except TripwireError as e:
                self._error = e
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
