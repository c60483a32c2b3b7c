"""Loading a local Hugging Face causal LM, choosing device and dtype, and the model commitment."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from node.evals.errors import EvalRuntimeError, ModelLoadError
from protocol.canonical import digest_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Files that hold weights. The commitment covers exactly these, so renaming a config or
#: re-saving a tokenizer does not change it, while any change to a weight byte does.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def weight_files(model_dir: Path) -> list[Path]:
    files: set[Path] = set()
    for pat in WEIGHT_PATTERNS:
        files.update(p for p in model_dir.glob(pat) if p.is_file() and not p.name.startswith("training_args"))
    return sorted(files, key=lambda p: p.name)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def model_commitment(model_dir: str | Path) -> tuple[str, dict[str, str]]:
    """``(commitment, {file name: sha256})`` for the weight files of a model directory.

    commitment = SHA-256 of the JCS bytes of
    ``{"format": "tripwire-model-commitment/1", "files": {name: sha256-hex}}``
    (see docs/evals.md), so sharded checkpoints have one well-defined commitment and an
    auditor can recompute it with any SHA-256 tool plus a JSON canonicaliser.
    """
    d = Path(model_dir)
    files = weight_files(d)
    if not files:
        raise ModelLoadError(f"model directory {d} holds no weight files ({', '.join(WEIGHT_PATTERNS)})")
    hashes = {p.name: _sha256_file(p) for p in files}
    return digest_of({"format": "tripwire-model-commitment/1", "files": hashes}), hashes


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EvalRuntimeError(f"--device {device} requested but no CUDA device is available (torch {torch.__version__})")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise EvalRuntimeError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise EvalRuntimeError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    return _DTYPES[dtype]


@dataclass
class LoadedModel:
    """A model ready to score, with the facts the signed result reports about it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_dir: Path
    name: str
    device: torch.device
    dtype: torch.dtype
    commitment: str
    weight_hashes: dict[str, str]
    parameters: int
    max_length: int
    sharded: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def input_device(self) -> torch.device:
        """Where input ids go (the embedding's device when layers are spread over GPUs)."""
        if self.sharded:
            weight = self.model.get_input_embeddings().weight
            assert isinstance(weight, torch.Tensor)
            return weight.device
        return self.device


def _max_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    cfg = model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    tl = getattr(tokenizer, "model_max_length", None)
    if isinstance(tl, int) and 0 < tl < 10**7:
        return tl
    return 2048


def _needs_device_map(model_dir: Path, device: torch.device) -> bool:
    """Spread layers over GPUs only when the weights would not fit on one device."""
    if device.type != "cuda" or torch.cuda.device_count() < 2 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return False
    size = sum(p.stat().st_size for p in weight_files(model_dir))
    free, _ = torch.cuda.mem_get_info(device)
    return size > 0.8 * free


def load_model(model_dir: str | Path, *, device: str = "auto", dtype: str = "auto", name: str | None = None) -> LoadedModel:
    """Load a local causal LM through ``AutoModelForCausalLM`` / ``AutoTokenizer`` (offline)."""
    d = Path(model_dir)
    if not d.exists():
        raise ModelLoadError(f"model directory {d} does not exist")
    if not d.is_dir():
        raise ModelLoadError(f"model path {d} is not a directory")
    if not (d / "config.json").is_file():
        raise ModelLoadError(f"model directory {d} has no config.json (not a Hugging Face model directory)")
    commitment, hashes = model_commitment(d)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity(logging.ERROR)  # what the unannotated set_verbosity_error() does
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers 5 leaves it unannotated
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot load the tokenizer from {d}: {type(e).__name__}: {e}") from e
    sharded = _needs_device_map(d, dev)
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dt}
    if sharded:
        kwargs["device_map"] = "auto"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(d), **kwargs)
    except Exception as e:
        # Truncated or corrupt safetensors, missing shards and bad configs all land here.
        raise ModelLoadError(
            f"cannot load the weights in {d} ({', '.join(hashes)}): {type(e).__name__}: {str(e)[:300]}"
        ) from e
    if not sharded:
        model.to(dev)  # type: ignore[arg-type]  # transformers types PreTrainedModel.to as the unbound Module.to (functools.wraps)
    model.train(False)  # = model.eval(), which transformers 5 leaves unannotated
    if tokenizer.pad_token_id is None:
        # Right-padded batches need some id there; padded positions are masked or never read.
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.convert_ids_to_tokens(0)
    params = sum(p.numel() for p in model.parameters())
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        model_dir=d,
        name=name or d.resolve().name,
        device=dev,
        dtype=dt,
        commitment=commitment,
        weight_hashes=hashes,
        parameters=params,
        max_length=_max_length(model, tokenizer),
        sharded=sharded,
    )


_STEP_RE = re.compile(r"(?:checkpoint|step|ckpt)[-_]?(\d+)$")


def trainer_state(model_dir: Path) -> dict[str, Any]:
    p = model_dir / "trainer_state.json"
    if not p.is_file():
        return {}
    try:
        state = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def infer_checkpoint_step(model_dir: str | Path) -> int:
    """Checkpoint step from ``trainer_state.json`` (``global_step``), else the dir name, else 0."""
    d = Path(model_dir)
    step = trainer_state(d).get("global_step")
    if isinstance(step, int) and step >= 0:
        return step
    m = _STEP_RE.search(d.resolve().name)
    return int(m.group(1)) if m else 0


def infer_training_flop(model_dir: str | Path, parameters: int) -> int | None:
    """``6 * parameters * tokens`` when the trainer recorded tokens seen; else its ``total_flos``."""
    state = trainer_state(Path(model_dir))
    tokens = state.get("num_input_tokens_seen")
    if isinstance(tokens, int | float) and tokens > 0:
        return 6 * parameters * int(tokens)
    flos = state.get("total_flos")
    if isinstance(flos, int | float) and flos > 0:
        return int(flos)
    return None


def runtime_facts(lm: LoadedModel, batch_size: str) -> dict[str, str]:
    import platform

    import transformers

    if lm.device.type == "cuda":
        dev_name = torch.cuda.get_device_name(lm.device)
        n = torch.cuda.device_count()
        device_desc = f"{dev_name} x{n}" if lm.sharded else dev_name
    else:
        device_desc = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    facts = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": device_desc[:256],
        "dtype": str(lm.dtype).removeprefix("torch."),
        "batch_size": batch_size,
    }
    if lm.sharded:
        facts["device_map"] = "auto"
    facts.update(lm.extra)
    return facts
