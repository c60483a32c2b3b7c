from __future__ import annotations

import random

import pytest
import torch

from node.evals.generators import arithmetic, kv_recall
from node.evals.scoring import Request, Scorer, encode_pair_list, run_batched


def _scorer(lm, max_length=None):
    return Scorer(lm.model, device=lm.device, max_length=max_length or lm.max_length, pad_id=lm.tokenizer.pad_token_id)


def _requests(tok):
    rng = random.Random(5)
    reqs = []
    for d in arithmetic(n=40, seed=3, mode="multiple_choice"):
        reqs.append(encode_pair_list(tok, d["context"], d["choices"]))
    for d in kv_recall(n=20, seed=4, mode="multiple_choice", pairs=rng.randint(2, 14)):
        # Varying numbers of choices, lengths and a trailing space that moves to the continuation.
        k = rng.randint(2, 4)
        reqs.append(encode_pair_list(tok, d["context"] + " ", [c * rng.randint(1, 3) for c in d["choices"][:k]]))
    reqs.append(encode_pair_list(tok, "", ["12", "3"]))  # empty context: BOS stands in
    reqs.append(encode_pair_list(tok, "x", ["y"]))  # one-token context and continuation
    return reqs


@pytest.mark.parametrize("engine", ["packed", "kv-cache"])
@pytest.mark.parametrize("batch_size", [3, 64], ids=["bs3", "bs64"])
def test_shared_prefix_scores_equal_plain_scores(loaded, batch_size, engine):
    reqs = _requests(loaded.tokenizer)
    sc = _scorer(loaded)
    plain = sc.score_plain(reqs, batch_size)
    sc.packed = engine == "packed"
    shared = sc.score_shared(reqs, batch_size)
    for a, b in zip(plain, shared, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert abs(x.logprob - y.logprob) < 1e-4
            assert x.greedy == y.greedy and x.n_tokens == y.n_tokens


def test_over_long_items_fall_back_to_left_truncated_plain_scoring(loaded):
    reqs = _requests(loaded.tokenizer)[:10]
    sc = _scorer(loaded, max_length=64)  # contexts are ~100 tokens: all must be truncated
    plain = sc.score_plain(reqs, 4)
    shared = sc.score_shared(reqs, 4)
    assert [[s.logprob for s in r] for r in plain] == [[s.logprob for s in r] for r in shared]


def test_whitespace_moves_from_context_to_continuation_like_lm_eval(loaded):
    tok = loaded.tokenizer
    r = encode_pair_list(tok, "Q: 1+1=  ", ["2"])
    assert tok.decode(r.ctx) == "Q: 1+1="
    assert tok.decode(r.conts[0]) == "  2"
    empty = encode_pair_list(tok, "", ["ab"])
    assert empty.ctx == [tok.bos_token_id] and tok.decode(empty.conts[0]) == "ab"


def test_greedy_flag_matches_argmax_decoding(loaded):
    tok = loaded.tokenizer
    ids = tok.encode("12+34=")
    with torch.no_grad():
        nxt = int(loaded.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    best = tok.decode([nxt])
    other = next(c for c in "0123456789" if c != best)
    scores = _scorer(loaded).score_shared([Request(ids, [[nxt], tok.encode(other)])], 4)[0]
    assert scores[0].greedy and not scores[1].greedy
    assert scores[0].logprob > scores[1].logprob


def test_out_of_memory_halves_the_batch_and_retries():
    calls = []

    def fn(a, b):
        calls.append(b - a)
        if b - a > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate")

    final = run_batched(10, 16, fn, auto=True)
    assert final == 2 and calls[:4] == [10, 8, 4, 2]
    assert sum(c for c in calls if c <= 3) == 10


def test_out_of_memory_with_fixed_batch_size_is_a_clear_error():
    from node.evals.errors import EvalRuntimeError

    def fn(a, b):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(EvalRuntimeError, match="out of memory at batch size 8"):
        run_batched(10, 8, fn, auto=False)


def test_a_model_that_ignores_4d_masks_falls_back_to_the_kv_cache_engine(loaded):
    class IgnoresMasks(torch.nn.Module):
        """Drops 4D masks, as a model without custom-mask support might, silently."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, position_ids=None, **kw):
            if attention_mask is not None and attention_mask.dim() == 4:
                attention_mask = None
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kw)

    reqs = _requests(loaded.tokenizer)[:12]
    sc = Scorer(IgnoresMasks(loaded.model), device=loaded.device, max_length=loaded.max_length,
                pad_id=loaded.tokenizer.pad_token_id)
    shared = sc.score_shared(reqs, 4)
    assert sc.packed is False
    plain = _scorer(loaded).score_plain(reqs, 4)
    assert max(abs(a.logprob - b.logprob) for x, y in zip(plain, shared, strict=True) for a, b in zip(x, y, strict=True)) < 1e-4


def test_a_catch_all_wrapper_speaks_the_inner_models_keywords(loaded):
    # An adapter whose forward takes **kwargs hands them on: the scorer must ask the
    # transformers model inside which cache keyword and logit trimming it takes, not guess.
    class Passes(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *a, **kw):
            return self.inner(*a, **kw)

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 2)

        def forward(self, *a, **kw):
            return self.w(*a)

    direct = _scorer(loaded)
    wrapped = Scorer(Passes(loaded.model), device=loaded.device, max_length=loaded.max_length,
                     pad_id=loaded.tokenizer.pad_token_id)
    assert (wrapped.cache_kw, wrapped.can_keep_logits) == (direct.cache_kw, direct.can_keep_logits)
    assert direct.can_keep_logits
    bare = Scorer(Plain(), device=loaded.device, max_length=8, pad_id=0)
    assert (bare.cache_kw, bare.can_keep_logits) == ("past_key_values", False)
