"""CUDA paths (skipped without a GPU) and data parallelism under torchrun (CPU, gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from node.evals.runner import run_suite

SPECS = Path(__file__).resolve().parents[2] / "specs"
CORE = SPECS / "suites" / "tripwire-core.yaml"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_cuda_auto_dtype_is_bf16_and_agrees_with_cpu(tiny_model_dir, loaded):
    gpu = run_suite(tiny_model_dir, CORE, device="cuda", limit=16, batch_size="auto")
    assert gpu.runtime["dtype"] in ("bfloat16", "float16")
    assert "cpu" not in gpu.runtime["device"]
    cpu = run_suite(tiny_model_dir, CORE, model=loaded, limit=16, batch_size=8)
    for a, b in zip(gpu.tasks, cpu.tasks, strict=True):
        if a.spec.kind == "multiple_choice":
            assert a.metrics["prob_correct"][0] == pytest.approx(b.metrics["prob_correct"][0], abs=0.02)


@pytest.mark.gpu
@needs_cuda
def test_cuda_fp32_shared_prefix_equals_plain(tiny_model_dir):
    from node.evals.model import load_model

    lm = load_model(tiny_model_dir, device="cuda", dtype="float32")
    a = run_suite(tiny_model_dir, CORE, model=lm, limit=32, batch_size=16)
    b = run_suite(tiny_model_dir, CORE, model=lm, limit=32, batch_size=16, shared_prefix=False)
    for ta, tb in zip(a.tasks, b.tasks, strict=True):
        for ra, rb in zip(ta.records, tb.records, strict=True):
            for x, y in zip(ra.get("logprobs", []), rb.get("logprobs", []), strict=True):
                assert abs(float(x) - float(y)) < 1e-4


@pytest.mark.gpu
@needs_cuda
def test_cuda_out_of_memory_backs_off_to_a_batch_that_fits(tiny_model_dir):
    """A huge automatic starting batch on a long-context task must shrink, not crash."""
    from node.evals.model import load_model
    from node.evals.scoring import Request, Scorer

    lm = load_model(tiny_model_dir, device="cuda", dtype="bfloat16")
    free, _ = torch.cuda.mem_get_info()
    # Each request's logits alone take ~max_length * vocab * 4 bytes; enough of them overflow.
    n = int(free / (lm.max_length * len(lm.tokenizer) * 4)) * 4 + 1
    reqs = [Request([5] * (lm.max_length - 1), [[6]]) for _ in range(min(n, 200_000))]
    sc = Scorer(lm.model, device=lm.device, max_length=lm.max_length, pad_id=lm.tokenizer.pad_token_id)
    out = sc.score_plain(reqs[:4096], 4096, auto=True)
    assert len(out) == 4096 and sc.last_batch_size <= 4096


@pytest.mark.slow
def test_torchrun_shards_items_and_rank0_merges_the_same_result(tiny_model_dir, loaded, tmp_path):
    tripwire = Path(sys.executable).with_name("tripwire")
    if not tripwire.exists() or shutil.which("torchrun", path=str(tripwire.parent)) is None:
        pytest.skip("console scripts not installed in this environment")
    task = SPECS / "evals" / "arithmetic_mc.yaml"
    out = tmp_path / "r.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(tripwire.with_name("torchrun")), "--nproc-per-node", "2", "--no-python", str(tripwire), "eval",
         "--model", str(tiny_model_dir), "--task", str(task), "--limit", "20", "--batch-size", "4",
         "--device", "cpu", "--no-progress", "--out", str(out), "--samples", str(tmp_path / "s.jsonl")],
        capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    single = run_suite(tiny_model_dir, task, model=loaded, limit=20, batch_size=4)
    t = doc["tasks"]["arithmetic_mc"]
    assert t["n"] == 20 and doc["runtime"]["data_parallel"] == "2"
    # Every item exactly once, in item order, from both ranks; scores equal up to float noise
    # from different batch padding (so the root is not compared: records round to 6 places).
    records = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(20))
    for r, ref in zip(records, single.tasks[0].records, strict=True):
        assert r["pred"] == ref["pred"] and r["input_sha256"] == ref["input_sha256"]
        assert max(abs(float(a) - float(b)) for a, b in zip(r["logprobs"], ref["logprobs"], strict=True)) < 1e-4
    for k, (v, _) in single.tasks[0].metrics.items():
        assert float(t["metrics"][k]["value"]) == pytest.approx(v, abs=1e-5)
