"""Run tasks and suites on a local checkpoint; produce the --out document and the signed body.

Flow per task: build prompts (seeded few-shot) → score pending items in blocks (resuming
from a cache of finished items if given) → per-item records (canonical JSON, no floats) →
metrics with standard errors → ``items_root``, the RFC 9162 Merkle root over the JCS bytes
of the records in item order. Under ``torchrun`` each rank scores its shard and rank 0
merges; only rank 0 returns results.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from node.evals import distributed
from node.evals.errors import EvalRuntimeError, EvalSpecError, SigningUnavailableError
from node.evals.metrics import argmax_first, auroc, bootstrap_stderr, mean_and_stderr, pass_at_k, softmax
from node.evals.model import (
    LoadedModel,
    infer_checkpoint_step,
    infer_training_flop,
    load_model,
    runtime_facts,
)
from node.evals.spec import SuiteSpec, TaskSpec, load_suite, load_task, prompts, read_yaml, single_task_suite
from protocol.canonical import canonical_bytes, decimal_str, format_time, to_decimal
from protocol.errors import SchemaError

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

#: Items scored between cache flushes (and progress updates for slow kinds).
BLOCK = 256
RECORD_FORMAT = "tripwire-item/1"


def _dec(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        raise EvalRuntimeError(f"a score is {x}; the model produced non-finite log-probabilities")
    return decimal_str(x, places=6)


def _sha(obj: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(obj)).hexdigest()


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalTask:
    """The identity of a task another engine ran (lm-eval): what a result names and commits."""

    name: str
    digest: str
    kind: str


@dataclass(frozen=True)
class ExternalSuite:
    """The identity of a suite another engine ran: id, version and the digest of its configs."""

    id: str
    version: str
    digest: str


@dataclass
class TaskRun:
    """One task's outcome: metrics (float, for people), records (committed), timing."""

    spec: TaskSpec | ExternalTask
    n: int
    metrics: dict[str, tuple[float, float]]
    records: list[dict[str, Any]]
    items_root: str
    seconds: float

    def metrics_json(self) -> dict[str, dict[str, str]]:
        return {k: {"value": _dec(v), "stderr": _dec(s)} for k, (v, s) in self.metrics.items()}


@dataclass
class EvalRun:
    """A finished suite run: what ``--out`` writes and what ``--sign`` signs."""

    suite: SuiteSpec | ExternalSuite
    model_name: str
    commitment: str
    weight_files: dict[str, str]
    parameters: int | None
    checkpoint_step: int
    training_flop: str | None
    tasks: list[TaskRun]
    runtime: dict[str, str]
    started_at: datetime
    finished_at: datetime
    limit: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_body(self) -> dict[str, Any]:
        """The ``eval_result`` body (spec: eval_result), canonical-JSON safe (no floats)."""
        if self.training_flop is None:
            raise SigningUnavailableError(
                "training compute is unknown (no trainer_state.json with tokens seen): pass --training-flop"
            )
        body = {
            "suite": {"id": self.suite.id, "version": self.suite.version, "digest": self.suite.digest},
            "model": {
                "name": self.model_name[:256],
                "commitment": self.commitment,
                "checkpoint_step": self.checkpoint_step,
                "training_flop": self.training_flop,
                "parameters": self.parameters,
            },
            "tasks": [
                {"name": t.spec.name, "digest": t.spec.digest, "n": t.n, "metrics": t.metrics_json(), "items_root": t.items_root}
                for t in self.tasks
            ],
            "runtime": dict(self.runtime),
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
        }
        canonical_bytes(body)  # refuses floats and unsafe integers before anyone signs it
        return body

    def to_result_json(self) -> dict[str, Any]:
        """The ``--out`` document: the body's facts plus what helps people read them."""
        return {
            "format": "tripwire-eval-run/1",
            "suite": {"id": self.suite.id, "version": self.suite.version, "digest": self.suite.digest},
            "model": {
                "name": self.model_name,
                "commitment": self.commitment,
                "weight_files": self.weight_files,
                "parameters": self.parameters,
                "checkpoint_step": self.checkpoint_step,
                "training_flop": self.training_flop,
            },
            "tasks": {
                t.spec.name: {
                    "n": t.n,
                    "digest": t.spec.digest,
                    "kind": t.spec.kind,
                    "items_root": t.items_root,
                    "metrics": t.metrics_json(),
                    "seconds": decimal_str(t.seconds, places=3),
                    "items_per_second": decimal_str(t.n / t.seconds if t.seconds > 0 else 0.0, places=2),
                }
                for t in self.tasks
            },
            "runtime": dict(self.runtime),
            "limit": self.limit,
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
        }

    def sample_lines(self) -> list[bytes]:
        """The committed per-item records, one JCS line each (the ``--samples`` file)."""
        return [canonical_bytes(r) for t in self.tasks for r in t.records]


