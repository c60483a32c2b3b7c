"""A hostile member lab against the pause, one test per attack (spec §13).

Stores, coordinators and the pause state are the real ones; the transport is the mesh's
feed copying (deterministic) except where the attack is on the served path, which runs
real nodes on 127.0.0.1. Coordinator delays run on an injected monotonic clock, so no test
waits for wall time to pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pausekit import Mesh, Node, count, make_network, result_body, wait_until

from node.api.status import pause_tracker
from node.pause.coordinator import Coordinator
from node.pause.planner import VotesConfig
from node.pause.view import local_analysis
from protocol.entries import PauseCertificateBody, Trigger, VoteBody, decode_entry, pause_proposal_id
from protocol.errors import PeerDataError
from protocol.feed import FeedWriter
from protocol.feed import Head as FeedHead
from protocol.pause import pause_state
from protocol.quorum import verify_certificate

LABS = ["alpha", "beta", "gamma"]


@pytest.fixture
def homes(tmp_path: Path):
    hs = make_network(tmp_path / "net", LABS)
    yield hs
    for h in hs:
        h.close()


class FakeMonotonic:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _pid(home, rid: str, lab: str = "alpha") -> str:
    digest = home.store.roster_chain().current.roster.policy_digest
    return pause_proposal_id(Trigger(result=rid, lab=lab, rule="arithmetic-acc", policy_digest=digest))


def _paused(home) -> set[str]:
    a, _ = local_analysis(home)
    return set(a.paused)


def _forge_vote(home, lab_home, *, seq: int, prev: str | None, pid: str, decision: str = "pause"):
    """Sign a vote of ``lab_home``'s lab at ``seq`` after ``prev``, outside its stored feed."""
    chain = home.store.roster_chain()
    head = FeedHead(seq - 1, prev) if prev is not None else None
    writer = FeedWriter(chain.network_id, lab_home.lab, lab_home.key, head)
    st = lab_home.store.entries(lab=lab_home.lab)[-1].statement
    env, eid = writer.append("vote", VoteBody(proposal_id=pid, action="pause", decision=decision), st.issued_at)
    return env, eid


def test_silent_first_supporter_does_not_block_the_certificate(homes) -> None:
    """Finding 2: the first-ranked supporter votes pause and vanishes; the next supporter's
    turn still comes, counted from when it first saw the quorum (not recomputed from now)."""
    clock = FakeMonotonic()
    config = VotesConfig(auto="pause-on-breach", propose_delay_s=0, certificate_stagger_s=5.0)
    mesh = Mesh(homes)
    mesh.coords = {h.lab: Coordinator(h, config=config, monotonic=clock) for h in homes}
    rid = mesh.home("alpha").publish("eval_result", result_body("0.70"))
    pid = _pid(homes[0], rid)
    # alpha (rank 0 among supporters) proposes and votes, then is never heard from again.
    mesh.coords["alpha"].run_once(force=True)
    mesh.sync()
    beta = mesh.home("beta")
    mesh.coords["beta"].run_once(force=True)  # beta votes: quorum (2 of 3) is reached
    assert count(beta, "vote", "beta") == 1
    assert count(beta, "pause_certificate") == 0, "beta is rank 1: it waits one stagger first"
    for _ in range(3):  # passes within the stagger publish nothing
        clock.t += 1.0
        mesh.coords["beta"].run_once(force=True)
    assert count(beta, "pause_certificate") == 0
    clock.t += 2.5  # now past rank 1 x 5 s since beta first saw the quorum
    published = mesh.coords["beta"].run_once(force=True)
    assert [k for k, _ in published] == ["pause_certificate"]
    mesh.sync(["beta", "gamma"])
    assert _paused(beta) == {pid} and _paused(mesh.home("gamma")) == {pid}


def test_certificate_carries_only_counted_supporting_votes(homes) -> None:
    """Finding 3: an objection (or any vote that cannot count) is never put into an honest
    certificate, so it cannot make the whole certificate invalid elsewhere."""
    mesh = Mesh(homes, rules=["pause-on-breach", "pause-on-breach", "manual"])
    rid = mesh.home("alpha").publish("eval_result", result_body("0.70"))
    pid = _pid(homes[0], rid)
    mesh.step(["alpha"])
    mesh.sync()
    gamma = mesh.home("gamma")
    gamma.publish("vote", VoteBody(proposal_id=pid, action="pause", decision="object", rationale="no"))
    mesh.settle()
    (cert,) = homes[0].store.entries(kind="pause_certificate")
    body = cert.statement.body
    assert isinstance(body, PauseCertificateBody)
    voters = {decode_entry(v).statement.lab for v in body.votes}
    decisions = {decode_entry(v).statement.body.decision for v in body.votes}  # type: ignore[union-attr]
    assert voters == {"alpha", "beta"} and decisions == {"pause"}
    assert all(_paused(h) == {pid} for h in homes)


