"""GPU check of the eval engines: native vs lm-eval HF vs lm-eval vLLM, same task and model.

Runs ``tripwire eval`` itself (the command a lab runs) three ways on one CUDA device:

- ``--engine native`` (Tripwire's shared-prefix runner),
- ``--engine lm-eval --backend hf`` (lm-evaluation-harness's HF backend),
- ``--engine lm-eval --backend vllm`` (lm-eval's vLLM backend; skipped, and said so, when
  vLLM is not installed: ``pip install -e ".[vllm]"``),

on a saved ~100M-parameter GPT-2 (random init, the character tokenizer: a real checkpoint
directory loaded through the same path as a lab's model) and an lm-eval task YAML over local
JSONL (4-choice arithmetic, ~100-token contexts). It prints wall time, items/s, each
engine's ratio to lm-eval HF measured in the same run, and whether the signed metric values
agree (native vs HF exactly as the parity tests require; vLLM within ``--vllm-tolerance``,
since vLLM's kernels differ in the last bits of bf16).

    .venv/bin/python bench/evals_gpu.py --json gpu.json                 # one CUDA GPU, ~5 minutes
    .venv/bin/python bench/evals_gpu.py --items 2000 --config 100m --dtype bfloat16

Exits with a one-line reason when no CUDA device is present (``TRIPWIRE_BENCH_CPU=1`` runs
the same commands on the CPU as a dry run of the script itself, not as a measurement).
Wall times include each command's start-up (loading torch and the model), as a lab sees it. Every number it prints comes
from this run; nothing is compared with figures from another machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "tiny": {"n_layer": 4, "n_embd": 256, "n_head": 4},
    "100m": {"n_layer": 14, "n_embd": 768, "n_head": 12},
}

YAML = """\
task: gpu_bench_mc
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


def _tripwire() -> list[str]:
    exe = Path(sys.executable).with_name("tripwire")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "node.cli"]


def _run(name: str, args: list[str], out: Path) -> dict[str, object]:
    cmd = [*_tripwire(), "eval", *args, "--out", str(out), "--no-progress"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"engine": name, "ok": False, "wall_s": wall, "error": (proc.stderr or proc.stdout)[-2000:]}
    body = json.loads(out.read_text())
    metrics = {f"{t}/{m}": v["value"] for t, td in body["tasks"].items() for m, v in td["metrics"].items()}
    return {"engine": name, "ok": True, "wall_s": wall, "metrics": metrics, "runtime": body.get("runtime", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="100m", choices=sorted(CONFIGS))
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--batch-size", default="64")
    ap.add_argument("--vllm-tolerance", type=float, default=0.01, help="largest |acc difference| accepted for vLLM")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available() and not os.environ.get("TRIPWIRE_BENCH_CPU"):
        raise SystemExit("no CUDA device: this benchmark measures GPU engines (bench/evals.py measures CPU)")
    from node.evals.generators import arithmetic
    from node.evals.tinymodels import build_char_tokenizer, build_tiny_gpt2, save_model

    work = Path(tempfile.mkdtemp(prefix="tripwire-gpu-bench-"))
    tok = build_char_tokenizer()
    model = build_tiny_gpt2(tokenizer=tok, seed=0, **CONFIGS[args.config])
    save_model(model, tok, work / "model")
    docs = arithmetic(n=args.items, seed=7, shots=9, mode="multiple_choice")
    (work / "data.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    task = work / "gpu_bench_mc.yaml"
    task.write_text(YAML.format(data=work / "data.jsonl"))
    common = ["--task", str(task), "--model", str(work / "model"), "--device", "cpu" if os.environ.get("TRIPWIRE_BENCH_CPU") else "cuda", "--dtype", args.dtype,
              "--batch-size", args.batch_size]  # fmt: skip
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (TRIPWIRE_BENCH_CPU: a dry run)"
    print(f"device {name}; model {args.config}; {args.items} items; dtype {args.dtype}")

    runs = [
        _run("native", [*common, "--engine", "native"], work / "native.json"),
        _run("lm-eval hf", [*common, "--engine", "lm-eval", "--backend", "hf"], work / "hf.json"),
    ]
    if importlib.util.find_spec("vllm") is not None:
        runs.append(_run("lm-eval vllm", [*common, "--engine", "lm-eval", "--backend", "vllm"], work / "vllm.json"))
    else:
        runs.append({"engine": "lm-eval vllm", "ok": False, "skipped": "vLLM is not installed (pip install '.[vllm]')"})

    hf = next(r for r in runs if r["engine"] == "lm-eval hf")
    native = next(r for r in runs if r["engine"] == "native")
    for r in runs:
        if not r.get("ok"):
            print(f"{r['engine']:>14}: {r.get('skipped') or 'FAILED: ' + str(r.get('error', ''))[-400:]}")
            continue
        wall = float(r["wall_s"])  # type: ignore[arg-type]  # a float set by _run
        ratio = float(hf["wall_s"]) / wall if hf.get("ok") else float("nan")  # type: ignore[arg-type]
        r["items_per_s"] = args.items / wall
        r["speed_vs_lmeval_hf"] = ratio
        print(f"{r['engine']:>14}: {wall:7.1f} s wall ({args.items / wall:8.1f} items/s), "
              f"{ratio:5.2f}x lm-eval hf, metrics {r['metrics']}")  # fmt: skip
    agree: dict[str, object] = {}
    if native.get("ok") and hf.get("ok"):
        agree["native_equals_hf"] = native["metrics"] == hf["metrics"]
    vllm = runs[2]
    if vllm.get("ok") and hf.get("ok"):
        a, b = vllm["metrics"], hf["metrics"]
        assert isinstance(a, dict) and isinstance(b, dict)
        agree["vllm_within_tolerance"] = set(a) == set(b) and all(
            abs(float(a[k]) - float(b[k])) <= args.vllm_tolerance for k in a
        )
    print(f"agreement: {agree}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "agreement": agree}, indent=2, default=str) + "\n")
    if agree.get("native_equals_hf") is False:
        sys.exit(1)


if __name__ == "__main__":
    main()
