"""Discretionary pauses from the command line (spec §6.11) and scoped pauses at the gate
(§6.10), on real stores and coordinators: a lab that sees something no rule measures asks
with `tripwire propose-pause`, labs vote by hand, the certificate covers only the runs in
its scope, `tripwire status` says which of a lab's runs it stops, and a request that
misses its voting deadline expires and refuses late votes. Every bad input is refused
with a clear reason and publishes nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pausekit import Mesh, count, make_network

from node.cli import main
from node.pause.gate import TrainingGate
from node.pause.view import local_analysis
from protocol.canonical import format_time, utcnow
from protocol.entries import DiscretionaryTrigger, DocRef, PauseProposalBody, pause_proposal_id
from protocol.scope import Run

LABS = ["alpha", "beta", "gamma"]


@pytest.fixture
def homes(tmp_path: Path):
    # Every lab must agree to a discretionary pause (weight 3 of 3); votes count for an hour.
    # The roster dates from yesterday, so a request backdated by hours is still under it.
    hs = make_network(tmp_path / "net", LABS, observers=["regulator"], discretionary_weight=3,
                      vote_deadline_s=3600, issued_at=utcnow() - timedelta(days=1))
    yield hs
    for h in hs:
        h.close()


@pytest.fixture
def evidence(tmp_path: Path) -> list[Path]:
    a = tmp_path / "probe-report.md"
    a.write_text("activation probe flags deceptive planning at checkpoint 41000\n")
    b = tmp_path / "transcripts.jsonl"
    b.write_text('{"turn": 1, "text": "..."}\n')
    return [a, b]


def _propose(home, evidence: list[Path], scope: str, capsys) -> dict:
    args = ["propose-pause", "--home", str(home.path), "--rationale", "our probes flag deceptive planning",
            "--scope", scope, "--json"]
    for p in evidence:
        args += ["--evidence", str(p)]
    assert main(args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _status(home, capsys) -> dict:
    assert main(["status", "--home", str(home.path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _heads(homes) -> list[dict[str, int]]:
    return [{lab: hd.seq for lab, hd in h.store.heads().items()} for h in homes]


def test_discretionary_pause_by_manual_votes_stops_only_the_runs_in_its_scope(homes, evidence, capsys) -> None:
    alpha, beta, gamma = homes
    mesh = Mesh(homes)
    out = _propose(alpha, evidence, "compute-above:1E20", capsys)
    pid = out["pause_proposal"]
    assert out["covers"] == "training runs once their compute reaches 1E20 FLOP"
    assert out["quorum_weight"] == 3 and out["vote_deadline_s"] == 3600
    assert [d["name"] for d in out["evidence"]] == ["probe-report.md", "transcripts.jsonl"]

    # Automatic vote rules never vote on a discretionary request: nothing happens by itself.
    mesh.settle()
    assert all(count(h, "vote") == 0 for h in homes)
    st = _status(beta, capsys)["pause"]
    assert st["state"] == "not paused"
    (open_,) = st["open_proposals"]
    assert open_["proposal_id"] == pid and open_["discretionary"] and open_["deadline"]
    assert open_["covers"] == "training runs once their compute reaches 1E20 FLOP"

    # Gates describe their runs: a large run past the level, a small one below it.
    big = TrainingGate(beta, poll_interval_s=0, fail_closed=False, run=Run(model="beta-70b", current_flop="3E20"))
    small = TrainingGate(beta, poll_interval_s=0, fail_closed=False,
                         run=Run(model="beta-1b", current_flop="1E19", planned_flop="5E19"))
    growing = TrainingGate(beta, poll_interval_s=0, fail_closed=False,
                           run=Run(model="beta-7b", current_flop="2E19", planned_flop="4E20"))
    try:
        assert big.check(1).proceed and small.check(1).proceed

        # Two labs vote by hand: weight 2 of 3, not enough.
        for h in (alpha, beta):
            assert main(["vote", pid[:16], "--pause", "--rationale", "we read the evidence", "--home", str(h.path)]) == 0
            mesh.sync()
        mesh.settle()
        assert count(beta, "pause_certificate") == 0 and big.check(2).proceed
        capsys.readouterr()
        assert main(["proposals", "--home", str(gamma.path), "--json"]) == 0
        (p,) = json.loads(capsys.readouterr().out)["proposals"]
        assert (p["state"], p["weight"], p["threshold"]) == ("open", 2, 3)  # the tally shows before quorum
        assert p["supporting"] == ["alpha", "beta"] and p["missing"] == ["gamma"]
        assert main(["vote", pid[:16], "--pause", "--rationale", "agreed", "--home", str(gamma.path)]) == 0
        mesh.settle()
        capsys.readouterr()
        for h in homes:
            a, _ = local_analysis(h)
            assert set(a.paused) == {pid}, h.lab

        d = big.check(3)
        assert d.stop and "pause certificate" in d.reason
        assert small.check(3).proceed, "a run below the pause's compute level keeps training"
        assert growing.check(3).proceed
        # It stops once it reaches the level.
        growing.set_compute("1.5E20")
        assert growing.check(4).stop
    finally:
        for g in (big, small, growing):
            g.close()

    st = _status(beta, capsys)["pause"]
    assert st["state"] == "PAUSED"
    (in_force,) = st["in_force"]
    assert in_force["proposal_id"] == pid and in_force["scope"] == {"kind": "compute_above", "flop": "1E20"}
    runs = {r["model"]: r for r in st["runs"]}
    assert runs["beta-70b"]["stopped_by"] == [pid] and runs["beta-70b"]["source"] == "gate"
    assert runs["beta-1b"]["stopped_by"] == [] and runs["beta-1b"]["will_be_stopped_by"] == []
    assert runs["beta-7b"]["stopped_by"] == [pid]
    # The human view says the same.
    assert main(["status", "--home", str(beta.path)]) == 0
    text = capsys.readouterr().out
    assert "covers training runs once their compute reaches 1E20 FLOP" in text
    assert "beta-1b at 1E19 FLOP (gate): not covered by any pause in force" in text


def test_a_request_that_misses_its_deadline_expires_and_refuses_late_votes(homes, evidence, capsys) -> None:
    alpha, beta, _ = homes
    mesh = Mesh(homes)
    opened = utcnow() - timedelta(hours=2)  # asked two hours ago; votes counted for one
    trigger = DiscretionaryTrigger(
        kind="discretionary", lab="alpha",
        evidence=[DocRef(name=p.name, sha256=__import__("hashlib").sha256(p.read_bytes()).hexdigest()) for p in evidence],
        opened_at=format_time(opened),
    )
    pid = pause_proposal_id(trigger)
    alpha.publish("pause_proposal", PauseProposalBody(proposal_id=pid, trigger=trigger, observed="0", level="0"), now=opened)
    alpha.publish("vote", {"proposal_id": pid, "action": "pause", "decision": "pause"}, now=opened + timedelta(minutes=5))
    mesh.settle()
    before = _heads(homes)
    assert main(["vote", pid[:16], "--pause", "--rationale", "late", "--home", str(beta.path)]) == 2
    err = capsys.readouterr().err
    assert "closed at" in err and "expired" in err
    assert _heads(homes) == before
    assert main(["proposals", "--home", str(beta.path), "--json"]) == 0
    (p,) = json.loads(capsys.readouterr().out)["proposals"]
    assert p["state"] == "expired" and p["discretionary"] and p["weight"] == 1, p
    st = _status(beta, capsys)["pause"]
    assert st["expired"] == [pid] and st["open_proposals"] == [] and st["state"] == "not paused"


@pytest.mark.parametrize(
    ("scope", "why"),
    [
        ("compute-above:-5", "must be positive"),
        ("compute-above:lots", "scope 'compute-above:lots'"),
        ("domain:bio", "matches no run: the adopted policy's rules name the domains demo-arithmetic"),
        ("sideways", "is not one of: all, compute-above:FLOP"),
        ("all:now", "is not one of"),
    ],
)
def test_bad_scopes_are_refused_and_publish_nothing(homes, evidence, capsys, scope: str, why: str) -> None:
    alpha = homes[0]
    before = _heads(homes)
    args = ["propose-pause", "--home", str(alpha.path), "--rationale", "r", "--scope", scope,
            "--evidence", str(evidence[0])]
    assert main(args) == 2
    assert why in capsys.readouterr().err
    assert _heads(homes) == before


def test_bad_evidence_and_rationale_are_refused_and_publish_nothing(homes, evidence, tmp_path: Path, capsys) -> None:
    alpha = homes[0]
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    copy = tmp_path / "copy.md"
    copy.write_bytes(evidence[0].read_bytes())
    cases = [
        (["--evidence", str(tmp_path / "missing.pdf")], "r", "cannot read evidence file"),
        (["--evidence", str(tmp_path)], "r", "is a directory"),
        (["--evidence", str(empty)], "r", "is empty"),
        (["--evidence", str(evidence[0]), "--evidence", str(copy)], "r", "has the same contents as"),
        (["--evidence", str(evidence[0])], "   ", "--rationale is empty"),
    ]
    before = _heads(homes)
    for extra, rationale, why in cases:
        assert main(["propose-pause", "--home", str(alpha.path), "--rationale", rationale, *extra]) == 2, why
        assert why in capsys.readouterr().err
    assert main(["propose-pause", "--home", str(alpha.path), "--rationale", "r"]) == 2  # no evidence at all
    capsys.readouterr()
    assert _heads(homes) == before


def test_resume_may_narrow_a_discretionary_pause_but_not_widen_it(homes, evidence, tmp_path: Path, capsys) -> None:
    alpha = homes[0]
    mesh = Mesh(homes)
    pid = _propose(alpha, evidence, "compute-above:1E20", capsys)["pause_proposal"]
    mesh.sync()
    for h in homes:
        assert main(["vote", pid[:16], "--pause", "--rationale", "yes", "--home", str(h.path)]) == 0
        mesh.sync()
    mesh.settle()
    capsys.readouterr()
    case = tmp_path / "safety-case.pdf"
    case.write_text("interpretability audit: the planning circuit is absent below 1E21")
    base = ["propose-resume", "--home", str(alpha.path), "--rationale", "audit", "--pause", pid[:16],
            "--safety-case", str(case), "--json"]
    before = _heads(homes)
    assert main([*base, "--narrow-to", "compute-above:1E19"]) == 2  # wider: refused
    assert "does not narrow the pause" in capsys.readouterr().err
    assert main([*base, "--narrow-to", "all"]) == 2
    capsys.readouterr()
    assert _heads(homes) == before
    assert main([*base, "--narrow-to", "compute-above:1E21"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["narrow_to"] == {"kind": "compute_above", "flop": "1E21"}
    mesh.sync()
    for h in homes:
        assert main(["vote", out["resume_proposal"][:16], "--resume", "--rationale", "ok", "--home", str(h.path)]) == 0
        mesh.sync()
    mesh.settle()
    capsys.readouterr()
    (in_force,) = _status(alpha, capsys)["pause"]["in_force"]
    assert in_force["scope"] == {"kind": "compute_above", "flop": "1E21"}
