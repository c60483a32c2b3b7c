"""Results labs already produced, as ``eval_result`` bodies: lm-eval output folders and
Inspect logs (``tripwire import lm-eval DIR``, ``tripwire import inspect LOG``).

Nothing is re-scored: the values are the tool's own, written as decimal strings, and
``items_root`` commits to the tool's per-sample records (lm-eval's ``samples_*.jsonl``, the
log's samples), so a lab can later prove any single sample without revealing the rest.
The model commitment is over the weight files when ``--model DIR`` is given (the same
commitment ``tripwire eval`` signs); without it the commitment is over the model identity
the tool recorded, and the result's runtime says ``commitment: declared``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.evals.errors import EvalDataError, EvalSpecError
from node.evals.lmeval import _digest, _jsonable, lmeval_suite, lmeval_tasks
from node.evals.model import infer_checkpoint_step, model_commitment
from protocol.canonical import canonical_bytes

_NAME_BAD = re.compile(r"[^A-Za-z0-9._:/-]")


def _name(text: str) -> str:
    s = _NAME_BAD.sub("_", text).lstrip("._:/-") or "task"
    return s[:128]


def _model(model_dir: Path | None, declared: dict[str, Any], checkpoint_step: int | None) -> tuple[str, dict[str, str], int, dict[str, str]]:
    """``(commitment, weight files, step, runtime facts)``."""
    if model_dir is not None:
        if not Path(model_dir).is_dir():
            raise EvalSpecError(f"--model {model_dir}: no such model directory")
        commitment, weights = model_commitment(model_dir)
        step = checkpoint_step if checkpoint_step is not None else infer_checkpoint_step(model_dir)
        return commitment, weights, step, {"commitment": "weights"}
    commitment = _digest({"format": "tripwire-declared-model/1", **declared})
    return commitment, {}, checkpoint_step or 0, {"commitment": "declared"}


def _run(suite: Any, tasks: list[Any], *, model_name: str, commitment: str, weights: dict[str, str], step: int,
         training_flop: str | None, runtime: dict[str, str], started: datetime, finished: datetime) -> Any:
    from node.evals.runner import EvalRun, normalize_flop

    return EvalRun(
        suite=suite, model_name=model_name, commitment=commitment, weight_files=weights, parameters=None,
        checkpoint_step=step, training_flop=normalize_flop(training_flop), tasks=tasks,
        runtime={k: str(v)[:256] for k, v in runtime.items()}, started_at=started, finished_at=finished,
    )


# --- lm-eval output folders --------------------------------------------------------------------


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise EvalDataError(f"{p}: cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise EvalDataError(f"{p}: not JSON: {e}") from e


def _read_jsonl(p: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EvalDataError(f"{p}: cannot read: {e}") from e
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{p}:{i}: not JSON: {e}") from e
        if not isinstance(row, dict):
            raise EvalDataError(f"{p}:{i}: a sample record must be a JSON object")
        rows.append(row)
    return rows


def import_lmeval(
    path: str | Path, *, model_dir: Path | None = None, model_name: str | None = None,
    training_flop: str | None = None, checkpoint_step: int | None = None,
) -> Any:
    """An lm-eval output (a folder holding ``results_*.json`` and ``samples_*.jsonl``, or one
    results file) as an :class:`~node.evals.runner.EvalRun`; the newest results file wins."""
    p = Path(path)
    if p.is_file():
        results_files = [p]
    elif p.is_dir():
        results_files = sorted(p.rglob("results_*.json"), key=lambda f: (f.name, str(f)))
    else:
        raise EvalSpecError(f"{p}: no such lm-eval output folder or results file")
    if not results_files:
        raise EvalDataError(f"{p}: no results_*.json in this folder (is it an lm-eval --output_path?)")
    rf = results_files[-1]
    out = _read_json(rf)
    if not isinstance(out, dict) or not isinstance(out.get("results"), dict) or not isinstance(out.get("configs"), dict):
        raise EvalDataError(f"{rf}: not an lm-eval results file (needs `results` and `configs`)")
    stamp = rf.stem.removeprefix("results_")
    samples: dict[str, list[dict[str, Any]]] = {}
    for task in sorted(out["configs"]):
        sf = rf.parent / f"samples_{task}_{stamp}.jsonl"
        if not sf.is_file():
            raise EvalDataError(
                f"{rf.parent}: no samples_{task}_{stamp}.jsonl: run lm-eval with --log_samples so the result "
                "can commit to its samples"
            )
        samples[task] = _read_jsonl(sf)
    tasks = lmeval_tasks(out, samples)
    cfg: dict[str, Any] = out["config"] if isinstance(out.get("config"), dict) else {}
    declared = {"source": "lm-eval", "model": str(cfg.get("model", "")), "model_args": str(cfg.get("model_args", "")),
                "model_name": str(out.get("model_name", ""))}
    commitment, weights, step, facts = _model(model_dir, declared, checkpoint_step)
    version = str(out.get("lm_eval_version") or "unknown")
    name = ", ".join(sorted(out.get("groups") or {})) or ", ".join(sorted(out["configs"]))
    runtime = {"engine": "lm-eval (imported)", "lm_eval": version, **facts,
               "transformers": str(out.get("transformers_version", "")), "source_file": rf.name}
    when = out.get("date")
    t = datetime.fromtimestamp(float(when), UTC) if isinstance(when, int | float) else datetime.now(UTC)
    label = model_name or str(out.get("model_name") or declared["model_args"] or "model")
    return _run(lmeval_suite(_name(name.split(", ")[0] if "," in name else name), version, out["configs"]), tasks,
                model_name=label[:256], commitment=commitment, weights=weights, step=step,
                training_flop=training_flop, runtime={k: v for k, v in runtime.items() if v}, started=t, finished=t)


# --- Inspect logs -------------------------------------------------------------------------------


def _sha(obj: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(_jsonable(obj))).hexdigest()


def _mean_stderr(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    m = sum(values) / n
    return float((sum((v - m) ** 2 for v in values) / (n - 1) / n) ** 0.5)


_SCORE_VALUE = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        return _SCORE_VALUE.get(v)
    return None


def import_inspect(
    path: str | Path, *, model_dir: Path | None = None, model_name: str | None = None,
    training_flop: str | None = None, checkpoint_step: int | None = None,
) -> Any:
    """An Inspect log (``.eval`` or ``.json``) as an :class:`~node.evals.runner.EvalRun`: one
    task per scorer, its metrics with the log's stderr (or the sample scores' when the log
    has none), ``items_root`` over one record per sample and epoch."""
    from node.evals.runner import ExternalSuite, ExternalTask, TaskRun
    from protocol.merkle import merkle_root

    try:
        from inspect_ai.log import read_eval_log
    except ImportError as e:
        raise EvalSpecError("importing Inspect logs needs the `inspect` extra (pip install 'tripwire[inspect]')") from e
    p = Path(path)
    if not p.is_file():
        raise EvalSpecError(f"{p}: no such Inspect log")
    try:
        log = read_eval_log(str(p))
    except Exception as e:  # inspect raises plain exceptions for unreadable logs
        raise EvalDataError(f"{p}: not a readable Inspect log: {type(e).__name__}: {e}") from e
    if log.status != "success":
        raise EvalDataError(f"{p}: the log's status is {log.status!r}: only finished (success) evals can be imported")
    if log.results is None or not log.results.scores:
        raise EvalDataError(f"{p}: the log holds no scores")
    if not log.samples:
        raise EvalDataError(f"{p}: the log holds no samples: the result could not commit to them")
    ev = log.eval
    samples = sorted(log.samples, key=lambda s: (str(s.id), s.epoch))
    tasks = []
    single = len(log.results.scores) == 1
    for score in log.results.scores:
        tname = _name(ev.task if single else f"{ev.task}/{score.name}")
        recs = []
        values: list[float] = []
        for s in samples:
            sc = (s.scores or {}).get(score.name)
            raw = sc.value if sc is not None else None
            num = _as_number(raw)
            if num is not None:
                values.append(num)
            recs.append({
                "format": "inspect-sample/1", "task": tname, "id": str(s.id), "epoch": int(s.epoch),
                "input_sha256": _sha({"input": s.input if isinstance(s.input, str)
                                      else [m.model_dump(mode="json") for m in s.input]}),
                "target_sha256": _sha({"target": s.target}),
                "score": _jsonable(raw),
                "answer": None if sc is None or sc.answer is None else str(sc.answer)[:1024],
            })
        metrics: dict[str, tuple[float, float]] = {}
        err = score.metrics.get("stderr")
        for mname, metric in sorted(score.metrics.items()):
            if mname == "stderr":
                continue
            v = _as_number(metric.value)
            if v is None:
                continue
            se = float(err.value) if err is not None and isinstance(err.value, int | float) else _mean_stderr(values)
            metrics[_name(mname)] = (v, se)
        if not metrics:
            raise EvalDataError(f"{p}: scorer {score.name!r} has no numeric metric")
        root = merkle_root([canonical_bytes(r) for r in recs]).hex()
        spec = ExternalTask(tname, _digest({"scorer": score.name, "params": score.params, "task": ev.task}), "inspect")
        tasks.append(TaskRun(spec=spec, n=max(1, log.results.completed_samples or len(samples)), metrics=metrics,
                             records=recs, items_root=root, seconds=0.0))
    identity = {
        "task": ev.task, "task_version": ev.task_version, "task_args": ev.task_args,
        "dataset": ev.dataset.model_dump(mode="json"), "solver": ev.solver, "solver_args": ev.solver_args,
        "scorers": [s.model_dump(mode="json") for s in (ev.scorers or [])],
        "config": ev.config.model_dump(mode="json", exclude_none=True),
    }
    suite = ExternalSuite(_name(f"inspect/{ev.task}"), f"inspect task {ev.task_version}"[:64], _digest(identity))
    declared = {"source": "inspect", "model": ev.model, "model_args": _jsonable(ev.model_args)}
    commitment, weights, step, facts = _model(model_dir, declared, checkpoint_step)
    started = _time(log.stats.started_at) if log.stats else None
    finished = _time(log.stats.completed_at) if log.stats else None
    now = datetime.now(UTC)
    runtime = {"engine": "inspect (imported)", "inspect_ai": str((ev.packages or {}).get("inspect_ai", "")),
               "model": ev.model, "epochs": str(len({s.epoch for s in samples})), **facts}
    return _run(suite, tasks, model_name=(model_name or ev.model)[:256], commitment=commitment, weights=weights,
                step=step, training_flop=training_flop, runtime={k: v for k, v in runtime.items() if v},
                started=started or finished or now, finished=finished or started or now)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


__all__ = ["import_inspect", "import_lmeval"]
