"""`tripwire report --home` through a real NodeHome (SQLite), then `tripwire verify` offline."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from node.cli import main
from node.netsetup import create_network, policy_digest_of
from reports.fixtures import DEMO_POLICY, T0, _result_body


@pytest.fixture(scope="module")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("net")
    labs = ["lab-a", "lab-b", "lab-c"]
    homes = create_network(
        root,
        labs,
        ports=[18701, 18702, 18703],
        policy_digest=policy_digest_of(DEMO_POLICY),
        seed=3,
        issued_at=T0 - timedelta(days=1),
    )
    try:
        for k in range(4):
            for i, h in enumerate(homes):
                acc = 0.05 + 0.1 * k + 0.05 * i
                body = _result_body(
                    model=f"model-{h.lab}",
                    step=100 * (k + 1),
                    flop=10 ** (18 + k),
                    acc=acc,
                    n=400,
                    started=T0 + timedelta(hours=k),
                )
                h.publish("eval_result", body, now=T0 + timedelta(hours=k, minutes=5 + i))
        for h in homes[1:]:
            outcomes = homes[0].store.ingest(h.store.feed(h.lab), now=T0 + timedelta(hours=6))
            assert all(o.status == "accepted" for o in outcomes), outcomes
        genesis = homes[0].store.roster_chain().envelopes()[0]
        (root / "genesis.json").write_text(json.dumps(genesis.to_dict()), encoding="utf-8")
    finally:
        for h in homes:
            h.close()
    return root


def test_report_from_a_node_home_verifies_offline(
    node_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "report",
            "--home",
            str(node_home / "lab-a"),
            "--out",
            str(out),
            "--audience",
            "regulator",
            "--no-pdf",
        ]
    )
    assert rc == 0, capsys.readouterr()
    assert {p.name for p in out.iterdir()} == {"report.html", "evidence.json"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Regulator edition" in html and "lab-c" in html
    evidence = json.loads((out / "evidence.json").read_text(encoding="utf-8"))
    assert len(evidence["entries"]) == 12 and evidence["node"] == "lab-a"

    capsys.readouterr()
    assert main(["verify", str(out / "evidence.json"), "--roster", str(node_home / "genesis.json")]) == 0
    printed = capsys.readouterr().out
    assert "merkle proofs" in printed and "FAIL" not in printed and "PASS" in printed

    # One edited number in the claims: verify fails, names the claim, exits non-zero.
    for fc in evidence["claims"]["fields"]:
        for ptr in fc["values"]:
            if ptr.endswith("/training_flop"):
                fc["values"][ptr] = "1"
                break
        else:
            continue
        break
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(evidence), encoding="utf-8")
    assert main(["verify", str(bad)]) == 3
    printed = capsys.readouterr().out
    assert "FAIL" in printed and "training_flop" in printed


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["verify", "missing.json"], 3, "cannot read evidence bundle"),
        (["report", "--home", "HOME", "--out", "OUT", "--audience", "press", "--no-pdf"], 2, "--audience"),
        (["report", "--home", "HOME", "--out", "OUT", "--since", "yesterday", "--no-pdf"], 2, "--since"),
    ],
    ids=["missing-bundle", "bad-audience", "bad-since"],
)
def test_bad_input_gets_a_clear_error_and_writes_nothing(
    args: list[str],
    code: int,
    message: str,
    node_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.replace("HOME", str(node_home / "lab-a")).replace("OUT", str(tmp_path / "out")) for a in args]
    argv = [str(tmp_path / a) if a == "missing.json" else a for a in argv]
    assert main(argv) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
