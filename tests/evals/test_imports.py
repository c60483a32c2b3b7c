"""`tripwire import lm-eval DIR` and `tripwire import inspect LOG`: results labs already
produced become the same eval_result body as `tripwire eval`, with the tool's own numbers,
``items_root`` over its samples, and clear refusals (leaving no --out) for what cannot be
imported. Inspect runs a real task on its ``mockllm`` model; lm-eval runs its own CLI on a
tiny local model. No network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli import main
from protocol.merkle import merkle_root

pytestmark = pytest.mark.slow


def _run(capsys, *args: object) -> tuple[int, str]:
    rc = main(["import", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def _network(workdir: Path) -> Path:
    from node.home import netsetup

    homes = netsetup.create_network(workdir, ["alpha", "beta"], ports=[18951, 18952])
    for h in homes:
        h.close()
    return homes[0].path


# --- Inspect -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inspect_log(tmp_path_factory) -> Path:
    pytest.importorskip("inspect_ai")
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    canned = "Default output from mockllm/model"
    samples = [Sample(id=i, input=f"Say item {i}", target=canned if i % 3 else f"other {i}") for i in range(9)]
    d = tmp_path_factory.mktemp("inspect-logs")
    logs = inspect_eval(Task(name="tw_recall", dataset=samples, solver=[generate()], scorer=match()),
                        model="mockllm/model", log_dir=str(d), display="none")
    assert logs[0].status == "success"
    return Path(logs[0].location)


def test_inspect_log_becomes_an_eval_result_with_inspects_numbers(inspect_log, tmp_path, capsys):
    from inspect_ai.log import read_eval_log

    out, samples = tmp_path / "r.json", tmp_path / "s.jsonl"
    rc, text = _run(capsys, "inspect", inspect_log, "--out", out, "--samples", samples)
    assert rc == 0, text
    doc = json.loads(out.read_text())
    log = read_eval_log(str(inspect_log))
    metrics = log.results.scores[0].metrics
    got = doc["tasks"]["tw_recall"]
    assert got["n"] == 9
    assert float(got["metrics"]["accuracy"]["value"]) == pytest.approx(metrics["accuracy"].value, abs=5e-7)
    assert float(got["metrics"]["accuracy"]["stderr"]) == pytest.approx(metrics["stderr"].value, abs=5e-7)
    assert doc["runtime"]["engine"] == "inspect (imported)" and doc["runtime"]["commitment"] == "declared"
    lines = samples.read_bytes().splitlines()
    assert len(lines) == 9 and merkle_root(lines).hex() == got["items_root"]


def test_inspect_import_signs_with_a_weights_commitment(inspect_log, tiny_model_dir, tmp_path, capsys):
    home = _network(tmp_path / "net")
    out = tmp_path / "r.json"
    rc, text = _run(capsys, "inspect", inspect_log, "--out", out, "--model", tiny_model_dir,
                    "--training-flop", "1.5E15", "--sign", "--home", home)
    assert rc == 0, text
    doc = json.loads(out.read_text())
    from node.evals.model import model_commitment
    from node.home import NodeHome

    assert doc["model"]["commitment"] == model_commitment(tiny_model_dir)[0]
    with NodeHome.open(home) as h:
        entry = h.store.get(doc["entry_id"])
    assert entry is not None and entry.statement.kind == "eval_result"


def test_unreadable_or_unfinished_inspect_logs_are_refused(inspect_log, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = tmp_path / "r.json"
    rc, text = _run(capsys, "inspect", bad, "--out", out)
    assert rc == 3 and "not a readable Inspect log" in text and not out.exists()
    rc, text = _run(capsys, "inspect", tmp_path / "missing.eval", "--out", out)
    assert rc == 2 and "no such Inspect log" in text and not out.exists()

    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(str(inspect_log))
    log.status = "error"
    failed = tmp_path / "failed.json"
    write_eval_log(log, str(failed))
    rc, text = _run(capsys, "inspect", failed, "--out", out)
    assert rc == 3 and "'error'" in text and not out.exists()


def test_import_sign_without_compute_is_refused_before_reading(inspect_log, tmp_path, capsys):
    home = _network(tmp_path / "net")
    out = tmp_path / "r.json"
    rc, text = _run(capsys, "inspect", inspect_log, "--out", out, "--sign", "--home", home)
    assert rc != 0 and "--training-flop" in text and not out.exists()


# --- lm-eval -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lmeval_output(tiny_model_dir, tmp_path_factory) -> Path:
    pytest.importorskip("lm_eval")
    d = tmp_path_factory.mktemp("lmeval")
    rows = [{"q": f"{a} plus {a}?", "choices": [str(2 * a), str(2 * a + 1), str(a)], "label": 0} for a in range(10)]
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "tw_import.yaml").write_text(f"""task: tw_import
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{d / 'test.jsonl'}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{{{q}}}}\\nA:"
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
""")
    out = d / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={tiny_model_dir},dtype=float32",
         "--tasks", "tw_import", "--include_path", str(d), "--device", "cpu", "--batch_size", "4",
         "--output_path", str(out), "--log_samples"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_lmeval_output_folder_becomes_an_eval_result_with_lmevals_numbers(lmeval_output, tmp_path, capsys):
    out, samples = tmp_path / "r.json", tmp_path / "s.jsonl"
    rc, text = _run(capsys, "lm-eval", lmeval_output, "--out", out, "--samples", samples)
    assert rc == 0, text
    results = json.loads(next(lmeval_output.rglob("results_*.json")).read_text())
    ref = results["results"]["tw_import"]
    got = json.loads(out.read_text())["tasks"]["tw_import"]
    assert got["n"] == results["n-samples"]["tw_import"]["effective"] == 10
    assert float(got["metrics"]["acc"]["value"]) == pytest.approx(ref["acc,none"], abs=5e-7)
    assert float(got["metrics"]["acc"]["stderr"]) == pytest.approx(ref["acc_stderr,none"], abs=5e-7)
    lines = samples.read_bytes().splitlines()
    assert len(lines) == 10 and merkle_root(lines).hex() == got["items_root"]


def test_lmeval_output_without_samples_is_refused(lmeval_output, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(lmeval_output, copy)
    for f in copy.rglob("samples_*.jsonl"):
        f.unlink()
    out = tmp_path / "r.json"
    rc, text = _run(capsys, "lm-eval", copy, "--out", out)
    assert rc == 3 and "--log_samples" in text and not out.exists()
    rc, text = _run(capsys, "lm-eval", tmp_path, "--out", out)
    assert rc != 0 and not out.exists()
