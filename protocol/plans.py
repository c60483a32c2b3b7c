"""Training plans and safety cases (spec §6.12): one pure function of signed entries.

A lab publishes a ``training_plan`` before a run: the model, its planned compute, its
evaluation cadence and the ladder of smaller models (same recipe) whose results forecast
it. Every node applies the adopted policy's forecast (:func:`protocol.ladder.stop_point`)
to the plan, from the same signed results, and reaches the same :class:`PlanState`:

- ``clear``: no rule's forecast makes a breach plausible before the planned compute;
- ``needs-safety-case``: some rule's does; ``stop_flop`` is the least compute at which one
  becomes plausible (the *stop point*), where the run's gate stops;
- ``accepted``: it needed a safety case and a ``safety_case`` for it, signed by the plan's
  lab, holds a valid ``accept`` certificate (votes with the roster's safety-case quorum,
  counted by the one pause state machine, :func:`protocol.pause.pause_state`);
- ``unknown``: no adopted policy is loaded, so nothing can be forecast (gates fail closed).

Fail closed where the ladder says nothing: a rule whose ladder has fewer than two distinct
compute values has no trend, and the plan's stop point is then the largest compute the
ladder measured (the run may not go past what was measured without a case).

Overdue evaluation: a run must have a fresh signed ``eval_result`` each time its compute
grows by the cadence (the plan's, or the policy's if stricter). ``overdue_after`` is the
compute past which, without a new result of the plan's model, the gate stops the run.

A plan or a safety case is just another signed entry: it pauses nobody, and a safety case
counts only with its certificate. The protocol cannot see the compute a lab really spends:
it holds a lab to the compute it declares (see spec §6.12 threat model).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from protocol.documents import WireDocument
from protocol.entries import (
    OMIT_NONE,
    DecStr,
    Hex64,
    LabId,
    Model,
    SafetyCaseBody,
    TrainingPlanBody,
    VerifiedEntry,
)
from protocol.errors import TripwireError
from protocol.ladder import ladder_points, ladder_proxy_points, stop_point
from protocol.pause import PauseState
from protocol.policy import Policy
from protocol.scope import Run
from protocol.verdicts import ResultSummary

__all__ = [
    "PlanCache",
    "PlanRef",
    "PlanState",
    "PlanStatus",
    "RuleStop",
    "RunStop",
    "SafetyCaseState",
    "plan_for",
    "plan_states",
    "run_stop",
]

PlanStatus = Literal["clear", "needs-safety-case", "accepted", "unknown"]

_CTX = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN, Emin=-999, Emax=999)


# --- the states (spec §8): each one closed model, computed here and served as is ----------


class RuleStop(WireDocument):
    """One forecast rule's verdict on a training plan."""

    rule: str
    """The policy rule id."""
    stop_flop: str | None
    """Compute at which the rule's breach becomes plausible, at or before the planned
    compute (None: not before it)."""
    n_points: int
    """Ladder checkpoints the rule read."""
    reason: str
    """Why, in words."""


class SafetyCaseState(WireDocument):
    """A safety case held for a plan."""

    proposal_id: str
    """The accept proposal's id."""
    entry_id: str
    """Entry id of the safety case."""
    lab: str
    """The lab that published it."""
    status: Literal["open", "certified"]
    """Collecting votes, or accepted."""
    certificate: str | None
    """Entry id of the valid accept certificate (None: not accepted)."""


