"""Same model, same data, same task YAML: Tripwire and lm-evaluation-harness 0.4 agree.

Agreement is checked item by item: identical prompts (few-shot sampling included),
identical continuations, per-choice log-likelihoods within 1e-4 (fp32), and identical
per-item metrics. The tasks cover loglikelihood targets, ``include:``, a null test_split,
``fewshot_config`` samples and overrides, and a templated description; what the native
runner does not reproduce is handed to lm-eval by ``--engine auto`` and refused by
``--engine native``.
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
    # loglikelihood: lm-eval scores doc_to_target exactly (the target carries its own space;
    # the default target_delimiter " " is not prepended), with one example from train.
    "tw_parity_loglik": """
task: tw_parity_loglik
dataset_path: json
dataset_kwargs:
  data_files: {{train: "{train}", test: "{test}"}}
training_split: train
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{question}}}} The word is"
doc_to_target: "{{{{' ' + word}}}}"
num_fewshot: 1
metric_list:
  - metric: acc
    aggregation: mean
""",
    # include: the base file gives data and prompt; the including file's keys win.
    "tw_parity_include": """
include: _parity_base_yaml
task: tw_parity_include
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
num_fewshot: 2
""",
    # No test_split: lm-eval evaluates validation, samples from training and (few-shot split
    # and test_split both unset) draws n + 1 and drops the item itself.
    "tw_parity_nulltest": """
task: tw_parity_nulltest
dataset_path: json
dataset_kwargs:
  data_files: {{train: "{train}", validation: "{test}"}}
training_split: train
validation_split: validation
test_split: null
output_type: multiple_choice
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: choices
doc_to_target: label
num_fewshot: 2
""",
    # A fixed list of examples (as bbh), first_n, with their own prompt and delimiters.
    "tw_parity_samples": """
task: tw_parity_samples
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{test}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: choices
doc_to_target: label
num_fewshot: 2
fewshot_config:
  sampler: first_n
  doc_to_text: "Example: {{{{question}}}}\\nA:"
  doc_to_target: "{{{{answer}}}}"
  fewshot_delimiter: "\\n###\\n"
  target_delimiter: "  "
  samples:
    - {{question: "What is 1 plus 1?", choices: ["2", "3"], answer: "two"}}
    - {{question: "What is 2 plus 5?", choices: ["7", "8"], answer: "seven"}}
    - {{question: "What is 3 plus 3?", choices: ["6", "9"], answer: "six"}}
""",
    # The description is a template rendered per item.
    "tw_parity_description": """
task: tw_parity_description
dataset_path: json
dataset_kwargs:
  data_files: {{train: "{train}", test: "{test}"}}
training_split: train
test_split: test
output_type: multiple_choice
description: "Topic {{{{word}}}}, item {{{{id}}}}.\\n\\n"
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: choices
doc_to_target: label
num_fewshot: 1
""",
}
BASE = """
dataset_path: json
dataset_kwargs:
  data_files: {{train: "{train}", test: "{test}"}}
training_split: train
test_split: test
output_type: multiple_choice
doc_to_text: "overridden"
doc_to_choice: choices
doc_to_target: label
num_fewshot: 5
metric_list:
  - metric: acc
  - metric: acc_norm
"""
# Tasks lm-eval runs and the native runner hands over: (task, YAML, words the reason names).
ROUTED = {
    "tw_routed_perplexity": ("""
task: tw_routed_perplexity
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{test}"}}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{' ' + word}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
  - metric: acc
    aggregation: mean
""", "perplexity"),
    "tw_routed_gen_prefix": ("""
