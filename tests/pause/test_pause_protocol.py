"""Pause protocol on real stores, transport by feed copying: votes, certificates, resume,
replays, hostile labs, reordering and restarts. Deterministic and fast (no HTTP here; the
served path is covered in test_pause_happy / test_pause_faults)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pausekit import Mesh, count, make_network, result_body

from node.cli import main
from node.home.netsetup import observer_key
from node.home.policyfile import PolicyMismatchError, load_policy
from node.pause.coordinator import Coordinator
from node.pause.planner import VotesConfig
from node.pause.view import local_analysis
from protocol.canonical import format_time, utcnow
from protocol.entries import PauseCertificateBody, PauseProposalBody, Trigger, VoteBody, pause_proposal_id
from protocol.feed import FeedWriter
from protocol.keys import SigningKey
from protocol.pause import Flag

LABS = ["alpha", "beta", "gamma"]


@pytest.fixture
def homes(tmp_path: Path):
    hs = make_network(tmp_path / "net", LABS, observers=["regulator"])
    yield hs
    for h in hs:
        h.close()


def _pause_state(home) -> tuple[set[str], set[str], list[Flag]]:
    a, snap = local_analysis(home)
    return set(a.paused), set(a.resumed), snap.flags


def _cli(*args: str) -> int:
    return main([*args])


def _breach(mesh: Mesh, lab: str = "alpha", acc: str = "0.70", step: int = 100) -> tuple[str, str]:
    h = mesh.home(lab)
    rid = h.publish("eval_result", result_body(acc, step=step))
    digest = h.store.roster_chain().current.roster.policy_digest
    return rid, pause_proposal_id(Trigger(result=rid, lab=lab, rule="arithmetic-acc", policy_digest=digest))


def _non_breach_proposal(home, result: str, result_lab: str) -> str:
    """A proposal a dishonest lab hand-builds for a result that does not breach."""
    digest = home.store.roster_chain().current.roster.policy_digest
    trigger = Trigger(result=result, lab=result_lab, rule="arithmetic-acc", policy_digest=digest)
    pid = pause_proposal_id(trigger)
    home.publish("pause_proposal", PauseProposalBody(proposal_id=pid, trigger=trigger, observed="0.99", level="0.60"))
    return pid


# --- automatic path, idempotence, restarts, ordering --------------------------------------------


def test_auto_votes_certify_once_and_restart_replays_nothing(homes) -> None:
    mesh = Mesh(homes)
    _, pid = _breach(mesh)
    mesh.settle()
    for h in homes:
        paused, _, flags = _pause_state(h)
        assert paused == {pid} and flags == []
        assert count(h, "pause_proposal") == 1 and count(h, "alert") == 1
        # Once certified, nobody votes any more (gamma's vote would change nothing).
        assert [count(h, "vote", lab) for lab in LABS] == [1, 1, 0]
    certs = homes[0].store.entries(kind="pause_certificate")
    assert len(certs) == 1, "the first node to see quorum certifies; others see it and do not"
    # Restart: fresh coordinators over the same stores publish nothing new.
    again = Mesh(homes)
    assert again.settle() == []


def test_reordered_and_duplicated_deliveries_reach_the_same_state(homes, tmp_path: Path) -> None:
    mesh = Mesh(homes)
    _, pid = _breach(mesh)
    mesh.settle()
    every = [env for lab in LABS for env in homes[0].store.feed(lab)]
    # A fresh node of the same network (gamma's twin on a new database) receives everything
    # in a random order, each entry twice: held out-of-order entries are released in order.
    from node.home import NodeHome

    twin = NodeHome.init(tmp_path / "twin", "gamma", key=homes[2].key)
    try:
        twin.store.install_genesis(homes[0].store.roster_chain().versions[0].envelope)
        from node.home.policyfile import install_policy, policy_path

        install_policy(twin.path, policy_path(homes[0].path))
        rng = random.Random(7)
        for _ in range(3):
            batch = every * 2
            rng.shuffle(batch)
            for env in batch:
                twin.store.ingest([env])
        assert {lab: h.seq for lab, h in twin.store.heads().items()} == {
            lab: h.seq for lab, h in homes[0].store.heads().items()
        }
        paused, _, flags = _pause_state(twin)
        assert paused == {pid} and flags == []
        # gamma already voted (its vote is in the feed): the twin's coordinator adds nothing.
        assert Coordinator(twin, config=VotesConfig(auto="pause-on-breach")).run_once(force=True) == []
    finally:
        twin.close()


def test_proposal_before_result_waits_then_votes(homes) -> None:
    mesh = Mesh(homes)
    _, pid = _breach(mesh)
    mesh.step(["alpha"])  # alpha alerts, proposes and votes
    beta = mesh.home("beta")
    alpha = mesh.home("alpha")
    feed = alpha.store.feed("alpha")
    assert beta.store.ingest(feed[1:])[0].status == "held"  # the result (seq 1) is missing
    assert mesh.coords["beta"].run_once(force=True) == []
    beta.store.ingest(feed[:1])  # the gap fills, the hold is released
    kinds = [k for k, _ in mesh.coords["beta"].run_once(force=True)]
    assert "vote" in kinds
    mesh.settle()
    assert _pause_state(beta)[0] == {pid}


def test_no_quorum_no_pause_until_enough_labs_vote(homes) -> None:
    mesh = Mesh(homes, rules=["pause-on-breach", "manual", "manual"])
    _, pid = _breach(mesh)
    mesh.settle()
    for h in homes:
        assert _pause_state(h)[0] == set()
        assert count(h, "pause_certificate") == 0
    beta = mesh.home("beta")
    assert _cli("vote", pid[:12], "--pause", "--rationale", "confirmed the breach", "--home", str(beta.path)) == 0
    mesh.settle()
    for h in homes:
        assert _pause_state(h)[0] == {pid}


# --- manual votes, CLI checks --------------------------------------------------------------------


def test_cli_vote_rules(homes, capsys) -> None:
    mesh = Mesh(homes, rules="manual")
    ok = mesh.home("alpha").publish("eval_result", result_body("0.20"))
    _, pid = _breach(mesh, step=200)
    gamma = mesh.home("gamma")
    bad = _non_breach_proposal(gamma, ok, "alpha")
    mesh.settle()
    beta = str(mesh.home("beta").path)
    # Refused: a pause vote on a trigger this node cannot verify as a breach (exit 3: bad data).
    assert _cli("vote", bad, "--pause", "--rationale", "x", "--home", beta) == 3
    assert "refusing to vote pause" in capsys.readouterr().err
    assert count(mesh.home("beta"), "vote") == 0  # nothing written
    # Usage errors (exit 2), nothing written.
    assert _cli("vote", pid, "--pause", "--object", "--rationale", "x", "--home", beta) == 2
    assert _cli("vote", pid, "--resume", "--rationale", "x", "--home", beta) == 2
    assert _cli("vote", "deadbeefdeadbeef", "--pause", "--rationale", "x", "--home", beta) == 2
    assert _cli("vote", "dead", "--pause", "--rationale", "x", "--home", beta) == 2
    assert count(mesh.home("beta"), "vote") == 0
    # Objecting to the bad proposal is always allowed; a second vote on it is refused.
    assert _cli("vote", bad, "--object", "--rationale", "not a breach", "--home", beta) == 0
    # A second vote is the operator's own mistake (exit 2), not bad data.
    assert _cli("vote", bad, "--abstain", "--rationale", "again", "--home", beta) == 2
    assert "already voted" in capsys.readouterr().err
    assert _cli("vote", pid, "--pause", "--rationale", "verified", "--home", beta) == 0
    assert count(mesh.home("beta"), "vote") == 2
    assert _cli("proposals", "--home", beta) == 0
    out = capsys.readouterr().out
    assert pid in out and bad in out and "proposal-not-breach" in out


# --- resume and replays --------------------------------------------------------------------------


def test_resume_ends_pause_and_replayed_certificate_has_no_effect(homes, tmp_path: Path, capsys) -> None:
    mesh = Mesh(homes)
    _, pid = _breach(mesh)
    mesh.settle()
    old_cert = homes[0].store.entries(kind="pause_certificate")[0]
    case = tmp_path / "safety-case.md"
    case.write_text("# Safety case\nMitigations deployed; re-evaluated below the breach level.\n")
    alpha = str(mesh.home("alpha").path)
    assert _cli("propose-resume", "--pause", pid, "--safety-case", str(case), "--rationale", "mitigated",
                "--home", alpha, "--json") == 0
    import json

    rid = json.loads(capsys.readouterr().out)["resume_proposal"]
    mesh.settle()
    assert all(_pause_state(h)[0] == {pid} for h in homes), "no automatic resume votes"
    for lab in ("alpha", "beta"):
        assert _cli("vote", rid, "--resume", "--rationale", "safety case reviewed",
                    "--home", str(mesh.home(lab).path)) == 0
    mesh.settle()
    for h in homes:
        paused, resumed, _ = _pause_state(h)
        assert paused == set() and resumed == {pid}
        (rc,) = [c for c in h.store.entries(kind="pause_certificate") if c.statement.body.action == "resume"]
        assert rc.statement.body.proposal_id == rid
    # Replays: the old certificate re-delivered, and re-published as a new entry by a lab.
    assert homes[1].store.ingest([old_cert.envelope])[0].status == "duplicate"
    homes[2].publish("pause_certificate", old_cert.statement.body)
    mesh.settle()
    for h in homes:
        assert _pause_state(h)[0] == set()
    # Resume of something not paused is refused locally; so is a second identical proposal.
    assert _cli("propose-resume", "--pause", pid, "--safety-case", str(case), "--rationale", "x", "--home", alpha) == 2


def test_resume_certificate_arriving_before_pause_certificate(homes, tmp_path: Path) -> None:
    """Order-independence: a node that receives the resume certificate first is never paused."""
    mesh = Mesh(homes)
    _, pid = _breach(mesh)
    mesh.settle()
    case = tmp_path / "case.txt"
    case.write_text("case")
    assert _cli("propose-resume", "--pause", pid, "--safety-case", str(case), "--rationale", "r",
                "--home", str(homes[0].path), "--json") == 0
    mesh.settle()
    rid = next(p for p in local_analysis(homes[0])[0].proposals.values() if p.action == "resume").proposal_id
    for h in homes[:2]:
        assert _cli("vote", rid, "--resume", "--rationale", "ok", "--home", str(h.path)) == 0
    mesh.settle()
    certs = homes[0].store.entries(kind="pause_certificate")
    resume = next(c for c in certs if c.statement.body.action == "resume")
    pause = next(c for c in certs if c.statement.body.action == "pause")
    from node.pause.analysis import analyze

    chain = homes[0].store.roster_chain()
    policy = load_policy(homes[0].path, chain.current.roster.policy_digest)
    base = {k: homes[0].store.entries(kind=k) for k in ("eval_result", "pause_proposal", "resume_proposal", "vote")}
    a1 = analyze({**base, "pause_certificate": [resume, pause]}, chain, policy)
    a2 = analyze({**base, "pause_certificate": [pause, resume]}, chain, policy)
    assert a1.paused == a2.paused == {} and set(a1.resumed) == set(a2.resumed) == {pid}


# --- hostile labs --------------------------------------------------------------------------------


def test_double_vote_counted_once_and_flagged(homes) -> None:
    mesh = Mesh(homes, rules="manual")
    _, pid = _breach(mesh)
    mesh.settle()
    beta = mesh.home("beta")
    beta.publish("vote", VoteBody(proposal_id=pid, action="pause", decision="object", rationale="first"))
    beta.publish("vote", VoteBody(proposal_id=pid, action="pause", decision="pause", rationale="changed mind"))
    mesh.home("alpha").publish("vote", VoteBody(proposal_id=pid, action="pause", decision="pause"))
    mesh.settle()
    for h in homes:
        a, snap = local_analysis(h)
        t = a.proposals[pid].tally
        assert t is not None and t.signed == {"alpha"} and t.objected == {"beta"} and not t
        assert a.paused == {}
        (flag,) = [f for f in snap.flags if f.kind == "double-vote"]
        assert flag.lab == "beta" and flag.decisions == ("object", "pause")


def test_observer_vote_refused(homes, tmp_path: Path) -> None:
    mesh = Mesh(homes, rules="manual")
    _, pid = _breach(mesh)
    mesh.settle()
    okey = observer_key(tmp_path / "net", "regulator")
    writer = FeedWriter(homes[0].store.network_id(), "regulator", okey, None)
    env, _ = writer.append("vote", VoteBody(proposal_id=pid, action="pause", decision="pause"), format_time(utcnow()))
    (out,) = homes[0].store.ingest([env])
    assert out.status == "rejected" and out.code == "observer-vote"
    assert count(homes[0], "vote") == 0


@pytest.mark.parametrize(
    "defect",
    ["insufficient-votes", "vote-by-stranger-key", "proposal-mismatch"],
    ids=["insufficient-votes", "vote-by-stranger-key", "proposal-mismatch"],
)
def test_forged_certificate_refused(homes, defect: str) -> None:
    mesh = Mesh(homes, rules="manual")
    _, pid = _breach(mesh)
    mesh.settle()
    alpha, gamma = mesh.home("alpha"), mesh.home("gamma")
    vote_env = alpha.store.feed("alpha")[-1]
    alpha.publish("vote", VoteBody(proposal_id=pid, action="pause", decision="pause"))
    mesh.settle()
    proposal = alpha.store.entries(kind="pause_proposal")[0]
    votes = alpha.store.entries(kind="vote")
    vote_env = votes[0].envelope
    if defect == "insufficient-votes":
        votes_envs = [vote_env]
    elif defect == "vote-by-stranger-key":
        # A vote claiming to be beta's, signed by a key the roster does not list for beta.
        stranger = SigningKey.generate()
        w = FeedWriter(alpha.store.network_id(), "beta", stranger, None)
        forged, _ = w.append("vote", VoteBody(proposal_id=pid, action="pause", decision="pause"), format_time(utcnow()))
        votes_envs = [vote_env, forged]
    else:
        votes_envs = [vote_env]
    body = PauseCertificateBody(
        proposal_id=pid if defect != "proposal-mismatch" else "0" * 64,
        action="pause",
        roster_version=1,
        proposal=proposal.envelope,
        votes=votes_envs,
    )
    gamma.publish("pause_certificate", body)
    mesh.settle()
    for h in homes:
        paused, _, flags = _pause_state(h)
        assert paused == set()
        assert [f.lab for f in flags if f.kind == "invalid-certificate"] == ["gamma"]
        assert count(h, "pause_certificate") == 1  # honest nodes certified nothing (no quorum)


def test_non_breach_proposal_refused_by_honest_nodes(homes) -> None:
    mesh = Mesh(homes, rules=["pause-on-breach", "object-unless-breach", "manual"])
    ok = mesh.home("alpha").publish("eval_result", result_body("0.20"))
    gamma = mesh.home("gamma")
    pid = _non_breach_proposal(gamma, ok, "alpha")
    mesh.settle()
    for h in homes:
        a, snap = local_analysis(h)
        t = a.proposals[pid].tally
        assert t is not None and t.signed == frozenset() and t.objected == {"beta"}
        assert "alpha" in t.missing  # pause-on-breach casts no vote on a non-breach
        assert a.proposals[pid].check.status == "not-breach"
        assert [f.kind for f in snap.flags] == ["proposal-not-breach"]
        assert count(h, "alert") == 0


def test_certificate_for_non_breach_counts_but_is_flagged(homes) -> None:
    """Two colluding labs reach quorum on a non-breach: the certificate is valid by its votes
    (the pause holds), and honest nodes flag it and do not help certify it."""
    mesh = Mesh(homes, rules="manual")
    ok = mesh.home("alpha").publish("eval_result", result_body("0.20"))
    beta, gamma = mesh.home("beta"), mesh.home("gamma")
    pid = _non_breach_proposal(gamma, ok, "alpha")
    mesh.settle()
    for h in (beta, gamma):
        h.publish("vote", VoteBody(proposal_id=pid, action="pause", decision="pause"))
    mesh.settle()
    assert count(homes[0], "pause_certificate") == 0, "honest coordinators do not certify a non-breach"
    a, _ = local_analysis(gamma)
    st = a.proposals[pid]
    gamma.publish(
        "pause_certificate",
        PauseCertificateBody(proposal_id=pid, action="pause", roster_version=1, proposal=st.entries[0].envelope,
                             votes=[v.envelope for v in st.tally.votes]),
    )
    mesh.settle()
    for h in homes:
        paused, _, flags = _pause_state(h)
        assert paused == {pid}
        assert {f.kind for f in flags} == {"proposal-not-breach", "certificate-not-breach"}


# --- policy ----------------------------------------------------------------------------------------


def test_policy_mismatch_is_a_clear_error_and_stops_automatic_votes(homes) -> None:
    alpha = homes[0]
    (alpha.path / "policy.yaml").write_text(
        (alpha.path / "policy.yaml").read_text().replace('breach_level: "0.60"', 'breach_level: "0.90"')
    )
    digest = alpha.store.roster_chain().current.roster.policy_digest
    with pytest.raises(PolicyMismatchError, match="roster adopts"):
        load_policy(alpha.path, digest)
    mesh = Mesh(homes)
    _breach(mesh)
    published = mesh.settle()
    assert not [p for p in published if p[0] == "alpha"], "alpha judges nothing with a policy it did not adopt"
    a, snap = local_analysis(alpha)
    assert snap.policy.loaded is False and "roster adopts" in snap.policy.error
    # The others still pause (2 of 3 is the quorum).
    assert a.paused
