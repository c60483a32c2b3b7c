"""Batched generation with stop sequences, for ``generate_until`` tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch

from node.evals.errors import EvalRuntimeError
from node.evals.scoring import Progress, pad_batch, run_batched
from node.evals.spec import Generation

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, StoppingCriteriaList

    from node.evals.model import LoadedModel


def _stopping(tokenizer: PreTrainedTokenizerBase, stops: Sequence[str], prompt_len: int) -> StoppingCriteriaList:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnStrings(StoppingCriteria):
        """Ends a row once its new text contains a stop string (token boundaries vary by tokenizer)."""

        def __call__(self, input_ids: torch.LongTensor, scores: tuple[torch.Tensor] | None,
                     **kwargs: Any) -> torch.BoolTensor:
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            # A tensor of Python bools has dtype bool: the BoolTensor the base class promises.
            return cast(torch.BoolTensor, torch.tensor([any(s in t for s in stops) for t in texts], device=input_ids.device))

    return StoppingCriteriaList([StopOnStrings()]) if stops else StoppingCriteriaList()


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the earliest stop string (the stop itself is not part of the answer)."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def generate_all(lm: LoadedModel, contexts: Sequence[str], gen: Generation, *, batch_size: int, auto: bool,
                 progress: Progress | None = None, index_base: Sequence[int] | None = None) -> list[list[str]]:
    """``gen.samples`` completions per context, cut at the first stop sequence.

    Contexts are batched longest first and left-padded. Sampling is seeded per batch from
    ``gen.seed`` and the first item's index, so a rerun with the same batch size repeats.
    """
    from transformers import GenerationMixin

    tok = lm.tokenizer
    model = lm.model
    if not isinstance(model, GenerationMixin):
        raise EvalRuntimeError(f"{type(model).__name__} cannot generate text (it is not a transformers GenerationMixin)")
    budget = max(1, lm.max_length - gen.max_gen_toks)
    encoded = [tok.encode(c)[-budget:] for c in contexts]
    order = sorted(range(len(contexts)), key=lambda i: -len(encoded[i]))
    out: list[list[str]] = [[] for _ in contexts]
    dev = lm.input_device

    def step(a: int, b: int) -> None:
        idx = order[a:b]
        ids, mask = pad_batch([encoded[i] for i in idx], tok.pad_token_id, left=True)
        width = ids.shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": gen.max_gen_toks,
            "do_sample": gen.do_sample,
            "num_return_sequences": gen.samples,
            "pad_token_id": tok.pad_token_id,
            "stopping_criteria": _stopping(tok, gen.until, width),
        }
        if gen.do_sample:
            kwargs.update(temperature=float(gen.temperature), top_p=float(gen.top_p), top_k=0)
            first = index_base[idx[0]] if index_base is not None else idx[0]
            torch.manual_seed(gen.seed + first)
        seqs = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), **kwargs)
        texts = tok.batch_decode(seqs[:, width:], skip_special_tokens=True)
        for r, i in enumerate(idx):
            out[i] = [cut_at_stop(t, gen.until) for t in texts[r * gen.samples : (r + 1) * gen.samples]]

    with torch.inference_mode():
        run_batched(len(order), batch_size, step, auto=auto, progress=progress)
    return out
