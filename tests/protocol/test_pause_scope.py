"""Scoped pauses (spec §6.8) and discretionary pauses with a voting deadline (§6.9), on
real signed entries through the one pause state machine."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from protocol.canonical import format_time
from protocol.entries import (
    DiscretionaryTrigger,
    DocRef,
    PauseCertificateBody,
    PauseProposalBody,
    ResumeProposalBody,
    Trigger,
    VerifiedEntry,
    VoteBody,
    pause_proposal_id,
    resume_proposal_id,
)
from protocol.errors import SchemaError
from protocol.feed import FeedWriter
from protocol.keys import SigningKey
from protocol.pause import certifiable_tally, certificate_votes, pause_state
from protocol.roster import RosterChain, draft_roster, roster_envelope, verify_entry
from protocol.scope import Run, Scope, covers, describe, will_cover

LABS = ["alpha", "beta", "gamma"]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DOCS = [DocRef(name="probe-anomaly.pdf", sha256=hashlib.sha256(b"finding").hexdigest())]


def key(lab: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"scope-test-{lab}".encode()).digest())


def chain(*, discretionary: int | None = 3, deadline: int | None = 3600) -> RosterChain:
    keys = [key(x) for x in LABS]
    roster = draft_roster(
        network_name="scope-test",
        labs=[(x, x, [key(x).public_key], f"https://{x}.example", 1) for x in LABS],
        pause_weight=2,
        resume_weight=2,
        roster_threshold=3,
        policy_digest="0" * 64,
        issued_at=format_time(T0 - timedelta(days=10)),
        expires=format_time(T0 + timedelta(days=300)),
        discretionary_weight=discretionary,
        vote_deadline_s=deadline,
    )
    return RosterChain.from_envelopes([roster_envelope(roster, keys)])


class Net:
    def __init__(self, ch: RosterChain) -> None:
        self.chain = ch
        self.writers = {x: FeedWriter(ch.network_id, x, key(x)) for x in LABS}
        self.entries: list[VerifiedEntry] = []

    def put(self, lab: str, kind: str, body: Any, minutes: float) -> VerifiedEntry:
        env, _ = self.writers[lab].append(kind, body, format_time(T0 + timedelta(minutes=minutes)))
        e = verify_entry(env, self.chain)
        self.entries.append(e)
        return e

    def vote(self, lab: str, pid: str, minutes: float, action: str = "pause", decision: str | None = None) -> VerifiedEntry:
        body = VoteBody(proposal_id=pid, action=action, decision=decision or action)  # type: ignore[arg-type]
        return self.put(lab, "vote", body, minutes)

    def certify(self, lab: str, proposal: VerifiedEntry, minutes: float, votes: list[VerifiedEntry] | None = None) -> VerifiedEntry:
        t = certifiable_tally(proposal, self.entries, self.chain, 1)
        carried = votes if votes is not None else certificate_votes(t)
        body = PauseCertificateBody(
            proposal_id=proposal.statement.body.proposal_id,  # type: ignore[union-attr]
            action="pause" if proposal.kind == "pause_proposal" else "resume",
            roster_version=1,
            proposal=proposal.envelope,
            votes=[v.envelope for v in carried],
        )
        return self.put(lab, "pause_certificate", body, minutes)

    def state(self, now_minutes: float | None = None) -> Any:
        now = None if now_minutes is None else T0 + timedelta(minutes=now_minutes)
        return pause_state(self.entries, self.chain, now=now)


def discretionary(lab: str = "alpha", scope: Scope | None = None, minutes: float = 0) -> PauseProposalBody:
    trig = DiscretionaryTrigger(kind="discretionary", lab=lab, evidence=DOCS, opened_at=format_time(T0 + timedelta(minutes=minutes)))
    return PauseProposalBody(
        proposal_id=pause_proposal_id(trig, scope), trigger=trig, observed="0", level="0",
        rationale="an activation probe found deceptive planning no rule measures", scope=scope,
    )


ABOVE = Scope(kind="compute_above", flop="1E24")
BIO = Scope(kind="domain", domain="bio")
SMALL = Run(model="m-1b", domains=("code",), planned_flop="1E23", current_flop="5E22")
BIG_EARLY = Run(model="m-70b", domains=("code",), planned_flop="1E25", current_flop="5E23")
BIG_LATE = Run(model="m-70b", domains=("code",), planned_flop="1E25", current_flop="2E24")
BIO_RUN = Run(model="bio-7b", domains=("bio",), planned_flop="1E23", current_flop="1E22")


@pytest.mark.parametrize(
    ("scope", "run", "now", "later"),
    [
        (None, SMALL, True, True),
        (Scope(kind="all"), SMALL, True, True),
        (ABOVE, SMALL, False, False),
        (ABOVE, BIG_EARLY, False, True),
        (ABOVE, BIG_LATE, True, True),
        (ABOVE, Run(model="x"), True, True),  # compute unknown: fail closed
        (BIO, SMALL, False, False),
        (BIO, BIO_RUN, True, True),
        (BIO, None, True, True),  # the gate did not describe its run: fail closed
    ],
    ids=["none", "all", "above-small", "above-big-early", "above-big-late", "above-unknown", "bio-code", "bio-bio", "no-run"],
)
def test_scope_covers_runs(scope: Scope | None, run: Run | None, now: bool, later: bool) -> None:
    assert covers(scope, run) is now
    if run is not None:
        assert will_cover(scope, run) is later


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "compute_above"},
        {"kind": "compute_above", "flop": "0"},
        {"kind": "compute_above", "flop": "1E24", "domain": "bio"},
        {"kind": "domain"},
        {"kind": "all", "domain": "bio"},
        {"kind": "everything"},
    ],
    ids=["above-no-flop", "above-zero", "above-and-domain", "domain-no-name", "all-with-domain", "unknown-kind"],
)
def test_malformed_scopes_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Scope.model_validate(bad)


def test_scope_narrowing_is_a_subset_relation() -> None:
    assert ABOVE.narrows(None) and BIO.narrows(Scope(kind="all"))
    assert Scope(kind="compute_above", flop="1E25").narrows(ABOVE)
    assert not Scope(kind="compute_above", flop="1E23").narrows(ABOVE)
    assert not BIO.narrows(ABOVE) and not Scope(kind="domain", domain="cyber").narrows(BIO)
    assert "1E24 FLOP" in describe(ABOVE) and "'bio'" in describe(BIO) and describe(None) == "all training runs"


def test_unscoped_breach_proposal_keeps_its_v1_bytes_and_id() -> None:
    trig = Trigger(result="a" * 64, lab="alpha", rule="r", policy_digest="b" * 64)
    body = PauseProposalBody(proposal_id=pause_proposal_id(trig), trigger=trig, observed="0.6", level="0.5")
    assert "scope" not in body.model_dump(mode="json")
    scoped = pause_proposal_id(trig, ABOVE)
    assert scoped != pause_proposal_id(trig)
    # A lab cannot pass a narrower scope off under the id honest labs vote on.
    with pytest.raises(ValueError, match="digest of the trigger and scope"):
        PauseProposalBody(proposal_id=pause_proposal_id(trig), trigger=trig, observed="0.6", level="0.5", scope=ABOVE)


def test_discretionary_pause_reaches_a_scoped_certificate_that_stops_only_covered_runs() -> None:
    net = Net(chain())
    prop = net.put("alpha", "pause_proposal", discretionary(scope=ABOVE), 0)
    pid = prop.statement.body.proposal_id  # type: ignore[union-attr]
    net.vote("alpha", pid, 1)
    net.vote("beta", pid, 2)
    # Discretionary quorum is 3 here (breach quorum 2): two votes do not pause.
    assert net.state(3).proposals[pid].tally.threshold == 3
    assert not net.state(3).paused
    net.vote("gamma", pid, 3)
    net.certify("beta", prop, 4)
    st = net.state(5)
    assert st.paused and st.proposals[pid].status == "paused"
    assert st.scope_of(pid) == ABOVE
    assert set(st.active_for(BIG_LATE)) == {pid}
    assert st.active_for(SMALL) == {} and st.active_for(BIG_EARLY) == {}
    assert set(st.active_for(None)) == {pid}
    cert_json = st.to_json()["certificates"][0]
    assert cert_json["scope"] == {"kind": "compute_above", "flop": "1E24"}
    assert "1E24" in cert_json["covers"]


def test_discretionary_proposal_misses_its_deadline_and_expires() -> None:
    net = Net(chain(discretionary=2, deadline=3600))
    prop = net.put("alpha", "pause_proposal", discretionary(), 0)
    pid = prop.statement.body.proposal_id  # type: ignore[union-attr]
    net.vote("alpha", pid, 10)
    assert net.state(30).proposals[pid].status == "open"
    assert net.state(61).proposals[pid].status == "expired"
    assert pid in net.state(61).to_json()["expired"]
    # A vote after the deadline counts nowhere: not in the tally, not in a certificate.
    late = net.vote("beta", pid, 70)
    st = net.state(71)
    assert st.proposals[pid].status == "expired" and not st.paused
    assert [f.kind for f in st.flags] == ["late-vote"] and st.flags[0].lab == "beta"
    alpha_vote = next(e for e in net.entries if e.kind == "vote" and e.lab == "alpha")
    net.certify("beta", prop, 72, votes=[alpha_vote, late])
    st = net.state(73)
    assert not st.paused
    assert any(f.kind == "invalid-certificate" and "deadline" in f.reason for f in st.flags)


def test_without_a_deadline_a_discretionary_proposal_stays_open() -> None:
    net = Net(chain(discretionary=None, deadline=None))
    prop = net.put("alpha", "pause_proposal", discretionary(), 0)
    pid = prop.statement.body.proposal_id  # type: ignore[union-attr]
    assert net.state(10**6).proposals[pid].status == "open"
    # Without a discretionary quorum the pause quorum applies.
    assert net.state().proposals[pid].tally.threshold == 2


def test_a_lab_cannot_open_a_discretionary_pause_in_anothers_name() -> None:
    net = Net(chain())
    net.put("beta", "pause_proposal", discretionary(lab="alpha"), 0)
    st = net.state(1)
    assert st.proposals == {}
    assert [f.kind for f in st.flags] == ["proposer-mismatch"]


def _paused_on(scope: Scope | None) -> tuple[Net, VerifiedEntry, str]:
    net = Net(chain(discretionary=2))
    prop = net.put("alpha", "pause_proposal", discretionary(scope=scope), 0)
    pid = prop.statement.body.proposal_id  # type: ignore[union-attr]
    net.vote("alpha", pid, 1)
    net.vote("beta", pid, 2)
    net.certify("alpha", prop, 3)
    assert net.state(4).paused
    return net, prop, pid


def _resume(net: Net, pid: str, scope: Scope | None, minutes: float) -> None:
    body = ResumeProposalBody(
        proposal_id=resume_proposal_id(pid, DOCS, scope), pause_proposal=pid, safety_case=DOCS, scope=scope
    )
    rp = net.put("gamma", "resume_proposal", body, minutes)
    rid = body.proposal_id
    net.vote("alpha", rid, minutes + 1, action="resume")
    net.vote("gamma", rid, minutes + 2, action="resume")
    net.certify("gamma", rp, minutes + 3)


def test_a_resume_can_narrow_a_scope_instead_of_ending_the_pause() -> None:
    net, _, pid = _paused_on(None)
    _resume(net, pid, ABOVE, 10)
    st = net.state(20)
    assert st.paused and st.scope_of(pid) == ABOVE
    assert st.active_for(SMALL) == {} and set(st.active_for(BIG_LATE)) == {pid}


def test_a_resume_cannot_widen_a_scope() -> None:
    net, _, pid = _paused_on(BIO)
    _resume(net, pid, ABOVE, 10)
    st = net.state(20)
    assert st.scope_of(pid) == BIO
    assert any(f.kind == "scope-widened" for f in st.flags)


def test_discretionary_trigger_needs_evidence() -> None:
    with pytest.raises(ValueError):
        DiscretionaryTrigger(kind="discretionary", lab="alpha", evidence=[], opened_at=format_time(T0))
    with pytest.raises(SchemaError):
        from protocol.entries import parse_body

        parse_body("pause_proposal", {"proposal_id": "0" * 64, "trigger": {"kind": "discretionary"}, "observed": "0", "level": "0"})
