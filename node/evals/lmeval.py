"""lm-evaluation-harness as an eval engine: any lm-eval task, run by lm-eval itself.

``tripwire eval --engine lm-eval`` (or ``auto``, when the native runner refuses a task with
:class:`~node.evals.errors.NativeUnsupportedError`) hands the task (a registry name, a task
YAML, or a group) to ``lm_eval.simple_evaluate`` with sample logging, on lm-eval's HF
backend (or its vLLM backend on GPUs), and converts what lm-eval reports into the same
:class:`~node.evals.runner.EvalRun` the native runner produces. Nothing is recomputed:
the signed values are lm-eval's own numbers written as decimal strings.

What is committed (spec: eval_result):

- suite ``lm-eval/<task>``, version ``lm-eval <version>``, digest = SHA-256 over the
  configs lm-eval resolved for every task it ran (sorted-key JSON), so two labs with the
  same digest ran the same prompts, splits, few-shot settings and metrics;
- per task: the digest of its resolved config, ``n`` (lm-eval's effective sample count),
  every metric of every filter (``acc``, ``exact_match:strict-match``) with its stderr, and
  ``items_root`` over one record per logged sample (doc id, lm-eval's doc/prompt/target
  hashes, the per-sample metric values), in doc order;
- for groups, one task entry per subtask plus the group's aggregate (its ``items_root``
  covers the records of its subtasks).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import platform
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from node.evals.errors import EvalRuntimeError, EvalSpecError
from node.evals.model import infer_checkpoint_step, infer_training_flop, model_commitment
from protocol.canonical import canonical_bytes, decimal_str

ENGINE = "lm-eval"
RECORD_FORMAT = "lm-eval-sample/1"
BACKENDS = ("hf", "vllm")
_log = logging.getLogger(__name__)


class _TaskYAMLLoader(yaml.SafeLoader):
    """A YAML loader that reads lm-eval's ``!function`` tags as plain strings (to find a
    task file's name; lm-eval itself loads the file for the run)."""


_TaskYAMLLoader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix} {getattr(node, 'value', '')}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, bool | int | str) or v is None:
        return v
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _digest(obj: Any) -> str:
    text = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _value(x: Any, what: str) -> float:
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, int | float) and math.isfinite(x):
        return float(x)
    raise EvalRuntimeError(f"lm-eval reported {what} = {x!r}, not a finite number: nothing was signed")


def _dec(x: float) -> str:
    return decimal_str(x, places=6)


def resolve_task(task: str | Path) -> tuple[str, Path | None]:
    """``(task name, include dir)`` for a task YAML path, or ``(name, None)`` for a registry name."""
    p = Path(task)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise EvalSpecError(f"{p}: no such task file")
        try:
            raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_TaskYAMLLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as e:
            raise EvalSpecError(f"{p}: malformed YAML: {e}") from e
        if not isinstance(raw, dict):
            raise EvalSpecError(f"{p}: not an lm-eval task file (a YAML mapping with `task:` or `group:`)")
        name = raw.get("task") if isinstance(raw.get("task"), str) else raw.get("group")
        if not isinstance(name, str) or not name:
            raise EvalSpecError(f"{p}: an lm-eval task file needs a `task:` (or `group:`) name")
        return name, p.resolve().parent
    name = str(task)
    if not name or "/" in name:
        raise EvalSpecError(f"{task}: neither a task file nor an lm-eval task name")
    return name, None


