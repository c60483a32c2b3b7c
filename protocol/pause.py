"""The pause state machine (spec §6.6, §13): one pure function of verified entries and the
roster chain.

:func:`pause_state` is the only definition of "is the network paused" in Tripwire: the
node's ``/v1/status``, its coordinator, training gates, the CLI, reports and offline
verification all call it. It reads proposals, votes and certificates (any delivery order,
duplicates allowed) and returns data: per-proposal records with their tallies, the valid
certificates, the active pauses, and *flags* for everything it refused to count and why.
Nothing here raises on peer data; refusals become flags.

Rules (normative text in spec §6.4–6.7):

- A lab's *counted* vote on a proposal is its vote with the lowest ``(seq, entry_id)``
  among the votes this party holds (first vote counts, §6.4).
- A certificate is valid when :func:`protocol.quorum.verify_certificate` accepts it and,
  in the context of the feeds this party holds, every vote it counts is the lab's first
  vote on the proposal and sits at a position the lab's feed really holds (a vote made
  only for a certificate, at a seq where the feed holds another entry, is a fork and does
  not count).
- A pause proposal P is *paused* while some valid pause certificate for P is held and no
  valid resume certificate ends it. A resume certificate ends P only when its roster
  version is at least the newest roster version of P's valid pause certificates: a
  resume is judged under a roster at least as new as the pause's.
- Certificates are facts that never expire: replaying a pause certificate after its
  resume changes nothing; a new pause needs a new trigger (a new proposal id).
- A pause covers the runs its scope names (§6.10): :meth:`PauseState.active_for` is what a
  gate asks. A resume may narrow the scope instead of ending the pause.
- A discretionary proposal (§6.11) counts only when signed by the lab it names; under a
  roster with ``vote_deadline_s``, votes issued after the deadline do not count (in tallies
  or certificates) and an uncertified proposal past it is ``expired``.
- A ``safety_case`` (§6.12) is a proposal too, with action ``accept`` and the roster's
  safety-case quorum: certified, it has status ``certified`` and pauses or ends nothing
  (:mod:`protocol.plans` reads it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from protocol.canonical import parse_time
from protocol.documents import WireDocument
from protocol.entries import (
    OMIT_NONE,
    DiscretionaryTrigger,
    PauseCertificateBody,
    PauseProposalBody,
    ResumeProposalBody,
    SafetyCaseBody,
    VerifiedEntry,
    VoteBody,
)
from protocol.errors import PeerDataError, TripwireError
from protocol.quorum import (
    CertificateContext,
    CertificateParts,
    QuorumResult,
    certificate_parts,
    count_certificate,
    tally,
)
from protocol.roster import RosterChain
from protocol.scope import Run, Scope, covers, describe

#: Entry kinds the pause state reads (a ``safety_case`` is a proposal to accept, §6.12).
PAUSE_KINDS = ("pause_proposal", "resume_proposal", "vote", "pause_certificate", "safety_case")

ProposalStatus = Literal["open", "paused", "resumed", "certified", "expired"]
"""``open``: no valid certificate; ``paused``: a pause in force; ``resumed``: a pause ended
by a resume certificate; ``certified``: a resume proposal or safety case with a valid certificate;
``expired``: a discretionary proposal whose voting deadline passed without a certificate."""

FlagKind = Literal[
    "double-vote",
    "invalid-certificate",
    "resume-roster-too-old",
    "late-vote",
    "proposer-mismatch",
    "scope-widened",
]
#: Kinds a node's analysis adds to the pause state's flags (``node.pause.analysis``): a result
#: it cannot evaluate, and a pause proposal (or its certificate) whose breach it cannot confirm.
AnalysisFlagKind = Literal["unevaluable-result", "proposal-not-breach", "certificate-not-breach"]

#: Signature and window verification of certificates, cached across calls: (certificate
#: entry_id, roster chain length) -> the verified parts, or the error. Only saves work (the
#: signature checks); the context-dependent count is redone every time.
CertCache = MutableMapping[tuple[str, int], "CertificateParts | PeerDataError"]


class Flag(WireDocument):
    """Something this party saw and refused to count, or counted and wants people to see
    (spec §6.6): the pause rules' flags, and what a node's analysis adds to them."""

    kind: FlagKind | AnalysisFlagKind
    """What was seen."""
    lab: str
    """The lab that published the entry concerned."""
    reason: str
    """Why, in words."""
    entry_id: str | None = OMIT_NONE
    """The entry concerned."""
    proposal_id: str | None = OMIT_NONE
    """The proposal it concerns."""
    code: str | None = OMIT_NONE
    """The error code (spec §10) when the flag records a refusal."""
    counted: str | None = OMIT_NONE
    """``double-vote``: the lab's first vote, the one that counts."""
    ignored: tuple[str, ...] | None = OMIT_NONE
    """``double-vote``: its later votes, which count for nothing."""
    decisions: tuple[str, ...] | None = OMIT_NONE
    """``double-vote``: the decision of each of its votes, first first."""


