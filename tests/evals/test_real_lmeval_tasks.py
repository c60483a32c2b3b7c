"""The real lm-eval 0.4 task YAML files, run through ``tripwire eval --task FILE.yaml``.

Each case copies the task files lm-eval ships (the task's YAML, what it ``include:``s and
the ``utils.py`` its ``!function`` hooks name) and changes only the dataset source to local
JSONL (``dataset_path: json`` plus ``dataset_kwargs.data_files``; ``dataset_name`` lines
with a hub config name are dropped, ``dataset_name: null`` is kept). A few synthetic rows in
the schema the task reads stand in for the hub data. ``tripwire eval`` (engine auto) then
signs numbers that must equal lm-eval's own ``simple_evaluate`` of the same files on the
same tiny model: every metric of every filter, value and stderr (to the 6 decimals Tripwire
writes), and the sample count; the engine that ran each task is checked too. This keeps the
table "Real lm-eval tasks, checked" in docs/evals.md true.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lmeval, pytest.mark.slow]
lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("accelerate", reason="lm-eval's hf model needs accelerate (lm-eval[hf])")

LMEVAL_TASKS = Path(lm_eval.__file__).resolve().parent / "tasks"
BATCH = 4
_SOURCE = re.compile(r'^"?dataset_(name|path)"?\s*:\s*(?!null\s*$).*\n?', re.M)


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _words(rng: random.Random, n: int) -> str:
    pool = ["the", "cat", "sat", "on", "a", "mat", "river", "stone", "blue", "fast", "quiet", "light", "seed"]
    return " ".join(rng.choice(pool) for _ in range(n))


# --- rows in the schema each task reads ------------------------------------------------------

def _mc4(rng: random.Random, i: int, **extra) -> dict:
    return {"question": f"Which word follows {_words(rng, 3)}? ({i})", "choices": [_words(rng, 2) for _ in range(4)],
            "answer": rng.randrange(4), **extra}


def _arc(rng: random.Random, i: int) -> dict:
    labels = ["A", "B", "C", "D"]
    return {"id": f"q{i}", "question": f"What makes the {_words(rng, 2)} move?",
            "choices": {"text": [_words(rng, 2) for _ in labels], "label": labels}, "answerKey": rng.choice(labels)}


def _hellaswag(rng: random.Random, i: int) -> dict:
    return {"ind": i, "activity_label": "Washing [title] dishes", "ctx_a": f"A person {_words(rng, 4)}.",
            "ctx_b": f"then {_words(rng, 2)}", "endings": [f"{_words(rng, 3)} [step]." for _ in range(4)],
            "label": str(rng.randrange(4)), "split": "val", "split_type": "indomain", "source_id": f"s{i}"}


def _winogrande(rng: random.Random, i: int) -> dict:
    a, b = rng.sample(["Anna", "Ben", "Cleo", "Dev"], 2)
    return {"sentence": f"{a} helped {b} because _ was {_words(rng, 2)}.", "option1": a, "option2": b,
            "answer": rng.choice(["1", "2"])}


def _gsm8k(rng: random.Random, i: int) -> dict:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return {"question": f"Tom has {a} pens and buys {b}. How many?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"}


def _truthfulqa(rng: random.Random, i: int) -> dict:
    choices = [_words(rng, 3) for _ in range(4)]
    return {"question": f"Is the {_words(rng, 2)} real?",
            "mc1_targets": {"choices": choices, "labels": [1, 0, 0, 0]},
            "mc2_targets": {"choices": choices, "labels": [1, 1, 0, 0] if i % 2 else [1, 0, 0, 0]}}


def _piqa(rng: random.Random, i: int) -> dict:
    return {"goal": f"How to {_words(rng, 3)}?", "sol1": _words(rng, 4), "sol2": _words(rng, 4), "label": i % 2}


def _snarks(rng: random.Random, i: int) -> dict:
    x, y = _words(rng, 5), _words(rng, 5)
    return {"input": f"Which statement is sarcastic?\nOptions:\n(A) {x}\n(B) {y}", "target": rng.choice(["(A)", "(B)"])}


def _rows(make, seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    return [make(rng, i) for i in range(n)]


# --- cases: (case id, lm-eval files to copy, {task file: {split: rows}}, task or group file, CLI args) ------

MMLU_STEM = sorted(
    p.name for p in (LMEVAL_TASKS / "mmlu" / "default").glob("mmlu_*.yaml")
    if re.search(r'^"?tag"?:\s*"?mmlu_stem_tasks', p.read_text(), re.M)
)


def _cases() -> dict[str, dict]:
    mc = lambda subject: {"test": _rows(lambda r, i: _mc4(r, i, subject=subject), 3, 12),  # noqa: E731
                          "dev": _rows(lambda r, i: _mc4(r, i, subject=subject), 4, 5)}
    return {
        "wmdp_bio": dict(files=["wmdp/wmdp_bio.yaml", "wmdp/_default_template_yaml"],
                         data={"wmdp_bio.yaml": {"test": _rows(_mc4, 1, 12)}}, run="wmdp_bio.yaml",
                         # the file sets num_fewshot: 0, which lm-eval keeps over --num_fewshot
                         args=["--num-fewshot", "3"]),
        "mmlu_abstract_algebra": dict(
            files=["mmlu/default/mmlu_abstract_algebra.yaml", "mmlu/default/_default_template_yaml"],
            data={"mmlu_abstract_algebra.yaml": mc("abstract_algebra")}, run="mmlu_abstract_algebra.yaml"),
        "mmlu_stem": dict(
            files=[f"mmlu/default/{f}" for f in MMLU_STEM] + ["mmlu/default/_default_template_yaml",
                                                              "mmlu/default/_mmlu_stem.yaml"],
            data={f: {"test": _rows(lambda r, i, s=f: _mc4(r, i, subject=s[5:-5]), 5 + k, 4),
                      "dev": _rows(lambda r, i, s=f: _mc4(r, i, subject=s[5:-5]), 50 + k, 1)}
                  for k, f in enumerate(MMLU_STEM)},
            run="_mmlu_stem.yaml", args=["--limit", "3"]),
        "arc_challenge": dict(files=["arc/arc_challenge.yaml", "arc/arc_easy.yaml"],
                              data={"arc_challenge.yaml": {s: _rows(_arc, k, 10) for k, s in
                                                           enumerate(["train", "validation", "test"])}},
                              run="arc_challenge.yaml"),
        "hellaswag": dict(files=["hellaswag/hellaswag.yaml", "hellaswag/utils.py"],
                          data={"hellaswag.yaml": {"train": _rows(_hellaswag, 5, 6),
                                                   "validation": _rows(_hellaswag, 6, 10)}}, run="hellaswag.yaml"),
        "winogrande": dict(files=["winogrande/default.yaml", "winogrande/preprocess_winogrande.py"],
                           data={"default.yaml": {"train": _rows(_winogrande, 7, 6),
                                                  "validation": _rows(_winogrande, 8, 12)}}, run="default.yaml"),
        "lambada_openai": dict(files=["lambada/lambada_openai.yaml"],
                               data={"lambada_openai.yaml": {"test": [{"text": _words(random.Random(i), 6 + i % 4)}
                                                                      for i in range(12)]}},
                               run="lambada_openai.yaml"),
        "gsm8k": dict(files=["gsm8k/gsm8k.yaml"],
                      data={"gsm8k.yaml": {"train": _rows(_gsm8k, 9, 8), "test": _rows(_gsm8k, 10, 3)}},
                      run="gsm8k.yaml"),
        "truthfulqa_mc2": dict(files=["truthfulqa/truthfulqa_mc2.yaml", "truthfulqa/truthfulqa_mc1.yaml",
                                      "truthfulqa/utils.py"],
                               data={"truthfulqa_mc2.yaml": {"validation": _rows(_truthfulqa, 11, 10)}},
                               run="truthfulqa_mc2.yaml"),
        "piqa": dict(files=["piqa/piqa.yaml"],
                     data={"piqa.yaml": {"train": _rows(_piqa, 12, 8), "validation": _rows(_piqa, 13, 12)}},
                     run="piqa.yaml", args=["--num-fewshot", "2"]),
        "bbh_fewshot_snarks": dict(files=["bbh/fewshot/snarks.yaml", "bbh/fewshot/_fewshot_template_yaml"],
                                   data={"snarks.yaml": {"test": _rows(_snarks, 14, 4)}}, run="snarks.yaml"),
    }


CASES = _cases()
#: Which engine `--engine auto` must pick, and why lm-eval when it is lm-eval.
ENGINE = {
    "wmdp_bio": "native", "mmlu_abstract_algebra": "native", "arc_challenge": "native", "piqa": "native",
    "mmlu_stem": "lm-eval", "hellaswag": "lm-eval", "winogrande": "lm-eval", "lambada_openai": "lm-eval",
    "gsm8k": "lm-eval", "truthfulqa_mc2": "lm-eval", "bbh_fewshot_snarks": "lm-eval",
}


def stage(case: str, root: Path) -> Path:
    """Copy the shipped files of ``case`` into ``root/case`` with only the data source made local."""
    c = CASES[case]
    d = root / case
    d.mkdir(parents=True)
    for rel in c["files"]:
        src = LMEVAL_TASKS / rel
        dst = d / src.name
        if src.suffix == ".py":
            shutil.copy(src, dst)
            continue
        text = _SOURCE.sub("", src.read_text())
        splits = c["data"].get(src.name)
        if splits is not None:
            files = {s: _jsonl(d / f"{src.stem}.{s}.jsonl", rows) for s, rows in splits.items()}
            text = text.rstrip("\n") + "\n" + "dataset_path: json\ndataset_kwargs:\n  data_files: " + json.dumps(files) + "\n"
        dst.write_text(text)
    return d / c["run"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide random GPT-2 (character tokenizer) with room for 2048 positions, so
    the real tasks' long few-shot prompts (bbh, truthfulqa, gsm8k) fit untruncated."""
    import torch

    from node.evals.tinymodels import build_char_tokenizer, build_tiny_gpt2, save_model

    torch.set_num_threads(2)
    tok = build_char_tokenizer()
    model = build_tiny_gpt2(n_layer=2, n_embd=64, n_head=2, tokenizer=tok, seed=0, n_positions=2048)
    return save_model(model, tok, tmp_path_factory.mktemp("real_models") / "checkpoint-10", step=10, tokens_seen=8000)


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real_tasks")