def _folder_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file below ``folder`` with its size and modification time: changes when a task
    file there is added, removed or edited."""
    out = []
    for p in folder.rglob("*"):
        try:
            st = p.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):  # from the stat already taken, not a second one
            out.append((str(p.relative_to(folder)), st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


#: The TaskManager attributes the shared-registry build sets (lm-eval 0.4.13's constructor
#: sets the same); a release that names them otherwise gets the plain constructor.
_MANAGER_FIELDS = ("_index", "_all_tasks", "_all_subtasks", "_all_groups", "_all_tags")


@functools.cache
def _registry_index() -> dict[str, Any]:
    """lm-eval's own task registry (its ``tasks`` folder, some 14,000 names), indexed once per
    process: the index is what takes seconds, and it is the same for every task folder."""
    from lm_eval.tasks import TaskManager

    index: dict[str, Any] = TaskManager().task_index
    return index


def _build_task_manager(include: str | None) -> Any:
    """``TaskManager(include_path=include)``, with lm-eval's registry indexed once per process
    (``include`` None: the registry alone).

    lm-eval indexes each path on its own and then merges them in order, a later path's
    name replacing an earlier one's (with a warning); this does the same with the cached
    registry index and a fresh index of ``include`` alone, then sets the merged index and its
    listings on that manager, as lm-eval's constructor does (lm-eval is pinned; a release
    without those attributes gets its own build). The result equals lm-eval's own build
    (tests/evals/test_lmeval_engine.py compares every name, entry and listing)."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=include, include_defaults=False)
    if not all(hasattr(tm, f) for f in _MANAGER_FIELDS):
        return TaskManager(include_path=include)
    index = dict(_registry_index())  # a copy: the cached registry is never changed
    for name, entry in tm.task_index.items():
        if name in index:
            _log.warning("Task '%s' from %s overrides existing task from %s",
                         name, entry.yaml_path, index[name].yaml_path)
        index[name] = entry
    kinds: dict[str, list[str]] = {}
    for name, entry in index.items():
        kinds.setdefault(entry.kind.name, []).append(name)
    tm._index = index
    tm._all_tasks = sorted(index)
    tm._all_subtasks = sorted(kinds.get("TASK", []) + kinds.get("PY_TASK", []))
    tm._all_groups = sorted(kinds.get("GROUP", []))
    tm._all_tags = sorted(kinds.get("TAG", []))
    return tm


@functools.lru_cache(maxsize=8)
def _cached_task_manager(include: str | None, _stamp: tuple[tuple[str, int, int], ...]) -> Any:
    return _build_task_manager(include)


def task_manager(include: Path | None) -> Any:
    """lm-eval's ``TaskManager`` over its registry and ``include`` (a task file's folder),
    built once per process while that folder's files are unchanged, over a registry index
    built once per process: indexing lm-eval's registry takes seconds, and a suite of
    lm-eval tasks in several folders would pay it for every task. The index only maps names
    to files; lm-eval reads each task's files anew for every run."""
    if include is None:
        return _cached_task_manager(None, ())
    return _cached_task_manager(str(include), _folder_stamp(include))


def _metrics(res: dict[str, Any], where: str) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for key, v in sorted(res.items()):
        if "," not in key or "_stderr," in key or key in ("alias",):
            continue
        metric, flt = key.split(",", 1)
        if isinstance(v, str):  # e.g. "N/A" for a metric without a value
            continue
        name = metric if flt == "none" else f"{metric}:{flt}"
        err = res.get(f"{metric}_stderr,{flt}")
        stderr = 0.0 if err is None or isinstance(err, str) else _value(err, f"{where} {name} stderr")
        out[name] = (_value(v, f"{where} {name}"), stderr)
    if not out:
        raise EvalRuntimeError(f"lm-eval reported no numeric metric for {where}: nothing was signed")
    return out


def _records(task: str, samples: list[dict[str, Any]], metric_names: list[str]) -> list[dict[str, Any]]:
    recs = []
    for s in sorted(samples, key=lambda s: (int(s.get("doc_id", 0)), str(s.get("filter", "")))):
        scores = {}
        for m in metric_names:
            base = m.split(":", 1)[0]
            if base in s and isinstance(s[base], bool | int | float) and math.isfinite(float(s[base])):
                scores[base] = _dec(float(s[base]))
        recs.append({
            "format": RECORD_FORMAT,
            "task": task,
            "doc_id": int(s.get("doc_id", 0)),
            "filter": str(s.get("filter", "none")),
            "doc_hash": str(s.get("doc_hash", "")),
            "prompt_hash": str(s.get("prompt_hash", "")),
            "target_hash": str(s.get("target_hash", "")),
            "scores": scores,
        })
    return recs


