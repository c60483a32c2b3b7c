"""The report's claims: every number it displays, with where it came from.

A *field claim* says "entry E's statement has value V at JSON Pointer P"; a *verdict
claim* says "under the bundled policy, rule R gives verdict V on result E" (with the
numbers the verdict rests on); a *tally claim* says "the votes on proposal E weigh W of
the required T". The builder derives claims from an :class:`~reports.analysis.Analysis`;
the verifier recomputes each one from the signed data (specs/evidence.md §5–6). The
renderer may only display numbers that are claims.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from reports.analysis import (
    FLOP_PTR,
    STEP_PTR,
    TEXT_PTR,
    Analysis,
    ProposalState,
    is_halt_record,
    pointer,
    resolve_pointer,
)

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Pointer = Annotated[str, StringConstraints(pattern=r"^(/[^/]*)*$", max_length=512)]
DecStr = Annotated[str, StringConstraints(pattern=r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?$")]
LabId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
Scalar = str | int | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class FieldClaims(_Model):
    """Values the report shows from one signed document (a feed entry or a roster)."""

    entry: Hex64
    """entry_id of a feed entry in the bundle, or roster id of a roster in the chain."""
    values: Annotated[dict[Pointer, Scalar], Field(min_length=1, max_length=4096)]
    """RFC 6901 JSON Pointer into the signed statement -> the exact JSON value there."""


class VerdictClaim(_Model):
    """A rule's verdict on one eval result, as the report states it."""

    entry: Hex64
    """entry_id of the eval_result."""
    rule: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    trend: bool
    """True: the verdict includes the trend forecast over the result's lineage (§6.2)."""
    verdict: Literal["ok", "warn", "breach"]
    bound: DecStr
    """The number compared with the levels (observed, or moved z standard errors)."""
    crossing_flop: DecStr | None = None
    crossing_low_flop: DecStr | None = None
    crossing_high_flop: DecStr | None = None


class TallyClaim(_Model):
    """The vote count on one proposal."""

    entry: Hex64
    """entry_id of the proposal (pause_proposal or resume_proposal)."""
    action: Literal["pause", "resume", "accept"]
    weight: Annotated[int, Field(ge=0)]
    threshold: Annotated[int, Field(ge=0)]
    supporting: list[LabId]
    objecting: list[LabId]
    abstaining: list[LabId]
    missing: list[LabId]
    certificate: Hex64 | None
    """entry_id of the pause_certificate that certifies it, if the bundle has one."""


class PlanClaim(_Model):
    """The state of one training plan (spec §6.12), as the report states it."""

    entry: Hex64
    """entry_id of the training_plan."""
    status: Literal["clear", "needs-safety-case", "accepted", "unknown"]
    stop_flop: DecStr | None
    """The compute at which the forecast makes a breach plausible (the run's stop point)."""
    stop_rule: str | None
    accepted_by: Hex64 | None
    """entry_id of the certificate that accepted a safety case for it."""
    overdue_after: DecStr | None
    """The compute past which the run is overdue for a signed evaluation."""


ScoreStatus = Literal["pending", "scored", "late", "unknown"]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class RuleScoreClaim(_Model):
    """How one rule's prediction fared, as the report states it (spec §6.13)."""

    rule: RuleId
    status: ScoreStatus
    observed: DecStr | None
    """The result's value of the rule's metric (as signed)."""
    abs_error: DecStr | None
    """``|observed − predicted|``, to 6 places."""
    inside: bool | None
    """Whether the observed value lies inside the predicted interval."""


class ForecastClaim(_Model):
    """The score of one forecast on record (spec §6.13), as the report states it."""

    entry: Hex64
    """entry_id of the forecast."""
    status: ScoreStatus
    result: Hex64 | None
    """entry_id of the eval_result it is scored against (None: pending)."""
    rules: Annotated[list[RuleScoreClaim], Field(max_length=256)]