class PlanState(WireDocument):
    """What every node concludes about one training plan (same entries, same state)."""

    plan: str
    """Entry id of the plan."""
    lab: str
    """The lab that published it."""
    model: str
    """The planned model."""
    planned_flop: str
    """Planned training compute (decimal text)."""
    status: PlanStatus
    """What the forecast says of the plan (spec §6.12)."""
    stop_flop: str | None
    """The stop point: least compute at which a breach becomes plausible (needs-safety-case
    and accepted); None when clear or unknown."""
    stop_rule: str | None
    """The rule that sets the stop point."""
    rules: tuple[RuleStop, ...]
    """Each forecast rule's verdict."""
    safety_cases: tuple[SafetyCaseState, ...]
    """Safety cases held for it."""
    accepted_by: str | None
    """Entry id of the accept certificate that accepted its safety case."""
    cadence: str
    """The evaluation cadence that applies: the plan's, or the policy's where stricter."""
    last_eval_flop: str | None
    """Largest training compute of a signed result of the plan's model (None: none yet;
    the ladder's largest compute is the base then)."""
    overdue_after: str | None
    """Compute past which the run is overdue for an evaluation (None: no base to count from)."""
    domains: tuple[str, ...]
    """The plan's capability domains."""
    seq: int
    """The plan entry's position in its lab's feed (the latest plan for a model governs)."""
    reason: str
    """Why, in words."""

    def ref(self) -> PlanRef:
        return PlanRef(
            plan=self.plan, lab=self.lab, model=self.model, seq=self.seq, status=self.status,
            planned_flop=self.planned_flop, stop_flop=self.stop_flop, accepted_by=self.accepted_by,
            overdue_after=self.overdue_after, last_eval_flop=self.last_eval_flop, cadence=self.cadence,
        )

    @property
    def stops_at(self) -> str | None:
        """Where the run's gate stops for the forecast (None: it does not)."""
        return self.stop_flop if self.status == "needs-safety-case" else None


class PlanRef(Model):
    """What a training gate needs of a plan's state: listed in a node's signed pause state
    (spec §6.9, §6.12) and derived from the local store alike."""

    plan: Hex64
    """Entry id of the training_plan."""
    lab: LabId
    model: Annotated[str, StringConstraints(max_length=256)]
    seq: Annotated[int, Field(ge=1, le=2**53 - 1)]
    status: PlanStatus
    planned_flop: DecStr
    stop_flop: DecStr | None = OMIT_NONE
    """The stop point (needs-safety-case and accepted)."""
    accepted_by: Hex64 | None = OMIT_NONE
    """Entry id of the accept certificate of the plan's safety case."""
    overdue_after: DecStr | None = OMIT_NONE
    """Compute past which the run is overdue for an evaluation."""
    last_eval_flop: DecStr | None = OMIT_NONE
    cadence: DecStr


@dataclass(frozen=True)
class RunStop:
    """Why a plan stops its run now."""

    kind: Literal["stop-point", "overdue-evaluation", "beyond-plan", "plan-unknown"]
    reason: str
    plan: str


def run_stop(ref: PlanRef, run: Run) -> RunStop | None:
    """Whether the plan ``ref`` stops ``run`` now (spec §6.12), and why. Fails closed: a run
    whose compute is unknown is at its stop point."""
    cur = run.current_flop
    pid = ref.plan
    if ref.status == "unknown":
        return RunStop("plan-unknown", f"training plan {pid[:16]}… cannot be evaluated (no adopted policy "
                       "loaded); fail-closed", pid)
    if ref.status == "needs-safety-case" and ref.stop_flop is not None and (
        cur is None or Decimal(cur) >= Decimal(ref.stop_flop)
    ):
        at = f"at {cur} FLOP" if cur is not None else "at an unknown compute"
        return RunStop(
            "stop-point",
            f"the run is {at}, at or past the stop point {ref.stop_flop} FLOP of its training plan {pid[:16]}… "
            "(the policy's forecast makes a breach plausible there); it may go on once a safety case for the "
            "plan is accepted",
            pid,
        )
    if cur is not None and Decimal(cur) > Decimal(ref.planned_flop):
        return RunStop("beyond-plan", f"the run is at {cur} FLOP, past the {ref.planned_flop} FLOP its training plan "
                       f"{pid[:16]}… declares; a new plan (forecast afresh) is needed to go on", pid)
    if ref.overdue_after is not None and cur is not None and Decimal(cur) > Decimal(ref.overdue_after):
        since = (f"its last signed evaluation at {ref.last_eval_flop} FLOP" if ref.last_eval_flop
                 else "its ladder's largest compute (no signed evaluation of the model yet)")
        return RunStop(
            "overdue-evaluation",
            f"overdue evaluation: the run is at {cur} FLOP, past {ref.overdue_after} FLOP ({since} times the "
            f"cadence {ref.cadence}), without a fresh signed eval_result (plan {pid[:16]}…)",
            pid,
        )
    return None