def _parameters(lm: Any) -> int | None:
    model = getattr(lm, "model", None)
    try:
        return int(sum(p.numel() for p in model.parameters())) if model is not None else None
    except Exception:  # a backend without torch parameters (vLLM)
        return None


def _leaves(group: str, subtasks: dict[str, list[str]], tasks: dict[str, Any], seen: frozenset[str] = frozenset()) -> list[str]:
    """The tasks under ``group``, through nested groups (mmlu → mmlu_stem → subjects)."""
    out: list[str] = []
    for t in subtasks.get(group, []):
        if t in tasks:
            out.append(t)
        elif t in subtasks and t not in seen:
            out.extend(_leaves(t, subtasks, tasks, seen | {group}))
    return out


def lmeval_tasks(out: dict[str, Any], samples: dict[str, list[dict[str, Any]]], seconds: float = 0.0) -> list[Any]:
    """lm-eval's output (``simple_evaluate``'s dict or a ``results_*.json``) as TaskRuns:
    lm-eval's metrics and stderrs, its effective sample counts, ``items_root`` over the
    sample records of each task, and one entry per group with its aggregate."""
    from node.evals.runner import ExternalTask, TaskRun
    from protocol.merkle import merkle_root

    name = ", ".join(sorted(out.get("results", {}))) or "?"
    if not out or "results" not in out:
        raise EvalRuntimeError(f"lm-eval returned no results for {name!r} (a non-zero rank?)")
    configs = out.get("configs", {})
    n_samples = out.get("n-samples", {})
    tasks: list[TaskRun] = []
    records_of: dict[str, list[dict[str, Any]]] = {}
    for tname in sorted(out["results"]):
        if tname not in configs:
            continue  # a group: below
        metrics = _metrics(out["results"][tname], tname)
        recs = _records(tname, samples.get(tname, []), list(metrics))
        records_of[tname] = recs
        n = int(n_samples.get(tname, {}).get("effective", len(recs) or 1))
        root = merkle_root([canonical_bytes(r) for r in recs]).hex() if recs else hashlib.sha256(b"").hexdigest()
        kind = str(configs[tname].get("output_type", "lm-eval"))
        tasks.append(TaskRun(spec=ExternalTask(tname, _digest(configs[tname]), kind), n=n, metrics=metrics,
                             records=recs, items_root=root, seconds=seconds))
    for gname, res in sorted((out.get("groups") or {}).items()):
        subs = sorted(set(_leaves(gname, out.get("group_subtasks", {}), records_of)))
        metrics = _metrics(res, gname)
        recs = [r for t in sorted(subs) for r in records_of[t]]
        root = merkle_root([canonical_bytes(r) for r in recs]).hex() if recs else hashlib.sha256(b"").hexdigest()
        n = sum(t.n for t in tasks if t.spec.name in subs) or 1
        tasks.append(TaskRun(spec=ExternalTask(gname, _digest({t: configs[t] for t in sorted(subs)}), "group"),
                             n=n, metrics=metrics, records=[], items_root=root, seconds=seconds))
    if not tasks:
        raise EvalRuntimeError(f"lm-eval ran no task for {name!r}: nothing was signed")
    if len(tasks) > 256:
        raise EvalSpecError(f"{name!r} has {len(tasks)} tasks and groups; a signed result holds at most 256")
    return tasks


def lmeval_suite(name: str, version: str, configs: dict[str, Any]) -> Any:
    from node.evals.runner import ExternalSuite

    return ExternalSuite(f"lm-eval/{name}"[:128], f"lm-eval {version}"[:64],
                         _digest({t: configs[t] for t in sorted(configs)}))


