from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.evals.runner import run_suite, write_result
from protocol.canonical import HEX64_RE, TIME_RE, canonical_bytes, parse_canonical
from protocol.merkle import merkle_root

SPECS = Path(__file__).resolve().parents[2] / "specs"

CORE = SPECS / "suites" / "tripwire-core.yaml"


@pytest.fixture(scope="module")
def core_run(loaded):
    return run_suite(loaded.model_dir, CORE, limit=24, batch_size=8, model=loaded)


def test_signed_body_has_exactly_the_eval_result_shape(core_run):
    body = core_run.to_body()
    assert set(body) == {"suite", "model", "tasks", "runtime", "started_at", "finished_at"}
    assert body["suite"]["id"] == "tripwire-core" and HEX64_RE.match(body["suite"]["digest"])
    m = body["model"]
    assert set(m) == {"name", "commitment", "checkpoint_step", "training_flop", "parameters"}
    assert m["checkpoint_step"] == 40  # from trainer_state.json
    assert m["training_flop"] == str(6 * m["parameters"] * 40 * 8 * 100)
    assert [t["name"] for t in body["tasks"]] == ["arithmetic_mc", "arithmetic_gen", "kv_recall_mc", "composition_mc"]
    for t in body["tasks"]:
        assert set(t) == {"name", "digest", "n", "metrics", "items_root"} and t["n"] == 24
        for v in t["metrics"].values():
            assert set(v) == {"value", "stderr"} and all(isinstance(x, str) for x in v.values())
    assert {"torch", "transformers", "device", "dtype", "batch_size"} <= set(body["runtime"])
    assert TIME_RE.match(body["started_at"]) and TIME_RE.match(body["finished_at"])
    # No floats anywhere: the canonical encoder refuses them.
    assert parse_canonical(canonical_bytes(body)) == body


def test_body_validates_against_the_protocol_model(core_run):
    from protocol.entries import EvalResultBody

    EvalResultBody.model_validate(core_run.to_body())


def test_items_root_commits_to_the_sample_records_in_order(core_run):
    lines = core_run.sample_lines()
    assert len(lines) == 4 * 24
    for t in core_run.tasks:
        mine = [x for x in lines if json.loads(x)["task"] == t.spec.name]
        assert merkle_root(mine).hex() == t.items_root
        assert [json.loads(x)["index"] for x in mine] == list(range(24))
        assert merkle_root(list(reversed(mine))).hex() != t.items_root


def test_metrics_match_per_item_records(core_run):
    t = core_run.tasks[0]
    accs = [int(r["metrics"]["acc"]) for r in t.records]
    assert t.metrics["acc"][0] == pytest.approx(sum(accs) / len(accs))
    p = sum(accs) / len(accs)
    assert t.metrics["acc"][1] == pytest.approx((p * (1 - p) / (len(accs) - 1)) ** 0.5)
    for r in t.records:
        probs = float(r["metrics"]["prob_correct"])
        assert 0 < probs < 1 and float(r["metrics"]["brier"]) >= (1 - probs) ** 2 - 1e-6


def test_runs_are_deterministic_and_plain_scoring_agrees(loaded, core_run):
    again = run_suite(loaded.model_dir, CORE, limit=24, batch_size=5, model=loaded, shared_prefix=False)
    for a, b in zip(core_run.tasks, again.tasks, strict=True):
        assert a.metrics.keys() == b.metrics.keys()
        for k in a.metrics:
            assert a.metrics[k][0] == pytest.approx(b.metrics[k][0], abs=1e-4)
        if a.spec.kind == "multiple_choice":
            for ra, rb in zip(a.records, b.records, strict=True):
                for x, y in zip(ra["logprobs"], rb["logprobs"], strict=True):
                    assert abs(float(x) - float(y)) < 1e-4