def test_later_vote_of_a_lab_is_not_counted_in_a_certificate(homes) -> None:
    """Finding 6: gamma first objects, later signs a pause vote; a certificate built on that
    later vote does not count at nodes that hold gamma's first vote."""
    mesh = Mesh(homes, rules=["pause-on-breach", "manual", "manual"])
    rid = mesh.home("alpha").publish("eval_result", result_body("0.70"))
    pid = _pid(homes[0], rid)
    mesh.step(["alpha"])
    mesh.sync()
    gamma = mesh.home("gamma")
    gamma.publish("vote", VoteBody(proposal_id=pid, action="pause", decision="object"))
    gamma.publish("vote", VoteBody(proposal_id=pid, action="pause", decision="pause"))
    mesh.sync()
    alpha = mesh.home("alpha")
    prop = alpha.store.entries(kind="pause_proposal")[0]
    votes = [v for v in alpha.store.entries(kind="vote") if v.statement.body.decision == "pause"]  # type: ignore[union-attr]
    assert {v.lab for v in votes} == {"alpha", "gamma"}
    forged = PauseCertificateBody(
        proposal_id=pid, action="pause", roster_version=1, proposal=prop.envelope, votes=[v.envelope for v in votes]
    )
    # Offline, the certificate alone looks valid (gamma's earlier objection is not in it) ...
    verify_certificate(forged, alpha.store.roster_chain())
    alpha.publish("pause_certificate", forged)
    mesh.sync()
    # ... but every node holding gamma's feed counts gamma's first vote: an objection.
    for h in homes:
        a, snap = local_analysis(h)
        assert a.paused == {}
        (flag,) = [f for f in snap.flags if f.kind == "invalid-certificate"]
        assert flag.code == "insufficient-quorum" and "not its first vote" in flag.reason


def test_vote_never_published_in_the_feed_is_not_counted(homes) -> None:
    """Finding 6: gamma signs a pause vote at a seq where its feed already holds another
    entry (a vote made only for a certificate): it does not count where the feed is held."""
    mesh = Mesh(homes, rules=["pause-on-breach", "manual", "manual"])
    rid = mesh.home("alpha").publish("eval_result", result_body("0.70"))
    pid = _pid(homes[0], rid)
    mesh.step(["alpha"])
    gamma = mesh.home("gamma")
    gamma.publish("note", {"text": "nothing to see"})
    gamma.publish("note", {"text": "still nothing"})
    mesh.sync()
    first = gamma.store.entries(lab="gamma")[0]
    env, _ = _forge_vote(homes[0], gamma, seq=2, prev=first.entry_id, pid=pid)
    alpha = mesh.home("alpha")
    prop = alpha.store.entries(kind="pause_proposal")[0]
    (alpha_vote,) = alpha.store.entries(kind="vote")
    forged = PauseCertificateBody(
        proposal_id=pid, action="pause", roster_version=1, proposal=prop.envelope, votes=[alpha_vote.envelope, env]
    )
    verify_certificate(forged, alpha.store.roster_chain())  # valid offline
    alpha.publish("pause_certificate", forged)
    mesh.sync()
    for h in homes:
        a, snap = local_analysis(h)
        assert a.paused == {}
        (flag,) = [f for f in snap.flags if f.kind == "invalid-certificate"]
        assert "never published" in flag.reason


def test_poisoned_result_is_refused_and_a_later_breach_still_pauses(homes) -> None:
    """Finding 1: an extreme metric value is refused at ingest with a code (nothing stored),
    and a real breach by another lab afterwards pauses every node."""
    mesh = Mesh(homes)
    gamma = mesh.home("gamma")
    with pytest.raises(PeerDataError) as e:
        gamma.publish("eval_result", result_body("1E70"))
    assert e.value.code in {"schema", "numeric-domain"}
    assert count(gamma, "eval_result") == 0
    rid = mesh.home("alpha").publish("eval_result", result_body("0.70"))
    mesh.settle()
    assert all(_paused(h) == {_pid(homes[0], rid)} for h in homes)


