"""Evidence bundles: everything a report cites, checkable offline (specs/evidence.md).

:func:`build_bundle` packs the roster chain, the cited entries (a contiguous run of each
lab's feed), equivocation proofs, a signed checkpoint of the node's log with an
inclusion proof per entry, the policy document the roster pins, and the report's claims.
:func:`verify_bundle` checks all of it and returns a :class:`VerificationReport`; only a
report that passes carries a :class:`VerifiedBundle`, the renderer's only input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from protocol.canonical import (
    TIME_RE,
    canonical_bytes,
    format_time,
    parse_canonical,
    parse_json_strict,
    parse_time,
    utcnow,
)
from protocol.entries import PauseCertificateBody, VerifiedEntry
from protocol.envelope import Envelope, sign_payload, verify_signatures
from protocol.errors import PeerDataError, TripwireError
from protocol.feed import EquivocationProof
from protocol.keys import SigningKey
from protocol.merkle import (
    Checkpoint,
    leaf_hash,
    log_leaf,
    node_hash,
    root_from_hashes,
    verify_checkpoint,
    verify_inclusion,
)
from protocol.pause import pause_state
from protocol.policy import Policy
from protocol.quorum import QuorumResult, verify_certificate
from protocol.roster import RosterChain, _trusted_for, verify_entry, verify_genesis
from reports.analysis import Analysis, analyse
from reports.claims import ClaimIndex, Claims, check_claims, derive_claims
from reports.errors import EvidenceError

FORMAT: Final = "tripwire-evidence/1"
#: Largest bundle file accepted by :func:`load_bundle` (a 10-lab x 1,000-result bundle is ~30 MB).
MAX_BUNDLE_BYTES = 512 * 1024 * 1024

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
LabId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
Timestamp = Annotated[
    str, StringConstraints(pattern=TIME_RE.pattern, max_length=40)
]
Audience = Literal["public", "regulator"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class InclusionProof(_Model):
    """RFC 9162 inclusion proof of one entry in the checkpointed log."""

    entry: Hex64
    index: Annotated[int, Field(ge=0, le=2**53 - 1)]
    """Position of the entry in the node's log (0-based)."""
    path: Annotated[list[Hex64], Field(max_length=64)]
    """Audit path, leaf to root, lowercase hex."""


HEADS_FORMAT: Final = "tripwire-evidence-heads/1"
#: DSSE payloadType of the node's signed statement of the feeds a bundle holds (spec §3.1).
HEADS_PAYLOAD_TYPE = "application/vnd.tripwire.evidence-heads.v1+json"


class FeedRun(_Model):
    """One lab's run of entries in the bundle, as the producing node states it."""

    lab: LabId
    first: Annotated[int, Field(ge=0, le=2**53 - 1)]
    """Seq of the lab's first entry in the bundle (0: the node's log holds none of the lab's)."""
    head: Annotated[int, Field(ge=0, le=2**53 - 1)]
    """Seq of the lab's last entry in the checkpointed log: the run ends here."""
    head_entry: Hex64 | None = None
    """entry_id of the head entry (absent when ``head`` is 0)."""


class HeadsStatement(_Model):
    """The node's signed statement of what the bundle holds of each lab's feed (spec §3.1).

    Signed with the same key as the checkpoint: "my log of ``log_size`` entries holds lab
    L's feed up to seq ``head``, and this bundle carries every entry from ``first`` to it".
    A bundle cut after signing no longer matches it; a node that signs a false head has
    signed a provable lie (its own log, checkpointed, says otherwise).
    """

    format: Literal["tripwire-evidence-heads/1"]
    network: Hex64
    node: LabId
    log_size: Annotated[int, Field(ge=0, le=2**53 - 1)]
    log_root: Hex64
    since: Timestamp | None = None
    """The bundle's ``since`` (absent: every run starts at seq 1)."""
    issued_at: Timestamp
    """Equals the bundle's ``generated_at``: the state the report shows is as of this time."""
    feeds: Annotated[list[FeedRun], Field(max_length=100_000)]
    """One run per lab of every roster version, sorted by lab id."""

    def to_payload(self) -> bytes:
        return canonical_bytes(self.model_dump(mode="json", exclude_none=True))


