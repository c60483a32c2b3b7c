"""The import graph is the architecture (docs/architecture.md): layers point one way, no cycles.

Read from the source with ``ast`` (module-level imports only; an import inside a function
is a deliberate lazy edge and says so where it is made).
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "node", "reports")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in sorted((REPO / pkg).rglob("*.py")):
            if "migrations" in f.parts:
                continue
            parts = f.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                # "from pkg import submodule" depends on the submodule; any other name on pkg itself.
                graph[m].update(s for s in subs if s in mods)
                if node.module in mods and any(s not in mods for s in subs):
                    graph[m].add(node.module)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                found.append([*stack[stack.index(v):], v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def _is_package_edge(cycle: list[str]) -> bool:
    # A package's __init__ re-exporting its own submodules, which import siblings through
    # the package name, is how Python packages work, not a cycle between modules.
    return all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in itertools.pairwise(cycle))


def test_no_import_cycles_between_modules() -> None:
    cycles = [c for c in _cycles(_graph()) if not _is_package_edge(c)]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("protocol", ("node", "reports")),
        ("reports", ("node.store", "node.api", "node.net", "node.pause", "node.cli", "node.demo", "node.evals")),
        ("node.store", ("node.api", "node.net", "node.pause", "node.cli", "node.demo", "reports")),
        ("node.home", ("node.api", "node.net", "node.pause", "node.cli", "node.demo")),
        ("node.demo", ("node.cli",)),
    ],
    ids=["protocol_is_pure", "reports_read_no_store", "store_below_services", "home_below_services",
         "demo_calls_apis_not_the_cli"],
)
def test_layers_import_downwards_only(layer: str, forbidden: tuple[str, ...]) -> None:
    bad = sorted(
        f"{m} -> {t}"
        for m, targets in _graph().items()
        if m == layer or m.startswith(layer + ".")
        for t in targets
        if any(t == f or t.startswith(f + ".") for f in forbidden)
    )
    assert not bad, "imports against the layering: " + ", ".join(bad)


def test_reports_import_no_node_module() -> None:
    # A regulator's verifier (reports) stands on protocol alone. The synthetic test network,
    # which finds the shipped demo policy through the node's specs locator, is test support
    # (tests/support/synthetic.py), not part of the package.
    bad = sorted(
        f"{m} -> {t}"
        for m, targets in _graph().items()
        if (m == "reports" or m.startswith("reports."))
        for t in targets
        if t == "node" or t.startswith("node.")
    )
    assert not bad, "reports modules importing the node: " + ", ".join(bad)


def test_the_graph_sees_the_packages() -> None:
    # Guards the test itself: an empty or mis-rooted graph would pass everything above.
    g = _graph()
    assert "protocol.forecast" in g and "protocol.numeric" in g["protocol.forecast"]
    assert "reports.render" in g and "reports.numbers" in g["reports.render"]
