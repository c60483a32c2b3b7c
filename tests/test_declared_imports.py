"""Every third-party module that protocol/, node/ and reports/ import is declared, in the right place.

A module imported by the core (anything outside ``node/evals``) must come from a core
dependency, so ``pip install tripwire`` imports it; ``node/evals``, and imports inside
functions anywhere (reached only by the commands that need them), may also use the
``evals``, ``lmeval``, ``inspect``, ``vllm`` and ``postgres`` extras. A private module (``typer._click``) is never
imported. Distributions are found from import names with
``importlib.metadata.packages_distributions()`` on the environment the tests run in.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"protocol", "node", "reports", "tripwire_specs", "specs", "bench", "tests"}
# The extras whose modules node/evals (and lazy imports elsewhere) may use.
EVAL_EXTRAS = ("evals", "lmeval", "inspect", "vllm")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert m, req
    return _norm(m.group(1))


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {k: {_requirement_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    return core, extras


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(dotted module, line, lazy) for every absolute import in ``path``.

    ``lazy``: inside a function, so it runs only when that function is called (the optional
    paths); anything else runs on ``import`` of the module.
    """
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno, lazy) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, node.lineno, lazy))
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False)
    return out


def _sources() -> list[Path]:
    return sorted(p for d in ("protocol", "node", "reports") for p in (REPO / d).rglob("*.py"))


def _is_eval_module(path: Path) -> bool:
    return path.relative_to(REPO).parts[:2] == ("node", "evals")


def test_every_third_party_import_is_declared() -> None:
    core, extras = _declared()
    dists = importlib.metadata.packages_distributions()
    stdlib = sys.stdlib_module_names
    problems: list[str] = []
    optional = set().union(*(extras.get(x, set()) for x in (*EVAL_EXTRAS, "postgres")))
    for path in _sources():
        for module, line, lazy in _imports(path):
            # node/evals is the evals extra's code; elsewhere only a call may reach an extra.
            allowed = core | optional if (lazy or _is_eval_module(path)) else core
            top = module.split(".")[0]
            where = f"{path.relative_to(REPO)}:{line}"
            if any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[1:]) \
                    and top not in FIRST_PARTY and top not in stdlib:
                problems.append(f"{where}: imports the private module {module}")
            if top in stdlib or top in FIRST_PARTY or top == "__future__":
                continue
            providers = {_norm(d) for d in dists.get(top, [])}
            if not providers:
                # Not installed here: it must still be declared under its own name somewhere.
                if _norm(top) not in allowed:
                    problems.append(f"{where}: {top} is not installed and not declared")
                continue
            if not providers & allowed:
                problems.append(f"{where}: {top} (from {sorted(providers)}) is not a declared dependency here")
    assert not problems, "\n".join(problems)


def test_core_does_not_depend_on_torch() -> None:
    core, extras = _declared()
    heavy = {"torch", "transformers", "tokenizers", "safetensors", "accelerate", "lm-eval", "inspect-ai", "vllm"}
    assert not core & heavy, f"the core install would pull {sorted(core & heavy)}"
    assert {"torch", "transformers"} <= extras["evals"]
    for extra in ("evals", "lmeval", "inspect", "vllm", "postgres", "test"):
        assert extra in extras, f"missing extra {extra}"


@pytest.mark.parametrize("extra", ["lmeval", "inspect", "vllm"])
def test_engine_extras_bring_the_model_stack(extra: str) -> None:
    # Running an engine needs a model: each engine extra pulls evals' stack.
    _, extras = _declared()
    assert any(r.startswith("tripwire") for r in extras[extra]) or {"torch"} <= extras[extra]
