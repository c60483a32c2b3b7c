"""What a report says, computed deterministically from verified entries.

Both the bundle builder (to write the claims) and the verifier (to recompute them)
call :func:`analyse`, so a claim can only pass if an independent recomputation from
the signed data gives the same answer. Pure: no I/O.

Definitions (normative in specs/evidence.md §6):
- A *lineage* is one lab's results for one model name, in feed order.
- Every eval result gets a *point verdict* per applicable rule (no forecast).
- The latest result of each lineage also gets a *trend verdict*: the rule's forecast
  over that lineage's results in the bundle (``protocol.forecast.evaluate_with_trend``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any, Literal

import orjson

from protocol.canonical import format_time, parse_time
from protocol.entries import (
    EvalResultBody,
    NoteBody,
    PauseProposalBody,
    VerifiedEntry,
    halt_step,
)
from protocol.errors import PeerDataError, TripwireError
from protocol.forecast import BandFit, evaluate_with_trend
from protocol.pause import PauseState, ProposalStatus, pause_state
from protocol.plans import PlanState, plan_states
from protocol.policy import Policy
from protocol.quorum import QuorumResult, tally
from protocol.roster import RosterChain
from protocol.scope import Scope, describe
from protocol.track import ForecastScore, TrackRecord, score_forecasts, track_records
from protocol.verdicts import ResultSummary, RuleVerdict, evaluate_rule

Status = Literal["normal", "alert", "paused"]


@lru_cache(maxsize=4096, typed=True)
def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON Pointer from path parts (``~`` and ``/`` escaped)."""
    # Cached: a report builds the same few pointers for each of thousands of results.
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@lru_cache(maxsize=4096)
def _tokens(ptr: str) -> tuple[str, ...]:
    return tuple(raw.replace("~1", "/").replace("~0", "~") for raw in ptr[1:].split("/"))


def resolve_pointer(doc: Any, ptr: str) -> Any:
    """Resolve an RFC 6901 pointer; raise ``KeyError`` naming the missing step."""
    if ptr == "":
        return doc
    if not ptr.startswith("/"):
        raise KeyError(f"pointer {ptr!r} does not start with '/'")
    cur = doc
    for token in _tokens(ptr):
        if isinstance(cur, list):
            if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
                raise KeyError(f"{token!r} is not an array index")
            i = int(token)
            if i >= len(cur):
                raise KeyError(f"index {i} is past the end of an array of {len(cur)}")
            cur = cur[i]
        elif isinstance(cur, dict):
            if token not in cur:
                raise KeyError(f"no member {token!r}")
            cur = cur[token]
        else:
            raise KeyError(f"cannot step into a {type(cur).__name__} with {token!r}")
    return cur


@dataclass(frozen=True)
class Result:
    """One verified eval_result with the indexes the report needs."""

    entry: VerifiedEntry
    body: EvalResultBody
    summary: ResultSummary
    task_index: dict[str, int]

    @property
    def id(self) -> str:
        return self.entry.entry_id

    @property
    def lab(self) -> str:
        return self.entry.lab

    @property
    def model(self) -> str:
        return self.body.model.name

    @property
    def flop(self) -> str:
        return self.body.model.training_flop

    @cached_property
    def log10_flop(self) -> float:
        """For drawing only (verdicts use protocol.forecast's exact decimals): float is plenty."""
        f = float(Decimal(self.flop))
        return math.log10(f) if f > 0 else -math.inf

    def metric_pointer(self, task: str, metric: str, what: str) -> str:
        return pointer("body", "tasks", self.task_index[task], "metrics", metric, what)

    def n_pointer(self, task: str) -> str:
        return pointer("body", "tasks", self.task_index[task], "n")


FLOP_PTR = pointer("body", "model", "training_flop")
STEP_PTR = pointer("body", "model", "checkpoint_step")
TEXT_PTR = pointer("body", "text")


@dataclass(frozen=True)
class ProposalState:
    """A pause or resume proposal, the votes on it in the bundle, and its certificate."""

    entry: VerifiedEntry
    action: Literal["pause", "resume", "accept"]
    proposal_id: str
    votes: tuple[VerifiedEntry, ...]
    """Every vote on this proposal in the bundle, in (issued_at, lab, seq) order."""
    tally: QuorumResult
    """Tally of the bundle's votes under the roster version the proposal was verified with."""
    certificate: VerifiedEntry | None = None
    certificate_result: QuorumResult | None = None
    status: ProposalStatus = "open"
    """The pause state machine's status as of the bundle's time (``expired``: a discretionary
    proposal whose voting deadline passed uncertified)."""
    scope: Scope | None = None
    """The runs the pause covers (None: every run); for a resume, the scope it leaves."""
    deadline: datetime | None = None
    """For a discretionary proposal under a roster with a voting deadline: when voting closes."""
    late_votes: frozenset[str] = frozenset()
    """Entry ids of votes issued after the deadline (shown, never counted)."""

    @property
    def deadline_text(self) -> str | None:
        """The deadline as RFC 3339 UTC text (what the report's time filters take)."""
        return format_time(self.deadline) if self.deadline is not None else None

    @property
    def discretionary(self) -> bool:
        """A pause a lab asked for on its own judgement, citing evidence (spec §6.11)."""
        body = self.entry.statement.body
        return isinstance(body, PauseProposalBody) and body.discretionary

    @property
    def scope_text(self) -> str:
        """The scope in plain words (``all training runs``, ...)."""
        return describe(self.scope)


