"""JSON Schemas in specs/schemas/ are generated from the models and must be current."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

SCHEMAS = Path(__file__).resolve().parents[2] / "specs" / "schemas"


def test_schemas_are_current(schemas_gen: ModuleType) -> None:
    files = schemas_gen.schema_files()
    expected = {"statement", "envelope", "roster", "equivocation-proof", "certificate", "checkpoint", "pause-state", "policy"}
    expected |= {f"body-{k}" for k in ("eval-result", "alert", "pause-proposal", "vote",
                                        "pause-certificate", "resume-proposal", "roster-update", "note",
                                        "training-plan", "safety-case", "forecast")}
    assert {n.removesuffix(".schema.json") for n in files} == expected
    for name, data in files.items():
        assert (SCHEMAS / name).read_bytes() == data, f"{name} is stale: run python specs/schemas/generate.py"


def test_schemas_bound_every_string_and_array(schemas_gen: ModuleType) -> None:
    """Every string, array and map in a protocol schema has a size bound (spec §2.4)."""

    def walk(node: object, path: str, out: list[str]) -> None:
        if isinstance(node, dict):
            t = node.get("type")
            if t == "string" and not ({"maxLength", "enum", "const", "pattern"} & node.keys()):
                out.append(path)
            if t == "array" and "maxItems" not in node:
                out.append(path)
            if t == "object" and "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
                if "maxProperties" not in node:
                    out.append(path)
            for k, v in node.items():
                walk(v, f"{path}/{k}", out)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}", out)

    # Only the protocol's own schemas; other files in specs/schemas/ belong to other formats.
    for name, data in schemas_gen.schema_files().items():
        unbounded: list[str] = []
        walk(json.loads(data), name, unbounded)
        assert not unbounded, unbounded
