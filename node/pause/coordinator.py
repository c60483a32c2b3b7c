"""The pause coordinator: verdicts, proposals, votes and certificates, inside the node process.

Every node runs one. It reacts to newly accepted entries (spec §6 "Pause, end to end"):

1. every verified ``eval_result`` is judged against the adopted policy
   (:func:`protocol.forecast.evaluate_with_trend`); a ``warn`` or ``breach`` whose rule asks
   for it gets an ``alert`` entry, a ``breach`` whose rule asks for it a ``pause_proposal``
   with the deterministic id :func:`protocol.entries.pause_proposal_id`;
2. every pause proposal's trigger is recomputed from the signed result; the operator's
   rule (``[votes] auto``) may then vote automatically. An honest node never votes pause
   on a trigger that is not a verified breach under the shared policy, and reports it;
3. the first node that sees a quorum (:func:`protocol.quorum.tally`) publishes the
   certificate; a node that already holds a valid certificate for a proposal publishes
   none.

Design rules:

- **Derived, not remembered.** Each pass recomputes the wanted actions from the store
  (:func:`analyze` is a pure function of verified entries, roster chain and policy) and
  performs only those whose result is not already held. A restart replays nothing
  twice: a node's own earlier proposal, vote or certificate is in its store.
- **Off the request path.** The store listener only sets an event; a worker thread does
  the work, so ingest never waits on verdicts or signing. The worker also polls, which
  catches entries written by another process (``tripwire vote``) into the same home.
- **Who acts first.** The result's own lab proposes and alerts at once; other labs wait
  ``propose_delay_s`` and act only if nothing arrived (the origin may have died right
  after publishing). For certificates, supporters act in lab-id order, one
  ``certificate_stagger_s`` apart, so one certificate usually suffices; duplicates
  are harmless (the pause state is keyed by proposal id).

Pause state (the definition every node and gate applies, order-independent): a pause
proposal P is *paused* when the node holds a valid pause certificate for P and no valid
resume certificate whose resume proposal names P. Certificates are facts that never
expire, so a pause certificate for P replayed after P's resume changes nothing, and a
new pause needs a new trigger (a new result, hence a new proposal id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from node.pause.tracker import EntryIndex, feeds_held, record_conflicts
from protocol.canonical import format_time, utcnow
from protocol.entries import (
    AlertBody,
    EvalResultBody,
    ForecastSummary,
    PauseCertificateBody,
    PauseProposalBody,
    SafetyCaseBody,
    Trigger,
    VerifiedEntry,
    VoteBody,
    pause_proposal_id,
)
from protocol.errors import ConfigurationError, PolicyError, TripwireError
from protocol.forecast import evaluate_with_trend
from protocol.pause import PAUSE_KINDS, CertCache, PauseState, certificate_votes, pause_state
from protocol.plans import PlanCache, PlanState, plan_states
from protocol.policy import Policy
from protocol.quorum import QuorumResult
from protocol.roster import RosterChain
from protocol.scope import breach_scope
from protocol.scope import describe as describe_scope
from protocol.track import ForecastScore, score_forecasts, track_records
from protocol.verdicts import PolicyEvaluation, ResultSummary, RuleVerdict

if TYPE_CHECKING:
    from fastapi import FastAPI

    from node.home import NodeHome

log = logging.getLogger(__name__)

_B = TypeVar("_B")

VoteRule = Literal["manual", "pause-on-breach", "object-unless-breach"]
#: Entry kinds the coordinator reads.
KINDS = (
    "eval_result", "alert", "pause_proposal", "resume_proposal", "vote", "pause_certificate",
    "training_plan", "safety_case", "forecast",
)
#: Most verdicts / flags listed in the status document.
MAX_LISTED = 100


class VotesConfig(BaseModel):
    """``[votes]`` in node.toml: how this node votes and acts on verdicts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto: VoteRule = "manual"
    """``manual``: never vote automatically (a person runs ``tripwire vote``);
    ``pause-on-breach``: vote pause when this node's own recomputed verdict for the trigger
    is breach, and cast no vote otherwise; ``object-unless-breach``: the same, but object to
    proposals whose trigger is not a verified breach."""
    propose_delay_s: float = Field(default=2.0, ge=0, le=3600)
    """Seconds a node waits for the result's own lab to alert/propose before doing it itself."""
    certificate_stagger_s: float = Field(default=0.25, ge=0, le=600)
    """Delay per rank (supporters in lab-id order) before publishing a certificate."""
    poll_interval_s: float = Field(default=1.0, gt=0, le=600)
    """How often the worker looks for entries written by other processes into this home."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> VotesConfig:
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigurationError(f"node.toml [votes] {loc}: {err['msg']}", code="config") from e


# --- analysis (pure) ------------------------------------------------------------------------------


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
    flags: list[dict[str, Any]]
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
    flags: list[dict[str, Any]] = [f.to_json() for f in ps.flags]
    for rid in sorted(cache.errors):
        if rid in results:
            flags.append(
                {"kind": "unevaluable-result", "lab": results[rid].lab, "entry_id": rid,
                 "reason": cache.errors[rid]}
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
                    {"kind": "proposal-not-breach", "proposal_id": pid, "lab": p.entry.lab,
                     "entry_id": p.entry.entry_id, "reason": check.reason}
                )
                for c in p.certificates:
                    # Valid by its votes, so it counts; but this node could not confirm the breach.
                    flags.append(
                        {"kind": "certificate-not-breach", "entry_id": c.entry_id, "lab": c.lab,
                         "proposal_id": pid, "reason": check.reason}
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


# --- actions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    kind: str
    body: Any
    key: str
    """Identifies the action for logging and de-duplication within a pass."""
    due: float
    """time.monotonic() at or after which it may run."""


def _alert_body(result: VerifiedEntry, rv: RuleVerdict, policy: Policy) -> AlertBody:
    verdict = rv.verdict
    if verdict == "ok":
        raise PolicyError(f"rule {rv.rule_id!r} is ok on {result.entry_id[:16]}…: there is nothing to alert on")
    forecast = None
    if rv.trend is not None and rv.trend.verdict == "warn":
        forecast = ForecastSummary(
            crossing_flop=rv.trend.crossing_flop,
            crossing_low=rv.trend.crossing_low_flop,
            crossing_high=rv.trend.crossing_high_flop,
            horizon_flop=rv.trend.horizon_flop,
        )
    return AlertBody(
        result=result.entry_id,
        result_lab=result.lab,
        rule=rv.rule_id,
        policy_digest=policy.digest,
        verdict=verdict,
        observed=rv.bound,
        level=rv.breach_level if rv.verdict == "breach" else rv.alert_level,
        forecast=forecast,
        message=rv.reason,
    )


def _build(make: Callable[[], _B], what: str) -> _B | None:
    """Build an entry body, or log and skip it when its numbers fall outside the signed
    domains (spec §2.2): one odd verdict must never stop the rest of the pass."""
    try:
        return make()
    except (ValidationError, TripwireError) as e:
        log.error("pause coordinator cannot build the %s: %s", what, e)
        return None


def plan_actions(
    a: Analysis,
    *,
    lab: str,
    chain: RosterChain,
    policy: Policy | None,
    config: VotesConfig,
    first_seen: Callable[[str], float],
    now_mono: float,
    now: datetime,
    quorum_seen: Callable[[str], float] | None = None,
) -> list[Action]:
    """The entries this node should publish now or later, given what it holds.

    ``first_seen(result id)`` and ``quorum_seen(proposal id)`` give the monotonic time this
    node first saw a result, and first saw a proposal's quorum: delays count from those
    moments, never from "now", so every lab's turn to certify does come (spec §13.4).
    """
    roster = chain.current.roster
    if roster.lab(lab) is None:
        return []  # observers and removed labs have no feed to publish into
    expired = roster.expired(now)
    out: list[Action] = []
    held_proposals = {pid for pid, st in a.proposals.items() if st.action == "pause"}
    if policy is not None:
        for rid, ev in a.evaluations.items():
            result = a.results[rid]
            due = now_mono if result.lab == lab else first_seen(rid) + config.propose_delay_s
            for rv in ev.verdicts:
                if "alert" in rv.actions and (rid, rv.rule_id) not in a.alerts:
                    alert = _build(partial(_alert_body, result, rv, policy), f"alert on {rid[:16]}…")
                    if alert is not None:
                        out.append(Action("alert", alert, f"alert:{rid}:{rv.rule_id}", due))
                if rv.verdict == "breach" and "pause_proposal" in rv.actions and not expired:
                    trigger = Trigger(result=rid, lab=result.lab, rule=rv.rule_id, policy_digest=policy.digest)
                    scope = breach_scope(policy.rule(rv.rule_id), result.statement.body_as(EvalResultBody).model.training_flop)
                    pid = pause_proposal_id(trigger, scope)
                    if pid not in held_proposals:
                        body = _build(
                            partial(
                                PauseProposalBody,
                                proposal_id=pid,
                                trigger=trigger,
                                observed=rv.bound,
                                level=rv.breach_level,
                                rationale=rv.reason,
                                scope=scope,
                            ),
                            f"pause proposal {pid[:16]}…",
                        )
                        if body is not None:
                            out.append(Action("pause_proposal", body, f"propose:{pid}", due))
    if expired:
        return out  # spec §7.5: an expired roster accepts no new votes
    for pid, st in sorted(a.proposals.items()):
        if st.action == "pause" and pid not in a.paused and pid not in a.resumed and (pid, lab) not in a.votes_by_lab:
            decision = _auto_decision(config.auto, st.check)
            if decision is not None:
                assert st.check is not None
                rationale = f"automatic vote (rule {config.auto}): {st.check.reason}"
                vote = VoteBody(proposal_id=pid, action="pause", decision=decision, rationale=rationale[:8192])
                out.append(Action("vote", vote, f"vote:{pid}", now_mono))
        if st.certified or st.tally is None or not st.tally:
            continue
        if st.action == "pause" and pid in a.resumed:
            continue
        if st.action == "resume" and st.pause_proposal in a.resumed:
            continue
        if st.status == "expired":
            continue
        if st.action == "pause" and not st.discretionary and (st.check is None or st.check.status != "breach"):
            continue  # valid by its votes if others certify it, but an honest node does not help
        supporters = sorted(st.tally.signed)
        others = sorted({m.id for m in roster.labs} - set(supporters))
        order = supporters + others
        rank = order.index(lab) if lab in order else len(order)
        # Only the counted supporting votes (spec §6.5): an objection or a vote that cannot
        # count under this roster version would only give others a reason to refuse it.
        cert = PauseCertificateBody(
            proposal_id=pid,
            action=st.action,
            roster_version=chain.current.version,
            proposal=st.entries[0].envelope,
            votes=[v.envelope for v in certificate_votes(st.tally)],
        )
        seen = quorum_seen(pid) if quorum_seen is not None else now_mono
        out.append(Action("pause_certificate", cert, f"certify:{pid}", seen + rank * config.certificate_stagger_s))
    return out


def _auto_decision(rule: VoteRule, check: TriggerCheck | None) -> Literal["pause", "object"] | None:
    if rule == "manual" or check is None or check.status == "unknown":
        return None
    if check.status == "breach":
        return "pause"
    return "object" if rule == "object-unless-breach" else None


# --- the worker -----------------------------------------------------------------------------------


def load_entries(store: Any) -> dict[str, list[VerifiedEntry]]:
    return {k: store.entries(kind=k) for k in KINDS}


class Coordinator:
    """Runs :func:`analyze` / :func:`plan_actions` on a worker thread of the node process."""

    def __init__(
        self,
        home: NodeHome,
        *,
        config: VotesConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.home = home
        self.config = config or VotesConfig.from_mapping(home.config.votes)
        self.clock = clock
        """Wall clock for entry timestamps and expiry (injectable for simulation and tests)."""
        self.monotonic = monotonic
        """Monotonic clock for delays (injectable for simulation and tests)."""
        self.cache = EvaluationCache()
        self.index = EntryIndex(KINDS)
        self.cert_cache: CertCache = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._first_seen: dict[str, float] = {}
        self._quorum_seen: dict[str, float] = {}
        self._last_size = -1
        self._next_due: float | None = None
        self._policy: Policy | None = None
        self._policy_digest: str | None = None
        self._policy_error: str | None = None
        self.snapshot: dict[str, Any] = {}
        self.analysis: Analysis | None = None
        self.published: list[tuple[str, str]] = []
        """(kind, entry_id) of every entry this coordinator published (diagnostics, tests)."""
        self.passes = 0
        self.pending = 0
        self._judged_size = -1
        self.failures = 0
        self.last_error: str | None = None

    @property
    def settled(self) -> bool:
        """Whether this coordinator has judged everything its store holds and has nothing
        left to do (no action waiting for its delay): it publishes nothing more until a new
        entry arrives. Tests wait for this instead of sleeping past the delays."""
        return self.passes > 0 and not self.pending and self._judged_size == self.home.store.log_size()

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.home.store.add_listener(self.notify)
        self._thread = threading.Thread(target=self._run, name=f"coordinator:{self.home.lab}", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self.home.store.remove_listener(self.notify)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def notify(self, entries: list[VerifiedEntry] | None = None) -> None:
        """Store listener: wake the worker (never blocks the ingest that called it)."""
        if entries is None or any(e.kind in KINDS for e in entries):
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = self.config.poll_interval_s
            if self._next_due is not None:
                timeout = max(0.0, min(timeout, self._next_due - self.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once()
            except Exception as e:  # the worker must outlive a bad pass; the next one retries
                self.last_error = f"{type(e).__name__}: {e}"
                self.failures += 1
                with self._lock:
                    self._last_size = -1  # retry the whole pass on the next wake-up or poll
                log.exception("pause coordinator pass failed")

    # one pass -------------------------------------------------------------------------------

    def _load_policy(self, chain: RosterChain) -> Policy | None:
        digest = chain.current.roster.policy_digest
        if self._policy_digest == digest and (self._policy is not None or self._policy_error is not None):
            return self._policy
        from node.home.policyfile import load_policy

        self._policy_digest = digest
        try:
            self._policy, self._policy_error = load_policy(self.home.path, digest), None
        except ConfigurationError as e:
            self._policy, self._policy_error = None, e.message
            log.error("pause coordinator has no adopted policy: %s", e.message)
        return self._policy

    def reload_policy(self) -> None:
        """Forget the loaded policy (after ``tripwire policy install``); the next pass reloads it."""
        with self._lock:
            self._policy_digest = None
            self._last_size = -1
        self._wake.set()

    def run_once(self, *, force: bool = False) -> list[tuple[str, str]]:
        """One pass (repeated while it publishes); returns what it published."""
        with self._lock:
            published: list[tuple[str, str]] = []
            for _ in range(8):
                new = self._pass(force=force or bool(published))
                published += new
                if not new:
                    break
            return published

    def _pass(self, *, force: bool) -> list[tuple[str, str]]:
        store = self.home.store
        size = store.log_size()
        now_mono = self.monotonic()
        due = self._next_due is not None and now_mono >= self._next_due
        if not force and size == self._last_size and not due:
            return []
        self._last_size = size
        chain = store.roster_chain()
        policy = self._load_policy(chain)
        entries = self.index.update(store)
        for e in entries["eval_result"]:
            self._first_seen.setdefault(e.entry_id, now_mono)
        now = self.clock()
        a = analyze(
            entries,
            chain,
            policy,
            policy_error=self._policy_error,
            cache=self.cache,
            cert_cache=self.cert_cache,
            now=now,
            **feeds_held(store),
        )
        if a.pause.conflicts and record_conflicts(store, a.pause.conflicts):
            # A certificate exposed a fork: the proof is now held; judge again with it.
            self._last_size = -1
            return self._pass(force=True)
        for pid, st in a.proposals.items():
            if st.tally is not None and st.tally and not st.certified:
                self._quorum_seen.setdefault(pid, now_mono)
        actions = plan_actions(
            a,
            lab=self.home.lab,
            chain=chain,
            policy=policy,
            config=self.config,
            first_seen=lambda rid: self._first_seen.get(rid, now_mono),
            now_mono=now_mono,
            now=now,
            quorum_seen=lambda pid: self._quorum_seen.get(pid, now_mono),
        )
        published: list[tuple[str, str]] = []
        later = [x.due for x in actions if x.due > now_mono]
        self._next_due = min(later) if later else None
        attempted = 0
        for act in actions:
            if act.due > now_mono:
                continue
            attempted += 1
            try:
                eid = self.home.publish(act.kind, act.body)
            except TripwireError as e:
                self.last_error = f"{act.key}: {e.message}"
                log.error("pause coordinator could not publish %s: %s", act.key, e.message)
                continue
            log.info("published %s (%s) as %s", act.kind, act.key, eid)
            published.append((act.kind, eid))
            if act.kind in ("vote", "pause_certificate", "pause_proposal"):
                # What follows depends on this entry (a proposal gets voted on, a vote may
                # complete a quorum): recompute before doing more.
                break
        self.published += published
        self.analysis = a
        self.passes += 1
        # Planned actions not taken in this pass (not yet due, or after an entry that needs
        # a fresh look): zero means this node will publish nothing more until new entries
        # arrive, which tests wait for instead of sleeping past the delays.
        self.pending = len(actions) - attempted
        self._judged_size = size if not published else -1
        self.snapshot = describe(a, chain, policy, self._policy_error, self.config, self.home.lab, now)
        self.snapshot["coordinator"] = {
            "passes": self.passes,
            "pending": self.pending,
            "judged_log_size": self._judged_size,
            "failures": self.failures,
            "last_error": self.last_error,
            "running": self._thread is not None,
        }
        return published


# --- status -----------------------------------------------------------------------------------


def pause_state_json(a: Analysis) -> dict[str, Any]:
    return a.pause.to_json()


def describe(
    a: Analysis,
    chain: RosterChain,
    policy: Policy | None,
    policy_error: str | None,
    config: VotesConfig,
    lab: str,
    now: datetime,
) -> dict[str, Any]:
    """The ``coordination`` section of ``GET /v1/status`` (also ``tripwire proposals``)."""
    roster = chain.current.roster
    proposals = []
    for pid, st in sorted(a.proposals.items(), key=lambda kv: (kv[1].entries[0].statement.issued_at, kv[0])):
        t = st.tally
        mine = a.votes_by_lab.get((pid, lab))
        item: dict[str, Any] = {
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
        }
        if st.action == "pause":
            body = st.entries[0].statement.body
            assert isinstance(body, PauseProposalBody)
            item["trigger"] = body.trigger.model_dump(mode="json")
            item["trigger_check"] = st.check.to_json() if st.check else None
            item["discretionary"] = st.discretionary
            item["rationale"] = body.rationale
        elif st.action == "accept":
            item["plan"] = st.entries[0].statement.body_as(SafetyCaseBody).plan
        else:
            item["pause_proposal"] = st.pause_proposal
        body = st.entries[0].statement.body
        scope = getattr(body, "scope", None)
        item["scope"] = scope.model_dump(mode="json", exclude_none=True) if scope is not None else None
        item["covers"] = describe_scope(scope) if st.action == "pause" else None
        deadline = a.pause.proposals[pid].deadline if pid in a.pause.proposals else None
        item["deadline"] = format_time(deadline) if deadline is not None else None
        proposals.append(item)
    verdicts = []
    for rid, ev in a.evaluations.items():
        if ev.overall == "ok":
            continue
        r = a.results[rid]
        verdicts.append(
            {
                "result": rid,
                "lab": r.lab,
                "seq": r.seq,
                "checkpoint_step": ev.checkpoint_step,
                "training_flop": ev.training_flop,
                "overall": ev.overall,
                "rules": [
                    {"rule": v.rule_id, "verdict": v.verdict, "reason": v.reason}
                    for v in ev.verdicts if v.verdict != "ok"
                ],
            }
        )
    verdicts.sort(key=lambda v: (v["lab"], v["seq"]))
    return {
        "rule": config.auto,
        "policy": {
            "adopted": roster.policy_digest,
            "loaded": policy is not None,
            "id": policy.id if policy else None,
            "version": policy.version if policy else None,
            "error": policy_error,
        },
        "roster_expired": roster.expired(now),
        "pause": pause_state_json(a),
        "proposals": proposals,
        "plans": [p.to_json() for p in sorted(a.plans.values(), key=lambda p: (p.lab, p.seq))][-MAX_LISTED:],
        "verdicts": verdicts[-MAX_LISTED:],
        "forecasts": forecasts_json(a),
        "results_judged": len(a.evaluations),
        "flags": a.flags[:MAX_LISTED],
    }


def forecasts_json(a: Analysis) -> dict[str, Any]:
    """The ``forecasts`` section of ``GET /v1/status``: each lab's track record and the most
    recent forecasts with their scores (spec §6.13)."""
    scores = sorted(a.forecasts.values(), key=lambda s: (s.issued_at, s.lab, s.seq))
    return {
        "track": [r.to_json() for r in track_records(scores).values()],
        "forecasts": [s.to_json() for s in scores][-MAX_LISTED:],
    }


@dataclass
class AnalysisCaches:
    """What repeated :func:`local_analysis` calls on one store can reuse: the entries read so
    far (read incrementally), the policy evaluations and forecast fits per result, and the
    certificate checks. A training gate checks at every step; without these, each check
    would refit every result's forecast."""

    index: EntryIndex = field(default_factory=lambda: EntryIndex(KINDS))
    evaluations: EvaluationCache = field(default_factory=lambda: EvaluationCache())
    certificates: CertCache = field(default_factory=dict)


