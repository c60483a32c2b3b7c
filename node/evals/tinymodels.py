"""Tiny real GPT-2 models with a character-level tokenizer, and a plain training loop.

They stand in for a lab's checkpoints in tests, the benchmark and the three-lab demo:
saved with ``save_pretrained`` and loaded back through the same
``AutoModelForCausalLM`` / ``AutoTokenizer`` path used for real checkpoints, so nothing
downstream knows they are small.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

# The arithmetic format lives with the data generators (torch-free); re-exported here.
from node.evals.generators import arithmetic_stream

if TYPE_CHECKING:
    from transformers import (
        GPT2LMHeadModel,
        PreTrainedModel,
        PreTrainedTokenizerBase,
        PreTrainedTokenizerFast,
    )

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"
#: Every character the generators emit; order fixes the token ids, so never reorder it.
CHARSET = string.digits + string.ascii_letters + string.punctuation + " \n"

StepHook = Callable[[int, Any], bool]


def build_char_tokenizer(save_dir: str | Path | None = None) -> PreTrainedTokenizerFast:
    """A one-token-per-character fast tokenizer with pad/bos/eos/unk specials.

    No post-processor: encoding never inserts BOS/EOS, so contexts and continuations
    split exactly at character boundaries (as lm-evaluation-harness expects).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, BOS, EOS, UNK, *CHARSET])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers 5: __init__(*args, **kwargs) is unannotated
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    if save_dir is not None:
        tok.save_pretrained(str(save_dir))
    return tok


def build_tiny_gpt2(n_layer: int = 3, n_embd: int = 128, n_head: int = 4,
                    tokenizer: PreTrainedTokenizerBase | None = None, seed: int = 0,
                    n_positions: int = 512) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 sized for the tokenizer's vocabulary (deterministic by seed)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tokenizer or build_char_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Dropout would make "trained a few steps" checkpoints depend on RNG state outside the seed.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.train(False)  # = model.eval(), which transformers 5 leaves unannotated
    return model


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path, *, step: int | None = None,
               tokens_seen: int | None = None) -> Path:
    """Save weights (safetensors), config and tokenizer; record progress as the HF Trainer does."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if step is not None:
        state: dict[str, Any] = {"global_step": step}
        if tokens_seen is not None:
            state["num_input_tokens_seen"] = tokens_seen
        (out / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    return out


def answer_columns(digits: int, problems_per_row: int) -> list[bool]:
    """Which columns of a training row are scored with ``answer_loss_only``: each problem's
    answer and separator. Problems are fixed width ("aa+bb=ccc;"), so a column's role is its
    offset in the problem."""
    width, answer_at = 3 * digits + 4, 2 * digits + 2
    return [i % width >= answer_at for i in range(width * problems_per_row)]


def train_tiny_arithmetic(
    out_dir: str | Path | None = None,
    *,
    steps: int = 750,
    batch_size: int = 128,
    lr: float = 3e-3,
    n_layer: int = 3,
    n_embd: int = 128,
    n_head: int = 4,
    problems_per_row: int = 10,
    digits: int = 2,
    seed: int = 0,
    save_every: int | None = None,
    on_step: StepHook | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    start_step: int = 0,
    device: str = "cpu",
    answer_loss_only: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, int]:
    """Train a tiny GPT-2 on two-digit addition; return ``(model, tokenizer, last_step)``.

    ``on_step(step, model)`` runs after every optimizer step; returning ``False`` stops
    training (the coordinated-pause gate plugs in here). With ``save_every``, checkpoints
    go to ``out_dir/checkpoint-<step>`` (and the final one to ``out_dir`` itself), each with
    a ``trainer_state.json`` carrying ``global_step`` and ``num_input_tokens_seen`` so the
    eval runner can infer checkpoint step and training compute.

    With ``answer_loss_only`` the loss covers only each problem's answer and separator, as
    supervised fine-tuning scores only completions: the operands are random digits, and
    their irreducible loss otherwise drowns the signal from the sums (on a CPU this turns
    a long plateau at well-formed guesses into a rise within about a thousand steps).
    """
    tokenizer = tokenizer or build_char_tokenizer()
    model = model or build_tiny_gpt2(n_layer, n_embd, n_head, tokenizer, seed)
    model.to(device)  # type: ignore[arg-type]  # transformers types PreTrainedModel.to as the unbound Module.to (functools.wraps)
    model.train()
    rng = random.Random(seed * 7919 + start_step)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    step = start_step
    tokens_seen = 0
    labels_mask: torch.Tensor | None = None
    if answer_loss_only:
        labels_mask = torch.tensor(
            [not keep for keep in answer_columns(digits, problems_per_row)], dtype=torch.bool, device=device
        )
    for step in range(start_step + 1, start_step + steps + 1):
        rows = [arithmetic_stream(rng, problems_per_row, digits) for _ in range(batch_size)]
        ids = torch.tensor([tokenizer.encode(r) for r in rows], dtype=torch.long, device=device)
        labels = ids if labels_mask is None else ids.masked_fill(labels_mask, -100)
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens_seen += ids.numel()
        keep_going = True
        if on_step is not None:
            model.train(False)
            keep_going = on_step(step, model) is not False
            model.train()
        if out_dir is not None and save_every and step % save_every == 0:
            save_model(model, tokenizer, Path(out_dir) / f"checkpoint-{step}", step=step, tokens_seen=tokens_seen)
        if not keep_going:
            break
    model.train(False)
    if out_dir is not None:
        save_model(model, tokenizer, out_dir, step=step, tokens_seen=tokens_seen)
    return model, tokenizer, step
