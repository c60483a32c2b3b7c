"""The feed planner (spec §4.2 step 7, §4.3, §4.4): pure rules, applied here by a verifier
kept in memory exactly as the node's store applies them in its transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.canonical import parse_time
from protocol.entries import VerifiedEntry
from protocol.errors import FeedTimeError, FutureDatedError
from protocol.feed import (
    EquivocationProof,
    FeedLimits,
    FeedPlan,
    FeedState,
    FeedWriter,
    Head,
    plan_appends,
    time_key,
)
from protocol.roster import RosterChain, verify_entry


class Book:
    """A verifier's feeds in memory: answers the planner's lookups and applies its plans."""

    def __init__(self, chain: RosterChain | None = None) -> None:
        self.chain = chain
        self.states: dict[str, FeedState] = {}
        self.slots: dict[tuple[str, int], VerifiedEntry] = {}
        self.held: dict[str, VerifiedEntry] = {}
        self.proofs: dict[str, EquivocationProof] = {}
        self.log: list[str] = []

    def stored_at(self, lab: str, seq: int) -> VerifiedEntry | None:
        return self.slots.get((lab, seq))

    def held_entry(self, lab: str, entry_id: str) -> VerifiedEntry:
        return self.held[entry_id]

    def held_total(self) -> int:
        return len(self.held)

    def offer(
        self,
        entries: Sequence[VerifiedEntry],
        *,
        now: datetime,
        proofs: Sequence[EquivocationProof] = (),
        limits: FeedLimits = FeedLimits(),
    ) -> FeedPlan:
        stored = {e.entry_id for e in self.slots.values()}
        plan = plan_appends(self.states, entries, self, now=now, stored=stored, proofs=proofs,
                            chain=self.chain, limits=limits)
        for v in plan.appends:
            self.slots[(v.lab, v.seq)] = v
            self.log.append(v.entry_id)
        for eid in plan.unhold:
            del self.held[eid]
        for v in plan.hold:
            self.held[v.entry_id] = v
        for p in plan.proofs:
            self.proofs.setdefault(p.proof_id, p)
        self.states.update(plan.states)
        if self.chain is not None and plan.rosters:
            self.chain = RosterChain([*self.chain.versions, *plan.rosters])
        return plan

    def feed(self, lab: str) -> list[str]:
        return [self.slots[(lab, s)].entry_id for s in sorted(s for (la, s) in self.slots if la == lab)]


@dataclass
class Net:
    """Entries of the deterministic vector network's labs, signed and verified."""

    gen: ModuleType
    world: Any
    now: datetime

    def writer(self, lab: str = "alpha", head: Head | None = None) -> FeedWriter:
        return FeedWriter(self.world.network, lab, self.gen.key(f"{lab}-1"), head)

    def chain_of(self, n: int, lab: str = "alpha", *, text: str = "x", start: int = 0,
                 minutes: Callable[[int], float] = float) -> list[VerifiedEntry]:
        """``n`` chained notes of ``lab``; entry i is dated ``minutes(i)`` after day 2."""
        w = self.writer(lab)
        envs = [w.append("note", {"text": f"{text} {i}"}, self.gen.at(days=2, minutes=start + minutes(i)))[0]
                for i in range(n)]
        return [verify_entry(e, self.world.chain1) for e in envs]

    def fork_at(self, base: list[VerifiedEntry], seq: int, text: str = "fork") -> VerifiedEntry:
        """Another entry of the same lab at ``seq``, chained to ``base``'s entry ``seq - 1``."""
        head = Head(seq - 1, base[seq - 2].entry_id) if seq > 1 else None
        w = self.writer(base[0].lab, head)
        env = w.next_statement("note", {"text": text}, base[seq - 1].statement.issued_at)
        from protocol.entries import sign_statement

        return verify_entry(sign_statement(env, self.gen.key(f"{base[0].lab}-1"))[0], self.world.chain1)


@pytest.fixture(scope="module")
def net(gen: ModuleType, world: Any) -> Net:
    return Net(gen, world, parse_time(gen.at(days=3)))


def _statuses(plan: FeedPlan, entries: Sequence[VerifiedEntry]) -> list[str]:
    out = []
    for v in entries:
        verdict = plan.verdicts[v.entry_id]
        out.append(verdict.status if verdict.code is None else f"{verdict.status}:{verdict.code}")
    return out


# --- table: deliveries and what each one yields --------------------------------------------------