# --- progress -----------------------------------------------------------------------------


class _Progress:
    """A rich progress bar with items/s and ETA on stderr; silent when disabled or not rank 0."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and distributed.is_main()
        self._p: RichProgress | None = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                Task,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            class Rate(ProgressColumn):
                def render(self, task: Task) -> Text:
                    return Text(f"{task.speed:.1f} items/s" if task.speed else "- items/s")

            self._p = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), TextColumn("ETA"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )
            self._p.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._p is not None:
            self._p.__exit__(exc_type, exc, tb)

    def task(self, name: str, total: int) -> Callable[[int], None]:
        if self._p is None:
            return lambda n: None
        tid = self._p.add_task(name, total=total)
        p = self._p
        return lambda n: p.advance(tid, n)


# --- the resume cache ---------------------------------------------------------------------


class _Cache:
    """Finished items' raw results, appended per block, keyed by everything that affects them."""

    def __init__(self, cache_dir: str | Path | None, key: dict[str, Any]) -> None:
        self.path: Path | None = None
        self.done: dict[int, Any] = {}
        if cache_dir is None:
            return
        rank, size, _ = distributed.world()
        h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        suffix = f"-rank{rank}of{size}" if size > 1 else ""
        d = Path(cache_dir)
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / f"{key['task']}-{h}{suffix}.jsonl"
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self.done[int(row["i"])] = row["r"]
                except (ValueError, KeyError, TypeError):
                    break  # a torn last line from an interrupted run; everything before it is good

    def add(self, results: dict[int, Any]) -> None:
        if self.path is None or not results:
            return
        with self.path.open("a") as f:
            for i in sorted(results):
                f.write(json.dumps({"i": i, "r": results[i]}) + "\n")


# --- tasks ----------------------------------------------------------------------------------


def _batch(lm: LoadedModel, batch_size: int | str) -> tuple[int, bool]:
    if batch_size == "auto":
        return (256 if lm.device.type == "cuda" else 32), True
    try:
        bs = int(batch_size)
    except (TypeError, ValueError) as e:
        raise EvalSpecError(f"batch size must be a positive integer or 'auto', got {batch_size!r}") from e
    if bs < 1:
        raise EvalSpecError(f"batch size must be a positive integer or 'auto', got {batch_size!r}")
    return bs, False


def _score_mc(lm: LoadedModel, spec: TaskSpec, docs: list[dict[str, Any]], ctxs: list[str], idx: list[int],
              bs: int, auto: bool, shared_prefix: bool, prog: Callable[[int], None]) -> dict[int, Any]:
    from node.evals.scoring import Scorer, encode_pair_list

    tok = lm.tokenizer
    reqs = []
    for i in idx:
        if spec.kind == "multiple_choice":
            conts = [spec.target_delimiter + c for c in prompts.choices(spec, docs[i])]
        else:
            conts = [prompts.continuation(spec, docs[i])]
        reqs.append(encode_pair_list(tok, ctxs[i], conts))
    scorer = Scorer(lm.model, device=lm.input_device, max_length=lm.max_length, pad_id=tok.pad_token_id)
    fn = scorer.score_shared if shared_prefix else scorer.score_plain
    scores = fn(reqs, bs, auto=auto, progress=prog)
    return {
        i: {"lls": [s.logprob for s in sc], "greedy": [s.greedy for s in sc], "ntok": [s.n_tokens for s in sc]}
        for i, sc in zip(idx, scores, strict=True)
    }