class TrackClaim(_Model):
    """A lab's forecast track record over the bundle's forecasts, as the report states it."""

    lab: LabId
    forecasts: Annotated[int, Field(ge=0)]
    count: Annotated[int, Field(ge=0)]
    scored: Annotated[int, Field(ge=0)]
    inside: Annotated[int, Field(ge=0)]
    pending: Annotated[int, Field(ge=0)]
    late: Annotated[int, Field(ge=0)]
    unknown: Annotated[int, Field(ge=0)]
    coverage: DecStr | None
    """Fraction of scored predictions inside their interval, to 4 places."""
    mean_abs_error: DecStr | None
    """Mean absolute error of the scored predictions, to 6 places."""


class Claims(_Model):
    fields: list[FieldClaims] = []
    verdicts: list[VerdictClaim] = []
    tallies: list[TallyClaim] = []
    plans: list[PlanClaim] = []
    forecasts: list[ForecastClaim] = []
    track: list[TrackClaim] = []


# --- derivation --------------------------------------------------------------------------


def _verdict_claim(entry: str, rule: str, trend: bool, v: Any) -> VerdictClaim:
    t = v.trend
    return VerdictClaim(
        entry=entry,
        rule=rule,
        trend=trend,
        verdict=v.verdict,
        bound=v.bound,
        crossing_flop=t.crossing_flop if t else None,
        crossing_low_flop=t.crossing_low_flop if t else None,
        crossing_high_flop=t.crossing_high_flop if t else None,
    )


def _tally_claim(p: ProposalState) -> TallyClaim:
    # The record counts every vote the bundle holds (objections included); the
    # certificate, when present, is verified separately and named here.
    t = p.tally
    return TallyClaim(
        entry=p.entry.entry_id,
        action=p.action,
        weight=t.weight,
        threshold=t.threshold,
        supporting=sorted(t.signed),
        objecting=sorted(t.objected),
        abstaining=sorted(t.abstained),
        missing=sorted(t.missing),
        certificate=p.certificate.entry_id if p.certificate else None,
    )


def _field_values(a: Analysis) -> Iterator[tuple[str, dict[str, Any]]]:
    """(document id, {pointer: value}) for every number the report can display."""
    for i, vr in enumerate(a.chain.versions):
        doc = vr.roster.model_dump(mode="json")
        vals: dict[str, Any] = {
            pointer("version"): doc["version"],
            pointer("quorum", "pause", "weight"): doc["quorum"]["pause"]["weight"],
            pointer("quorum", "resume", "weight"): doc["quorum"]["resume"]["weight"],
            pointer("quorum", "roster"): doc["quorum"]["roster"],
        }
        if doc["quorum"].get("discretionary") is not None:
            vals[pointer("quorum", "discretionary", "weight")] = doc["quorum"]["discretionary"]["weight"]
        if doc["quorum"].get("vote_deadline_s") is not None:
            vals[pointer("quorum", "vote_deadline_s")] = doc["quorum"]["vote_deadline_s"]
        for j, lab in enumerate(doc["labs"]):
            vals[pointer("labs", j, "weight")] = lab["weight"]
        del i
        yield vr.roster_id, vals
    rule_reads = [(r.indicator.task, r.indicator.metric, r.indicator.suite) for r in a.policy.rules]
    for e in a.entries:
        st = a.statements[e.entry_id]
        vals = {pointer("seq"): e.seq}
        if e.kind == "eval_result":
            res = a.results_by_id[e.entry_id]
            vals[FLOP_PTR] = res.flop
            vals[STEP_PTR] = res.body.model.checkpoint_step
            for task, metric, suite in rule_reads:
                if suite != res.body.suite.id or task not in res.task_index:
                    continue
                vals[res.n_pointer(task)] = resolve_pointer(st, res.n_pointer(task))
                for what in ("value", "stderr"):
                    ptr = res.metric_pointer(task, metric, what)
                    try:
                        vals[ptr] = resolve_pointer(st, ptr)
                    except KeyError:
                        pass
        elif e.kind in ("alert", "pause_proposal"):
            for name in ("observed", "level"):
                if st["body"].get(name) is not None:
                    vals[pointer("body", name)] = st["body"][name]
            fc = st["body"].get("forecast")
            if isinstance(fc, dict):
                for name, v in fc.items():
                    if v is not None:
                        vals[pointer("body", "forecast", name)] = v
        elif e.kind == "pause_certificate":
            vals[pointer("body", "roster_version")] = st["body"]["roster_version"]
        elif e.kind == "training_plan":
            for name in ("planned_flop", "cadence"):
                vals[pointer("body", name)] = st["body"][name]
        elif e.kind == "forecast":
            vals[pointer("body", "planned_flop")] = st["body"]["planned_flop"]
            for j, p in enumerate(st["body"]["predictions"]):
                for name in ("value", "low", "high", "level"):
                    if p.get(name) is not None:
                        vals[pointer("body", "predictions", j, name)] = p[name]
        elif is_halt_record(e):
            vals[TEXT_PTR] = st["body"]["text"]  # the step it names is shown from the signed text
        yield e.entry_id, vals