def test_resume_cache_skips_finished_items_and_gives_the_same_result(loaded, tmp_path):
    task = SPECS / "evals" / "arithmetic_mc.yaml"
    first = run_suite(loaded.model_dir, task, limit=30, batch_size=8, model=loaded, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("arithmetic_mc-*.jsonl")
    lines = cache_file.read_text().splitlines()
    assert len(lines) == 30
    # An interrupted run: only 10 items finished, and the last line was torn mid-write.
    cache_file.write_text("\n".join(lines[:10]) + "\n" + lines[10][:17])
    again = run_suite(loaded.model_dir, task, limit=30, batch_size=8, model=loaded, cache_dir=tmp_path)
    assert again.tasks[0].items_root == first.tasks[0].items_root
    assert again.tasks[0].metrics == first.tasks[0].metrics


def test_result_json_maps_tasks_to_n_and_decimal_metrics(core_run, tmp_path):
    out = tmp_path / "r.json"
    write_result(core_run, out)
    doc = json.loads(out.read_text())
    assert doc["tasks"]["arithmetic_mc"]["n"] == 24
    assert doc["model"]["commitment"] == core_run.commitment
    assert doc["tasks"]["arithmetic_mc"]["metrics"]["acc"]["value"] == core_run.to_body()["tasks"][0]["metrics"]["acc"]["value"]
    assert {"torch", "transformers", "device", "dtype"} <= set(doc["runtime"])


def test_explicit_step_and_flop_override_the_trainer_state(loaded):
    run = run_suite(loaded.model_dir, SPECS / "evals" / "kv_recall_mc.yaml", limit=3, model=loaded,
                    checkpoint_step=7, training_flop="1.5E18")
    m = run.to_body()["model"]
    assert m["checkpoint_step"] == 7 and m["training_flop"] == "1.5E18"
    assert run.suite.id == "kv_recall_mc"


# --- lm-eval task files: includes and what the native loader hands over -------------------

LMEVAL_BASE = """dataset_path: json
dataset_kwargs:
  data_files: {{test: "{data}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{{{q}}}}"
doc_to_choice: ["yes", "no"]
doc_to_target: 0
"""


@pytest.fixture
def lmeval_dir(tmp_path):
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"q": f"item {i}"}) + "\n" for i in range(3)))
    (tmp_path / "base.yaml").write_text(LMEVAL_BASE.format(data=tmp_path / "test.jsonl"))
    return tmp_path


def test_include_merges_the_base_under_the_including_file(lmeval_dir):
    from node.evals.spec import load_task, prompts

    (lmeval_dir / "sub").mkdir()
    (lmeval_dir / "sub" / "t.yaml").write_text('include: ../base.yaml\ntask: t_inc\ndoc_to_text: "Say {{q}}"\n')
    spec = load_task(lmeval_dir / "sub" / "t.yaml")
    assert spec.name == "t_inc" and prompts.contexts(spec)[0] == "Say item 0" and len(spec.docs) == 3


@pytest.mark.parametrize(("files", "needle"), [
    ({"t.yaml": "include: nowhere.yaml\ntask: t\n"}, "included file nowhere.yaml does not exist"),
    ({"t.yaml": "include: a.yaml\ntask: t\n", "a.yaml": "include: t.yaml\n"}, "include cycle"),
    ({"t.yaml": "include: t.yaml\ntask: t\n"}, "include cycle"),
])
def test_bad_includes_are_a_clear_spec_error_naming_the_file(lmeval_dir, files, needle):
    from node.evals.errors import EvalSpecError, NativeUnsupportedError
    from node.evals.spec import load_task

    for name, text in files.items():
        (lmeval_dir / name).write_text(text)
    with pytest.raises(EvalSpecError, match=needle) as e:
        load_task(lmeval_dir / "t.yaml")
    assert not isinstance(e.value, NativeUnsupportedError)
    assert ".yaml" in str(e.value) and "not a task file" not in str(e.value)


@pytest.mark.parametrize(("extra", "needle"), [
    ("process_results: x\n", "process_results"),
    ("fewshot_config:\n  fewshot_indices: [0]\n", "fewshot_indices"),
    ("output_type: generate_until\n", "generate_until"),
    ("metric_list:\n  - metric: acc\n    aggregation: median\n", "median"),
    ("metric_list:\n  - metric: brier_score\n", "brier_score"),
    ("dataset_kwargs:\n  data_files: {test: test.jsonl}\n  field: rows\n", "field"),
])
def test_lmeval_features_native_does_not_reproduce_are_handed_over(lmeval_dir, extra, needle):
    from node.evals.errors import NativeUnsupportedError
    from node.evals.spec import load_task

    (lmeval_dir / "t.yaml").write_text(f"include: base.yaml\ntask: t\n{extra}")
    with pytest.raises(NativeUnsupportedError, match=needle):
        load_task(lmeval_dir / "t.yaml")
