"""`tripwire --version | validate | suites`: torch-free commands about the install and its files."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from node.cli import main
from node.home.netsetup import create_network, suite_ref_of
from node.home.resources import packaged_suites, spec_path, specs_dir

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_version_prints_the_installed_distribution(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tripwire {importlib.metadata.version('tripwire')}"


def test_specs_resolve_to_this_checkout():
    # A checkout reads its own specs/, never an older installed copy.
    assert specs_dir() == SPECS.resolve()
    assert spec_path("policies", "demo.yaml") == SPECS.resolve() / "policies" / "demo.yaml"
    assert [p.name for p in packaged_suites()] == sorted(p.name for p in (SPECS / "suites").glob("*.yaml"))


@pytest.mark.parametrize(
    ("path", "kind", "name"),
    [
        ("suites/tripwire-core.yaml", "suite", "tripwire-core"),
        ("evals/arithmetic_mc.yaml", "task", "arithmetic_mc"),
        ("policies/demo.yaml", "policy", "tripwire-demo"),
        ("policies/rsp-style.yaml", "policy", "rsp-style-example"),
    ],
)
def test_validate_names_the_kind_and_digest(path, kind, name, capsys):
    assert main(["validate", str(SPECS / path)]) == 0
    out = capsys.readouterr().out
    assert f"valid {kind} {name}" in out
    if kind == "suite":
        assert suite_ref_of(SPECS / path).digest in out


def test_validate_policy_json_matches_its_yaml(tmp_path, capsys):
    from protocol.policy import Policy

    p = Policy.from_yaml((SPECS / "policies" / "demo.yaml").read_text(encoding="utf-8"))
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(p.model_dump(mode="json")), encoding="utf-8")
    assert main(["validate", str(f)]) == 0
    assert p.digest in capsys.readouterr().out


def _write(tmp: Path, name: str, text: str) -> Path:
    f = tmp / name
    f.write_text(text, encoding="utf-8")
    return f


@pytest.mark.parametrize(
    ("name", "text", "rc", "needle"),
    [
        ("missing.yaml", None, 2, "no such file"),
        ("list.yaml", "- a\n- b\n", 2, "expected a mapping at the top level, got list"),
        ("other.yaml", "name: x\nvalue: 3\n", 2, "not a suite, task or policy file (top-level keys: name, value)"),
        ("broken.yaml", "task: [unclosed\n", 2, "not valid YAML"),
        ("broken.json", "{\"id\": ", 2, "not valid JSON"),
        ("badpolicy.yaml", "id: p\nversion: 1\ntitle: t\ndescription: d\nrules: []\n", 3, "[policy]"),
        ("badtask.yaml", "task: t\nkind: nonsense\n", 2, "unknown task kind 'nonsense'"),
        ("badsuite.yaml", "suite: s\nversion: '1'\ntasks:\n  - path: nowhere.yaml\n", 2, "nowhere.yaml"),
    ],
)
def test_validate_refuses_bad_files_by_name(tmp_path, capsys, name, text, rc, needle):
    f = tmp_path / name if text is None else _write(tmp_path, name, text)
    assert main(["validate", str(f)]) == rc
    err = capsys.readouterr().err
    assert needle in err and str(f) in err.replace("\n", "")


def test_validate_stops_at_the_first_bad_file(tmp_path, capsys):
    bad = _write(tmp_path, "x.yaml", "x: 1\n")
    assert main(["validate", str(SPECS / "policies" / "demo.yaml"), str(bad)]) == 2
    cap = capsys.readouterr()
    assert "valid policy" in cap.out and "not a suite, task or policy file" in cap.err


def test_suites_lists_packaged_ones(capsys):
    assert main(["suites", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = {(s["id"], s["digest"], s["origin"]) for s in doc["suites"]}
    want = {(suite_ref_of(p).id, suite_ref_of(p).digest, "packaged") for p in packaged_suites()}
    assert got == want


def test_suites_with_home_adds_own_and_pinned(tmp_path, capsys):
    core = SPECS / "suites" / "tripwire-core.yaml"
    foreign = suite_ref_of(core).model_copy(update={"id": "elsewhere", "digest": "ab" * 32})
    homes = create_network(tmp_path, ["lab-a", "lab-b"], ports=[18771, 18772], seed=5,
                           suites=[suite_ref_of(core), foreign])
    for h in homes:
        h.close()
    home = tmp_path / "lab-a"
    own = home / "suites"
    own.mkdir()
    (own / "mine.yaml").write_text(
        "suite: mine\nversion: '0.1'\ntasks:\n"
        f"  - path: {(SPECS / 'evals' / 'arithmetic_quick.yaml').as_posix()}\n",
        encoding="utf-8",
    )
    assert main(["suites", "--home", str(home), "--json"]) == 0
    rows = {s["id"]: s for s in json.loads(capsys.readouterr().out)["suites"]}
    assert rows["tripwire-core"]["origin"] == "packaged" and rows["tripwire-core"]["pinned"] is True
    assert rows["tripwire-demo"]["pinned"] is False
    assert rows["mine"]["origin"] == "node" and rows["mine"]["tasks"] == 1
    assert rows["elsewhere"] == {"id": "elsewhere", "version": foreign.version, "digest": "ab" * 32,
                                 "tasks": None, "origin": "roster", "path": None, "pinned": True}
    assert main(["suites", "--home", str(tmp_path / "nope")]) == 2
    assert "no such node home" in capsys.readouterr().err


def test_eval_and_demo_name_the_extra_when_torch_is_missing(monkeypatch, capsys, tmp_path):
    # Simulate a core install: torch cannot be found (find_spec returns None for a None entry).
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a))
    assert main(["demo", "--workdir", str(tmp_path / "d")]) == 2
    assert 'pip install "tripwire[evals]"' in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path), "--task", str(SPECS / "evals" / "arithmetic_mc.yaml"),
                 "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "[missing-extra]" in err and "torch" in err
    assert not (tmp_path / "d").exists() and not (tmp_path / "o.json").exists()