def sign_heads(statement: HeadsStatement, key: SigningKey) -> Envelope:
    """Sign a heads statement with the node's roster key (the checkpoint's signer)."""
    return sign_payload(statement.to_payload(), HEADS_PAYLOAD_TYPE, [key])


def verify_heads(envelope: Envelope, chain: RosterChain) -> HeadsStatement:
    """Decode and check the signature of a heads statement; raise :class:`EvidenceError`."""
    if envelope.payloadType != HEADS_PAYLOAD_TYPE:
        raise EvidenceError(f"heads payloadType {envelope.payloadType!r} is not {HEADS_PAYLOAD_TYPE!r}")
    payload = envelope.payload_bytes()
    try:
        st = HeadsStatement.model_validate(parse_canonical(payload))
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "statement"
        raise EvidenceError(f"heads statement field {loc}: {first['msg']}") from e
    if st.network != chain.network_id:
        raise EvidenceError("heads statement names another network")
    # Same key rule as the checkpoint (a rotated-out key still proves what it signed then).
    for vr in _trusted_for(chain, st.node, st.issued_at, None):
        keys = vr.lab_keys(st.node)
        if keys and verify_signatures(envelope, payload, keys):
            return st
    raise EvidenceError(f"heads statement signature does not verify under lab {st.node!r}'s roster key")


def _ranges(seqs: Sequence[int]) -> str:
    """``3, 5–9`` for sorted seqs."""
    out: list[str] = []
    i = 0
    while i < len(seqs):
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] == seqs[j] + 1:
            j += 1
        out.append(str(seqs[i]) if i == j else f"{seqs[i]}–{seqs[j]}")
        i = j + 1
    if len(out) > 10:
        out = [*out[:10], f"… ({len(seqs)} in all)"]
    return ", ".join(out)


class EvidenceBundle(_Model):
    """The evidence.json document (specs/evidence.md §2)."""

    format: Literal["tripwire-evidence/1"]
    generated_at: Timestamp
    network: Hex64
    """Network id (genesis roster id)."""
    node: LabId
    """The node that produced the bundle and signed the checkpoint."""
    audience: Audience
    since: Timestamp | None = None
    """Events before this time were left out of the report (the feeds may still start earlier)."""
    roster_chain: Annotated[list[Envelope], Field(min_length=1, max_length=10_000)]
    """Every roster version, genesis first."""
    policy: dict[str, Any]
    """The threshold policy document whose digest the current roster pins."""
    entries: Annotated[list[Envelope], Field(max_length=5_000_000)]
    """Cited feed entries: for each lab a contiguous run of its feed, in seq order."""
    equivocations: list[EquivocationProof] = []
    checkpoint: Envelope
    """Signed checkpoint of the node's log; every entry is proven included in it."""
    heads: Envelope
    """The node's signed statement of each lab's run: first seq and head (spec §3.1)."""
    proofs: list[InclusionProof]
    """One inclusion proof per entry, in the order of ``entries``."""
    claims: Claims

    def to_json_bytes(self) -> bytes:
        # Indented for people who open it; verification never depends on bundle formatting.
        return json.dumps(self.model_dump(mode="json"), indent=1, ensure_ascii=False).encode("utf-8") + b"\n"


def evidence_json_schema() -> dict[str, Any]:
    """JSON Schema of evidence.json (published as specs/schemas/evidence.schema.json)."""
    schema: dict[str, Any] = EvidenceBundle.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://tripwire.invalid/schemas/evidence.schema.json"
    return schema


def parse_bundle(obj: Any) -> EvidenceBundle:
    """Validate a parsed JSON value as a bundle, raising :class:`EvidenceError`."""
    if not isinstance(obj, dict):
        raise EvidenceError("an evidence bundle must be a JSON object")
    if obj.get("format") != FORMAT:
        raise EvidenceError(
            f"not a Tripwire evidence bundle: format is {obj.get('format')!r}, expected {FORMAT!r}"
        )
    try:
        return EvidenceBundle.model_validate(obj)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "bundle"
        raise EvidenceError(f"evidence bundle field {loc}: {first['msg']}") from e