def derive_claims(a: Analysis) -> Claims:
    """The claims of a report over ``a`` (what the builder writes into the bundle)."""
    fields = [FieldClaims(entry=doc, values=vals) for doc, vals in _field_values(a)]
    verdicts = [_verdict_claim(eid, rule, False, v) for (eid, rule), v in a.point.items()]
    verdicts += [_verdict_claim(eid, rule, True, v) for (eid, rule), v in a.trend.items()]
    tallies = [_tally_claim(p) for p in a.proposals]
    plans = [_plan_claim(eid, ps) for eid, ps in sorted(a.plans.items())]
    forecasts = [_forecast_claim(fs) for _eid, fs in sorted(a.forecasts.items())]
    track = [_track_claim(tr) for _lab, tr in sorted(a.track.items())]
    return Claims(fields=fields, verdicts=verdicts, tallies=tallies, plans=plans, forecasts=forecasts, track=track)


def _forecast_claim(fs: Any) -> ForecastClaim:
    return ForecastClaim(
        entry=fs.forecast,
        status=fs.status,
        result=fs.result,
        rules=[RuleScoreClaim(rule=r.rule, status=r.status, observed=r.observed, abs_error=r.abs_error, inside=r.inside)
               for r in fs.rules],
    )


def _track_claim(tr: Any) -> TrackClaim:
    return TrackClaim(**{k: getattr(tr, k) for k in TrackClaim.model_fields})


def _plan_claim(entry: str, ps: Any) -> PlanClaim:
    return PlanClaim(
        entry=entry,
        status=ps.status,
        stop_flop=ps.stop_flop,
        stop_rule=ps.stop_rule,
        accepted_by=ps.accepted_by,
        overdue_after=ps.overdue_after,
    )


# --- checking ----------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    # JSON equality without Python's True == 1 conflation.
    return type(a) is type(b) and a == b


def _differences(claimed: BaseModel, recomputed: BaseModel) -> str:
    """The fields in which a claim and its recomputation differ, in words."""
    return "; ".join(
        f"{k} claimed {getattr(claimed, k)!r}, recomputed {getattr(recomputed, k)!r}"
        for k in type(claimed).model_fields
        if getattr(claimed, k) != getattr(recomputed, k)
    )


