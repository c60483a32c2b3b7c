"""Roster chains, feed rules and quorum tallies on the deterministic vector network."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from protocol.canonical import parse_time
from protocol.entries import NoteBody, PauseCertificateBody, VoteBody
from protocol.errors import (
    EquivocationError,
    ForkedFeedError,
    HoldFullError,
    InsufficientQuorumError,
    PrevMismatchError,
    RosterError,
    RosterExpiredError,
    SchemaError,
    UnknownLabError,
)
from protocol.feed import (
    Decision,
    EquivocationProof,
    FeedWriter,
    Head,
    OutOfOrderHold,
    check_append,
    verify_feed,
)
from protocol.quorum import tally, verify_certificate
from protocol.roster import RosterChain, roster_envelope, verify_entry


def test_chain_keeps_every_version_and_reapplying_is_idempotent(world: Any) -> None:
    chain = RosterChain.from_envelopes([world.genesis, world.v2])
    assert [v.version for v in chain.versions] == [1, 2]
    assert chain.apply(world.v2) is chain.current
    assert chain.apply(world.genesis) is chain.get(1)
    assert chain.network_id == world.network == chain.current.network_id
    assert chain.current.signed_by == frozenset({"alpha", "beta"})


def test_rotated_key_still_proves_history_but_new_key_is_required_after(world: Any) -> None:
    # spec §7.4: alpha-1 signed seq 1..3 while v1 was current; they verify under the v2 chain.
    for name in ("alpha-1", "alpha-2", "alpha-3"):
        ve = verify_entry(world.env(name), world.chain2)
        assert ve.roster_version == 1
    assert verify_entry(world.env("alpha-4"), world.chain2).roster_version == 2


def test_removed_lab_history_still_verifies(gen: ModuleType, world: Any) -> None:
    # v2 without gamma: gamma's entries from the v1 era must still verify (was UnknownLabError).
    r1 = world.chain1.current.roster
    r2 = r1.model_copy(update={
        "version": 2, "previous": world.network, "network": world.network,
        "labs": [lab for lab in r1.labs if lab.id != "gamma"], "issued_at": gen.at(days=30),
        "expires": gen.at(days=400),
    })
    env = roster_envelope(r2, [gen.key("alpha-1"), gen.key("beta-1")])
    chain = RosterChain.from_envelopes([world.genesis, env])
    assert verify_entry(world.env("gamma-1"), chain).roster_version == 1
    late = world.sign_statement_dict({**world.statement("gamma-1"), "issued_at": gen.at(days=31)}, "gamma-1")
    with pytest.raises(UnknownLabError, match="lab 'gamma' is not in roster v2"):
        verify_entry(late, chain)


def test_roster_update_must_be_issued_after_its_predecessor(gen: ModuleType, world: Any) -> None:
    r = gen.draft(2, ["alpha-2"], previous=world.network, network=world.network)
    r = r.model_copy(update={"issued_at": gen.at(days=0), "expires": gen.at(days=10)})
    env = roster_envelope(r, [gen.key("alpha-1"), gen.key("alpha-2"), gen.key("beta-1")])
    with pytest.raises(RosterError, match="not after v1"):
        RosterChain.from_envelopes([world.genesis, env])


def test_expired_roster_refuses_new_votes_but_not_reads(gen: ModuleType, world: Any) -> None:
    late = parse_time(gen.at(days=366))
    assert verify_entry(world.env("alpha-1"), world.chain1, now=late).seq == 1
    with pytest.raises(RosterExpiredError, match="no new votes are accepted"):
        verify_entry(world.env("beta-1"), world.chain1, now=late)


# --- feed rules (spec §4) ----------------------------------------------------------------


def _verified(world: Any, *names: str) -> list[Any]:
    return [verify_entry(world.env(n), world.chain1) for n in names]


def test_check_append_decisions(world: Any) -> None:
    a1, a2, a3 = _verified(world, "alpha-1", "alpha-2", "alpha-3")
    assert check_append(a1, None, None) is Decision.APPEND
    assert check_append(a2, Head(1, a1.entry_id), None) is Decision.APPEND
    assert check_append(a1, Head(2, a2.entry_id), a1) is Decision.DUPLICATE
    assert check_append(a3, Head(1, a1.entry_id), None) is Decision.HOLD
    with pytest.raises(PrevMismatchError, match="is not the id of seq 1"):
        check_append(a2, Head(1, "f" * 64), None)
    with pytest.raises(ForkedFeedError, match="frozen after a proven equivocation"):
        check_append(a2, Head(1, a1.entry_id), None, forked=True)
    with pytest.raises(SchemaError, match="nothing is held there"):
        check_append(a1, Head(2, a2.entry_id), None)


def test_equivocation_carries_a_verifiable_proof(world: Any, gen: ModuleType) -> None:
    a3 = verify_entry(world.env("alpha-3"), world.chain1)
    alt = verify_entry(gen._alt_vote(world), world.chain1)
    with pytest.raises(EquivocationError, match="signed two different entries at seq 3") as info:
        check_append(alt, Head(3, a3.entry_id), a3)
    proof = info.value.proof
    assert isinstance(proof, EquivocationProof)
    proof.verify(world.chain2)
    again = EquivocationProof.parse(proof.model_dump(mode="json"))
    assert again.proof_id == proof.proof_id == EquivocationProof.of(a3, alt).proof_id


def test_out_of_order_hold_is_bounded_and_detects_equivocation(world: Any, gen: ModuleType) -> None:
    a2, a3, b1 = _verified(world, "alpha-2", "alpha-3", "beta-1")
    hold = OutOfOrderHold(max_per_lab=1, max_total=2)
    hold.add(a3)
    hold.add(a3)  # idempotent
    assert len(hold) == 1
    with pytest.raises(EquivocationError):
        hold.add(verify_entry(gen._alt_vote(world), world.chain1))
    with pytest.raises(HoldFullError, match="hold is full for lab 'alpha'"):
        hold.add(a2)
    hold.add(b1)
    assert hold.pop_next("alpha", 3) is a3 and hold.pop_next("alpha", 3) is None
    hold.drop_through("beta", 5)
    assert len(hold) == 0


def test_verify_feed_skips_redelivery(world: Any) -> None:
    envs = [world.env(n) for n in ("alpha-1", "alpha-2", "alpha-2", "alpha-3")]
    assert [e.seq for e in verify_feed(envs, world.chain1)] == [1, 2, 3]
    a1 = verify_entry(world.env("alpha-1"), world.chain1)
    assert [e.seq for e in verify_feed(envs[2:], world.chain1, after=Head(1, a1.entry_id))] == [2, 3]


def test_feed_writer_chains_its_own_entries(world: Any, gen: ModuleType) -> None:
    w = FeedWriter(world.network, "gamma", gen.key("gamma-1"),
                   Head(1, world.eid("gamma-1")))
    e2, id2 = w.append("note", NoteBody(text="hello"), gen.at(days=2))
    e3, _ = w.append("note", {"text": "again", "refs": [id2]}, gen.at(days=3))
    out = verify_feed([e2, e3], world.chain1, after=Head(1, world.eid("gamma-1")))
    assert [v.statement.prev for v in out] == [world.eid("gamma-1"), id2]


# --- quorum (spec §6.5) ------------------------------------------------------------------


def test_tally_result_fields(world: Any) -> None:
    p, a3, b1, g1 = _verified(world, "alpha-2", "alpha-3", "beta-1", "gamma-1")
    roster = world.chain1.current.roster
    r = tally(p, [g1, b1, a3], roster)
    assert bool(r) and r.threshold == 3 and r.weight == 3
    assert r.signed == {"alpha", "beta"} and r.objected == {"gamma"} and not r.missing
    r.verify()
    partial = tally(p, [b1], roster)
    assert not partial and partial.missing == {"alpha", "gamma"}
    with pytest.raises(InsufficientQuorumError, match="has weight 1 of 3"):
        partial.verify()
    empty = tally(p, [], roster)
    assert not empty and empty.weight == 0


def test_first_vote_counts_whatever_the_delivery_order(world: Any, gen: ModuleType) -> None:
    p, b1 = _verified(world, "alpha-2", "beta-1")
    pid = world.statement("beta-1")["body"]["proposal_id"]
    w = FeedWriter(world.network, "beta", gen.key("beta-1"), Head(2, world.eid("beta-2")))
    later, _ = w.append("vote", VoteBody(proposal_id=pid, action="pause", decision="object"), gen.at(days=2))
    b3 = verify_entry(later, world.chain1)
    roster = world.chain1.current.roster
    for order in ([b1, b3], [b3, b1]):
        assert tally(p, order, roster).signed == {"beta"}


def test_certificate_verifies_offline_from_the_roster(world: Any) -> None:
    cert = PauseCertificateBody.model_validate(world.statement("beta-2")["body"])
    r = verify_certificate(cert, world.chain2)
    assert r.signed == {"alpha", "beta"} and r.proposal_id == cert.proposal_id
