"""Per-lab feed chain rules and equivocation proofs (spec §4.2–4.4).

The rules are pure: the caller (a node's store) supplies what it holds about the lab's
feed — its head, the entry already held at the offered seq, whether the feed is frozen
past a proven fork — and gets back a decision. Storage applies the decision atomically.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from protocol.canonical import digest_of
from protocol.entries import (
    Hex64,
    LabId,
    Model,
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
    ForkedFeedError,
    HoldFullError,
    PrevMismatchError,
    SchemaError,
    SeqGapError,
)
from protocol.keys import SigningKey
from protocol.roster import RosterChain, verify_entry


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
) -> Decision:
    """Decide what to do with a verified entry given the lab's feed state.

    ``held_at_seq`` is the entry already stored at ``entry.seq`` (if any). Raises
    :class:`EquivocationError` carrying a proof when the lab signed two entries at one seq,
    :class:`PrevMismatchError` when the chain link is wrong, :class:`ForkedFeedError`
    once the lab's feed is frozen past a proven fork.
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
    last = head.seq if head else 0
    if entry.seq <= last:
        # The store must supply held_at_seq for any seq it has; reaching here means it did not.
        raise SchemaError(f"seq {entry.seq} is at or below the head {last} but nothing is held there")
    if entry.seq > last + 1:
        return Decision.HOLD
    expected_prev = head.entry_id if head else None
    if entry.statement.prev != expected_prev:
        raise PrevMismatchError(
            f"lab {entry.lab!r} seq {entry.seq}: prev {str(entry.statement.prev)[:16]}… is not "
            f"the id of seq {last} ({str(expected_prev)[:16]}…)"
        )
    return Decision.APPEND


def verify_feed(
    envelopes: Iterable[Envelope],
    chain: RosterChain,
    *,
    after: Head | None = None,
    now: datetime | None = None,
) -> list[VerifiedEntry]:
    """Verify a contiguous run of one lab's feed (a ``GET /v1/feeds`` page, an evidence bundle).

    Unlike live ingest there is no hold here: a run must be complete, so a gap raises
    :class:`SeqGapError` (spec §4.5). ``after`` is the head the run continues from (None:
    the run starts at seq 1). Repeated identical entries are skipped (spec §4.2 step 7);
    two different entries at one seq raise :class:`EquivocationError` with its proof.
    Returns the verified entries in seq order.
    """
    head = after
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
        check_append(entry, head, None)
        head = Head(entry.seq, entry.entry_id)
        seen[entry.seq] = entry
        out.append(entry)
    return out


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