def _score_gen(lm: LoadedModel, spec: TaskSpec, docs: list[dict[str, Any]], ctxs: list[str], idx: list[int],
               bs: int, auto: bool, prog: Callable[[int], None]) -> dict[int, Any]:
    from node.evals.generation import generate_all

    outs = generate_all(lm, [ctxs[i] for i in idx], spec.generation, batch_size=bs, auto=auto, progress=prog, index_base=idx)
    return {i: {"outputs": o} for i, o in zip(idx, outs, strict=True)}


def _score_probe(lm: LoadedModel, spec: TaskSpec, docs: list[dict[str, Any]], ctxs: list[str], idx: list[int],
                 bs: int, auto: bool, prog: Callable[[int], None]) -> dict[int, Any]:
    from node.evals.probes import probe_scores

    assert spec.probe is not None
    scores = probe_scores(lm, [ctxs[i] for i in idx], spec.probe, batch_size=bs, auto=auto, progress=prog)
    return {i: {"score": s} for i, s in zip(idx, scores, strict=True)}


def _records_and_metrics(spec: TaskSpec, docs: list[dict[str, Any]], ctxs: list[str], raw: dict[int, Any]
                         ) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float]]]:
    n = len(docs)
    per: dict[str, list[float]] = {}
    records: list[dict[str, Any]] = []
    probe_scores: list[float] = []
    probe_labels: list[int] = []
    for i in range(n):
        doc, r = docs[i], raw[i]
        vals: dict[str, float] = {}
        rec: dict[str, Any] = {"format": RECORD_FORMAT, "task": spec.name, "index": i}
        if spec.kind == "multiple_choice":
            choices = prompts.choices(spec, doc)
            gold = prompts.gold_index(spec, doc, choices, i)
            lls = r["lls"]
            probs = softmax(lls)
            pred = argmax_first(lls)
            pred_norm = argmax_first([ll / len(c) if c else ll for ll, c in zip(lls, choices, strict=True)])
            vals = {
                "acc": float(pred == gold),
                "acc_norm": float(pred_norm == gold),
                "logprob_correct": lls[gold],
                "prob_correct": probs[gold],
                "brier": sum((p - (1.0 if k == gold else 0.0)) ** 2 for k, p in enumerate(probs)),
            }
            rec |= {"input_sha256": _sha({"context": ctxs[i], "choices": choices}), "gold": gold, "pred": pred,
                    "logprobs": [_dec(x) for x in lls]}
        elif spec.kind == "loglikelihood":
            target = prompts.continuation(spec, doc)  # exactly the scored text
            ll, greedy, ntok = r["lls"][0], r["greedy"][0], r["ntok"][0]
            vals = {"acc": float(greedy), "logprob": ll, "logprob_per_token": ll / ntok}
            rec |= {"input_sha256": _sha({"context": ctxs[i], "target": target}), "logprob": _dec(ll), "greedy": greedy}
        elif spec.kind == "generate_until":
            target = str(prompts.target(spec, doc)).strip()
            outs = r["outputs"]
            correct = [o.strip() == target for o in outs]
            vals = {"exact_match": sum(correct) / len(correct)}
            for k_ in spec.generation.k:
                vals[f"pass_at_{k_}"] = pass_at_k(len(outs), sum(correct), k_)
            rec |= {"input_sha256": _sha({"context": ctxs[i], "target": target}),
                    "outputs_sha256": [hashlib.sha256(o.encode()).hexdigest() for o in outs], "correct": correct}
        else:
            label = int(prompts.target(spec, doc))
            s = r["score"]
            probe_scores.append(s)
            probe_labels.append(label)
            vals = {"mean_score": s, "acc": float((s >= 0.5) == (label == 1))}
            rec |= {"input_sha256": _sha({"text": ctxs[i]}), "label": label, "score": _dec(s)}
        rec["metrics"] = {k: _dec(v) for k, v in vals.items() if _wanted(spec, k)}
        records.append(rec)
        for k, v in vals.items():
            per.setdefault(k, []).append(v)
    metrics: dict[str, tuple[float, float]] = {}
    for k, xs in per.items():
        if _wanted(spec, k):
            metrics[k] = mean_and_stderr(xs)
    if "auroc" in spec.metrics:
        a = auroc(probe_scores, probe_labels)
        if a is None:
            raise EvalSpecError(f"task {spec.name}: AUROC needs both labels among the items (got one class)")
        se = bootstrap_stderr(probe_scores, probe_labels, auroc, resamples=spec.bootstrap, seed=spec.fewshot_seed)
        metrics["auroc"] = (a, se)
    order = [m for m in _metric_names(spec) if m in metrics]
    return records, {k: metrics[k] for k in order}