# Each case: (entries of a 4-entry chain plus helpers) -> list of (batch, expected statuses);
# then the expected feed (seqs of the chain) and fork seq.


def _in_order(net: Net, a: list[VerifiedEntry]) -> Any:
    return [([a[0], a[1], a[2]], ["accepted"] * 3)], [1, 2, 3], None


def _duplicate(net: Net, a: list[VerifiedEntry]) -> Any:
    return [([a[0], a[0]], ["accepted", "accepted"]), ([a[0]], ["duplicate"])], [1], None


def _gap_held_then_released(net: Net, a: list[VerifiedEntry]) -> Any:
    return [([a[3], a[2]], ["held", "held"]), ([a[3]], ["held"]), ([a[1]], ["held"]),
            ([a[0]], ["accepted"])], [1, 2, 3, 4], None


def _released_in_the_same_batch(net: Net, a: list[VerifiedEntry]) -> Any:
    return [([a[2], a[0], a[1]], ["accepted"] * 3)], [1, 2, 3], None


def _prev_mismatch(net: Net, a: list[VerifiedEntry]) -> Any:
    other = net.chain_of(2, text="other")
    return [([a[0]], ["accepted"]), ([other[1]], ["rejected:prev-mismatch"])], [1], None


def _equivocation_at_a_stored_seq(net: Net, a: list[VerifiedEntry]) -> Any:
    fork = net.fork_at(a, 2)
    return [([a[0], a[1]], ["accepted"] * 2), ([fork], ["rejected:equivocation"]),
            ([a[2]], ["rejected:feed-forked"]), ([a[1]], ["duplicate"])], [1, 2], 2


def _equivocation_between_held_entries(net: Net, a: list[VerifiedEntry]) -> Any:
    fork = net.fork_at(a, 3)
    return [([a[2]], ["held"]), ([fork], ["rejected:equivocation"]),
            ([a[0], a[1], a[3]], ["accepted", "accepted", "rejected:feed-forked"])], [1, 2], 3


def _equivocation_in_one_batch(net: Net, a: list[VerifiedEntry]) -> Any:
    fork = net.fork_at(a, 1)
    first, second = sorted([a[0], fork], key=lambda e: e.entry_id)
    return [([second, first], ["rejected:equivocation", "accepted"])], [1] if first is a[0] else [], 1


def _feed_time_goes_back(net: Net, a: list[VerifiedEntry]) -> Any:
    back = net.chain_of(2, minutes=lambda i: -i)  # seq 2 dated a minute before seq 1
    return [([back[0], back[1]], ["accepted", "rejected:feed-time"])], [], None


def _feed_time_same_instant_is_fine(net: Net, a: list[VerifiedEntry]) -> Any:
    same = net.chain_of(3, minutes=lambda i: 0)
    return [(same, ["accepted"] * 3)], [], None


def _feed_time_ahead_of_the_chain(net: Net, a: list[VerifiedEntry]) -> Any:
    # Seq 3 dated before the head (seq 1) can never follow it: refused, not held.
    back = net.chain_of(3, minutes=lambda i: {0: 10, 1: 20, 2: 5}[i])
    return [([back[0]], ["accepted"]), ([back[2]], ["rejected:feed-time"])], [], None


def _feed_time_on_release(net: Net, a: list[VerifiedEntry]) -> Any:
    # Seq 3 is after the head when held but before seq 2, which comes later: dropped on release.
    back = net.chain_of(3, minutes=lambda i: {0: 0, 1: 20, 2: 10}[i])
    return [([back[0]], ["accepted"]), ([back[2]], ["held"]), ([back[1]], ["accepted"])], [], None


def _future_dated(net: Net, a: list[VerifiedEntry]) -> Any:
    skew = FeedLimits().max_future
    late = net.chain_of(2, start=24 * 60 + skew.total_seconds() / 60, minutes=lambda i: i / 60)
    # Day 3 + 300 s is at the edge (accepted); one second later is not.
    return [([late[0], late[1]], ["accepted", "rejected:future-dated"])], [], None


