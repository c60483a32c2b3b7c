"""Membership and time that back-dating cannot beat: roster pins and the governing version
(spec §7.7), each attack a test named after it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from protocol.canonical import canonical_bytes, entry_id
from protocol.entries import (
    DocRef,
    NoteBody,
    PauseCertificateBody,
    PauseProposalBody,
    ResumeProposalBody,
    Trigger,
    VoteBody,
    pause_proposal_id,
    resume_proposal_id,
)
from protocol.envelope import Envelope
from protocol.errors import (
    OversizeError,
    PinMismatchError,
    QuorumError,
    RevokedError,
    RosterError,
    SchemaError,
    UnknownLabError,
)
from protocol.feed import FeedWriter, Head
from protocol.quorum import verify_certificate
from protocol.roster import (
    Roster,
    RosterChain,
    RosterPin,
    draft_roster,
    parse_roster,
    pins_from_heads,
    roster_envelope,
    verify_entry,
)

# --- the pinned v2 of the vector network: alpha's key rotated, gamma removed ---------------


@pytest.fixture(scope="module")
def pinned(gen: ModuleType, world: Any) -> RosterChain:
    return RosterChain.from_envelopes([world.genesis, gen.pinned_v2(world)])


def _after(gen: ModuleType, world: Any, base: str, signer: str, seq: int, prev: str, issued_at: str,
           **changes: Any) -> Envelope:
    st = {**world.statement(base), "seq": seq, "prev": prev, "issued_at": issued_at, **changes}
    return world.sign_statement_dict(st, signer)


def test_rosters_without_pins_keep_their_canonical_bytes(gen: ModuleType, world: Any) -> None:
    r2 = gen.draft(2, ["alpha-2"], previous=world.network, network=world.network)
    dumped = r2.model_dump(mode="json")
    assert "pins" not in dumped
    assert canonical_bytes(dumped) == world.v2.payload_bytes()
    assert parse_roster(json.loads(world.v2.payload_bytes())).pins is None


def test_pins_round_trip_through_the_roster_bytes(gen: ModuleType, world: Any) -> None:
    v2 = gen.pinned_v2(world)
    roster = parse_roster(json.loads(v2.payload_bytes()))
    assert [p.lab for p in roster.pins or ()] == ["alpha", "beta", "gamma"]
    assert canonical_bytes(roster.model_dump(mode="json")) == v2.payload_bytes()
    assert roster.pin("gamma") == RosterPin(lab="gamma", seq=1, entry_id=world.eid("gamma-1"))
    assert roster.pin("delta") is None


def _pins_case(gen: ModuleType, world: Any, version: int, pins: Any) -> dict[str, Any]:
    prev = None if version == 1 else world.network
    base = gen.draft(version, ["alpha-1"], previous=prev, network=prev).model_dump(mode="json")
    return {**base, "pins": pins}


def _pin(lab: str, seq: int, eid: str | None) -> dict[str, Any]:
    return {"lab": lab, "seq": seq, "entry_id": eid}


E = "e" * 64


@pytest.mark.parametrize(
    ("version", "pins", "message"),
    [
        (1, [_pin("alpha", 0, None)], "only in roster updates"),
        (2, [_pin("beta", 0, None), _pin("alpha", 0, None)], "sorted by lab id"),
        (2, [_pin("alpha", 0, None), _pin("alpha", 1, E)], "at most once"),
        (2, [_pin("alpha", 0, E)], "null exactly when seq is 0"),
        (2, [_pin("alpha", 3, None)], "null exactly when seq is 0"),
        (2, [_pin("alpha", -1, None)], "greater than or equal to 0"),
        (2, [], "at least 1 item"),
        (2, None, "omitted, not null"),
        (2, [_pin(f"lab-{i:03d}", 0, None) for i in range(257)], "at most 256 items"),
    ],
    ids=["pins-in-genesis", "unsorted", "duplicate-lab", "empty-feed-with-id", "seq-without-id",
         "negative-seq", "empty-list", "explicit-null", "too-many"],
)
def test_malformed_pins_are_refused(gen: ModuleType, world: Any, version: int, pins: Any, message: str) -> None:
    # A list over its bound is `oversize` (spec §2.4), not `schema`.
    error = OversizeError if message == "at most 256 items" else SchemaError
    with pytest.raises(error, match=message):
        parse_roster(_pins_case(gen, world, version, pins))


def _v2(gen: ModuleType, world: Any, pins: list[RosterPin], **changes: Any) -> Envelope:
    base = gen.draft(2, ["alpha-2"], previous=world.network, network=world.network).model_dump(mode="json")
    r = parse_roster({**base, **changes, "pins": [p.model_dump(mode="json") for p in pins]})
    return roster_envelope(r, [gen.key("alpha-1"), gen.key("alpha-2"), gen.key("beta-1")])


def test_roster_update_may_pin_only_labs_of_the_previous_version(gen: ModuleType, world: Any) -> None:
    env = _v2(gen, world, [RosterPin(lab="regulator", seq=0, entry_id=None)])
    with pytest.raises(RosterError, match="pins regulator, not a lab of v1"):
        RosterChain.from_envelopes([world.genesis, env])


def _v3(gen: ModuleType, world: Any, v2: Envelope, pins: list[RosterPin]) -> Envelope:
    base = gen.draft(3, ["alpha-2"], previous=entry_id(v2.payload_bytes()), network=world.network)
    r = parse_roster({**base.model_dump(mode="json"), "pins": [p.model_dump(mode="json") for p in pins]})
    return roster_envelope(r, [gen.key("alpha-2"), gen.key("beta-1")])


@pytest.mark.parametrize(
    ("seq", "name", "error"),
    [(3, "alpha-3", None), (4, "alpha-4", None), (2, "alpha-2", "behind or beside v2's pin"),
     (3, "alpha-2", "behind or beside v2's pin")],
    ids=["same-pin", "advances", "moves-back", "same-seq-other-entry"],
)
def test_pins_never_move_back_along_the_chain(gen: ModuleType, world: Any, seq: int, name: str,
                                              error: str | None) -> None:
    v2 = _v2(gen, world, [RosterPin(lab="alpha", seq=3, entry_id=world.eid("alpha-3"))])
    v3 = _v3(gen, world, v2, [RosterPin(lab="alpha", seq=seq, entry_id=world.eid(name))])
    if error is None:
        assert RosterChain.from_envelopes([world.genesis, v2, v3]).current.version == 3
    else:
        with pytest.raises(RosterError, match=error):
            RosterChain.from_envelopes([world.genesis, v2, v3])


# --- the governing version ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lab", "seq", "days", "expected"),
    [
        ("alpha", 1, 1, 1),
        ("alpha", 3, 1, 1),
        ("alpha", 4, 2, 2),
        ("alpha", 4, -5, 2),
        ("alpha", 4, 31, 2),
        ("alpha", 2, 31, 1),
        ("gamma", 2, 2, 2),
        ("beta", 2, 31, 1),
        ("beta", 3, 1, 2),
    ],
    ids=["history", "at-pin", "after-pin-backdated", "after-pin-before-genesis", "after-pin-in-window",
         "before-pin-late-clock", "removed-lab-after-pin", "at-pin-late-clock", "vote-after-pin-backdated"],
)
def test_governing_version_follows_position_then_date(gen: ModuleType, pinned: RosterChain, lab: str,
                                                      seq: int, days: float, expected: int) -> None:
    assert pinned.governing_version(lab, seq, gen.at(days=days)) == expected


def test_without_pins_the_date_window_governs(gen: ModuleType, world: Any) -> None:
    chain = world.chain2
    assert chain.governing_version("alpha", 99, gen.at(days=2)) == 1
    assert chain.governing_version("alpha", 1, gen.at(days=31)) == 2
    assert chain.pin_bounds("alpha", 99) == (1, 2)


def test_pinned_history_verifies_under_its_version(world: Any, pinned: RosterChain) -> None:
    # Removed gamma's and rotated alpha's pinned history keep verifying (spec §7.4, §7.7).
    assert verify_entry(world.env("gamma-1"), pinned).roster_version == 1
    assert verify_entry(world.env("alpha-3"), pinned).roster_version == 1
    assert verify_entry(world.env("alpha-4"), pinned).roster_version == 2


# --- the attacks ---------------------------------------------------------------------------


@dataclass
class Attack:
    signer: str
    base: str
    seq: int
    prev: str
    days: float
    error: type[Exception]
    code: str
    message: str
    changes: dict[str, Any] = field(default_factory=dict)


ATTACKS = {
    "test_removed_lab_backdated_entry_refused": Attack(
        "gamma-1", "gamma-1", 2, "gamma-1", 2, RevokedError, "revoked", "lab 'gamma' is not in roster v2 or later"),
    "test_removed_lab_entry_dated_after_removal_refused": Attack(
        "gamma-1", "gamma-1", 2, "gamma-1", 31, UnknownLabError, "unknown-lab", "lab 'gamma' is not in roster v2"),
    "test_rotated_out_key_after_pin_refused": Attack(
        "alpha-1", "alpha-4", 4, "alpha-3", 2, RevokedError, "revoked", "is no key of lab 'alpha' from v2 on"),
    "test_rotated_out_key_backdated_before_genesis_refused": Attack(
        "alpha-1", "alpha-4", 4, "alpha-3", -30, RevokedError, "revoked", "follows roster v2's pin at seq 3"),
    "test_backdated_breaching_result_after_pin_refused": Attack(
        "gamma-1", "alpha-1", 2, "gamma-1", 2, RevokedError, "revoked", "gamma", {"lab": "gamma"}),
}


@pytest.mark.parametrize("attack", list(ATTACKS.values()), ids=list(ATTACKS))
def test_backdated_entries_after_a_pin_are_refused(gen: ModuleType, world: Any, pinned: RosterChain,
                                                   attack: Attack) -> None:
    env = _after(gen, world, attack.base, attack.signer, attack.seq, world.eid(attack.prev),
                 gen.at(days=attack.days), **attack.changes)
    with pytest.raises(attack.error, match=attack.message) as err:
        verify_entry(env, pinned)
    assert err.value.code == attack.code  # type: ignore[attr-defined]


def test_new_key_signs_the_positions_after_its_pin_whatever_their_date(
    gen: ModuleType, world: Any, pinned: RosterChain
) -> None:
    env = _after(gen, world, "alpha-4", "alpha-2", 4, world.eid("alpha-3"), gen.at(days=2))
    assert verify_entry(env, pinned).roster_version == 2


def test_entry_at_a_pinned_seq_must_be_the_pinned_entry(gen: ModuleType, world: Any, pinned: RosterChain) -> None:
    alt = gen._alt_vote(world)  # another alpha entry at seq 3, signed with the then-valid key
    with pytest.raises(PinMismatchError, match="is not the entry roster v2 pins there") as err:
        verify_entry(alt, pinned)
    assert err.value.code == "pin-mismatch"


def test_backdated_vote_governed_by_newer_version(gen: ModuleType, world: Any, pinned: RosterChain) -> None:
    # beta votes at seq 3 (after v2's pin at seq 2) but dates the vote into v1's window.
    vote = _after(gen, world, "beta-1", "beta-1", 3, world.eid("beta-2"), gen.at(days=2))
    assert verify_entry(vote, pinned).roster_version == 2
    cert = {**world.statement("beta-2")["body"], "votes": [world.env("alpha-3").to_dict(), vote.to_dict()]}
    with pytest.raises(QuorumError, match="it is governed by v2, not v1"):
        verify_certificate(PauseCertificateBody.model_validate(cert), pinned)


def test_certificate_of_pinned_history_still_verifies(world: Any, pinned: RosterChain) -> None:
    cert = PauseCertificateBody.model_validate(world.statement("beta-2")["body"])
    assert verify_certificate(cert, pinned)


# --- the observed attack end to end: a lab ends a pause alone by back-dating -----------------


@dataclass
class Net:
    gen: ModuleType
    network: str
    genesis: Envelope
    writers: dict[str, FeedWriter]

    def post(self, lab: str, kind: str, body: Any, days: float) -> Envelope:
        return self.writers[lab].append(kind, body, self.gen.at(days=days))[0]

    def heads(self) -> dict[str, tuple[int, str]]:
        return {lab: (w.head.seq, w.head.entry_id) for lab, w in self.writers.items() if w.head}


def _labs(gen: ModuleType) -> list[tuple[str, str, list[Any], str, int]]:
    return [(lab, lab.title(), [gen.key(f"{lab}-1").public_key], f"https://{lab}.example/", w)
            for lab, w in (("alpha", 2), ("beta", 1), ("gamma", 1))]


def _roster(gen: ModuleType, *, version: int, resume_weight: int, days: float, previous: str | None = None,
            network: str | None = None, pins: list[RosterPin] | None = None) -> Roster:
    return draft_roster(
        network_name="membership", labs=_labs(gen), pause_weight=3, resume_weight=resume_weight,
        roster_threshold=2, policy_digest=gen.POLICY_DIGEST, issued_at=gen.at(days=days),
        expires=gen.at(days=400), version=version, previous=previous, network=network, pins=pins or (),
    )


def _founded(gen: ModuleType) -> Net:
    g = _roster(gen, version=1, resume_weight=2, days=0)
    genesis = roster_envelope(g, [gen.key("alpha-1"), gen.key("beta-1"), gen.key("gamma-1")])
    network = entry_id(genesis.payload_bytes())
    writers = {lab: FeedWriter(network, lab, gen.key(f"{lab}-1")) for lab in ("alpha", "beta", "gamma")}
    return Net(gen, network, genesis, writers)


def _resume_attack(gen: ModuleType, *, pinned_update: bool) -> tuple[RosterChain, PauseCertificateBody]:
    """v1 needs weight 2 to resume (alpha alone); v2 raises it to 4 (everyone). After v2,
    alpha writes a resume proposal and its vote dated before v2 and certifies them under v1."""
    net = _founded(gen)
    trigger = Trigger(result="1" * 64, lab="beta", rule="bio-uplift", policy_digest=gen.POLICY_DIGEST)
    pause = PauseProposalBody(proposal_id=pause_proposal_id(trigger), trigger=trigger, observed="0.8",
                              level="0.7")
    net.post("beta", "pause_proposal", pause, 1)
    net.post("beta", "vote", VoteBody(proposal_id=pause.proposal_id, action="pause", decision="pause"), 1)
    net.post("alpha", "note", NoteBody(text="acknowledged"), 1)
    pins = pins_from_heads(RosterChain.from_envelopes([net.genesis]), net.heads()) if pinned_update else None
    v2 = _roster(gen, version=2, resume_weight=4, days=10, previous=net.network, network=net.network, pins=pins)
    chain = RosterChain.from_envelopes(
        [net.genesis, roster_envelope(v2, [gen.key("alpha-1"), gen.key("beta-1"), gen.key("gamma-1")])]
    )
    docs = [DocRef(name="safety case", sha256="2" * 64)]
    resume = ResumeProposalBody(proposal_id=resume_proposal_id(pause.proposal_id, docs),
                                pause_proposal=pause.proposal_id, safety_case=docs)
    proposal = net.post("alpha", "resume_proposal", resume, 9)  # back-dated before v2 (day 10)
    vote = net.post("alpha", "vote", VoteBody(proposal_id=resume.proposal_id, action="resume",
                                              decision="resume"), 9)
    cert = PauseCertificateBody(proposal_id=resume.proposal_id, action="resume", roster_version=1,
                                proposal=proposal, votes=[vote])
    return chain, cert


def test_lab_cannot_end_a_pause_alone_by_backdating_before_a_quorum_raise(gen: ModuleType) -> None:
    chain, cert = _resume_attack(gen, pinned_update=True)
    with pytest.raises(QuorumError, match="it is governed by v2, not v1"):
        verify_certificate(cert, chain)
    assert verify_entry(cert.votes[0], chain).roster_version == 2


def test_without_pins_the_backdated_resume_still_counts(gen: ModuleType) -> None:
    # What pins fix: with a date-only window the lone resume passes under v1.
    chain, cert = _resume_attack(gen, pinned_update=False)
    assert verify_certificate(cert, chain).signed == frozenset({"alpha"})


# --- tooling: pins from a node's heads -------------------------------------------------------


def test_pins_from_heads_cover_every_lab_and_never_fall_behind(gen: ModuleType, world: Any) -> None:
    fresh = pins_from_heads(world.chain1, {"alpha": (3, world.eid("alpha-3"))})
    assert fresh == [RosterPin(lab="alpha", seq=3, entry_id=world.eid("alpha-3")),
                     RosterPin(lab="beta", seq=0, entry_id=None),
                     RosterPin(lab="gamma", seq=0, entry_id=None)]
    v2 = _v2(gen, world, [RosterPin(lab="alpha", seq=3, entry_id=world.eid("alpha-3"))])
    chain = RosterChain.from_envelopes([world.genesis, v2])
    # A node that holds less than v2's signers did still pins alpha where v2 did.
    stale = pins_from_heads(chain, {"alpha": (1, world.eid("alpha-1"))})
    assert stale[0] == RosterPin(lab="alpha", seq=3, entry_id=world.eid("alpha-3"))
    head = Head(4, world.eid("alpha-4"))
    assert pins_from_heads(chain, {"alpha": (head.seq, head.entry_id)})[0].seq == 4


# --- the positive vector file ---------------------------------------------------------------


def test_roster_pins_vector_verifies(gen: ModuleType) -> None:
    path = gen.HERE / "roster_pins.json"
    v = json.loads(path.read_text())
    chain = RosterChain.from_envelopes([Envelope.parse(e) for e in v["roster_chain"]])
    for case in v["governing_version"]:
        assert chain.governing_version(case["lab"], case["seq"], case["issued_at"]) == case["governing_version"]
    for e in v["entries"]:
        ve = verify_entry(Envelope.parse(e["envelope"]), chain)
        assert (ve.entry_id, ve.roster_version) == (e["entry_id"], e["roster_version"])