def load_bundle(path: str | Path) -> EvidenceBundle:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise EvidenceError(f"cannot read evidence bundle {p}: {e.strerror}") from e
    try:
        obj = parse_json_strict(data, max_bytes=MAX_BUNDLE_BYTES)
    except PeerDataError as e:
        raise EvidenceError(f"{p} is not valid JSON: {e.message}") from e
    return parse_bundle(obj)


# --- log proofs --------------------------------------------------------------------------


class LogProver:
    """All inclusion proofs of one log in O(n) setup and O(log n) per proof.

    Pairing nodes left to right and promoting an odd last node builds exactly the RFC 9162
    tree (see :func:`protocol.merkle.root_from_hashes`), so an audit path is the sibling at
    each level that has one. ``Store.inclusion_proof`` recomputes subtrees per call, which
    is too slow for bundles citing thousands of entries.
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.size = len(leaf_hashes)
        self.levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(self.levels[-1]) > 1:
            cur = self.levels[-1]
            nxt = [node_hash(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
            if len(cur) % 2:
                nxt.append(cur[-1])
            self.levels.append(nxt)

    @classmethod
    def of_entries(cls, entry_ids: Sequence[str]) -> LogProver:
        return cls([leaf_hash(log_leaf(e)) for e in entry_ids])

    @property
    def root(self) -> bytes:
        return root_from_hashes(self.levels[0]) if self.size == 0 else self.levels[-1][0]

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} out of range for tree size {self.size}")
        path: list[bytes] = []
        i = index
        for level in self.levels[:-1]:
            sib = i ^ 1
            if sib < len(level):
                path.append(level[sib])
            i >>= 1
        return path


# --- building ----------------------------------------------------------------------------


def select_entries(
    entries: Sequence[VerifiedEntry], since: datetime | None = None, chain: RosterChain | None = None
) -> list[VerifiedEntry]:
    """The entries a report cites: per lab, a contiguous run of its feed up to its head (spec §3).

    ``entries`` is the node's whole checkpointed log. Without ``since`` every run starts
    at the lab's first entry. With ``since``, a run starts at the lab's last entry issued
    before ``since`` (so a verifier sees that nothing of the window is missing), or its
    head when it published nothing since; runs are then pulled earlier until they hold
    what the state as of now rests on (with ``chain``: every entry of the proposals that
    are open or hold a pause in force, and the latest result of every lineage) and every
    result or proposal that a cited entry refers to.
    """
    by_lab: dict[str, list[VerifiedEntry]] = {}
    by_id: dict[str, VerifiedEntry] = {}
    for e in entries:
        by_lab.setdefault(e.lab, []).append(e)
        by_id[e.entry_id] = e
    for feed in by_lab.values():
        feed.sort(key=lambda e: e.seq)
    start: dict[str, int] = {}
    for lab, feed in by_lab.items():
        if since is None:
            start[lab] = feed[0].seq
            continue
        later = next((i for i, e in enumerate(feed) if parse_time(e.statement.issued_at) >= since), None)
        start[lab] = feed[-1].seq if later is None else feed[max(later - 1, 0)].seq

    def need(eid: str) -> None:
        target = by_id.get(eid)
        if target is not None and target.seq < start[target.lab]:
            start[target.lab] = target.seq

    if since is not None:
        # The status is the network's state now, whatever the window: bring in what proves it.
        latest: dict[tuple[str, str], VerifiedEntry] = {}
        for e in entries:
            model_name = getattr(getattr(e.statement.body, "model", None), "name", None)
            if e.kind == "eval_result" and isinstance(model_name, str):
                key = (e.lab, model_name)
                if key not in latest or latest[key].seq < e.seq:
                    latest[key] = e
        for e in latest.values():
            need(e.entry_id)
        if chain is not None:
            state = pause_state(entries, chain)
            live = {pid for pid, p in state.proposals.items() if p.status in ("open", "paused")}
            for pid, p in state.proposals.items():
                if pid in live or p.pause_proposal in live:
                    for x in (*p.entries, *p.votes):
                        need(x.entry_id)
                    for c in p.certificates:
                        need(c.entry_id)
    # Follow references from cited entries to earlier entries until nothing changes.
    proposals: dict[str, str] = {}
    for e in entries:
        pid_any = getattr(e.statement.body, "proposal_id", None)
        if e.kind in ("pause_proposal", "resume_proposal") and isinstance(pid_any, str):
            pid = pid_any
            proposals.setdefault(pid, e.entry_id)
    changed = True
    while changed:
        changed = False
        for lab, feed in by_lab.items():
            for e in feed:
                if e.seq < start[lab]:
                    continue
                for ref in _references(e, proposals):
                    target = by_id.get(ref)
                    if target is not None and target.seq < start[target.lab]:
                        start[target.lab] = target.seq
                        changed = True
    out: list[VerifiedEntry] = []
    for lab in sorted(by_lab):
        out.extend(e for e in by_lab[lab] if e.seq >= start[lab])
    return out


def _references(e: VerifiedEntry, proposals: Mapping[str, str]) -> list[str]:
    """Entry ids that ``e`` refers to (results behind alerts and proposals, proposals behind votes)."""
    from protocol.entries import (
        AlertBody,
        DiscretionaryTrigger,
        PauseProposalBody,
        ResumeProposalBody,
        VoteBody,
    )

    body = e.statement.body
    if isinstance(body, AlertBody):
        return [body.result]
    if isinstance(body, PauseProposalBody):
        # A discretionary pause cites documents by digest, not entries.
        return [] if isinstance(body.trigger, DiscretionaryTrigger) else [body.trigger.result]
    if isinstance(body, VoteBody | PauseCertificateBody):
        return [proposals[body.proposal_id]] if body.proposal_id in proposals else []
    if isinstance(body, ResumeProposalBody):
        return [proposals[body.pause_proposal]] if body.pause_proposal in proposals else []
    return []


ProofSource = Callable[[str], tuple[int, int, Sequence[str]]]


def build_bundle(
    *,
    roster_chain: RosterChain,
    entries: Sequence[VerifiedEntry],
    equivocations: Sequence[EquivocationProof],
    checkpoint: Envelope,
    proofs: Mapping[str, tuple[int, int, Sequence[str]]] | ProofSource,
    policy: Policy,
    node: str,
    key: SigningKey,
    audience: Audience = "public",
    since: datetime | None = None,
    generated_at: datetime | None = None,
) -> EvidenceBundle:
    """Assemble a bundle and its claims; the result still has to pass :func:`verify_bundle`.

    ``entries`` are the cited entries (see :func:`select_entries`: each lab's run ends at
    its head in the checkpointed log); ``proofs`` maps an entry_id to ``(index, size, path
    hex)`` against ``checkpoint`` (or is a callable doing so, e.g. ``store.inclusion_proof``).
    ``key`` is the node's signing key (the checkpoint's signer): it signs the heads statement.
    """
    ordered = sorted(entries, key=lambda e: (e.lab, e.seq))
    cp = verify_checkpoint(checkpoint, roster_chain)
    when = format_time(generated_at or utcnow())
    runs: dict[str, FeedRun] = {}
    for e in ordered:
        old = runs.get(e.lab)
        runs[e.lab] = FeedRun(lab=e.lab, first=old.first if old else e.seq, head=e.seq, head_entry=e.entry_id)
    for vr in roster_chain.versions:
        for lab in vr.roster.labs:
            runs.setdefault(lab.id, FeedRun(lab=lab.id, first=0, head=0))
    heads = sign_heads(
        HeadsStatement(
            format=HEADS_FORMAT,
            network=roster_chain.network_id,
            node=node,
            log_size=cp.size,
            log_root=cp.root,
            since=format_time(since) if since else None,
            issued_at=when,
            feeds=[runs[lab] for lab in sorted(runs)],
        ),
        key,
    )
    get = proofs if callable(proofs) else proofs.__getitem__
    inclusion: list[InclusionProof] = []
    for e in ordered:
        index, size, path = get(e.entry_id)
        if size != cp.size:
            raise EvidenceError(
                f"proof for {e.entry_id[:16]}… is for log size {size}, checkpoint has {cp.size}"
            )
        inclusion.append(InclusionProof(entry=e.entry_id, index=index, path=list(path)))
    a = analyse(roster_chain, policy, ordered, now=parse_time(when))
    return EvidenceBundle(
        format=FORMAT,
        generated_at=when,
        network=roster_chain.network_id,
        node=node,
        audience=audience,
        since=format_time(since) if since else None,
        roster_chain=roster_chain.envelopes(),
        policy=policy.to_json(),
        entries=[e.envelope for e in ordered],
        equivocations=list(equivocations),
        checkpoint=checkpoint,
        heads=heads,
        proofs=inclusion,
        claims=derive_claims(a),
    )


# --- verification ------------------------------------------------------------------------

CheckStatus = Literal["pass", "fail", "skip"]
MAX_REASONS = 20


@dataclass(frozen=True)
class Check:
    """One named verification step and its outcome."""

    name: str
    status: CheckStatus
    summary: str
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every check passed: the only input the renderer accepts."""

    bundle: EvidenceBundle
    chain: RosterChain
    policy: Policy
    entries: tuple[VerifiedEntry, ...]
    checkpoint: Checkpoint
    analysis: Analysis
    claims: ClaimIndex
    certificates: Mapping[str, QuorumResult]
    pinned: bool
    """True when the roster chain was pinned to a genesis the caller trusts."""