def test_status_pause_state_is_verified_once_per_certificate(homes) -> None:
    """Finding 7: the pause state behind /v1/status is cached per log change; certificate
    signatures are checked once per certificate, not on every request."""
    mesh = Mesh(homes)
    rid = mesh.home("alpha").publish("eval_result", result_body("0.70"))
    mesh.settle()
    node = Node(homes[1], sync=False, coordinate=False).start()
    try:
        ctx = node.app.state.node
        first = node.status()
        assert first["paused"] is True
        assert first["pause"]["certificates"][0]["proposal_id"] == _pid(homes[0], rid)
        tracker = pause_tracker(ctx)
        state = tracker.state()
        for _ in range(5):
            node.status()
        assert tracker.state() is state, "unchanged log: the same cached state"
        assert len(tracker.cache) == count(homes[1], "pause_certificate")
        updates = tracker.updates
        homes[1].publish("note", {"text": "the log changed"})
        newer = tracker.wait_for(homes[1].store.log_size(), timeout=30)
        assert newer is not state and newer.paused and tracker.updates > updates
        assert len(tracker.cache) == count(homes[1], "pause_certificate"), "no certificate verified twice"
    finally:
        node.stop()


def test_pause_state_ignores_a_certificate_for_a_forged_proposal(homes) -> None:
    """An invalid certificate is flagged and ignored; the computation itself never raises."""
    mesh = Mesh(homes)
    rid = mesh.home("alpha").publish("eval_result", result_body("0.70"))
    mesh.settle()
    alpha = mesh.home("alpha")
    (cert,) = alpha.store.entries(kind="pause_certificate")
    body = cert.statement.body
    assert isinstance(body, PauseCertificateBody)
    bad = body.model_copy(update={"roster_version": 7})
    gamma = mesh.home("gamma")
    gamma.publish("pause_certificate", bad)
    state = pause_state(gamma.store.entries(), gamma.store.roster_chain())
    assert set(state.active) == {_pid(homes[0], rid)}
    assert [(f.kind, f.lab, f.code) for f in state.flags] == [("invalid-certificate", "gamma", "quorum")]


def test_first_supporter_node_down_others_certify_over_http(tmp_path: Path) -> None:
    """Finding 2 on real nodes: alpha (first-ranked supporter) proposes and votes, then its
    node goes down for good; beta votes, and beta's turn to certify still comes."""
    homes = make_network(
        tmp_path / "net", LABS, auto=["pause-on-breach", "manual", "manual"], certificate_stagger_s=0.3
    )
    try:
        alpha = Node(homes[0]).start()
        others = [Node(h).start() for h in homes[1:]]
        try:
            rid = homes[0].publish("eval_result", result_body("0.70"))
            pid = _pid(homes[0], rid)
            wait_until(
                lambda: all(count(h, "vote", "alpha") == 1 for h in homes), 30, what="alpha's vote everywhere"
            )
        finally:
            alpha.stop()
        try:
            homes[1].publish("vote", VoteBody(proposal_id=pid, action="pause", decision="pause"))
            wait_until(lambda: all(_paused(h) == {pid} for h in homes[1:]), 30, what="a certificate at beta and gamma")
        finally:
            for n in others:
                n.stop()
        assert count(homes[0], "pause_certificate") == 0, "alpha was down: it certified nothing"
        assert {c.lab for c in homes[1].store.entries(kind="pause_certificate")} <= {"beta", "gamma"}
    finally:
        for h in homes:
            h.close()