#: Rule stops cached by (plan entry id, policy digest, ladder result ids): the forecast fit
#: is the costly part and depends on nothing else.
PlanCache = MutableMapping[tuple[str, str, tuple[str, ...]], tuple[RuleStop, ...]]


def _text(d: Decimal) -> str:
    with decimal.localcontext(_CTX) as ctx:
        ctx.prec = 12
        d = (+d).normalize()
    # Compute reads like the forecast's (``9.57635E+19``); small multiples stay plain ("4").
    t = format(d, "f") if -6 < d.adjusted() < 6 else format(d, "E")
    if "." in t and "E" not in t:
        t = t.rstrip("0").rstrip(".")
    return t


def _rule_stops(
    plan: TrainingPlanBody, ladder: list[ResultSummary], lab: str, policy: Policy
) -> tuple[RuleStop, ...]:
    out: list[RuleStop] = []
    for rule in sorted(policy.rules, key=lambda r: r.id):
        if rule.forecast is None:
            continue
        points = ladder_points(ladder, lab=lab, models=plan.ladder, rule=rule)
        distinct = {Decimal(p.flop) for p in points}
        if len(distinct) < 2:
            # No trend to lean on: the run may not pass what the ladder measured (§6.12).
            top = max(distinct) if distinct else Decimal(1)
            stop = min(top, Decimal(plan.planned_flop))
            out.append(RuleStop(rule=rule.id, stop_flop=_text(stop), n_points=len(points), reason=(
                                f"the ladder has {len(distinct)} distinct compute value(s) on rule {rule.id!r}'s "
                                "indicator: no trend, so no forecast can show the run stays clear")))
            continue
        try:
            proxies = ladder_proxy_points(ladder, lab=lab, models=plan.ladder, rule=rule)
            sp = stop_point(points, rule, plan.planned_flop, proxy_points=proxies)
        except TripwireError as e:
            top = max(distinct)
            out.append(RuleStop(rule=rule.id, stop_flop=_text(top), n_points=len(points),
                                reason=f"the forecast failed ({e.message}); fail-closed"))
            continue
        if sp is None:
            out.append(RuleStop(rule=rule.id, stop_flop=None, n_points=len(points), reason=(
                                f"rule {rule.id!r}: the forecast's risky edge stays short of the breach level "
                                f"up to {plan.planned_flop} FLOP")))
        else:
            out.append(RuleStop(rule=rule.id, stop_flop=sp, n_points=len(points), reason=(
                                f"rule {rule.id!r}: a breach becomes plausible at {sp} FLOP, before the planned "
                                f"{plan.planned_flop} FLOP")))
    return tuple(out)


def plan_states(
    plans: Iterable[VerifiedEntry],
    results: Mapping[str, ResultSummary],
    policy: Policy | None,
    pause: PauseState,
    *,
    cache: PlanCache | None = None,
) -> dict[str, PlanState]:
    """Plan entry id -> its state, from the held ``training_plan`` entries, the verified
    results (entry id -> summary), the adopted policy and the pause state (which holds the
    safety cases' proposals and certificates). Pure and order-independent."""
    cases: dict[str, list[SafetyCaseState]] = {}
    for pid, p in pause.proposals.items():
        if p.action != "accept":
            continue
        body = p.entry.statement.body
        assert isinstance(body, SafetyCaseBody)
        cert = p.certificates[0].entry_id if p.certificates else None
        cases.setdefault(body.plan, []).append(
            SafetyCaseState(proposal_id=pid, entry_id=p.entry.entry_id, lab=p.entry.lab,
                            status="certified" if cert else "open", certificate=cert)
        )
    out: dict[str, PlanState] = {}
    for e in sorted({e.entry_id: e for e in plans}.values(), key=lambda e: (e.lab, e.seq, e.entry_id)):
        body = e.statement.body
        if not isinstance(body, TrainingPlanBody):
            continue
        # §6.12: a lab makes the case for its own plan; another lab's "case" counts for nothing.
        own = tuple(sorted((c for c in cases.get(e.entry_id, ()) if c.lab == e.lab), key=lambda c: c.proposal_id))
        out[e.entry_id] = _plan_state(e, body, results, policy, own, cache)
    return out