@dataclass(frozen=True)
class VerificationReport:
    checks: tuple[Check, ...]
    verified: VerifiedBundle | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def failures(self) -> list[str]:
        return [
            f"{c.name}: {r}" for c in self.checks if c.status == "fail" for r in (c.failures or (c.summary,))
        ]

    def require(self) -> VerifiedBundle:
        """The verified bundle, or :class:`EvidenceError` listing what failed."""
        if not self.ok or self.verified is None:
            raise EvidenceError("evidence bundle does not verify: " + "; ".join(self.failures()[:5]))
        return self.verified


def _reason(e: Exception) -> str:
    return e.diagnostics() if isinstance(e, TripwireError) else f"{type(e).__name__}: {e}"


def _trim(reasons: list[str]) -> tuple[str, ...]:
    if len(reasons) <= MAX_REASONS:
        return tuple(reasons)
    return (*reasons[:MAX_REASONS], f"… and {len(reasons) - MAX_REASONS} more")


def load_trusted_genesis(path: str | Path) -> TrustedRoster:
    """Read the genesis roster a verifier trusts (the ``--roster`` file).

    Accepted: the genesis envelope (``tripwire roster export``), a list of roster
    envelopes (genesis first), an evidence bundle (its genesis), the JSON of
    ``tripwire roster show --json`` (its ``network``, the genesis id), or a file holding
    just the 64-hex network id. An envelope is checked as a genesis; an id is compared.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise EvidenceError(f"cannot read trusted roster {p}: {e.strerror}; pass the genesis.json file") from e
    text = data.strip().decode("utf-8", "replace")
    if re.fullmatch(r"[0-9a-f]{64}", text):
        return text
    try:
        obj = parse_json_strict(data, max_bytes=MAX_BUNDLE_BYTES)
    except PeerDataError as e:
        raise EvidenceError(
            f"trusted roster {p} is not JSON ({e.message}); pass the file `tripwire roster export` writes"
        ) from e
    if isinstance(obj, dict) and "roster_chain" in obj:
        obj = obj["roster_chain"]
    if isinstance(obj, list):
        if not obj:
            raise EvidenceError(f"{p}: the roster list is empty")
        obj = obj[0]
    if isinstance(obj, dict) and "payloadType" not in obj and isinstance(obj.get("network"), str):
        if re.fullmatch(r"[0-9a-f]{64}", obj["network"]):
            return str(obj["network"])
    if isinstance(obj, str) and re.fullmatch(r"[0-9a-f]{64}", obj):
        return obj
    try:
        return Envelope.parse(obj)
    except PeerDataError as e:
        raise EvidenceError(
            f"trusted roster {p} is not a signed roster ({_reason(e)}); pass the file "
            "`tripwire roster export --out genesis.json` writes, or `tripwire roster show --json` output"
        ) from e


def _check_runs(
    bundle: EvidenceBundle, chain: RosterChain, cp: Checkpoint | None, verified: Sequence[VerifiedEntry]
) -> list[str]:
    """Spec §4 step 6b: every lab's run matches the node's signed heads statement."""
    try:
        st = verify_heads(bundle.heads, chain)
    except PeerDataError as err:
        return [_reason(err)]
    reasons: list[str] = []
    if st.node != bundle.node:
        reasons.append(f"heads statement is by {st.node!r}, bundle says node {bundle.node!r}")
    if cp is None:
        reasons.append("not checked against the log: the checkpoint does not verify")
    elif (st.log_size, st.log_root) != (cp.size, cp.root):
        reasons.append("heads statement is for another log than the checkpoint (size or root differ)")
    if st.since != bundle.since:
        reasons.append(f"heads statement says since {st.since}, bundle says {bundle.since}")
    if st.issued_at != bundle.generated_at:
        reasons.append(f"heads statement is of {st.issued_at}, bundle says generated {bundle.generated_at}")
    runs: dict[str, FeedRun] = {}
    for r in st.feeds:
        if r.lab in runs:
            reasons.append(f"heads statement lists lab {r.lab!r} twice")
        runs[r.lab] = r
    for vr in chain.versions:
        for member in vr.roster.labs:
            if member.id not in runs:
                reasons.append(f"lab {member.id!r}: the heads statement gives no head for it")
    held: dict[str, dict[int, VerifiedEntry]] = {}
    for v in verified:
        held.setdefault(v.lab, {})[v.seq] = v
    for lab in sorted(set(held) - set(runs)):
        reasons.append(f"lab {lab!r}: entries in the bundle but no head in the heads statement")
    since = parse_time(bundle.since) if bundle.since else None
    for lab, r in sorted(runs.items()):
        mine = held.get(lab, {})
        if r.head == 0:
            if r.first != 0 or mine:
                reasons.append(f"lab {lab!r}: head 0 (no entries) but the bundle holds entries of it")
            continue
        if not 1 <= r.first <= r.head:
            reasons.append(f"lab {lab!r}: run from seq {r.first} to head {r.head} is not a range")
            continue
        missing = [s for s in range(r.first, r.head + 1) if s not in mine]
        if missing:
            reasons.append(
                f"lab {lab!r}: entries missing at seq {_ranges(missing)} "
                f"(the node's signed run is seq {r.first}–{r.head})"
            )
        extra = sorted(s for s in mine if not r.first <= s <= r.head)
        if extra:
            reasons.append(f"lab {lab!r}: entries at seq {_ranges(extra)} outside the signed run")
        head = mine.get(r.head)
        if head is not None and head.entry_id != r.head_entry:
            reasons.append(f"lab {lab!r}: the entry at head seq {r.head} is not the signed head entry")
        # The window: a run starts at seq 1 or at an entry issued before `since`, so no
        # entry of the window can be left out at the start either.
        first = mine.get(r.first)
        if r.first != 1 and (
            since is None or (first is not None and parse_time(first.statement.issued_at) >= since)
        ):
            reasons.append(
                f"lab {lab!r}: run starts at seq {r.first}, which is neither seq 1 nor "
                + ("before the window" if since else "possible without a window (`since` is null)")
            )
    return reasons


#: The roster-pin line of an unpinned verification (also what a report rendered unpinned shows).
UNPINNED = "no trusted genesis given (--roster): the network is self-asserted"

TrustedRoster = Envelope | str
"""A trusted genesis: its signed envelope, or its id (= the network id) as a hex string."""


def verify_bundle(bundle: EvidenceBundle, trusted_genesis: TrustedRoster | None = None) -> VerificationReport:
    """Check everything in ``bundle`` offline (specs/evidence.md §4, in that order)."""
    checks: list[Check] = []

    def add(name: str, reasons: list[str], ok_summary: str, fail_summary: str | None = None) -> bool:
        if reasons:
            checks.append(Check(name, "fail", fail_summary or reasons[0], _trim(reasons)))
            return False
        checks.append(Check(name, "pass", ok_summary))
        return True

    def blocked(names: Sequence[str], why: str) -> VerificationReport:
        for n in names:
            checks.append(Check(n, "fail", f"not checked: {why}"))
        return VerificationReport(tuple(checks))

    later = (
        "roster pin",
        "policy digest",
        "entry signatures",
        "feed chains",
        "complete feeds",
        "checkpoint",
        "merkle proofs",
        "certificates",
        "equivocation proofs",
        "claims",
    )

    # 1. Roster chain: genesis signed by every founding lab, each update by both thresholds.
    try:
        chain = RosterChain.from_envelopes(bundle.roster_chain)
    except (PeerDataError, ValueError) as e:
        add("roster chain", [_reason(e)], "")
        return blocked(later, "the roster chain does not verify")
    add("roster chain", [], f"{len(chain.versions)} version(s), network {chain.network_id[:16]}…")
    if bundle.network != chain.network_id:
        checks[-1] = Check("roster chain", "fail", "bundle names another network than its genesis roster")
        return blocked(later, "the roster chain names another network")

    # 2. Pin: the genesis must be the one the regulator trusts, else anyone could mint a network.
    pinned = False
    if trusted_genesis is None:
        checks.append(Check("roster pin", "skip", UNPINNED))
    else:
        if isinstance(trusted_genesis, str):
            trusted_id = trusted_genesis
        else:
            try:
                trusted_id = verify_genesis(trusted_genesis).roster_id
            except PeerDataError as e:
                add("roster pin", [f"the trusted roster file itself does not verify: {_reason(e)}"], "")
                return blocked(later[1:], "roster pin failed")
        if trusted_id != chain.network_id:
            add(
                "roster pin",
                [f"bundle's genesis {chain.network_id[:16]}… is not the trusted genesis {trusted_id[:16]}…"],
                "",
            )
            return blocked(later[1:], "roster pin failed")
        pinned = add("roster pin", [], f"genesis matches the trusted roster {trusted_id[:16]}…")

    # 3. Policy: the bundled document must be the one the roster pins.
    try:
        policy = Policy.from_obj(bundle.policy)
    except PeerDataError as e:
        add("policy digest", [_reason(e)], "")
        return blocked(later[2:], "the policy does not parse")
    pinned_digest = chain.current.roster.policy_digest
    if not add(
        "policy digest",
        []
        if policy.digest == pinned_digest
        else [f"policy digest {policy.digest[:16]}… is not the roster's {pinned_digest[:16]}…"],
        f"policy {policy.id} v{policy.version} = roster pin {pinned_digest[:16]}…",
    ):
        return blocked(later[2:], "the policy is not the pinned one")

    # 4. Entry signatures under the roster keys valid when each entry was issued.
    verified: list[VerifiedEntry] = []
    reasons: list[str] = []
    for i, env in enumerate(bundle.entries):
        try:
            verified.append(verify_entry(env, chain))
        except PeerDataError as e:
            reasons.append(f"entry #{i}: {_reason(e)}")
    sig_ok = add("entry signatures", reasons, f"{len(verified)} entries signed by their labs' roster keys")

    # 5. Feed chains: per lab, consecutive seq and prev = id of the previous entry.
    reasons = []
    last: dict[str, VerifiedEntry] = {}
    for v in verified:
        prev = last.get(v.lab)
        if prev is not None:
            if v.seq != prev.seq + 1:
                reasons.append(
                    f"lab {v.lab!r}: seq {v.seq} follows seq {prev.seq} (feed reordered or entries missing)"
                )
            elif v.statement.prev != prev.entry_id:
                reasons.append(f"lab {v.lab!r} seq {v.seq}: prev is not the id of seq {prev.seq}")
        last[v.lab] = v
    chain_ok = add("feed chains", reasons, f"{len(last)} feed(s) contiguous and hash-linked")

    # 6. Checkpoint signed by the producing node.
    cp: Checkpoint | None = None
    try:
        cp = verify_checkpoint(bundle.checkpoint, chain)
        if cp.node != bundle.node:
            raise EvidenceError(f"checkpoint is by {cp.node!r}, bundle says node {bundle.node!r}")
        add("checkpoint", [], f"node {cp.node} log size {cp.size}, root {cp.root[:16]}…, {cp.issued_at}")
    except PeerDataError as e:
        add("checkpoint", [_reason(e)], "")

    # 6b. Completeness: the node's signed heads say where each lab's run starts and ends;
    # every seq in between must be here, so a cut tail, a dropped entry or a dropped lab fails.
    complete_ok = add(
        "complete feeds",
        _check_runs(bundle, chain, cp, verified),
        f"every lab's run is complete up to the node's signed head ({len(last)} lab(s) with entries)",
    )
    complete_check = checks.pop()
    checks.insert(len(checks) - 1, complete_check)  # listed right after "feed chains", as in the spec

    # 7. Merkle inclusion of every entry in the checkpointed log.
    reasons = []
    if cp is None:
        reasons.append("not checked: the checkpoint does not verify")
    elif len(bundle.proofs) != len(bundle.entries):
        reasons.append(f"{len(bundle.proofs)} proofs for {len(bundle.entries)} entries")
    else:
        root = bytes.fromhex(cp.root)
        from protocol.canonical import entry_id as _eid

        for i, (env, pr) in enumerate(zip(bundle.entries, bundle.proofs, strict=True)):
            eid = _eid(env.payload_bytes())
            if pr.entry != eid:
                reasons.append(f"proof #{i} is for {pr.entry[:16]}…, entry #{i} is {eid[:16]}…")
                continue
            try:
                verify_inclusion(
                    leaf_hash(eid.encode("ascii")),
                    pr.index,
                    cp.size,
                    [bytes.fromhex(h) for h in pr.path],
                    root,
                )
            except PeerDataError as e:
                reasons.append(f"entry {eid[:16]}… (log index {pr.index}): {_reason(e)}")
    merkle_ok = add(
        "merkle proofs", reasons, f"{len(bundle.proofs)} entries included in the checkpointed log"
    )

    # 8. Certificates. An invalid one is the publishing lab's error, not the bundle's: it is
    # flagged, counts for nothing (the pause state machine ignores it) and blocks nothing.
    certs: dict[str, QuorumResult] = {}
    flagged: list[str] = []
    for v in verified:
        body = v.statement.body
        if isinstance(body, PauseCertificateBody):
            try:
                certs[v.entry_id] = verify_certificate(body, chain)
            except PeerDataError as ex:
                flagged.append(f"certificate {v.entry_id[:16]}… of lab {v.lab!r}: {_reason(ex)}")
    summary = f"{len(certs)} certificate(s) reach quorum"
    if flagged:
        summary += f"; {len(flagged)} invalid, flagged and not counted ({flagged[0]})"
    checks.append(Check("certificates", "pass", summary, _trim(flagged) if flagged else ()))
    cert_ok = True

    # 9. Equivocation proofs: two validly signed entries at one seq.
    reasons = []
    for p in bundle.equivocations:
        try:
            p.verify(chain)
        except PeerDataError as e:
            reasons.append(f"proof for lab {p.lab!r} seq {p.seq}: {_reason(e)}")
    eq_ok = add("equivocation proofs", reasons, f"{len(bundle.equivocations)} equivocation proof(s) verify")

    # 10. Claims: every displayed number equals the signed one; verdicts and tallies recompute.
    # Checked even when earlier checks failed, over the entries that did verify, so the
    # report names every discrepancy at once.
    analysis: Analysis | None = None
    try:
        analysis = analyse(chain, policy, verified, now=parse_time(bundle.generated_at))
        n, reasons = check_claims(bundle.claims, analysis, limit=10_000)
        claims_ok = add("claims", reasons, f"{n} claims equal the signed data and recomputed verdicts")
    except PeerDataError as e:
        claims_ok = add("claims", [f"cannot recompute the report's numbers: {_reason(e)}"], "")

    all_ok = sig_ok and chain_ok and complete_ok and merkle_ok and cert_ok and eq_ok and claims_ok and cp is not None
    if not all_ok or analysis is None or cp is None:
        return VerificationReport(tuple(checks))
    vb = VerifiedBundle(
        bundle=bundle,
        chain=chain,
        policy=policy,
        entries=tuple(verified),
        checkpoint=cp,
        analysis=analysis,
        claims=ClaimIndex(bundle.claims),
        certificates=certs,
        pinned=pinned,
    )
    return VerificationReport(tuple(checks), vb)