@dataclass(frozen=True)
class Problem:
    """An entry the report could not evaluate (or a refusal of the pause state machine)."""

    entry_id: str | None
    lab: str
    reason: str


@dataclass
class Analysis:
    chain: RosterChain
    policy: Policy
    entries: tuple[VerifiedEntry, ...]
    results: list[Result] = field(default_factory=list)
    by_id: dict[str, VerifiedEntry] = field(default_factory=dict)
    results_by_id: dict[str, Result] = field(default_factory=dict)
    point: dict[tuple[str, str], RuleVerdict] = field(default_factory=dict)
    """(result entry id, rule id) -> point verdict."""
    trend: dict[tuple[str, str], RuleVerdict] = field(default_factory=dict)
    """(latest result id of a lineage, rule id) -> verdict with the trend forecast."""
    fits: dict[tuple[str, str], BandFit | None] = field(default_factory=dict)
    """(latest result id of a lineage, rule id) -> the fitted curve behind its trend verdict."""
    latest: dict[tuple[str, str], Result] = field(default_factory=dict)
    """(lab, model name) -> the lineage's latest result."""
    lineages: dict[tuple[str, str], list[Result]] = field(default_factory=dict)
    proposals: list[ProposalState] = field(default_factory=list)
    statements: dict[str, dict[str, Any]] = field(default_factory=dict)
    """entry id -> statement as JSON (for claim pointers)."""
    pause: PauseState | None = None
    """The pause state machine's output over the bundle (:func:`protocol.pause.pause_state`)."""
    problems: list[Problem] = field(default_factory=list)
    """Entries that could not be evaluated, with the reason: shown flagged, never fatal."""
    plans: dict[str, PlanState] = field(default_factory=dict)
    """training_plan entry id -> its state under the bundled policy and votes (spec §6.12)."""
    forecasts: dict[str, ForecastScore] = field(default_factory=dict)
    """forecast entry id -> its score against the lab's bundled results (spec §6.13)."""
    track: dict[str, TrackRecord] = field(default_factory=dict)
    """lab -> its forecast track record over the bundle's forecasts."""
    halts: dict[str, VerifiedEntry] = field(default_factory=dict)
    """lab -> its latest halt record: a ``note`` its training gate signed when it stopped
    training, whose text begins with ``protocol.entries.HALT_PREFIX`` (docs/pause.md)."""

    @property
    def flagged(self) -> list[Problem]:
        """Everything the report shows as flagged: the pause state's refusals, then evaluation problems."""
        out = [
            Problem(f.entry_id, f.lab, f"{f.kind}: {f.reason}")
            for f in (self.pause.flags if self.pause is not None else ())
        ]
        return out + self.problems

    @property
    def status(self) -> Status:
        if self.pause is not None and self.pause.paused:
            return "paused"
        if self.open_proposals or any(v.verdict != "ok" for v in self.trend.values()):
            return "alert"
        if any(e.kind == "alert" for e in self.entries):
            return "alert"
        return "normal"

    @property
    def open_proposals(self) -> list[ProposalState]:
        """Proposals still being voted on (not certified, not expired)."""
        return [p for p in self.proposals if p.certificate is None and p.status != "expired"]

    @cached_property
    def notable(self) -> frozenset[str]:
        """Results on which at least one rule's point verdict is not OK."""
        return frozenset(eid for (eid, _rule), v in self.point.items() if v.verdict != "ok")

    def routine(self, entry_id: str) -> bool:
        """True for a result on which every rule's point verdict is OK (False for other entries)."""
        return entry_id in self.results_by_id and entry_id not in self.notable

    def verdict_for_latest(self, lab: str, rule_id: str) -> tuple[Result, RuleVerdict] | None:
        """The riskiest latest-lineage verdict of ``lab`` on ``rule_id`` (None: no result)."""
        best: tuple[Result, RuleVerdict] | None = None
        rank = {"ok": 0, "warn": 1, "breach": 2}
        for (lab_, _model), res in self.latest.items():
            if lab_ != lab:
                continue
            v = self.trend.get((res.id, rule_id))
            if v is None:
                continue
            if best is None or (rank[v.verdict], Decimal(v.bound)) > (
                rank[best[1].verdict],
                Decimal(best[1].bound),
            ):
                best = (res, v)
        return best


def _why(e: Exception) -> str:
    return e.diagnostics() if isinstance(e, TripwireError) else f"{type(e).__name__}: {e}"