# --- the served pause section (spec §6.6): one model, built by PauseState.document() -------


class ActivePause(WireDocument):
    """A pause in force: its proposal and the certificate that put it in force."""

    proposal_id: str
    """The pause proposal."""
    certificate: str
    """Entry id of its pause certificate."""
    lab: str
    """Lab that published the certificate."""
    roster_version: int
    """Roster version the certificate was counted under."""
    scope: dict[str, Any] | None = None
    """The runs it covers (absent: every run, spec §6.10)."""
    covers: str
    """The scope in words."""


class ResumedPause(WireDocument):
    """A pause that a resume certificate ended."""

    proposal_id: str
    """The pause proposal that was ended."""
    certificate: str
    """Entry id of the resume certificate."""
    lab: str
    """Lab that published the resume certificate."""
    roster_version: int
    """Roster version the resume certificate was counted under."""
    scope: dict[str, Any] | None = None
    """The narrower scope the resume left in force (absent: the pause ended)."""
    resume_proposal: str
    """The resume proposal whose certificate ended it."""


class PauseSection(WireDocument):
    """The pause state of spec §6.6 (``protocol.pause.PauseState.to_json``)."""

    paused: bool
    """Whether any pause is in force."""
    certificates: list[ActivePause]
    """The pauses in force, by proposal id."""
    resumed: list[ResumedPause]
    """Pauses ended by a resume certificate, by proposal id."""
    expired: list[str]
    """Proposals whose voting deadline passed uncertified."""
    roster_version: int
    """Roster version the state was judged under."""


# --- the state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """A certificate entry that is valid for this party."""

    entry_id: str
    lab: str
    """Who published it."""
    proposal_id: str
    action: Literal["pause", "resume", "accept"]
    roster_version: int
    result: QuorumResult
    scope: Scope | None = None
    """For a pause certificate: the runs it covers (None: every run)."""


@dataclass(frozen=True)
class Proposal:
    """One proposal (several labs may publish the same deterministic id, spec §6.3)."""

    proposal_id: str
    action: Literal["pause", "resume", "accept"]
    entries: tuple[VerifiedEntry, ...]
    """Every held proposal entry with this id, in (lab, seq) order; ``entries[0]`` represents it."""
    votes: tuple[VerifiedEntry, ...]
    """Every held vote on it, in (lab, seq) order (first votes and ignored later ones)."""
    tally: QuorumResult
    """Counted first votes under the current roster (only votes a certificate under it may carry)."""
    certificates: tuple[Certificate, ...]
    """Valid certificates for it, in (roster_version, lab, entry_id) order."""
    status: ProposalStatus
    pause_proposal: str | None = None
    """For a resume proposal: the pause proposal it would end."""
    scope: Scope | None = None
    """For a pause proposal: the runs it would cover; for a resume: the narrower scope it
    leaves in force (None: a pause covers every run; a resume ends the pause)."""
    deadline: datetime | None = None
    """For a discretionary proposal under a roster with a voting deadline: when it passes."""

    @property
    def discretionary(self) -> bool:
        body = self.entry.statement.body
        return isinstance(body, PauseProposalBody) and body.discretionary

    @property
    def entry(self) -> VerifiedEntry:
        return self.entries[0]

    @property
    def certified(self) -> bool:
        return bool(self.certificates)