def local_analysis(home: NodeHome, caches: AnalysisCaches | None = None) -> tuple[Analysis, dict[str, Any]]:
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


def _status_section(ctx: Any, status: dict[str, Any]) -> None:
    coord: Coordinator | None = ctx.extra.get("coordinator")
    snap = coord.snapshot if coord is not None and coord.snapshot else None
    if snap is None:
        try:
            _, snap = local_analysis(ctx.home)
        except TripwireError as e:
            status["coordination"] = {"error": e.message}
            status["forecasts"] = {"error": e.message}
            return
    # Informational: the pause state itself ("paused", "pause") comes from the node's
    # PauseTracker, never from this snapshot, so a coordinator that is behind or failing
    # cannot make /v1/status say anything stale about the pause.
    # Forecasts have their own section (spec §6.13); the coordination section stays as it was.
    status["forecasts"] = snap.get("forecasts")
    status["coordination"] = {k: v for k, v in snap.items() if k != "forecasts"}


def attach(app: FastAPI, home: NodeHome, *, config: VotesConfig | None = None) -> Coordinator:
    """Run a coordinator for the lifetime of ``app`` (started and stopped with its lifespan)."""
    from contextlib import asynccontextmanager

    coord = Coordinator(home, config=config)
    ctx = app.state.node
    ctx.extra["coordinator"] = coord
    tracker = ctx.extra.get("pause_tracker")
    if tracker is not None:
        coord.cert_cache = tracker.cache  # verify each certificate's votes once per node
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        coord.start()
        try:
            async with inner(a) as state:
                yield state
        finally:
            coord.stop()

    app.router.lifespan_context = lifespan
    return coord


def _register() -> None:
    try:
        from node.api.status import register_status_section
    except ImportError:  # pragma: no cover - the API ships with the node
        return
    register_status_section(_status_section)


_register()

__all__ = [
    "Analysis",
    "Coordinator",
    "EvaluationCache",
    "ProposalState",
    "TriggerCheck",
    "VotesConfig",
    "analyze",
    "attach",
    "check_trigger",
    "evaluate_results",
    "forecasts_json",
    "local_analysis",
    "pause_state_json",
    "plan_actions",
]