def _statement_json(e: VerifiedEntry) -> dict[str, Any]:
    # The payload is canonical JSON already checked by decode_entry (no floats, integers in
    # range), so orjson's parse of it is exactly the signed object, several times faster.
    out: dict[str, Any] = orjson.loads(e.payload)
    return out


def analyse(
    chain: RosterChain, policy: Policy, entries: Sequence[VerifiedEntry], *, now: datetime | None = None
) -> Analysis:
    """Compute everything the report shows from verified entries (bundle order).

    ``now`` is the time the state is taken at (the bundle's ``generated_at``, so a verifier
    recomputes the same state): it decides which discretionary proposals have expired."""
    a = Analysis(chain=chain, policy=policy, entries=tuple(entries))
    for e in entries:
        a.by_id[e.entry_id] = e
        body = e.statement.body
        if isinstance(body, EvalResultBody):
            st = _statement_json(e)
            a.statements[e.entry_id] = st
            summary = ResultSummary.from_statement(st)
            res = Result(e, body, summary, {t.name: i for i, t in enumerate(body.tasks)})
            a.results.append(res)
            a.results_by_id[e.entry_id] = res
            a.lineages.setdefault((res.lab, res.model), []).append(res)
            for rule in policy.rules:
                # A lab's odd numbers are the lab's problem: flag the result, keep the report.
                try:
                    v = evaluate_rule(rule, summary)
                except (PeerDataError, ArithmeticError) as ex:
                    a.problems.append(Problem(e.entry_id, e.lab, f"rule {rule.id}: {_why(ex)}"))
                    continue
                if isinstance(v, RuleVerdict):
                    a.point[(e.entry_id, rule.id)] = v
        if e.entry_id not in a.statements and e.kind != "eval_result":
            a.statements[e.entry_id] = _statement_json(e)

    for key, lineage in a.lineages.items():
        lineage.sort(key=lambda r: r.entry.seq)
        latest = lineage[-1]
        a.latest[key] = latest
        fits: dict[str, BandFit | None] = {}
        try:
            ev = evaluate_with_trend(policy, latest.summary, [r.summary for r in lineage[:-1]], fits=fits)
        except (PeerDataError, ArithmeticError) as ex:
            a.problems.append(Problem(latest.id, latest.lab, f"trend of {latest.model}: {_why(ex)}"))
            continue
        for v in ev.verdicts:
            a.trend[(latest.id, v.rule_id)] = v
        for rule_id, fit in fits.items():
            a.fits[(latest.id, rule_id)] = fit

    a.pause = pause_state(entries, chain, now=now)
    a.proposals = _proposal_views(a.pause, chain, a.by_id)
    plans = [e for e in entries if e.kind == "training_plan"]
    if plans:
        try:
            a.plans = plan_states(plans, {r.id: r.summary for r in a.results}, policy, a.pause)
        except (PeerDataError, ArithmeticError) as ex:
            a.problems.append(Problem(None, plans[0].lab, f"training plans: {_why(ex)}"))
    forecasts = [e for e in entries if e.kind == "forecast"]
    if forecasts:
        try:
            a.forecasts = score_forecasts(forecasts, [(r.entry, r.summary) for r in a.results], policy)
            a.track = track_records(a.forecasts.values())
        except (PeerDataError, ArithmeticError) as ex:
            a.problems.append(Problem(None, forecasts[0].lab, f"forecasts: {_why(ex)}"))
    for e in entries:
        if is_halt_record(e):
            held = a.halts.get(e.lab)
            if held is None or e.seq > held.seq:
                a.halts[e.lab] = e
    return a


def is_halt_record(e: VerifiedEntry) -> bool:
    """A gate's halt record: a ``note`` whose text begins "training halted at step N"."""
    body = e.statement.body
    return isinstance(body, NoteBody) and halt_step(body.text) is not None


def _proposal_views(state: PauseState, chain: RosterChain, by_id: Mapping[str, VerifiedEntry]) -> list[ProposalState]:
    """The report's view of each proposal, from the pause state machine's records."""
    out: list[ProposalState] = []
    for pid, p in sorted(
        state.proposals.items(), key=lambda kv: (kv[1].entry.statement.issued_at, kv[1].entry.lab, kv[0])
    ):
        mine = tuple(sorted(p.votes, key=lambda e: (e.statement.issued_at, e.lab, e.seq)))
        roster = chain.get(min(p.entry.roster_version, chain.current.version)).roster
        # Votes after a discretionary proposal's deadline count nowhere (spec §6.11).
        in_time = [v for v in mine if p.deadline is None or parse_time(v.statement.issued_at) <= p.deadline]
        cert = p.certificates[-1] if p.certificates else None
        out.append(
            ProposalState(
                p.entry,
                p.action,
                pid,
                mine,
                tally(p.entry, in_time, roster),
                None if cert is None else by_id.get(cert.entry_id),
                None if cert is None else cert.result,
                p.status,
                p.scope,
                p.deadline,
                frozenset(v.entry_id for v in mine) - {v.entry_id for v in in_time},
            )
        )
    return out