def check_claims(claims: Claims, a: Analysis, limit: int = 20) -> tuple[int, list[str]]:
    """Recompute every claim from ``a``; return (claims checked, failure reasons)."""
    failures: list[str] = []
    checked = 0
    rosters = {vr.roster_id: vr.roster.model_dump(mode="json") for vr in a.chain.versions}

    def fail(msg: str) -> None:
        failures.append(msg)

    for fc in claims.fields:
        doc = a.statements.get(fc.entry) or rosters.get(fc.entry)
        if doc is None:
            fail(f"claim cites {fc.entry[:16]}…, which is not a verified entry or roster in the bundle")
            continue
        for ptr, value in fc.values.items():
            checked += 1
            try:
                signed = resolve_pointer(doc, ptr)
            except KeyError as e:
                fail(f"claim {fc.entry[:16]}…{ptr}: not in the signed statement ({e.args[0]})")
                continue
            if not _same(signed, value):
                fail(f"claim {fc.entry[:16]}…{ptr} says {value!r}; the signed value is {signed!r}")

    for vc in claims.verdicts:
        checked += 1
        table = a.trend if vc.trend else a.point
        v = table.get((vc.entry, vc.rule))
        where = f"verdict of rule {vc.rule} on {vc.entry[:16]}…{' (with trend)' if vc.trend else ''}"
        if v is None:
            fail(f"{where}: the bundled policy and data give no such verdict")
            continue
        mine = _verdict_claim(vc.entry, vc.rule, vc.trend, v)
        if mine != vc:
            fail(f"{where}: " + _differences(vc, mine))

    by_entry = {p.entry.entry_id: p for p in a.proposals}
    for tc in claims.tallies:
        checked += 1
        p = by_entry.get(tc.entry)
        if p is None:
            fail(f"tally claim cites proposal {tc.entry[:16]}…, which the bundle does not hold")
            continue
        mine_t = _tally_claim(p)
        if mine_t != tc:
            fail(f"tally of proposal {tc.entry[:16]}…: " + _differences(tc, mine_t))

    for pc in claims.plans:
        checked += 1
        ps = a.plans.get(pc.entry)
        if ps is None:
            fail(f"plan claim cites training plan {pc.entry[:16]}…, which the bundle does not hold")
            continue
        mine_p = _plan_claim(pc.entry, ps)
        if mine_p != pc:
            fail(f"state of training plan {pc.entry[:16]}…: " + _differences(pc, mine_p))
    unclaimed = set(a.plans) - {pc.entry for pc in claims.plans}
    for eid in sorted(unclaimed):
        fail(f"training plan {eid[:16]}… has no state claim")

    for sc in claims.forecasts:
        checked += 1
        fs = a.forecasts.get(sc.entry)
        if fs is None:
            fail(f"forecast claim cites forecast {sc.entry[:16]}…, which the bundle does not hold")
            continue
        mine_f = _forecast_claim(fs)
        if mine_f != sc:
            fail(f"score of forecast {sc.entry[:16]}…: " + _differences(sc, mine_f))
    for eid in sorted(set(a.forecasts) - {c.entry for c in claims.forecasts}):
        fail(f"forecast {eid[:16]}… has no score claim")
    # A track record is recomputed whole: a lab's record left out or padded fails too.
    claimed_track = {t.lab: t for t in claims.track}
    if len(claimed_track) != len(claims.track):
        fail("a lab's forecast track record is claimed twice")
    for lab in sorted(set(a.track) | set(claimed_track)):
        checked += 1
        trc, tr = claimed_track.get(lab), a.track.get(lab)
        if trc is None:
            fail(f"lab {lab}'s forecast track record has no claim")
            continue
        if tr is None:
            fail(f"track record claimed for lab {lab}, which has no forecast in the bundle")
            continue
        mine_tr = _track_claim(tr)
        if mine_tr != trc:
            fail(f"forecast track record of lab {lab}: " + _differences(trc, mine_tr))

    # The report must state a tally for every proposal it holds: leaving one out would
    # hide a vote from the record.
    claimed = {tc.entry for tc in claims.tallies}
    for p in a.proposals:
        if p.entry.entry_id not in claimed:
            fail(f"proposal {p.entry.entry_id[:16]}… has no tally claim")
    return checked, failures[: max(limit, 0)] if len(failures) > limit else failures


class ClaimIndex:
    """Fast lookup of claims for the renderer."""

    def __init__(self, claims: Claims) -> None:
        self.fields: dict[tuple[str, str], Any] = {}
        for fc in claims.fields:
            for ptr, v in fc.values.items():
                self.fields[(fc.entry, ptr)] = v
        self.verdicts = {(v.entry, v.rule, v.trend): v for v in claims.verdicts}
        self.tallies = {t.entry: t for t in claims.tallies}
        self.plans = {p.entry: p for p in claims.plans}
        self.forecasts = {f.entry: f for f in claims.forecasts}
        self.track = {t.lab: t for t in claims.track}
