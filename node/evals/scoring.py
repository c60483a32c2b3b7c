"""Log-likelihood scoring of (context, continuations) requests.

Two engines give the same numbers (within float tolerance; a test holds them to 1e-4):

- :func:`score_plain` scores every (context, continuation) pair as its own sequence, the
  way lm-evaluation-harness does; kept as the reference and for over-long inputs.
- :func:`score_shared` encodes each context once (contexts left-padded into one batch
  so every context ends at the same column), then repeats the cached keys/values once
  per continuation and runs only the continuation tokens. For a 4-choice item with a
  100-token context and short answers that is roughly a quarter of the work.

Tokenization follows lm-evaluation-harness 0.4 exactly (``_encode_pair``): trailing
whitespace moves from the context to the continuation, the context and the whole string
are encoded separately, and the continuation is the whole encoding past the context's
length; an empty context is replaced by the BOS (else EOS) token.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from node.evals.errors import EvalDataError, EvalRuntimeError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Progress = Callable[[int], None]


@dataclass
class Request:
    """One item: a context and the continuations to score after it, as token ids."""

    ctx: list[int]
    conts: list[list[int]]


@dataclass
class Score:
    """Sum of log-probabilities of a continuation, and whether greedy decoding produces it."""

    logprob: float
    greedy: bool
    n_tokens: int


def encode_pair_list(tokenizer: PreTrainedTokenizerBase, context: str, continuations: Sequence[str]) -> Request:
    """Token ids for one context and its continuations, as lm-evaluation-harness builds them."""
    if context == "":
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        conts: list[list[int]] = []
        ctxs: list[list[int]] = []
        for c in continuations:
            enc = tokenizer.encode(c, add_special_tokens=False)
            if enc and enc[0] == prefix:
                ctxs.append(enc[:1])
                conts.append(enc[1:])
            else:
                ctxs.append([prefix])
                conts.append(enc)
        if any(x != ctxs[0] for x in ctxs):
            raise EvalDataError("continuations of one item disagree on their prefix token")
        return Request(ctxs[0], conts)
    n_spaces = len(context) - len(context.rstrip())
    moved = context[-n_spaces:] if n_spaces else ""
    ctx_text = context[:-n_spaces] if n_spaces else context
    bos_text: str | None = None
    if tokenizer.bos_token_id is not None:
        decoded = tokenizer.decode([tokenizer.bos_token_id])
        assert isinstance(decoded, str)  # one id sequence decodes to one string
        bos_text = decoded
    special = {"add_special_tokens": False} if bos_text and ctx_text.startswith(bos_text) else {}
    ctx = tokenizer.encode(ctx_text, **special)
    conts = []
    for c in continuations:
        whole = tokenizer.encode(ctx_text + moved + c, **special)
        conts.append(whole[len(ctx):])
    return Request(ctx, conts)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, *, left: bool, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[len(seqs), width]`` padded with ``pad_id``, and the matching 0/1 mask.

    ``left`` pads before each sequence (its last token in the final column, as generation
    and shared-prefix scoring need); otherwise after it.
    """
    width = max((len(x) for x in seqs), default=0) if width is None else width
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, seq in enumerate(seqs):
        if not seq:
            continue
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[r, cols] = torch.tensor(seq)
        mask[r, cols] = 1
    return ids, mask


