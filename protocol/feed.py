"""Per-lab feed chain rules and equivocation proofs (spec §4.2–4.4).

The rules are pure: the caller (a node's store) supplies what it holds about each lab's
feed (:class:`FeedState`: head, the head's ``issued_at``, the fork a proof froze it at, the
out-of-order hold) and a batch of verified entries, and :func:`plan_appends` returns a
:class:`FeedPlan`: what to append, hold, release and forget, which proofs to keep and the
verdict on every offered entry. The store applies the plan in one transaction and does
nothing but I/O; :func:`check_append` is the rule for one entry that the planner and
:func:`verify_feed` share.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, ValidationError, model_validator

from protocol.canonical import digest_of
from protocol.entries import (
    Hex64,
    LabId,
    Model,
    RosterUpdateBody,
    Statement,
    VerifiedEntry,
    _schema_error,
    build_statement,
    sign_statement,
)
from protocol.envelope import Envelope
from protocol.errors import (
    EquivocationError,
    FeedError,
    FeedTimeError,
    ForkedFeedError,
    FutureDatedError,
    HoldFullError,
    PrevMismatchError,
    SchemaError,
    SeqGapError,
    TripwireError,
)
from protocol.keys import SigningKey
from protocol.roster import RosterChain, VerifiedRoster, verify_entry

#: Default tolerance for an entry dated ahead of the verifier's clock (spec §4.2 step 7).
MAX_FUTURE_SKEW = timedelta(seconds=300)

_NANOS = "000000000"


def time_key(issued_at: str) -> str:
    """A key whose string order is the time order of RFC 3339 UTC timestamps (spec §2.6).

    ``issued_at`` has passed the statement schema (``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z``), so
    the key is the fixed-width date and time and nine fraction digits; no parsing needed
    on the ingest path.
    """
    frac = issued_at[20:-1] if len(issued_at) > 20 else ""
    return f"{issued_at[:19]}.{(frac + _NANOS)[:9]}"


@lru_cache(maxsize=16)
def _datetime_key(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}000"


@dataclass(frozen=True, slots=True)
class Head:
    """The last accepted entry of a lab's feed."""

    seq: int
    entry_id: str


class Decision(Enum):
    APPEND = "append"
    """Next in the chain: store it."""
    DUPLICATE = "duplicate"
    """Already held: success, nothing stored (idempotent re-delivery)."""
    HOLD = "hold"
    """Ahead of the chain: keep in the bounded out-of-order hold."""


class EquivocationProof(Model):
    """Two validly signed entries of one lab with the same seq and different ids.

    Portable: anyone holding the roster can check it with :meth:`verify`.
    """

    lab: LabId
    seq: Annotated[int, Field(ge=1, le=2**53 - 1)]
    a: Envelope
    b: Envelope
    a_id: Hex64
    b_id: Hex64

    @model_validator(mode="after")
    def _ordered(self) -> EquivocationProof:
        if not self.a_id < self.b_id:
            raise ValueError("a_id must sort before b_id (canonical order)")
        return self

    @classmethod
    def of(cls, x: VerifiedEntry, y: VerifiedEntry) -> EquivocationProof:
        first, second = sorted((x, y), key=lambda e: e.entry_id)
        return cls(
            lab=x.lab, seq=x.seq, a=first.envelope, b=second.envelope, a_id=first.entry_id, b_id=second.entry_id
        )

    @property
    def proof_id(self) -> str:
        return digest_of({"lab": self.lab, "seq": self.seq, "a": self.a_id, "b": self.b_id})

    def verify(self, chain: RosterChain) -> None:
        """Raise unless both entries verify, share lab and seq, and differ."""
        ea, eb = verify_entry(self.a, chain), verify_entry(self.b, chain)
        if {ea.entry_id, eb.entry_id} != {self.a_id, self.b_id}:
            raise EquivocationError("proof ids do not match the enclosed entries")
        if ea.entry_id == eb.entry_id:
            raise EquivocationError("both entries are the same: not an equivocation")
        if not (ea.lab == eb.lab == self.lab and ea.seq == eb.seq == self.seq):
            raise EquivocationError("entries differ in lab or seq: not an equivocation")

    @classmethod
    def parse(cls, data: Any) -> EquivocationProof:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise _schema_error(e, "equivocation proof") from e


