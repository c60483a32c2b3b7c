"""lm-evaluation-harness task YAML (``output_type:``), for the ``multiple_choice`` and
``loglikelihood`` tasks on local JSON data the native runner reproduces exactly, interpreted
as lm-eval 0.4 does; anything else is refused with NativeUnsupportedError, which hands the
task to lm-eval itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.evals.errors import EvalDataError, EvalSpecError, NativeUnsupportedError
from node.evals.spec import prompts
from node.evals.spec.files import (
    check_pin,
    file_sha256,
    jsonable,
    path_value,
    pin_for,
    read_rows,
    resolve_path,
    row_features,
)
from node.evals.spec.models import TASK_KEYS, TaskSpec, fields_of
from node.evals.spec.prompts import RowError, check_rows

# The lm-eval task keys the native loader reproduces; any other key (process_docs, filter_list,
# generation_kwargs, gen_prefix, use_prompt, ...) hands the task to lm-eval.
_LMEVAL_KEYS = {
    "task", "task_alias", "tag", "dataset_path", "dataset_kwargs", "training_split",
    "validation_split", "test_split", "fewshot_split", "doc_to_text", "doc_to_target", "doc_to_choice",
    "description", "target_delimiter", "fewshot_delimiter", "fewshot_config", "num_fewshot", "metric_list",
    "output_type", "metadata", "should_decontaminate", "doc_to_decontamination_query", "repeats",
}
_LMEVAL_FEWSHOT_KEYS = {
    "split", "sampler", "samples", "doc_to_text", "doc_to_choice", "doc_to_target", "fewshot_delimiter",
    "target_delimiter",
}
#: lm-eval metric names the native runner computes, per output type (lm-eval's own meaning).
_LMEVAL_METRICS = {"multiple_choice": ("acc", "acc_norm"), "loglikelihood": ("acc",)}


def unsupported(p: Path, what: str) -> NativeUnsupportedError:
    return NativeUnsupportedError(
        f"{p}: {what}: the native runner does not reproduce it exactly (use --engine lm-eval or auto)"
    )


def load_lmeval_task(p: Path, raw: dict[str, Any], pins: dict[str, str]) -> TaskSpec:
    # `dataset_name: null` (hellaswag, piqa) is lm-eval's default: load_dataset(name=None).
    unknown = {k for k in set(raw) - _LMEVAL_KEYS if not (k == "dataset_name" and raw[k] is None)}
    if unknown:
        raise unsupported(p, f"lm-eval task keys {sorted(unknown, key=str)}")
    kind = raw.get("output_type", "generate_until")
    if kind not in ("multiple_choice", "loglikelihood"):
        raise unsupported(p, f"lm-eval output_type {kind!r} (native: multiple_choice, loglikelihood)")
    if raw.get("dataset_path") != "json":
        raise unsupported(p, f"dataset_path {raw.get('dataset_path')!r} (native reads local `json` data only)")
    if raw.get("repeats", 1) != 1:
        raise unsupported(p, "repeats other than 1")
    kwargs = raw.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise EvalSpecError(f"{p}: dataset_kwargs must be a mapping")
    if set(kwargs) - {"data_files"}:
        raise unsupported(p, f"dataset_kwargs {sorted(set(kwargs) - {'data_files'}, key=str)}")
    files = kwargs.get("data_files")
    if files is None:
        raise EvalSpecError(f"{p}: dataset_kwargs.data_files is required")
    if isinstance(files, str | list):
        files = {"train": files}
    if not isinstance(files, dict):
        raise EvalSpecError(f"{p}: dataset_kwargs.data_files must be a path, a list or a split mapping")
    meta = raw.get("metadata") or {}
    meta_pins = (meta.get("sha256") or {}) if isinstance(meta, dict) else {}
    if not isinstance(meta_pins, dict):
        raise EvalSpecError(f"{p}: metadata.sha256 must map data file names to digests")
    pins = {**meta_pins, **pins}
    splits: dict[str, list[dict[str, Any]]] = {}
    split_refs: dict[str, list[dict[str, str]]] = {}
    for split, names in files.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(split, str) or not isinstance(names, list):
            raise EvalSpecError(f"{p}: dataset_kwargs.data_files must map split names to paths, got {split!r}: {names!r}")
        rows: list[dict[str, Any]] = []
        refs = []
        for fname in names:
            fpath = resolve_path(p.parent, path_value(fname, f"data file of split {split}", p))
            here = Path(fname)
            if fpath != here and here.is_file() and not fpath.samefile(here):
                # lm-eval reads a relative data file from the working directory.
                raise EvalSpecError(
                    f"{p}: data file {fname} names two different files (next to the task and in the working "
                    "directory); give an absolute path"
                )
            if not fpath.is_file():
                raise EvalDataError(f"{p}: data file {fpath} (split {split}) does not exist")
            actual = file_sha256(fpath)
            check_pin(fpath, actual, pin_for(pins, fname, fpath), "the task's sha256 pins")
            rows.extend(read_rows(fpath))
            refs.append({"file": fpath.name, "sha256": actual})
        splits[split] = rows
        split_refs[split] = refs

    def split_rows(split: Any, what: str) -> list[dict[str, Any]]:
        if not isinstance(split, str) or split not in splits:
            raise EvalSpecError(f"{p}: {what} {split!r} is not in data_files ({', '.join(map(str, splits))})")
        return splits[split]

    # lm-eval evaluates test_split, else validation_split.
    test_split = raw.get("test_split")
    eval_split = test_split if test_split is not None else raw.get("validation_split")
    if eval_split is None:
        raise EvalSpecError(f"{p}: test_split (or validation_split) is required")
    docs = split_rows(eval_split, "split")
    if not docs:
        raise EvalDataError(f"{p}: the {eval_split} split is empty; nothing to evaluate")

    fs_cfg = raw.get("fewshot_config") or {}
    if not isinstance(fs_cfg, dict):
        raise EvalSpecError(f"{p}: fewshot_config must be a mapping")
    if set(fs_cfg) - _LMEVAL_FEWSHOT_KEYS:
        raise unsupported(p, f"fewshot_config keys {sorted(set(fs_cfg) - _LMEVAL_FEWSHOT_KEYS, key=str)}")
    # As lm-eval's FewshotConfig: fewshot_config.split overrides the task's fewshot_split; a
    # split wins over `samples`; with neither, training, else validation, else test docs.
    fewshot_split = fs_cfg.get("split", raw.get("fewshot_split"))
    samples = fs_cfg.get("samples")
    fewshot_ref: dict[str, Any]
    if fewshot_split is not None:
        pool = split_rows(fewshot_split, "few-shot split")
        fewshot_ref = {"pool": "split", "split": fewshot_split}
    elif samples is not None:
        if not isinstance(samples, list) or not all(isinstance(x, dict) for x in samples):
            raise EvalSpecError(f"{p}: fewshot_config.samples must be a list of mappings")
        pool = samples
        fewshot_ref = {"pool": "samples", "samples": jsonable(samples)}
    else:
        for key in ("training_split", "validation_split", "test_split"):
            if raw.get(key) is not None:
                pool = split_rows(raw[key], key)
                fewshot_ref = {"pool": "split", "split": raw[key]}
                break
    # lm-eval leaves the evaluated item out of its own examples when the few-shot split equals
    # test_split, compared as configured: both unset counts as equal.
    exclude_item = fewshot_split == test_split
    fewshot_ref["exclude_item"] = exclude_item
    sampler = fs_cfg.get("sampler", "default")
    if sampler not in ("default", "first_n"):
        raise unsupported(p, f"fewshot_config.sampler {sampler!r} (native: default, first_n)")

    metric_list = raw.get("metric_list")
    if metric_list is None:
        names = ["acc", "acc_norm"] if kind == "multiple_choice" else ["perplexity", "acc"]
    else:
        if not isinstance(metric_list, list):
            raise EvalSpecError(f"{p}: metric_list must be a list")
        names = []
        for m in metric_list:
            if not isinstance(m, dict) or "metric" not in m:
                raise EvalSpecError(f"{p}: each metric_list entry needs `metric:`")
            extra = set(m) - {"metric", "aggregation", "higher_is_better"}
            if extra:
                raise unsupported(p, f"metric {m['metric']!r} options {sorted(extra, key=str)}")
            if m.get("aggregation", "mean") != "mean":
                raise unsupported(p, f"metric {m['metric']!r} aggregation {m['aggregation']!r} (native: mean)")
            names.append(m["metric"])
    other = [n for n in names if n not in _LMEVAL_METRICS[kind]]
    if other:
        raise unsupported(p, f"lm-eval metrics {other} for {kind} (native: {', '.join(_LMEVAL_METRICS[kind])})")
    if kind == "multiple_choice" and raw.get("doc_to_choice") is None:
        raise EvalSpecError(f"{p}: doc_to_choice is required for multiple_choice")
    description = raw.get("description")
    with fields_of(p, TASK_KEYS["lm-eval"]):
        spec = TaskSpec.model_validate(dict(
            name=raw.get("task"),
            kind=kind,
            source=p,
            docs=docs,
            fewshot_docs=pool,
            fewshot_is_eval_split=exclude_item,
            doc_to_text=raw.get("doc_to_text"),
            doc_to_choice=raw.get("doc_to_choice"),
            doc_to_target=raw.get("doc_to_target"),
            description="" if description is None else description,
            target_delimiter=raw.get("target_delimiter", " "),
            fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"),
            num_fewshot=raw.get("num_fewshot") or 0,
            fewshot_seed=1234,
            fewshot_sampler=sampler,
            metrics=tuple(names),
            data_ref={"splits": split_refs, "test_split": eval_split, "fewshot_split": fewshot_ref.get("split")},
            format="lm-eval",
            # lm-eval resolves a bare string as a field when the evaluated split has that column.
            features=row_features(docs),
            fewshot_doc_to_text=fs_cfg.get("doc_to_text"),
            fewshot_doc_to_choice=fs_cfg.get("doc_to_choice"),
            fewshot_doc_to_target=fs_cfg.get("doc_to_target"),
            fewshot_target_delimiter=fs_cfg.get("target_delimiter"),
            fewshot_example_delimiter=fs_cfg.get("fewshot_delimiter"),
            fewshot_ref=fewshot_ref,
            num_fewshot_configured=raw.get("num_fewshot"),
        ))
    _check_lmeval_shape(spec, p)
    check_rows(spec)
    return spec


def _check_lmeval_shape(spec: TaskSpec, p: Path) -> None:
    """lm-eval decides multiple-input and multiple-target tasks from the first item; the
    native runner reproduces neither."""
    doc = spec.docs[0]
    try:
        text, target = prompts.text(spec, doc), prompts.target(spec, doc)
    except RowError:
        return  # check_rows names the row and what it lacks
    if isinstance(text, int) and spec.doc_to_choice is not None:
        raise unsupported(p, "a multiple-input task (doc_to_text gives a choice index)")
    if isinstance(target, list) and spec.kind == "multiple_choice":
        raise unsupported(p, "a multiple-target task (doc_to_target gives a list)")