def run_batched(
    n: int,
    batch_size: int,
    fn: Callable[[int, int], None],
    *,
    auto: bool,
    progress: Progress | None = None,
) -> int:
    """Call ``fn(start, stop)`` over ``range(n)`` in batches; halve the batch on out-of-memory.

    Returns the batch size that finally worked (reported in the runtime facts).
    """
    start = 0
    bs = max(1, batch_size)
    while start < n:
        stop = min(n, start + bs)
        try:
            fn(start, stop)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not _is_oom(e):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if bs == 1 or not auto:
                raise EvalRuntimeError(
                    f"out of memory at batch size {bs}; use a smaller --batch-size or --batch-size auto"
                ) from e
            bs = max(1, bs // 2)
            continue
        if progress is not None:
            progress(stop - start)
        start = stop
    return bs


def _takes(fn: Callable[..., Any], name: str) -> tuple[bool, bool]:
    """(declares ``name``, has a ``**kwargs`` catch-all) for ``fn``'s signature."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False, False
    return name in params, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _accepts(model: torch.nn.Module, name: str) -> bool:
    """Whether ``model.forward`` takes the keyword ``name``.

    A wrapper whose forward takes ``**kwargs`` (an adapter, a hook, a test double) hands them
    on to the transformers model inside it, so its answer is that inner model's; a catch-all
    with no transformers model inside says no.
    """
    declared, catch_all = _takes(model.forward, name)
    if declared or not catch_all:
        return declared
    from transformers import PreTrainedModel

    inner = next((m for m in model.modules() if m is not model and isinstance(m, PreTrainedModel)), None)
    return inner is not None and _takes(inner.forward, name)[0]


class Scorer:
    """Scores :class:`Request` lists on a loaded model (plain or shared-prefix)."""

    def __init__(self, model: torch.nn.Module, *, device: torch.device, max_length: int, pad_id: int) -> None:
        self.model = model
        self.device = device
        self.max_length = max_length
        self.pad_id = pad_id
        self.can_keep_logits = _accepts(model, "logits_to_keep")
        # transformers renamed ``past_key_values`` to ``cache`` (5.2x); speak whichever it takes.
        self.cache_kw = "cache" if _accepts(model, "cache") else "past_key_values"
        self.last_batch_size: int | None = None
        #: Whether the packed engine is used (None: decided on the first batch, see _packed_agrees).
        self.packed: bool | None = None
        self.tolerance = 1e-3 if next(model.parameters()).dtype == torch.float32 else 0.25

    # --- reference engine -------------------------------------------------------------

    def score_plain(self, reqs: Sequence[Request], batch_size: int, *, auto: bool = False,
                    progress: Progress | None = None) -> list[list[Score]]:
        flat = [(i, j) for i, r in enumerate(reqs) for j in range(len(r.conts))]
        out: list[list[Score | None]] = [[None] * len(r.conts) for r in reqs]
        # Longest first, as lm-eval does: the first batch is the largest, so OOM shows at once.
        flat.sort(key=lambda ij: -(len(reqs[ij[0]].ctx) + len(reqs[ij[0]].conts[ij[1]])))
        per_item_left = [len(r.conts) for r in reqs]

        def step(a: int, b: int) -> None:
            chunk = flat[a:b]
            inps, contlens = [], []
            for i, j in chunk:
                cont = reqs[i].conts[j]
                seq = (reqs[i].ctx + cont)[-(self.max_length + 1):][:-1]
                inps.append(seq)
                contlens.append(len(cont))
            ids, _ = pad_batch(inps, self.pad_id, left=False)
            # Right padding needs no mask: causal attention keeps real positions from seeing it
            # (lm-eval calls the model the same way, and the mask-free path is faster).
            logits = self.model(input_ids=ids.to(self.device)).logits
            for k, (i, j) in enumerate(chunk):
                n_in, m = len(inps[k]), contlens[k]
                lp = F.log_softmax(logits[k, n_in - m : n_in].float(), dim=-1)
                tgt = torch.tensor(reqs[i].conts[j], device=lp.device)
                out[i][j] = Score(
                    float(lp.gather(1, tgt[:, None]).sum()), bool((lp.argmax(-1) == tgt).all()), m
                )
                per_item_left[i] -= 1

        done_items = 0

        def prog(_: int) -> None:
            nonlocal done_items
            now = sum(1 for x in per_item_left if x == 0)
            if progress is not None and now > done_items:
                progress(now - done_items)
            done_items = now

        self._check(reqs)
        with torch.inference_mode():
            self.last_batch_size = run_batched(len(flat), batch_size, step, auto=auto, progress=prog)
        return _filled(out)

    # --- shared-prefix engine ---------------------------------------------------------

    def score_shared(self, reqs: Sequence[Request], batch_size: int, *, auto: bool = False,
                     progress: Progress | None = None) -> list[list[Score]]:
        self._check(reqs)
        out: list[list[Score] | None] = [None] * len(reqs)
        too_long = [i for i, r in enumerate(reqs) if len(r.ctx) + max(len(c) for c in r.conts) - 1 > self.max_length]
        fits = [i for i, r in enumerate(reqs) if i not in set(too_long)]
        fits.sort(key=lambda i: -len(reqs[i].ctx))

        def step(a: int, b: int) -> None:
            idx = fits[a:b]
            batch = [reqs[i] for i in idx]
            if self.packed is None:
                self.packed = self._packed_agrees(batch[0])
            res = self._packed_batch(batch) if self.packed else self._shared_batch(batch)
            for i, r in zip(idx, res, strict=True):
                out[i] = r

        with torch.inference_mode():
            self.last_batch_size = run_batched(len(fits), batch_size, step, auto=auto, progress=progress)
        if too_long:
            # Left truncation changes the context per continuation, so nothing is shared.
            sub = self.score_plain([reqs[i] for i in too_long], batch_size, auto=auto, progress=progress)
            for i, r in zip(too_long, sub, strict=True):
                out[i] = r
        return _filled(out)

    def _packed_agrees(self, req: Request) -> bool:
        """Check once, on a real item, that the model honours a 4D attention mask.

        A model that silently ignored the mask would score continuations that can see each
        other; such models (and ones that refuse 4D masks) use the key/value-cache engine.
        """
        try:
            packed = self._packed_batch([req])[0]
        except (TypeError, ValueError, RuntimeError, IndexError) as e:
            if _is_oom(e):
                raise
            return False
        plain = self._shared_batch([req])[0]
        return all(abs(a.logprob - b.logprob) <= self.tolerance for a, b in zip(packed, plain, strict=True))

    def _packed_batch(self, batch: Sequence[Request]) -> list[list[Score]]:
        """One row per item: the context, then every continuation (minus its last token),
        each block seeing the context and itself only, positions restarting after the context.

        Rows are left-padded so the continuation blocks end in the last columns, and only
        those columns' logits are computed.
        """
        dev = self.device
        rows, segs, poss, spans = [], [], [], []
        for r in batch:
            toks, seg, pos, starts = list(r.ctx), [-1] * len(r.ctx), list(range(len(r.ctx))), []
            for j, c in enumerate(r.conts):
                starts.append(len(toks))
                body = c[:-1]
                toks += body
                seg += [j] * len(body)
                pos += [len(r.ctx) + t for t in range(len(body))]
            rows.append(toks)
            segs.append(seg)
            poss.append(pos)
            spans.append(starts)
        width = max(len(t) for t in rows)
        n = len(batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        seg_t = torch.full((n, width), -2, dtype=torch.long)
        pos_t = torch.zeros((n, width), dtype=torch.long)
        offs = []
        for k in range(n):
            off = width - len(rows[k])
            offs.append(off)
            ids[k, off:] = torch.tensor(rows[k])
            seg_t[k, off:] = torch.tensor(segs[k])
            pos_t[k, off:] = torch.tensor(poss[k])
        seg_t = seg_t.to(dev)
        causal = torch.ones((width, width), dtype=torch.bool, device=dev).tril()
        key_seg = seg_t[:, None, :]
        allow = causal[None] & ((key_seg == -1) | (key_seg == seg_t[:, :, None])) & (key_seg != -2)
        # Padding rows attend to themselves only, so no softmax row is empty (NaN-free).
        allow |= torch.eye(width, dtype=torch.bool, device=dev)[None] & (seg_t == -2)[:, :, None]
        keep = max(width - offs[k] - len(batch[k].ctx) for k in range(n)) + 1
        kw: dict[str, Any] = {"logits_to_keep": keep} if self.can_keep_logits else {}
        logits = self.model(
            input_ids=ids.to(dev), attention_mask=allow[:, None], position_ids=pos_t.to(dev), **kw
        ).logits
        base = width - logits.shape[1]  # column of logits[:, 0] in the row
        lp = F.log_softmax(logits.float(), dim=-1)
        res: list[list[Score]] = []
        for k, r in enumerate(batch):
            last_ctx = offs[k] + len(r.ctx) - 1 - base
            first = lp[k, last_ctx]
            first_arg = int(first.argmax())
            scores = []
            for j, c in enumerate(r.conts):
                val = float(first[c[0]])
                greedy = first_arg == c[0]
                if len(c) > 1:
                    start = offs[k] + spans[k][j] - base
                    block = lp[k, start : start + len(c) - 1]
                    tgt = torch.tensor(c[1:], device=block.device)
                    val += float(block.gather(1, tgt[:, None]).sum())
                    greedy = greedy and bool((block.argmax(-1) == tgt).all())
                scores.append(Score(val, greedy, len(c)))
            res.append(scores)
        return res

    def _shared_batch(self, batch: Sequence[Request]) -> list[list[Score]]:
        dev = self.device
        lens = [len(r.ctx) for r in batch]
        ids, mask = pad_batch([r.ctx for r in batch], self.pad_id, left=True)
        # Left padding aligns every context's last token in the final column, so one
        # column of logits serves the whole batch; positions restart at 0 after the padding.
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        kw: dict[str, Any] = {"logits_to_keep": 1} if self.can_keep_logits else {}
        # Equal-length contexts (common after sorting by length) need no mask and no explicit
        # positions in either phase, which lets attention take its fast causal path.
        uniform = len(set(lens)) == 1
        ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
        if not uniform:
            kw |= {"attention_mask": mask, "position_ids": pos}
        o = self.model(input_ids=ids, use_cache=True, **kw)
        first_lp = F.log_softmax(o.logits[:, -1].float(), dim=-1)  # [B, V]
        cache = getattr(o, "cache", None) or o.past_key_values

        rows = [(k, j) for k, r in enumerate(batch) for j in range(len(r.conts))]
        longest = max(len(batch[k].conts[j]) for k, j in rows)
        rest_lp = None
        if longest > 1:
            item_of_row = torch.tensor([k for k, _ in rows], device=dev)
            cache.reorder_cache(item_of_row)
            m = longest - 1
            cids, cmask = pad_batch([batch[k].conts[j][:-1] for k, j in rows], self.pad_id, left=False, width=m)
            kw2: dict[str, Any] = {self.cache_kw: cache}
            if not uniform:
                full_mask = torch.cat([mask[item_of_row], cmask.to(dev)], dim=1)
                cpos = torch.tensor(lens, device=dev)[item_of_row][:, None] + torch.arange(m, device=dev)[None, :]
                kw2 |= {"attention_mask": full_mask, "position_ids": cpos}
            o2 = self.model(input_ids=cids.to(dev), use_cache=True, **kw2)
            rest_lp = F.log_softmax(o2.logits.float(), dim=-1)  # [R, m, V]
        del cache, o

        res: list[list[Score]] = [[] for _ in batch]
        for n, (k, j) in enumerate(rows):
            cont = batch[k].conts[j]
            t0 = cont[0]
            lp = float(first_lp[k, t0])
            greedy = int(first_lp[k].argmax()) == t0
            if len(cont) > 1:
                assert rest_lp is not None
                tgt = torch.tensor(cont[1:], device=dev)
                seg = rest_lp[n, : len(cont) - 1]
                lp += float(seg.gather(1, tgt[:, None]).sum())
                greedy = greedy and bool((seg.argmax(-1) == tgt).all())
            res[k].append(Score(lp, greedy, len(cont)))
        return res

    def _check(self, reqs: Sequence[Request]) -> None:
        for n, r in enumerate(reqs):
            if not r.ctx:
                raise EvalDataError(f"item {n}: the context encodes to no tokens")
            for c in r.conts:
                if not c:
                    raise EvalDataError(f"item {n}: a continuation encodes to no tokens")
                if len(c) > self.max_length:
                    raise EvalDataError(f"item {n}: a continuation is longer than the model's context ({self.max_length})")


def _filled(rows: Sequence[Sequence[Score | None] | None]) -> list[list[Score]]:
    """The result table once every slot is scored (the engines fill each exactly once)."""
    out: list[list[Score]] = []
    for row in rows:
        assert row is not None
        out.append([s for s in row if s is not None])
        assert len(out[-1]) == len(row)
    return out


def logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))
