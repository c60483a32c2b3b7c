"""`tripwire eval --engine lm-eval|auto`: lm-eval runs the task, Tripwire signs lm-eval's numbers.

Checked against lm-eval's own ``simple_evaluate`` on the same tiny local model and local
data: the same metric values and stderrs (to the 6 decimals Tripwire writes), the same
sample counts, ``items_root`` recomputable from the ``--samples`` records, the engine named
in the result, and refusals for what cannot run (unknown task, bad engine) that leave no
``--out`` behind.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from node.cli import main

pytestmark = [pytest.mark.lmeval, pytest.mark.slow]
pytest.importorskip("lm_eval")

UTILS = '''
def process_docs(dataset):
    return dataset.map(lambda d: {"query": "Q: " + d["question"] + "\\nA:"})
'''


def _write_task(d: Path, *, hook: bool) -> Path:
    rng = random.Random(7)
    rows = []
    for i in range(12):
        a, b = rng.randint(0, 30), rng.randint(0, 30)
        choices = [str(a + b), str(a + b + 1), str(a * b), str(abs(a - b))]
        rows.append({"id": i, "question": f"{a} plus {b}?", "choices": choices, "label": 0})
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    name = "tw_engine_hook" if hook else "tw_engine_plain"
    doc_to_text = "query" if hook else '"Q: {{question}}\\nA:"'
    text = f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{d / 'test.jsonl'}"}}
test_split: test
output_type: multiple_choice
doc_to_text: {doc_to_text}
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""
    if hook:
        (d / "utils.py").write_text(UTILS)
        text += "process_docs: !function utils.process_docs\n"
    p = d / f"{name}.yaml"
    p.write_text(text)
    return p


def _run(capsys, *args: object) -> tuple[int, str]:
    rc = main(["eval", "--no-progress", "--device", "cpu", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def _lmeval_direct(model_dir: Path, task_file: Path) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    # The index of lm-eval's registry is built once per process (equal to lm-eval's own build:
    # test_the_shared_registry_index_equals_lmevals_own_build); lm-eval loads and runs the task.
    from node.evals.lmeval import task_manager

    lm = HFLM(pretrained=str(model_dir), dtype="float32", device="cpu", batch_size=4)
    name = task_file.stem
    out = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=task_manager(task_file.parent),
                                  batch_size=4, device="cpu", log_samples=False)
    return out["results"][name] | {"n": out["n-samples"][name]["effective"]}


def one_lab_home(workdir: Path) -> Path:
    from node.home import netsetup

    homes = netsetup.create_network(workdir, ["alpha", "beta"], ports=[18941, 18942])
    for h in homes:
        h.close()
    return homes[0].path


@pytest.fixture
def hook_task(tmp_path):
    d = tmp_path / "tasks"
    d.mkdir()
    return _write_task(d, hook=True)


def test_auto_hands_a_function_hook_task_to_lmeval_and_signs_its_numbers(tiny_model_dir, hook_task, tmp_path, capsys):
    out, samples = tmp_path / "r.json", tmp_path / "items.jsonl"
    rc, text = _run(capsys, "--model", tiny_model_dir, "--task", hook_task, "--batch-size", "4",
                    "--out", out, "--samples", samples)
    assert rc == 0, text
    assert "engine lm-eval" in text
    doc = json.loads(out.read_text())
    assert doc["runtime"]["engine"] == "lm-eval"
    assert doc["suite"]["id"] == "lm-eval/tw_engine_hook"
    got = doc["tasks"]["tw_engine_hook"]
    ref = _lmeval_direct(tiny_model_dir, hook_task)
    assert got["n"] == ref["n"] == 12
    for m in ("acc", "acc_norm"):
        assert float(got["metrics"][m]["value"]) == pytest.approx(ref[f"{m},none"], abs=5e-7)
        assert float(got["metrics"][m]["stderr"]) == pytest.approx(ref[f"{m}_stderr,none"], abs=5e-7)

    from protocol.merkle import merkle_root

    lines = samples.read_bytes().splitlines()
    assert len(lines) == 12
    assert merkle_root(lines).hex() == got["items_root"]


def test_lmeval_engine_matches_the_native_runner_where_native_loads(tiny_model_dir, tmp_path, capsys):
    d = tmp_path / "tasks"
    d.mkdir()
    task = _write_task(d, hook=False)
    rc, text = _run(capsys, "--model", tiny_model_dir, "--task", task, "--engine", "native", "--out", tmp_path / "n.json")
    assert rc == 0, text
    rc, text = _run(capsys, "--model", tiny_model_dir, "--task", task, "--engine", "lm-eval", "--batch-size", "4",
                    "--out", tmp_path / "l.json")
    assert rc == 0, text
    native = json.loads((tmp_path / "n.json").read_text())
    lme = json.loads((tmp_path / "l.json").read_text())
    assert native["runtime"]["engine"] == "native" and lme["runtime"]["engine"] == "lm-eval"
    for m in ("acc", "acc_norm"):
        assert native["tasks"]["tw_engine_plain"]["metrics"][m] == lme["tasks"]["tw_engine_plain"]["metrics"][m]


def test_native_engine_refuses_what_it_does_not_reproduce(tiny_model_dir, hook_task, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc, text = _run(capsys, "--model", tiny_model_dir, "--task", hook_task, "--engine", "native", "--out", out)
    assert rc == 2 and "function" in text.lower() and not out.exists()


@pytest.mark.parametrize(("args", "needle"), [
    (("--task", "no_such_lmeval_task_xyz"), "not found"),
    (("--task", "x.yaml"), "no such task file"),
    (("--task", "arc_easy", "--engine", "turbo"), "--engine"),
])
def test_bad_engine_input_is_refused_and_writes_nothing(tiny_model_dir, tmp_path, capsys, args, needle):
    out = tmp_path / "r.json"
    rc, text = _run(capsys, "--model", tiny_model_dir, *args, "--out", out)
    assert rc != 0 and needle in text and not out.exists()


def test_sign_publishes_lmeval_numbers_into_the_feed(tiny_model_dir, hook_task, tmp_path, capsys):
    home = one_lab_home(tmp_path / "net")
    out = tmp_path / "r.json"
    rc, text = _run(capsys, "--model", tiny_model_dir, "--task", hook_task, "--batch-size", "4", "--sign",
                    "--home", home, "--out", out)
    assert rc == 0, text
    doc = json.loads(out.read_text())
    from node.home import NodeHome

    with NodeHome.open(home) as h:
        entry = h.store.get(doc["entry_id"])
    assert entry is not None
    body = entry.statement.body
    body = body.model_dump() if hasattr(body, "model_dump") else body
    assert body["suite"]["id"] == "lm-eval/tw_engine_hook"
    assert body["tasks"][0]["metrics"] == doc["tasks"]["tw_engine_hook"]["metrics"]


def test_signing_failure_after_scoring_keeps_the_result(copy_model, tmp_path, capsys):
    """Compute known only after loading (tokens seen x parameters) beyond the signable
    domain: the run is kept in --out, unsigned, and the error says why."""
    state = json.loads((copy_model / "trainer_state.json").read_text())
    state["num_input_tokens_seen"] = 10**40
    (copy_model / "trainer_state.json").write_text(json.dumps(state))
    home = one_lab_home(tmp_path / "net")
    out = tmp_path / "r.json"
    arith = Path(__file__).resolve().parents[2] / "specs" / "evals" / "arithmetic_mc.yaml"
    rc, text = _run(capsys, "--model", copy_model, "--task", arith, "--limit", "2", "--sign", "--home", home, "--out", out)
    assert rc == 3, text
    assert "not signed" in text and out.exists()
    assert "entry_id" not in json.loads(out.read_text())


def test_lmevals_task_index_is_built_once_and_rebuilt_when_the_task_folder_changes(tmp_path):
    from node.evals.lmeval import task_manager

    d = tmp_path / "tasks"
    d.mkdir()
    first = _write_task(d, hook=False)
    tm = task_manager(d)
    assert "tw_engine_plain" in tm.all_tasks
    assert task_manager(d) is tm  # unchanged folder: the index is reused
    # A task file added beside it is found: the folder changed, so the index is rebuilt.
    added = d / "tw_engine_added.yaml"
    added.write_text(first.read_text().replace("task: tw_engine_plain", "task: tw_engine_added"))
    tm2 = task_manager(d)
    assert tm2 is not tm and {"tw_engine_plain", "tw_engine_added"} <= set(tm2.all_tasks)
    added.unlink()
    assert "tw_engine_added" not in task_manager(d).all_tasks


def test_the_shared_registry_index_equals_lmevals_own_build(tmp_path):
    """The task manager indexes lm-eval's registry once per process and merges a folder's
    index over it; that must be lm-eval's own ``TaskManager(include_path=...)`` exactly:
    a new task, a task and a group replacing registry names, and a tag."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from node.evals.lmeval import task_manager

    d = tmp_path / "tasks"
    d.mkdir()
    _write_task(d, hook=True)
    registry = Path(lm_eval.__file__).resolve().parent / "tasks"
    # A registry task name (arc_easy) and group name (ai2_arc) defined again in the folder.
    (d / "arc_easy.yaml").write_text(
        (registry / "arc" / "arc_easy.yaml").read_text().replace("tag:\n  - ai2_arc", "tag:\n  - tw_tag")
    )
    (d / "group.yaml").write_text("group: ai2_arc\ntask:\n  - tw_engine_hook\n  - arc_easy\n")
    fast, own = task_manager(d), TaskManager(include_path=str(d))
    assert fast.task_index == own.task_index
    assert fast.task_index["arc_easy"].yaml_path == d / "arc_easy.yaml"
    assert fast.task_index["ai2_arc"].yaml_path == d / "group.yaml"
    assert "tw_tag" in fast.all_tags and "tw_engine_hook" in fast.all_subtasks
    for listing in ("all_tasks", "all_subtasks", "all_groups", "all_tags"):
        assert getattr(fast, listing) == getattr(own, listing), listing
    assert len(fast.all_tasks) > 10_000  # the registry is there, not only the folder
    # The registry alone (a task named, not a file): the registry's own arc_easy, untouched
    # by the folder's replacement above.
    alone = task_manager(None)
    assert alone.task_index["arc_easy"].yaml_path == registry / "arc" / "arc_easy.yaml"
    assert set(alone.all_tasks) == set(own.all_tasks) - {"tw_engine_hook", "tw_tag"}