def check_append(
    entry: VerifiedEntry,
    head: Head | None,
    held_at_seq: VerifiedEntry | None,
    *,
    forked: bool = False,
    head_issued_at: str | None = None,
    not_after: datetime | None = None,
) -> Decision:
    """Decide what to do with a verified entry given the lab's feed state (spec §4.2 step 7).

    ``held_at_seq`` is the entry already stored at ``entry.seq`` (if any); ``forked``: the
    lab's feed is frozen at or below ``entry.seq`` by a proven fork; ``head_issued_at``:
    the head entry's ``issued_at`` (None skips the time order); ``not_after``: the latest
    ``issued_at`` the verifier accepts (its clock plus the allowed skew; None skips it).

    Raises :class:`EquivocationError` carrying a proof when the lab signed two entries at
    one seq, :class:`ForkedFeedError` past a proven fork, :class:`FutureDatedError`,
    :class:`PrevMismatchError` when the chain link is wrong and :class:`FeedTimeError` when
    the entry is dated before its predecessor (or, ahead of the chain, before the head,
    which no valid successor of the head can be).
    """
    if held_at_seq is not None:
        if held_at_seq.entry_id == entry.entry_id:
            return Decision.DUPLICATE
        proof = EquivocationProof.of(held_at_seq, entry)
        raise EquivocationError(
            f"lab {entry.lab!r} signed two different entries at seq {entry.seq}", proof=proof
        )
    if forked:
        raise ForkedFeedError(f"lab {entry.lab!r}'s feed is frozen after a proven equivocation")
    issued = entry.statement.issued_at
    if not_after is not None and time_key(issued) > _datetime_key(not_after):
        raise FutureDatedError(
            f"lab {entry.lab!r} seq {entry.seq} is dated {issued}, ahead of this verifier's clock "
            f"by more than the allowed skew (latest accepted: {_datetime_key(not_after)[:19]}Z)"
        )
    last = head.seq if head else 0
    if entry.seq <= last:
        # The store must supply held_at_seq for any seq it has; reaching here means it did not.
        raise SchemaError(f"seq {entry.seq} is at or below the head {last} but nothing is held there")
    if entry.seq == last + 1:
        expected_prev = head.entry_id if head else None
        if entry.statement.prev != expected_prev:
            raise PrevMismatchError(
                f"lab {entry.lab!r} seq {entry.seq}: prev {str(entry.statement.prev)[:16]}… is not "
                f"the id of seq {last} ({str(expected_prev)[:16]}…)"
            )
    if head_issued_at is not None and time_key(issued) < time_key(head_issued_at):
        raise FeedTimeError(
            f"lab {entry.lab!r} seq {entry.seq} is dated {issued}, before seq {last} ({head_issued_at}): "
            "issued_at never decreases along a feed"
        )
    return Decision.HOLD if entry.seq > last + 1 else Decision.APPEND


def verify_feed(
    envelopes: Iterable[Envelope],
    chain: RosterChain,
    *,
    after: Head | None = None,
    now: datetime | None = None,
) -> list[VerifiedEntry]:
    """Verify a contiguous run of one lab's feed (a ``GET /v1/feeds`` page, an evidence bundle).

    Unlike live ingest there is no hold here: a run must be complete, so a gap raises
    :class:`SeqGapError` (spec §4.5); an entry dated before its predecessor in the run raises
    :class:`FeedTimeError`. ``after`` is the head the run continues from (None:
    the run starts at seq 1). Repeated identical entries are skipped (spec §4.2 step 7);
    two different entries at one seq raise :class:`EquivocationError` with its proof.
    Returns the verified entries in seq order.
    """
    head = after
    head_issued_at: str | None = None  # the run's own predecessor; unknown for ``after``
    seen: dict[int, VerifiedEntry] = {}
    out: list[VerifiedEntry] = []
    lab: str | None = None
    for env in envelopes:
        entry = verify_entry(env, chain, now=now)
        if lab is None:
            lab = entry.lab
        elif entry.lab != lab:
            raise FeedError(f"feed run mixes labs {lab!r} and {entry.lab!r}")
        held = seen.get(entry.seq)
        if held is not None:
            if check_append(entry, head, held) is Decision.DUPLICATE:
                continue
        last = head.seq if head else 0
        if entry.seq <= last:
            raise FeedError(f"lab {lab!r} seq {entry.seq} is at or before the run's start (seq {last})")
        if entry.seq > last + 1:
            raise SeqGapError(f"lab {lab!r} seq {entry.seq} follows seq {last}: seq {last + 1} is missing")
        check_append(entry, head, None, head_issued_at=head_issued_at)
        head = Head(entry.seq, entry.entry_id)
        head_issued_at = entry.statement.issued_at
        seen[entry.seq] = entry
        out.append(entry)
    return out


# --- the feed planner (spec §4.2 step 7, §4.3, §4.4) ----------------------------------------