def _flag(args: list[str], name: str) -> int | None:
    return int(args[args.index(name) + 1]) if name in args else None


def _lmeval_direct(model: Path, task_file: Path, args: list[str]) -> dict:
    from lm_eval.models.huggingface import HFLM

    # lm-eval's registry is indexed once per process (the same index as lm-eval's own build,
    # tests/evals/test_lmeval_engine.py); lm-eval itself loads and runs the task.
    from node.evals.lmeval import resolve_task, task_manager

    name, include = resolve_task(task_file)
    lm = HFLM(pretrained=str(model), dtype="float32", device="cpu", batch_size=BATCH)
    return lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=task_manager(include),
                                   batch_size=BATCH, device="cpu", log_samples=False,
                                   limit=_flag(args, "--limit"), num_fewshot=_flag(args, "--num-fewshot"))


def _expected(res: dict) -> dict[str, tuple[float, float | None]]:
    """lm-eval's metrics as Tripwire names them: ``metric`` or ``metric:filter``."""
    out = {}
    for key, v in res.items():
        if "," not in key or "_stderr," in key or isinstance(v, str):
            continue
        metric, flt = key.split(",", 1)
        err = res.get(f"{metric}_stderr,{flt}")
        out[metric if flt == "none" else f"{metric}:{flt}"] = (v, None if isinstance(err, str) or err is None else err)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_real_task_signs_lm_evals_numbers(case, staged, model_dir, tmp_path, capsys):
    from node.cli import main

    task_file = stage(case, staged)
    args = CASES[case].get("args", [])
    out = tmp_path / "r.json"
    rc = main(["eval", "--no-progress", "--device", "cpu", "--model", str(model_dir), "--task", str(task_file),
               "--batch-size", str(BATCH), "--out", str(out), *args])
    cap = capsys.readouterr()
    assert rc in (0, None), cap.out + cap.err
    doc = json.loads(out.read_text())
    assert doc["runtime"].get("engine", "native") == ENGINE[case], cap.out
    ref = _lmeval_direct(model_dir, task_file, args)
    names = [t for t in ref["results"]]
    assert sorted(doc["tasks"]) == sorted(names)
    for t in names:
        got, want = doc["tasks"][t], _expected(ref["results"][t])
        assert sorted(got["metrics"]) == sorted(want), t
        for m, (value, stderr) in want.items():
            assert float(got["metrics"][m]["value"]) == pytest.approx(value, abs=5e-7), (t, m)
            assert float(got["metrics"][m]["stderr"]) == pytest.approx(stderr or 0.0, abs=5e-7), (t, m)
        if t in ref["n-samples"]:
            assert got["n"] == ref["n-samples"][t]["effective"], t
