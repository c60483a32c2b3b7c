"""Fixtures: tiny real GPT-2 checkpoints saved to disk and loaded through the user's path."""

from __future__ import annotations

import os

# No model hub or dataset hub at run time: everything is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from node.evals.tinymodels import build_char_tokenizer, build_tiny_gpt2, save_model

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide random-init GPT-2 saved as checkpoint-40 with a trainer state."""
    torch.set_num_threads(2)
    tok = build_char_tokenizer()
    model = build_tiny_gpt2(n_layer=2, n_embd=64, n_head=2, tokenizer=tok, seed=0)
    d = tmp_path_factory.mktemp("models") / "checkpoint-40"
    save_model(model, tok, d, step=40, tokens_seen=40 * 8 * 100)
    return d


@pytest.fixture(scope="session")
def loaded(tiny_model_dir):
    from node.evals.model import load_model

    return load_model(tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture
def copy_model(tiny_model_dir, tmp_path):
    """A private copy of the tiny model directory (for tests that damage it)."""
    import shutil

    d = tmp_path / "model"
    shutil.copytree(tiny_model_dir, d)
    return d
