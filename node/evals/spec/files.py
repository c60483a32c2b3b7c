"""Reading task and suite files: YAML with lm-eval's ``include:`` chains, data rows, and the
SHA-256 pins that tie a task to the exact bytes of its data."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from node.evals.errors import DatasetDigestError, EvalDataError, EvalSpecError, NativeUnsupportedError

HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: How deep ``include:`` chains may go before the loader refuses the file.
MAX_INCLUDE_DEPTH = 16


def jsonable(v: Any) -> Any:
    """Spec values as canonical-JSON-safe data (floats become decimal strings)."""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def read_yaml(path: Path) -> dict[str, Any]:
    """One YAML mapping from a file (no ``include:`` resolution; see :func:`read_task_yaml`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise EvalSpecError(f"{path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise EvalSpecError(f"{path}: cannot read: {e}") from e
    try:
        doc = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        if "!function" in text:
            raise NativeUnsupportedError(
                f"{path}: lm-eval `!function` hooks run the task's own Python: the native runner does not "
                "reproduce them (use --engine lm-eval or auto)"
            ) from e
        raise EvalSpecError(f"{path}: malformed YAML: {e}") from e
    except yaml.YAMLError as e:
        raise EvalSpecError(f"{path}: malformed YAML: {e}") from e
    if not isinstance(doc, dict):
        raise EvalSpecError(f"{path}: expected a YAML mapping at the top level, got {type(doc).__name__}")
    return doc


def read_task_yaml(path: Path) -> dict[str, Any]:
    """A task file with its ``include:`` chain merged as lm-eval 0.4 merges it.

    Includes resolve relative to the including file; each included file's keys are the
    base, later includes override earlier ones and the including file's own keys win (a
    shallow merge, as lm-eval does). A file met twice is an include cycle.
    """
    return _read_with_includes(Path(path), set(), 0)


def _read_with_includes(path: Path, seen: set[Path], depth: int) -> dict[str, Any]:
    key = path.expanduser().resolve()
    if key in seen:
        raise EvalSpecError(f"{path}: include cycle: the file is met again in its own include chain")
    if depth > MAX_INCLUDE_DEPTH:
        raise EvalSpecError(f"{path}: includes nest deeper than {MAX_INCLUDE_DEPTH} files")
    seen.add(key)
    raw = read_yaml(path)
    if "include" not in raw or "kind" in raw:
        return raw
    includes = raw.pop("include")
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        if not isinstance(inc, str) or not inc:
            raise EvalSpecError(f"{path}: `include:` must name a YAML file (or a list of them), got {inc!r}")
        inc_path = Path(inc) if Path(inc).is_absolute() else key.parent / inc
        if not inc_path.is_file():
            raise EvalSpecError(f"{path}: included file {inc} does not exist (looked for {inc_path})")
        sub = _read_with_includes(inc_path, seen, depth + 1)
        sub.pop("task_list", None)
        merged.update(sub)
    merged.update(raw)
    return merged


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EvalDataError(f"data file {path}: cannot read: {e}") from e
    except UnicodeDecodeError as e:
        raise EvalDataError(f"data file {path}: not UTF-8") from e
    stripped = text.lstrip()
    rows: list[Any]
    try:
        if stripped.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise EvalDataError(f"data file {path}: invalid JSON: {e}") from e
    for n, r in enumerate(rows):
        if not isinstance(r, dict):
            raise EvalDataError(f"data file {path}: row {n + 1} is not a JSON object")
    return rows


def resolve_path(base: Path, p: str) -> Path:
    path = Path(p)
    if path.is_absolute():
        return path
    local = base / path
    return local if local.exists() or not path.exists() else path


def pin_for(pins: dict[str, str], written: object, path: Path, default: str | None = None) -> str | None:
    """The SHA-256 that ``pins`` requires of a data file: by its path as the task file writes
    it, else by its base name, else ``default`` (the task file's own pin)."""
    return pins.get(str(written), pins.get(path.name, default))


def check_pin(path: Path, actual: str, expected: str | None, where: str) -> None:
    if expected is None:
        return
    if not isinstance(expected, str) or not HEX64.match(expected):
        raise EvalSpecError(
            f"{where}: sha256 pin for {path.name} must be 64 lowercase hex digits (quote it in YAML), got {expected!r}"
        )
    if expected != actual:
        raise DatasetDigestError(
            f"data file {path} has SHA-256 {actual}, but {where} pins {expected}; refusing to evaluate on "
            "data other than what the suite names"
        )


def path_value(v: Any, what: str, where: Path) -> str:
    if not isinstance(v, str) or not v:
        raise EvalSpecError(f"{where}: {what} must be a file path, got {v!r}")
    return v


def row_features(docs: list[dict[str, Any]]) -> frozenset[str]:
    keys: set[str] = set()
    for d in docs:
        keys.update(d)
    return frozenset(keys)