task: tw_routed_gen_prefix
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{test}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{{{question}}}}"
doc_to_choice: choices
doc_to_target: label
gen_prefix: "Answer:"
""", "gen_prefix"),
}


def _write(d, name, body, train, test):
    (d / f"{name}.yaml").write_text(body.format(train=train, test=test))


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lmeval_tasks")
    train, test = d / "train.jsonl", d / "test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _rows(1, 20)))
    test.write_text("".join(json.dumps(r) + "\n" for r in _rows(2, 40)))
    for name, body in TASKS.items():
        _write(d, name, body, train, test)
    (d / "_parity_base_yaml").write_text(BASE.format(train=train, test=test))
    for name, (body, _) in ROUTED.items():
        _write(d, name, body, train, test)
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
    from node.evals.spec import load_task, prompts

    spec = load_task(task_dir / f"{name}.yaml")
    run = run_task(loaded, spec, batch_size=8)
    samples = sorted(lmeval_results["samples"][name], key=lambda s: s["doc_id"])
    assert len(samples) == run.n == 40
    ours_ctx = prompts.contexts(spec)
    for s, rec, ctx, doc in zip(samples, run.records, ours_ctx, spec.docs, strict=True):
        args = list(s["arguments"]) if isinstance(s["arguments"], list) else list(s["arguments"].values())
        pairs = [tuple(a) if isinstance(a, list | tuple) else (a["arg_0"], a["arg_1"]) for a in args]
        assert {c for c, _ in pairs} == {ctx}
        if spec.kind == "multiple_choice":
            assert [c for _, c in pairs] == [spec.target_delimiter + c for c in prompts.choices(spec, doc)]
        else:
            assert [c for _, c in pairs] == [prompts.continuation(spec, doc)]
        theirs = [float(r[0][0]) if isinstance(r[0], list | tuple) else float(r[0]) for r in s["resps"]]
        ours = [float(x) for x in rec["logprobs"]] if "logprobs" in rec else [float(rec["logprob"])]
        assert max(abs(a - b) for a, b in zip(theirs, ours, strict=True)) < 1e-4
        for m in spec.metrics:
            assert float(rec["metrics"][m]) == s[m]
    res = lmeval_results["results"][name]
    for m in spec.metrics:
        assert run.metrics[m][0] == pytest.approx(res[f"{m},none"], abs=1e-9)
        assert run.metrics[m][1] == pytest.approx(res[f"{m}_stderr,none"], abs=1e-9)


def test_few_shot_examples_follow_lm_eval_pool_rules(task_dir):
    """Sanity on the prompts the parity test compares: examples come from where lm-eval
    takes them, and the item never shows up as its own example."""
    from node.evals.spec import load_task, prompts

    spec = load_task(task_dir / "tw_parity_samples.yaml")
    ctx = prompts.contexts(spec)[0]
    assert ctx.startswith("Example: What is 1 plus 1?\nA:  two\n###\nExample: What is 2 plus 5?\nA:  seven\n###\nQ: ")
    spec = load_task(task_dir / "tw_parity_description.yaml")
    assert [c.split("\n")[0] for c in prompts.contexts(spec)[:2]] == [
        f"Topic {d['word']}, item {d['id']}." for d in spec.docs[:2]
    ]
    spec = load_task(task_dir / "tw_parity_include.yaml")
    assert spec.num_fewshot == 2 and prompts.contexts(spec)[0].endswith("Answer:")
    spec = load_task(task_dir / "tw_parity_nulltest.yaml")
    assert spec.fewshot_is_eval_split and spec.fewshot_docs is not spec.docs


def _cli(capsys, *args):
    from node.cli import main

    rc = main(["eval", "--no-progress", "--device", "cpu", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


@pytest.mark.parametrize("name", list(ROUTED))
def test_native_refuses_and_auto_hands_over_what_native_does_not_reproduce(name, task_dir, tiny_model_dir, tmp_path,
                                                                        capsys):
    from node.evals.errors import NativeUnsupportedError
    from node.evals.spec import load_task

    needle = ROUTED[name][1]
    task = task_dir / f"{name}.yaml"
    with pytest.raises(NativeUnsupportedError, match=needle):
        load_task(task)
    out = tmp_path / "n.json"
    rc, text = _cli(capsys, "--model", tiny_model_dir, "--task", task, "--engine", "native", "--out", out)
    assert rc == 2 and needle in text and not out.exists()
    rc, text = _cli(capsys, "--model", tiny_model_dir, "--task", task, "--batch-size", "8", "--limit", "4",
                    "--out", out)
    assert rc == 0, text
    assert "engine lm-eval" in text and needle in text
    assert json.loads(out.read_text())["runtime"]["engine"] == "lm-eval"
