"""Items/s of Tripwire's eval runner vs lm-evaluation-harness, same model/task/device/batch.

One run, one process, one model object shared by both, so the ratio compares scoring
engines rather than start-up: a 4-choice multiple-choice task with ~100-token contexts
(the arithmetic generator with nine solved examples), written as an lm-evaluation-harness
task YAML on local JSONL that both tools load. Also reports Tripwire's plain (one
sequence per choice) engine, to show what shared-prefix scoring itself buys, and checks
the two tools agree on acc.

    python bench/evals.py                       # CPU, fp32, 4-layer 256-wide GPT-2, 500 items
    python bench/evals.py --device cuda --dtype bfloat16 --config 100m --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

CONFIGS = {
    "tiny": {"n_layer": 4, "n_embd": 256, "n_head": 4},  # the MEASUREMENTS.md reference model
    "100m": {"n_layer": 14, "n_embd": 768, "n_head": 12},  # ~100M parameters with the char vocabulary
}

YAML = """task: bench_mc
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{data}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="timed runs per engine, interleaved; the fastest counts (shared machines are noisy)")
    ap.add_argument("--skip-lmeval", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from node.evals.generators import arithmetic
    from node.evals.model import load_model
    from node.evals.runner import run_task
    from node.evals.spec import load_task, prompts
    from node.evals.tinymodels import build_char_tokenizer, build_tiny_gpt2, save_model

    work = Path(tempfile.mkdtemp(prefix="tripwire-bench-"))
    tok = build_char_tokenizer()
    model = build_tiny_gpt2(tokenizer=tok, seed=0, **CONFIGS[args.config])
    save_model(model, tok, work / "model")
    docs = arithmetic(n=args.items, seed=7, shots=9, mode="multiple_choice")
    (work / "data.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (work / "bench_mc.yaml").write_text(YAML.format(data=work / "data.jsonl"))

    lm = load_model(work / "model", device=args.device, dtype=args.dtype)
    spec = load_task(work / "bench_mc.yaml")
    ctx_tokens = sum(len(tok.encode(c)) for c in prompts.contexts(spec)) / len(docs)
    print(f"model: {args.config} ({lm.parameters / 1e6:.1f}M params), device {lm.device}, dtype {args.dtype}, "
          f"batch {args.batch_size}, threads {torch.get_num_threads()}")
    print(f"task: {len(docs)} items x 4 choices, mean context {ctx_tokens:.0f} tokens")

    # On a GPU, wall time is the measure. On a shared CPU machine other processes' load swings
    # wall time several-fold between runs, so there the process's CPU time (all its threads)
    # is the measure: it counts the work each engine does, not the neighbours' work.
    clock = time.perf_counter if lm.device.type == "cuda" else time.process_time

    def timed(fn):
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        t = clock()
        out = fn()
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        return out, clock() - t

    engines = {
        "tripwire shared-prefix": lambda: run_task(lm, spec, batch_size=args.batch_size),
        "tripwire plain": lambda: run_task(lm, spec, batch_size=args.batch_size, shared_prefix=False),
    }
    if not args.skip_lmeval:
        import datasets
        import lm_eval
        import transformers
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        hflm = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=args.batch_size, device=str(lm.device))
        tm = TaskManager(include_path=str(work))
        kw = {"model": hflm, "tasks": ["bench_mc"], "task_manager": tm, "verbosity": "ERROR"}
        lm_eval.simple_evaluate(**kw, limit=min(32, len(docs)))  # warm-up, as for Tripwire below
        engines["lm-evaluation-harness 0.4"] = lambda: lm_eval.simple_evaluate(**kw)
    run_task(lm, spec, batch_size=args.batch_size, limit=min(32, len(docs)))  # warm-up (allocator, kernels)

    def acc_of(out) -> float:
        return out.metrics["acc"][0] if hasattr(out, "metrics") else out["results"]["bench_mc"]["acc,none"]

    what = "wall" if lm.device.type == "cuda" else "CPU"
    best: dict[str, float] = {}
    accs: dict[str, float] = {}
    for rep in range(args.repeats):
        for name, fn in engines.items():
            out, t = timed(fn)
            best[name] = min(best.get(name, t), t)
            accs[name] = acc_of(out)
            print(f"  run {rep + 1}: {name:28} {t:8.2f} s ({what})", file=sys.stderr)
    rows = {name: (best[name], accs[name]) for name in engines}
    t_shared, t_plain = best["tripwire shared-prefix"], best["tripwire plain"]
    shared_acc = accs["tripwire shared-prefix"]
    n = len(docs)
    what = "wall" if lm.device.type == "cuda" else "CPU"
    print(f"{'engine':28} {what + ' s':>8} {'items/s':>9} {'acc':>7}")
    for name, (t, acc) in rows.items():
        print(f"{name:28} {t:8.2f} {n / t:9.1f} {acc:7.4f}")
    summary = {"items": n, "clock": what, "config": args.config, "device": str(lm.device), "dtype": args.dtype,
               "batch_size": args.batch_size, "items_per_s": {k: n / t for k, (t, _) in rows.items()}}
    if "lm-evaluation-harness 0.4" in rows:
        ratio = rows["lm-evaluation-harness 0.4"][0] / t_shared
        agree = abs(rows["lm-evaluation-harness 0.4"][1] - shared_acc) < 1e-9
        print(f"ratio tripwire/lm-eval: {ratio:.2f}x  (acc agrees: {agree})")
        summary["ratio_vs_lmeval"] = ratio
    print(f"ratio shared-prefix/plain: {t_plain / t_shared:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
