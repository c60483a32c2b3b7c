"""Loading a task or a suite file into validated models, and the changes a command line may
make to a loaded task."""

from __future__ import annotations

from pathlib import Path

from node.evals.errors import DatasetDigestError, EvalSpecError
from node.evals.spec.files import path_value, read_task_yaml, read_yaml, resolve_path
from node.evals.spec.lmeval_format import load_lmeval_task, unsupported
from node.evals.spec.models import SuiteSpec, TaskSpec, fields_of, revalidated
from node.evals.spec.tripwire_format import load_tripwire_task


def load_task(path: str | Path, *, pins: dict[str, str] | None = None, name: str | None = None) -> TaskSpec:
    """Load and validate a task file (Tripwire or lm-evaluation-harness format).

    ``pins`` maps data file names (as written, or their base names) to SHA-256 digests
    the caller (a suite) requires; a mismatch raises :class:`DatasetDigestError`.
    ``name`` (a suite's ``name:``) renames the task.
    """
    p = Path(path)
    raw = read_task_yaml(p)
    if "kind" in raw:
        spec = load_tripwire_task(p, raw, pins or {})
    elif "group" in raw and "output_type" not in raw:
        # An lm-eval group file (mmlu_stem: `group:`, a `task:` list, aggregate_metric_list).
        raise unsupported(p, f"lm-eval group {raw['group']!r} (native runs single tasks)")
    elif "output_type" in raw or "dataset_path" in raw:
        spec = load_lmeval_task(p, raw, pins or {})
    else:
        raise EvalSpecError(f"{p}: not a task file (needs `kind:` or lm-eval's `output_type:`)")
    if name:
        spec = revalidated(spec, f"{p} (as the suite names it)", {}, name=name)
    return spec


def load_suite(path: str | Path) -> SuiteSpec:
    """Load a suite file; task paths resolve relative to it, pins override task pins."""
    p = Path(path)
    raw = read_yaml(p)
    unknown = set(raw) - {"suite", "version", "description", "tasks"}
    if unknown:
        raise EvalSpecError(f"{p}: unknown suite keys {sorted(unknown, key=str)}")
    entries = raw.get("tasks")
    if not isinstance(entries, list):
        raise EvalSpecError(f"{p}: `tasks:` must be a non-empty list")
    tasks = []
    for n, e in enumerate(entries):
        if isinstance(e, str):
            e = {"path": e}
        if not isinstance(e, dict) or "path" not in e:
            raise EvalSpecError(f"{p}: tasks[{n}] needs `path:`")
        extra = set(e) - {"path", "sha256", "name", "digest"}
        if extra:
            raise EvalSpecError(f"{p}: tasks[{n}] has unknown keys {sorted(extra, key=str)}")
        pins = e.get("sha256") or {}
        if not isinstance(pins, dict):
            raise EvalSpecError(f"{p}: tasks[{n}].sha256 must map data file names to digests")
        t = load_task(resolve_path(p.parent, path_value(e["path"], f"tasks[{n}].path", p)), pins=pins, name=e.get("name"))
        if e.get("digest") is not None and e["digest"] != t.digest:
            raise DatasetDigestError(
                f"{p}: task {t.name} has digest {t.digest}, but the suite pins {e['digest']} "
                "(its definition or data changed)"
            )
        tasks.append(t)
    version = raw.get("version")
    with fields_of(p, {"id": "suite"}):
        return SuiteSpec.model_validate(dict(
            id=raw.get("suite"),
            # A bare YAML integer is a version as written (`version: 2`).
            version=str(version) if isinstance(version, int) and not isinstance(version, bool) else version,
            source=p,
            tasks=tasks,
            description=str(raw.get("description", "")),
        ))


def override_num_fewshot(spec: TaskSpec, n: int) -> TaskSpec:
    """``--num-fewshot N`` on an lm-eval task file, with lm-eval's rule (``simple_evaluate``'s
    ``num_fewshot``): a new task whose count is ``n``, unless the file sets ``num_fewshot: 0``,
    which lm-eval keeps (wmdp, truthfulqa): then ``spec`` itself. ``spec`` is never changed;
    ``n`` passes the checks a loaded ``num_fewshot`` does either way."""
    if spec.format != "lm-eval":
        raise EvalSpecError(
            f"{spec.source}: --num-fewshot overrides an lm-eval task's few-shot count; a Tripwire task file "
            "sets num_fewshot itself"
        )
    new = revalidated(spec, f"{spec.source} (--num-fewshot)", num_fewshot=n)
    return spec if spec.num_fewshot_configured == 0 else new


def single_task_suite(task: TaskSpec) -> SuiteSpec:
    """A one-task suite for ``--task``: id is the task name, version ``task``."""
    return SuiteSpec(id=task.name, version="task", source=task.source, tasks=[task])