def _metric_names(spec: TaskSpec) -> list[str]:
    out: list[str] = []
    for m in spec.metrics:
        if m == "pass_at_k":
            out.extend(f"pass_at_{k}" for k in spec.generation.k)
        else:
            out.append(m)
    return out


def _wanted(spec: TaskSpec, k: str) -> bool:
    return k in _metric_names(spec) and k != "auroc"


def run_task(
    lm: LoadedModel,
    spec: TaskSpec,
    *,
    batch_size: int | str = "auto",
    limit: int | None = None,
    shared_prefix: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool | _Progress = False,
) -> TaskRun | None:
    """Score one task on a loaded model; ``None`` on non-zero ranks under torchrun."""
    from protocol.merkle import merkle_root

    if limit is not None and limit < 1:
        raise EvalSpecError(f"--limit must be >= 1, got {limit}")
    bs, auto = _batch(lm, batch_size)
    docs = spec.docs[:limit] if limit else list(spec.docs)
    ctxs = prompts.contexts(spec, limit)
    cache = _Cache(cache_dir, {
        "task": spec.name, "digest": spec.digest, "model": lm.commitment, "dtype": str(lm.dtype),
        "shared": shared_prefix, "limit": limit,
    })
    mine = distributed.shard(list(range(len(docs))))
    todo = [i for i in mine if i not in cache.done]
    raw: dict[int, Any] = {i: cache.done[i] for i in mine if i in cache.done}
    bar = progress if isinstance(progress, _Progress) else _Progress(bool(progress))
    t0 = time.perf_counter()
    with (bar if not isinstance(progress, _Progress) else _nullctx()):
        prog = bar.task(spec.name, len(mine))
        prog(len(mine) - len(todo))
        for a in range(0, len(todo), BLOCK):
            block = todo[a : a + BLOCK]
            if spec.kind in ("multiple_choice", "loglikelihood"):
                got = _score_mc(lm, spec, docs, ctxs, block, bs, auto, shared_prefix, prog)
            elif spec.kind == "generate_until":
                got = _score_gen(lm, spec, docs, ctxs, block, bs, auto, prog)
            else:
                got = _score_probe(lm, spec, docs, ctxs, block, bs, auto, prog)
            cache.add(got)
            raw.update(got)
    seconds = time.perf_counter() - t0
    merged = distributed.gather_dict(raw)
    if merged is None:
        return None
    records, metrics = _records_and_metrics(spec, docs, ctxs, merged)
    root = merkle_root([canonical_bytes(r) for r in records]).hex()
    return TaskRun(spec=spec, n=len(docs), metrics=metrics, records=records, items_root=root, seconds=seconds)


