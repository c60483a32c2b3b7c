"""Same model, same data, same task YAML: Tripwire and lm-evaluation-harness 0.4 agree.

Agreement is checked item by item: identical prompts (few-shot sampling included),
per-choice log-likelihoods within 1e-4 (fp32), and identical acc / acc_norm.
"""

from __future__ import annotations

import json
import random

import pytest

pytestmark = [pytest.mark.lmeval, pytest.mark.slow]

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "pi", "rho", "sigma", "tau", "phi"]


def _rows(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        choices = [str(a + b), str(a + b + 1), rng.choice(WORDS), str(a * b)]
        rng.shuffle(choices)
        rows.append({"id": i, "question": f"What is {a} plus {b}?", "choices": choices,
                     "label": choices.index(str(a + b)), "word": rng.choice(WORDS)})
    return rows


TASKS = {
    # Few-shot from a separate train split; choices from a field; integer target field.
    "tw_parity_fields": """
task: tw_parity_fields
dataset_path: json
dataset_kwargs:
  data_files: {{train: "{train}", test: "{test}"}}
training_split: train
test_split: test
output_type: multiple_choice
description: "Answer the sums.\\n\\n"
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: choices
doc_to_target: label
num_fewshot: 3
metric_list:
  - metric: acc
  - metric: acc_norm
""",
    # Few-shot from the eval split itself (the evaluated doc is removed), a Jinja list
    # literal for choices, a template target, trailing whitespace moved to the answer.
    "tw_parity_templates": """
task: tw_parity_templates
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{test}"}}
test_split: test
fewshot_split: test
output_type: multiple_choice
doc_to_text: "{{{{word}}}} {{{{question}}}} Answer: "
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
fewshot_delimiter: "\\n"
num_fewshot: 2
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
""",
}


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lmeval_tasks")
    train, test = d / "train.jsonl", d / "test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _rows(1, 20)))
    test.write_text("".join(json.dumps(r) + "\n" for r in _rows(2, 40)))
    for name, body in TASKS.items():
        (d / f"{name}.yaml").write_text(body.format(train=train, test=test))
    return d


@pytest.fixture(scope="module")
def lmeval_results(task_dir, tiny_model_dir):
    lm_eval = pytest.importorskip("lm_eval")
    pytest.importorskip("accelerate", reason="lm-eval's hf model needs accelerate (lm-eval[hf])")
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_model_dir},dtype=float32",
        tasks=list(TASKS),
        task_manager=TaskManager(include_path=str(task_dir)),
        device="cpu",
        batch_size=8,
        log_samples=True,
    )


@pytest.mark.parametrize("name", list(TASKS))
def test_same_prompts_loglikelihoods_and_accuracy_as_lm_eval(name, task_dir, lmeval_results, loaded):
    from node.evals.runner import run_task
    from node.evals.spec import load_task

    spec = load_task(task_dir / f"{name}.yaml")
    run = run_task(loaded, spec, batch_size=8)
    samples = sorted(lmeval_results["samples"][name], key=lambda s: s["doc_id"])
    assert len(samples) == run.n == 40
    ours_ctx = spec.contexts()
    for s, rec, ctx in zip(samples, run.records, ours_ctx, strict=True):
        args = list(s["arguments"]) if isinstance(s["arguments"], list) else list(s["arguments"].values())
        theirs_ctx = {a[0] if isinstance(a, list | tuple) else a["arg_0"] for a in args}
        assert theirs_ctx == {ctx}
        theirs = [float(r[0][0]) if isinstance(r[0], list | tuple) else float(r[0]) for r in s["resps"]]
        ours = [float(x) for x in rec["logprobs"]]
        assert max(abs(a - b) for a, b in zip(theirs, ours, strict=True)) < 1e-4
        assert float(rec["metrics"]["acc"]) == s["acc"]
        assert float(rec["metrics"]["acc_norm"]) == s["acc_norm"]
    res = lmeval_results["results"][name]
    assert run.metrics["acc"][0] == pytest.approx(res["acc,none"], abs=1e-9)
    assert run.metrics["acc_norm"][0] == pytest.approx(res["acc_norm,none"], abs=1e-9)
    assert run.metrics["acc"][1] == pytest.approx(res["acc_stderr,none"], abs=1e-9)