@dataclass(frozen=True)
class PauseState:
    """What a party concludes from the pause entries it holds (same entries, same state)."""

    proposals: Mapping[str, Proposal]
    active: Mapping[str, Certificate]
    """Pause proposal id -> the pause certificate that holds it in force (newest roster first)."""
    resumed: Mapping[str, Certificate]
    """Pause proposal id -> the resume certificate that ended it."""
    flags: tuple[Flag, ...]
    roster_version: int
    """The roster version current when the state was computed."""
    conflicts: tuple[VerifiedEntry, ...] = ()
    """Certificate votes at a seq where this party holds a different entry of the same lab:
    each, with the held entry, is an equivocation proof (§4.4) the party should record and
    share, so that every party then judges the forked feed alike."""

    narrowed: Mapping[str, Scope] = field(default_factory=dict)
    """Pause proposal id -> the narrower scope a certified resume left in force."""

    @property
    def paused(self) -> bool:
        return bool(self.active)

    def scope_of(self, pause_proposal: str) -> Scope | None:
        """The scope in force for an active pause (narrowed by a resume, or its own)."""
        if pause_proposal in self.narrowed:
            return self.narrowed[pause_proposal]
        return self.active[pause_proposal].scope

    def active_for(self, run: Run | None) -> dict[str, Certificate]:
        """The active pauses whose scope covers ``run`` now (every active pause when the
        run is not described: gates fail closed)."""
        return {pid: c for pid, c in self.active.items() if covers(self.scope_of(pid), run)}

    def open_proposals(self) -> list[Proposal]:
        return [p for p in self.proposals.values() if p.status == "open"]

    def document(self) -> PauseSection:
        """The ``pause`` section of ``GET /v1/status`` (spec §6.6, §6.10)."""
        certs = []
        for pid, c in sorted(self.active.items()):
            scope = self.scope_of(pid)
            # An unset scope stays absent on the wire (every run), not null.
            extra = {} if scope is None else {"scope": scope.model_dump(mode="json", exclude_none=True)}
            certs.append(ActivePause(proposal_id=c.proposal_id, certificate=c.entry_id, lab=c.lab,
                                     roster_version=c.roster_version, covers=describe(scope), **extra))
        resumed = []
        for pid, c in sorted(self.resumed.items()):
            extra = {} if c.scope is None else {"scope": c.scope.model_dump(mode="json", exclude_none=True)}
            resumed.append(ResumedPause(proposal_id=pid, certificate=c.entry_id, lab=c.lab,
                                        roster_version=c.roster_version, resume_proposal=c.proposal_id, **extra))
        return PauseSection(
            paused=self.paused,
            certificates=certs,
            resumed=resumed,
            expired=sorted(p.proposal_id for p in self.proposals.values() if p.status == "expired"),
            roster_version=self.roster_version,
        )

    def to_json(self) -> dict[str, Any]:
        """:meth:`document` as it goes on the wire."""
        return self.document().to_json()


def _by_position(es: Iterable[VerifiedEntry]) -> list[VerifiedEntry]:
    return sorted(es, key=lambda e: (e.lab, e.seq, e.entry_id))


def counted_votes(
    proposal_id: str, action: str, votes: Iterable[VerifiedEntry]
) -> dict[str, VerifiedEntry]:
    """lab -> that lab's first vote on the proposal (lowest ``(seq, entry_id)``, spec §6.4)."""
    first: dict[str, VerifiedEntry] = {}
    for v in votes:
        body = v.statement.body
        if not isinstance(body, VoteBody) or body.proposal_id != proposal_id or body.action != action:
            continue
        held = first.get(v.lab)
        if held is None or (v.seq, v.entry_id) < (held.seq, held.entry_id):
            first[v.lab] = v
    return first


