from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from node.evals.model import model_commitment
from node.evals.tinymodels import build_char_tokenizer, build_tiny_gpt2, train_tiny_arithmetic
from node.evals.training import EvalTrainerCallback, evaluate_every

TASK = Path(__file__).resolve().parents[2] / "specs" / "evals" / "arithmetic_mc.yaml"


class RecordingHome:
    """Stands in for the node home's publish (signing is tested with the node)."""

    def __init__(self):
        self.published = []

    def publish(self, kind, body):
        self.published.append((kind, body))
        return f"{len(self.published):064x}"


@pytest.mark.slow
def test_plain_loop_hook_evaluates_every_n_steps_and_publishes(tmp_path):
    tok = build_char_tokenizer()
    home = RecordingHome()
    hook = evaluate_every(2, TASK, tmp_path / "run", tok, tokens_per_step=8 * 100, home=home, limit=6, batch_size=4)
    train_tiny_arithmetic(steps=4, batch_size=8, n_layer=1, n_embd=32, n_head=2, tokenizer=tok, on_step=hook)
    runs = hook.evaluator.runs
    assert [r.checkpoint_step for r in runs] == [2, 4]
    assert [k for k, _ in home.published] == ["eval_result", "eval_result"]
    body = home.published[1][1]
    ckpt = tmp_path / "run" / "checkpoint-4"
    assert body["model"]["commitment"] == model_commitment(ckpt)[0]
    assert body["model"]["training_flop"] == str(6 * body["model"]["parameters"] * 4 * 800)
    assert json.loads((ckpt / "eval_result.json").read_text())["entry_id"] == f"{2:064x}"
    # Weights moved between the two checkpoints, so the commitments differ.
    assert home.published[0][1]["model"]["commitment"] != body["model"]["commitment"]


@pytest.mark.slow
def test_trainer_callback_evaluates_during_hf_trainer_run(tmp_path):
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    from transformers import Trainer, TrainingArguments

    tok = build_char_tokenizer()
    model = build_tiny_gpt2(1, 32, 2, tok, seed=1)
    rows = [torch.tensor(tok.encode("12+34=046;" * 4)) for _ in range(16)]
    data = [{"input_ids": r, "labels": r} for r in rows]
    cb = EvalTrainerCallback(TASK, every=2, out_dir=tmp_path / "ckpts", tokenizer=tok, limit=4, batch_size=4)
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=4, per_device_train_batch_size=4,
                             report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no",
                             include_num_input_tokens_seen=True)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()
    runs = cb.evaluator.runs
    assert [r.checkpoint_step for r in runs] == [2, 4]
    assert int(runs[-1].training_flop) > int(runs[0].training_flop) > 0
