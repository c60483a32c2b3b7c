"""Linear probes on a layer's residual stream, for ``activation_probe`` tasks.

A probe file is a safetensors file with ``weight`` (shape ``[d]``) and ``bias`` (scalar
or ``[1]``); its score for a text is ``sigmoid(weight · h + bias)`` where ``h`` is
``hidden_states[layer]`` of the model (0 = embeddings, i = after block i) at the last
token, or averaged over tokens with ``pool: mean``. The task pins the file's SHA-256.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from node.evals.errors import EvalSpecError
from node.evals.scoring import Progress, pad_batch, run_batched
from node.evals.spec import ProbeSpec

if TYPE_CHECKING:
    from node.evals.model import LoadedModel


def load_probe(spec: ProbeSpec, hidden_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(spec.path))
    except Exception as e:
        raise EvalSpecError(f"probe {spec.path}: not a readable safetensors file: {e}") from e
    if "weight" not in tensors:
        raise EvalSpecError(f"probe {spec.path}: missing tensor `weight`")
    w = tensors["weight"].float().reshape(-1)
    b = tensors.get("bias", torch.zeros(1)).float().reshape(-1)[:1]
    if w.numel() != hidden_size:
        raise EvalSpecError(f"probe {spec.path}: weight has {w.numel()} entries, the model's hidden size is {hidden_size}")
    return w, b


def activations(lm: LoadedModel, texts: Sequence[str], layer: int, pool: str, *, batch_size: int, auto: bool,
                progress: Progress | None = None) -> torch.Tensor:
    """``[len(texts), hidden]`` float32 activations at ``layer``, pooled per text."""
    tok = lm.tokenizer
    n_layers = getattr(lm.model.config, "num_hidden_layers", None) or getattr(lm.model.config, "n_layer", None)
    if n_layers is not None and not 0 <= layer <= n_layers:
        raise EvalSpecError(f"probe layer {layer} is outside 0..{n_layers} for this model")
    enc = [tok.encode(t)[-lm.max_length:] for t in texts]
    out: list[torch.Tensor | None] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(enc[i]))
    dev = lm.input_device

    def step(a: int, b: int) -> None:
        idx = order[a:b]
        ids, mask = pad_batch([enc[i] for i in idx], tok.pad_token_id, left=False)
        hs = lm.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), output_hidden_states=True).hidden_states[layer]
        hs = hs.float()
        for r, i in enumerate(idx):
            n = len(enc[i])
            out[i] = (hs[r, n - 1] if pool == "last" else hs[r, :n].mean(0)).cpu()

    with torch.inference_mode():
        run_batched(len(order), batch_size, step, auto=auto, progress=progress)
    done = [t for t in out if t is not None]
    assert len(done) == len(out)  # step() fills every slot
    return torch.stack(done)


def probe_scores(lm: LoadedModel, texts: Sequence[str], spec: ProbeSpec, *, batch_size: int, auto: bool,
                 progress: Progress | None = None) -> list[float]:
    h = activations(lm, texts, spec.layer, spec.pool, batch_size=batch_size, auto=auto, progress=progress)
    w, b = load_probe(spec, h.shape[1])
    return torch.sigmoid(h @ w + b).tolist()


def fit_probe(lm: LoadedModel, texts: Sequence[str], labels: Sequence[int], layer: int, out_path: str | Path, *,
              pool: str = "last", steps: int = 200, l2: float = 1e-3, batch_size: int = 32) -> Path:
    """Fit a logistic-regression probe (full-batch L-BFGS) and save it as safetensors."""
    from safetensors.torch import save_file

    h = activations(lm, texts, layer, pool, batch_size=batch_size, auto=False)
    y = torch.tensor(labels, dtype=torch.float32)
    mu, sd = h.mean(0), h.std(0).clamp(min=1e-6)
    x = (h - mu) / sd
    w = torch.zeros(h.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        torch.autograd.backward(loss)  # what loss.backward() does; Tensor.backward is unannotated
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]  # torch leaves LBFGS.step unannotated
    # Fold the standardisation into the weights so the file applies to raw activations.
    with torch.no_grad():
        w_raw = w / sd
        b_raw = b - (mu / sd * w).sum()
    out = Path(out_path)
    save_file({"weight": w_raw.contiguous(), "bias": b_raw.contiguous()}, str(out))
    return out
