"""The pause state machine (spec §6.6) against its vectors, and its order independence."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from protocol.envelope import Envelope
from protocol.errors import PeerDataError
from protocol.pause import Flag, pause_state
from protocol.quorum import verify_certificate
from protocol.roster import RosterChain, verify_entry

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "specs" / "vectors" / "pause.json").read_text())
CHAIN = RosterChain.from_envelopes([Envelope.model_validate(e) for e in VECTORS["roster_chain"]])
CASES = VECTORS["cases"]


def _state(case: dict[str, Any], order: list[int] | None = None) -> dict[str, Any]:
    envs = [Envelope.model_validate(e) for e in case["entries"]]
    if order is not None:
        envs = [envs[i] for i in order]
    held = [verify_entry(e, CHAIN) for e in envs]
    ids = {e.entry_id for e in held}
    st = pause_state(held, CHAIN, heads=case["heads"], held_ids=ids.__contains__)
    return {
        "paused": st.paused,
        "active": sorted(st.active),
        "resumed": sorted(st.resumed),
        "scopes": {pid: None if (sc := st.scope_of(pid)) is None else sc.model_dump(mode="json", exclude_none=True)
                   for pid in sorted(st.active)},
        "flags": [{"kind": f.kind, "lab": f.lab, "code": f.code} for f in st.flags],
    }


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_pause_state_vector(case: dict[str, Any]) -> None:
    assert _state(case) == case["expected"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_pause_state_does_not_depend_on_delivery_order(case: dict[str, Any]) -> None:
    rng = random.Random(case["name"])
    n = len(case["entries"])
    for _ in range(10):
        order = list(range(n)) * 2  # duplicates too
        rng.shuffle(order)
        assert _state(case, order) == case["expected"]


def test_offline_party_without_the_feed_counts_the_unpublished_vote() -> None:
    """Step 7 works on what a party holds: without gamma's feed, nothing shows the vote at
    gamma's seq 1 was never published, so the certificate passes (and flips once the feed
    arrives — which is why nodes ship feeds with certificates)."""
    case = next(c for c in CASES if c["name"] == "unpublished_vote_not_counted")
    envs = [Envelope.model_validate(e) for e in case["entries"]]
    held = [verify_entry(e, CHAIN) for e in envs]
    without_gamma = [e for e in held if e.lab != "gamma"]
    assert pause_state(without_gamma, CHAIN, heads={"alpha": 5}).paused
    assert not pause_state(held, CHAIN, heads=case["heads"]).paused


def test_vote_after_roster_expiry_stays_out_of_an_honest_certificate(world: Any, gen: Any) -> None:
    """Finding 3: gamma objects with a vote dated after roster v1 expired. An honest
    producer puts only the counted supporting votes that can count under v1 into its
    certificate, so gamma's vote cannot make the certificate invalid anywhere."""
    from protocol.entries import PauseCertificateBody
    from protocol.pause import certifiable_tally, certificate_votes, vote_problem

    chain = world.chain1
    late = world.sign_statement_dict({**world.statement("gamma-1"), "issued_at": gen.at(days=400)}, "gamma-1")
    gamma_late = verify_entry(late, chain)  # accepted: verification alone has no clock
    alpha_vote, beta_vote = verify_entry(world.env("alpha-3"), chain), verify_entry(world.env("beta-1"), chain)
    proposal = verify_entry(world.env("alpha-2"), chain)
    assert "expired" in (vote_problem(gamma_late, chain, 1) or "")
    t = certifiable_tally(proposal, [alpha_vote, beta_vote, gamma_late], chain, 1)
    assert t and t.signed == {"alpha", "beta"} and "gamma" in t.missing
    votes = certificate_votes(t)
    cert = PauseCertificateBody(
        proposal_id=t.proposal_id, action="pause", roster_version=1, proposal=proposal.envelope,
        votes=[v.envelope for v in votes],
    )
    assert verify_certificate(cert, chain).signed == {"alpha", "beta"}
    # What the producer used to do: every counted vote, the late objection too.
    poisoned = cert.model_copy(update={"votes": [*cert.votes, late]})
    with pytest.raises(PeerDataError) as e:
        verify_certificate(poisoned, chain)
    assert e.value.code == "roster-expired"


def test_a_flag_on_the_wire_names_what_applies_and_nothing_else() -> None:
    plain = Flag(kind="late-vote", lab="beta", reason="after the deadline", entry_id="e" * 64, proposal_id="p" * 64)
    assert plain.to_json() == {
        "kind": "late-vote", "lab": "beta", "reason": "after the deadline", "entry_id": "e" * 64, "proposal_id": "p" * 64,
    }
    # An unset member is absent, never null, even when set to None explicitly.
    assert "code" not in Flag(kind="late-vote", lab="beta", reason="r", code=None).to_json()
    double = Flag(kind="double-vote", lab="gamma", reason="twice", counted="a", ignored=("b",), decisions=("pause", "object"))
    assert double.to_json() == {
        "kind": "double-vote", "lab": "gamma", "reason": "twice", "counted": "a", "ignored": ["b"],
        "decisions": ["pause", "object"],
    }
    # What clients read back is the same model; an unknown kind or member is refused.
    assert Flag.model_validate(double.to_json()) == double
    with pytest.raises(ValidationError):
        Flag.model_validate({**plain.to_json(), "kind": "made-up"})
    with pytest.raises(ValidationError):
        Flag.model_validate({**plain.to_json(), "extra": 1})