def vote_problem(vote: VerifiedEntry, chain: RosterChain, version: int) -> str | None:
    """Why ``vote`` cannot count in a certificate under roster ``version`` (None: it can).

    The same window rules :func:`protocol.quorum.verify_certificate` applies (spec §6.5
    step 4), checked on an already verified entry, so that a certificate this party builds
    never carries a vote that would make the whole certificate invalid elsewhere.
    """
    vr = chain.get(version)
    member = vr.roster.lab(vote.lab)
    if member is None:
        return f"{vote.lab!r} is not a lab of roster v{version}"
    if not vote.signers & set(vr.lab_keys(vote.lab)):
        return f"vote is not signed by a key roster v{version} lists for {vote.lab!r}"
    if vote.roster_version > version:
        return f"vote is governed by roster v{vote.roster_version}, newer than v{version}"
    issued = parse_time(vote.statement.issued_at)
    if issued >= parse_time(vr.roster.expires):
        return f"vote was issued at {vote.statement.issued_at}, after roster v{version} expired"
    if version < len(chain.versions):
        successor = chain.versions[version]
        if issued >= parse_time(successor.roster.issued_at):
            return f"vote was issued after roster v{version} was superseded by v{successor.version}"
    return None


def certifiable_tally(
    proposal: VerifiedEntry, votes: Iterable[VerifiedEntry], chain: RosterChain, version: int
) -> QuorumResult:
    """Tally of the first votes a certificate under roster ``version`` may carry.

    A lab whose first vote cannot count under ``version`` (expired, superseded, rotated-out
    key) has no counted vote: its later votes are not promoted in its place.
    """
    action = _action_of(proposal)
    pid = proposal.statement.proposal_body().proposal_id
    first = counted_votes(pid, action, votes)
    usable = [v for v in first.values() if vote_problem(v, chain, version) is None]
    return tally(proposal, usable, chain.get(version).roster)


def _action_of(proposal: VerifiedEntry) -> Literal["pause", "resume", "accept"]:
    body = proposal.statement.body
    if isinstance(body, PauseProposalBody):
        return "pause"
    return "accept" if isinstance(body, SafetyCaseBody) else "resume"


def certificate_votes(result: QuorumResult) -> list[VerifiedEntry]:
    """The votes a certificate carries: the counted *supporting* votes only (spec §6.5)."""
    return [v for v in result.votes if v.lab in result.signed]