@dataclass(frozen=True, slots=True)
class FeedState:
    """What a verifier holds for one lab's feed: the planner's input, and its output for
    every lab a plan changes. An unknown lab's state is ``FeedState()``."""

    head: Head | None = None
    """The last accepted entry (None: nothing accepted yet)."""
    head_issued_at: str | None = None
    """The head entry's ``issued_at`` (a successor may not be dated before it)."""
    fork_seq: int | None = None
    """Lowest seq of a proven equivocation: the feed is frozen from this seq on (None: no fork)."""
    held: Mapping[int, str] = field(default_factory=dict)
    """The out-of-order hold: seq → entry_id of the held entry (spec §4.3)."""

    @property
    def frozen(self) -> bool:
        return self.fork_seq is not None


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """Bounds a verifier applies to feeds (spec §4.2 step 7, §4.3)."""

    hold_per_lab: int = 1024
    """Most entries held out of order for one lab."""
    hold_total: int = 16_384
    """Most entries held out of order in all."""
    max_future: timedelta = MAX_FUTURE_SKEW
    """How far an entry's ``issued_at`` may be ahead of the verifier's clock."""


class FeedLookup(Protocol):
    """The facts a plan may need beyond the :class:`FeedState` (the store reads them)."""

    def stored_at(self, lab: str, seq: int) -> VerifiedEntry | None:
        """The accepted entry of ``lab`` at ``seq`` (asked only for a seq at or below the head,
        when an entry not already accepted claims it: a possible equivocation)."""
        ...

    def held_entry(self, lab: str, entry_id: str) -> VerifiedEntry:
        """The held entry a :attr:`FeedState.held` names."""
        ...

    def held_total(self) -> int:
        """Entries in the hold across all labs (asked at most once per plan)."""
        ...