def _plan_state(
    e: VerifiedEntry,
    plan: TrainingPlanBody,
    results: Mapping[str, ResultSummary],
    policy: Policy | None,
    cases: tuple[SafetyCaseState, ...],
    cache: PlanCache | None,
) -> PlanState:
    lab = e.lab
    wanted = set(plan.ladder)
    pinned = set(plan.results)
    ladder_ids = sorted(
        rid for rid, r in results.items()
        if r.lab == lab and r.model in wanted and (not pinned or rid in pinned)
    )
    ladder = [results[rid] for rid in ladder_ids]
    own = [r for r in results.values() if r.lab == lab and r.model == plan.model]
    last = max((Decimal(r.training_flop) for r in own), default=None)
    base = last if last is not None else max((Decimal(r.training_flop) for r in ladder), default=None)
    cadence = Decimal(plan.cadence)
    if policy is not None:
        for rule in policy.rules:
            if rule.cadence is not None:
                cadence = min(cadence, Decimal(rule.cadence.compute_multiple))
    with decimal.localcontext(_CTX):
        overdue_after = _text(base * cadence) if base is not None else None
    accepted = next((c.certificate for c in cases if c.certificate is not None), None)
    common: dict[str, Any] = {
        "plan": e.entry_id,
        "lab": lab,
        "model": plan.model,
        "planned_flop": plan.planned_flop,
        "safety_cases": cases,
        "accepted_by": accepted,
        "cadence": _text(cadence),
        "last_eval_flop": _text(last) if last is not None else None,
        "overdue_after": overdue_after,
        "domains": tuple(plan.domains),
        "seq": e.seq,
    }
    if policy is None:
        return PlanState(status="unknown", stop_flop=None, stop_rule=None, rules=(),
                         reason="no adopted policy is loaded: the plan cannot be forecast", **common)
    key = (e.entry_id, policy.digest, tuple(ladder_ids))
    rules = cache.get(key) if cache is not None else None
    if rules is None:
        rules = _rule_stops(plan, ladder, lab, policy)
        if cache is not None:
            cache[key] = rules
    stops = [r for r in rules if r.stop_flop is not None]
    if not stops:
        why = "no rule of the policy forecasts" if rules else "the policy has no forecast rule to apply to"
        return PlanState(status="clear", stop_flop=None, stop_rule=None, rules=rules,
                         reason=f"{why} a plausible breach before {plan.planned_flop} FLOP", **common)
    first = min(stops, key=lambda r: (Decimal(r.stop_flop or "0"), r.rule))
    if accepted is not None:
        return PlanState(status="accepted", stop_flop=first.stop_flop, stop_rule=first.rule, rules=rules,
                         reason=f"{first.reason}; safety case accepted (certificate {accepted[:16]}…)", **common)
    return PlanState(status="needs-safety-case", stop_flop=first.stop_flop, stop_rule=first.rule, rules=rules,
                     reason=f"{first.reason}: the run stops there unless a safety case is accepted", **common)


def plan_for(refs: Iterable[PlanRef], *, lab: str, model: str, plan_id: str | None = None) -> PlanRef | None:
    """The plan that governs ``lab``'s run of ``model``: ``plan_id`` when given (and it is
    that lab's plan for that model), else the lab's latest plan for the model (highest seq).
    A newer plan lifts no limit by itself: every plan binds its run to its own planned
    compute and is forecast afresh, so a laxer plan with less compute only stops the run sooner."""
    if plan_id is not None:
        return next((r for r in refs if r.plan == plan_id and r.lab == lab and (not model or r.model == model)), None)
    mine = [r for r in refs if r.lab == lab and r.model == model]
    return max(mine, key=lambda r: (r.seq, r.plan)) if mine else None
