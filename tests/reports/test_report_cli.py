"""`tripwire report --home` through a real NodeHome (SQLite), then `tripwire verify` offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.cli import main


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