class _nullctx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def load_suite_or_task(path: str | Path) -> SuiteSpec:
    """A suite file, or a single task file wrapped as a one-task suite."""
    p = Path(path)
    raw = read_yaml(p)
    if "suite" in raw:
        return load_suite(p)
    return single_task_suite(load_task(p))


def normalize_flop(value: str | int | Decimal | None) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    try:
        d = to_decimal(s)
    except SchemaError as e:
        raise EvalSpecError(f"--training-flop {value!r} is not a decimal number (e.g. 1.5E18)") from e
    if d < 0:
        raise EvalSpecError("--training-flop must be >= 0")
    return s


def run_suite(
    model_dir: str | Path,
    suite_path: str | Path | SuiteSpec,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int | str = "auto",
    limit: int | None = None,
    samples_path: str | Path | None = None,
    training_flop: str | int | None = None,
    checkpoint_step: int | None = None,
    *,
    model: LoadedModel | None = None,
    model_name: str | None = None,
    shared_prefix: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> EvalRun | None:
    """Evaluate a local checkpoint on a suite (or one task file); ``None`` on non-zero ranks.

    ``samples_path`` receives the committed per-item records (JCS, one per line), written
    atomically after every task finished. Pass ``model`` to reuse a loaded model.
    """
    started = datetime.now(UTC)
    suite = suite_path if isinstance(suite_path, SuiteSpec) else load_suite_or_task(suite_path)
    flop = normalize_flop(training_flop)
    if checkpoint_step is not None and (isinstance(checkpoint_step, bool) or checkpoint_step < 0):
        raise EvalSpecError("--checkpoint-step must be >= 0")
    if model is None:
        model = load_model(model_dir, device=distributed.init(device), dtype=dtype, name=model_name)
    step = checkpoint_step if checkpoint_step is not None else infer_checkpoint_step(model.model_dir)
    if flop is None:
        inferred = infer_training_flop(model.model_dir, model.parameters)
        flop = str(inferred) if inferred is not None else None
    runs: list[TaskRun] = []
    with _Progress(progress) as bar:
        for spec in suite.tasks:
            r = run_task(model, spec, batch_size=batch_size, limit=limit, shared_prefix=shared_prefix,
                         cache_dir=cache_dir, progress=bar)
            if r is not None:
                runs.append(r)
    if not distributed.is_main():
        return None
    bs, auto = _batch(model, batch_size)
    facts = runtime_facts(model, "auto" if auto else str(bs))
    facts["engine"] = "native"
    facts["scoring"] = "shared-prefix" if shared_prefix else "plain"
    _, size, _ = distributed.world()
    if size > 1:
        facts["data_parallel"] = str(size)
    run = EvalRun(
        suite=suite, model_name=model.name, commitment=model.commitment, weight_files=model.weight_hashes,
        parameters=model.parameters, checkpoint_step=step, training_flop=flop, tasks=runs, runtime=facts,
        started_at=started, finished_at=datetime.now(UTC), limit=limit,
    )
    if samples_path is not None:
        write_atomic(samples_path, b"".join(line + b"\n" for line in run.sample_lines()))
    return run


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a failed run never leaves a partial file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_result(run: EvalRun, out: str | Path, *, entry_id: str | None = None) -> None:
    doc = run.to_result_json()
    if entry_id is not None:
        doc["entry_id"] = entry_id
    write_atomic(out, (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode())


def metric_table(run: EvalRun) -> list[tuple[str, str, str, str, int]]:
    """``(task, metric, value, stderr, n)`` rows for printing."""
    return [(t.spec.name, k, _dec(v[0]), _dec(v[1]), t.n) for t in run.tasks for k, v in t.metrics.items()]


__all__: Sequence[str] = ["EvalRun", "ExternalSuite", "ExternalTask", "TaskRun", "load_suite_or_task", "run_suite", "run_task", "write_result"]
