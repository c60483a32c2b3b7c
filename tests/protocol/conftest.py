"""Shared fixtures: the deterministic vector network from specs/vectors/generate.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(rel: str, name: str) -> ModuleType:
    """Import a script under specs/ (not a package) by path, once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def gen() -> ModuleType:
    return load_script("specs/vectors/generate.py", "tripwire_vectors_generate")


@pytest.fixture(scope="session")
def check() -> ModuleType:
    return load_script("specs/vectors/check.py", "tripwire_vectors_check")


@pytest.fixture(scope="session")
def world(gen: ModuleType) -> Any:
    return gen.build_world()


@pytest.fixture(scope="session")
def schemas_gen() -> ModuleType:
    return load_script("specs/schemas/generate.py", "tripwire_schemas_generate")