def pause_state(
    entries: Iterable[VerifiedEntry],
    chain: RosterChain,
    *,
    heads: Mapping[str, int] | None = None,
    held_ids: Callable[[str], bool] | None = None,
    forks: Mapping[str, int] | None = None,
    cache: CertCache | None = None,
    now: datetime | None = None,
) -> PauseState:
    """The pause state from verified entries (kinds other than :data:`PAUSE_KINDS` ignored).

    ``heads`` (lab -> highest contiguous seq held) and ``held_ids`` (is this entry id held?)
    describe the feeds this party holds; with them, a certificate vote at a seq the lab's
    feed holds but that is not the entry held there does not count (spec §6.5 step 7).
    Without them (an evidence bundle, an offline verifier) that check is limited to the
    entries passed in. ``forks`` (lab -> lowest seq of a proven fork, §4.4): votes of that
    lab at or after that seq count nowhere (not in tallies, not in certificates), so parties
    that kept different branches of a forked feed reach the same state once they hold the
    proof. ``cache`` only saves repeated certificate verification. ``now`` (the caller's
    clock) decides which discretionary proposals have ``expired``; without it none has.
    """
    fork_at: dict[str, int] = dict(forks or {})
    proposals_in: list[VerifiedEntry] = []
    votes_in: list[VerifiedEntry] = []
    certs_in: list[VerifiedEntry] = []
    for e in entries:
        if e.kind in ("pause_proposal", "resume_proposal", "safety_case"):
            proposals_in.append(e)
        elif e.kind == "vote":
            votes_in.append(e)
        elif e.kind == "pause_certificate":
            certs_in.append(e)
    current = chain.current.version
    flags: list[Flag] = []

    votes_by_pid: dict[str, list[VerifiedEntry]] = defaultdict(list)
    seen_votes: set[str] = set()
    for v in _by_position(votes_in):
        if v.entry_id in seen_votes or v.seq >= fork_at.get(v.lab, v.seq + 1):
            continue
        seen_votes.add(v.entry_id)
        body = v.statement.body
        assert isinstance(body, VoteBody)
        votes_by_pid[body.proposal_id].append(v)

    by_pid: dict[str, list[VerifiedEntry]] = defaultdict(list)
    seen_props: set[str] = set()
    for p in _by_position(proposals_in):
        if p.entry_id in seen_props:
            continue
        seen_props.add(p.entry_id)
        pbody = p.statement.body
        if isinstance(pbody, PauseProposalBody) and isinstance(pbody.trigger, DiscretionaryTrigger):
            if pbody.trigger.lab != p.lab:
                # §6.11: a lab asks for a pause on its own judgement only; one lab cannot
                # open (and start the voting clock of) a discretionary pause for another.
                flags.append(
                    Flag(
                        kind="proposer-mismatch",
                        lab=p.lab,
                        reason=f"discretionary proposal names {pbody.trigger.lab!r} as proposer but is signed by {p.lab!r}",
                        entry_id=p.entry_id,
                        proposal_id=pbody.proposal_id,
                        code="quorum",
                    )
                )
                continue
        by_pid[p.statement.proposal_body().proposal_id].append(p)

    def deadline_of(proposal: VerifiedEntry) -> datetime | None:
        return voting_deadline(proposal, chain)

    def late(v: VerifiedEntry, deadline: datetime | None) -> bool:
        return deadline is not None and parse_time(v.statement.issued_at) > deadline

    for pid, vs in sorted(votes_by_pid.items()):
        per_lab: dict[str, list[VerifiedEntry]] = defaultdict(list)
        for v in vs:
            per_lab[v.lab].append(v)
        for lab, lvs in sorted(per_lab.items()):
            if len(lvs) > 1:
                flags.append(
                    Flag(
                        kind="double-vote",
                        lab=lab,
                        reason=f"{lab!r} voted {len(lvs)} times on {pid[:16]}…; only its first vote counts",
                        entry_id=lvs[1].entry_id,
                        proposal_id=pid,
                        counted=lvs[0].entry_id,
                        ignored=tuple(v.entry_id for v in lvs[1:]),
                        decisions=tuple(v.statement.body_as(VoteBody).decision for v in lvs),
                    )
                )

    held_vote_ids = {v.entry_id for v in votes_in}

    def is_held(entry_id: str) -> bool:
        return entry_id in held_vote_ids or (held_ids is not None and held_ids(entry_id))

    def context_for(pid: str, action: str) -> CertificateContext:
        first = counted_votes(pid, action, votes_by_pid.get(pid, ()))
        return CertificateContext(
            first_votes={lab: (v.seq, v.entry_id) for lab, v in first.items()},
            heads=heads or {},
            is_held=is_held,
            forks=fork_at,
        )

    valid: dict[str, list[Certificate]] = defaultdict(list)
    embedded: dict[str, VerifiedEntry] = {}
    conflicts: dict[str, VerifiedEntry] = {}
    for c in _by_position({e.entry_id: e for e in certs_in}.values()):
        body = c.statement.body
        assert isinstance(body, PauseCertificateBody)
        key = (c.entry_id, len(chain.versions))
        parts = cache.get(key) if cache is not None else None
        if parts is None:
            try:
                parts = certificate_parts(body, chain)
            except PeerDataError as e:
                parts = e
            except TripwireError as e:  # never let one certificate stop the state machine
                parts = PeerDataError(e.message, code=e.code)
            if cache is not None:
                cache[key] = parts
        err: PeerDataError | None = parts if isinstance(parts, PeerDataError) else None
        result: QuorumResult | None = None
        if isinstance(parts, CertificateParts):
            for v in parts.votes:
                if v.seq <= (heads or {}).get(v.lab, 0) and not is_held(v.entry_id) and v.seq < fork_at.get(v.lab, v.seq + 1):
                    conflicts.setdefault(v.entry_id, v)
            try:
                result = count_certificate(parts, chain, context_for(body.proposal_id, body.action))
            except PeerDataError as e:
                err = e
        if err is not None or result is None:
            assert err is not None
            flags.append(
                Flag(
                    kind="invalid-certificate",
                    lab=c.lab,
                    reason=err.message,
                    entry_id=c.entry_id,
                    proposal_id=body.proposal_id,
                    code=err.code,
                )
            )
            continue
        assert isinstance(parts, CertificateParts)
        prop_entry = by_pid[body.proposal_id][0] if by_pid.get(body.proposal_id) else parts.proposal
        dl = deadline_of(prop_entry)
        late_votes = [v for v in certificate_votes(result) if late(v, dl)]
        if late_votes:
            flags.append(
                Flag(
                    kind="invalid-certificate",
                    lab=c.lab,
                    reason=f"certificate carries {len(late_votes)} vote(s) issued after the voting deadline {dl}",
                    entry_id=c.entry_id,
                    proposal_id=body.proposal_id,
                    code="quorum",
                )
            )
            continue
        pbody = prop_entry.statement.body
        valid[body.proposal_id].append(
            Certificate(
                c.entry_id,
                c.lab,
                body.proposal_id,
                body.action,
                body.roster_version,
                result,
                pbody.scope if isinstance(pbody, PauseProposalBody) else None,
            )
        )
        if body.proposal_id not in by_pid:
            # The certificate carries the signed proposal: a party that never received
            # the proposal entry itself still learns the proposal from the certificate.
            embedded.setdefault(body.proposal_id, parts.proposal)
    for pid, p in embedded.items():
        by_pid.setdefault(pid, [p])

    for certs in valid.values():
        certs.sort(key=lambda c: (c.roster_version, c.lab, c.entry_id))

    # Pause certificates, then the resume certificates that end them.
    pause_version: dict[str, int] = {}
    for pid, certs in valid.items():
        if certs[0].action == "pause":
            pause_version[pid] = max(c.roster_version for c in certs)
    resumed: dict[str, Certificate] = {}
    narrowings: dict[str, list[tuple[int, str, Scope]]] = defaultdict(list)
    for pid, certs in sorted(valid.items()):
        if certs[0].action != "resume":
            continue
        inner = by_pid[pid][0].statement.body
        assert isinstance(inner, ResumeProposalBody)
        target = inner.pause_proposal
        needed = pause_version.get(target)
        ok = [c for c in certs if needed is None or c.roster_version >= needed]
        if inner.scope is not None:
            tbody = by_pid[target][0].statement.body if by_pid.get(target) else None
            own = tbody.scope if isinstance(tbody, PauseProposalBody) else None
            if not inner.scope.narrows(own):
                flags.append(
                    Flag(
                        kind="scope-widened",
                        lab=certs[0].lab,
                        reason=f"resume would leave {describe(inner.scope)} paused, which is not inside the pause's "
                        f"scope ({describe(own)}); a resume may only narrow a scope",
                        entry_id=certs[0].entry_id,
                        proposal_id=pid,
                        code="quorum",
                    )
                )
                continue
            if ok:
                narrowings[target].append((ok[0].roster_version, ok[0].entry_id, inner.scope))
            continue
        for old in certs:
            if old.roster_version < (needed or 0):
                flags.append(
                    Flag(
                        kind="resume-roster-too-old",
                        lab=old.lab,
                        reason=f"resume certificate is under roster v{old.roster_version}; the pause it would end "
                        f"was certified under v{needed}, so its resume needs a roster at least that new",
                        entry_id=old.entry_id,
                        proposal_id=pid,
                        code="quorum",
                    )
                )
        if ok:
            held = resumed.get(target)
            if held is None or (ok[0].roster_version, ok[0].entry_id) < (held.roster_version, held.entry_id):
                resumed[target] = ok[0]
    active: dict[str, Certificate] = {}
    for pid, certs in valid.items():
        if certs[0].action == "pause" and pid not in resumed:
            active[pid] = certs[-1]
    narrowed: dict[str, Scope] = {}
    for target, ns in narrowings.items():
        if target not in active:
            continue
        # Each certified narrowing that narrows what is in force applies, in a fixed order,
        # so the scope left is the same whatever order the certificates arrived in.
        cur: Scope | None = active[target].scope
        for _, _, sc in sorted(ns, key=lambda n: (n[0], n[1])):
            if sc.narrows(cur):
                cur = sc
        if cur is not None and cur != active[target].scope:
            narrowed[target] = cur

    proposals: dict[str, Proposal] = {}
    for pid, ps in by_pid.items():
        body = ps[0].statement.body
        action = _action_of(ps[0])
        dl = deadline_of(ps[0])
        on_it = tuple(v for v in votes_by_pid.get(pid, ()) if v.statement.body_as(VoteBody).action == action)
        for v in on_it:
            if late(v, dl):
                flags.append(
                    Flag(
                        kind="late-vote",
                        lab=v.lab,
                        reason=f"{v.lab!r} voted at {v.statement.issued_at}, after the voting deadline {dl}; it does not count",
                        entry_id=v.entry_id,
                        proposal_id=pid,
                    )
                )
        t = certifiable_tally(ps[0], [v for v in on_it if not late(v, dl)], chain, current)
        held_certs = tuple(valid.get(pid, ()))
        status: ProposalStatus
        if action == "pause":
            status = "resumed" if pid in resumed else "paused" if held_certs else "open"
            if status == "open" and dl is not None and now is not None and now > dl:
                status = "expired"
        else:
            status = "certified" if held_certs else "open"
        pause_pid = body.pause_proposal if isinstance(body, ResumeProposalBody) else None
        scope = body.scope if isinstance(body, (PauseProposalBody, ResumeProposalBody)) else None
        proposals[pid] = Proposal(pid, action, tuple(ps), on_it, t, held_certs, status, pause_pid, scope, dl)

    return PauseState(
        proposals=dict(sorted(proposals.items())),
        active=active,
        resumed=resumed,
        flags=tuple(flags),
        roster_version=current,
        conflicts=tuple(conflicts[k] for k in sorted(conflicts)),
        narrowed=narrowed,
    )


def voting_deadline(proposal: VerifiedEntry, chain: RosterChain) -> datetime | None:
    """When voting on ``proposal`` closes (spec §6.11): for a discretionary pause under a
    roster with ``vote_deadline_s``, that many seconds after the proposer's entry was
    issued (its feed position fixes that time: feeds refuse future-dated and out-of-order
    ``issued_at``); None otherwise."""
    body = proposal.statement.body
    if not isinstance(body, PauseProposalBody) or not body.discretionary:
        return None
    version = min(max(proposal.roster_version, 1), len(chain.versions))
    seconds = chain.get(version).roster.quorum.vote_deadline_s
    if seconds is None:
        return None
    return parse_time(proposal.statement.issued_at) + timedelta(seconds=seconds)


__all__ = [
    "PAUSE_KINDS",
    "AnalysisFlagKind",
    "CertCache",
    "Certificate",
    "Flag",
    "PauseState",
    "Proposal",
    "certifiable_tally",
    "certificate_votes",
    "counted_votes",
    "pause_state",
    "vote_problem",
    "voting_deadline",
]
