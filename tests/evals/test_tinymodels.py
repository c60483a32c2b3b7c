from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from node.evals.tinymodels import CHARSET, build_char_tokenizer, train_tiny_arithmetic


def test_char_tokenizer_round_trips_every_character_through_autotokenizer(tmp_path):
    build_char_tokenizer(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    ids = tok.encode(CHARSET)
    assert len(ids) == len(CHARSET)
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == CHARSET
    assert {tok.pad_token, tok.bos_token, tok.eos_token} == {"<|pad|>", "<|bos|>", "<|eos|>"}
    # No special tokens are inserted: contexts and continuations split on character boundaries.
    assert tok.encode("12+34=") == tok.encode("12+") + tok.encode("34=")


def test_training_hook_stops_the_loop_and_checkpoints_load_through_auto_classes(tmp_path):
    seen = []

    def on_step(step, model):
        seen.append(step)
        return step < 3  # the pause gate says stop after step 3

    _, _, last = train_tiny_arithmetic(
        tmp_path / "run", steps=10, batch_size=8, n_layer=1, n_embd=32, n_head=2, save_every=2, on_step=on_step
    )
    assert seen == [1, 2, 3] and last == 3
    assert (tmp_path / "run" / "checkpoint-2" / "model.safetensors").is_file()
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["num_input_tokens_seen"] == 3 * 8 * 100
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "run", local_files_only=True)
    assert reloaded.config.n_layer == 1


def test_training_reduces_loss(tmp_path):
    """A real (if short) learning curve: the addition stream becomes more predictable."""
    import torch

    from node.evals.tinymodels import arithmetic_stream

    tok = build_char_tokenizer()
    ids = torch.tensor([tok.encode(arithmetic_stream(__import__("random").Random(9), 10)) for _ in range(4)])
    model, _, _ = train_tiny_arithmetic(steps=1, batch_size=16, n_layer=1, n_embd=32, n_head=2)
    with torch.no_grad():
        before = model(input_ids=ids, labels=ids).loss.item()
    model, _, _ = train_tiny_arithmetic(steps=40, batch_size=16, n_layer=1, n_embd=32, n_head=2, model=model,
                                        tokenizer=tok, start_step=1)
    with torch.no_grad():
        after = model(input_ids=ids, labels=ids).loss.item()
    assert after < before - 0.5


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_answer_loss_only_scores_exactly_the_answers_and_separators(digits: int) -> None:
    """The columns ``answer_loss_only`` keeps are each problem's answer digits and its ';',
    token for token (the tokenizer is one token per character)."""
    import random

    from node.evals.tinymodels import answer_columns, arithmetic_stream, build_char_tokenizer

    row = arithmetic_stream(random.Random(digits), 5, digits)
    assert len(build_char_tokenizer().encode(row)) == len(row)
    keep = answer_columns(digits, 5)
    scored = "".join(c for c, k in zip(row, keep, strict=True) if k)
    assert scored == "".join(p.split("=")[1] + ";" for p in row.rstrip(";").split(";"))
