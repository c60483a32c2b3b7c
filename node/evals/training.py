"""Evaluate checkpoints during training: a Hugging Face ``TrainerCallback`` and a plain-loop hook.

Every N steps the current weights are saved (``save_pretrained``) to
``<out_dir>/checkpoint-<step>``, the suite runs on the in-memory model, and the result is
written next to the checkpoint and, given a node home, signed into the lab's feed. The
commitment in the signed result is computed from the saved files, so anyone holding the
checkpoint can check that the result is about exactly those weights.

The training gate (pause check) hooks in after these; both return or set "stop" so a
gate can halt training through the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from node.evals.model import LoadedModel, _max_length, model_commitment
from node.evals.runner import EvalRun, run_suite, write_result
from node.evals.spec import SuiteSpec
from node.evals.tinymodels import save_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, TrainerControl, TrainerState, TrainingArguments

FlopFn = Callable[[int, int], int | str]
"""``(step, parameters) -> training FLOP so far`` when the trainer's own count is not wanted."""


@dataclass
class CheckpointEvaluator:
    """What both hooks share: save, evaluate, write, publish. Results are kept in ``runs``."""

    suite: SuiteSpec | str | Path
    out_dir: str | Path
    tokenizer: Any
    home: Any = None
    batch_size: int | str = "auto"
    limit: int | None = None
    model_name: str | None = None
    flop_fn: FlopFn | None = None
    progress: bool = False
    runs: list[EvalRun] = field(default_factory=list)
    entry_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.suite, SuiteSpec):
            from node.evals.runner import load_suite_or_task

            # Load (and check data pins) once, before training starts, not at the first eval.
            self.suite = load_suite_or_task(self.suite)

    def evaluate(self, model: PreTrainedModel, step: int, *, tokens_seen: int | None = None,
                 total_flos: float | None = None) -> EvalRun | None:
        """Save, evaluate and publish checkpoint ``step``; None on a non-zero rank under torchrun."""
        ckpt = Path(self.out_dir) / f"checkpoint-{step}"
        was_training = model.training
        model.train(False)  # = model.eval(), which transformers 5 leaves unannotated
        try:
            save_model(model, self.tokenizer, ckpt, step=step, tokens_seen=tokens_seen)
            commitment, hashes = model_commitment(ckpt)
            params = sum(p.numel() for p in model.parameters())
            if self.flop_fn is not None:
                flop: int | str | None = self.flop_fn(step, params)
            elif tokens_seen:
                flop = 6 * params * tokens_seen
            elif total_flos:
                flop = int(total_flos)
            else:
                flop = None
            first = next(model.parameters())
            lm = LoadedModel(
                model=model, tokenizer=self.tokenizer, model_dir=ckpt, name=self.model_name or Path(self.out_dir).name,
                device=first.device, dtype=first.dtype, commitment=commitment, weight_hashes=hashes,
                parameters=params, max_length=_max_length(model, self.tokenizer),
            )
            assert isinstance(self.suite, SuiteSpec)
            run = run_suite(ckpt, self.suite, batch_size=self.batch_size, limit=self.limit, model=lm,
                            checkpoint_step=step, training_flop=None if flop is None else str(flop),
                            progress=self.progress)
        finally:
            if was_training:
                model.train()
        if run is None:  # non-zero rank under torchrun
            return None
        entry_id = None
        if self.home is not None:
            from node.evals.signing import publish_result

            entry_id = publish_result(self.home, run)
            self.entry_ids.append(entry_id)
        write_result(run, ckpt / "eval_result.json", entry_id=entry_id)
        self.runs.append(run)
        return run


class EveryStepsHook:
    """``hook(step, model) -> True``: evaluates every ``every`` steps; ``hook.evaluator`` holds the runs."""

    def __init__(self, every: int, evaluator: CheckpointEvaluator, tokens_per_step: int | None) -> None:
        self.every = every
        self.evaluator = evaluator
        self.tokens_per_step = tokens_per_step

    def __call__(self, step: int, model: PreTrainedModel) -> bool:
        if step % self.every == 0:
            with torch.inference_mode(False):
                tokens = self.tokens_per_step * step if self.tokens_per_step else None
                self.evaluator.evaluate(model, step, tokens_seen=tokens)
        return True


def evaluate_every(every: int, suite: SuiteSpec | str | Path, out_dir: str | Path, tokenizer: Any, *,
                   tokens_per_step: int | None = None, home: Any = None, **kwargs: Any) -> EveryStepsHook:
    """An ``on_step(step, model) -> bool`` hook for plain training loops.

    Pass it as ``train_tiny_arithmetic(on_step=...)`` or call it from your own loop after
    each optimizer step. ``hook.evaluator.runs`` holds the results.
    """
    if every < 1:
        raise ValueError("every must be >= 1")
    ev = CheckpointEvaluator(suite=suite, out_dir=out_dir, tokenizer=tokenizer, home=home, **kwargs)
    return EveryStepsHook(every, ev, tokens_per_step)


class EvalTrainerCallback(TrainerCallback):
    """Evaluates the suite every ``every`` global steps of a ``transformers.Trainer`` run.

    Training compute defaults to ``6 * parameters * num_input_tokens_seen`` (set
    ``include_num_input_tokens_seen=True`` in ``TrainingArguments``), else the Trainer's
    ``total_flos``, else ``flop_fn``.
    """

    def __init__(self, suite: SuiteSpec | str | Path, every: int, out_dir: str | Path, tokenizer: Any, *,
                 home: Any = None, **kwargs: Any) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every
        self.evaluator = CheckpointEvaluator(suite=suite, out_dir=out_dir, tokenizer=tokenizer, home=home, **kwargs)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: PreTrainedModel | None = None, **kwargs: Any) -> TrainerControl:
        if model is not None and state.global_step % self.every == 0:
            tokens = getattr(state, "num_input_tokens_seen", 0) or None
            self.evaluator.evaluate(model, state.global_step, tokens_seen=tokens, total_flos=state.total_flos or None)
        return control
