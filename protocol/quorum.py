"""Weighted quorum tallies and certificates (spec §6.5).

:func:`tally` returns data (:class:`QuorumResult`: threshold, signed, missing, bool);
:meth:`QuorumResult.verify` and :func:`verify_certificate` raise. An empty voter set
never passes. A certificate is checkable by anyone holding the roster chain, offline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from protocol.canonical import parse_time
from protocol.entries import (
    PauseCertificateBody,
    PauseProposalBody,
    ResumeProposalBody,
    SafetyCaseBody,
    VerifiedEntry,
    VoteBody,
)
from protocol.errors import (
    EquivocationError,
    InsufficientQuorumError,
    QuorumError,
    RosterExpiredError,
    RosterVersionError,
)
from protocol.feed import EquivocationProof
from protocol.roster import Roster, RosterChain, verify_entry


@dataclass(frozen=True)
class QuorumResult:
    proposal_id: str
    action: str
    threshold: int
    """Required supporting weight."""
    weight: int
    """Supporting weight counted."""
    signed: frozenset[str]
    """Labs whose counted vote supports the proposal."""
    objected: frozenset[str]
    abstained: frozenset[str]
    missing: frozenset[str]
    """Labs with no counted vote."""
    votes: tuple[VerifiedEntry, ...]
    """The counted votes, one per lab, in lab order."""

    def __bool__(self) -> bool:
        return bool(self.signed) and self.threshold > 0 and self.weight >= self.threshold

    def verify(self) -> None:
        if not self:
            raise InsufficientQuorumError(
                f"{self.action} proposal {self.proposal_id[:16]}… has weight {self.weight} of "
                f"{self.threshold} required (supporting: {', '.join(sorted(self.signed)) or 'none'})"
            )


def proposal_action(proposal: VerifiedEntry) -> tuple[str, str]:
    body = proposal.statement.body
    if isinstance(body, PauseProposalBody):
        return "pause", body.proposal_id
    if isinstance(body, ResumeProposalBody):
        return "resume", body.proposal_id
    if isinstance(body, SafetyCaseBody):
        return "accept", body.proposal_id
    raise QuorumError(f"entry {proposal.entry_id[:16]}… is a {proposal.kind}, not a proposal")


def quorum_weight(proposal: VerifiedEntry, roster: Roster) -> int:
    """The supporting weight ``proposal`` needs under ``roster``: the resume quorum for a
    resume, the discretionary quorum (when the roster sets one) for a pause a lab asked for
    on its own judgement (spec §6.11), the safety-case quorum (when set) for a safety case
    (§6.12), else the pause quorum."""
    body = proposal.statement.body
    if isinstance(body, ResumeProposalBody):
        return roster.quorum.resume.weight
    if isinstance(body, SafetyCaseBody):
        rule = roster.quorum.safety_case or roster.quorum.pause
        return rule.weight
    if isinstance(body, PauseProposalBody) and body.discretionary and roster.quorum.discretionary is not None:
        return roster.quorum.discretionary.weight
    return roster.quorum.pause.weight


def tally(proposal: VerifiedEntry, votes: Iterable[VerifiedEntry], roster: Roster) -> QuorumResult:
    """Count votes on ``proposal`` under ``roster``'s weights and quorum.

    Each lab counts once: its vote with the lowest seq (votes are final; a later,
    different vote by the same lab is ignored here and is evidence of misbehaviour).
    Votes on other proposals are ignored.
    """
    action, pid = proposal_action(proposal)
    threshold = quorum_weight(proposal, roster)
    first: dict[str, VerifiedEntry] = {}
    for v in votes:
        body = v.statement.body
        if not isinstance(body, VoteBody) or body.proposal_id != pid or body.action != action:
            continue
        if roster.lab(v.lab) is None:
            continue
        # Lowest (seq, entry_id) wins, so every node picks the same vote whatever the
        # delivery order (two votes at one seq are an equivocation, refused elsewhere).
        held = first.get(v.lab)
        if held is None or (v.seq, v.entry_id) < (held.seq, held.entry_id):
            first[v.lab] = v
    signed, objected, abstained = set(), set(), set()
    weights = {m.id: m.weight for m in roster.labs}
    weight = 0
    for lab, v in first.items():
        decision = v.statement.body_as(VoteBody).decision
        if decision == action:
            signed.add(lab)
            weight += weights[lab]
        elif decision == "object":
            objected.add(lab)
        else:
            abstained.add(lab)
    missing = {m.id for m in roster.labs} - set(first)
    return QuorumResult(
        proposal_id=pid,
        action=action,
        threshold=threshold,
        weight=weight,
        signed=frozenset(signed),
        objected=frozenset(objected),
        abstained=frozenset(abstained),
        missing=frozenset(missing),
        votes=tuple(first[k] for k in sorted(first)),
    )


@dataclass(frozen=True)
class CertificateParts:
    """A certificate whose signatures and roster windows verified (the costly part)."""

    proposal: VerifiedEntry
    votes: tuple[VerifiedEntry, ...]
    roster_version: int


@dataclass(frozen=True)
class CertificateContext:
    """What a party holding the feeds knows beyond the certificate (spec §6.5 step 7).

    ``first_votes``: lab -> (seq, entry_id) of the lab's first vote on the proposal that
    this party holds; ``heads``: lab -> highest contiguous seq held; ``is_held``: whether
    an entry id is held. A certificate vote that is not its lab's first vote, or that sits
    at a seq the lab's feed holds with another entry (a vote never published in the feed),
    does not count; nor does any vote at or after a seq where the lab's feed is proven
    forked (§4.4), so every party that holds the proof judges both branches alike.
    """

    first_votes: Mapping[str, tuple[int, str]]
    heads: Mapping[str, int]
    is_held: Callable[[str], bool]
    forks: Mapping[str, int] = field(default_factory=dict)
    """lab -> the lowest seq at which this party holds a proof that the lab's feed forked."""

    def excluded(self, vote: VerifiedEntry) -> str | None:
        """Why ``vote`` does not count in this context (None: it counts)."""
        fork = self.forks.get(vote.lab)
        if fork is not None and vote.seq >= fork:
            return (
                f"vote {vote.entry_id[:16]}… of {vote.lab!r} (seq {vote.seq}) is at or after the proven fork "
                f"of its feed at seq {fork}: no entry there is the lab's one history"
            )
        first = self.first_votes.get(vote.lab)
        if first is not None and first < (vote.seq, vote.entry_id):
            return (
                f"vote {vote.entry_id[:16]}… of {vote.lab!r} (seq {vote.seq}) is not its first vote "
                f"on the proposal (that is seq {first[0]})"
            )
        if vote.seq <= self.heads.get(vote.lab, 0) and not self.is_held(vote.entry_id):
            return (
                f"vote {vote.entry_id[:16]}… of {vote.lab!r} claims seq {vote.seq}, where the lab's feed "
                "holds another entry: it was never published (a fork)"
            )
        return None


