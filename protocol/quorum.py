"""Weighted quorum tallies and certificates (spec §6.5).

:func:`tally` returns data (:class:`QuorumResult`: threshold, signed, missing, bool);
:meth:`QuorumResult.verify` and :func:`verify_certificate` raise. An empty voter set
never passes. A certificate is checkable by anyone holding the roster chain, offline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol.canonical import parse_time
from protocol.entries import (
    PauseCertificateBody,
    PauseProposalBody,
    ResumeProposalBody,
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
    raise QuorumError(f"entry {proposal.entry_id[:16]}… is a {proposal.kind}, not a proposal")


def tally(proposal: VerifiedEntry, votes: Iterable[VerifiedEntry], roster: Roster) -> QuorumResult:
    """Count votes on ``proposal`` under ``roster``'s weights and quorum.

    Each lab counts once: its vote with the lowest seq (votes are final; a later,
    different vote by the same lab is ignored here and is evidence of misbehaviour).
    Votes on other proposals are ignored.
    """
    action, pid = proposal_action(proposal)
    threshold = roster.quorum.pause.weight if action == "pause" else roster.quorum.resume.weight
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
    weight = 0
    for lab, v in first.items():
        decision = v.statement.body.decision  # type: ignore[union-attr]
        if decision == action:
            signed.add(lab)
            weight += roster.lab(lab).weight  # type: ignore[union-attr]
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


def verify_certificate(body: PauseCertificateBody, chain: RosterChain) -> QuorumResult:
    """Verify a pause/resume certificate offline from the roster chain; raise on failure.

    Steps (spec §6.5): the roster version it names is held; the proposal entry verifies
    and is the named proposal of the named action; every vote verifies under that roster
    version (observers' and strangers' votes are refused); the supporting weight reaches
    the quorum.
    """
    try:
        vr = chain.get(body.roster_version)
    except RosterVersionError as e:
        raise QuorumError(f"certificate names roster v{body.roster_version}, which is not held") from e
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
    result = tally(proposal, votes, vr.roster)
    result.verify()
    return result
