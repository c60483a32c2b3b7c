"""`tripwire eval` end to end, and every bad input failing loudly with nothing written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from node.cli import main

SPECS = Path(__file__).resolve().parents[2] / "specs"
ARITH = SPECS / "evals" / "arithmetic_mc.yaml"


def _run(capsys, *args: str) -> tuple[int, str]:
    rc = main(["eval", "--no-progress", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_eval_writes_result_and_samples(tiny_model_dir, tmp_path, capsys):
    out, samples = tmp_path / "r.json", tmp_path / "items.jsonl"
    rc, text = _run(capsys, "--model", tiny_model_dir, "--suite", SPECS / "suites" / "tripwire-core.yaml",
                    "--limit", "5", "--batch-size", "4", "--device", "cpu", "--out", out, "--samples", samples)
    assert rc == 0, text
    doc = json.loads(out.read_text())
    assert set(doc["tasks"]) == {"arithmetic_mc", "arithmetic_gen", "kv_recall_mc", "composition_mc"}
    assert doc["tasks"]["arithmetic_mc"]["n"] == 5
    assert doc["runtime"]["device"].startswith("cpu") and doc["runtime"]["dtype"] == "float32"
    assert len(samples.read_text().splitlines()) == 20
    assert doc["model"]["commitment"] in text and "arithmetic_mc" in text


def test_eval_digest_prints_suite_and_task_digests(capsys):
    assert main(["eval-digest", str(SPECS / "suites" / "tripwire-core.yaml")]) == 0
    out = capsys.readouterr().out
    assert "suite tripwire-core 1.0.0" in out and out.count("task ") == 4


def _jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _task(tmp_path: Path, body: str, rows=None, name="task.yaml") -> Path:
    if rows is not None:
        digest = _jsonl(tmp_path / "data.jsonl", rows)
        body = body.replace("DIGEST", digest)
    p = tmp_path / name
    p.write_text(body)
    return p


ROWS = [{"q": f"{i}+1=", "choices": [str(i + 1), str(i + 2)], "gold": 0} for i in range(6)]
GOOD = """task: local_mc
kind: multiple_choice
data: {path: data.jsonl, sha256: "DIGEST"}
doc_to_text: q
metrics: [acc]
"""


def test_local_jsonl_task_with_matching_pin_runs(tiny_model_dir, tmp_path, capsys):
    task = _task(tmp_path, GOOD, ROWS)
    rc, text = _run(capsys, "--model", tiny_model_dir, "--task", task, "--out", tmp_path / "r.json")
    assert rc == 0, text
    assert json.loads((tmp_path / "r.json").read_text())["tasks"]["local_mc"]["n"] == 6


def _corrupt(model_dir: Path) -> Path:
    w = model_dir / "model.safetensors"
    w.write_bytes(w.read_bytes()[: 1000])
    return model_dir


BAD = [
    ("missing-model-dir", lambda t, m: ["--model", t / "nope", "--task", ARITH], 2, "does not exist"),
    ("model-dir-without-weights", lambda t, m: ["--model", _strip_weights(m), "--task", ARITH], 2, "no weight files"),
    ("corrupt-weights", lambda t, m: ["--model", _corrupt(m), "--task", ARITH], 2, "cannot load the weights"),
    ("dataset-digest-mismatch", lambda t, m: ["--model", m, "--task", _task(t, GOOD.replace("DIGEST", "0" * 64), ROWS)],
     3, "pins 0000"),
    ("missing-data-pin", lambda t, m: ["--model", m, "--task", _task(t, GOOD.replace('sha256: "DIGEST"', "x: 1"), ROWS)],
     2, "data.sha256 is required"),
    ("malformed-yaml", lambda t, m: ["--model", m, "--task", _task(t, "task: x\nkind: [multiple_choice\n")], 2, "malformed YAML"),
    ("unknown-metric", lambda t, m: ["--model", m, "--task", _task(t, GOOD.replace("[acc]", "[acc, f1_macro]"), ROWS)],
     2, "unknown metric 'f1_macro'"),
    ("empty-dataset", lambda t, m: ["--model", m, "--task", _task(t, GOOD, [])], 3, "dataset is empty"),
    ("unknown-kind", lambda t, m: ["--model", m, "--task", _task(t, GOOD.replace("multiple_choice", "essay"), ROWS)],
     2, "unknown task kind 'essay'"),
    ("gold-not-a-choice", lambda t, m: ["--model", m, "--task", _task(t, GOOD, [{"q": "a", "choices": ["b"], "gold": 3}])],
     3, "not a valid choice index"),
    ("row-missing-field", lambda t, m: ["--model", m, "--task", _task(t, GOOD, [{"choices": ["b"], "gold": 0}])],
     3, "item 0"),
    ("task-and-suite", lambda t, m: ["--model", m, "--task", ARITH, "--suite", ARITH], 2, "exactly one of"),
    ("bad-batch-size", lambda t, m: ["--model", m, "--task", ARITH, "--batch-size", "lots"], 2, "batch size"),
    ("cuda-without-gpu", lambda t, m: ["--model", m, "--task", ARITH, "--device", "cuda"], 2, "no CUDA device"),
    ("sign-without-home", lambda t, m: ["--model", m, "--task", ARITH, "--sign"], 2, "--sign needs --home"),
    ("sign-without-compute", lambda t, m: ["--model", _strip_state(m), "--task", ARITH, "--sign", "--home", t],
     2, "--training-flop"),
    ("bad-training-flop", lambda t, m: ["--model", m, "--task", ARITH, "--training-flop", "lots"], 2, "not a decimal"),
]


def _strip_weights(m: Path) -> Path:
    (m / "model.safetensors").unlink()
    return m


def _strip_state(m: Path) -> Path:
    (m / "trainer_state.json").unlink()
    return m


@pytest.mark.parametrize(("make_args", "code", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_error_and_writes_nothing(make_args, code, message, copy_model, tmp_path, capsys):
    import torch

    if "cuda" in message.lower() and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    work = tmp_path / "w"
    work.mkdir()
    out, samples = tmp_path / "r.json", tmp_path / "s.jsonl"
    rc, text = _run(capsys, *make_args(work, copy_model), "--out", out, "--samples", samples)
    assert rc == code, text
    assert message in " ".join(text.split()), text
    assert not out.exists() and not samples.exists()
    assert not list(tmp_path.glob(".*tmp*"))


def test_sign_publishes_a_verified_eval_result_into_the_labs_feed(tiny_model_dir, tmp_path, capsys):
    from node.home import NodeHome, netsetup

    homes = netsetup.create_network(tmp_path / "net", ["alpha", "beta"], ports=[18931, 18932])
    home_dir = homes[0].path
    for h in homes:
        h.close()
    out, samples = tmp_path / "r.json", tmp_path / "s.jsonl"
    rc, text = _run(capsys, "--model", tiny_model_dir, "--task", ARITH, "--limit", "4", "--sign",
                    "--home", home_dir, "--out", out, "--samples", samples)
    assert rc == 0, text
    doc = json.loads(out.read_text())
    assert doc["entry_id"] in " ".join(text.split())
    with NodeHome.open(home_dir) as home:
        entry = home.store.get(doc["entry_id"])
        assert entry is not None and entry.statement.kind == "eval_result"
        body = entry.statement.body
        body = body.model_dump() if hasattr(body, "model_dump") else body
        assert body["model"]["commitment"] == doc["model"]["commitment"]
        assert body["tasks"][0]["items_root"] == doc["tasks"]["arithmetic_mc"]["items_root"]


def test_sign_without_a_roster_is_refused_before_scoring(tiny_model_dir, tmp_path, capsys):
    """A home that cannot publish (no roster yet): refused before the model is scored, the
    error names it, no --out is left."""
    from node.home import NodeHome

    NodeHome.init(tmp_path / "home", "alpha").close()
    out = tmp_path / "r.json"
    rc, text = _run(capsys, "--model", tiny_model_dir, "--task", ARITH, "--limit", "2", "--sign",
                    "--home", tmp_path / "home", "--out", out)
    assert rc != 0 and "roster" in text and not out.exists()
