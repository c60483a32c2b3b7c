"""Standardized evals run locally on a lab's checkpoints (torch + transformers).

Public surface: load suites and tasks, run them on a local Hugging Face model, and get
the ``--out`` document and the signed ``eval_result`` body; tiny models for tests and
demos; hooks to evaluate during training. Heavy imports (torch, transformers) happen in
the submodules, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "EvalRun",
    "EvalTrainerCallback",
    "LoadedModel",
    "SuiteSpec",
    "TaskRun",
    "TaskSpec",
    "build_char_tokenizer",
    "build_tiny_gpt2",
    "evaluate_every",
    "load_model",
    "load_suite",
    "load_suite_or_task",
    "load_task",
    "model_commitment",
    "run_suite",
    "run_task",
    "save_model",
    "train_tiny_arithmetic",
]

_WHERE = {
    "EvalRun": "runner", "TaskRun": "runner", "run_suite": "runner", "run_task": "runner",
    "load_suite_or_task": "runner",
    "SuiteSpec": "spec", "TaskSpec": "spec", "load_suite": "spec", "load_task": "spec",
    "LoadedModel": "model", "load_model": "model", "model_commitment": "model",
    "build_char_tokenizer": "tinymodels", "build_tiny_gpt2": "tinymodels", "save_model": "tinymodels",
    "train_tiny_arithmetic": "tinymodels",
    "EvalTrainerCallback": "training", "evaluate_every": "training",
}

if TYPE_CHECKING:  # pragma: no cover
    from node.evals.model import LoadedModel, load_model, model_commitment
    from node.evals.runner import EvalRun, TaskRun, load_suite_or_task, run_suite, run_task
    from node.evals.spec import SuiteSpec, TaskSpec, load_suite, load_task
    from node.evals.tinymodels import build_char_tokenizer, build_tiny_gpt2, save_model, train_tiny_arithmetic
    from node.evals.training import EvalTrainerCallback, evaluate_every


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'node.evals' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"node.evals.{mod}"), name)