def certificate_parts(body: PauseCertificateBody, chain: RosterChain) -> CertificateParts:
    """Verify a certificate's proposal and votes against the roster chain; raise on failure.

    Steps 1–5 of spec §6.5: the roster version it names is held; the proposal entry
    verifies and is the named proposal of the named action; every vote verifies under that
    roster version (observers' and strangers' votes are refused) within its window; no two
    votes of one lab at one seq differ.
    """
    try:
        vr = chain.get(body.roster_version)
    except RosterVersionError as e:
        raise QuorumError(f"certificate names roster v{body.roster_version}, which is not held") from e
    # A certificate carries at most one counted vote per lab (§6.5): more votes than the
    # version has labs cannot all count, and refusing before any signature check keeps a
    # flood of padded certificates from costing a verifier one check per padding vote.
    if len(body.votes) > len(vr.roster.labs):
        raise QuorumError(
            f"certificate carries {len(body.votes)} votes; roster v{vr.version} has {len(vr.roster.labs)} labs "
            "and a certificate carries at most one counted vote per lab"
        )
    proposal = verify_entry(body.proposal, chain, roster_version=vr.version)
    action, pid = proposal_action(proposal)
    if action != body.action or pid != body.proposal_id:
        raise QuorumError("certificate's proposal does not match its proposal_id/action")
    votes = [verify_entry(v, chain, roster_version=vr.version) for v in body.votes]
    successor = chain.versions[vr.version] if vr.version < len(chain.versions) else None
    expires = parse_time(vr.roster.expires)
    by_seq: dict[tuple[str, int], VerifiedEntry] = {}
    for v in votes:
        if v.kind != "vote":
            raise QuorumError(f"certificate vote {v.entry_id[:16]}… is a {v.kind}, not a vote")
        issued = parse_time(v.statement.issued_at)
        # spec §7.5: an expired roster accepts no new votes.
        if issued >= expires:
            raise RosterExpiredError(
                f"vote {v.entry_id[:16]}… of {v.lab!r} was issued at {v.statement.issued_at}, "
                f"after roster v{vr.version} expired at {vr.roster.expires}"
            )
        # spec §7.4: once version N+1 is issued, version N's keys sign no new votes (a key
        # rotated out after a compromise must not keep counting).
        if successor is not None and issued >= parse_time(successor.roster.issued_at):
            raise QuorumError(
                f"vote {v.entry_id[:16]}… of {v.lab!r} was issued at {v.statement.issued_at}, after "
                f"roster v{vr.version} was superseded by v{successor.version} at {successor.roster.issued_at}"
            )
        other = by_seq.setdefault((v.lab, v.seq), v)
        if other.entry_id != v.entry_id:
            raise EquivocationError(
                f"certificate holds two different entries of lab {v.lab!r} at seq {v.seq}",
                proof=EquivocationProof.of(other, v),
            )
    return CertificateParts(proposal, tuple(votes), vr.version)


def count_certificate(
    parts: CertificateParts, chain: RosterChain, context: CertificateContext | None = None
) -> QuorumResult:
    """Step 6 (and 7 with a context) of spec §6.5: tally the first votes; raise unless it passes."""
    votes: Iterable[VerifiedEntry] = parts.votes
    dropped: list[str] = []
    if context is not None:
        kept = []
        for v in parts.votes:
            why = context.excluded(v)
            if why is None:
                kept.append(v)
            else:
                dropped.append(why)
        votes = kept
    result = tally(parts.proposal, votes, chain.get(parts.roster_version).roster)
    if not result:
        why = f" ({'; '.join(dropped)})" if dropped else ""
        raise InsufficientQuorumError(
            f"{result.action} proposal {result.proposal_id[:16]}… has weight {result.weight} of "
            f"{result.threshold} required under roster v{parts.roster_version} "
            f"(supporting: {', '.join(sorted(result.signed)) or 'none'}){why}"
        )
    return result


def verify_certificate(
    body: PauseCertificateBody, chain: RosterChain, *, context: CertificateContext | None = None
) -> QuorumResult:
    """Verify a pause/resume certificate from the roster chain (offline without ``context``);
    raise on failure. See :func:`certificate_parts` and :func:`count_certificate`."""
    return count_certificate(certificate_parts(body, chain), chain, context)