def test_poisoned_result_over_http_then_breach_stops_url_gate(tmp_path: Path) -> None:
    """Finding 1 on real nodes: gamma POSTs a result with an extreme metric value (signed raw,
    past its own node's checks) to every node; each refuses it with its code and nothing
    stops: alpha's later real breach pauses every node, /v1/status says so, and alpha's
    authenticated URL gate stops training."""
    from node.net.client import PeerClient
    from node.pause.gate import TrainingGate
    from protocol.canonical import format_time, utcnow
    from protocol.feed import FeedWriter

    homes = make_network(tmp_path / "net", LABS)
    nodes = [Node(h).start() for h in homes]
    try:
        gamma = homes[2]
        chain = gamma.store.roster_chain()
        env, _ = FeedWriter(chain.network_id, "gamma", gamma.key, None).append(
            "eval_result", result_body("0.5"), format_time(utcnow())
        )
        # Swap the metric for 1E70 in the signed statement and sign that (a hostile lab's own
        # tooling, not its node, makes this entry).
        import json

        from protocol.canonical import canonical_bytes
        from protocol.envelope import ENTRY_PAYLOAD_TYPE, sign_payload

        st = json.loads(env.payload_bytes())
        st["body"]["tasks"][0]["metrics"]["acc"]["value"] = "1E70"
        poisoned = sign_payload(canonical_bytes(st), ENTRY_PAYLOAD_TYPE, [gamma.key])
        for n in nodes:
            with PeerClient(n.url, gamma.key, "gamma") as c:
                out = c.post_envelopes([poisoned])
            assert [r.status for r in out] == ["rejected"] and out[0].code == "numeric-domain", out
        rid = homes[0].publish("eval_result", result_body("0.70"))
        pid = _pid(homes[0], rid)
        wait_until(lambda: all(n.status()["paused"] for n in nodes), 30, what="paused on every node")
        assert all(n.status()["pause"]["certificates"][0]["proposal_id"] == pid for n in nodes)
        gate = TrainingGate(
            nodes[0].url, key=homes[0].key, member="alpha", poll_interval_s=0, grace_s=0,
            roster=homes[0].store.roster_chain(),
        )
        try:
            decision = gate.check(1)
        finally:
            gate.close()
        assert decision.stop and pid in decision.paused
    finally:
        for n in nodes:
            n.stop()
        for h in homes:
            h.close()


def test_home_gate_signs_a_halt_record_when_it_stops(homes) -> None:
    """A gate with the lab's home stops for the certified pause and signs "training halted at
    step N" into the lab's feed (once), citing the certificate, so reports can say where each
    lab's training stopped."""
    from node.pause.gate import TrainingGate
    from protocol.entries import HALT_PREFIX

    mesh = Mesh(homes)
    rid = mesh.home("alpha").publish("eval_result", result_body("0.70"))
    mesh.settle()
    beta = mesh.home("beta")
    gate = TrainingGate(beta, poll_interval_s=0, grace_s=0, url="http://127.0.0.1:9/")
    try:
        first, again = gate.check(420), gate.check(421)
    finally:
        gate.close()
    assert first.stop and again.stop and _pid(homes[0], rid) in first.paused
    (note,) = [e for e in beta.store.entries(kind="note", lab="beta") if e.statement.body.text.startswith(HALT_PREFIX)]
    assert note.statement.body.text.startswith(f"{HALT_PREFIX}420: ")
    (cert,) = beta.store.entries(kind="pause_certificate")
    assert note.statement.body.refs == [cert.entry_id]


def test_certificate_padded_with_votes_is_refused_at_ingest(homes) -> None:
    """Finding 7's flood: a certificate carrying more votes than the roster has labs can never
    be valid; it is refused when published or received (quorum), so nodes never store or
    re-check it."""
    mesh = Mesh(homes)
    mesh.home("alpha").publish("eval_result", result_body("0.70"))
    mesh.settle()
    alpha = mesh.home("alpha")
    (cert,) = alpha.store.entries(kind="pause_certificate")
    body = cert.statement.body
    assert isinstance(body, PauseCertificateBody)
    padded = body.model_copy(update={"votes": [*body.votes, *body.votes]})
    assert len(padded.votes) > len(LABS)
    gamma = mesh.home("gamma")
    before = gamma.store.log_size()
    with pytest.raises(PeerDataError) as e:
        gamma.publish("pause_certificate", padded)
    assert e.value.code == "quorum" and "at most one counted vote per lab" in e.value.message
    assert gamma.store.log_size() == before


def test_gate_stopped_by_its_nodes_signed_state_cites_the_certificate(homes) -> None:
    """A home gate that learns of the pause from its node's signed pause state (not its own
    store) records the halt too, citing the certificate the node named."""
    from node.pause.gate import TrainingGate
    from protocol.entries import HALT_PREFIX

    mesh = Mesh(homes)
    mesh.home("alpha").publish("eval_result", result_body("0.70"))
    mesh.settle()
    gamma = mesh.home("gamma")
    node = Node(gamma, sync=False, coordinate=False).start()
    try:
        gate = TrainingGate(gamma, url=node.url, poll_interval_s=0, grace_s=0, check_local=False)
        try:
            decision = gate.check(77)
        finally:
            gate.close()
    finally:
        node.stop()
    assert decision.stop and decision.source == "node"
    (note,) = [e for e in gamma.store.entries(kind="note", lab="gamma") if e.statement.body.text.startswith(HALT_PREFIX)]
    (cert,) = gamma.store.entries(kind="pause_certificate")
    assert note.statement.body.text.startswith(f"{HALT_PREFIX}77: ") and note.statement.body.refs == [cert.entry_id]