Status = Literal["accepted", "duplicate", "held", "rejected"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happens to one offered entry."""

    status: Status
    error: TripwireError | None = None
    """Why it was refused (``rejected`` only)."""

    @property
    def code(self) -> str | None:
        return None if self.error is None else self.error.code


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """What a batch changes, for the store to write in one transaction."""

    verdicts: Mapping[str, Verdict]
    """By entry_id: the verdict on each distinct offered entry."""
    appends: Sequence[VerifiedEntry]
    """Entries to append, in log order: offered ones and those released from the hold."""
    hold: Sequence[VerifiedEntry]
    """Offered entries to place in the hold."""
    unhold: Set[str]
    """Ids of entries that were held before the plan and leave the hold (released, refused
    when they became next, or past a fork)."""
    dropped: Sequence[tuple[VerifiedEntry, TripwireError]]
    """Held entries refused when they became next (not kept anywhere)."""
    proofs: Sequence[EquivocationProof]
    """Equivocation proofs to keep: found in the batch, or received (spec §4.4)."""
    states: Mapping[str, FeedState]
    """The state after the plan of every lab it changed."""
    rosters: Sequence[VerifiedRoster]
    """Roster versions enclosed in appended ``roster_update`` entries, in order (spec §7.3)."""


@dataclass(slots=True)
class _Lab:
    head: Head | None
    head_issued_at: str | None
    fork_seq: int | None
    held: dict[int, str]
    changed: bool = False

    def state(self) -> FeedState:
        return FeedState(self.head, self.head_issued_at, self.fork_seq, dict(self.held))


class _Planner:
    def __init__(
        self,
        states: Mapping[str, FeedState],
        lookup: FeedLookup,
        now: datetime,
        stored: Set[str],
        chain: RosterChain | None,
        limits: FeedLimits,
    ) -> None:
        self.states, self.lookup, self.now, self.stored, self.limits = states, lookup, now, stored, limits
        self.not_after = now + limits.max_future
        self.chain = RosterChain(list(chain.versions)) if chain is not None else None
        self.base_rosters = len(chain.versions) if chain is not None else 0
        self.labs: dict[str, _Lab] = {}
        self.verdicts: dict[str, Verdict] = {}
        self.appends: list[VerifiedEntry] = []
        self.by_slot: dict[tuple[str, int], VerifiedEntry] = {}
        self.hold: dict[str, VerifiedEntry] = {}
        self.unhold: set[str] = set()
        self.dropped: list[tuple[VerifiedEntry, TripwireError]] = []
        self.proofs: dict[str, EquivocationProof] = {}
        self.held_base: int | None = None

    def lab(self, lab: str) -> _Lab:
        st = self.labs.get(lab)
        if st is None:
            s = self.states.get(lab) or FeedState()
            st = self.labs[lab] = _Lab(s.head, s.head_issued_at, s.fork_seq, dict(s.held))
        return st

    def held_entry(self, lab: str, entry_id: str) -> VerifiedEntry:
        return self.hold.get(entry_id) or self.lookup.held_entry(lab, entry_id)

    def unhold_id(self, entry_id: str) -> None:
        if self.hold.pop(entry_id, None) is None:
            self.unhold.add(entry_id)

    def freeze(self, lab: str, proof: EquivocationProof) -> None:
        """Keep the proof; stop the feed at the fork and forget held entries past it (spec §4.4)."""
        self.proofs.setdefault(proof.proof_id, proof)
        st = self.lab(lab)
        if st.fork_seq is not None and st.fork_seq <= proof.seq:
            return
        st.fork_seq, st.changed = proof.seq, True
        for seq in [s for s in st.held if s >= proof.seq]:
            self.unhold_id(st.held.pop(seq))

    def decide(self, v: VerifiedEntry) -> Verdict:
        st = self.lab(v.lab)
        held_id = st.held.get(v.seq)
        prior: VerifiedEntry | None = None
        if st.head is not None and v.seq <= st.head.seq:
            prior = self.by_slot.get((v.lab, v.seq)) or self.lookup.stored_at(v.lab, v.seq)
        elif held_id is not None and held_id != v.entry_id:
            # Both validly signed, same lab and seq, one held: an equivocation (spec §4.4).
            prior = self.held_entry(v.lab, held_id)
        try:
            decision = check_append(
                v,
                st.head,
                prior,
                forked=st.fork_seq is not None and v.seq >= st.fork_seq,
                head_issued_at=st.head_issued_at,
                not_after=self.not_after,
            )
            if decision is Decision.APPEND and self.chain is not None and isinstance(v.statement.body, RosterUpdateBody):
                # A roster_update entry is appended only if its roster is the valid next version.
                self.chain.apply(v.statement.body.roster, now=self.now)
        except EquivocationError as e:
            if isinstance(e.proof, EquivocationProof):
                self.freeze(v.lab, e.proof)
            return Verdict("rejected", e)
        except TripwireError as e:
            return Verdict("rejected", e)
        if decision is Decision.DUPLICATE:
            return Verdict("duplicate")
        if decision is Decision.HOLD:
            if held_id is not None:
                return Verdict("held")  # the same entry is held already
            if self.held_base is None:
                self.held_base = self.lookup.held_total()
            total = self.held_base + len(self.hold) - len(self.unhold)
            if len(st.held) >= self.limits.hold_per_lab or total >= self.limits.hold_total:
                return Verdict("rejected", HoldFullError(f"out-of-order hold is full for lab {v.lab!r}"))
            st.held[v.seq] = v.entry_id
            st.changed = True
            self.hold[v.entry_id] = v
            return Verdict("held")
        self.appends.append(v)
        self.by_slot[(v.lab, v.seq)] = v
        st.head, st.head_issued_at, st.changed = Head(v.seq, v.entry_id), v.statement.issued_at, True
        if held_id is not None:  # the same entry, held before its predecessor came (unreachable
            # through a consistent state, whose release loop takes it first)
            del st.held[v.seq]
            self.unhold_id(held_id)
        return Verdict("accepted")

    def release(self, lab: str, offered: Set[str]) -> None:
        """Append held entries that have become next (spec §4.3: re-checked by step 7)."""
        st = self.lab(lab)
        while st.head is not None and (nxt_id := st.held.get(st.head.seq + 1)) is not None:
            nxt = self.held_entry(lab, nxt_id)
            del st.held[st.head.seq + 1]
            self.unhold_id(nxt_id)
            st.changed = True
            verdict = self.decide(nxt)
            if verdict.status != "accepted":
                assert verdict.error is not None
                self.dropped.append((nxt, verdict.error))
            if nxt_id in offered:
                self.verdicts[nxt_id] = verdict


def plan_appends(
    states: Mapping[str, FeedState],
    entries: Sequence[VerifiedEntry],
    lookup: FeedLookup,
    *,
    now: datetime,
    stored: Set[str] = frozenset(),
    proofs: Sequence[EquivocationProof] = (),
    chain: RosterChain | None = None,
    limits: FeedLimits = FeedLimits(),
) -> FeedPlan:
    """Apply the feed rules (spec §4.2 step 7, §4.3, §4.4) to a batch of verified entries.

    ``states`` holds what the verifier has for each lab of the batch (a lab absent from it
    has an empty feed); ``stored`` are ids of entries already accepted (their re-delivery
    is a duplicate); ``proofs`` are *verified* equivocation proofs received from elsewhere
    (:meth:`EquivocationProof.verify`), applied before the entries: each freezes its lab's
    feed from its seq on. ``now`` is the verifier's clock: an entry dated more than
    ``limits.max_future`` ahead of it is refused ``future-dated``. With ``chain``, an
    appended ``roster_update`` entry must carry the valid next roster version, and the
    versions are returned in :attr:`FeedPlan.rosters`.

    Entries are taken in (lab, seq) order, so the plan does not depend on the order they
    were offered in; held entries that become next are released and re-checked. Pure: the
    only reads are through ``lookup``, and nothing is changed but the returned plan.
    """
    p = _Planner(states, lookup, now, stored, chain, limits)
    for proof in proofs:
        p.freeze(proof.lab, proof)
    offered = {v.entry_id for v in entries}
    for v in sorted(entries, key=lambda e: (e.lab, e.seq, e.entry_id)):
        if v.entry_id in p.verdicts:
            continue  # a second copy in the batch: the first one's verdict stands
        if v.entry_id in stored:
            p.verdicts[v.entry_id] = Verdict("duplicate")
            continue
        verdict = p.verdicts[v.entry_id] = p.decide(v)
        if verdict.status == "accepted":
            p.release(v.lab, offered)
    for lab in sorted(p.labs):
        p.release(lab, offered)
    new_rosters = p.chain.versions[p.base_rosters :] if p.chain is not None else []
    return FeedPlan(
        verdicts=p.verdicts,
        appends=p.appends,
        hold=list(p.hold.values()),
        unhold=p.unhold,
        dropped=p.dropped,
        proofs=list(p.proofs.values()),
        states={lab: st.state() for lab, st in p.labs.items() if st.changed},
        rosters=list(new_rosters),
    )


class OutOfOrderHold:
    """A bounded hold for entries that arrived ahead of their predecessors (spec §4.3).

    Bounded per lab and in total so that a hostile peer cannot exhaust memory; when full
    the entry is refused with :class:`HoldFullError` (it will come again through sync).
    """

    def __init__(self, max_per_lab: int = 1024, max_total: int = 16384) -> None:
        self.max_per_lab = max_per_lab
        self.max_total = max_total
        self._by_lab: dict[str, OrderedDict[int, VerifiedEntry]] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def add(self, entry: VerifiedEntry) -> None:
        slot = self._by_lab.setdefault(entry.lab, OrderedDict())
        held = slot.get(entry.seq)
        if held is not None:
            if held.entry_id != entry.entry_id:
                raise EquivocationError(
                    f"lab {entry.lab!r} signed two different entries at seq {entry.seq}",
                    proof=EquivocationProof.of(held, entry),
                )
            return
        if len(slot) >= self.max_per_lab or self._total >= self.max_total:
            raise HoldFullError(f"out-of-order hold is full for lab {entry.lab!r}")
        slot[entry.seq] = entry
        self._total += 1

    def pop_next(self, lab: str, seq: int) -> VerifiedEntry | None:
        """Remove and return the held entry for ``lab`` at ``seq``, if any."""
        slot = self._by_lab.get(lab)
        if not slot or seq not in slot:
            return None
        self._total -= 1
        return slot.pop(seq)

    def drop_through(self, lab: str, seq: int) -> None:
        """Forget held entries at or below ``seq`` (already stored by another path)."""
        slot = self._by_lab.get(lab)
        if not slot:
            return
        for s in [s for s in slot if s <= seq]:
            del slot[s]
            self._total -= 1


class FeedWriter:
    """Produces a lab's own chained, signed entries (in memory; nodes persist the head).

    Keeps ``seq``/``prev`` right so that producers cannot break their own chain.
    """

    def __init__(self, network: str, lab: str, key: SigningKey, head: Head | None = None) -> None:
        self.network, self.lab, self.key, self.head = network, lab, key, head

    def next_statement(self, kind: str, body: Model | dict[str, Any], issued_at: str) -> Statement:
        seq = (self.head.seq if self.head else 0) + 1
        return build_statement(
            network=self.network,
            lab=self.lab,
            seq=seq,
            prev=self.head.entry_id if self.head else None,
            issued_at=issued_at,
            kind=kind,
            body=body,
        )

    def append(self, kind: str, body: Model | dict[str, Any], issued_at: str) -> tuple[Envelope, str]:
        """Sign the next entry and advance the head; returns (envelope, entry_id)."""
        st = self.next_statement(kind, body, issued_at)
        env, eid = sign_statement(st, self.key)
        self.head = Head(st.seq, eid)
        return env, eid