def run_lmeval(
    model_dir: str | Path,
    task: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int | str = "auto",
    limit: int | None = None,
    training_flop: str | None = None,
    checkpoint_step: int | None = None,
    model_name: str | None = None,
    backend: str = "hf",
    num_fewshot: int | None = None,
) -> Any:
    """Run ``task`` through ``lm_eval.simple_evaluate`` on a local checkpoint; an :class:`EvalRun`."""
    try:
        import lm_eval
    except ImportError as e:
        raise EvalSpecError(
            "this task needs the lm-eval engine: install the `lmeval` extra (pip install 'tripwire[lmeval]')"
        ) from e
    import torch

    from node.evals.runner import EvalRun, normalize_flop

    if backend not in BACKENDS:
        raise EvalSpecError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if limit is not None and limit < 1:
        raise EvalSpecError(f"--limit must be >= 1, got {limit}")
    mdir = Path(model_dir)
    if not (mdir / "config.json").is_file():
        raise EvalSpecError(f"--model {mdir}: not a Hugging Face model directory (no config.json)")
    name, include = resolve_task(task)
    flop = normalize_flop(training_flop)
    commitment, weights = model_commitment(mdir)
    started = datetime.now(UTC)
    dev = device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    dt = dtype if dtype != "auto" else ("bfloat16" if dev.startswith("cuda") else "float32")
    tm = task_manager(include)
    if name not in tm.all_tasks:
        where = f" (looked in lm-eval's registry and {include})" if include else " in lm-eval's registry"
        raise EvalSpecError(f"lm-eval task {name!r} not found{where}")
    args = f"pretrained={mdir},dtype={dt}"
    if backend == "hf":
        from lm_eval.models.huggingface import HFLM

        lm: Any = HFLM(pretrained=str(mdir), dtype=dt, device=dev, batch_size=batch_size)
    else:
        lm = "vllm"
        args += ",gpu_memory_utilization=0.8"
    t0 = time.perf_counter()
    try:
        out = lm_eval.simple_evaluate(
            model=lm, model_args=args if backend == "vllm" else None, tasks=[name], num_fewshot=num_fewshot,
            batch_size=batch_size, device=dev, limit=limit, log_samples=True, task_manager=tm,
            random_seed=0, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234,
        )
    except (KeyError, ValueError, FileNotFoundError, TypeError) as e:
        raise EvalSpecError(f"lm-eval could not run task {name!r}: {type(e).__name__}: {e}") from e
    seconds = time.perf_counter() - t0
    tasks = lmeval_tasks(out, out.get("samples", {}), seconds)
    params = _parameters(lm) if backend == "hf" else None
    step = checkpoint_step if checkpoint_step is not None else infer_checkpoint_step(mdir)
    if flop is None and params:
        inferred = infer_training_flop(mdir, params)
        flop = str(inferred) if inferred is not None else None
    import transformers

    facts = {
        "engine": ENGINE,
        "lm_eval": str(lm_eval.__version__),
        "backend": backend,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": (torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"cpu ({platform.machine()})")[:256],
        "dtype": dt,
        "batch_size": str(batch_size),
    }
    if num_fewshot is not None:
        facts["num_fewshot"] = str(num_fewshot)
    suite = lmeval_suite(name, str(lm_eval.__version__), out.get("configs", {}))
    return EvalRun(
        suite=suite, model_name=(model_name or mdir.resolve().name), commitment=commitment, weight_files=weights,
        parameters=params, checkpoint_step=step, training_flop=flop, tasks=tasks, runtime=facts,
        started_at=started, finished_at=datetime.now(UTC), limit=limit,
    )


__all__ = ["ENGINE", "lmeval_suite", "lmeval_tasks", "resolve_task", "run_lmeval"]