CASES: dict[str, Callable[[Net, list[VerifiedEntry]], Any]] = {
    "in_order": _in_order,
    "duplicate_is_idempotent": _duplicate,
    "gap_held_then_released": _gap_held_then_released,
    "released_in_the_same_batch": _released_in_the_same_batch,
    "prev_mismatch": _prev_mismatch,
    "equivocation_at_a_stored_seq": _equivocation_at_a_stored_seq,
    "equivocation_between_held_entries": _equivocation_between_held_entries,
    "equivocation_in_one_batch": _equivocation_in_one_batch,
    "feed_time_goes_back": _feed_time_goes_back,
    "feed_time_same_instant_is_fine": _feed_time_same_instant_is_fine,
    "feed_time_ahead_of_the_chain": _feed_time_ahead_of_the_chain,
    "feed_time_on_release": _feed_time_on_release,
    "future_dated": _future_dated,
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_feed_rules(net: Net, case: Callable[[Net, list[VerifiedEntry]], Any]) -> None:
    a = net.chain_of(4)
    deliveries, want_feed, fork_seq = case(net, a)
    book = Book()
    for batch, want in deliveries:
        plan = book.offer(batch, now=net.now)
        assert _statuses(plan, batch) == want
    if want_feed:
        assert book.feed("alpha") == [a[s - 1].entry_id for s in want_feed]
    state = book.states.get("alpha", FeedState())
    assert state.fork_seq == fork_seq
    if fork_seq is not None:
        [proof] = book.proofs.values()
        proof.verify(net.world.chain1)
        assert (proof.lab, proof.seq) == ("alpha", fork_seq)
        assert all(s < fork_seq for s in state.held)
    # The state the plans leave says what the book holds.
    assert set(state.held.values()) == {v.entry_id for v in book.held.values() if v.lab == "alpha"}
    if state.head is not None:
        assert book.slots[("alpha", state.head.seq)].entry_id == state.head.entry_id
        assert state.head_issued_at == book.slots[("alpha", state.head.seq)].statement.issued_at


def test_dropped_on_release_is_reported(net: Net) -> None:
    back = net.chain_of(3, minutes=lambda i: {0: 0, 1: 20, 2: 10}[i])
    book = Book()
    book.offer([back[0], back[2]], now=net.now)
    plan = book.offer([back[1]], now=net.now)
    [(entry, err)] = plan.dropped
    assert entry.entry_id == back[2].entry_id and isinstance(err, FeedTimeError)
    assert "never decreases" in err.message
    assert plan.unhold == {back[2].entry_id} and book.held == {} and book.states["alpha"].head == Head(
        2, back[1].entry_id)


def test_future_dated_entry_is_taken_once_its_time_has_come(net: Net) -> None:
    late = net.chain_of(1, start=24 * 60 + 60)  # an hour after the verifier's clock
    book = Book()
    [verdict] = book.offer(late, now=net.now).verdicts.values()
    assert isinstance(verdict.error, FutureDatedError) and "ahead of this verifier's clock" in verdict.error.message
    assert book.states == {} and book.held == {}  # refused: nothing kept, not even held
    assert book.offer(late, now=net.now + timedelta(minutes=56)).verdicts[late[0].entry_id].status == "accepted"
    limits = FeedLimits(max_future=timedelta(hours=2))
    assert Book().offer(late, now=net.now, limits=limits).verdicts[late[0].entry_id].status == "accepted"


def test_hold_is_bounded_per_lab_and_in_total(net: Net) -> None:
    a, b = net.chain_of(5), net.chain_of(3, lab="beta")
    plan = Book().offer(a[2:], now=net.now, limits=FeedLimits(hold_per_lab=2))
    assert _statuses(plan, a[2:]) == ["held", "held", "rejected:hold-full"]
    book = Book()
    book.offer(a[3:], now=net.now)
    plan = book.offer([b[2], b[1]], now=net.now, limits=FeedLimits(hold_total=3))
    assert _statuses(plan, [b[1], b[2]]) == ["held", "rejected:hold-full"]


def test_a_received_proof_freezes_from_its_seq_and_forgets_held_entries_past_it(net: Net) -> None:
    a = net.chain_of(5)
    proof = EquivocationProof.of(a[2], net.fork_at(a, 3))
    book = Book()
    book.offer([a[3], a[4], a[1]], now=net.now)  # held: 2, 4, 5
    plan = book.offer([], now=net.now, proofs=[proof])
    assert plan.unhold == {a[3].entry_id, a[4].entry_id} and plan.proofs == [proof]
    assert book.states["alpha"] == FeedState(None, None, 3, {2: a[1].entry_id})
    # Positions before the fork are not in dispute: every verifier can still agree on them.
    plan = book.offer(a, now=net.now)
    assert _statuses(plan, a) == ["accepted", "accepted"] + ["rejected:feed-forked"] * 3
    assert book.feed("alpha") == [a[0].entry_id, a[1].entry_id] and book.held == {}
    # A proof at a later seq does not thaw anything; one at an earlier seq moves the fork back.
    book.offer([], now=net.now, proofs=[EquivocationProof.of(a[3], net.fork_at(a, 4))])
    assert book.states["alpha"].fork_seq == 3 and len(book.proofs) == 2


def test_roster_update_entry_applies_its_roster(net: Net, world: Any) -> None:
    unsigned = world.v2.model_copy(update={"signatures": world.v2.signatures[:1]})
    good, bad = (
        verify_entry(net.writer("alpha").append("roster_update", {"roster": r.to_dict()}, net.gen.at(days=2))[0],
                     world.chain1)
        for r in (world.v2, unsigned)
    )
    book = Book(RosterChain(list(world.chain1.versions)))
    plan = book.offer([bad], now=net.now)
    assert _statuses(plan, [bad]) == ["rejected:roster-threshold"] and plan.rosters == [] and book.states == {}
    plan = book.offer([good], now=net.now)
    assert _statuses(plan, [good]) == ["accepted"] and [r.version for r in plan.rosters] == [2]
    assert book.chain is not None and book.chain.current.version == 2


def test_the_planner_changes_nothing_it_is_given(net: Net) -> None:
    a = net.chain_of(3)
    states = {"alpha": FeedState(Head(1, a[0].entry_id), a[0].statement.issued_at, None, {3: a[2].entry_id})}
    book = Book()
    book.slots[("alpha", 1)], book.held[a[2].entry_id] = a[0], a[2]
    before = {k: FeedState(v.head, v.head_issued_at, v.fork_seq, dict(v.held)) for k, v in states.items()}
    plan = plan_appends(states, [a[1]], book, now=net.now, stored={a[0].entry_id})
    assert states == before
    assert [v.seq for v in plan.appends] == [2, 3] and plan.unhold == {a[2].entry_id}
    assert plan.states["alpha"] == FeedState(Head(3, a[2].entry_id), a[2].statement.issued_at, None, {})


@pytest.mark.parametrize(
    ("a", "b"),
    [("2025-01-01T00:00:00Z", "2025-01-01T00:00:00.5Z"), ("2025-01-01T00:00:00.999999999Z", "2025-01-01T00:00:01Z"),
     ("2024-12-31T23:59:59.1Z", "2025-01-01T00:00:00Z"), ("2025-01-01T00:00:00.1Z", "2025-01-01T00:00:00.10000001Z")],
    ids=["fraction-after-whole", "nanos-before-next-second", "year-boundary", "long-fraction"],
)
def test_time_key_orders_like_time(a: str, b: str) -> None:
    assert time_key(a) < time_key(b)
    assert time_key("2025-01-01T00:00:00Z") == time_key("2025-01-01T00:00:00.000Z")


# --- property: the final feed does not depend on the delivery order ------------------------------


@pytest.fixture(scope="module")
def two_feeds(net: Net) -> list[VerifiedEntry]:
    return net.chain_of(6, minutes=lambda i: i // 2) + net.chain_of(5, lab="beta")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_delivery_order_gives_the_same_final_feed(net: Net, two_feeds: list[VerifiedEntry],
                                                      data: st.DataObject) -> None:
    order = data.draw(st.permutations(two_feeds), label="order")
    again = data.draw(st.lists(st.sampled_from(two_feeds), max_size=6), label="re-deliveries")
    offered = order + again
    cuts = sorted(data.draw(st.sets(st.integers(1, len(offered) - 1), max_size=6), label="cuts"))
    book = Book()
    for lo, hi in zip([0, *cuts], [*cuts, len(offered)], strict=True):
        plan = book.offer(offered[lo:hi], now=net.now)
        assert all(v.error is None for v in plan.verdicts.values())
    for lab in ("alpha", "beta"):
        want = [v.entry_id for v in two_feeds if v.lab == lab]
        assert book.feed(lab) == want
        assert book.states[lab] == FeedState(Head(len(want), want[-1]),
                                             two_feeds[[v.entry_id for v in two_feeds].index(want[-1])].statement.issued_at)
    assert book.held == {} and sorted(book.log) == sorted(v.entry_id for v in two_feeds)
